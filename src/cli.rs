//! The `orch` command line: a thin clap front end over the library.
//!
//! Exit codes: 0 success; 1 errors in the script (or a failed run); 2 usage errors (bad
//! flags, unreadable inputs, a run that cannot be resumed); 130 interrupted (Ctrl-C).

use std::collections::HashSet;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indexmap::IndexMap;

use crate::common::format_duration;
use crate::diag::{
    Diagnostics, HumanStyle, LintLevels, SourceMap, Span, apply_levels, catalog, render_github,
    render_human, render_json, render_sarif,
};
use crate::plan::PlanExec;
use crate::plan::render::usd;
use crate::redact::redact;
use crate::resolve::ResolveOptions;
use crate::run::cancel::Cancel;
use crate::run::journal::{self, Journal};
use crate::run::{ApprovalRequest, Approver, Endpoint, Event, RunOptions, StepStatus, Target};

/// orch — write, check, plan and run teams of LLM agents.
#[derive(Debug, Parser)]
#[command(name = "orch", version, about, long_about = None, after_help = "Examples:\n  orch check examples/scout_plan_build.orch\n  orch plan examples/scout_plan_build.orch\n  orch run examples/scout_plan_build.orch --simulate --input request=\"Add login\"\n  orch run examples/scout_plan_build.orch --endpoint http://127.0.0.1:8089/v1 --input request=\"Add login\"\n  orch explain W0402")]
pub struct Cli {
    /// When to use colour: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

/// Colour choice.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check scripts without running them: syntax, includes, names, models, cycles.
    Check(CheckArgs),
    /// Show the execution plan: levels, dependencies, models, critical path, worst-case cost.
    Plan(PlanArgs),
    /// Run a workflow, against its providers, the simulator, or one OpenAI-compatible endpoint.
    /// Every run is journalled, so a run that stopped can be resumed with `--resume`.
    Run(RunArgs),
    /// List journalled runs: id, status, step executions succeeded of all (`ok/steps`), cost,
    /// script.
    Runs(RunsArgs),
    /// Format scripts in the one canonical layout (in place, or `--check`; `-` is stdin).
    Fmt(FmtArgs),
    /// Explain a diagnostic code: what it means, why it matters, a failing and a fixed example.
    Explain(ExplainArgs),
}

/// Options shared by every command that compiles a script.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// Another directory includes may read from (includes may not leave the script's own
    /// directory otherwise). Repeatable.
    #[arg(long = "include-path", value_name = "DIR")]
    pub include_paths: Vec<PathBuf>,
    /// Silence a lint: a code (`W0402`), a name (`block-model-overridden`) or `warnings`.
    /// Repeatable.
    #[arg(long, value_name = "LINT")]
    pub allow: Vec<String>,
    /// Report a lint as a warning (its default), e.g. to keep one under `--deny warnings`.
    /// Repeatable.
    #[arg(long, value_name = "LINT")]
    pub warn: Vec<String>,
    /// Report a lint as an error: a code, a name, or `warnings` for every lint. Repeatable.
    #[arg(long, value_name = "LINT")]
    pub deny: Vec<String>,
}

impl CompileArgs {
    /// The lint levels the flags give; a usage error names the bad flag.
    fn lint_levels(&self) -> Result<LintLevels, String> {
        LintLevels::from_flags(&self.allow, &self.warn, &self.deny).map_err(|e| e.to_string())
    }
}

/// Output format of `check`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DiagFormat {
    /// rustc-style reports with source snippets.
    Human,
    /// One JSON document (schema: docs/diagnostics.schema.json).
    Json,
    /// One SARIF 2.1.0 log, for GitHub code scanning (upload-sarif).
    Sarif,
    /// GitHub Actions workflow commands (`::error file=...::...`): annotations in CI.
    Github,
}

/// `orch check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Scripts to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DiagFormat::Human)]
    pub format: DiagFormat,
    #[command(flatten)]
    pub compile: CompileArgs,
}

/// Output format of `plan`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PlanFormat {
    /// Readable text.
    Text,
    /// JSON (see docs/language.md, "Plans as JSON").
    Json,
}

/// `orch plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Script to plan.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Workflow to plan (default: `main`, or the only one).
    #[arg(long)]
    pub workflow: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    #[command(flatten)]
    pub compile: CompileArgs,
}

/// `orch run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Script to run.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Workflow to run (default: `main`, or the only one).
    #[arg(long)]
    pub workflow: Option<String>,
    /// An input: `name=value`, or `name=@path` to read a file. Repeatable.
    #[arg(long = "input", short = 'i', value_name = "NAME=VALUE")]
    pub inputs: Vec<String>,
    /// Run every model on the built-in simulator (no key, no network); command agents are
    /// simulated too unless --run-commands is given.
    #[arg(long, env = "ORCH_SIMULATE", conflicts_with = "endpoint")]
    pub simulate: bool,
    /// Latency of each simulated call.
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = parse_duration_arg)]
    pub sim_latency: u64,
    /// With --simulate: run command agents for real.
    #[arg(long, requires = "simulate")]
    pub run_commands: bool,
    /// Send every model to this OpenAI-compatible endpoint (llama.cpp, Ollama, vLLM),
    /// e.g. http://127.0.0.1:8080/v1.
    #[arg(long, env = "ORCH_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
    /// With --endpoint: the model identifier to request (default: each model's own `name`).
    #[arg(
        long,
        env = "ORCH_ENDPOINT_MODEL",
        value_name = "NAME",
        requires = "endpoint"
    )]
    pub endpoint_model: Option<String>,
    /// With --endpoint: environment variable holding the server's API key, if it needs one.
    #[arg(long, value_name = "VAR", requires = "endpoint")]
    pub endpoint_key_env: Option<String>,
    /// With --endpoint: ask for whole answers instead of streamed ones, for a server that
    /// lacks streaming (a script's providers say it with `stream: false`).
    #[arg(long, requires = "endpoint")]
    pub no_stream: bool,
    /// Cap every model step's max_tokens.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u32>,
    /// At most N steps in flight in the whole run.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: Option<u32>,
    /// Write the run report (every step's status, model, attempts, tokens, cost, timings and
    /// output) as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// No progress lines on stderr (the summary is still printed).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// After a failure (or a step the budget refuses), still run every step that does not
    /// depend on it, instead of stopping new work.
    #[arg(long)]
    pub keep_going: bool,
    /// Resume an earlier run of FILE: run ID, or without ID the most recent run of FILE that
    /// did not succeed. Steps whose cache key (model, provider, rendered prompt and system
    /// text, options; a command's argv, env, stdin, cwd) is unchanged take their recorded
    /// output; the others run again. Inputs not given again are the recorded ones.
    #[arg(long, value_name = "ID", num_args = 0..=1, default_missing_value = "")]
    pub resume: Option<String>,
    /// With --resume: print, for each step that runs again, why (it failed, did not start,
    /// is new, or which part of its cache key changed).
    #[arg(long, requires = "resume")]
    pub why_rerun: bool,
    /// Where run journals are kept: runs go to DIR/runs/ID/journal.jsonl (default: `.orch`
    /// in the script's directory).
    #[arg(long, env = "ORCH_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Do not journal this run (it cannot be resumed).
    #[arg(long, conflicts_with = "resume")]
    pub no_journal: bool,
    /// Approve every `approve(...)` step without asking (recorded as approved by --yes).
    /// Without it, approvals are asked on the terminal, and fail when there is none.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub compile: CompileArgs,
}

/// `orch runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only the runs of this script (kept in `.orch` in its directory unless --state-dir).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Where run journals are kept (default: `.orch` next to FILE, or in the current
    /// directory).
    #[arg(long, env = "ORCH_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// `orch explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A code (`W0402`) or a name (`block-model-overridden`).
    #[arg(value_name = "CODE|NAME", required_unless_present_any = ["list", "markdown"])]
    pub code: Option<String>,
    /// One line per code: code, name, default severity, summary.
    #[arg(long, conflicts_with_all = ["code", "markdown"])]
    pub list: bool,
    /// The whole catalogue as Markdown (this is how docs/diagnostics.md is made).
    #[arg(long, conflicts_with = "code")]
    pub markdown: bool,
}

/// `orch fmt`.
#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Scripts to format in place; `-` reads standard input and writes standard output.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Write nothing: list the files that would change (with the first difference) and exit
    /// with 1 if there are any.
    #[arg(long)]
    pub check: bool,
}

fn parse_duration_arg(s: &str) -> Result<u64, String> {
    let ok = s.len() > 1
        && s.trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .chars()
            .all(|c| c.is_ascii_digit());
    let unit = s.trim_start_matches(|c: char| c.is_ascii_digit());
    if ok && matches!(unit, "ms" | "s" | "m" | "h") {
        Ok(crate::common::parse_duration(s))
    } else {
        Err(format!(
            "`{s}` is not a duration; write it like `200ms`, `2s` or `1m`"
        ))
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = cli.color;
    match cli.command {
        Command::Check(a) => check(a, color),
        Command::Plan(a) => plan(a, color),
        Command::Run(a) => run(a, color),
        Command::Runs(a) => runs(a),
        Command::Fmt(a) => crate::fmt::command::run(
            &a.files,
            a.check,
            style(color, std::io::stderr().is_terminal()),
        ),
        Command::Explain(a) => explain(a),
    }
}

fn explain(a: ExplainArgs) -> ExitCode {
    if a.list {
        print!("{}", catalog::list());
        return ExitCode::SUCCESS;
    }
    if a.markdown {
        print!("{}", catalog::markdown());
        return ExitCode::SUCCESS;
    }
    let code = a.code.unwrap_or_default();
    match catalog::lookup(&code) {
        Some(info) => {
            print!("{}", info.markdown(1));
            ExitCode::SUCCESS
        }
        None => {
            let hint = match catalog::suggest(&code) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "`orch explain --list` lists every code".to_string(),
            };
            eprintln!("error: no diagnostic has the code or name `{code}`; {hint}");
            ExitCode::from(2)
        }
    }
}

impl ColorChoice {
    /// Whether to colour a stream: `always`, `never`, or (auto) when it is a terminal and
    /// `NO_COLOR` is unset or empty (https://no-color.org).
    fn enabled(self, terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

fn style(color: ColorChoice, terminal: bool) -> HumanStyle {
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100);
    HumanStyle {
        color: color.enabled(terminal),
        unicode: true,
        width,
    }
}

fn resolve_opts(c: &CompileArgs) -> ResolveOptions {
    ResolveOptions {
        include_paths: c.include_paths.clone(),
    }
}

fn check(a: CheckArgs, color: ColorChoice) -> ExitCode {
    let levels = match a.compile.lint_levels() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    let mut json_reports = Vec::new();
    let mut checked: Vec<(Diagnostics, SourceMap)> = Vec::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for file in &a.files {
        let (program, mut diags) = crate::compile_file(file, &resolve_opts(&a.compile));
        apply_levels(&mut diags, &program.sources, &levels);
        failed |= diags.has_errors();
        match a.format {
            DiagFormat::Sarif => checked.push((diags, program.sources)),
            DiagFormat::Github => {
                let _ = write!(out, "{}", render_github(&diags, &program.sources));
            }
            DiagFormat::Human => {
                let _ = write!(
                    out,
                    "{}",
                    render_human(
                        &diags,
                        &program.sources,
                        style(color, std::io::stdout().is_terminal())
                    )
                );
                if diags.is_empty() {
                    let _ = writeln!(out, "{}: ok", file.display());
                }
            }
            DiagFormat::Json => json_reports.push(render_json(&diags, &program.sources)),
        }
    }
    if a.format == DiagFormat::Json {
        // One document for one file; an array of documents for several.
        let doc = if json_reports.len() == 1 {
            json_reports.remove(0)
        } else {
            format!("[{}]", json_reports.join(",\n"))
        };
        let _ = writeln!(out, "{doc}");
    }
    if a.format == DiagFormat::Sarif {
        // One log with one run for all the files.
        let pairs: Vec<(&Diagnostics, &SourceMap)> = checked.iter().map(|(d, s)| (d, s)).collect();
        let _ = writeln!(out, "{}", render_sarif(&pairs));
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Compiles and picks the workflow; prints diagnostics to stderr. `None` when it cannot go on.
fn compile_for_plan(
    file: &Path,
    workflow: Option<&str>,
    c: &CompileArgs,
    levels: &LintLevels,
    color: ColorChoice,
) -> Option<(crate::check::Program, crate::plan::Plan)> {
    let (program, mut diags) = crate::compile_file(file, &resolve_opts(c));
    apply_levels(&mut diags, &program.sources, levels);
    let st = style(color, std::io::stderr().is_terminal());
    if !diags.is_empty() {
        eprint!("{}", render_human(&diags, &program.sources, st));
    }
    if diags.has_errors() {
        return None;
    }
    let entry = program.sources.files().next().map(|(id, _)| id)?;
    match crate::plan::entry_workflow(&program, workflow, Span::new(entry, 0, 0)) {
        Ok(wf) => {
            let plan = crate::plan::lower(&program, wf);
            Some((program, plan))
        }
        Err(d) => {
            let mut ds = Diagnostics::new();
            ds.push(*d);
            eprint!("{}", render_human(&ds, &program.sources, st));
            None
        }
    }
}

fn plan(a: PlanArgs, color: ColorChoice) -> ExitCode {
    let levels = match a.compile.lint_levels() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let Some((_, plan)) =
        compile_for_plan(&a.file, a.workflow.as_deref(), &a.compile, &levels, color)
    else {
        return ExitCode::from(1);
    };
    // A plan holds the script's text only, which the checker keeps free of literal keys;
    // redacting it anyway keeps the promise that nothing orch writes carries a secret.
    match a.format {
        PlanFormat::Text => print!("{}", redact(crate::plan::render_text(&plan))),
        PlanFormat::Json => match serde_json::to_string_pretty(&plan) {
            Ok(s) => println!("{}", redact(s)),
            Err(e) => {
                eprintln!("error: cannot serialize the plan: {e}");
                return ExitCode::from(1);
            }
        },
    }
    ExitCode::SUCCESS
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
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("--input {k}=@{path}: cannot read `{path}`: {e}"))?,
            None => v.to_string(),
        };
        out.insert(k.trim().to_string(), v);
    }
    Ok(out)
}

fn run(a: RunArgs, color: ColorChoice) -> ExitCode {
    let mut inputs = match parse_inputs(&a.inputs) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let levels = match a.compile.lint_levels() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let Some((program, plan)) =
        compile_for_plan(&a.file, a.workflow.as_deref(), &a.compile, &levels, color)
    else {
        return ExitCode::from(1);
    };
    let target = if a.simulate {
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
    };
    let where_ = match &target {
        Target::Simulate { .. } => "on the simulator".to_string(),
        Target::Endpoint(e) => format!("against {}", e.base_url),
        Target::Script => "against the script's providers".to_string(),
    };
    let journal = match open_journal(&a, &plan.workflow) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(j) = &journal {
        // Inputs not given again are the recorded ones (of parameters the workflow still has).
        for (k, v) in j.recorded_inputs() {
            if plan.params.iter().any(|p| p.name == k) && !inputs.contains_key(&k) {
                inputs.insert(k, v);
            }
        }
    }
    let cancel = Cancel::new();
    let paint = Paint {
        on: color.enabled(std::io::stderr().is_terminal()),
    };
    let resuming = match &journal {
        Some(j) if j.is_resume() => format!(
            ", resuming run {} ({} spent so far)",
            j.id(),
            usd(j.recorded_spend_usd())
        ),
        _ => String::new(),
    };
    // `where_` holds the endpoint's URL as given, which could carry a key in its query.
    eprintln!(
        "{} {} ({} steps, {} levels) {}{resuming}",
        paint.bold("running"),
        plan.workflow,
        plan.nodes.len(),
        plan.levels.len(),
        redact(where_)
    );
    let quiet = a.quiet;
    let why_rerun = a.why_rerun;
    let width = plan.nodes.iter().map(|n| n.name.len()).max().unwrap_or(4);
    // Streamed tokens show on one status line that is redrawn in place, only on a terminal.
    let live = Arc::new(Live::new(std::io::stderr().is_terminal()));
    let approver = if a.yes {
        Approver::Yes
    } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        terminal_approver(live.clone(), paint, width)
    } else {
        Approver::NoTerminal
    };
    let opts = RunOptions {
        inputs,
        target,
        max_tokens_cap: a.max_tokens,
        max_concurrency: a.max_concurrency.map(|n| n as usize),
        env: None,
        keep_going: a.keep_going,
        cancel: Some(cancel.clone()),
        journal: journal.clone(),
        approver,
    };
    // An approval's question is its progress line: its start is not printed.
    let approvals: HashSet<String> = plan
        .nodes
        .iter()
        .filter(|n| matches!(n.exec, PlanExec::Approval))
        .map(|n| n.name.clone())
        .collect();
    let progress = live.clone();
    let on_event = move |e: &Event| {
        let live = &progress;
        if let Event::Rerun { step, why } = e {
            if why_rerun {
                live.line(format!(
                    "  {} {step:<width$}  runs again: {why}",
                    paint.yellow("»")
                ));
            }
            return;
        }
        if let Event::Finished(r) = e {
            // An approval that ended without an answer (a timeout, Ctrl-C) leaves its
            // question on the screen: progress resumes below it.
            live.abandon(&r.name, &paint);
        }
        if quiet {
            return;
        }
        if let Event::Streaming { step, tokens } = e {
            live.update(step, *tokens, &paint);
            return;
        }
        live.clear_line();
        match e {
            Event::Started { step, .. }
            | Event::Retrying { step, .. }
            | Event::FallingBack { step, .. } => live.forget(step),
            Event::Finished(r) => live.forget(&r.name),
            _ => {}
        }
        let line = match e {
            Event::Streaming { .. } | Event::Rerun { .. } => None,
            Event::Started { step, .. } if approvals.contains(step) => None,
            Event::Waiting {
                step,
                delay_ms,
                reason,
            } => Some(format!(
                "  {} {step:<width$}  waiting {} for the rate limit: {reason}",
                paint.dim("…"),
                format_duration(*delay_ms)
            )),
            Event::Started {
                step,
                runs_on,
                attempt,
            } => {
                let again = if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                Some(format!(
                    "  {} {step:<width$}  {runs_on}{again}",
                    paint.cyan("▸")
                ))
            }
            Event::Retrying {
                step,
                error,
                delay_ms,
            } => Some(format!(
                "  {} {step:<width$}  {error}; retrying in {}",
                paint.yellow("↻"),
                format_duration(*delay_ms)
            )),
            Event::FallingBack { step, model } => Some(format!(
                "  {} {step:<width$}  falling back to {model}",
                paint.yellow("↪")
            )),
            Event::Finished(r) => Some(match &r.status {
                StepStatus::Succeeded => {
                    let dur = r
                        .finished_ms
                        .unwrap_or(0)
                        .saturating_sub(r.started_ms.unwrap_or(0));
                    match &r.approval {
                        Some(answer) => format!(
                            "  {} {:<width$}  {} · {}",
                            if answer.approved {
                                paint.green("✓")
                            } else {
                                paint.yellow("✓")
                            },
                            r.name,
                            answer.describe(),
                            format_duration(dur)
                        ),
                        None => {
                            let approx = if r.usage.estimated { "~" } else { "" };
                            format!(
                                "  {} {:<width$}  {} · {approx}{} → {approx}{} tokens · {}",
                                paint.green("✓"),
                                r.name,
                                format_duration(dur),
                                r.usage.input_tokens,
                                r.usage.output_tokens,
                                usd(r.cost_usd)
                            )
                        }
                    }
                }
                StepStatus::Failed(err) => {
                    format!("  {} {:<width$}  failed: {err}", paint.red("✗"), r.name)
                }
                StepStatus::Skipped(why) => {
                    format!("  {} {:<width$}  skipped: {why}", paint.dim("-"), r.name)
                }
                StepStatus::Cancelled => format!(
                    "  {} {:<width$}  cancelled (gather no longer needs it)",
                    paint.dim("-"),
                    r.name
                ),
                StepStatus::Interrupted => format!(
                    "  {} {:<width$}  interrupted: {}",
                    paint.red("✗"),
                    r.name,
                    if approvals.contains(&r.name) {
                        "its question was not answered"
                    } else {
                        "its request was dropped"
                    }
                ),
            }),
            Event::Reused(r) => Some(match &r.approval {
                Some(answer) => format!(
                    "  {} {:<width$}  reused from the journal: {}",
                    paint.green("↺"),
                    r.name,
                    answer.describe()
                ),
                None => format!(
                    "  {} {:<width$}  reused from the journal · {}",
                    paint.green("↺"),
                    r.name,
                    usd(r.cost_usd)
                ),
            }),
        };
        if let Some(line) = line {
            live.line(line);
        }
        live.redraw(&paint);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        watch_interrupts(cancel, paint);
        crate::run::run(&plan, &program.tables.models, &opts, &on_event).await
    });
    // A question the run stopped waiting for (Ctrl-C) may still be reading the terminal:
    // show what it held back, and do not wait for its thread.
    live.release_all(&paint);
    runtime.shutdown_background();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{} {}", paint.red("error:"), redact(e.to_string()));
            return ExitCode::from(2);
        }
    };
    eprint!("{}", redact(summary(&report, &paint)));
    if let Some(j) = &journal {
        eprintln!("  run {} · journal {}", j.id(), j.path().display());
        if !report.succeeded {
            eprintln!(
                "  resume with: orch run {} --resume {}",
                a.file.display(),
                j.id()
            );
        }
    }
    if let Some(path) = &a.report {
        let written = serde_json::to_string_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|json| {
                std::fs::write(path, redact(json).as_str()).map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            eprintln!(
                "{} cannot write the report to {}: {e}",
                paint.red("error:"),
                path.display()
            );
            return ExitCode::from(1);
        }
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

fn runs(a: RunsArgs) -> ExitCode {
    let (state, script) = match &a.file {
        Some(f) => match std::fs::canonicalize(f) {
            Ok(p) => (
                a.state_dir
                    .clone()
                    .unwrap_or_else(|| journal::default_state_dir(&p)),
                Some(p.to_string_lossy().into_owned()),
            ),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", f.display());
                return ExitCode::from(2);
            }
        },
        None => (
            a.state_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(".orch")),
            None,
        ),
    };
    let list = match journal::list_runs(&state, script.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if list.is_empty() {
        eprintln!("no runs in {}", state.join("runs").display());
        return ExitCode::SUCCESS;
    }
    let width = list.iter().map(|r| r.id.len()).max().unwrap_or(2);
    // `ok/steps`: step executions that succeeded, of all (every `parallel for` instance is
    // one), as the run's summary counts them.
    println!(
        "{:<width$}  {:<12} {:>9} {:>9}  script",
        "id", "status", "ok/steps", "cost"
    );
    for r in &list {
        let script = if r.script.is_empty() {
            "? (no records)".to_string()
        } else {
            format!("{} ({})", r.script, r.workflow)
        };
        println!(
            "{:<width$}  {:<12} {:>9} {:>9}  {script}",
            r.id,
            r.status,
            format!("{}/{}", r.steps_done, r.steps_total),
            usd(r.cost_usd),
        );
    }
    ExitCode::SUCCESS
}

/// The run summary: one line per step, then totals.
fn summary(r: &crate::run::RunReport, paint: &Paint) -> String {
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
    let _ = writeln!(
        s,
        "  {:<width$}  {:<10} {:<14} {:>8} {:>9} {:>9} {:>10}",
        "step", "status", "model", "attempts", "in", "out", "cost"
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
        let _ = writeln!(
            s,
            "  {:<width$}  {:<10} {:<14} {:>8} {:>9} {:>9} {:>10}",
            x.name,
            status,
            x.model.as_deref().unwrap_or("-"),
            x.attempts,
            format!("{approx}{}", x.usage.input_tokens),
            format!("{approx}{}", x.usage.output_tokens),
            usd(x.cost_usd)
        );
    }
    let counts = r.step_counts();
    let _ = writeln!(
        s,
        "  {}/{} steps succeeded · {} tokens in · {} tokens out · {} · wall time {}",
        counts.succeeded,
        counts.total,
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

/// The status line of streamed answers on a terminal: `  ⋯ writer ~120 tokens · critic ~40
/// tokens`, redrawn in place (carriage return, erase line) as tokens arrive, erased before
/// any other progress line and drawn again after it. Off the terminal it draws nothing, so
/// logs get no partial lines.
///
/// While an approval's question waits for an answer on the terminal, progress lines are held
/// back (and the status line is not drawn), so that nothing is written into the question or
/// the answer being typed; they are printed once it is answered.
struct Live {
    on: bool,
    state: std::sync::Mutex<LiveState>,
}

#[derive(Default)]
struct LiveState {
    /// Tokens received so far, by step, in the order they started streaming.
    tokens: IndexMap<String, u64>,
    /// Whether a status line is on the screen.
    shown: bool,
    /// The approval step whose question is on the screen, and the ticket of that question.
    asking: Option<(String, u64)>,
    /// Tickets handed out so far.
    tickets: u64,
    /// Progress lines held back while a question is asked.
    held: Vec<String>,
}

/// The longest status line, in characters (longer ones are cut).
const LIVE_WIDTH: usize = 100;

impl Live {
    fn new(on: bool) -> Self {
        Live {
            on,
            state: std::sync::Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `tokens` received by `step` and redraws.
    fn update(&self, step: &str, tokens: u64, paint: &Paint) {
        if !self.on {
            return;
        }
        self.lock().tokens.insert(step.to_string(), tokens);
        self.redraw(paint);
    }

    /// Drops a step from the status line (its attempt ended or restarted).
    fn forget(&self, step: &str) {
        self.lock().tokens.shift_remove(step);
    }

    /// Erases the status line, if one is shown.
    fn clear_line(&self) {
        Self::erase(self.on, &mut self.lock());
    }

    fn erase(on: bool, state: &mut LiveState) {
        if on && state.shown {
            eprint!("\r\x1b[2K");
            state.shown = false;
        }
    }

    /// Prints a progress line, redacted (below the status line, which it erases), or holds it
    /// back while a question is asked.
    fn line(&self, text: String) {
        let text = redact(text).into_string();
        let mut state = self.lock();
        if state.asking.is_some() {
            state.held.push(text);
            return;
        }
        Self::erase(self.on, &mut state);
        eprintln!("{text}");
    }

    /// A question of approval step `step` is about to be asked: erases the status line and
    /// holds progress lines back until [`Live::release`] with the ticket returned.
    fn hold(&self, step: &str) -> u64 {
        let mut state = self.lock();
        Self::erase(self.on, &mut state);
        state.tickets += 1;
        let ticket = state.tickets;
        state.asking = Some((step.to_string(), ticket));
        ticket
    }

    /// The question of `ticket` was answered: prints the lines held back and redraws. Nothing
    /// when the run already stopped waiting for that answer ([`Live::abandon`]).
    fn release(&self, ticket: u64, paint: &Paint) {
        let held = {
            let mut state = self.lock();
            if !matches!(&state.asking, Some((_, t)) if *t == ticket) {
                return;
            }
            state.asking = None;
            std::mem::take(&mut state.held)
        };
        for l in held {
            eprintln!("{l}");
        }
        self.redraw(paint);
    }

    /// Step `step` ended: if its question is still waiting for an answer (the run stopped
    /// waiting: a timeout, Ctrl-C), ends the question's line and prints what was held back.
    fn abandon(&self, step: &str, paint: &Paint) {
        let held = {
            let mut state = self.lock();
            if !matches!(&state.asking, Some((s, _)) if s == step) {
                return;
            }
            state.asking = None;
            std::mem::take(&mut state.held)
        };
        eprintln!();
        for l in held {
            eprintln!("{l}");
        }
        self.redraw(paint);
    }

    /// At the end of the run: prints whatever is still held back.
    fn release_all(&self, paint: &Paint) {
        let step = self.lock().asking.as_ref().map(|(s, _)| s.clone());
        if let Some(step) = step {
            self.abandon(&step, paint);
        }
    }

    /// Draws the status line for the steps streaming now (or erases it when there are none).
    fn redraw(&self, paint: &Paint) {
        if !self.on {
            return;
        }
        let mut state = self.lock();
        if state.asking.is_some() {
            return;
        }
        let text: String = state
            .tokens
            .iter()
            .map(|(step, n)| format!("{step} ~{n} tokens"))
            .collect::<Vec<_>>()
            .join(" · ");
        let text: String = text.chars().take(LIVE_WIDTH).collect();
        if text.is_empty() {
            if state.shown {
                eprint!("\r\x1b[2K");
            }
            state.shown = false;
        } else {
            eprint!("\r\x1b[2K  {} {}", paint.dim("⋯"), paint.dim(&text));
            state.shown = true;
        }
    }
}

/// Asks approval questions on the terminal, one at a time: the question and `[y/N]` on
/// stderr, the answer read from stdin (`y`/`yes` approves; `n`/`no` or just Enter declines;
/// anything else asks again). Progress lines wait until the question is answered.
fn terminal_approver(live: Arc<Live>, paint: Paint, width: usize) -> Approver {
    let one_at_a_time = Arc::new(std::sync::Mutex::new(()));
    Approver::ask("on the terminal", move |req: &ApprovalRequest| {
        let _turn = one_at_a_time.lock().unwrap_or_else(|e| e.into_inner());
        let ticket = live.hold(&req.step);
        let answer = ask_on_terminal(req, &paint, width);
        live.release(ticket, &paint);
        answer
    })
}

fn ask_on_terminal(req: &ApprovalRequest, paint: &Paint, width: usize) -> Result<bool, String> {
    // Lines of a long question line up under its first.
    let indent = format!("\n{}", " ".repeat(width + 6));
    let question = redact(req.question.trim()).replace('\n', &indent);
    let mut prompt = format!(
        "  {} {:<width$}  {} {} ",
        paint.yellow("?"),
        req.step,
        paint.bold(&question),
        paint.dim("[y/N]")
    );
    let stdin = std::io::stdin();
    loop {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) => {
                eprintln!();
                return Err("the terminal's input ended before an answer".into());
            }
            Ok(_) => match line.trim().to_ascii_lowercase().as_str() {
                "y" | "yes" => return Ok(true),
                "" | "n" | "no" => return Ok(false),
                _ => {
                    prompt = format!(
                        "  {} {:<width$}  answer y or n {} ",
                        paint.yellow("?"),
                        "",
                        paint.dim("[y/N]")
                    )
                }
            },
            Err(e) => return Err(format!("cannot read the terminal: {e}")),
        }
    }
}

/// ANSI colours, only when enabled.
#[derive(Clone, Copy)]
struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    fn green(&self, s: &str) -> String {
        self.wrap("32", s)
    }
    fn red(&self, s: &str) -> String {
        self.wrap("31", s)
    }
    fn yellow(&self, s: &str) -> String {
        self.wrap("33", s)
    }
    fn cyan(&self, s: &str) -> String {
        self.wrap("36", s)
    }
    fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }
}
