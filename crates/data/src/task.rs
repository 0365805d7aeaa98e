//! The tasks shipped with the project (`data/` at the repository root, see `data/README.md`),
//! embedded in the binary so they work from any directory.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::example::Example;
use crate::formats::Format;

/// Train or test split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// A shipped task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShippedTask {
    /// E2E NLG data-to-text, split by meaning representation, multi-reference test.
    E2eNlg,
    /// MathQA multiple-choice arithmetic word problems.
    Mathqa,
    /// XSum one-sentence summarization.
    Xsum,
    /// CNN/DailyMail highlights summarization.
    CnnDm,
}

impl ShippedTask {
    pub const ALL: [ShippedTask; 4] = [
        ShippedTask::E2eNlg,
        ShippedTask::Mathqa,
        ShippedTask::Xsum,
        ShippedTask::CnnDm,
    ];

    /// The task's name, which is also its folder under `data/` and its [`Format`] name.
    pub fn name(self) -> &'static str {
        self.format().name()
    }

    pub fn format(self) -> Format {
        match self {
            ShippedTask::E2eNlg => Format::E2eNlg,
            ShippedTask::Mathqa => Format::Mathqa,
            ShippedTask::Xsum => Format::Xsum,
            ShippedTask::CnnDm => Format::CnnDm,
        }
    }

    /// The embedded JSONL text of a split.
    pub fn text(self, split: Split) -> &'static str {
        match (self, split) {
            (ShippedTask::E2eNlg, Split::Train) => {
                include_str!("../../../data/e2e_nlg/train.jsonl")
            }
            (ShippedTask::E2eNlg, Split::Test) => include_str!("../../../data/e2e_nlg/test.jsonl"),
            (ShippedTask::Mathqa, Split::Train) => include_str!("../../../data/mathqa/train.jsonl"),
            (ShippedTask::Mathqa, Split::Test) => include_str!("../../../data/mathqa/test.jsonl"),
            (ShippedTask::Xsum, Split::Train) => include_str!("../../../data/xsum/train.jsonl"),
            (ShippedTask::Xsum, Split::Test) => include_str!("../../../data/xsum/test.jsonl"),
            (ShippedTask::CnnDm, Split::Train) => include_str!("../../../data/cnn_dm/train.jsonl"),
            (ShippedTask::CnnDm, Split::Test) => include_str!("../../../data/cnn_dm/test.jsonl"),
        }
    }

    /// The split's examples. E2E NLG gives one example per meaning representation with all its
    /// references; train on [`crate::expand_references`] of it.
    pub fn load(self, split: Split) -> Result<Vec<Example>> {
        let label = format!("data/{}/{}.jsonl", self.name(), split.name());
        self.format().parse(Path::new(&label), self.text(split))
    }
}

impl fmt::Display for ShippedTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ShippedTask {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        ShippedTask::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| DataError::UnknownName {
                kind: "shipped task",
                name: s.into(),
                expected: ShippedTask::ALL.map(ShippedTask::name).join(", "),
            })
    }
}
