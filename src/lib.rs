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
//! lays a file out in the one canonical style (`orch fmt`). [`redact`] takes secrets out of
//! every text that comes from outside and every artefact orch writes.

pub mod check;
pub mod cli;
pub mod common;
pub mod diag;
pub mod fmt;
pub mod plan;
pub mod redact;
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
    let program = check_and_cost(&set, &mut diags);
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
    let program = check_and_cost(&set, &mut diags);
    (program, diags)
}

/// Checks a module set and, when it has no errors, compares each workflow's worst-case cost
/// with its budget (which needs the plan's cost model); then labels the include chains of
/// diagnostics in included files. Diagnostics come out sorted.
fn check_and_cost(set: &resolve::ModuleSet, diags: &mut diag::Diagnostics) -> check::Program {
    let program = check::check(set, diags);
    if !diags.has_errors() {
        plan::budget::check_budgets(&program, diags);
    }
    resolve::label_include_chains(set, diags);
    diags.sort();
    program
}
