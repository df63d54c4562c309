//! The UI cases of `tests/ui/` as a whole (each case is a test of its own in
//! `tests/corpus.rs`, which describes the format): there are cases, every snapshot has its case,
//! every code has a case; and the diagnostics no `.orch` case can show (an unreadable entry
//! file) or that are not rendered (the `--format json` shape).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use orch::diag::render_human;

use crate::common::files::orch_files;
use crate::common::ui::{
    CASE_PATTERN, STYLE, UI_DIR, cases, compile, expected_codes, shape_problems, snapshot_name,
};

/// The rule of the walker is the one `tests/corpus.rs` matches files with
/// ([`crate::common::ui::CASE_PATTERN`]): a broken walk would run no case there.
#[test]
fn the_cases_are_found() {
    let cases = cases();
    assert!(cases.len() >= 40, "only {} UI cases found", cases.len());
}

/// `tests/corpus.rs` finds the cases by [`CASE_PATTERN`] (a regular expression on the path
/// under `tests/ui/`); it must pick exactly the files [`cases`] walks to, support files left
/// out.
#[test]
fn the_corpus_pattern_picks_exactly_the_cases() {
    let pattern = fancy_regex::Regex::new(CASE_PATTERN).expect("a valid pattern");
    let cases: BTreeSet<PathBuf> = cases().into_iter().collect();
    let all = orch_files(UI_DIR);
    assert!(all.len() > cases.len(), "support files are .orch files too");
    let mut wrong = Vec::new();
    for path in all {
        let rel = path.strip_prefix(UI_DIR).unwrap();
        let rel = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let picked = pattern.is_match(&rel).expect("a match result");
        if picked != cases.contains(&path) {
            wrong.push(format!("{rel}: picked {picked}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:?}");
}

/// Snapshots whose case was renamed or removed.
#[test]
fn every_snapshot_has_a_case() {
    let names: BTreeSet<String> = cases().iter().map(|p| snapshot_name(p)).collect();
    let mut orphans = Vec::new();
    if let Ok(entries) = std::fs::read_dir(Path::new(UI_DIR).join("snapshots")) {
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = file.strip_suffix(".snap")
                && !names.contains(stem)
                && !OTHER_SNAPSHOTS.contains(&stem)
            {
                orphans.push(format!("tests/ui/snapshots/{file}"));
            }
        }
    }
    assert!(
        orphans.is_empty(),
        "no case for these snapshots: delete them\n{}",
        orphans.join("\n")
    );
}

/// Every diagnostic code. The catalogue's own test proves it lists exactly the codes that
/// `src/` emits, so a case per catalogue entry is a case per emitted code.
fn codes_in_src() -> BTreeSet<String> {
    orch::diag::catalog::all()
        .iter()
        .map(|c| c.code.to_string())
        .collect()
}

/// Snapshots of the tests below, which have no `.orch` case.
const OTHER_SNAPSHOTS: &[&str] = &["unreadable_entry_file"];

/// Codes with a dedicated test below instead of a `.orch` case.
const COVERED_ELSEWHERE: &[&str] = &[
    // An unreadable entry file cannot be a file of the corpus: see `unreadable_entry_file`.
    "E0100",
    // Only `orch fmt` reports it, on a layout bug: see `fmt::tests` in `src/fmt/mod.rs`.
    "E1001",
];

#[test]
fn every_code_has_a_case() {
    let mut covered: BTreeSet<String> = COVERED_ELSEWHERE.iter().map(|c| c.to_string()).collect();
    for path in cases() {
        let text = std::fs::read_to_string(&path).unwrap();
        covered.extend(expected_codes(&text).unwrap_or_default());
    }
    let missing: Vec<_> = codes_in_src().difference(&covered).cloned().collect();
    assert!(
        missing.is_empty(),
        "diagnostic codes emitted in src/ without a case in tests/ui/: {missing:?}"
    );
}

#[test]
fn unreadable_entry_file() {
    let path = Path::new("tests/ui/no_such_file.orch");
    let (sources, diags) = compile(path);
    let codes: Vec<_> = diags.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["E0100"]);
    let d = diags.iter().next().unwrap();
    assert!(
        d.message.contains("tests/ui/no_such_file.orch"),
        "{}",
        d.message
    );
    assert!(d.help.is_some());
    assert!(shape_problems(d, &sources).is_empty());
    let rendered = render_human(&diags, &sources, STYLE);
    insta::with_settings!({
        snapshot_path => "../ui/snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!("unreadable_entry_file", rendered);
    });
}

/// The `--format json` shape: every diagnostic has these keys, every label its location.
#[test]
fn json_shape() {
    let path = Path::new("tests/ui/flow/all_errors_reported.orch");
    let (sources, diags) = compile(path);
    assert!(diags.len() >= 4);
    let doc: serde_json::Value =
        serde_json::from_str(&orch::diag::render_json(&diags, &sources)).expect("valid JSON");
    assert_eq!(doc["errors"].as_u64(), Some(diags.error_count() as u64));
    assert_eq!(doc["warnings"].as_u64(), Some(diags.warning_count() as u64));
    let list = doc["diagnostics"]
        .as_array()
        .expect("a `diagnostics` array");
    assert_eq!(list.len(), diags.len());
    for (j, d) in list.iter().zip(diags.iter()) {
        let obj = j.as_object().expect("an object");
        for key in [
            "code",
            "name",
            "severity",
            "message",
            "file",
            "start",
            "end",
            "line",
            "column",
            "end_line",
            "end_column",
            "labels",
            "help",
            "replacement",
        ] {
            assert!(obj.contains_key(key), "missing `{key}` in {j}");
        }
        assert_eq!(j["code"], d.code.as_str());
        assert_eq!(j["name"], orch::diag::code_name(d.code));
        assert_eq!(j["severity"], "error");
        assert_eq!(j["message"], d.message.as_str());
        assert_eq!(j["file"], "tests/ui/flow/all_errors_reported.orch");
        assert_eq!(j["start"].as_u64(), Some(u64::from(d.primary.span.start)));
        assert_eq!(j["end"].as_u64(), Some(u64::from(d.primary.span.end)));
        let (line, col) = sources.line_col(d.primary.span.file, d.primary.span.start);
        assert_eq!(j["line"].as_u64(), Some(line as u64));
        assert_eq!(j["column"].as_u64(), Some(col as u64));
        assert!(j["help"].is_string() || j["help"].is_null());
        assert_eq!(j["replacement"].as_str(), d.replacement.as_deref());
        let labels = j["labels"].as_array().expect("a `labels` array");
        assert_eq!(labels.len(), 1 + d.secondary.len());
        assert_eq!(labels[0]["start"], j["start"]);
        for l in labels {
            for key in [
                "file",
                "start",
                "end",
                "line",
                "column",
                "end_line",
                "end_column",
                "message",
            ] {
                assert!(l.get(key).is_some(), "label without `{key}`: {l}");
            }
        }
    }
}
