//! SQuAD's answer normalisation, exact match and F1, as transformers' `squad_metrics` (which lm-eval's xquad and
//! catalan_bench utils call) computes them.
//!
//! The normalisation is English-only by design, exactly as lm-eval's: it drops the articles a/an/the and ASCII
//! punctuation (Python's `string.punctuation`), so Spanish or Catalan articles (el, la, els) count as words and
//! `¿` or `«` stay. ibex offers no other variant: a different normalisation would silently change published scores.

use std::collections::HashMap;

/// `normalize_answer`: lowercase, remove ASCII punctuation, remove the words a/an/the, collapse whitespace.
pub fn normalize(text: &str) -> String {
    let lowered = text.to_lowercase();
    let without_punctuation: String = lowered.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    // `re.sub(r"\b(a|an|the)\b", " ", s)`: a match is a whole run of word characters.
    let mut without_articles = String::with_capacity(without_punctuation.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if matches!(word.as_str(), "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in without_punctuation.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut without_articles);
            without_articles.push(c);
        }
    }
    flush(&mut word, &mut without_articles);
    without_articles.split(ibex_core::python::is_space).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" ")
}

/// `compute_exact`: 1.0 when the normalised strings are equal.
pub fn exact_match(gold: &str, prediction: &str) -> f64 {
    f64::from(u8::from(normalize(gold) == normalize(prediction)))
}

/// `compute_f1`: bag-of-tokens F1 over whitespace tokens of the normalised strings; when either side has no tokens,
/// 1.0 if both have none, else 0.0.
pub fn f1(gold: &str, prediction: &str) -> f64 {
    let gold_normalized = normalize(gold);
    let prediction_normalized = normalize(prediction);
    let gold_tokens: Vec<&str> = gold_normalized.split(' ').filter(|t| !t.is_empty()).collect();
    let prediction_tokens: Vec<&str> = prediction_normalized.split(' ').filter(|t| !t.is_empty()).collect();
    if gold_tokens.is_empty() || prediction_tokens.is_empty() {
        return f64::from(u8::from(gold_tokens == prediction_tokens));
    }
    let mut gold_counts: HashMap<&str, usize> = HashMap::new();
    for token in &gold_tokens {
        *gold_counts.entry(token).or_default() += 1;
    }
    let mut same = 0usize;
    for token in &prediction_tokens {
        if let Some(count) = gold_counts.get_mut(token).filter(|c| **c > 0) {
            *count -= 1;
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / prediction_tokens.len() as f64;
    let recall = same as f64 / gold_tokens.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed with transformers 4.57 `squad_metrics.normalize_answer`, `compute_exact`, `compute_f1`.
    #[test]
    fn normalisation_matches_transformers() {
        assert_eq!(normalize("The  Cat's (big) hat!"), "cats big hat");
        assert_eq!(normalize("An apple, a day"), "apple day");
        assert_eq!(normalize("theatre anthem"), "theatre anthem");
        assert_eq!(normalize("¿La casa?"), "¿la casa");
        assert_eq!(normalize("...!"), "");
    }

    #[test]
    fn f1_edge_cases_match_transformers() {
        assert_eq!(f1("", ""), 1.0);
        assert_eq!(f1("the", "a"), 1.0);
        assert_eq!(f1("Paris", ""), 0.0);
        assert_eq!(f1("!!", "Paris"), 0.0);
        assert_eq!(f1("new york", "york"), 2.0 * 1.0 * 0.5 / 1.5);
        // Repeated tokens count once per occurrence on each side.
        assert_eq!(f1("a b b c", "b b b"), 2.0 * (2.0 / 3.0) * (2.0 / 3.0) / (4.0 / 3.0));
        assert_eq!(exact_match("The Eiffel Tower.", "eiffel tower"), 1.0);
        assert_eq!(exact_match("Eiffel", "Eiffel Tower"), 0.0);
    }
}
