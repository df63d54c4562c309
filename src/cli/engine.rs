//! `orch worker` and `orch run --engine`: the command-line side of [`crate::engine`].

use std::process::ExitCode;

use indexmap::IndexMap;

use super::progress::Progress;
use super::run::{summary, target, usage_error};
use super::{Paint, RunArgs, WorkerArgs};
use crate::check::Program;
use crate::common::plural;
use crate::engine::temporal::{self, EngineAddr, Submission, TargetSpec, WorkerSettings};
use crate::plan::Plan;
use crate::redact::redact;
use crate::run::RunReport;
use crate::run::remote::Interp;

/// `orch worker`: serves the task queue until Ctrl-C.
pub(super) fn worker(a: WorkerArgs) -> ExitCode {
    let addr = match EngineAddr::parse(&a.engine) {
        Ok(x) => x,
        Err(e) => return usage_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return usage_error(&format!("cannot start the async runtime: {e}")),
    };
    let settings = WorkerSettings {
        max_concurrency: a.max_concurrency.map(|n| n as usize),
        workspace: a.workspace.clone(),
        max_cached_runs: a.max_cached_runs,
    };
    eprintln!(
        "worker: polling task queue `{}` of namespace `{}` at {}:{} (Ctrl-C to stop)",
        a.task_queue, a.namespace, addr.host, addr.port
    );
    let result = runtime.block_on(async {
        tokio::select! {
            r = temporal::serve(&addr, &a.namespace, &a.task_queue, settings) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    });
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", redact(e));
            ExitCode::from(1)
        }
    }
}

/// `orch run FILE --engine URL`: submits the run, follows it, prints what a local run prints.
pub(super) fn run(
    a: &RunArgs,
    program: &Program,
    plan: &Plan,
    inputs: IndexMap<String, String>,
) -> ExitCode {
    let unsupported = [
        (a.record.is_some(), "--record"),
        (a.replay.is_some(), "--replay"),
        (
            a.resume.is_some(),
            "--resume (submit the same run again to resume it)",
        ),
        (a.cache.is_some(), "--cache"),
        (a.report.is_some(), "--report"),
        (a.yes, "--yes"),
    ];
    if let Some((_, flag)) = unsupported.iter().find(|(on, _)| *on) {
        return usage_error(&format!(
            "{flag} does not work with --engine yet (docs/scale-out.md)"
        ));
    }
    let addr = match EngineAddr::parse(a.engine.as_deref().unwrap_or_default()) {
        Ok(x) => x,
        Err(e) => return usage_error(&e),
    };
    if let Err(e) = Interp::supported(plan) {
        return usage_error(&e);
    }
    let target = match target(a) {
        Ok(t) => t,
        Err(e) => return usage_error(&e),
    };
    let Some(spec) = TargetSpec::of(&target) else {
        return usage_error("--replay does not work with --engine yet");
    };
    let script = match temporal::script_of(program, a.workflow.as_deref(), spec, a.max_tokens) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let sub = Submission {
        script,
        inputs,
        max_concurrency: a.max_concurrency.map(|n| n as usize),
        keep_going: a.keep_going,
        prior: None,
    };
    let paint = Paint::stderr();
    eprintln!(
        "{}",
        redact(format!(
            "{} {} ({}, {}) on Temporal at {}:{} (task queue `{}`, workflow id {})",
            paint.bold("running"),
            plan.workflow,
            plural(plan.nodes.len() as u64, "step"),
            plural(plan.levels.len() as u64, "level"),
            addr.host,
            addr.port,
            a.task_queue,
            sub.workflow_id(&plan.workflow),
        ))
    );
    let progress = Progress::new(plan, a.quiet, false, a.verbose, a.endpoint.is_some(), paint);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return usage_error(&format!("cannot start the async runtime: {e}")),
    };
    let started = std::time::Instant::now();
    let on_progress = |p: &temporal::Progress| progress.on_event(&p.event());
    let result = runtime.block_on(temporal::submit(
        &addr,
        &a.namespace,
        &a.task_queue,
        sub,
        &plan.workflow,
        &on_progress,
    ));
    runtime.shutdown_background();
    let (outcome, id) = match result {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{} {}", paint.red("error:"), redact(e));
            return ExitCode::from(2);
        }
    };
    let mut usage = crate::run::provider::Usage::default();
    let mut cost_usd = 0.0;
    for s in &outcome.steps {
        usage.add(s.usage);
        cost_usd += s.cost_usd;
    }
    let report = RunReport {
        workflow: plan.workflow.clone(),
        steps: outcome.steps,
        output: outcome.output,
        succeeded: outcome.succeeded,
        stopped: outcome.stopped,
        usage,
        cost_usd,
        wall_ms: started.elapsed().as_millis() as u64,
        run_id: Some(id.clone()),
        reused: outcome.reused,
        interrupted: false,
    };
    eprint!("{}", redact(summary(&report, a.endpoint.is_some(), &paint)));
    eprintln!("  run {id} on Temporal");
    if !report.succeeded {
        eprintln!(
            "  resume with: orch run {} --engine {} (the same inputs)",
            a.file.display(),
            a.engine.as_deref().unwrap_or_default()
        );
    }
    if let Some(out) = &report.output {
        println!("{}", redact(out.trim_end()));
    }
    if report.succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
