//! Small text helpers that reproduce Python `str` semantics the reference packages rely on.

use std::collections::HashMap;
use std::hash::Hash;

/// Python's `str.isspace()`: Unicode `White_Space` plus the separators U+001C..U+001F.
pub fn is_py_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` with no argument: split on runs of whitespace, drop empty pieces.
pub fn py_split(s: &str) -> Vec<&str> {
    s.split(is_py_whitespace)
        .filter(|t| !t.is_empty())
        .collect()
}

/// Python's `str.rstrip()` with no argument.
pub fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_whitespace)
}

/// Python's `str.lower()` (full Unicode lowercasing with the final-sigma rule; Rust's
/// `to_lowercase` implements the same mapping).
pub fn py_lower(s: &str) -> String {
    s.to_lowercase()
}

/// A counter that remembers first-insertion order, like Python's `collections.Counter`
/// (so floating-point sums over it run in the same order as the reference code).
#[derive(Debug, Clone)]
pub struct OrderedCounter<K> {
    index: HashMap<K, usize>,
    entries: Vec<(K, usize)>,
}

impl<K: Hash + Eq + Clone> Default for OrderedCounter<K> {
    fn default() -> Self {
        Self {
            index: HashMap::new(),
            entries: Vec::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> OrderedCounter<K> {
    /// Empty counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `n` to the count of `key`.
    pub fn add(&mut self, key: K, n: usize) {
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 += n,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, n));
            }
        }
    }

    /// Count of `key` (0 when absent).
    pub fn get(&self, key: &K) -> usize {
        self.index.get(key).map_or(0, |&i| self.entries[i].1)
    }

    /// Set the count of `key` to the maximum of its count and `n`.
    pub fn max_with(&mut self, key: K, n: usize) {
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = self.entries[i].1.max(n),
            None => self.add(key, n),
        }
    }

    /// Entries in first-insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, usize)> {
        self.entries.iter().map(|(k, n)| (k, *n))
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sum of all counts.
    pub fn total(&self) -> usize {
        self.entries.iter().map(|(_, n)| n).sum()
    }
}

/// All n-grams of orders `min_n..=max_n` of `tokens`, order by order (as sacrebleu and
/// pycocoevalcap enumerate them), counted.
pub fn ngram_counts<T: Hash + Eq>(
    tokens: &[T],
    min_n: usize,
    max_n: usize,
) -> OrderedCounter<&[T]> {
    let mut c = OrderedCounter::new();
    for n in min_n..=max_n {
        if n == 0 || n > tokens.len() {
            continue;
        }
        for w in tokens.windows(n) {
            c.add(w, 1);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_matches_python_whitespace_set() {
        assert_eq!(
            py_split(" a\u{1c}b\u{a0}c\u{2003}d\t\ne "),
            vec!["a", "b", "c", "d", "e"]
        );
        // U+200B (zero width space) is not whitespace for Python.
        assert_eq!(py_split("a\u{200b}b"), vec!["a\u{200b}b"]);
        assert_eq!(py_rstrip("x \u{1f}\n"), "x");
        assert!(py_split("   ").is_empty());
    }

    #[test]
    fn counter_keeps_order_and_counts() {
        let toks = ["a", "b", "a", "b"];
        let c = ngram_counts(&toks, 1, 2);
        let keys: Vec<_> = c.iter().map(|(k, n)| (k.join(" "), n)).collect();
        assert_eq!(
            keys,
            vec![
                ("a".to_string(), 2),
                ("b".to_string(), 2),
                ("a b".to_string(), 2),
                ("b a".to_string(), 1)
            ]
        );
        assert_eq!(c.total(), 7);
    }
}
