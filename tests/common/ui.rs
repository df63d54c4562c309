//! The UI cases of `tests/ui/`: which files are cases, the codes each expects, how each is
//! compiled and its snapshot named, and what a well-formed diagnostic is. Shared by the test
//! of each case (`tests/corpus.rs`) and the tests of the corpus as a whole (`tests/it/ui.rs`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use orch::diag::{Diagnostic, Diagnostics, HumanStyle, LintLevels, SourceMap, Span, apply_levels};
use orch::resolve::ResolveOptions;

/// Where the cases are, relative to the crate root.
pub const UI_DIR: &str = "tests/ui";

/// The style of the snapshots: Unicode drawing, no colour, a fixed width.
pub const STYLE: HumanStyle = HumanStyle {
    color: false,
    unicode: true,
    width: 100,
};

/// Every case: each `.orch` file under [`UI_DIR`], skipping folders named `support` (helper
/// files that the cases include) and `snapshots`; sorted, as paths relative to the crate root.
pub fn cases() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(UI_DIR)];
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

/// The files [`cases`] finds, as a regular expression (`fancy-regex`, with look-ahead) on
/// their path relative to [`UI_DIR`], `/`-separated: for the per-case harness of
/// `tests/corpus.rs`, which walks the folder itself.
pub const CASE_PATTERN: &str = r"^(?!(?:.*/)?(?:support|snapshots)/).*\.orch$";

/// The codes of the `// expect:` header lines at the top of the file.
pub fn expected_codes(text: &str) -> Option<BTreeSet<String>> {
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
pub fn snapshot_name(path: &Path) -> String {
    let rel = path.strip_prefix(UI_DIR).unwrap_or(path);
    rel.with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("__")
}

/// Compiles like `orch check` (default lint levels, so `// orch: allow(...)` comments are
/// honoured), then (when there is no error) picks the entry workflow like `orch plan`.
pub fn compile(path: &Path) -> (SourceMap, Diagnostics) {
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
pub fn shape_problems(d: &Diagnostic, sources: &SourceMap) -> Vec<String> {
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
