//! Run-config bad-input classes of issue 7 not covered by the unit tests in `src/config.rs`
//! (which cover unknown key + "did you mean", rank 0, negative learning rate, residual ratio 1.5):
//! a value of the wrong type, a misspelt override, an unreadable / non-UTF-8 file.

use crosslore_train::TrainConfig;

#[test]
fn wrong_type_names_the_file_and_key() {
    for (text, key) in [
        ("rank = \"eight\"", "rank"),
        ("learning_rate = true", "learning_rate"),
        ("layerwise = 3", "layerwise"),
    ] {
        let msg = TrainConfig::from_toml_str(text, "w.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("w.toml") && msg.contains(key),
            "{text}: the message must name the key: {msg}"
        );
    }
}

#[test]
fn misspelt_override_suggests_the_key() {
    let msg = TrainConfig::from_toml_str("", "o.toml", &["residual-ratoi=0.1".into()])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("residual_ratoi") && msg.contains("did you mean `residual_ratio`"),
        "{msg}"
    );
    let msg = TrainConfig::from_toml_str("", "o.toml", &["rank".into()])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("`rank`") && msg.contains("key=value"), "{msg}");
}

#[test]
fn unreadable_and_non_utf8_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.toml");
    let msg = TrainConfig::from_file(&missing, &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    let latin1 = dir.path().join("latin1.toml");
    std::fs::write(&latin1, b"task = \"caf\xe9\"\n").unwrap();
    let msg = TrainConfig::from_file(&latin1, &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&latin1.display().to_string()), "{msg}");
}

#[test]
fn zero_counts_are_rejected_with_the_key() {
    for key in ["max_bad_steps", "batch_size", "grad_accum", "log_every"] {
        let msg = TrainConfig::from_toml_str(&format!("{key} = 0"), "z.toml", &[])
            .and_then(|c| c.validate("z.toml").map(|_| c))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("z.toml") && msg.contains(key) && msg.contains("at least 1"),
            "{key}: {msg}"
        );
    }
}
