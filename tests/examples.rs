//! Every example and stdlib file checks clean (no warnings) and every example runs on the
//! simulator; every ```orch block in the README and docs checks (```orch,fail blocks must not).

use std::path::{Path, PathBuf};

use orch::resolve::ResolveOptions;
use orch::run::{RunOptions, Target};

fn orch_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "orch"))
            .collect();
    files.sort();
    files
}

fn messages(d: &orch::diag::Diagnostics) -> Vec<String> {
    d.iter()
        .map(|d| format!("{} {}", d.code, d.message))
        .collect()
}

#[test]
fn examples_and_stdlib_check_clean() {
    let files: Vec<PathBuf> = orch_files("examples")
        .into_iter()
        .chain(orch_files("stdlib"))
        .collect();
    assert!(
        files.len() >= 9,
        "expected the examples and stdlib files, found {files:?}"
    );
    let mut bad = Vec::new();
    for f in &files {
        let (_, diags) = orch::compile_file(f, &ResolveOptions::default());
        if !diags.is_empty() {
            bad.push(format!("{}: {:?}", f.display(), messages(&diags)));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// A value of each parameter type, for running examples without real inputs.
fn sample_input(ty: &orch::check::types::Type) -> String {
    use orch::check::types::Type;
    match ty {
        Type::Text => "a small web shop".into(),
        Type::Number => "3".into(),
        Type::Bool => "true".into(),
        Type::Json | Type::Record(_) | Type::Agent => "{}".into(),
        Type::List(_) => "[\"one\", \"two\"]".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn every_example_runs_on_the_simulator() {
    for f in orch_files("examples") {
        let (program, diags) = orch::compile_file(&f, &ResolveOptions::default());
        assert!(!diags.has_errors(), "{}", f.display());
        let entry = orch::diag::Span::new(orch::diag::FileId(0), 0, 0);
        let wf = orch::plan::entry_workflow(&program, None, entry).unwrap();
        let plan = orch::plan::lower(&program, wf);
        let opts = RunOptions {
            inputs: plan
                .params
                .iter()
                .filter(|p| p.default.is_none())
                .map(|p| (p.name.clone(), sample_input(&p.ty)))
                .collect(),
            target: Target::Simulate {
                latency_ms: 100,
                run_commands: false,
            },
            ..RunOptions::default()
        };
        let report = orch::run::run(&plan, &program.tables.models, &opts, &|_| {})
            .await
            .unwrap();
        assert!(
            report.succeeded,
            "{} failed: {:?}",
            f.display(),
            report.stopped
        );
        assert!(
            report
                .output
                .as_deref()
                .is_some_and(|o| !o.trim().is_empty()),
            "{} returned nothing",
            f.display()
        );
    }
}

/// ```orch blocks of a Markdown file, with whether they are marked `fail`.
fn orch_blocks(path: &str) -> Vec<(usize, bool, String)> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<(usize, bool, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```orch") => {
                current = Some((i + 1, l.contains("fail"), String::new()))
            }
            (Some(_), l) if l.starts_with("```") => blocks.push(current.take().unwrap()),
            (Some((_, _, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[test]
fn code_blocks_in_readme_and_docs_check() {
    let mut bad = Vec::new();
    let mut count = 0;
    for doc in ["README.md", "docs/language.md"] {
        for (line, should_fail, body) in orch_blocks(doc) {
            count += 1;
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
            let (_, diags) =
                orch::compile_source("block.orch", &body, &dir, &ResolveOptions::default());
            match (should_fail, diags.has_errors()) {
                (false, true) => bad.push(format!("{doc}:{line}: {:?}", messages(&diags))),
                (true, false) => bad.push(format!("{doc}:{line}: marked `fail` but checks clean")),
                _ => {}
            }
        }
    }
    assert!(
        count >= 10,
        "expected code blocks in README.md and docs/language.md, found {count}"
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
