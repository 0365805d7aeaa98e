//! Tokenizers: a GPT-2 byte-level BPE `tokenizers::Tokenizer` rebuilt from a vocabulary and merges
//! (as stored in GGUF metadata, see [`crate::gguf::tokenizer`]), loading a Hugging Face
//! `tokenizer.json`, and saving one for export.

use std::path::{Path, PathBuf};

use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

/// Error of [`crate::tokenizer`].
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer file {path}: {detail}")]
    File { path: PathBuf, detail: String },
    #[error("unsupported pre-tokenizer '{0}': supported are default/gpt2 (GPT-2 regex) and smollm/starcoder/refact/codeshell (single digits, then the GPT-2 regex)")]
    UnsupportedPreTokenizer(String),
    #[error("merge #{index} '{merge}': expected two tokens separated by one space")]
    BadMerge { index: usize, merge: String },
    #[error("{what} id {id} is out of range: the vocabulary has {vocab_size} tokens")]
    IdOutOfRange {
        what: &'static str,
        id: u32,
        vocab_size: usize,
    },
    #[error("building the BPE model: {0}")]
    Build(String),
}

/// How text is split before BPE (llama.cpp's `tokenizer.ggml.pre`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizerKind {
    /// GPT-2's regex (`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`)
    /// on byte-level text: `tokenizers`' `ByteLevel(use_regex = true)`.
    Gpt2,
    /// Every digit on its own (`\p{N}`), then the GPT-2 regex: llama.cpp's `smollm` (also
    /// `starcoder`, `refact`, `codeshell`) and SmolLM2's original `tokenizer.json`
    /// (`Digits(individual_digits) + ByteLevel`).
    SingleDigitsGpt2,
}

impl PreTokenizerKind {
    /// The kind for a GGUF `tokenizer.ggml.pre` value (`None`: the key is absent).
    pub fn from_gguf_pre(pre: Option<&str>) -> Result<Self, TokenizerError> {
        match pre {
            None | Some("default") | Some("gpt2") | Some("gpt-2") => Ok(Self::Gpt2),
            Some("smollm") | Some("starcoder") | Some("refact") | Some("codeshell") => {
                Ok(Self::SingleDigitsGpt2)
            }
            Some(other) => Err(TokenizerError::UnsupportedPreTokenizer(other.to_string())),
        }
    }

    fn build(self) -> PreTokenizerWrapper {
        // ByteLevel(add_prefix_space = false, trim_offsets = true, use_regex = true)
        let byte_level = ByteLevel::new(false, true, true);
        match self {
            Self::Gpt2 => byte_level.into(),
            Self::SingleDigitsGpt2 => {
                Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
            }
        }
    }
}

/// Role of a vocabulary entry (GGUF `tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Normal,
    /// Control token (`<|im_start|>`, `<|endoftext|>`): matched verbatim in text, special.
    Control,
    /// User-defined token: matched verbatim in text, not special.
    UserDefined,
    /// Unknown / unused / byte entries: plain vocabulary entries for byte-level BPE.
    Other,
}

impl TokenKind {
    /// From llama.cpp's `llama_token_type` (1 normal, 2 unknown, 3 control, 4 user-defined,
    /// 5 unused, 6 byte).
    pub fn from_gguf(t: i64) -> Self {
        match t {
            1 => Self::Normal,
            3 => Self::Control,
            4 => Self::UserDefined,
            _ => Self::Other,
        }
    }
}

/// Everything needed to rebuild a GPT-2 style byte-level BPE tokenizer.
#[derive(Debug, Clone, PartialEq)]
pub struct BpeSpec {
    /// Tokens in id order (byte-level alphabet, e.g. `Ġthe`).
    pub tokens: Vec<String>,
    /// Merges in priority order.
    pub merges: Vec<(String, String)>,
    /// One kind per token (same length as `tokens`).
    pub kinds: Vec<TokenKind>,
    pub pre_tokenizer: PreTokenizerKind,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// Prepend BOS when encoding with special tokens.
    pub add_bos: bool,
    /// Append EOS when encoding with special tokens.
    pub add_eos: bool,
}

/// Parse merges stored as `"left right"` strings.
pub fn parse_merges<S: AsRef<str>>(merges: &[S]) -> Result<Vec<(String, String)>, TokenizerError> {
    merges
        .iter()
        .enumerate()
        .map(|(index, m)| {
            let m = m.as_ref();
            match m.split_once(' ') {
                Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(' ') => {
                    Ok((a.to_string(), b.to_string()))
                }
                _ => Err(TokenizerError::BadMerge {
                    index,
                    merge: m.to_string(),
                }),
            }
        })
        .collect()
}

/// Build a byte-level BPE tokenizer (BPE model, pre-tokenizer per [`PreTokenizerKind`], byte-level
/// decoder, control/user-defined tokens as added tokens, BOS/EOS template when requested),
/// equivalent to what llama.cpp does with `tokenizer.ggml.model = "gpt2"`.
pub fn build_bpe(spec: &BpeSpec) -> Result<Tokenizer, TokenizerError> {
    let n = spec.tokens.len();
    if spec.kinds.len() != n {
        return Err(TokenizerError::Build(format!(
            "{} token kinds for {} tokens",
            spec.kinds.len(),
            n
        )));
    }
    for (what, id) in [("BOS", spec.bos_id), ("EOS", spec.eos_id)] {
        if let Some(id) = id.filter(|&id| id as usize >= n) {
            return Err(TokenizerError::IdOutOfRange {
                what,
                id,
                vocab_size: n,
            });
        }
    }
    let vocab: Vocab = spec
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, spec.merges.clone())
        .build()
        .map_err(|e| TokenizerError::Build(e.to_string()))?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(spec.pre_tokenizer.build()));
    tok.with_decoder(Some(ByteLevel::default()));

    let added: Vec<AddedToken> = spec
        .tokens
        .iter()
        .zip(&spec.kinds)
        .filter_map(|(t, k)| match k {
            TokenKind::Control => Some(AddedToken::from(t.clone(), true)),
            TokenKind::UserDefined => Some(AddedToken::from(t.clone(), false)),
            _ => None,
        })
        .collect();
    let specials: Vec<AddedToken> = added.iter().filter(|a| a.special).cloned().collect();
    let plain: Vec<AddedToken> = added.into_iter().filter(|a| !a.special).collect();
    tok.add_special_tokens(&specials);
    tok.add_tokens(&plain);

    let bos = spec.bos_id.filter(|_| spec.add_bos);
    let eos = spec.eos_id.filter(|_| spec.add_eos);
    if bos.is_some() || eos.is_some() {
        let mut single = String::new();
        let mut pair = String::new();
        let mut special_tokens = vec![];
        if let Some(id) = bos {
            let t = &spec.tokens[id as usize];
            single.push_str(&format!("{t}:0 "));
            pair.push_str(&format!("{t}:0 "));
            special_tokens.push((t.clone(), id));
        }
        single.push_str("$A:0");
        pair.push_str("$A:0 ");
        if let Some(id) = bos {
            pair.push_str(&format!("{}:1 ", spec.tokens[id as usize]));
        }
        pair.push_str("$B:1");
        if let Some(id) = eos {
            let t = &spec.tokens[id as usize];
            single.push_str(&format!(" {t}:0"));
            pair = pair.replacen("$A:0 ", &format!("$A:0 {t}:0 "), 1);
            pair.push_str(&format!(" {t}:1"));
            if !special_tokens.iter().any(|(_, i)| *i == id) {
                special_tokens.push((t.clone(), id));
            }
        }
        let template = TemplateProcessing::builder()
            .try_single(single)
            .and_then(|b| b.try_pair(pair))
            .map_err(|e| TokenizerError::Build(e.to_string()))?
            .special_tokens(special_tokens)
            .build()
            .map_err(|e| TokenizerError::Build(e.to_string()))?;
        tok.with_post_processor(Some(template));
    } else {
        // ByteLevel(trim_offsets = false): as transformers' GPT-2 conversion, changes no ids.
        tok.with_post_processor(Some(ByteLevel::new(false, false, true)));
    }
    Ok(tok)
}

/// Load a Hugging Face `tokenizer.json`.
pub fn load_json(path: impl AsRef<Path>) -> Result<Tokenizer, TokenizerError> {
    let path = path.as_ref();
    Tokenizer::from_file(path).map_err(|e| TokenizerError::File {
        path: path.to_path_buf(),
        detail: format!("cannot load as a Hugging Face tokenizer.json: {e}"),
    })
}

/// Write `tokenizer` as a Hugging Face `tokenizer.json` (pretty-printed), atomically (temporary
/// file in the same folder, then rename).
pub fn save(tokenizer: &Tokenizer, path: impl AsRef<Path>) -> Result<(), TokenizerError> {
    let path = path.as_ref();
    let err = |detail: String| TokenizerError::File {
        path: path.to_path_buf(),
        detail,
    };
    let json = tokenizer
        .to_string(true)
        .map_err(|e| err(format!("cannot serialize: {e}")))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).map_err(|e| err(format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| err(format!("cannot rename {}: {e}", tmp.display())))
}
