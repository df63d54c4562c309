//! `orch run`: compile and plan, run with progress on stderr ([`super::progress`]), then the
//! summary, the journal's id, the report file and the output.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use indexmap::IndexMap;

use super::otel::Trace;
use super::progress::Progress;
use super::{Paint, RunArgs, compile_for_plan, no_such_script};
use crate::check::Program;
use crate::common::{format_duration, plural};
use crate::plan::Plan;
use crate::plan::render::usd;
use crate::redact::redact;
use crate::run::cancel::Cancel;
use crate::run::cassette::Cassette;
use crate::run::journal::{self, Journal};
use crate::run::step_cache::StepCache;
use crate::run::{Endpoint, RunOptions, RunReport, StepStatus, Target};

/// `orch run`.
pub(super) fn run(a: RunArgs) -> ExitCode {
    if let Some(code) = no_such_script(&a.file) {
        return code;
    }
    if a.detach && a.engine.is_none() {
        return usage_error(
            "--detach submits a run to an engine and returns at once, so it needs --engine temporal://HOST:PORT; a run without --engine runs in this process (leave --detach out)",
        );
    }
    let flags = parse_inputs(&a.inputs).and_then(|i| Ok((i, a.compile.lint_levels()?)));
    let (mut inputs, levels) = match flags {
        Ok(ok) => ok,
        Err(e) => return usage_error(&e),
    };
    let Some((program, plan)) =
        compile_for_plan(&a.file, a.workflow.as_deref(), &a.compile, &levels)
    else {
        return ExitCode::from(1);
    };
    // Shared with the run's tasks as it is (`run_shared`), not copied.
    let plan = Arc::new(plan);
    if a.engine.is_some() {
        return super::engine::run(&a, &program, &plan, inputs);
    }
    let journal = match open_journal(&a, &plan.workflow) {
        Ok(j) => j,
        Err(e) => return usage_error(&e),
    };
    if let Some(j) = &journal {
        // Inputs not given again are the recorded ones (of parameters the workflow still has).
        for (k, v) in j.recorded_inputs() {
            if plan.params.iter().any(|p| p.name == k) && !inputs.contains_key(&k) {
                inputs.insert(k, v);
            }
        }
    }
    let paint = Paint::stderr();
    let target = match target(&a) {
        Ok(t) => t,
        Err(e) => return usage_error(&e),
    };
    let record = match &a.record {
        Some(path) => match Cassette::record(path, &target.describe()) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => return usage_error(&e),
        },
        None => None,
    };
    let cache = match &a.cache {
        Some(dir) => match StepCache::open(dir) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => return usage_error(&e),
        },
        None => None,
    };
    eprintln!(
        "{}",
        redact(header(&plan, &target, journal.as_ref(), &paint))
    );
    let trace = match Trace::from_env(&plan, &target) {
        Ok(t) => t,
        Err(e) => return usage_error(&e),
    };
    let progress = Progress::new(
        &plan,
        a.quiet,
        a.why_rerun,
        a.verbose,
        a.endpoint.is_some(),
        paint,
    );
    let cancel = Cancel::new();
    let opts = RunOptions {
        inputs,
        target,
        max_tokens_cap: a.max_tokens,
        max_concurrency: a.max_concurrency.map(|n| n as usize),
        env: None,
        keep_going: a.keep_going,
        cancel: Some(cancel.clone()),
        journal: journal.clone(),
        approver: progress.approver(a.yes),
        workspace: a.workspace.clone(),
        no_store_prompts: a.no_store_prompts,
        record,
        cache,
        // A local run needs every key before it starts: better refused than half run.
        keys_per_step: false,
        // Only `-v` prints what each model call sends.
        sending_events: a.verbose,
    };
    let attempts = std::sync::Mutex::new(Vec::new());
    let watch = Watch {
        progress: &progress,
        trace: trace.as_ref(),
        attempts: &attempts,
    };
    let result = execute(&plan, &program, &opts, cancel, &watch, paint);
    if let Some(t) = &trace
        && let Err(w) = t.finish(result.as_ref().ok())
    {
        eprintln!("{} {w}", paint.yellow("warning:"));
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{} {}", paint.red("error:"), redact(e));
            return ExitCode::from(2);
        }
    };
    let attempts = attempts.into_inner().unwrap_or_else(|e| e.into_inner());
    let ran = Ran {
        plan: &plan,
        report: &report,
        attempts,
        target: &opts.target,
    };
    finish(&a, &ran, journal.as_ref(), paint)
}

/// Who follows a run's events: the progress lines, the trace (`OTEL_*`), and the attempts kept
/// for an HTML report of a run without a journal.
#[derive(Clone, Copy)]
struct Watch<'w> {
    progress: &'w Progress,
    trace: Option<&'w Trace>,
    attempts: &'w std::sync::Mutex<Vec<journal::AttemptRecord>>,
}

/// What a run left for its report: the plan, the run's report and the attempts its events
/// reported.
struct Ran<'r> {
    plan: &'r Plan,
    report: &'r RunReport,
    attempts: Vec<journal::AttemptRecord>,
    target: &'r Target,
}

/// A usage error: said on stderr, exit code 2.
pub(super) fn usage_error(e: &str) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

/// Where model steps go, from the flags.
///
/// # Errors
/// A `--replay` cassette that cannot be read.
pub(super) fn target(a: &RunArgs) -> Result<Target, String> {
    Ok(if let Some(path) = &a.replay {
        Target::Replay(Arc::new(Cassette::replay(path)?))
    } else if a.simulate {
        Target::Simulate {
            latency_ms: a.sim_latency,
            run_commands: a.run_commands,
        }
    } else if let Some(url) = &a.endpoint {
        Target::Endpoint(Endpoint {
            base_url: url.clone(),
            model: a.endpoint_model.clone(),
            api_key_env: a.endpoint_key_env.clone(),
            stream: !a.no_stream,
        })
    } else {
        Target::Script
    })
}

/// The first line: what runs, how big it is, where, and what a resumed run already spent.
/// Redact it: an endpoint's URL as given could carry a key in its query.
fn header(plan: &Plan, target: &Target, journal: Option<&Journal>, paint: &Paint) -> String {
    let where_ = match target {
        Target::Simulate { .. } => "on the simulator".to_string(),
        Target::Endpoint(e) => format!("against {}", e.base_url),
        Target::Script => "against the script's providers".to_string(),
        Target::Replay(c) => format!(
            "replaying {} (recorded against {})",
            c.path().display(),
            c.recorded_target().unwrap_or_default()
        ),
    };
    let resuming = match journal {
        Some(j) if j.is_resume() => format!(
            ", resuming run {} ({} spent so far)",
            j.id(),
            usd(j.recorded_spend_usd())
        ),
        _ => String::new(),
    };
    format!(
        "{} {} ({}, {}) {where_}{resuming}",
        paint.bold("running"),
        plan.workflow,
        plural(plan.nodes.len() as u64, "step"),
        plural(plan.levels.len() as u64, "level"),
    )
}

/// Runs the plan on a tokio runtime of its own, with Ctrl-C turned into a cancellation.
///
/// # Errors
/// Why the run could not start (the runtime, an input, a key), for people.
fn execute(
    plan: &Arc<Plan>,
    program: &Program,
    opts: &RunOptions,
    cancel: Cancel,
    watch: &Watch,
    paint: Paint,
) -> Result<RunReport, String> {
    let Watch {
        progress,
        trace,
        attempts,
    } = *watch;
    // One thread runs the run's tasks: they wait on providers and tools, and the work between
    // (scheduling, parsing replies, the journal's lines) is small. Tasks on one thread wake
    // each other without a context switch; on worker threads each reply and each event woke
    // another thread (7 switches per step over HTTP, 40% of the run's CPU time in the kernel).
    // Blocking work goes to tokio's blocking pool, and the journal's syncs and the simulator's
    // timer have threads of their own, as before.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let on_event = |e: &crate::run::Event| {
        // Kept for an HTML report of a run without a journal (a journalled run's report
        // reads them from its journal).
        if let crate::run::Event::Attempt(a) = e
            && opts.journal.is_none()
        {
            attempts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((**a).clone());
        }
        progress.on_event(e);
        if let Some(t) = trace {
            t.on_event(e);
        }
    };
    let result = runtime.block_on(async {
        watch_interrupts(cancel, paint);
        crate::run::run_shared(plan.clone(), &program.tables.models, opts, &on_event).await
    });
    // A question the run stopped waiting for (Ctrl-C) may still be reading the terminal:
    // show what it held back, and do not wait for its thread.
    progress.release_all();
    runtime.shutdown_background();
    result.map_err(|e| e.to_string())
}

/// After the run: the summary, where the journal is, the report file, the output on stdout,
/// and the exit code (130 interrupted, 1 failed).
fn finish(a: &RunArgs, ran: &Ran, journal: Option<&Journal>, paint: Paint) -> ExitCode {
    let report = ran.report;
    eprint!("{}", redact(summary(report, a.endpoint.is_some(), &paint)));
    if let Some(j) = journal {
        eprintln!("  run {} · journal {}", j.id(), j.path().display());
        if !report.succeeded {
            eprintln!(
                "  resume with: orch run {} --resume {}",
                a.file.display(),
                j.id()
            );
        }
    }
    if let Some(path) = &a.report
        && let Err(e) = write_report(ran, journal, path)
    {
        eprintln!(
            "{} cannot write the report to {}: {e}",
            paint.red("error:"),
            path.display()
        );
        return ExitCode::from(1);
    }
    if let Some(out) = &report.output {
        println!("{}", redact(out.trim_end()));
    }
    if report.interrupted {
        ExitCode::from(130)
    } else if report.succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `--report PATH`: for a PATH ending in `.html`, the HTML page (of the journal, as `orch
/// report` makes it; of the run's report without one); else the report as JSON, redacted.
fn write_report(ran: &Ran, journal: Option<&Journal>, path: &PathBuf) -> Result<(), String> {
    if super::report::wants_html(path) {
        let page = match journal {
            Some(j) => {
                let log = journal::read_run_file(&j.path()).map_err(|e| e.to_string())?;
                super::report::page_of_log(&log, Ok(ran.plan.clone()))
            }
            None => {
                let target = ran.target.describe();
                let view = crate::run::html::RunView::from_report(
                    ran.report,
                    ran.attempts.clone(),
                    None,
                    Some(target),
                );
                crate::run::html::render(&view, Some(ran.plan))
            }
        };
        return std::fs::write(path, page).map_err(|e| e.to_string());
    }
    let json = serde_json::to_string_pretty(ran.report).map_err(|e| e.to_string())?;
    std::fs::write(path, redact(json).as_str()).map_err(|e| e.to_string())
}

/// Parses `--input name=value` / `name=@path`.
fn parse_inputs(raw: &[String]) -> Result<IndexMap<String, String>, String> {
    let mut out = IndexMap::new();
    for item in raw {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!(
                "--input `{item}` is not `name=value`; write `--input {item}=...`"
            ));
        };
        let v = match v.strip_prefix('@') {
            Some(path) => read_input_file(k, path)?,
            None => v.to_string(),
        };
        out.insert(k.trim().to_string(), v);
    }
    Ok(out)
}

/// The largest file `--input name=@path` reads: 16 MiB. That is about 4 million tokens (at
/// 4 bytes a token), 20 times the 200,000-token context window of today's Claude models, so
/// no prompt could hold it, while a larger text that a command step reads (a log, a data
/// set) still fits. A larger file is refused before it is read into memory, rather than made
/// into a prompt of millions of tokens.
const MAX_INPUT_FILE_BYTES: u64 = 16 << 20;

/// The text of `path` for `--input name=@path`: at most [`MAX_INPUT_FILE_BYTES`], UTF-8.
///
/// # Errors
/// For people: the file cannot be read, is not UTF-8, or is larger than the bound.
fn read_input_file(name: &str, path: &str) -> Result<String, String> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| format!("--input {name}=@{path}: cannot read `{path}`: {e}");
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut text = String::new();
    file.take(MAX_INPUT_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    if text.len() as u64 > MAX_INPUT_FILE_BYTES {
        return Err(format!(
            "--input {name}=@{path}: `{path}` is larger than {} MiB, the most an input file may be (about {} million tokens, more than any model's context window); pass a smaller file, or let a command step read the file itself (its path as an argument)",
            MAX_INPUT_FILE_BYTES >> 20,
            MAX_INPUT_FILE_BYTES / 4 / 1_000_000
        ));
    }
    Ok(text)
}

/// The journal of this run: none with `--no-journal`, the run to resume with `--resume`,
/// else a new one. The script is named by its canonical path, so that a run is found again
/// from any directory.
fn open_journal(a: &RunArgs, workflow: &str) -> Result<Option<Journal>, String> {
    if a.no_journal {
        return Ok(None);
    }
    let script = std::fs::canonicalize(&a.file)
        .map_err(|e| format!("cannot resolve {}: {e}", a.file.display()))?;
    let state = a
        .state_dir
        .clone()
        .unwrap_or_else(|| journal::default_state_dir(&script));
    let name = script.to_string_lossy();
    match a.resume.as_deref() {
        None => Ok(Some(Journal::create(&state, &name))),
        Some(id) => {
            let id = Some(id).filter(|id| !id.is_empty());
            Journal::resume(&state, &name, workflow, id)
                .map(Some)
                .map_err(|e| e.to_string())
        }
    }
}

/// Turns the first Ctrl-C (SIGINT) into a cancellation of the run, and the second into an
/// immediate exit with status 130. Must be called inside the runtime; the handler is in
/// place when it returns.
fn watch_interrupts(cancel: Cancel, paint: Paint) {
    #[cfg(unix)]
    let mut sigint = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "warning: cannot catch Ctrl-C ({e}); it will end the run without recording the steps in flight"
            );
            return;
        }
    };
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut next = async || sigint.recv().await.is_some();
        #[cfg(not(unix))]
        let next = async || tokio::signal::ctrl_c().await.is_ok();
        if !next().await {
            return;
        }
        eprintln!(
            "\n{} stopping: no new steps; steps in flight are dropped and recorded (Ctrl-C again to exit at once)",
            paint.yellow("interrupted:")
        );
        cancel.cancel();
        if next().await {
            eprintln!("{} exiting at once", paint.red("interrupted again:"));
            std::process::exit(130);
        }
    });
}

/// An agent loop's counts for the summary: `  3 turns · 5 calls (1 refused, 1 error)`, nested
/// steps' calls included.
fn loop_counts(l: &crate::run::LoopReport) -> String {
    let (mut calls, mut refused, mut errors) = (0, 0, 0);
    count_calls(l, &mut calls, &mut refused, &mut errors);
    let mut problems = Vec::new();
    if refused > 0 {
        problems.push(format!("{refused} refused"));
    }
    if errors > refused {
        let n = errors - refused;
        problems.push(format!("{n} error{}", if n == 1 { "" } else { "s" }));
    }
    let problems = if problems.is_empty() {
        String::new()
    } else {
        format!(" ({})", problems.join(", "))
    };
    let plural = |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    format!(
        "  {} · {}{problems}",
        plural(l.turns as usize, "turn"),
        plural(calls, "call")
    )
}

/// Adds a loop's calls, refusals and errors, and those of its nested steps, to the counts.
fn count_calls(
    l: &crate::run::LoopReport,
    calls: &mut usize,
    refused: &mut usize,
    errors: &mut usize,
) {
    *calls += l.tool_calls.len();
    *refused += l.refused();
    *errors += l.errors();
    for d in l.tool_calls.iter().filter_map(|c| c.delegated.as_ref()) {
        if let Some(nested) = &d.agent_loop {
            count_calls(nested, calls, refused, errors);
        }
    }
}

/// The run summary: one line per step, then totals, then the warnings. With `served`
/// (`--endpoint`), the model column names the model the server said answered.
pub(super) fn summary(r: &RunReport, served: bool, paint: &Paint) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let width = r
        .steps
        .iter()
        .map(|x| x.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(s, "\n{}", paint.bold("summary"));
    // Agent loops get a column of their own, only in runs that have one.
    let loops = r.steps.iter().any(|x| x.agent_loop.is_some());
    let _ = writeln!(
        s,
        "  {:<width$}  {:<10} {:<14} {:>8} {:>9} {:>9} {:>10}{}",
        "step",
        "status",
        "model",
        "attempts",
        "in",
        "out",
        "cost",
        if loops { "  tools" } else { "" }
    );
    for x in &r.steps {
        let status = match &x.status {
            StepStatus::Succeeded if r.reused.contains(&x.name) => "reused",
            StepStatus::Succeeded => "ok",
            StepStatus::Failed(_) => "failed",
            StepStatus::Skipped(_) => "skipped",
            StepStatus::Cancelled => "cancelled",
            StepStatus::Interrupted => "interrupted",
        };
        let approx = if x.usage.estimated { "~" } else { "" };
        let tools = x.agent_loop.as_ref().map(loop_counts).unwrap_or_default();
        let model = match (&x.served_model, served) {
            (Some(m), true) => m.as_str(),
            _ => x.model.as_deref().unwrap_or("-"),
        };
        let _ = writeln!(
            s,
            "  {:<width$}  {:<10} {:<14} {:>8} {:>9} {:>9} {:>10}{tools}",
            x.name,
            status,
            model,
            x.attempts,
            format!("{approx}{}", x.usage.input_tokens),
            format!("{approx}{}", x.usage.output_tokens),
            usd(x.cost_usd)
        );
    }
    let counts = r.step_counts();
    let warned = r.steps.iter().filter(|x| !x.warnings.is_empty()).count();
    let warned = match warned {
        0 => String::new(),
        n => format!(" ({n} with a warning)"),
    };
    let _ = writeln!(
        s,
        "  {}/{} succeeded{warned} · {} tokens in · {} tokens out · {} · wall time {}",
        counts.succeeded,
        plural(counts.total as u64, "step"),
        r.usage.input_tokens,
        r.usage.output_tokens,
        usd(r.cost_usd),
        format_duration(r.wall_ms)
    );
    if r.usage.estimated {
        let _ = writeln!(
            s,
            "  {}",
            paint.dim("~ estimated: the server sent no token counts (4 characters per input token, one output token per streamed chunk)")
        );
    }
    if let Some(why) = &r.stopped {
        let _ = writeln!(s, "  {} {why}", paint.red("stopped:"));
    }
    for x in r.steps.iter().filter(|x| !x.warnings.is_empty()) {
        for w in &x.warnings {
            let _ = writeln!(s, "  {} {}: {w}", paint.yellow("warning:"), x.name);
        }
    }
    let not_run: Vec<&str> = r
        .steps
        .iter()
        .filter(|x| matches!(x.status, StepStatus::Skipped(_)))
        .map(|x| x.name.as_str())
        .collect();
    if !not_run.is_empty() {
        let _ = writeln!(s, "  {} {}", paint.dim("not run:"), not_run.join(", "));
    }
    s
}
