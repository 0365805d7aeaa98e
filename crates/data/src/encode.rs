//! Tokenisation of examples into input ids and labels with the loss masked on prompt tokens.
//!
//! An example becomes `ids = tok(render_prompt) ++ tok(render_target) ++ [eos]` (prompt and
//! target are tokenised separately, so the prompt/target boundary is exact), and
//! `labels = [IGNORE_INDEX; prompt] ++ tok(render_target) ++ [eos]`, aligned with `ids` (the Hugging
//! Face convention: the model predicts `labels[t + 1]` at position `t`;
//! [`crate::Batch::next_token_targets`] does the shift). Sequences longer than `max_len` are cut
//! at the end; an example left with no target token is dropped. Both are counted.

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::error::{DataError, Result};
use crate::example::{Example, Prompt};
use crate::template::Template;

/// Label of a position that carries no loss (PyTorch's `ignore_index` default).
pub const IGNORE_INDEX: i64 = -100;

/// How examples are turned into token sequences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodeConfig {
    pub template: Template,
    /// Maximum sequence length in tokens (prompt + target + EOS); longer ones are cut at the end.
    pub max_len: usize,
    /// The token appended after the target. `None`: the template's end-of-turn marker
    /// (`<|im_end|>` for ChatML, `</s>` for LLaMA-2); required for [`Template::Plain`].
    pub eos_token: Option<String>,
    /// Let the tokenizer add its special tokens (e.g. a BOS) to the prompt. Chat templates write
    /// their markers in the text, so the default is `false`.
    pub add_special_tokens: bool,
}

impl EncodeConfig {
    pub fn new(template: Template, max_len: usize) -> Self {
        Self {
            template,
            max_len,
            eos_token: None,
            add_special_tokens: false,
        }
    }
}

/// One tokenised example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encoded {
    pub input_ids: Vec<u32>,
    /// Same length as `input_ids`; [`IGNORE_INDEX`] on prompt tokens, the token id elsewhere.
    pub labels: Vec<i64>,
    /// Whether the sequence was cut to `max_len`.
    pub truncated: bool,
}

impl Encoded {
    /// An example from token ids whose first `prompt_len` tokens are the prompt (labels
    /// [`IGNORE_INDEX`]) and the rest the target (labels = the ids); not truncated.
    pub fn from_ids(input_ids: Vec<u32>, prompt_len: usize) -> Self {
        let labels = input_ids
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                if i < prompt_len {
                    IGNORE_INDEX
                } else {
                    t as i64
                }
            })
            .collect();
        Encoded {
            input_ids,
            labels,
            truncated: false,
        }
    }

    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// Number of positions that carry loss.
    pub fn target_tokens(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }
}

/// The encoded dataset and what truncation did to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedSet {
    /// The kept examples, in input order.
    pub examples: Vec<Encoded>,
    /// Examples cut to `max_len` that kept at least one target token (they are in `examples`).
    pub truncated: usize,
    /// Examples whose prompt alone filled `max_len`, left with no target token (not in `examples`).
    pub dropped: usize,
}

/// Tokenises examples with a template (see the module docs).
pub struct Encoder<'t> {
    tokenizer: &'t Tokenizer,
    config: EncodeConfig,
    eos_id: u32,
}

impl<'t> Encoder<'t> {
    pub fn new(tokenizer: &'t Tokenizer, config: EncodeConfig) -> Result<Self> {
        if config.max_len < 2 {
            return Err(DataError::Config {
                field: "max_len",
                problem: format!("must be >= 2, got {}", config.max_len),
            });
        }
        let eos = config
            .eos_token
            .as_deref()
            .or(config.template.end_of_turn())
            .ok_or(DataError::Config {
                field: "eos_token",
                problem:
                    "the plain template has no end-of-turn marker: set the EOS token explicitly"
                        .into(),
            })?;
        let eos_id = tokenizer.token_to_id(eos).ok_or_else(|| {
            DataError::Tokenizer(format!("EOS token `{eos}` is not in the vocabulary"))
        })?;
        Ok(Self {
            tokenizer,
            config,
            eos_id,
        })
    }

    pub fn config(&self) -> &EncodeConfig {
        &self.config
    }

    /// The id appended after each target.
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    fn tokenize(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, special)
            .map_err(|e| DataError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The prompt's token ids (what generation starts from); not truncated.
    pub fn encode_prompt(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        self.tokenize(
            &self.config.template.render_prompt(prompt),
            self.config.add_special_tokens,
        )
    }

    /// One example; `None` when truncation leaves no target token.
    pub fn encode(&self, example: &Example) -> Result<Option<Encoded>> {
        let prompt = self.encode_prompt(&example.prompt)?;
        let target = self.tokenize(&self.config.template.render_target(&example.target), false)?;
        let mut input_ids = prompt.clone();
        input_ids.extend_from_slice(&target);
        input_ids.push(self.eos_id);
        let mut labels = vec![IGNORE_INDEX; prompt.len()];
        labels.extend(target.iter().map(|&t| i64::from(t)));
        labels.push(i64::from(self.eos_id));
        let truncated = input_ids.len() > self.config.max_len;
        input_ids.truncate(self.config.max_len);
        labels.truncate(self.config.max_len);
        let encoded = Encoded {
            input_ids,
            labels,
            truncated,
        };
        Ok((encoded.target_tokens() > 0).then_some(encoded))
    }

    /// All examples, counting truncated and dropped ones.
    pub fn encode_all(&self, examples: &[Example]) -> Result<EncodedSet> {
        let mut set = EncodedSet {
            examples: Vec::with_capacity(examples.len()),
            truncated: 0,
            dropped: 0,
        };
        for ex in examples {
            match self.encode(ex)? {
                Some(e) => {
                    set.truncated += usize::from(e.truncated);
                    set.examples.push(e);
                }
                None => set.dropped += 1,
            }
        }
        Ok(set)
    }
}
