//! The `orch fmt` command: rewrite files in place, check them (`--check`), or format standard
//! input to standard output (`-`).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::common::plural;
use crate::diag::{Diagnostics, HumanStyle, SourceMap, render_human};

/// How many changed lines of each side `--check` shows.
const DIFF_LINES: usize = 12;

/// Runs `orch fmt` on `files` (`-` is standard input). Diagnostics and diffs go to stderr with
/// `style`; the names of files that would change (`check`), or the formatted standard input,
/// to stdout.
///
/// Exit code: 2 when an input cannot be read, else 1 when a file has a syntax error (it is
/// left untouched), cannot be written, or would change under `check`; 0 otherwise.
pub fn run(files: &[PathBuf], check: bool, style: HumanStyle) -> ExitCode {
    let mut worst = 0u8;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for file in files {
        let stdin = file.as_os_str() == "-";
        let name = if stdin {
            "<stdin>".to_string()
        } else {
            file.display().to_string()
        };
        let read = if stdin {
            read_stdin()
        } else {
            crate::resolve::read_source(file)
        };
        let text = match read {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read `{name}`: {e}");
                worst = worst.max(2);
                continue;
            }
        };
        let formatted = match super::format_source(&text) {
            Ok(f) => f,
            Err(d) => {
                let mut sources = SourceMap::new();
                let path = (!stdin).then(|| file.clone());
                sources.add(name.clone(), path, text.as_str());
                let mut diags = Diagnostics::new();
                diags.push(*d);
                eprint!("{}", render_human(&diags, &sources, style));
                worst = worst.max(1);
                continue;
            }
        };
        if check {
            if formatted != text {
                let _ = writeln!(out, "{name}");
                eprint!("{}", first_hunk(&name, &text, &formatted, style.color));
                worst = worst.max(1);
            }
        } else if stdin {
            let _ = out.write_all(formatted.as_bytes());
        } else if formatted != text
            && let Err(e) = std::fs::write(file, &formatted)
        {
            eprintln!("error: cannot write `{name}`: {e}");
            worst = worst.max(1);
        }
    }
    ExitCode::from(worst)
}

/// Standard input, up to [`crate::resolve::MAX_SOURCE_BYTES`] like a file.
fn read_stdin() -> std::io::Result<String> {
    let limit = crate::resolve::MAX_SOURCE_BYTES;
    let mut s = String::new();
    std::io::stdin().take(limit + 1).read_to_string(&mut s)?;
    if s.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "it is larger than {} MiB, the most a script may be",
                limit / (1024 * 1024)
            ),
        ));
    }
    Ok(s)
}

/// Lines of unchanged context `--check` shows around a change.
const CONTEXT_LINES: usize = 2;

/// The first hunk of the unified diff from `old` to `new` (computed by the `similar` crate,
/// Myers' algorithm), with [`CONTEXT_LINES`] lines of context and at most [`DIFF_LINES`] lines
/// of each run of removed or added lines.
pub fn first_hunk(name: &str, old: &str, new: &str, color: bool) -> String {
    use std::fmt::Write as _;
    let paint = |code: &str, s: String| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s
        }
    };
    let mut s = String::new();
    let _ = writeln!(s, "{}", paint("1", format!("--- {name}")));
    let _ = writeln!(s, "{}", paint("1", format!("+++ {name} (formatted)")));
    if old.lines().eq(new.lines()) {
        let _ = writeln!(s, "(only line endings or the final line break differ)");
        return s;
    }
    let diff = similar::TextDiff::from_lines(old, new);
    let mut unified = diff.unified_diff();
    unified.context_radius(CONTEXT_LINES);
    let Some(hunk) = unified.iter_hunks().next() else {
        return s;
    };
    let _ = writeln!(s, "{}", paint("36", hunk.header().to_string()));
    // The current run of removed or added lines: its sign and how many were left out.
    let mut run: Option<(char, usize)> = None;
    let mut shown = 0;
    let end_run = |s: &mut String, run: &mut Option<(char, usize)>| {
        if let Some((sign, hidden)) = run.take()
            && hidden > 0
        {
            let _ = writeln!(s, "{sign}... {}", plural(hidden as u64, "more line"));
        }
    };
    for change in hunk.iter_changes() {
        let (sign, code) = match change.tag() {
            similar::ChangeTag::Equal => (' ', ""),
            similar::ChangeTag::Delete => ('-', "31"),
            similar::ChangeTag::Insert => ('+', "32"),
        };
        if run.is_some_and(|(r, _)| r != sign) {
            end_run(&mut s, &mut run);
        }
        let line = change.value().trim_end_matches(['\n', '\r']);
        if sign == ' ' {
            let _ = writeln!(s, " {line}");
            continue;
        }
        if run.is_none() {
            run = Some((sign, 0));
            shown = 0;
        }
        if shown < DIFF_LINES {
            let _ = writeln!(s, "{}", paint(code, format!("{sign}{line}")));
            shown += 1;
        } else if let Some((_, hidden)) = run.as_mut() {
            *hidden += 1;
        }
    }
    end_run(&mut s, &mut run);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_hunk_shows_context_and_both_sides() {
        let old = "a\nb\nc\nx  = 1\nd\n";
        let new = "a\nb\nc\nx = 1\nd\n";
        let h = first_hunk("f.orch", old, new, false);
        assert_eq!(
            h,
            "--- f.orch\n+++ f.orch (formatted)\n@@ -2,4 +2,4 @@\n b\n c\n-x  = 1\n+x = 1\n d\n"
        );
    }

    #[test]
    fn long_runs_are_cut_and_line_endings_are_named() {
        let old: String = (0..20).map(|i| format!("a{i}\n")).collect();
        let new: String = (0..20).map(|i| format!("b{i}\n")).collect();
        let h = first_hunk("f.orch", &old, &new, false);
        assert!(h.contains("-a11\n-... 8 more lines\n+b0\n"), "{h}");
        assert!(h.ends_with("+b11\n+... 8 more lines\n"), "{h}");
        let h = first_hunk("f.orch", "a\r\nb", "a\nb\n", false);
        assert!(
            h.ends_with("(only line endings or the final line break differ)\n"),
            "{h}"
        );
        let h = first_hunk("f.orch", "a\nb\n", "a\nb\nc\n", true);
        assert!(h.contains("\x1b[32m+c\x1b[0m"), "{h}");
    }
}
