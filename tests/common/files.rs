//! The repository's `.orch` files and the ```orch blocks of its Markdown, as test inputs.

use std::path::{Path, PathBuf};

/// Every `.orch` file under `dir` (relative to the crate root, the tests' working directory),
/// recursively, sorted, as paths relative to the crate root.
pub fn orch_files(dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "orch") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A fenced ```orch block of a Markdown file.
pub struct Block {
    /// The line of the opening fence, from 1.
    pub line: usize,
    /// Whether the fence is marked `fail` (```orch,fail: the block must not check).
    pub fail: bool,
    /// The text between the fences, every line ending in `\n`.
    pub body: String,
}

/// The ```orch blocks of the Markdown file at `path` (relative to the crate root).
pub fn orch_blocks(path: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(Path::new(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```orch") => {
                current = Some(Block {
                    line: i + 1,
                    fail: l.contains("fail"),
                    body: String::new(),
                })
            }
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.body.push_str(line);
                block.body.push('\n');
            }
            _ => {}
        }
    }
    blocks
}
