//! Encoding (loss mask, EOS, truncation) and batching (padding, packing, seeded shuffling,
//! resume) with a tiny word-level tokenizer built in the test.

use std::str::FromStr;

use crosslore_data::{
    pack, pad, Batch, BatchConfig, BatchIter, Collate, DataError, DataPosition, EncodeConfig,
    Encoded, Encoder, Example, Prompt, Template, Tokenizer, IGNORE_INDEX,
};

const WORDS: [&str; 16] = [
    "[UNK]",
    "<pad>",
    "</s>",
    "<|im_start|>",
    "<|im_end|>",
    "a",
    "b",
    "c",
    "d",
    "e",
    "f",
    "g",
    "system",
    "user",
    "assistant",
    "x",
];
const SPECIAL: [&str; 4] = ["<pad>", "</s>", "<|im_start|>", "<|im_end|>"];

/// A whitespace word-level tokenizer over `WORDS` (ids = positions), with the chat markers as
/// special tokens; other words map to `[UNK]`.
fn tokenizer() -> Tokenizer {
    let vocab: serde_json::Map<String, serde_json::Value> = WORDS
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), serde_json::json!(i)))
        .collect();
    let added: Vec<serde_json::Value> = SPECIAL
        .iter()
        .map(|w| {
            serde_json::json!({"id": id(w), "content": w, "single_word": false, "lstrip": false,
                               "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    Tokenizer::from_str(&json.to_string()).unwrap()
}

fn id(w: &str) -> u32 {
    WORDS.iter().position(|x| *x == w).unwrap() as u32
}

fn ids(words: &str) -> Vec<u32> {
    words.split_whitespace().map(id).collect()
}

fn ex(prompt: &str, target: &str) -> Example {
    Example::new(Prompt::user(prompt), target.to_string(), None)
}

fn plain(max_len: usize) -> EncodeConfig {
    EncodeConfig {
        eos_token: Some("</s>".into()),
        ..EncodeConfig::new(Template::Plain, max_len)
    }
}

#[test]
fn labels_mask_the_prompt_and_keep_target_plus_eos() {
    let tok = tokenizer();
    let enc = Encoder::new(&tok, plain(64)).unwrap();
    let e = enc.encode(&ex("a b c", "d e")).unwrap().unwrap();
    let mut want_ids = ids("a b c d e");
    want_ids.push(id("</s>"));
    assert_eq!(e.input_ids, want_ids);
    let want_labels: Vec<i64> = [IGNORE_INDEX; 3]
        .into_iter()
        .chain(ids("d e </s>").into_iter().map(i64::from))
        .collect();
    assert_eq!(e.labels, want_labels);
    assert!(!e.truncated);
    assert_eq!(e.target_tokens(), 3);
}

#[test]
fn chatml_eos_is_im_end_and_only_the_answer_is_trained() {
    let tok = tokenizer();
    let enc = Encoder::new(&tok, EncodeConfig::new(Template::ChatMl, 256)).unwrap();
    assert_eq!(enc.eos_id(), id("<|im_end|>"));
    let example = Example {
        prompt: Prompt {
            system: Some("x".into()),
            ..Prompt::user("a b")
        },
        ..ex("", "f g")
    };
    let e = enc.encode(&example).unwrap().unwrap();
    // <|im_start|> system x <|im_end|> <|im_start|> user a b <|im_end|> <|im_start|> assistant | f g <|im_end|>
    let prompt = ids(
        "<|im_start|> system x <|im_end|> <|im_start|> user a b <|im_end|> <|im_start|> assistant",
    );
    assert_eq!(enc.encode_prompt(&example.prompt).unwrap(), prompt);
    assert_eq!(&e.input_ids[..prompt.len()], &prompt[..]);
    assert!(e.labels[..prompt.len()].iter().all(|&l| l == IGNORE_INDEX));
    let tail: Vec<i64> = ids("f g <|im_end|>").into_iter().map(i64::from).collect();
    assert_eq!(&e.labels[prompt.len()..], &tail[..]);
    assert_eq!(e.input_ids.last(), Some(&id("<|im_end|>")));
}

#[test]
fn truncation_is_counted_and_prompt_only_examples_dropped() {
    let tok = tokenizer();
    let enc = Encoder::new(&tok, plain(5)).unwrap();
    // 3 prompt + 2 target + EOS = 6 > 5: cut, EOS lost, target kept.
    let cut = enc.encode(&ex("a b c", "d e")).unwrap().unwrap();
    assert!(cut.truncated);
    assert_eq!(cut.input_ids, ids("a b c d e"));
    assert_eq!(cut.target_tokens(), 2);
    let set = enc
        .encode_all(&[
            ex("a", "b"),
            ex("a b c", "d e"),
            ex("a b c d e f", "g"),
            ex("a b c d e", "f"),
            ex("a b", "c"),
        ])
        .unwrap();
    assert_eq!(set.examples.len(), 3);
    assert_eq!(set.truncated, 1);
    assert_eq!(set.dropped, 2);
    assert!(set.examples.iter().all(|e| e.len() <= 5));
}

#[test]
fn encoder_config_errors() {
    let tok = tokenizer();
    let e = Encoder::new(&tok, EncodeConfig::new(Template::Plain, 8))
        .err()
        .unwrap();
    assert!(
        matches!(
            e,
            DataError::Config {
                field: "eos_token",
                ..
            }
        ),
        "{e}"
    );
    let cfg = EncodeConfig {
        eos_token: Some("<eos>".into()),
        ..EncodeConfig::new(Template::Plain, 8)
    };
    let e = Encoder::new(&tok, cfg).err().unwrap();
    assert!(
        e.to_string().contains("`<eos>` is not in the vocabulary"),
        "{e}"
    );
    assert!(Encoder::new(&tok, EncodeConfig::new(Template::Llama2, 8)).is_ok());
    assert!(Encoder::new(&tok, plain(1)).is_err());
}

fn encoded(n_prompt: usize, n_target: usize, first: u32) -> Encoded {
    let n = n_prompt + n_target;
    let input_ids: Vec<u32> = (0..n as u32).map(|k| first + k).collect();
    let labels = (0..n)
        .map(|k| {
            if k < n_prompt {
                IGNORE_INDEX
            } else {
                i64::from(input_ids[k])
            }
        })
        .collect();
    Encoded {
        input_ids,
        labels,
        truncated: false,
    }
}

#[test]
fn padding_is_right_with_pad_id_and_masked() {
    let (a, b) = (encoded(2, 2, 100), encoded(1, 1, 200));
    let batch = pad(&[&a, &b], 7);
    assert_eq!(
        (batch.batch_size, batch.seq_len, batch.n_examples),
        (2, 4, 2)
    );
    assert_eq!(batch.input_ids, vec![100, 101, 102, 103, 200, 201, 7, 7]);
    assert_eq!(batch.attention_mask, vec![1, 1, 1, 1, 1, 1, 0, 0]);
    assert_eq!(
        batch.labels,
        vec![-100, -100, 102, 103, -100, 201, -100, -100]
    );
    assert_eq!(batch.position_ids, vec![0, 1, 2, 3, 0, 1, 0, 0]);
    let (targets, mask) = batch.next_token_targets();
    assert_eq!(mask, vec![0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(targets, vec![0, 102, 103, 0, 201, 0, 0, 0]);
    assert_eq!(mask.iter().sum::<f32>() as usize, batch.target_tokens());
}

#[test]
fn packing_keeps_examples_whole_and_never_crosses_boundaries() {
    // The second example's first token is a target token: its loss must not be predicted from the
    // previous example's last token.
    let (a, b, c) = (encoded(2, 2, 10), encoded(0, 3, 20), encoded(1, 4, 30));
    let (batch, used) = pack(&[&a, &b, &c], 2, 8, 0);
    assert_eq!(used, 3);
    assert_eq!(
        (batch.batch_size, batch.seq_len, batch.n_examples),
        (2, 8, 3)
    );
    assert_eq!(&batch.input_ids[..8], &[10, 11, 12, 13, 20, 21, 22, 0]);
    assert_eq!(&batch.input_ids[8..], &[30, 31, 32, 33, 34, 0, 0, 0]);
    assert_eq!(&batch.position_ids[..8], &[0, 1, 2, 3, 0, 1, 2, 0]);
    let (targets, mask) = batch.next_token_targets();
    assert_eq!(&mask[..8], &[0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    assert_eq!(&targets[4..6], &[21, 22]);
    assert_eq!(&mask[8..], &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    // Only one row: the third example does not fit and is left for the next batch.
    let (one, used) = pack(&[&a, &b, &c], 1, 8, 0);
    assert_eq!((one.batch_size, used), (1, 2));
}

fn config(collate: Collate, seed: u64) -> BatchConfig {
    BatchConfig {
        batch_size: 3,
        collate,
        max_len: 12,
        pad_id: 0,
        shuffle: true,
        seed,
        drop_last: false,
    }
}

fn dataset(n: usize) -> Vec<Encoded> {
    (0..n)
        .map(|i| encoded(1 + i % 3, 1 + i % 4, 1000 * (i as u32 + 1)))
        .collect()
}

/// The first token id of each example in a batch (identifies the example).
fn firsts(b: &Batch) -> Vec<u32> {
    (0..b.input_ids.len())
        .filter(|&k| b.attention_mask[k] == 1 && b.position_ids[k] == 0)
        .map(|k| b.input_ids[k])
        .collect()
}

#[test]
fn shuffling_is_seeded_and_covers_each_epoch_once() {
    let n = 10;
    let run = |seed| {
        let mut it = BatchIter::new(dataset(n), config(Collate::Pad, seed)).unwrap();
        (0..8).map(|_| it.next_batch()).collect::<Vec<_>>()
    };
    let (a, b, c) = (run(1), run(1), run(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    // 10 examples, batch 3 -> batches of 3,3,3,1 per epoch; each epoch sees every example once.
    let sizes: Vec<usize> = a.iter().map(|x| x.n_examples).collect();
    assert_eq!(sizes, vec![3, 3, 3, 1, 3, 3, 3, 1]);
    for epoch in [&a[..4], &a[4..]] {
        let mut seen: Vec<u32> = epoch.iter().flat_map(firsts).collect();
        seen.sort_unstable();
        assert_eq!(seen, (1..=n as u32).map(|i| 1000 * i).collect::<Vec<_>>());
    }
    let order = |e: &[Batch]| e.iter().flat_map(firsts).collect::<Vec<_>>();
    assert_ne!(
        order(&a[..4]),
        order(&a[4..]),
        "each epoch has its own order"
    );
    assert_ne!(
        order(&a[..4]),
        (1..=n as u32).map(|i| 1000 * i).collect::<Vec<_>>(),
        "shuffled"
    );
}

#[test]
fn resume_from_saved_position_continues_identically() {
    for collate in [Collate::Pad, Collate::Pack] {
        let mut full = BatchIter::new(dataset(11), config(collate, 5)).unwrap();
        let reference: Vec<Batch> = (0..15).map(|_| full.next_batch()).collect();
        for stop in [0, 1, 3, 4, 7] {
            let mut first = BatchIter::new(dataset(11), config(collate, 5)).unwrap();
            for _ in 0..stop {
                first.next_batch();
            }
            let saved = serde_json::to_string(&first.position()).unwrap();
            let mut resumed = BatchIter::new(dataset(11), config(collate, 5)).unwrap();
            resumed
                .seek(serde_json::from_str::<DataPosition>(&saved).unwrap())
                .unwrap();
            for (k, want) in reference.iter().enumerate().skip(stop) {
                assert_eq!(
                    &resumed.next_batch(),
                    want,
                    "{collate:?}: resumed at {stop}, batch {k}"
                );
            }
        }
    }
}

#[test]
fn epochs_roll_over_and_drop_last() {
    let mut it = BatchIter::new(
        dataset(7),
        BatchConfig {
            drop_last: true,
            ..config(Collate::Pad, 3)
        },
    )
    .unwrap();
    assert_eq!(it.batches_per_epoch(), Some(2));
    it.next_batch();
    assert_eq!(it.position(), DataPosition { epoch: 0, index: 3 });
    assert_eq!(it.next_batch().n_examples, 3);
    assert_eq!(
        it.position(),
        DataPosition { epoch: 1, index: 0 },
        "last short batch skipped"
    );
    assert!(it.seek(DataPosition { epoch: 0, index: 7 }).is_err());
    assert!(BatchIter::new(Vec::new(), config(Collate::Pad, 0)).is_err());
    assert!(BatchIter::new(
        dataset(3),
        BatchConfig {
            batch_size: 0,
            ..config(Collate::Pad, 0)
        }
    )
    .is_err());
    let unshuffled = BatchIter::new(
        dataset(4),
        BatchConfig {
            shuffle: false,
            ..config(Collate::Pad, 0)
        },
    )
    .unwrap();
    assert_eq!(unshuffled.epoch_order(), &[0, 1, 2, 3]);
}

#[test]
fn packing_fills_rows_of_max_len() {
    let mut it = BatchIter::new(dataset(20), config(Collate::Pack, 9)).unwrap();
    let mut total = 0;
    while it.position().epoch == 0 {
        let b = it.next_batch();
        assert_eq!(b.seq_len, 12);
        assert!(b.batch_size <= 3);
        total += b.n_examples;
    }
    assert_eq!(total, 20);
}
