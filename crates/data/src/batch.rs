//! Batching of encoded examples: right padding or packing, seeded shuffling per epoch, and a
//! position ([`DataPosition`]) that can be saved with a checkpoint and restored to continue with
//! exactly the batches an uninterrupted run would have produced.

use serde::{Deserialize, Serialize};

use crate::encode::{Encoded, IGNORE_INDEX};
use crate::error::{DataError, Result};
use crate::rng::permutation;

/// A batch as flat row-major vectors (no tensor type, so this crate stays candle-free).
/// All vectors are `[batch_size, seq_len]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub batch_size: usize,
    pub seq_len: usize,
    pub input_ids: Vec<u32>,
    /// 1 on real tokens, 0 on padding.
    pub attention_mask: Vec<u32>,
    /// Aligned with `input_ids`; [`IGNORE_INDEX`] on prompt tokens and padding.
    pub labels: Vec<i64>,
    /// Position of each token within its own example (restarts at 0 for each packed example;
    /// 0 on padding).
    pub position_ids: Vec<u32>,
    /// Number of examples in the batch.
    pub n_examples: usize,
}

impl Batch {
    /// Next-token targets and loss mask, both `[batch_size, seq_len]`: at position `t` the target is
    /// `labels[t + 1]` and the mask is 1.0 where that label is not ignored and `t + 1` continues the
    /// same example (never across a packed boundary or into padding); masked targets are 0.
    /// Use with logits `[batch_size, seq_len, vocab]`; the loss is
    /// `sum(mask * ce) / sum(mask)`.
    pub fn next_token_targets(&self) -> (Vec<u32>, Vec<f32>) {
        let n = self.batch_size * self.seq_len;
        let (mut targets, mut mask) = (vec![0u32; n], vec![0f32; n]);
        for b in 0..self.batch_size {
            for t in 0..self.seq_len.saturating_sub(1) {
                let (i, j) = (b * self.seq_len + t, b * self.seq_len + t + 1);
                let same_example =
                    self.attention_mask[j] == 1 && self.position_ids[j] == self.position_ids[i] + 1;
                if same_example && self.labels[j] != IGNORE_INDEX {
                    targets[i] = self.labels[j] as u32;
                    mask[i] = 1.0;
                }
            }
        }
        (targets, mask)
    }

    /// Number of positions that carry loss.
    pub fn target_tokens(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }

    fn empty(batch_size: usize, seq_len: usize, pad_id: u32) -> Self {
        let n = batch_size * seq_len;
        Batch {
            batch_size,
            seq_len,
            input_ids: vec![pad_id; n],
            attention_mask: vec![0; n],
            labels: vec![IGNORE_INDEX; n],
            position_ids: vec![0; n],
            n_examples: 0,
        }
    }

    /// Writes `ex` into row `row` starting at column `col`.
    fn place(&mut self, row: usize, col: usize, ex: &Encoded) {
        let start = row * self.seq_len + col;
        for (k, (&id, &label)) in ex.input_ids.iter().zip(&ex.labels).enumerate() {
            self.input_ids[start + k] = id;
            self.labels[start + k] = label;
            self.attention_mask[start + k] = 1;
            self.position_ids[start + k] = k as u32;
        }
        self.n_examples += 1;
    }
}

/// Right padding with `pad_id` to the longest example (at least one token).
pub fn pad(examples: &[&Encoded], pad_id: u32) -> Batch {
    let seq_len = examples.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
    let mut batch = Batch::empty(examples.len(), seq_len, pad_id);
    for (row, ex) in examples.iter().enumerate() {
        batch.place(row, 0, ex);
    }
    batch
}

/// Packing: places whole examples, in order, into up to `rows` rows of `max_len` tokens (next fit:
/// an example that does not fit in the current row starts the next one), right-padding the rest.
/// Examples are never split; `position_ids` restart for each. Returns the batch (only the rows
/// used) and how many examples of the prefix it consumed. Examples must be at most `max_len` long
/// (the encoder guarantees it); a longer one is cut.
pub fn pack(examples: &[&Encoded], rows: usize, max_len: usize, pad_id: u32) -> (Batch, usize) {
    let mut batch = Batch::empty(rows, max_len, pad_id);
    let (mut row, mut col, mut used) = (0usize, 0usize, 0usize);
    for ex in examples {
        let len = ex.len().min(max_len);
        if col + len > max_len {
            row += 1;
            col = 0;
        }
        if row >= rows {
            break;
        }
        let cut;
        let ex = if ex.len() > max_len {
            cut = Encoded {
                input_ids: ex.input_ids[..len].to_vec(),
                labels: ex.labels[..len].to_vec(),
                truncated: true,
            };
            &cut
        } else {
            ex
        };
        batch.place(row, col, ex);
        col += len;
        used += 1;
    }
    let rows_used = if col == 0 { row } else { row + 1 }.min(rows);
    let n = rows_used * max_len;
    batch.batch_size = rows_used;
    batch.input_ids.truncate(n);
    batch.attention_mask.truncate(n);
    batch.labels.truncate(n);
    batch.position_ids.truncate(n);
    (batch, used)
}

/// How batches are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Collate {
    /// `batch_size` examples per batch, right-padded to the longest.
    #[default]
    Pad,
    /// Examples packed into `batch_size` rows of `max_len` tokens ([`pack`]).
    Pack,
}

/// Batching settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchConfig {
    /// Examples per batch ([`Collate::Pad`]) or rows per batch ([`Collate::Pack`]).
    pub batch_size: usize,
    pub collate: Collate,
    /// Row length for packing (unused when padding).
    pub max_len: usize,
    pub pad_id: u32,
    /// Shuffle each epoch with a permutation derived from `(seed, epoch)`; else input order.
    pub shuffle: bool,
    pub seed: u64,
    /// Padding only: skip an epoch's last batch when it would be smaller than `batch_size`.
    pub drop_last: bool,
}

/// Where a [`BatchIter`] stands: `index` examples of epoch `epoch`'s order have been consumed.
/// Save it with a checkpoint and pass it to [`BatchIter::seek`] to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct DataPosition {
    pub epoch: u64,
    pub index: usize,
}

/// An endless stream of batches over epochs (the caller stops by steps or by
/// `position().epoch`).
#[derive(Debug, Clone)]
pub struct BatchIter {
    examples: Vec<Encoded>,
    config: BatchConfig,
    position: DataPosition,
    order: Vec<usize>,
}

impl BatchIter {
    pub fn new(examples: Vec<Encoded>, config: BatchConfig) -> Result<Self> {
        if examples.is_empty() {
            return Err(DataError::Config {
                field: "examples",
                problem: "no examples to batch".into(),
            });
        }
        if config.batch_size == 0 {
            return Err(DataError::Config {
                field: "batch_size",
                problem: "must be >= 1".into(),
            });
        }
        if config.drop_last && config.collate == Collate::Pad && examples.len() < config.batch_size
        {
            return Err(DataError::Config {
                field: "batch_size",
                problem: format!(
                    "drop_last with batch_size {} > {} examples would yield no batch",
                    config.batch_size,
                    examples.len()
                ),
            });
        }
        if config.collate == Collate::Pack && config.max_len == 0 {
            return Err(DataError::Config {
                field: "max_len",
                problem: "packing needs max_len >= 1".into(),
            });
        }
        let mut it = Self {
            examples,
            config,
            position: DataPosition::default(),
            order: Vec::new(),
        };
        it.order = it.order_for(0);
        Ok(it)
    }

    fn order_for(&self, epoch: u64) -> Vec<usize> {
        if self.config.shuffle {
            permutation(self.examples.len(), self.config.seed, epoch)
        } else {
            (0..self.examples.len()).collect()
        }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// The position of the next batch.
    pub fn position(&self) -> DataPosition {
        self.position
    }

    /// The example order of the current epoch (indices into the examples given to `new`).
    pub fn epoch_order(&self) -> &[usize] {
        &self.order
    }

    /// Continues from a saved position (as returned by [`BatchIter::position`]).
    pub fn seek(&mut self, position: DataPosition) -> Result<()> {
        if position.index >= self.examples.len() {
            return Err(DataError::Config {
                field: "position.index",
                problem: format!(
                    "{} is past the {} examples of an epoch",
                    position.index,
                    self.examples.len()
                ),
            });
        }
        if position.epoch != self.position.epoch {
            self.order = self.order_for(position.epoch);
        }
        self.position = position;
        Ok(())
    }

    /// Batches per epoch with padding (`None` with packing, where it depends on lengths).
    pub fn batches_per_epoch(&self) -> Option<usize> {
        let (n, b) = (self.examples.len(), self.config.batch_size);
        match (self.config.collate, self.config.drop_last) {
            (Collate::Pack, _) => None,
            (Collate::Pad, true) => Some(n / b),
            (Collate::Pad, false) => Some(n.div_ceil(b)),
        }
    }

    /// The next batch; moves to the next epoch (with its own order) after the last one.
    pub fn next_batch(&mut self) -> Batch {
        // At most this many examples fit in one batch (every example has >= 1 token).
        let cap = match self.config.collate {
            Collate::Pad => self.config.batch_size,
            Collate::Pack => self.config.batch_size.saturating_mul(self.config.max_len),
        };
        let rest: Vec<&Encoded> = self.order[self.position.index..]
            .iter()
            .take(cap)
            .map(|&i| &self.examples[i])
            .collect();
        let (batch, used) = match self.config.collate {
            Collate::Pad => (pad(&rest, self.config.pad_id), rest.len()),
            Collate::Pack => pack(
                &rest,
                self.config.batch_size,
                self.config.max_len,
                self.config.pad_id,
            ),
        };
        self.position.index += used;
        let remaining = self.examples.len() - self.position.index;
        let short = self.config.collate == Collate::Pad
            && self.config.drop_last
            && remaining < self.config.batch_size;
        if remaining == 0 || short {
            self.position = DataPosition {
                epoch: self.position.epoch + 1,
                index: 0,
            };
            self.order = self.order_for(self.position.epoch);
        }
        batch
    }
}
