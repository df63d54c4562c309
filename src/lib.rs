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
//! Each stage imports only the stages before it: `syntax` < `resolve` < `check` < `plan` <
//! `run`. Each owns its IR: the plan is lowered from the checker's graph into plan-owned types
//! (templates, conditions and lists with every name resolved to a parameter index or node
//! id, [`plan::ir`]), so `run` reads the plan and never the checker's graph or the AST; it
//! does read the checked program's value types the plan carries (`check::types::Type`, the
//! provider, model and parameter tables). Below every stage sit [`diag`], the one diagnostic
//! model every stage reports through, [`common`], the small values several stages share (a
//! `gather`'s `Policy`, a condition's `CmpOp`, durations, the output bound), [`grant`], the
//! tool grants an agent's `tools: [...]` holds and their wire names, and [`redact`],
//! which takes secrets out of every text that comes from outside and every artefact orch
//! writes. [`fmt`] (`orch fmt`, the one canonical layout), [`lsp`] (`orch lsp`, the language
//! server, which formats with `fmt`) and [`cli`] (a thin clap front end) are leaves: nothing
//! but another leaf imports them.
//!
//! [`compile_file`] drives the stages up to a checked program: the front end (`syntax`,
//! `resolve`, `check`), then the lints of the planning stage — `W0803`, a worst-case cost
//! over a `budget`, and `W0804`, a worst-case request over a model's context window, need
//! the plan's cost model, so they live in [`plan::budget`] and [`plan::window`] and run
//! here, after the checker and only on a program without errors, never from inside `check`.

pub mod check;
pub mod cli;
pub mod common;
pub mod diag;
pub mod fmt;
pub mod grant;
pub mod lsp;
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
    let c = compile_file_priced(path, opts);
    (c.program, c.diags)
}

/// Everything [`compile_file_priced`] made.
#[derive(Debug)]
pub struct Compiled {
    /// The files loaded (their ASTs), as [`resolve::load_file`] gave them.
    pub set: resolve::ModuleSet,
    /// The checked program (also when `diags` holds errors: then do not plan or run it).
    pub program: check::Program,
    /// Every diagnostic, sorted, lints at their default severity.
    pub diags: diag::Diagnostics,
    /// The workflows the planning stage's lints priced ([`plan::lint`]).
    pub priced: plan::Priced,
}

/// [`compile_file`], also returning the module set and the workflows the planning stage's
/// lints priced ([`plan::lint`]): [`plan::Priced::plan`] finishes one of them into its plan, so
/// that `orch plan` lowers the workflow once rather than twice. A command that ends right after
/// may leave these large values unfreed (`std::mem::forget`), as `orch check` does: the system
/// reclaims the memory faster than freeing them value by value. (`orch plan` frees the module
/// set, so that planning reuses its memory: its peak RSS is what its goal bounds.)
pub fn compile_file_priced(path: &Path, opts: &resolve::ResolveOptions) -> Compiled {
    let (set, mut diags) = resolve::load_file(path, opts);
    let (program, priced) = check_and_cost(&set, &mut diags);
    Compiled {
        set,
        program,
        diags,
        priced,
    }
}

/// Like [`compile_file`] for a script given as text; relative includes resolve against `dir`.
pub fn compile_source(
    name: &str,
    text: &str,
    dir: &Path,
    opts: &resolve::ResolveOptions,
) -> (check::Program, diag::Diagnostics) {
    let (set, mut diags) = resolve::load_source(name, text, dir, opts);
    let program = check_loaded(&set, &mut diags);
    (program, diags)
}

/// The stages after loading ([`resolve::load_file`] or [`resolve::load_source`], whose
/// diagnostics `diags` holds): `check`, then (on a program without errors) the planning
/// stage's lints, which price each workflow with a budget; then the include chains of
/// diagnostics in included files are labelled. Diagnostics come out sorted. For a tool that
/// needs the module set (its ASTs) as well as the program, as `orch lsp` does;
/// [`compile_file`] is both steps in one.
pub fn check_loaded(set: &resolve::ModuleSet, diags: &mut diag::Diagnostics) -> check::Program {
    check_and_cost(set, diags).0
}

/// [`check_loaded`], also returning the workflows the lints priced (see
/// [`compile_file_priced`]).
fn check_and_cost(
    set: &resolve::ModuleSet,
    diags: &mut diag::Diagnostics,
) -> (check::Program, plan::Priced) {
    let program = check::check(set, diags);
    let priced = if diags.has_errors() {
        plan::Priced::default()
    } else {
        plan::lint(&program, diags)
    };
    resolve::label_include_chains(set, diags);
    diags.sort();
    (program, priced)
}
