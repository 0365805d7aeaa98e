//! Reading files into JSON records with their 1-based line numbers, and typed field access whose
//! errors name the file, line and field.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{DataError, Result};

/// Reads `path` as UTF-8 text (a leading BOM is dropped). Non-UTF-8 bytes are an error naming the
/// line of the first invalid byte.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.into(),
        source,
    })?;
    decode_utf8(path, bytes)
}

/// UTF-8 decoding of `bytes` read from `path` (see [`read_text`]).
pub fn decode_utf8(path: &Path, bytes: Vec<u8>) -> Result<String> {
    match String::from_utf8(bytes) {
        Ok(mut s) => {
            if s.starts_with('\u{feff}') {
                s.drain(..'\u{feff}'.len_utf8());
            }
            Ok(s)
        }
        Err(e) => {
            let offset = e.utf8_error().valid_up_to();
            let line = 1 + e.as_bytes()[..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            Err(DataError::NotUtf8 {
                path: path.into(),
                line,
                offset,
            })
        }
    }
}

/// One JSON object of a data file and where it starts.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub path: &'a Path,
    pub line: usize,
    pub obj: Map<String, Value>,
}

/// Parses `text` as either a JSON array of objects (first non-blank character `[`) or JSON Lines
/// (one object per non-blank line). `expected` describes a record for the empty-file error.
pub fn parse_records<'a>(path: &'a Path, text: &str, expected: &str) -> Result<Vec<Record<'a>>> {
    let records = if text.trim_start().starts_with('[') {
        parse_json_array(path, text)?
    } else {
        parse_jsonl(path, text)?
    };
    if records.is_empty() {
        return Err(DataError::Empty {
            path: path.into(),
            expected: expected.into(),
        });
    }
    Ok(records)
}

fn json_error(path: &Path, line_offset: usize, e: &serde_json::Error) -> DataError {
    // serde_json appends " at line L column C"; we report the file line ourselves.
    let full = e.to_string();
    let message = match full.rfind(" at line ") {
        Some(i) => format!("{} (column {})", &full[..i], e.column()),
        None => full,
    };
    DataError::Json {
        path: path.into(),
        line: line_offset + e.line().max(1) - 1,
        message,
    }
}

fn into_object(path: &Path, line: usize, value: Value) -> Result<Record<'_>> {
    match value {
        Value::Object(obj) => Ok(Record { path, line, obj }),
        other => Err(DataError::Record {
            path: path.into(),
            line,
            problem: format!("expected a JSON object, found {}", type_name(&other)),
        }),
    }
}

fn parse_jsonl<'a>(path: &'a Path, text: &str) -> Result<Vec<Record<'a>>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(raw).map_err(|e| json_error(path, line, &e))?;
        out.push(into_object(path, line, value)?);
    }
    Ok(out)
}

fn parse_json_array<'a>(path: &'a Path, text: &str) -> Result<Vec<Record<'a>>> {
    let values: Vec<Value> = serde_json::from_str(text).map_err(|e| json_error(path, 1, &e))?;
    let lines = array_element_lines(text);
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| into_object(path, lines.get(i).copied().unwrap_or(1), v))
        .collect()
}

/// The 1-based line on which each element of a top-level JSON array starts. Assumes `text` is
/// valid JSON (it has been parsed already).
fn array_element_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let (mut line, mut depth) = (1usize, 0usize);
    let (mut in_string, mut escaped, mut expecting) = (false, false, false);
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        if depth == 1 && expecting && c != ']' {
            lines.push(line);
            expecting = false;
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => {
                depth += 1;
                if depth == 1 {
                    expecting = true;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => expecting = true,
            _ => {}
        }
    }
    lines
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Record<'_> {
    /// A `DataError::Field` for `field` of this record.
    pub fn field_error(&self, field: impl Into<String>, problem: impl Into<String>) -> DataError {
        DataError::Field {
            path: PathBuf::from(self.path),
            line: self.line,
            field: field.into(),
            problem: problem.into(),
        }
    }

    fn wrong_type(&self, field: &str, expected: &str, found: &Value) -> DataError {
        self.field_error(
            field,
            format!("expected {expected}, found {}", type_name(found)),
        )
    }

    /// The value of `field`, or an error if it is absent.
    pub fn value(&self, field: &str) -> Result<&Value> {
        self.obj
            .get(field)
            .ok_or_else(|| self.field_error(field, "missing"))
    }

    /// Whether `field` is present and not null.
    pub fn has(&self, field: &str) -> bool {
        self.obj.get(field).is_some_and(|v| !v.is_null())
    }

    /// A required string field.
    pub fn str(&self, field: &str) -> Result<&str> {
        let v = self.value(field)?;
        v.as_str()
            .ok_or_else(|| self.wrong_type(field, "a string", v))
    }

    /// A required string field that must not be empty (after trimming whitespace).
    pub fn non_empty_str(&self, field: &str) -> Result<&str> {
        let s = self.str(field)?;
        if s.trim().is_empty() {
            return Err(self.field_error(field, "must not be empty"));
        }
        Ok(s)
    }

    /// An optional string field (absent or null -> `None`; another type is an error).
    pub fn opt_str(&self, field: &str) -> Result<Option<&str>> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong_type(field, "a string", v)),
        }
    }

    /// A required array field.
    pub fn array(&self, field: &str) -> Result<&Vec<Value>> {
        let v = self.value(field)?;
        v.as_array()
            .ok_or_else(|| self.wrong_type(field, "an array", v))
    }

    /// A required non-empty array of strings.
    pub fn str_array(&self, field: &str) -> Result<Vec<String>> {
        let arr = self.array(field)?;
        if arr.is_empty() {
            return Err(self.field_error(field, "must not be an empty array"));
        }
        arr.iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| self.wrong_type(&format!("{field}[{i}]"), "a string", v))
            })
            .collect()
    }

    /// A number given as a JSON number or a numeric string (`"1,234"` allowed), at `field_label`.
    pub fn number_in(&self, field_label: &str, v: &Value) -> Result<f64> {
        match v {
            Value::Number(n) => n
                .as_f64()
                .ok_or_else(|| self.field_error(field_label, "number out of range")),
            Value::String(s) => parse_number(s).ok_or_else(|| {
                self.field_error(
                    field_label,
                    format!("expected a number, found the string {s:?}"),
                )
            }),
            other => Err(self.wrong_type(field_label, "a number", other)),
        }
    }

    /// The record's `id` field if it is a string or number (many formats carry one).
    pub fn id(&self, field: &str) -> Option<String> {
        match self.obj.get(field) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// Parses a number written as text: surrounding whitespace, a leading `$` and thousands
/// separators (`,`) are ignored (`"$1,234.5"` -> 1234.5). Returns `None` otherwise.
pub fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim().trim_start_matches('$').replace(',', "");
    let v: f64 = t.parse().ok()?;
    v.is_finite().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_element_lines_follow_layout() {
        let text = "[\n {\"a\": \"x]\\\"{\"},\n\n {\"b\": [1,\n2]}, {\"c\": 3}\n]";
        let _: Value = serde_json::from_str(text).unwrap();
        assert_eq!(array_element_lines(text), vec![2, 4, 5]);
    }

    #[test]
    fn parse_number_forms() {
        assert_eq!(parse_number(" 1,234 "), Some(1234.0));
        assert_eq!(parse_number("$-3.5"), Some(-3.5));
        assert_eq!(parse_number("12 apples"), None);
        assert_eq!(parse_number("inf"), None);
    }
}
