//! UI tests of the diagnostics: every `tests/ui/**/*.orch` (outside `support/` folders) is a
//! broken script with one deliberate mistake, and starts with a header naming the codes it must
//! produce:
//!
//! ```text
//! // expect: E0201
//! // expect: E0201, E0203      (a file that shows several errors are reported in one run)
//! ```
//!
//! For each file the harness checks that the set of codes reported equals the header (a
//! missing or an extra diagnostic fails), that every diagnostic has a message and spans inside
//! its file, and snapshots the rendered human output under `tests/ui/snapshots/`. All failures
//! are collected and reported together.
//!
//! `tests/ui/poor/` holds cases whose message is known to be weak (the idea of PRQL's
//! `bad_error_messages.rs`): each says under its `expect` line, in `// POOR:` and `// SHOULD:`
//! comments, what is wrong with the message and what it should say. Their snapshots record
//! today's output, so an improvement shows up as a snapshot change: then move the case to its
//! area (or delete it) and drop the comments.
//!
//! When the checker finds no error, the harness also picks the entry workflow the way
//! `orch plan` does, so `E0701` cases live here too. Lint levels are the defaults, with the
//! cases' `// orch: allow(...)` comments applied (`tests/ui/lints/`).
//!
//! Update snapshots with `INSTA_UPDATE=always cargo test --test ui`, then review the diff.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use orch::diag::{
    Diagnostic, Diagnostics, HumanStyle, LintLevels, SourceMap, Span, apply_levels, render_human,
};
use orch::resolve::ResolveOptions;

const UI_DIR: &str = "tests/ui";

/// The style of the snapshots: Unicode drawing, no colour, a fixed width.
const STYLE: HumanStyle = HumanStyle {
    color: false,
    unicode: true,
    width: 100,
};

/// Every `.orch` file under `dir`, skipping folders named `support` (helper files that the
/// cases include) and `snapshots`; sorted, as paths relative to the crate root.
fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if name != "support" && name != "snapshots" {
                    stack.push(path);
                }
            } else if name.ends_with(".orch") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The codes of the `// expect:` header lines at the top of the file.
fn expected_codes(text: &str) -> Option<BTreeSet<String>> {
    let mut codes = BTreeSet::new();
    let mut found = false;
    for line in text.trim_start_matches('\u{feff}').lines() {
        let Some(comment) = line.trim().strip_prefix("//") else {
            break;
        };
        if let Some(list) = comment.trim().strip_prefix("expect:") {
            found = true;
            codes.extend(
                list.split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty()),
            );
        }
    }
    found.then_some(codes)
}

/// `tests/ui/names/duplicate_step.orch` → `names__duplicate_step`.
fn snapshot_name(path: &Path) -> String {
    let rel = path.strip_prefix(UI_DIR).unwrap_or(path);
    rel.with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("__")
}

/// Compiles like `orch check` (default lint levels, so `// orch: allow(...)` comments are
/// honoured), then (when there is no error) picks the entry workflow like `orch plan`.
fn compile(path: &Path) -> (SourceMap, Diagnostics) {
    let (program, mut diags) = orch::compile_file(path, &ResolveOptions::default());
    apply_levels(&mut diags, &program.sources, &LintLevels::default());
    if !diags.has_errors()
        && let Some((entry, _)) = program.sources.files().next()
        && let Err(d) = orch::plan::entry_workflow(&program, None, Span::new(entry, 0, 0))
    {
        diags.push(*d);
    }
    (program.sources, diags)
}

/// Problems with the shape of one diagnostic: an empty message or label text where one is
/// needed, a span outside its file or not on character boundaries.
fn shape_problems(d: &Diagnostic, sources: &SourceMap) -> Vec<String> {
    let mut out = Vec::new();
    if d.message.trim().is_empty() {
        out.push(format!("{}: empty message", d.code));
    }
    if d.message.contains('\n') {
        out.push(format!("{}: message spans several lines", d.code));
    }
    let spans = std::iter::once((&d.primary, "primary"))
        .chain(d.secondary.iter().map(|l| (l, "secondary")));
    for (label, which) in spans {
        let file = sources.get(label.span.file);
        let (s, e) = (label.span.start as usize, label.span.end as usize);
        if s > e || e > file.text.len() {
            out.push(format!(
                "{}: {which} span {s}..{e} outside {} ({} bytes)",
                d.code,
                file.name,
                file.text.len()
            ));
        } else if !file.text.is_char_boundary(s) || !file.text.is_char_boundary(e) {
            out.push(format!(
                "{}: {which} span {s}..{e} not on character boundaries in {}",
                d.code, file.name
            ));
        }
        if which == "secondary" && label.message.trim().is_empty() {
            out.push(format!("{}: secondary label without text", d.code));
        }
    }
    out
}

fn check_case(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let expected = expected_codes(&text)
        .ok_or("no `// expect: CODE` header on the first lines".to_string())?;
    let (sources, diags) = compile(path);
    let rendered = render_human(&diags, &sources, STYLE);
    let mut problems = Vec::new();
    if path.starts_with(Path::new(UI_DIR).join("poor"))
        && !(text.contains("\n// POOR: ") && text.contains("\n// SHOULD: "))
    {
        problems.push("a case of poor/ needs `// POOR:` and `// SHOULD:` comments".to_string());
    }

    let found: BTreeSet<String> = diags.iter().map(|d| d.code.to_string()).collect();
    if found != expected {
        let missing: Vec<_> = expected.difference(&found).cloned().collect();
        let extra: Vec<_> = found.difference(&expected).cloned().collect();
        problems.push(format!(
            "codes differ: expected {expected:?}, found {found:?} (missing {missing:?}, unexpected {extra:?})"
        ));
    }
    for d in diags.iter() {
        problems.extend(shape_problems(d, &sources));
    }
    if rendered.contains(&*std::env::current_dir().unwrap().to_string_lossy()) {
        problems.push("the output shows an absolute path".to_string());
    }

    let name = snapshot_name(path);
    let snap = catch_unwind(AssertUnwindSafe(|| {
        insta::with_settings!({
            snapshot_path => "ui/snapshots",
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => path.display().to_string(),
        }, {
            insta::assert_snapshot!(name.as_str(), rendered);
        });
    }));
    if snap.is_err() {
        problems.push(format!("snapshot `{name}` differs (see the diff above)"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{}", problems.join("\n"), indent(&rendered)))
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    | {l}\n")).collect()
}

#[test]
fn ui() {
    let cases = cases(Path::new(UI_DIR));
    assert!(cases.len() >= 40, "only {} UI cases found", cases.len());
    let mut failures = Vec::new();
    for path in &cases {
        if let Err(e) = check_case(path) {
            failures.push(format!("--- {}\n{e}", path.display()));
        }
    }
    // Snapshots whose case was renamed or removed.
    let names: BTreeSet<String> = cases.iter().map(|p| snapshot_name(p)).collect();
    if let Ok(entries) = std::fs::read_dir(Path::new(UI_DIR).join("snapshots")) {
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = file.strip_suffix(".snap")
                && !names.contains(stem)
                && !OTHER_SNAPSHOTS.contains(&stem)
            {
                failures.push(format!(
                    "--- tests/ui/snapshots/{file}\nno case for this snapshot: delete it"
                ));
            }
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} of {} UI cases failed:\n\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }
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
    for path in cases(Path::new(UI_DIR)) {
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
        snapshot_path => "ui/snapshots",
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
