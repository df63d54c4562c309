//! Every ```orch block in the README and docs checks (```orch,fail blocks must not). (Each
//! example and stdlib file is a test of its own in `tests/corpus.rs`.)

use std::path::Path;

use orch::resolve::ResolveOptions;

use crate::common::files::orch_blocks;

#[test]
fn code_blocks_in_readme_and_docs_check() {
    let mut bad = Vec::new();
    let mut count = 0;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for doc in ["README.md", "docs/language.md"] {
        for block in orch_blocks(doc) {
            count += 1;
            let line = block.line;
            let (_, diags) =
                orch::compile_source("block.orch", &block.body, &dir, &ResolveOptions::default());
            match (block.fail, diags.has_errors()) {
                (false, true) => {
                    let messages: Vec<String> = diags
                        .iter()
                        .map(|d| format!("{} {}", d.code, d.message))
                        .collect();
                    bad.push(format!("{doc}:{line}: {messages:?}"))
                }
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
