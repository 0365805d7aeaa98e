//! Chat templates: how a [`Prompt`] and its target become the text the model sees.
//!
//! Each template renders the prompt up to where the model's answer starts
//! ([`Template::render_prompt`], what `apply_chat_template(..., add_generation_prompt=True)`
//! gives), the target as the template writes an assistant turn's content
//! ([`Template::render_target`]), and the end-of-turn marker that follows it
//! ([`Template::end_of_turn`], whose token id is the EOS appended to training targets).
//! `render_prompt + render_target + end_of_turn + turn_separator` is the whole conversation as the
//! Hugging Face template renders it (checked by the `*_reference` tests against `transformers`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::example::{Prompt, Role};

/// SmolLM2-Instruct's default system message, which its template inserts when a conversation has
/// none.
pub const SMOLLM2_DEFAULT_SYSTEM: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// A chat template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// No chat markup: `[system + "\n\n"]`, then each turn's content followed by `"\n"`; the
    /// target follows the last user line directly. For base (non-chat) models.
    Plain,
    /// ChatML as SmolLM2-Instruct's tokenizer config defines it:
    /// `<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n`,
    /// with [`SMOLLM2_DEFAULT_SYSTEM`] when the prompt has no system message. End of turn:
    /// `<|im_end|>`.
    #[default]
    #[serde(rename = "chatml")]
    ChatMl,
    /// LLaMA-2 chat as Meta's Hugging Face template defines it:
    /// `<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ...`
    /// (contents stripped of surrounding whitespace). End of turn: `</s>`.
    Llama2,
}

impl Template {
    pub const ALL: [Template; 3] = [Template::Plain, Template::ChatMl, Template::Llama2];

    pub fn name(self) -> &'static str {
        match self {
            Template::Plain => "plain",
            Template::ChatMl => "chatml",
            Template::Llama2 => "llama2",
        }
    }

    /// The prompt text, ending where the model's answer begins.
    pub fn render_prompt(self, prompt: &Prompt) -> String {
        let mut out = String::new();
        match self {
            Template::Plain => {
                if let Some(system) = &prompt.system {
                    out.push_str(system);
                    out.push_str("\n\n");
                }
                for turn in &prompt.turns {
                    out.push_str(&turn.content);
                    out.push('\n');
                }
            }
            Template::ChatMl => {
                let system = prompt.system.as_deref().unwrap_or(SMOLLM2_DEFAULT_SYSTEM);
                push_chatml(&mut out, Role::System.as_str(), system);
                for turn in &prompt.turns {
                    push_chatml(&mut out, turn.role.as_str(), &turn.content);
                }
                out.push_str("<|im_start|>assistant\n");
            }
            Template::Llama2 => {
                for (i, turn) in prompt.turns.iter().enumerate() {
                    match (turn.role, i, &prompt.system) {
                        (Role::Assistant, ..) => out.push_str(&self.render_target(&turn.content)),
                        (_, 0, Some(system)) => {
                            let content =
                                format!("<<SYS>>\n{system}\n<</SYS>>\n\n{}", turn.content);
                            push_inst(&mut out, &content);
                        }
                        _ => push_inst(&mut out, &turn.content),
                    }
                    if turn.role == Role::Assistant {
                        out.push_str("</s>");
                    }
                }
            }
        }
        out
    }

    /// The target as this template writes an assistant turn's content.
    pub fn render_target(self, target: &str) -> String {
        match self {
            Template::Plain | Template::ChatMl => target.to_string(),
            Template::Llama2 => format!(" {} ", target.trim()),
        }
    }

    /// The marker that ends an assistant turn; its token is appended to training targets as EOS.
    /// `None` for [`Template::Plain`] (use the tokenizer's EOS token).
    pub fn end_of_turn(self) -> Option<&'static str> {
        match self {
            Template::Plain => None,
            Template::ChatMl => Some("<|im_end|>"),
            Template::Llama2 => Some("</s>"),
        }
    }

    /// Text the template writes after the end-of-turn marker (not trained on).
    pub fn turn_separator(self) -> &'static str {
        match self {
            Template::Plain | Template::ChatMl => "\n",
            Template::Llama2 => "",
        }
    }

    /// The whole conversation including the answer (`apply_chat_template` of the prompt's
    /// messages plus the assistant target, without a generation prompt). For [`Template::Plain`]
    /// there is no end-of-turn marker.
    pub fn render_conversation(self, prompt: &Prompt, target: &str) -> String {
        let mut out = self.render_prompt(prompt);
        out.push_str(&self.render_target(target));
        out.push_str(self.end_of_turn().unwrap_or(""));
        out.push_str(self.turn_separator());
        out
    }
}

fn push_chatml(out: &mut String, role: &str, content: &str) {
    out.push_str("<|im_start|>");
    out.push_str(role);
    out.push('\n');
    out.push_str(content);
    out.push_str("<|im_end|>\n");
}

fn push_inst(out: &mut String, content: &str) {
    out.push_str("<s>[INST] ");
    out.push_str(content.trim());
    out.push_str(" [/INST]");
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Template {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        Template::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| DataError::UnknownName {
                kind: "template",
                name: s.into(),
                expected: Template::ALL.map(Template::name).join(", "),
            })
    }
}
