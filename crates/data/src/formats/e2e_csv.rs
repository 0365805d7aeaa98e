//! E2E NLG, the original challenge CSV (`trainset.csv`, `devset.csv`, `testset_w_refs.csv`):
//! a header naming the columns `mr` and `ref` (case-insensitive; other columns are ignored), then
//! one row per (meaning representation, reference) pair, RFC 4180 quoting (`"name[The Vaults],
//! eatType[pub]"`, `""` for a quote inside a quoted field, newlines allowed inside quotes).
//! Rows with the same MR are grouped, in order of first appearance, into one example whose
//! `references` are all that MR's references (target = the first), like the shipped JSONL.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{DataError, Result};
use crate::example::Example;

pub fn parse(path: &Path, text: &str) -> Result<Vec<Example>> {
    let rows = parse_csv(path, text)?;
    let mut rows = rows.into_iter();
    let empty = || DataError::Empty {
        path: path.into(),
        expected: "a header `mr,ref` and data rows".into(),
    };
    let (header_line, header) = rows.next().ok_or_else(empty)?;
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
            .ok_or_else(|| DataError::Field {
                path: path.into(),
                line: header_line,
                field: name.into(),
                problem: format!("header has no `{name}` column (found {header:?})"),
            })
    };
    let (mr_col, ref_col) = (column("mr")?, column("ref")?);

    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (line, row) in rows {
        if row.len() != header.len() {
            return Err(DataError::Record {
                path: path.into(),
                line,
                problem: format!(
                    "expected {} columns as in the header, found {}",
                    header.len(),
                    row.len()
                ),
            });
        }
        let field = |col: usize, name: &str| -> Result<String> {
            let v = row[col].trim();
            if v.is_empty() {
                return Err(DataError::Field {
                    path: path.into(),
                    line,
                    field: name.into(),
                    problem: "must not be empty".into(),
                });
            }
            Ok(v.to_string())
        };
        let (mr, reference) = (field(mr_col, "mr")?, field(ref_col, "ref")?);
        match index.get(&mr) {
            Some(&g) => groups[g].1.push(reference),
            None => {
                index.insert(mr.clone(), groups.len());
                groups.push((mr, vec![reference]));
            }
        }
    }
    if groups.is_empty() {
        return Err(empty());
    }
    Ok(groups
        .into_iter()
        .map(|(mr, refs)| super::e2e_nlg::group(&mr, refs))
        .collect())
}

/// RFC 4180 records with the 1-based line each starts on; blank lines are skipped.
fn parse_csv(path: &Path, text: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false; // inside a quoted field
        let mut was_quoted = false;
        loop {
            let Some(c) = chars.next() else {
                if quoted {
                    return Err(DataError::Record {
                        path: path.into(),
                        line: start,
                        problem: "unterminated quoted field".into(),
                    });
                }
                break;
            };
            if c == '\n' {
                line += 1;
            }
            if quoted {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => quoted = false,
                    _ => field.push(c),
                }
                continue;
            }
            match c {
                '"' if field.is_empty() && !was_quoted => {
                    quoted = true;
                    was_quoted = true;
                }
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    was_quoted = false;
                }
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => break,
                _ => field.push(c),
            }
        }
        fields.push(field);
        let blank = fields.len() == 1 && fields[0].trim().is_empty() && !was_quoted;
        if !blank {
            records.push((start, fields));
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting_and_lines() {
        let text = "mr,ref\r\n\"a[1], b[2]\",\"He said \"\"hi\"\"\nthen left\"\n\nx,y";
        let rows = parse_csv(Path::new("t.csv"), text).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1],
            (
                2,
                vec![
                    "a[1], b[2]".to_string(),
                    "He said \"hi\"\nthen left".to_string()
                ]
            )
        );
        assert_eq!(rows[2], (5, vec!["x".to_string(), "y".to_string()]));
    }
}
