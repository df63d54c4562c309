//! The integration tests: one binary, a module per area, so the test code and its dependencies
//! are compiled and linked once. Helpers shared with `tests/corpus.rs` (one test per file of
//! the repository's corpora) are in `tests/common/`.
//!
//! Filter by module: `cargo test --test it resume::`. The end-to-end tests against the local
//! model (`e2e_llm::`, and the last of `structured::`) are `#[ignore]`d; `scripts/test.sh` runs
//! them with `--include-ignored`.

#[path = "../common/mod.rs"]
mod common;

mod agent_loop;
mod approval;
mod batch;
mod bounds;
mod cassette;
mod catalog;
mod cli;
mod corpus;
mod e2e_llm;
mod examples;
mod faults;
mod fmt;
mod fmt_control;
mod formats;
mod generated;
mod live_progress;
mod lsp;
mod mcp;
mod no_panic;
mod observability;
mod plan;
mod record;
mod redaction;
mod report_html;
mod resume;
mod scheduler;
mod step_cache;
mod structured;
mod taint_flow;
mod temporal;
mod tool_calls;
mod tools;
mod ui;
