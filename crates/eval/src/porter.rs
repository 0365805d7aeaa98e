//! The Porter stemmer exactly as `nltk.stem.porter.PorterStemmer()` runs it in its default
//! `NLTK_EXTENSIONS` mode (nltk 3.9.1): the original algorithm (Porter 1980) plus nltk's
//! irregular-form pool, the two-letter `ies`/`ied` rules, the `alli`/`fulli`/`logi` step-2
//! extensions and the two-letter cvc rule. Used by METEOR (stem stage) and ROUGE (`use_stemmer`).
//!
//! Words are handled as sequences of Unicode scalar values, like Python `str` indexing; any
//! character other than `a e i o u` (and `y` after a vowel) is a consonant, as in nltk.

/// nltk's irregular forms (`PorterStemmer.pool`): word -> stem.
const POOL: &[(&str, &str)] = &[
    ("sky", "sky"),
    ("skies", "sky"),
    ("dying", "die"),
    ("lying", "lie"),
    ("tying", "tie"),
    ("news", "news"),
    ("innings", "inning"),
    ("inning", "inning"),
    ("outings", "outing"),
    ("outing", "outing"),
    ("cannings", "canning"),
    ("canning", "canning"),
    ("howe", "howe"),
    ("proceed", "proceed"),
    ("exceed", "exceed"),
    ("succeed", "succeed"),
];

type Word = Vec<char>;

/// Condition of a rule, evaluated on the stem left after removing the suffix.
enum Cond {
    None,
    MeasureGt(usize),
    /// nltk step 1b `*d` rule: the last letter of the whole intermediate stem is not l, s or z.
    NotLsz(char),
    /// nltk step 1b: `m == 1 and *o`.
    MeasureOneCvc,
    /// nltk step 1c: stem longer than one letter ending in a consonant.
    Step1c,
    /// step 4 `ion`: `m > 1` and the stem ends in `s` or `t`.
    Ion,
    /// A fixed truth value computed from the whole word (nltk's `logi` and `ll` lambdas).
    Fixed(bool),
}

/// One rule: suffix (`*d` = double consonant), replacement, condition.
struct Rule<'a> {
    suffix: &'a str,
    replacement: String,
    cond: Cond,
}

fn rule<'a>(suffix: &'a str, replacement: &str, cond: Cond) -> Rule<'a> {
    Rule {
        suffix,
        replacement: replacement.to_string(),
        cond,
    }
}

fn is_consonant(w: &[char], i: usize) -> bool {
    match w[i] {
        'a' | 'e' | 'i' | 'o' | 'u' => false,
        'y' => {
            if i == 0 {
                true
            } else {
                !is_consonant(w, i - 1)
            }
        }
        _ => true,
    }
}

/// Porter's measure m: the number of `VC` pairs in the `[C](VC)^m[V]` form.
fn measure(w: &[char]) -> usize {
    let cv: Vec<bool> = (0..w.len()).map(|i| is_consonant(w, i)).collect();
    let mut count = 0;
    let mut i = 0;
    while i + 1 < cv.len() {
        if !cv[i] && cv[i + 1] {
            count += 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    count
}

fn contains_vowel(w: &[char]) -> bool {
    (0..w.len()).any(|i| !is_consonant(w, i))
}

fn ends_double_consonant(w: &[char]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1)
}

fn ends_cvc(w: &[char]) -> bool {
    let n = w.len();
    (n >= 3
        && is_consonant(w, n - 3)
        && !is_consonant(w, n - 2)
        && is_consonant(w, n - 1)
        && !matches!(w[n - 1], 'w' | 'x' | 'y'))
        || (n == 2 && !is_consonant(w, 0) && is_consonant(w, 1))
}

fn ends_with(w: &[char], suffix: &str) -> bool {
    let s: Vec<char> = suffix.chars().collect();
    w.len() >= s.len() && w[w.len() - s.len()..] == s[..]
}

fn strip(w: &[char], suffix: &str) -> Word {
    w[..w.len() - suffix.chars().count()].to_vec()
}

fn concat(stem: &[char], rep: &str) -> Word {
    let mut out = stem.to_vec();
    out.extend(rep.chars());
    out
}

fn holds(cond: &Cond, stem: &[char]) -> bool {
    match cond {
        Cond::None => true,
        Cond::MeasureGt(k) => measure(stem) > *k,
        Cond::NotLsz(c) => !matches!(c, 'l' | 's' | 'z'),
        Cond::MeasureOneCvc => measure(stem) == 1 && ends_cvc(stem),
        Cond::Step1c => stem.len() > 1 && is_consonant(stem, stem.len() - 1),
        Cond::Ion => measure(stem) > 1 && matches!(stem.last(), Some('s') | Some('t')),
        Cond::Fixed(b) => *b,
    }
}

/// nltk's `_apply_rule_list`: the first rule whose suffix matches decides (replace when its
/// condition holds, else keep the word). `*d` matches a double consonant and, like nltk, also
/// the literal text `*d`.
fn apply_rules(w: &[char], rules: &[Rule]) -> Word {
    for r in rules {
        if r.suffix == "*d" && ends_double_consonant(w) {
            let stem = &w[..w.len() - 2];
            return if holds(&r.cond, stem) {
                concat(stem, &r.replacement)
            } else {
                w.to_vec()
            };
        }
        if ends_with(w, r.suffix) {
            let stem = strip(w, r.suffix);
            return if holds(&r.cond, &stem) {
                concat(&stem, &r.replacement)
            } else {
                w.to_vec()
            };
        }
    }
    w.to_vec()
}

fn step1a(w: &[char]) -> Word {
    if ends_with(w, "ies") && w.len() == 4 {
        return concat(&strip(w, "ies"), "ie");
    }
    apply_rules(
        w,
        &[
            rule("sses", "ss", Cond::None),
            rule("ies", "i", Cond::None),
            rule("ss", "ss", Cond::None),
            rule("s", "", Cond::None),
        ],
    )
}

fn step1b(w: &[char]) -> Word {
    if ends_with(w, "ied") {
        let rep = if w.len() == 4 { "ie" } else { "i" };
        return concat(&strip(w, "ied"), rep);
    }
    if ends_with(w, "eed") {
        let stem = strip(w, "eed");
        return if measure(&stem) > 0 {
            concat(&stem, "ee")
        } else {
            w.to_vec()
        };
    }
    let mut intermediate = None;
    for suffix in ["ed", "ing"] {
        if ends_with(w, suffix) {
            let s = strip(w, suffix);
            if contains_vowel(&s) {
                intermediate = Some(s);
                break;
            }
        }
    }
    let Some(stem) = intermediate else {
        return w.to_vec();
    };
    // contains_vowel guarantees a non-empty stem.
    let last = stem[stem.len() - 1];
    apply_rules(
        &stem,
        &[
            rule("at", "ate", Cond::None),
            rule("bl", "ble", Cond::None),
            rule("iz", "ize", Cond::None),
            Rule {
                suffix: "*d",
                replacement: last.to_string(),
                cond: Cond::NotLsz(last),
            },
            rule("", "e", Cond::MeasureOneCvc),
        ],
    )
}

fn step1c(w: &[char]) -> Word {
    apply_rules(w, &[rule("y", "i", Cond::Step1c)])
}

fn step2(w: &[char]) -> Word {
    if ends_with(w, "alli") && measure(&strip(w, "alli")) > 0 {
        return step2(&concat(&strip(w, "alli"), "al"));
    }
    let pos = || Cond::MeasureGt(0);
    let logi_ok = w.len() >= 3 && measure(&w[..w.len() - 3]) > 0;
    let rules = [
        rule("ational", "ate", pos()),
        rule("tional", "tion", pos()),
        rule("enci", "ence", pos()),
        rule("anci", "ance", pos()),
        rule("izer", "ize", pos()),
        rule("bli", "ble", pos()),
        rule("alli", "al", pos()),
        rule("entli", "ent", pos()),
        rule("eli", "e", pos()),
        rule("ousli", "ous", pos()),
        rule("ization", "ize", pos()),
        rule("ation", "ate", pos()),
        rule("ator", "ate", pos()),
        rule("alism", "al", pos()),
        rule("iveness", "ive", pos()),
        rule("fulness", "ful", pos()),
        rule("ousness", "ous", pos()),
        rule("aliti", "al", pos()),
        rule("iviti", "ive", pos()),
        rule("biliti", "ble", pos()),
        rule("fulli", "ful", pos()),
        rule("logi", "log", Cond::Fixed(logi_ok)),
    ];
    apply_rules(w, &rules)
}

fn step3(w: &[char]) -> Word {
    let pos = || Cond::MeasureGt(0);
    apply_rules(
        w,
        &[
            rule("icate", "ic", pos()),
            rule("ative", "", pos()),
            rule("alize", "al", pos()),
            rule("iciti", "ic", pos()),
            rule("ical", "ic", pos()),
            rule("ful", "", pos()),
            rule("ness", "", pos()),
        ],
    )
}

fn step4(w: &[char]) -> Word {
    let gt1 = || Cond::MeasureGt(1);
    apply_rules(
        w,
        &[
            rule("al", "", gt1()),
            rule("ance", "", gt1()),
            rule("ence", "", gt1()),
            rule("er", "", gt1()),
            rule("ic", "", gt1()),
            rule("able", "", gt1()),
            rule("ible", "", gt1()),
            rule("ant", "", gt1()),
            rule("ement", "", gt1()),
            rule("ment", "", gt1()),
            rule("ent", "", gt1()),
            rule("ion", "", Cond::Ion),
            rule("ou", "", gt1()),
            rule("ism", "", gt1()),
            rule("ate", "", gt1()),
            rule("iti", "", gt1()),
            rule("ous", "", gt1()),
            rule("ive", "", gt1()),
            rule("ize", "", gt1()),
        ],
    )
}

fn step5a(w: &[char]) -> Word {
    if ends_with(w, "e") {
        let stem = strip(w, "e");
        let m = measure(&stem);
        if m > 1 || (m == 1 && !ends_cvc(&stem)) {
            return stem;
        }
    }
    w.to_vec()
}

fn step5b(w: &[char]) -> Word {
    let ok = !w.is_empty() && measure(&w[..w.len() - 1]) > 1;
    apply_rules(w, &[rule("ll", "l", Cond::Fixed(ok))])
}

/// Stem one word like `nltk.stem.porter.PorterStemmer().stem(word)` (lowercases first).
pub fn porter_stem(word: &str) -> String {
    let lower = word.to_lowercase();
    // nltk looks the *original* word up in the pool, then returns the pool entry of the
    // lowercased word (the two agree whenever the lookup succeeds).
    if let Some((_, stem)) = POOL.iter().find(|(w, _)| *w == word) {
        return (*stem).to_string();
    }
    if word.chars().count() <= 2 {
        return lower;
    }
    let mut w: Word = lower.chars().collect();
    w = step1a(&w);
    w = step1b(&w);
    w = step1c(&w);
    w = step2(&w);
    w = step3(&w);
    w = step4(&w);
    w = step5a(&w);
    w = step5b(&w);
    w.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn porter_paper_examples() {
        for (w, s) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "tie"),
            ("agreed", "agre"),
            ("hopping", "hop"),
            ("filing", "file"),
            ("relational", "relat"),
            ("generalizations", "gener"),
            ("skies", "sky"),
            ("a", "a"),
        ] {
            assert_eq!(porter_stem(w), s, "{w}");
        }
    }
}
