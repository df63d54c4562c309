//! Fuzz target over the whole front end: parse, check, lint levels, rendering, plan, and fmt.
//! The checks are in `tests/fuzz_regressions/exercise.rs`, shared with the test that replays
//! the inputs this target once crashed on. Invalid UTF-8 is skipped.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_regressions/exercise.rs"]
mod exercise;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        exercise::exercise(text);
    }
});
