//! Golden tests against the Python reference packages. Fixtures come from
//! `scripts/fixtures/metrics_reference.py` (sacrebleu 2.5.1, nltk 3.9.1, rouge-score 0.1.2,
//! pycocoevalcap 1.2).
//!
//! Tolerance: every metric here is a short chain of the same IEEE-754 f64 operations as the
//! Python code (integer counts, divisions, a few `exp`/`ln`/`pow`), summed in the same order
//! (insertion-ordered counters). What can differ is the last bit of libm/numpy transcendental
//! functions and numpy's pairwise `mean`, i.e. a few ulp; we allow `1e-12` relative (+`1e-12`
//! absolute for values near 0), far below any real difference (one n-gram more or less moves
//! these scores by > 1e-4).

use std::path::PathBuf;

use crosslore_eval::{
    bleu_signature, cider_sentences, corpus_bleu, corpus_cider, corpus_meteor, corpus_nist,
    corpus_rouge, final_number, meteor_sentences, porter_stem, rouge_sentences, rouge_tokenize,
    score_corpus_with, sentence_bleu, tokenize_13a, tokenize_intl, BleuConfig, BleuTokenizer,
    CiderParams, EvalError, MeteorParams, Metric, RougeType, ScoreOptions,
};
use serde_json::Value;

const REL: f64 = 1e-12;
const ABS: f64 = 1e-12;

/// Fixture directory: `tests/fixtures`, or `$CROSSLORE_EVAL_FIXTURES` (e.g. a `--fuzz` set).
fn load(name: &str) -> Value {
    let dir = std::env::var_os("CROSSLORE_EVAL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"));
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON {}: {e}", path.display()))
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= ABS + REL * want.abs(),
        "{what}: got {got:.17e}, want {want:.17e} (diff {:.3e})",
        (got - want).abs()
    );
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

fn refs(v: &Value) -> Vec<Vec<String>> {
    v.as_array().expect("array").iter().map(strs).collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("int"))
        .collect()
}

fn cases(doc: &Value) -> &Vec<Value> {
    doc["cases"].as_array().expect("cases")
}

fn bleu_cfg(case: &Value, sentence: bool) -> BleuConfig {
    let mut cfg = if sentence {
        BleuConfig::sentence()
    } else {
        BleuConfig::default()
    };
    cfg.tokenizer = match case["tokenize"].as_str() {
        Some("13a") => BleuTokenizer::Thirteen,
        Some("intl") => BleuTokenizer::Intl,
        other => panic!("unexpected tokenizer {other:?}"),
    };
    cfg.lowercase = case["lowercase"].as_bool().expect("lowercase");
    cfg
}

#[test]
fn bleu_tokenizers_match_sacrebleu_reference() {
    let doc = load("bleu.json");
    for t in doc["tokenizers"].as_array().expect("tokenizers") {
        let input = t["input"].as_str().expect("input");
        assert_eq!(
            tokenize_13a(input),
            t["13a"].as_str().expect("13a"),
            "13a of {input:?}"
        );
        assert_eq!(
            tokenize_intl(input),
            t["intl"].as_str().expect("intl"),
            "intl of {input:?}"
        );
    }
}

#[test]
fn bleu_corpus_matches_sacrebleu_reference() {
    let doc = load("bleu.json");
    for c in cases(&doc) {
        let name = format!("{} tok={} lc={}", c["case"], c["tokenize"], c["lowercase"]);
        let (h, r) = (strs(&c["hyps"]), refs(&c["refs"]));
        let cfg = bleu_cfg(c, false);
        let s = corpus_bleu(&h, &r, &cfg).expect("bleu");
        assert_eq!(s.counts, u64s(&c["counts"]), "{name} counts");
        assert_eq!(s.totals, u64s(&c["totals"]), "{name} totals");
        assert_eq!(s.sys_len, c["sys_len"].as_u64().expect("sys_len"), "{name}");
        assert_eq!(s.ref_len, c["ref_len"].as_u64().expect("ref_len"), "{name}");
        close(s.bp, f(&c["bp"]), &format!("{name} bp"));
        close(s.score, f(&c["score"]), &format!("{name} score"));
        for (k, p) in c["precisions"]
            .as_array()
            .expect("precisions")
            .iter()
            .enumerate()
        {
            close(s.precisions[k], f(p), &format!("{name} precision {k}"));
        }
        assert_eq!(
            bleu_signature(&r, &cfg),
            c["signature"].as_str().expect("sig"),
            "{name}"
        );
    }
}

#[test]
fn bleu_sentence_matches_sacrebleu_reference() {
    let doc = load("bleu.json");
    for c in cases(&doc) {
        let cfg = bleu_cfg(c, true);
        let (h, r) = (strs(&c["hyps"]), refs(&c["refs"]));
        for (i, want) in c["sentence"]
            .as_array()
            .expect("sentence")
            .iter()
            .enumerate()
        {
            let s = sentence_bleu(&h[i], &r[i], &cfg).expect("sentence bleu");
            let name = format!("{} #{i}", c["case"]);
            assert_eq!(s.counts, u64s(&want["counts"]), "{name}");
            assert_eq!(s.totals, u64s(&want["totals"]), "{name}");
            close(s.score, f(&want["score"]), &name);
        }
    }
}

#[test]
fn nist_matches_nltk_reference() {
    let doc = load("nist.json");
    let mut defined = 0;
    for c in cases(&doc) {
        let (h, r) = (strs(&c["hyps"]), refs(&c["refs"]));
        let got = corpus_nist(&h, &r, 5);
        match c["nist"].as_f64() {
            Some(want) => {
                close(got.expect("nist"), want, &format!("nist {}", c["case"]));
                defined += 1;
            }
            None => assert!(
                matches!(
                    got,
                    Err(EvalError::Undefined {
                        metric: Metric::Nist,
                        ..
                    })
                ),
                "{}: nltk raised {}, we returned {got:?}",
                c["case"],
                c["python_error"]
            ),
        }
    }
    assert!(defined >= 8);
}

#[test]
fn meteor_matches_nltk_reference() {
    let doc = load("meteor.json");
    let p = MeteorParams::default();
    for c in cases(&doc) {
        let (h, r) = (strs(&c["hyps"]), refs(&c["refs"]));
        let per = meteor_sentences(&h, &r, &p).expect("meteor");
        for (i, want) in c["sentence"]
            .as_array()
            .expect("sentence")
            .iter()
            .enumerate()
        {
            close(per[i], f(want), &format!("meteor {} #{i}", c["case"]));
        }
        close(
            corpus_meteor(&h, &r, &p).expect("meteor"),
            f(&c["corpus"]),
            &format!("meteor corpus {}", c["case"]),
        );
    }
}

#[test]
fn porter_matches_nltk_reference() {
    let doc = load("porter.json");
    let pairs = doc["pairs"].as_array().expect("pairs");
    assert!(pairs.len() > 5000);
    let mut bad = Vec::new();
    for p in pairs {
        let (w, s) = (p[0].as_str().expect("word"), p[1].as_str().expect("stem"));
        let got = porter_stem(w);
        if got != s {
            bad.push(format!("{w:?}: got {got:?}, nltk {s:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} differ:\n{}",
        bad.len(),
        pairs.len(),
        bad.join("\n")
    );
}

#[test]
fn rouge_tokenizer_matches_rouge_score_reference() {
    let doc = load("rouge.json");
    for t in doc["tokenizer"].as_array().expect("tokenizer") {
        let input = t["input"].as_str().expect("input");
        assert_eq!(rouge_tokenize(input, false), strs(&t["plain"]), "{input:?}");
        assert_eq!(
            rouge_tokenize(input, true),
            strs(&t["stemmed"]),
            "{input:?} stemmed"
        );
    }
}

#[test]
fn rouge_matches_rouge_score_reference() {
    let doc = load("rouge.json");
    for c in cases(&doc) {
        let stem = c["use_stemmer"].as_bool().expect("use_stemmer");
        let (h, r) = (strs(&c["hyps"]), refs(&c["refs"]));
        for (i, toks) in c["hyp_tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .enumerate()
        {
            assert_eq!(
                rouge_tokenize(&h[i], stem),
                strs(toks),
                "{} tokens #{i}",
                c["case"]
            );
        }
        for kind in RougeType::DEFAULT {
            let key = kind.key();
            let per = rouge_sentences(&h, &r, kind, stem).expect("rouge");
            for (i, want) in c["sentence"]
                .as_array()
                .expect("sentence")
                .iter()
                .enumerate()
            {
                let w = want[&key].as_array().expect("prf");
                let name = format!("{} {key} stem={stem} #{i}", c["case"]);
                close(per[i].precision, f(&w[0]), &format!("{name} P"));
                close(per[i].recall, f(&w[1]), &format!("{name} R"));
                close(per[i].fmeasure, f(&w[2]), &format!("{name} F"));
            }
            let corpus = corpus_rouge(&h, &r, kind, stem).expect("rouge");
            let w = c["corpus"][&key].as_array().expect("corpus prf");
            let name = format!("{} {key} stem={stem} corpus", c["case"]);
            close(corpus.precision, f(&w[0]), &name);
            close(corpus.recall, f(&w[1]), &name);
            close(corpus.fmeasure, f(&w[2]), &name);
        }
    }
}

#[test]
fn cider_matches_pycocoevalcap_reference() {
    let doc = load("cider.json");
    let p = CiderParams::default();
    for c in cases(&doc) {
        let (h, r) = (strs(&c["hyps"]), refs(&c["refs"]));
        let per = cider_sentences(&h, &r, &p).expect("cider");
        for (i, want) in c["sentence"]
            .as_array()
            .expect("sentence")
            .iter()
            .enumerate()
        {
            close(per[i], f(want), &format!("cider {} #{i}", c["case"]));
        }
        close(
            corpus_cider(&h, &r, &p).expect("cider"),
            f(&c["corpus"]),
            &format!("cider corpus {}", c["case"]),
        );
    }
}

#[test]
fn accuracy_number_extraction_reference() {
    let doc = load("accuracy.json");
    for c in doc["numbers"].as_array().expect("numbers") {
        let text = c["text"].as_str().expect("text");
        let gold = c["gold"].as_str().expect("gold");
        let p = final_number(text);
        match c["pred_value"].as_f64() {
            Some(want) => close(p.expect("a number"), want, &format!("number in {text:?}")),
            None => assert_eq!(p, None, "{text:?}"),
        }
        let want = c["correct"].as_bool().expect("correct");
        assert_eq!(
            crosslore_eval::answers_match(text, gold),
            want,
            "{text:?} vs {gold:?}"
        );
    }
}

#[test]
fn score_corpus_matches_reference() {
    // the entry point the CLI uses, on the E2E-like sample, against the per-package fixtures
    let (bleu, nist, meteor, rouge, cider) = (
        load("bleu.json"),
        load("nist.json"),
        load("meteor.json"),
        load("rouge.json"),
        load("cider.json"),
    );
    let pick = |doc: &Value, extra: &dyn Fn(&Value) -> bool| -> Value {
        cases(doc)
            .iter()
            .find(|c| c["case"] == "e2e_sample" && extra(c))
            .expect("e2e_sample case")
            .clone()
    };
    let b = pick(&bleu, &|c| {
        c["tokenize"] == "13a" && c["lowercase"] == false
    });
    let (h, r) = (strs(&b["hyps"]), refs(&b["refs"]));
    let metrics = Metric::parse_list("bleu,nist,meteor,rouge,cider").expect("metrics");
    let got = score_corpus_with(&metrics, &h, &r, &ScoreOptions::default()).expect("score");
    close(got["bleu"], f(&b["score"]), "bleu");
    close(got["nist"], f(&pick(&nist, &|_| true)["nist"]), "nist");
    close(
        got["meteor"],
        f(&pick(&meteor, &|_| true)["corpus"]),
        "meteor",
    );
    let rg = pick(&rouge, &|c| c["use_stemmer"] == true);
    for key in ["rouge1", "rouge2", "rougeL", "rougeLsum"] {
        close(got[key], f(&rg["corpus"][key][2]), key);
    }
    close(got["cider"], f(&pick(&cider, &|_| true)["corpus"]), "cider");
    assert_eq!(got.len(), 8);
}
