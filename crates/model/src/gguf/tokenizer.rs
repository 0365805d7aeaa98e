//! The tokenizer stored in GGUF metadata (`tokenizer.ggml.*`), rebuilt as a
//! `tokenizers::Tokenizer` through [`crate::tokenizer::build_bpe`].

use tokenizers::Tokenizer;

use super::error::{GgufError, Result};
use super::reader::GgufFile;
use crate::tokenizer::{build_bpe, parse_merges, BpeSpec, PreTokenizerKind, TokenKind};

/// Read the BPE description from the metadata. Only `tokenizer.ggml.model = "gpt2"` (byte-level
/// BPE, as SmolLM2, LLaMA-3, Qwen use) is supported; SentencePiece (`"llama"`) is not.
pub fn bpe_spec(file: &GgufFile) -> Result<BpeSpec> {
    let tok_err = |source| GgufError::Tokenizer {
        path: file.path().to_path_buf(),
        source,
    };
    let model_key = "tokenizer.ggml.model";
    let model = file.require(
        model_key,
        "the tokenizer type, e.g. \"gpt2\"",
        file.get_str(model_key),
    )?;
    if model != "gpt2" {
        return Err(GgufError::UnsupportedModel {
            path: file.path().to_path_buf(),
            detail: format!(
                "{model_key} = \"{model}\": only \"gpt2\" (byte-level BPE) tokenizers are supported"
            ),
        });
    }
    let tokens_key = "tokenizer.ggml.tokens";
    let tokens: Vec<String> = file
        .require(tokens_key, "the vocabulary", file.get_str_array(tokens_key))?
        .into_iter()
        .map(str::to_string)
        .collect();
    let merges_key = "tokenizer.ggml.merges";
    let merges = file.require(merges_key, "the BPE merges", file.get_str_array(merges_key))?;
    let merges = parse_merges(&merges).map_err(tok_err)?;
    let kinds = match file.get_i64_array("tokenizer.ggml.token_type")? {
        Some(types) if types.len() == tokens.len() => {
            types.into_iter().map(TokenKind::from_gguf).collect()
        }
        Some(types) => {
            return Err(GgufError::Malformed {
                path: file.path().to_path_buf(),
                what: "metadata 'tokenizer.ggml.token_type'".into(),
                detail: format!(
                    "{} entries, expected one per token ({})",
                    types.len(),
                    tokens.len()
                ),
            })
        }
        None => vec![TokenKind::Normal; tokens.len()],
    };
    let pre =
        PreTokenizerKind::from_gguf_pre(file.get_str("tokenizer.ggml.pre")?).map_err(tok_err)?;
    let id = |key: &str| -> Result<Option<u32>> {
        match file.get_u64(key)? {
            None => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| GgufError::Malformed {
                    path: file.path().to_path_buf(),
                    what: format!("metadata '{key}'"),
                    detail: format!("{v} does not fit a token id"),
                }),
        }
    };
    Ok(BpeSpec {
        tokens,
        merges,
        kinds,
        pre_tokenizer: pre,
        bos_id: id("tokenizer.ggml.bos_token_id")?,
        eos_id: id("tokenizer.ggml.eos_token_id")?,
        add_bos: file
            .get_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(false),
        add_eos: file
            .get_bool("tokenizer.ggml.add_eos_token")?
            .unwrap_or(false),
    })
}

/// Rebuild the tokenizer from the metadata.
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<Tokenizer> {
    let spec = bpe_spec(file)?;
    build_bpe(&spec).map_err(|source| GgufError::Tokenizer {
        path: file.path().to_path_buf(),
        source,
    })
}

/// `tokenizer.chat_template`, when present.
pub fn chat_template(file: &GgufFile) -> Result<Option<String>> {
    Ok(file.get_str("tokenizer.chat_template")?.map(str::to_string))
}
