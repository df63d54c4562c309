//! `orch`: a compiler and interpreter for `.orch`, a declarative language for orchestrating
//! teams of LLM agents.
//!
//! The crate follows the pipeline, one module per stage:
//!
//! ```text
//! source ──syntax──▶ AST ──resolve──▶ ModuleSet ──check──▶ Program ──plan──▶ Plan (DAG) ──run──▶ RunReport
//!  grammar/orch.pest   syntax          resolve              check             plan                run
//! ```
//!
//! [`diag`] is the one diagnostic model every stage reports through; [`cli`] is a thin clap
//! front end over this API. [`compile_file`] chains the stages up to a checked program. [`fmt`]
//! lays a file out in the one canonical style (`orch fmt`).

pub mod check;
pub mod cli;
pub mod diag;
pub mod fmt;
pub mod plan;
pub mod resolve;
pub mod run;
pub mod syntax;

use std::path::Path;

/// Loads, parses and checks `path` with its includes: the whole front end in one call. A
/// diagnostic inside an included file gets a label at each `include` that brought the file in.
/// The program is returned even when the diagnostics hold errors; do not plan or run it then.
/// Lints are at their default severity and `// orch: allow(...)` comments are not applied yet:
/// pass the result through [`diag::apply_levels`] before deciding or rendering, as `orch` does.
pub fn compile_file(
    path: &Path,
    opts: &resolve::ResolveOptions,
) -> (check::Program, diag::Diagnostics) {
    let (set, mut diags) = resolve::load_file(path, opts);
    let program = check::check(&set, &mut diags);
    resolve::label_include_chains(&set, &mut diags);
    diags.sort();
    (program, diags)
}

/// Like [`compile_file`] for a script given as text; relative includes resolve against `dir`.
pub fn compile_source(
    name: &str,
    text: &str,
    dir: &Path,
    opts: &resolve::ResolveOptions,
) -> (check::Program, diag::Diagnostics) {
    let (set, mut diags) = resolve::load_source(name, text, dir, opts);
    let program = check::check(&set, &mut diags);
    resolve::label_include_chains(&set, &mut diags);
    diags.sort();
    (program, diags)
}
