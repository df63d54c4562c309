//! The catalogue's examples through the whole front end: each failing example reports its
//! code and nothing else, each fixed example is clean (src/diag/catalog.rs holds the texts;
//! checking them needs the later stages, so the test lives here, not in `diag`).

use std::collections::BTreeSet;
use std::path::Path;

use orch::diag::catalog::{CODES, example_files};
use orch::diag::{Code, Diagnostics, LintLevels, Span, apply_levels};
use orch::resolve::ResolveOptions;

/// Checks an example like `orch plan` with default lint levels: compile, apply levels, and
/// (without errors) pick the entry workflow. Files of a multi-file example are written into
/// a temporary project directory.
fn check_example(example: &str) -> Diagnostics {
    let dir = tempfile::tempdir().expect("temp dir");
    let project = dir.path().join("project");
    std::fs::create_dir_all(&project).expect("project dir");
    let files = example_files(example);
    let (program, mut diags) = if files.len() == 1 {
        orch::compile_source(files[0].0, files[0].1, &project, &ResolveOptions::default())
    } else {
        for (name, text) in &files {
            let path = project.join(name);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("dir");
            std::fs::write(&path, text).expect("write example file");
        }
        orch::compile_file(&project.join(files[0].0), &ResolveOptions::default())
    };
    apply_levels(&mut diags, &program.sources, &LintLevels::default());
    if !diags.has_errors()
        && let Some((entry, _)) = program.sources.files().next()
        && let Err(d) = orch::check::entry_workflow(&program, None, Span::new(entry, 0, 0))
    {
        diags.push(*d);
    }
    diags
}

#[test]
fn examples_trigger_their_code_and_fixes_are_clean() {
    let mut failures = Vec::new();
    for c in CODES {
        if c.example_bad.is_empty() {
            assert!(
                matches!(c.code, Code::UnreadableScript | Code::FormatRefused),
                "only E0100 (an unreadable file) and E1001 (a formatter bug) have no example"
            );
            continue;
        }
        let bad = check_example(c.example_bad);
        let found: BTreeSet<Code> = bad.iter().map(|d| d.code).collect();
        if found != BTreeSet::from([c.code]) {
            failures.push(format!(
                "{}: the failing example reports {found:?}, expected only {}: {:?}",
                c.code,
                c.code,
                bad.iter().map(|d| &d.message).collect::<Vec<_>>()
            ));
        }
        let good = check_example(c.example_good);
        if !good.is_empty() {
            failures.push(format!(
                "{}: the fixed example is not clean: {:?}",
                c.code,
                good.iter()
                    .map(|d| format!("{} {}", d.code, d.message))
                    .collect::<Vec<_>>()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unreadable_script_is_e0100() {
    let (_, diags) =
        orch::compile_file(Path::new("no/such/script.orch"), &ResolveOptions::default());
    let codes: Vec<_> = diags.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["E0100"]);
}
