//! The proptest configuration of the property tests: `PROPTEST_CASES=N` cases, or the test's
//! own default.

use proptest::prelude::ProptestConfig;

/// `PROPTEST_CASES` cases when it is set to a number, else `default_cases`.
pub fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}
