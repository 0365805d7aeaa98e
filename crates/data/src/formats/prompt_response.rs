//! Prompt/response pairs: a JSON array (or JSON Lines) of
//! `{"prompt": str, "response": str, "system"?: str}`. One user turn, target = `response`.

use std::path::Path;

use crate::error::Result;
use crate::example::{Example, Prompt};

pub fn parse(path: &Path, text: &str) -> Result<Vec<Example>> {
    super::map_records(path, text, "records with `prompt` and `response`", |r| {
        let mut prompt = Prompt::user(r.non_empty_str("prompt")?);
        prompt.system = r.opt_str("system")?.map(str::to_string);
        let response = r.non_empty_str("response")?;
        Ok(Example::new(prompt, response.to_string(), None).with_id(r.id("id")))
    })
}
