//! `glob` and `grep`: walks of the workspace with ripgrep's crates (`ignore` for the walk,
//! honouring `.gitignore`, `.ignore` and `.git/info/exclude` also outside a git repository;
//! `globset` for patterns; `grep-regex` + `grep-searcher` for the search).
//!
//! Both skip `.git/` and `.orch/`, and never follow symlinks, so a walk stays in the
//! workspace. Hidden files are included (`.github/`, `.env.example` are often what is
//! looked for).

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use globset::GlobBuilder;
use grep_regex::RegexMatcherBuilder;
use grep_searcher::sinks::Lossy;
use grep_searcher::{BinaryDetection, SearcherBuilder};
use serde::Deserialize;
use serde_json::json;

use super::builtin::{Failure, Outcome, blocking, confine, is_protected_dir, parse};
use super::paths::{Access, Confined};
use super::{BoxFuture, Tool, ToolContext, ToolOutput};
use crate::run::provider::conversation::ToolSpec;

/// Most paths `glob` returns.
pub const MAX_GLOB_RESULTS: usize = 1000;

/// Most matching lines `grep` returns.
pub const MAX_GREP_MATCHES: usize = 200;

/// Longest matching line `grep` shows whole, in characters.
pub const MAX_GREP_LINE_CHARS: usize = 300;

/// The `glob` tool.
pub struct Glob;

/// The `grep` tool.
pub struct Grep;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GlobInput {
    pattern: String,
    path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrepInput {
    pattern: String,
    path: Option<String>,
    glob: Option<String>,
    case_insensitive: Option<bool>,
}

impl Tool for Glob {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "glob".into(),
            description: "Find files in the workspace whose path matches a glob pattern \
                          (`**/*.rs`, `src/*.toml`; `*` does not cross `/`), relative to \
                          `path` (default: the workspace root). Files ignored by .gitignore \
                          are skipped."
                .into(),
            input_schema: glob_schema(),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    fn call<'a>(
        &'a self,
        input: serde_json::Value,
        cx: &'a ToolContext,
    ) -> BoxFuture<'a, ToolOutput> {
        Box::pin(blocking("glob", cx, move |cx, deadline| {
            glob(cx, parse("glob", input, &glob_schema())?, deadline)
        }))
    }
}

impl Tool for Grep {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "grep".into(),
            description: "Search the files of the workspace for a regular expression (Rust \
                          regex syntax). Returns matching lines as `path:line:text`. Narrow \
                          with `path` (a directory or file) and `glob` (a file pattern such \
                          as `*.rs`). Files ignored by .gitignore and binary files are skipped."
                .into(),
            input_schema: grep_schema(),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    fn call<'a>(
        &'a self,
        input: serde_json::Value,
        cx: &'a ToolContext,
    ) -> BoxFuture<'a, ToolOutput> {
        Box::pin(blocking("grep", cx, move |cx, deadline| {
            grep(cx, parse("grep", input, &grep_schema())?, deadline)
        }))
    }
}

fn glob_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "description": "Glob, e.g. `**/*.rs`."},
            "path": {"type": "string", "description": "Directory to search under (default `.`)."}
        },
        "required": ["pattern"],
        "additionalProperties": false
    })
}

fn grep_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "description": "Regular expression."},
            "path": {"type": "string", "description": "Directory or file to search (default `.`)."},
            "glob": {"type": "string", "description": "Only files whose name matches, e.g. `*.rs`."},
            "case_insensitive": {"type": "boolean", "description": "Ignore case (default false)."}
        },
        "required": ["pattern"],
        "additionalProperties": false
    })
}

fn glob(cx: &ToolContext, input: GlobInput, deadline: Instant) -> Outcome {
    let base = confine(cx, input.path.as_deref().unwrap_or("."), Access::Read)?;
    let matcher = GlobBuilder::new(&input.pattern)
        .literal_separator(true)
        .build()
        .map_err(|err| Failure::Error(format!("invalid glob `{}`: {err}", input.pattern)))?
        .compile_matcher();
    let mut found = Vec::new();
    let mut more = false;
    let finished = walk(&base, None, deadline, |shown, path| {
        let relative = path.strip_prefix(&base.path).unwrap_or(path);
        if matcher.is_match(relative) {
            if found.len() == MAX_GLOB_RESULTS {
                more = true;
                return ControlFlow::Break(());
            }
            found.push(shown);
        }
        ControlFlow::Continue(())
    })?;
    found.sort();
    let mut text = found.join("\n");
    if found.is_empty() {
        text = format!("no files under `{}` match `{}`", base.shown, input.pattern);
    }
    if more {
        text.push_str(&format!(
            "\n[stopped at {MAX_GLOB_RESULTS} files; narrow the pattern]"
        ));
    }
    text.push_str(&finished.note());
    let summary = format!("{} files", found.len());
    Ok(ToolOutput::new(&text, false, summary, cx.max_result_bytes))
}

fn grep(cx: &ToolContext, input: GrepInput, deadline: Instant) -> Outcome {
    let base = confine(cx, input.path.as_deref().unwrap_or("."), Access::Read)?;
    let matcher = RegexMatcherBuilder::new()
        .case_insensitive(input.case_insensitive.unwrap_or(false))
        .build(&input.pattern)
        .map_err(|err| Failure::Error(format!("invalid regex `{}`: {err}", input.pattern)))?;
    let only = match &input.glob {
        Some(g) => Some(
            GlobBuilder::new(g)
                .build()
                .map_err(|err| Failure::Error(format!("invalid glob `{g}`: {err}")))?
                .compile_matcher(),
        ),
        None => None,
    };
    let mut searcher = SearcherBuilder::new()
        .binary_detection(BinaryDetection::quit(0))
        .line_number(true)
        .build();
    let mut lines: Vec<String> = Vec::new();
    let mut unreadable = 0usize;
    let finished = walk(&base, only.as_ref(), deadline, |shown, path| {
        let sink = Lossy(|number, text: &str| {
            if lines.len() == MAX_GREP_MATCHES {
                return Ok(false);
            }
            lines.push(format!("{shown}:{number}:{}", shorten(text.trim_end())));
            Ok(true)
        });
        if searcher.search_path(&matcher, path, sink).is_err() {
            unreadable += 1;
        }
        if lines.len() == MAX_GREP_MATCHES {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    let count = lines.len();
    let mut text = lines.join("\n");
    if count == 0 {
        text = format!("no matches for `{}` under `{}`", input.pattern, base.shown);
    }
    if count == MAX_GREP_MATCHES {
        text.push_str(&format!(
            "\n[stopped at {MAX_GREP_MATCHES} matches; narrow the pattern, path or glob]"
        ));
    }
    if unreadable > 0 {
        text.push_str(&format!("\n[{unreadable} files could not be read]"));
    }
    text.push_str(&finished.note());
    let summary = format!("{count} matches");
    Ok(ToolOutput::new(&text, false, summary, cx.max_result_bytes))
}

fn shorten(line: &str) -> String {
    match line.char_indices().nth(MAX_GREP_LINE_CHARS) {
        Some((cut, _)) => format!("{} [...]", &line[..cut]),
        None => line.to_string(),
    }
}

/// How a walk ended.
enum Walked {
    Done,
    TimedOut,
}

impl Walked {
    fn note(&self) -> String {
        match self {
            Walked::Done => String::new(),
            Walked::TimedOut => {
                "\n[the search ran out of time; results are partial: narrow the path]".into()
            }
        }
    }
}

/// Visits the regular files under `base` (or `base` itself when it is a file) that are not
/// ignored, not under `.git`/`.orch`, and whose file name (or path under `base`) matches
/// `only` when given, with
/// their path relative to the workspace, until `visit` breaks or the deadline passes.
fn walk(
    base: &Confined,
    only: Option<&globset::GlobMatcher>,
    deadline: Instant,
    mut visit: impl FnMut(String, &Path) -> ControlFlow<()>,
) -> Result<Walked, Failure> {
    let walker = ignore::WalkBuilder::new(&base.path)
        .hidden(false)
        .follow_links(false)
        .require_git(false)
        .filter_entry(|entry| !is_protected_dir(entry.path()))
        .build();
    for entry in walker {
        if Instant::now() > deadline {
            return Ok(Walked::TimedOut);
        }
        // An unreadable directory is skipped, as ripgrep does.
        let Ok(entry) = entry else { continue };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        // `*.rs` names files; `src/**/*.rs` names paths under `base`.
        let relative = path.strip_prefix(&base.path).unwrap_or(path);
        let name = path.file_name().unwrap_or_default();
        if only.is_some_and(|m| !m.is_match(name) && !m.is_match(relative)) {
            continue;
        }
        let shown = if base.shown == "." {
            relative.to_string_lossy().into_owned()
        } else if relative.as_os_str().is_empty() {
            base.shown.clone()
        } else {
            format!("{}/{}", base.shown, relative.to_string_lossy())
        };
        if visit(shown, path).is_break() {
            break;
        }
    }
    Ok(Walked::Done)
}
