//! CNN/DailyMail: JSON Lines (or a JSON array) of `{"id"?, "article": str, "highlights": str}`,
//! as the Hugging Face `cnn_dailymail` release and our `data/cnn_dm/` write it. The prompt asks for
//! the article's highlights ([`crate::prompt::summarize`]); the target is `highlights`.

use std::path::Path;

use crate::error::Result;
use crate::example::Example;
use crate::prompt::SummaryStyle;

pub fn parse(path: &Path, text: &str) -> Result<Vec<Example>> {
    super::document_summary(
        path,
        text,
        "article",
        "highlights",
        SummaryStyle::Highlights,
    )
}
