//! "Did you mean" suggestions.
//!
//! A candidate is suggested when its normalised Damerau–Levenshtein similarity to the unknown
//! name is at least [`THRESHOLD`] (strsim's `normalized_damerau_levenshtein`: 1.0 for equal
//! strings, 0.0 for entirely different ones), or when one is a case-insensitive match of the
//! other. 0.6 lets one typo through in a five-letter name (`scuot` → `scout`) but not an
//! unrelated word, the same trade-off Nickel documents in `core/src/error/suggest.rs`.

/// Minimum similarity for a suggestion.
pub const THRESHOLD: f64 = 0.6;

/// The most similar candidate above [`THRESHOLD`], if any.
pub fn did_you_mean<'a>(
    unknown: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = unknown.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != unknown)
        .map(|c| {
            let score = if c.to_lowercase() == lower {
                1.0
            } else {
                strsim::normalized_damerau_levenshtein(unknown, c).max(prefix_score(&lower, c))
            };
            (c, score)
        })
        .filter(|(_, s)| *s >= THRESHOLD)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

/// An abbreviation or a longer form of a name (`lang` → `language`, `retries` → `retry`)
/// scores just at the threshold: a shared prefix of at least 4 characters that covers most
/// of the shorter name, which is at least half as long as the other.
fn prefix_score(lower: &str, candidate: &str) -> f64 {
    let candidate = candidate.to_lowercase();
    let common = lower
        .chars()
        .zip(candidate.chars())
        .take_while(|(a, b)| a == b)
        .count();
    let (a, b) = (lower.chars().count(), candidate.chars().count());
    let (shorter, longer) = (a.min(b), a.max(b));
    if common >= 4 && common * 5 >= shorter * 4 && longer <= shorter * 2 {
        THRESHOLD
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("scuot", ["scout", "planner"]), Some("scout"));
        assert_eq!(
            did_you_mean("Planner", ["scout", "planner"]),
            Some("planner")
        );
        assert_eq!(did_you_mean("zebra", ["scout", "planner"]), None);
        assert_eq!(did_you_mean("lang", ["language", "tone"]), Some("language"));
        assert_eq!(did_you_mean("retries", ["max", "retry"]), Some("retry"));
        assert_eq!(did_you_mean("plan", ["planner_notes"]), None);
    }
}
