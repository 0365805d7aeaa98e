//! XSum: JSON Lines (or a JSON array) of `{"id"?, "document": str, "summary": str}`, as the
//! Hugging Face `xsum` release and our `data/xsum/` write it. The prompt asks for a one-sentence
//! summary ([`crate::prompt::summarize`]); the target is `summary`.

use std::path::Path;

use crate::error::Result;
use crate::example::Example;
use crate::prompt::SummaryStyle;

pub fn parse(path: &Path, text: &str) -> Result<Vec<Example>> {
    super::document_summary(path, text, "document", "summary", SummaryStyle::OneSentence)
}
