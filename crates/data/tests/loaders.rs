//! Every loader on valid input (hand-made fixtures; expected values are the fixtures' own
//! content) and on malformed input, asserting the file, line and field named in the error.

use std::path::{Path, PathBuf};

use crosslore_data::{expand_references, Answer, DataError, Format, Role};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Writes `bytes` to `<tmp>/<name>` and loads it with `format`.
fn load_bytes(
    format: Format,
    name: &str,
    bytes: &[u8],
) -> (
    tempfile::TempDir,
    Result<Vec<crosslore_data::Example>, DataError>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write");
    let r = format.load(&path);
    (dir, r)
}

/// Loads `text` and returns the error message, asserting it names `name:line` and every `needle`.
fn err(format: Format, name: &str, text: &str, line: usize, needles: &[&str]) -> String {
    let (_dir, r) = load_bytes(format, name, text.as_bytes());
    let msg = match r {
        Ok(v) => panic!(
            "{format} {name}: expected an error, loaded {} examples",
            v.len()
        ),
        Err(e) => e.to_string(),
    };
    assert!(
        msg.contains(&format!("{name}:{line}:")),
        "`{msg}` should name {name}:{line}"
    );
    for n in needles {
        assert!(msg.contains(n), "`{msg}` should contain `{n}`");
    }
    msg
}

fn number(a: &Option<Answer>) -> f64 {
    match a {
        Some(Answer::Number(x)) => *x,
        other => panic!("expected a number answer, got {other:?}"),
    }
}

// ---------------------------------------------------------------- GSM8k

#[test]
fn gsm8k_fixture_loads() {
    let ex = Format::Gsm8k.load(&fixture("gsm8k.jsonl")).unwrap();
    assert_eq!(ex.len(), 3, "blank line skipped");
    assert_eq!(
        ex.iter().map(|e| number(&e.answer)).collect::<Vec<_>>(),
        vec![36.0, 1200.0, 5.5]
    );
    assert!(ex[0]
        .target
        .starts_with("In the afternoon she makes 12 * 2 = <<12*2=24>>24 loaves."));
    assert!(ex[0].target.ends_with("#### 36"));
    assert_eq!(ex[0].references, vec![ex[0].target.clone()]);
    let user = &ex[1].prompt.turns[0];
    assert_eq!(user.role, Role::User);
    assert!(user
        .content
        .starts_with("Tom saves $150 a month for 8 months. How much has he saved?"));
    assert!(ex[1].prompt.system.is_none());
}

#[test]
fn gsm8k_malformed_rows_name_file_line_field() {
    let ok = r#"{"question": "q", "answer": "a\n#### 1"}"#;
    err(
        Format::Gsm8k,
        "g.jsonl",
        &format!("{ok}\n{{\"question\": \"q\"}}\n"),
        2,
        &["field `answer`", "missing"],
    );
    err(
        Format::Gsm8k,
        "g.jsonl",
        &format!("{ok}\n{ok}\n{{\"question\": \"q\", \"answer\": \"no marker\"}}"),
        3,
        &["field `answer`", "####"],
    );
    err(
        Format::Gsm8k,
        "g.jsonl",
        r#####"{"question": 7, "answer": "#### 1"}"#####,
        1,
        &["field `question`", "expected a string, found a number"],
    );
    err(
        Format::Gsm8k,
        "g.jsonl",
        r#####"{"question": "  ", "answer": "#### 1"}"#####,
        1,
        &["field `question`", "empty"],
    );
    err(
        Format::Gsm8k,
        "g.jsonl",
        &format!("{ok}\n\n{{\"question\": \"q\", \"answer\": }}\n"),
        3,
        &["malformed JSON"],
    );
    err(
        Format::Gsm8k,
        "g.jsonl",
        "[1, 2]",
        1,
        &["expected a JSON object, found a number"],
    );
    err(
        Format::Gsm8k,
        "g.jsonl",
        "\"just a string\"",
        1,
        &["expected a JSON object, found a string"],
    );
}

#[test]
fn empty_and_unreadable_files_are_clear_errors() {
    for text in ["", "  \n\n \n", "[]", "[\n]\n"] {
        let (_d, r) = load_bytes(Format::Gsm8k, "e.jsonl", text.as_bytes());
        let msg = r.unwrap_err().to_string();
        assert!(
            msg.contains("e.jsonl") && msg.contains("empty dataset"),
            "{msg}"
        );
    }
    let missing = Format::Xsum
        .load(Path::new("/nonexistent/x.jsonl"))
        .unwrap_err();
    assert!(matches!(missing, DataError::Io { .. }));
    assert!(missing
        .to_string()
        .contains("/nonexistent/x.jsonl: cannot read"));
}

#[test]
fn non_utf8_names_the_line() {
    let mut bytes = br#####"{"question": "q", "answer": "#### 1"}"#####.to_vec();
    bytes.extend_from_slice(b"\n{\"question\": \"caf\xe9\", \"answer\": \"#### 2\"}\n");
    let (_d, r) = load_bytes(Format::Gsm8k, "latin1.jsonl", &bytes);
    let e = r.unwrap_err();
    assert!(matches!(e, DataError::NotUtf8 { line: 2, .. }), "{e:?}");
    assert!(e.to_string().contains("latin1.jsonl:2: not valid UTF-8"));
}

#[test]
fn utf8_bom_is_accepted() {
    let text = "\u{feff}{\"question\": \"q\", \"answer\": \"#### 3\"}\n";
    let (_d, r) = load_bytes(Format::Gsm8k, "bom.jsonl", text.as_bytes());
    assert_eq!(number(&r.unwrap()[0].answer), 3.0);
}

// ---------------------------------------------------------------- MAWPS

#[test]
fn mawps_release_fixture_loads() {
    let ex = Format::Mawps.load(&fixture("mawps.json")).unwrap();
    assert_eq!(ex.len(), 3);
    assert_eq!(
        ex.iter().map(|e| number(&e.answer)).collect::<Vec<_>>(),
        vec![43.0, 12.0, 2.5]
    );
    assert_eq!(ex[0].target, "X=(70.0-27.0)\n#### 43");
    assert_eq!(ex[2].target, "X=(10.0/4.0)\n#### 2.5");
    assert_eq!(
        ex.iter().map(|e| e.id.clone().unwrap()).collect::<Vec<_>>(),
        vec!["1", "2", "3"]
    );
    assert!(ex[1].prompt.turns[0]
        .content
        .starts_with("There are 3 boxes with 4 pens each. How many pens are there?"));
}

#[test]
fn mawps_flat_fixture_loads() {
    let ex = Format::Mawps.load(&fixture("mawps_flat.json")).unwrap();
    assert_eq!(ex.len(), 2);
    assert!(ex[0].prompt.turns[0].content.starts_with(
        "Jack had 8 pens and Mary had 5 pens. How many pens do they have altogether?"
    ));
    assert_eq!(ex[0].target, "( 8.0 + 5.0 )\n#### 13");
    assert_eq!(ex[1].target, "#### 5");
    assert_eq!(number(&ex[1].answer), 5.0);
    assert_eq!(ex[0].id.as_deref(), Some("chal-1"));
}

#[test]
fn mawps_malformed_records_name_the_element_line() {
    let text = "[\n  {\"sQuestion\": \"a?\", \"lSolutions\": [1]},\n\n  {\n    \"sQuestion\": \"b?\",\n    \"lEquations\": [\"X=1\"]\n  }\n]\n";
    err(
        Format::Mawps,
        "m.json",
        text,
        4,
        &["field `lSolutions`", "missing"],
    );
    let text = "[{\"sQuestion\": \"a?\", \"lSolutions\": [\"many\"]}]";
    err(
        Format::Mawps,
        "m.json",
        text,
        1,
        &["field `lSolutions[0]`", "expected a number"],
    );
    let text = "[{\"sQuestion\": \"a?\", \"lSolutions\": []}]";
    err(
        Format::Mawps,
        "m.json",
        text,
        1,
        &["field `lSolutions`", "empty"],
    );
    let text = "[{\"sQuestion\": \"a?\", \"lSolutions\": [1], \"lEquations\": \"X=1\"}]";
    err(
        Format::Mawps,
        "m.json",
        text,
        1,
        &["field `lEquations`", "expected an array"],
    );
    let text = "[\n{\"iIndex\": 1, \"lSolutions\": [1]}\n]";
    err(
        Format::Mawps,
        "m.json",
        text,
        2,
        &["field `sQuestion`", "missing"],
    );
    let text = "[\n{\"Question\": \"q\", \"Answer\": true}\n]";
    err(
        Format::Mawps,
        "m.json",
        text,
        2,
        &["field `Answer`", "expected a number, found a boolean"],
    );
    let text = "[\n {\"sQuestion\": \"a?\",\n  \"lSolutions\": [1,]}\n]";
    err(Format::Mawps, "m.json", text, 3, &["malformed JSON"]);
}

// ---------------------------------------------------------------- E2E

#[test]
fn e2e_csv_groups_references_by_mr() {
    let ex = Format::E2eCsv.load(&fixture("e2e.csv")).unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!(
        ex[0].prompt.turns[0].content,
        "Describe this restaurant: name[The Vaults], eatType[pub], priceRange[more than £30]"
    );
    assert_eq!(
        ex[0].references,
        vec![
            "The Vaults pub near Café Adriatic has a 5 star rating.",
            "Visit the pub \"The Vaults\" for a pricey meal."
        ]
    );
    assert_eq!(ex[0].target, ex[0].references[0]);
    assert_eq!(ex[1].references.len(), 1);
    let train = expand_references(&ex);
    assert_eq!(train.len(), 3);
    assert_eq!(
        train[1].target,
        "Visit the pub \"The Vaults\" for a pricey meal."
    );
    assert_eq!(train[1].references, ex[0].references);
}

#[test]
fn e2e_csv_malformed() {
    err(
        Format::E2eCsv,
        "e.csv",
        "mr,text\n\"a[1]\",\"x\"\n",
        1,
        &["field `ref`", "header"],
    );
    err(
        Format::E2eCsv,
        "e.csv",
        "mr,ref\n\"a[1]\",x\n\"b[2]\"\n",
        3,
        &["expected 2 columns"],
    );
    err(
        Format::E2eCsv,
        "e.csv",
        "mr,ref\n\"a[1]\",x\n\"\",y\n",
        3,
        &["field `mr`", "empty"],
    );
    err(
        Format::E2eCsv,
        "e.csv",
        "mr,ref\n\"a[1]\",x\n\"b[2],y\n",
        3,
        &["unterminated"],
    );
    let (_d, r) = load_bytes(Format::E2eCsv, "e.csv", b"mr,ref\n\n");
    assert!(r.unwrap_err().to_string().contains("empty dataset"));
}

#[test]
fn e2e_jsonl_loads_and_rejects_bad_references() {
    let text = "{\"id\": \"e2e-mr-0\", \"mr\": \"name: X\", \"references\": [\"r1\", \"r2\"]}\n";
    let (_d, r) = load_bytes(Format::E2eNlg, "e.jsonl", text.as_bytes());
    let ex = r.unwrap();
    assert_eq!(ex[0].references, vec!["r1", "r2"]);
    assert_eq!(ex[0].id.as_deref(), Some("e2e-mr-0"));
    assert_eq!(
        ex[0].prompt.turns[0].content,
        "Describe this restaurant: name: X"
    );
    err(
        Format::E2eNlg,
        "e.jsonl",
        &format!("{text}{{\"mr\": \"m\", \"references\": []}}"),
        2,
        &["field `references`", "empty"],
    );
    err(
        Format::E2eNlg,
        "e.jsonl",
        "{\"mr\": \"m\", \"references\": [\"a\", 3]}",
        1,
        &["field `references[1]`", "found a number"],
    );
    err(
        Format::E2eNlg,
        "e.jsonl",
        "{\"references\": [\"a\"]}",
        1,
        &["field `mr`", "missing"],
    );
}

// ---------------------------------------------------------------- MathQA

#[test]
fn mathqa_both_layouts() {
    let shipped = r#"{"id": "mathqa-0", "question": "what is 2 + 3 ?", "options": ["4", "5", "6"], "answer": "b"}"#;
    let (_d, r) = load_bytes(Format::Mathqa, "m.jsonl", shipped.as_bytes());
    let ex = r.unwrap();
    assert_eq!(ex[0].target, "b");
    assert_eq!(
        ex[0].answer,
        Some(Answer::Choice {
            letter: 'b',
            option: "5".into()
        })
    );
    assert_eq!(
        ex[0].prompt.turns[0].content,
        "what is 2 + 3 ?\nOptions: a) 4, b) 5, c) 6\nAnswer with the option letter."
    );
    let release = r#"[{"Problem": "what is 2 + 3 ?", "Rationale": "2 + 3 = 5", "options": "a ) 4 , b ) 5 , c ) 6", "correct": "b"}]"#;
    let (_d, r) = load_bytes(Format::Mathqa, "m.json", release.as_bytes());
    let ex2 = r.unwrap();
    assert_eq!(ex2[0].prompt, ex[0].prompt);
    assert_eq!(ex2[0].answer, ex[0].answer);
}

#[test]
fn mathqa_malformed() {
    err(
        Format::Mathqa,
        "m.jsonl",
        r#"{"question": "q", "options": ["1", "2"], "answer": "c"}"#,
        1,
        &["field `answer`", "`ab`"],
    );
    err(
        Format::Mathqa,
        "m.jsonl",
        r#"{"question": "q", "options": "1, 2", "answer": "a"}"#,
        1,
        &["field `options`", "expected an array"],
    );
    err(
        Format::Mathqa,
        "m.jsonl",
        r#"{"question": "q", "options": ["1"], "answer": "a"}"#,
        1,
        &["field `options`", "2 to 26"],
    );
    err(
        Format::Mathqa,
        "m.json",
        r#"[{"Problem": "q", "options": "1, 2", "correct": "a"}]"#,
        1,
        &["field `options`", "a ) "],
    );
}

// ---------------------------------------------------------------- summarization

#[test]
fn summarization_formats() {
    let (_d, r) = load_bytes(
        Format::CnnDm,
        "c.jsonl",
        br#"{"id": "abc", "article": "Long text.", "highlights": "Point one .\nPoint two ."}"#,
    );
    let ex = r.unwrap();
    assert_eq!(ex[0].target, "Point one .\nPoint two .");
    assert!(ex[0].prompt.turns[0].content.ends_with("\n\nLong text."));
    assert_eq!(ex[0].id.as_deref(), Some("abc"));
    let (_d, r) = load_bytes(
        Format::Xsum,
        "x.jsonl",
        br#"{"document": "Doc.", "summary": "One sentence."}"#,
    );
    assert_eq!(r.unwrap()[0].target, "One sentence.");
    err(
        Format::Xsum,
        "x.jsonl",
        r#"{"document": "Doc.", "summary": ["One"]}"#,
        1,
        &["field `summary`", "found an array"],
    );
    err(
        Format::CnnDm,
        "c.jsonl",
        r#"{"document": "Doc.", "highlights": "h"}"#,
        1,
        &["field `article`", "missing"],
    );
}

// ---------------------------------------------------------------- generic formats

#[test]
fn alpaca_format() {
    let text = r#"[
 {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
 {"instruction": "Say hi.", "input": "", "output": "hi", "system": "Be brief.",
  "history": [["Hello", "Hello!"]]}
]"#;
    let (_d, r) = load_bytes(Format::Alpaca, "a.json", text.as_bytes());
    let ex = r.unwrap();
    assert_eq!(ex[0].prompt.turns[0].content, "Translate to French.\ncat");
    assert_eq!(ex[0].target, "chat");
    assert_eq!(ex[1].prompt.system.as_deref(), Some("Be brief."));
    let roles: Vec<Role> = ex[1].prompt.turns.iter().map(|m| m.role).collect();
    assert_eq!(roles, vec![Role::User, Role::Assistant, Role::User]);
    assert_eq!(ex[1].prompt.turns[2].content, "Say hi.");
    let bad = "[\n{\"instruction\": \"i\", \"output\": \"o\"},\n{\"instruction\": \"i\", \"output\": \"o\", \"history\": [[\"only one\"]]}\n]";
    err(
        Format::Alpaca,
        "a.json",
        bad,
        3,
        &["field `history[0]`", "pair"],
    );
    err(
        Format::Alpaca,
        "a.json",
        "[{\"instruction\": \"i\", \"input\": 3, \"output\": \"o\"}]",
        1,
        &["field `input`", "found a number"],
    );
    err(
        Format::Alpaca,
        "a.json",
        "[{\"instruction\": \"i\"}]",
        1,
        &["field `output`", "missing"],
    );
}

#[test]
fn prompt_response_format() {
    let (_d, r) = load_bytes(
        Format::PromptResponse,
        "p.jsonl",
        br#"{"prompt": "2+2?", "response": "4", "system": "Math."}"#,
    );
    let ex = r.unwrap();
    assert_eq!(
        (
            ex[0].prompt.turns[0].content.as_str(),
            ex[0].target.as_str()
        ),
        ("2+2?", "4")
    );
    assert_eq!(ex[0].prompt.system.as_deref(), Some("Math."));
    err(
        Format::PromptResponse,
        "p.jsonl",
        "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"a\"}",
        2,
        &["field `response`", "missing"],
    );
}

#[test]
fn chat_format() {
    let text = r#"{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"}, {"role": "assistant", "content": "a2"}]}"#;
    let (_d, r) = load_bytes(Format::Chat, "c.jsonl", text.as_bytes());
    let ex = r.unwrap();
    assert_eq!(ex[0].prompt.system.as_deref(), Some("S"));
    assert_eq!(ex[0].prompt.turns.len(), 3);
    assert_eq!(ex[0].target, "a2");
    err(
        Format::Chat,
        "c.jsonl",
        r#"{"messages": [{"role": "user", "content": "u"}]}"#,
        1,
        &["field `messages`", "assistant"],
    );
    err(
        Format::Chat,
        "c.jsonl",
        r#"{"messages": [{"role": "user", "content": "u"}, {"role": "bot", "content": "a"}]}"#,
        1,
        &["field `messages[1].role`", "\"bot\""],
    );
    err(
        Format::Chat,
        "c.jsonl",
        r#"{"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}"#,
        1,
        &["field `messages[0].content`"],
    );
    err(
        Format::Chat,
        "c.jsonl",
        r#"{"messages": [{"role": "assistant", "content": "a"}]}"#,
        1,
        &["field `messages[0].role`", "expected \"user\""],
    );
    err(
        Format::Chat,
        "c.jsonl",
        r#"{"messages": {"role": "user"}}"#,
        1,
        &["field `messages`", "expected an array"],
    );
}

#[test]
fn format_names_round_trip() {
    for f in Format::ALL {
        assert_eq!(f.name().parse::<Format>().unwrap(), f);
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            format!("\"{}\"", f.name())
        );
    }
    let e = "gsm9k".parse::<Format>().unwrap_err().to_string();
    assert!(
        e.contains("unknown format `gsm9k`") && e.contains("gsm8k"),
        "{e}"
    );
}

#[test]
fn formats_are_detected_from_fields() {
    let cases: [(&str, &str, Format); 10] = [
        (
            "a.jsonl",
            r#"{"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}"#,
            Format::Chat,
        ),
        (
            "a.json",
            r#"[{"instruction": "i", "input": "", "output": "o"}]"#,
            Format::Alpaca,
        ),
        (
            "a.jsonl",
            r#"{"prompt": "p", "response": "r"}"#,
            Format::PromptResponse,
        ),
        (
            "a.jsonl",
            r#"{"mr": "m", "references": ["r"]}"#,
            Format::E2eNlg,
        ),
        (
            "a.jsonl",
            r#"{"question": "q", "options": ["1", "2"], "answer": "a"}"#,
            Format::Mathqa,
        ),
        (
            "a.json",
            r#"[{"sQuestion": "q", "lSolutions": [1]}]"#,
            Format::Mawps,
        ),
        (
            "a.jsonl",
            "{\"question\": \"q\", \"answer\": \"#### 1\"}",
            Format::Gsm8k,
        ),
        (
            "a.jsonl",
            r#"{"article": "a", "highlights": "h"}"#,
            Format::CnnDm,
        ),
        (
            "a.jsonl",
            r#"{"document": "d", "summary": "s"}"#,
            Format::Xsum,
        ),
        ("a.csv", "mr,ref\n\"m\",r\n", Format::E2eCsv),
    ];
    for (name, text, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (got, ex) = Format::load_detected(&path).unwrap();
        assert_eq!(got, want, "{text}");
        assert_eq!(ex.len(), 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.jsonl");
    std::fs::write(&path, "\n{\"foo\": 1}").unwrap();
    let msg = Format::load_detected(&path).unwrap_err().to_string();
    assert!(
        msg.contains("u.jsonl:2:") && msg.contains("cannot tell the format"),
        "{msg}"
    );
}
