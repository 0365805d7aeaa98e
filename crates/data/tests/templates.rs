//! Chat templates against the texts `transformers.apply_chat_template` renders
//! (fixture by scripts/fixtures/chat_templates.py: SmolLM2's template from its GGUF, Meta's
//! LLaMA-2 template), and the plain template's documented format.

use std::path::Path;

use crosslore_data::{Message, Prompt, Role, Template, SMOLLM2_DEFAULT_SYSTEM};
use serde_json::Value;

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat_templates.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn prompt_of(case: &Value) -> Prompt {
    let turns = case["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let role = match t[0].as_str().unwrap() {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                r => panic!("role {r}"),
            };
            Message {
                role,
                content: t[1].as_str().unwrap().to_string(),
            }
        })
        .collect();
    Prompt {
        system: case["system"].as_str().map(str::to_string),
        turns,
    }
}

fn check(template: Template, key: &str) {
    let fx = fixture();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let (name, prompt, target) = (
            case["name"].as_str().unwrap(),
            prompt_of(case),
            case["target"].as_str().unwrap(),
        );
        assert_eq!(
            template.render_prompt(&prompt),
            case[key]["prompt"].as_str().unwrap(),
            "{key} prompt, case {name}"
        );
        assert_eq!(
            template.render_conversation(&prompt, target),
            case[key]["conversation"].as_str().unwrap(),
            "{key} conversation, case {name}"
        );
    }
}

#[test]
fn chatml_matches_smollm2_reference() {
    check(Template::ChatMl, "chatml");
    assert!(fixture()["smollm2_chat_template"]
        .as_str()
        .unwrap()
        .contains(SMOLLM2_DEFAULT_SYSTEM));
    assert_eq!(Template::ChatMl.end_of_turn(), Some("<|im_end|>"));
}

#[test]
fn llama2_matches_hf_reference() {
    check(Template::Llama2, "llama2");
    assert_eq!(Template::Llama2.end_of_turn(), Some("</s>"));
}

#[test]
fn plain_template_format() {
    let p = Prompt {
        system: Some("Sys.".into()),
        turns: vec![
            Message::user("Q1"),
            Message::assistant("A1"),
            Message::user("Q2"),
        ],
    };
    assert_eq!(Template::Plain.render_prompt(&p), "Sys.\n\nQ1\nA1\nQ2\n");
    assert_eq!(
        Template::Plain.render_conversation(&p, "A2"),
        "Sys.\n\nQ1\nA1\nQ2\nA2\n"
    );
    assert_eq!(Template::Plain.render_prompt(&Prompt::user("Q")), "Q\n");
    assert_eq!(Template::Plain.end_of_turn(), None);
}

#[test]
fn template_names() {
    for t in Template::ALL {
        assert_eq!(t.name().parse::<Template>().unwrap(), t);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            format!("\"{}\"", t.name())
        );
    }
    assert!("chatm1".parse::<Template>().is_err());
    assert_eq!(Template::default(), Template::ChatMl);
}
