//! `orch report RUN_ID`: the HTML report of a journalled run ([`crate::run::html`]), and the
//! HTML form of `orch run --report PATH.html`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::ReportArgs;
use crate::diag::Span;
use crate::plan::Plan;
use crate::resolve::ResolveOptions;
use crate::run::html::{self, RunView};
use crate::run::journal::{self, RunLog};

/// Whether a `--report` path asks for HTML (it ends in `.html` or `.htm`, any case).
pub(super) fn wants_html(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"))
}

/// `orch report`.
pub(super) fn report(a: ReportArgs) -> ExitCode {
    let state = a
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".orch"));
    let log = match journal::read_run(&state, &a.run_id) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = ResolveOptions {
        include_paths: a.include_paths.clone(),
        ..ResolveOptions::default()
    };
    let page = page_of_log(&log, plan_of_run(&log, &opts));
    let out = a.output.clone().unwrap_or_else(|| {
        state
            .join("runs")
            .join(&log.header.run_id)
            .join("report.html")
    });
    if out.as_os_str() == "-" {
        print!("{page}");
        return ExitCode::SUCCESS;
    }
    match std::fs::write(&out, page) {
        Ok(()) => {
            eprintln!("report of run {}: {}", log.header.run_id, out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error: cannot write the report to {}: {e}; pass `-o FILE` to write it elsewhere (`-o -`: standard output)",
                out.display()
            );
            ExitCode::from(1)
        }
    }
}

/// The page of a journalled run; `plan` is its plan, or why it could not be had.
pub(super) fn page_of_log(log: &RunLog, plan: Result<Plan, String>) -> String {
    let mut view = RunView::from_log(log);
    let plan = match plan {
        Ok(p) => Some(p),
        Err(why) => {
            view.notes.push(format!(
                "the DAG shows the recorded steps without their dependencies, and the totals no budgets: {why}"
            ));
            None
        }
    };
    html::render(&view, plan.as_ref())
}

/// The plan of a journalled run, made again from its script: only when it is the plan the
/// run's latest segment ran (same hash). Otherwise, why not, in words.
fn plan_of_run(log: &RunLog, opts: &ResolveOptions) -> Result<Plan, String> {
    let script = Path::new(&log.header.script);
    if !script.is_file() {
        return Err(format!("the script {} is gone", script.display()));
    }
    let (program, diags) = crate::compile_file(script, opts);
    if diags.has_errors() {
        return Err(format!(
            "the script {} no longer compiles (`orch check` says why)",
            script.display()
        ));
    }
    let entry = program
        .sources
        .files()
        .next()
        .map(|(id, _)| id)
        .ok_or_else(|| format!("the script {} is empty", script.display()))?;
    let wf =
        crate::plan::entry_workflow(&program, Some(&log.header.workflow), Span::new(entry, 0, 0))
            .map_err(|_| {
            format!(
                "the script {} has no workflow `{}` any more",
                script.display(),
                log.header.workflow
            )
        })?;
    let plan = crate::plan::lower(&program, wf);
    if journal::plan_hash(&plan) != log.plan_hash {
        return Err(format!(
            "the script {} (or a file it includes) changed since the run",
            script.display()
        ));
    }
    Ok(plan)
}
