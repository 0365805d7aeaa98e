//! Chat conversations (OpenAI / LLaMA-Factory "sharegpt"-with-`messages` layout): a JSON array
//! (or JSON Lines) of `{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}`.
//! An optional first `system` message becomes the system prompt; the rest must alternate
//! user/assistant starting with user and end with an assistant message, which is the target
//! (earlier assistant turns are context; the loss covers the last one only).

use std::path::Path;

use crate::error::Result;
use crate::example::{Example, Message, Prompt, Role};

pub fn parse(path: &Path, text: &str) -> Result<Vec<Example>> {
    super::map_records(path, text, "records with `messages`", |r| {
        let raw = r.array("messages")?;
        let mut system = None;
        let mut turns: Vec<Message> = Vec::new();
        for (i, m) in raw.iter().enumerate() {
            let label = |f: &str| format!("messages[{i}].{f}");
            let obj = m.as_object().ok_or_else(|| {
                r.field_error(
                    format!("messages[{i}]"),
                    "expected an object {role, content}",
                )
            })?;
            let role = match obj.get("role").and_then(|v| v.as_str()) {
                Some("system") => Role::System,
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                other => {
                    return Err(r.field_error(
                        label("role"),
                        format!("expected \"system\", \"user\" or \"assistant\", found {other:?}"),
                    ))
                }
            };
            let content = obj
                .get("content")
                .and_then(|v| v.as_str())
                .ok_or_else(|| r.field_error(label("content"), "missing or not a string"))?;
            let expected = if turns.len().is_multiple_of(2) {
                Role::User
            } else {
                Role::Assistant
            };
            match role {
                Role::System if i == 0 => system = Some(content.to_string()),
                _ if role == expected => turns.push(Message { role, content: content.to_string() }),
                _ => {
                    return Err(r.field_error(
                        label("role"),
                        format!(
                            "expected \"{}\" here (an optional system message first, then user and assistant alternating)",
                            expected.as_str()
                        ),
                    ))
                }
            }
        }
        let target = match turns.pop() {
            Some(Message {
                role: Role::Assistant,
                content,
            }) if !content.trim().is_empty() => content,
            _ => {
                return Err(r.field_error(
                    "messages",
                    "must end with a non-empty assistant message (the training target)",
                ))
            }
        };
        Ok(Example::new(Prompt { system, turns }, target, None).with_id(r.id("id")))
    })
}
