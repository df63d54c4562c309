//! The `orch fmt` command: rewrite files in place, check them (`--check`), or format standard
//! input to standard output (`-`).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

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

/// A unified-diff-like view of the first place where `old` and `new` differ: a few lines of
/// context, the removed lines, the added lines.
pub fn first_hunk(name: &str, old: &str, new: &str, color: bool) -> String {
    use std::fmt::Write as _;
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    // The first place after `common` where both sides meet again on a non-blank line.
    let (ra, rb) =
        resync(&a[common..], &b[common..]).unwrap_or((a.len() - common, b.len() - common));
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
    let context = common.saturating_sub(2);
    let _ = writeln!(
        s,
        "{}",
        paint(
            "36",
            format!(
                "@@ -{},{} +{},{} @@",
                context + 1,
                common - context + ra,
                context + 1,
                common - context + rb
            )
        )
    );
    for line in &a[context..common] {
        let _ = writeln!(s, " {line}");
    }
    for (side, sign, code, n) in [(&a, '-', "31", ra), (&b, '+', "32", rb)] {
        for line in side[common..common + n].iter().take(DIFF_LINES) {
            let _ = writeln!(s, "{}", paint(code, format!("{sign}{line}")));
        }
        if n > DIFF_LINES {
            let _ = writeln!(s, "{sign}... {} more lines", n - DIFF_LINES);
        }
    }
    if ra == 0 && rb == 0 {
        let _ = writeln!(s, "(only line endings or the final line break differ)");
    }
    s
}

/// The smallest `(i, j)` (by `i + j`) from which `a[i..]` and `b[j..]` agree again on two
/// lines, the first one neither blank nor a lone bracket, looking a bounded distance ahead.
fn resync(a: &[&str], b: &[&str]) -> Option<(usize, usize)> {
    for k in 1..=400usize {
        for i in 0..=k {
            let j = k - i;
            if let (Some(x), Some(y)) = (a.get(i), b.get(j))
                && x == y
                && !matches!(x.trim(), "" | "}" | ")" | "]" | ">" | "{")
                && a.get(i + 1) == b.get(j + 1)
            {
                return Some((i, j));
            }
        }
    }
    None
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
            "--- f.orch\n+++ f.orch (formatted)\n@@ -2,3 +2,3 @@\n b\n c\n-x  = 1\n+x = 1\n"
        );
    }
}
