//! The front end never panics, whatever the input: every prefix (cut at a character boundary)
//! of every `.orch` file under `examples/`, `stdlib/` and `tests/ui/` is parsed and checked,
//! and its diagnostics are rendered (human and JSON). A truncated file is the most common
//! broken input an editor sends, and it reaches every "unexpected end" path of the parser.
//!
//! Files are globbed at test time, so new examples are covered as they are added. To keep the
//! run short, long files are cut at a stride, but every prefix within a few characters of a
//! line end is always tried (the places where a statement, a field or a string is cut short).

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

use orch::diag::{HumanStyle, render_human, render_json};
use orch::resolve::ResolveOptions;

use crate::common::files::orch_files;

/// Above this many prefixes per file, only every `STRIDE`-th prefix away from line ends is
/// tried.
const ALL_PREFIXES_UP_TO: usize = 200;
const STRIDE: usize = 4;

/// The byte offsets to cut `text` at.
fn cut_points(text: &str) -> Vec<usize> {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    if bounds.len() <= ALL_PREFIXES_UP_TO {
        return bounds;
    }
    // Near a line end: within 2 characters before or after a `\n`.
    let near_eol: Vec<bool> = (0..bounds.len())
        .map(|k| {
            let lo = k.saturating_sub(2);
            let hi = (k + 3).min(bounds.len() - 1);
            (lo..hi).any(|j| text.as_bytes()[bounds[j]] == b'\n')
        })
        .collect();
    bounds
        .iter()
        .enumerate()
        .filter(|(k, _)| k % STRIDE == 0 || near_eol[*k] || *k + 1 == bounds.len())
        .map(|(_, &b)| b)
        .collect()
}

fn compile_and_render(name: &str, text: &str, dir: &Path) {
    let (program, diags) = orch::compile_source(name, text, dir, &ResolveOptions::default());
    for d in diags.iter() {
        assert!(!d.message.is_empty(), "empty message for {}", d.code);
    }
    if !diags.is_empty() {
        let style = HumanStyle {
            color: false,
            unicode: true,
            width: 80,
        };
        let _ = render_human(&diags, &program.sources, style);
        let _ = render_json(&diags, &program.sources);
    }
}

thread_local! {
    /// The message and place of the last panic on this thread.
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
    /// Whether this thread is a worker of this test, whose panics are recorded for its report
    /// instead of printed.
    static WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Installs, once, a panic hook that records the panics of this test's workers and hands
/// every other thread's to the hook it replaces: the other tests of the binary run meanwhile,
/// and their panics must still be shown.
fn record_worker_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !WORKER.get() {
                return previous(info);
            }
            let loc = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = format!("{msg}{loc}"));
        }));
    });
}

/// Tries every cut point of one file; the first panic, if any, as a report line.
fn check_file(path: &Path) -> (usize, Option<String>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return (0, None);
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cuts = cut_points(&text);
    for &cut in &cuts {
        let prefix = &text[..cut];
        let result = catch_unwind(AssertUnwindSafe(|| compile_and_render(&name, prefix, dir)));
        if result.is_err() {
            let line = prefix.matches('\n').count() + 1;
            let col = prefix[prefix.rfind('\n').map_or(0, |i| i + 1)..]
                .chars()
                .count()
                + 1;
            let msg = LAST_PANIC.with(|p| p.borrow().clone());
            return (
                cuts.len(),
                Some(format!(
                    "{}: panicked on the first {cut} bytes (the text up to line {line}, column {col}): {msg}",
                    path.display()
                )),
            );
        }
    }
    (cuts.len(), None)
}

#[test]
fn no_prefix_of_any_script_panics() {
    let mut files: Vec<PathBuf> = ["examples", "stdlib", "tests/ui"]
        .iter()
        .flat_map(|dir| orch_files(dir))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .orch files found");
    // Keep the workers' panic messages for the report instead of printing each one.
    record_worker_panics();

    let started = std::time::Instant::now();
    let queue = Mutex::new(files.iter());
    let results = Mutex::new((0usize, Vec::new()));
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                WORKER.set(true);
                loop {
                    let Some(path) = queue.lock().unwrap().next() else {
                        break;
                    };
                    let (tried, failure) = check_file(path);
                    let mut r = results.lock().unwrap();
                    r.0 += tried;
                    r.1.extend(failure);
                }
            });
        }
    });
    let (tried, mut failures) = results.into_inner().unwrap();
    failures.sort();
    eprintln!(
        "checked {tried} prefixes of {} files in {:.1?} on {workers} threads",
        files.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "the front end panicked:\n{}",
        failures.join("\n")
    );
}
