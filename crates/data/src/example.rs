//! The common example type every format loader produces.

use serde::{Deserialize, Serialize};

/// Who speaks a chat turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role name as chat templates write it (`system`, `user`, `assistant`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// Everything before the answer the model is trained to produce: an optional system message and
/// the conversation so far (`turns` alternate user/assistant and end with a user turn; loaders
/// guarantee this).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub system: Option<String>,
    pub turns: Vec<Message>,
}

impl Prompt {
    /// A single user turn, no system message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            system: None,
            turns: vec![Message::user(content)],
        }
    }
}

/// A gold answer that accuracy metrics compare against, beyond the reference text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    /// A final number (GSM8k `#### N`, MAWPS solution).
    Number(f64),
    /// A multiple-choice option (MathQA): its letter (`a`..) and the option's text (`"270"`).
    Choice { letter: char, option: String },
}

/// One training / evaluation example in a format-independent form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// An id from the source where it has one (`e2e-mr-3`, a CNN/DM story hash), else none.
    pub id: Option<String>,
    pub prompt: Prompt,
    /// The text the model is trained to produce after the prompt.
    pub target: String,
    /// Every acceptable reference (generation metrics); `target` is `references[0]`.
    pub references: Vec<String>,
    pub answer: Option<Answer>,
}

impl Example {
    /// A single-reference example (`references == [target]`).
    pub fn new(prompt: Prompt, target: String, answer: Option<Answer>) -> Self {
        Self {
            id: None,
            prompt,
            references: vec![target.clone()],
            target,
            answer,
        }
    }

    pub fn with_id(mut self, id: Option<String>) -> Self {
        self.id = id;
        self
    }
}

/// For training on multi-reference data (E2E NLG): one example per reference, each keeping the
/// full reference list. Single-reference examples pass through unchanged.
pub fn expand_references(examples: &[Example]) -> Vec<Example> {
    examples
        .iter()
        .flat_map(|ex| {
            ex.references.iter().map(move |r| Example {
                target: r.clone(),
                ..ex.clone()
            })
        })
        .collect()
}
