//! The `orch` command line: a thin clap front end over the library.
//!
//! Exit codes: 0 success; 1 errors in the script (or a failed run); 2 usage errors (bad
//! flags, unreadable inputs, a run that cannot be resumed); 130 interrupted (Ctrl-C).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod engine;
mod mcp;
mod otel;
mod progress;
mod report;
mod run;
mod show;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::diag::{
    Diagnostics, HumanStyle, LintLevels, SourceMap, Span, apply_levels, catalog, render_github,
    render_human, render_json, render_sarif,
};
use crate::plan::render::usd;
use crate::redact::redact;
use crate::resolve::ResolveOptions;
use crate::run::journal;

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
    /// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, each run also sends an OpenTelemetry trace
    /// (OTLP/HTTP; docs/observability.md).
    // Boxed: its many options would make every command as large as it.
    Run(Box<RunArgs>),
    /// Execute runs' steps for a durable engine: a Temporal worker that runs the workflows
    /// `orch run --engine` submits and their steps as activities, with the same providers,
    /// limits and redaction as a local run (keys from this process's environment;
    /// docs/scale-out.md).
    Worker(WorkerArgs),
    /// List journalled runs: id, status, step executions succeeded of all (`ok/steps`), cost,
    /// script. With --engine, the runs on the engine.
    Runs(RunsArgs),
    /// Answer an `approve(...)` step of a run on an engine (`orch run --engine`): sends the
    /// answer to the waiting run as a Temporal signal. A local run asks on its terminal
    /// instead (or approves everything with `orch run --yes`).
    Approve(ApproveArgs),
    /// Make the HTML report of a journalled run (as `orch run --report run.html` does): the
    /// DAG, a timeline of every attempt, each step's model, tokens, cost, prompts and answers.
    Report(ReportArgs),
    /// Format scripts in the one canonical layout (in place, or `--check`; `-` is stdin).
    Fmt(FmtArgs),
    /// Explain a diagnostic code: what it means, why it matters, a failing and a fixed example.
    Explain(ExplainArgs),
    /// Print a shell completion script for orch (bash, zsh, fish or powershell) to stdout.
    Completions(CompletionsArgs),
    /// Run the language server on stdin/stdout (LSP, for editors): diagnostics, hover, go to
    /// definition, references, rename, completion, quick fixes, formatting, symbols and
    /// semantic tokens.
    Lsp(LspArgs),
}

/// `orch lsp`.
#[derive(Debug, Args)]
pub struct LspArgs {
    /// Use stdin/stdout, the only transport; accepted because many LSP clients pass it.
    #[arg(long)]
    pub stdio: bool,
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
    /// Also start the MCP servers the workflow's agents use (in the current directory) and
    /// check that every granted tool (`NAME.tool`) is one the server lists; stops them after.
    #[arg(long)]
    pub mcp: bool,
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
    /// A Graphviz digraph of the steps, regions as clusters (`dot -Tsvg`).
    Dot,
    /// A Mermaid flowchart of the steps, regions as subgraphs (for a ```mermaid block).
    Mermaid,
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
    /// Also start the MCP servers the workflow's agents use (in the current directory), check
    /// the granted tools as `orch check --mcp` does, and show what each server says of them
    /// (read-only, destructive); stops them after.
    #[arg(long)]
    pub mcp: bool,
    #[command(flatten)]
    pub compile: CompileArgs,
}

/// `orch run`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("reuse").args(["resume", "cache"]).multiple(true)))]
pub struct RunArgs {
    /// Script to run.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Workflow to run (default: `main`, or the only one).
    #[arg(long)]
    pub workflow: Option<String>,
    /// An input: `name=value`, or `name=@path` to read a file (UTF-8, at most 16 MiB); a
    /// list or record is JSON (`items=["a", "b"]`). Repeatable.
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
    /// Record every model exchange (request, answer or failure) and every agent tool call
    /// with its result to a cassette FILE (JSON Lines, redacted: no key is written), for
    /// `--replay`. Works with any target (script providers, --endpoint, --simulate).
    #[arg(long, value_name = "FILE", conflicts_with = "replay")]
    pub record: Option<PathBuf>,
    /// Run with no provider at all: answer every model request, and every agent tool call,
    /// from a cassette FILE written by `--record` (nothing is sent; tool calls do not run;
    /// command steps do). A request the cassette does not have fails its step, naming the
    /// nearest recorded request and the first difference.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["simulate", "endpoint"])]
    pub replay: Option<PathBuf>,
    /// Cap every model step's max_tokens.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u32>,
    /// At most N steps in flight in the whole run.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: Option<u32>,
    /// Write the run report to this file: a PATH ending in `.html` (or `.htm`) gets one
    /// self-contained HTML page (the DAG, a timeline of every attempt, each step's model,
    /// tokens, cost, prompts and answers, totals against budgets; `orch report` makes the same
    /// page later); any other PATH gets JSON (every step's status, model, attempts, tokens,
    /// cost, timings, output, and every tool call of agent loops).
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// The directory agents' tools work in: file tools never reach outside it, `exec` runs
    /// there (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// No progress lines on stderr (the summary is still printed).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Verbose: print each model call's system text and prompt on stderr as it is sent
    /// (redacted; in an agent loop after the first turn, the tool results sent back).
    #[arg(long, short = 'v', conflicts_with = "quiet")]
    pub verbose: bool,
    /// Keep the texts of model calls (system text, prompt, answer) out of the journal: its
    /// `attempt` records keep only their SHA-256 and length (`orch runs show` cannot print
    /// them).
    #[arg(long)]
    pub no_store_prompts: bool,
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
    /// With --resume or --cache: print, for each step that runs again, why (it failed, did
    /// not start, is new, which part of its cache key changed, the cache has no result for
    /// it, or it is never cached).
    #[arg(long, requires = "reuse")]
    pub why_rerun: bool,
    /// Reuse the results of earlier runs from a cache directory: a step whose cache key (as
    /// for --resume) matches a step that succeeded in any run using DIR takes that result
    /// instead of running; steps that succeed now are added. Only steps without side effects
    /// are cached: model steps whose agent has no tools or only read, list, glob and grep.
    #[arg(long, env = "ORCH_CACHE_DIR", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Where run journals are kept: runs go to DIR/runs/ID/journal.jsonl (default: `.orch`
    /// in the script's directory).
    #[arg(long, env = "ORCH_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Do not journal this run (it cannot be resumed).
    #[arg(long, conflicts_with = "resume")]
    pub no_journal: bool,
    /// Approve every `approve(...)` step without asking (recorded as approved by --yes).
    /// Without it, approvals are asked on the terminal, and fail when there is none; with
    /// --engine, they wait for `orch approve RUN_ID STEP --yes|--no`.
    #[arg(long)]
    pub yes: bool,
    /// With --engine: submit the run, print its id and return (exit 0) without following
    /// it; `orch runs show RUN_ID --engine URL` shows it, `orch approve` answers its
    /// approvals.
    #[arg(long)]
    pub detach: bool,
    /// Run on a durable engine instead of in this process: `temporal://HOST:PORT` submits
    /// the run as a Temporal workflow that `orch worker`s execute, waits for it (unless
    /// --detach) and prints the same progress, summary and result; approval steps wait for
    /// `orch approve`. The same run submitted again attaches to it, or resumes it after a
    /// failure (docs/scale-out.md).
    #[arg(long, env = "ORCH_ENGINE", value_name = "URL")]
    pub engine: Option<String>,
    /// With --engine: the Temporal namespace.
    #[arg(long, default_value = "default", requires = "engine")]
    pub namespace: String,
    /// With --engine: the task queue the workers poll.
    #[arg(long, default_value = "orch", requires = "engine")]
    pub task_queue: String,
    /// With --engine: send the model steps of provider PROVIDER to task queue QUEUE
    /// (repeatable), whose workers (`orch worker --task-queue QUEUE --queue-rate N`) bound
    /// that provider's request rate across all of them.
    #[arg(long, value_name = "PROVIDER=QUEUE", requires = "engine")]
    pub step_queue: Vec<String>,
    #[command(flatten)]
    pub access: EngineAccessArgs,
    #[command(flatten)]
    pub compile: CompileArgs,
}

/// How to connect to the engine: plain gRPC unless `--tls` or `--api-key-env` (Temporal
/// Cloud).
#[derive(Debug, Args, Clone, Default)]
pub struct EngineAccessArgs {
    /// Connect to the engine with TLS (the system's root certificates).
    #[arg(long)]
    pub tls: bool,
    /// Authenticate to the engine with the API key in environment variable VAR (Temporal
    /// Cloud; implies --tls). Give the variable's name, never the key: the key is kept out of
    /// every output.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
}

/// `orch worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The engine: `temporal://HOST:PORT`.
    #[arg(long, env = "ORCH_ENGINE", value_name = "URL")]
    pub engine: String,
    /// The Temporal namespace.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// The task queue to poll (as `orch run --task-queue` submits to).
    #[arg(long, default_value = "orch")]
    pub task_queue: String,
    /// At most N steps at once on this worker.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: Option<u32>,
    /// The directory agents' tools work in on this worker (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Runs kept in memory between their tasks (Temporal's sticky cache, default 1000). 0:
    /// every task of a run may go to any worker, which replays its history (needed with
    /// Temporal's test server, which does not hand a dead worker's sticky tasks to others).
    #[arg(long, value_name = "N")]
    pub max_cached_runs: Option<usize>,
    /// At most N steps per second taken from this task queue by all its workers together,
    /// enforced by the server (Temporal's task-queue rate limit); with `orch run
    /// --step-queue PROVIDER=QUEUE`, a provider's request rate across the fleet.
    #[arg(long, value_name = "N", value_parser = positive_rate)]
    pub queue_rate: Option<f64>,
    #[command(flatten)]
    pub access: EngineAccessArgs,
}

/// A rate for `--queue-rate`: a finite number above 0.
fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(format!(
            "`{s}` is not a rate: give steps per second as a number above 0 (e.g. 5 or 0.5)"
        )),
    }
}

/// `orch runs`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    /// Only the runs of this script (kept in `.orch` in its directory unless --state-dir).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Where run journals are kept (default: `.orch` next to FILE, or in the current
    /// directory); with --engine, where the index of the runs this machine submitted is.
    #[arg(long, env = "ORCH_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(subcommand)]
    pub action: Option<RunsCommand>,
}

/// Where runs on an engine are (`orch runs`, `orch runs show`, `orch approve`).
#[derive(Debug, Args, Clone)]
pub struct EngineArgs {
    /// The durable engine the runs are on, `temporal://HOST:PORT` (for `orch runs` and `orch
    /// runs show`: read runs from it instead of the journals).
    #[arg(long, env = "ORCH_ENGINE", value_name = "URL")]
    pub engine: Option<String>,
    /// With --engine: the Temporal namespace.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub access: EngineAccessArgs,
}

/// `orch approve`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("answer").required(true).args(["yes", "no"])))]
pub struct ApproveArgs {
    /// The run's id: the workflow id `orch run --engine` prints.
    #[arg(value_name = "RUN_ID")]
    pub id: String,
    /// The approval step to answer.
    #[arg(value_name = "STEP")]
    pub step: String,
    /// Approve: the step's output is `true`.
    #[arg(long)]
    pub yes: bool,
    /// Decline: the step's output is `false` (it succeeds; the workflow decides what follows).
    #[arg(long)]
    pub no: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `orch runs` subcommands.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Show a run's steps and every model call: the system text, prompt and answer sent and
    /// received (redacted), with the error, stop reason, served model, tokens and cost.
    Show(ShowArgs),
}

/// `orch runs show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run's id (as `orch runs` lists it).
    #[arg(value_name = "RUN_ID")]
    pub id: String,
    /// Only this step: its name, or an instance's (`post[2]`, `draft#3`); a name without a
    /// suffix also shows its instances and nested steps.
    #[arg(value_name = "STEP")]
    pub step: Option<String>,
    /// Where run journals are kept (default: `.orch` in the current directory).
    #[arg(long, env = "ORCH_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `orch report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run's id, as `orch runs` lists it.
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,
    /// Where to write the page (`-`: standard output; default: `report.html` in the run's
    /// directory, STATE/runs/RUN_ID/).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Where run journals are kept (default: `.orch` in the current directory).
    #[arg(long, env = "ORCH_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Another directory the script's includes read from, as the run was given it: the
    /// script is planned again to draw the DAG's edges and regions. Repeatable.
    #[arg(long = "include-path", value_name = "DIR")]
    pub include_paths: Vec<PathBuf>,
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

/// `orch completions`.
#[derive(Debug, Args)]
#[command(
    after_help = "Install, e.g.:\n  bash:       orch completions bash > ~/.local/share/bash-completion/completions/orch\n  zsh:        orch completions zsh > ~/.zfunc/_orch   (with `fpath+=~/.zfunc` before `compinit` in ~/.zshrc)\n  fish:       orch completions fish > ~/.config/fish/completions/orch.fish\n  powershell: orch completions powershell >> $PROFILE"
)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: CompletionShell,
}

/// The shells `orch completions` writes for (clap_complete's generators).
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CompletionShell {
    /// Bash (bash-completion).
    Bash,
    /// Zsh (`#compdef orch`, for a directory on `fpath`).
    Zsh,
    /// Fish.
    Fish,
    /// PowerShell (`Register-ArgumentCompleter`).
    Powershell,
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
    cli.color.apply();
    if !huge_pages(&cli.command) {
        without_huge_pages();
    }
    match cli.command {
        Command::Check(a) => check(a),
        Command::Plan(a) => plan(a),
        Command::Run(a) => run::run(*a),
        Command::Worker(a) => engine::worker(a),
        Command::Runs(a) => runs(a),
        Command::Approve(a) => engine::approve(&a),
        Command::Report(a) => report::report(a),
        Command::Fmt(a) => crate::fmt::command::run(&a.files, a.check, style(Stream::Stderr)),
        Command::Explain(a) => explain(a),
        Command::Completions(a) => completions(a.shell),
        Command::Lsp(_) => match crate::lsp::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("orch lsp: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Whether `command` keeps the heap's transparent huge pages (Linux THP: 2 MiB pages that the
/// allocator, mimalloc, asks for with `madvise`). The commands that compile and exit
/// (`check`, `plan`, `fmt`, ...) build their AST, graphs and diagnostics in one burst: huge pages
/// spare them most first-touch page faults (about 15,000 to about 500 for `orch check` of a
/// 10,000-step script, 157 to 116 ms of CPU; `docs/development.md`, Benchmarks). The run-time
/// and the long-lived ones (`run`, `worker`, `lsp`) free and reuse memory for as long as they
/// live, where huge pages cost more than they save: the kernel compacts memory to find them
/// (the 20,000-item fan-out spent 2-3.5 s of system time a run with them, 0.8-1.5 s without).
fn huge_pages(command: &Command) -> bool {
    !matches!(
        command,
        Command::Run(_) | Command::Worker(_) | Command::Lsp(_)
    )
}

/// Turns transparent huge pages off for the whole process and the processes it starts (Linux's
/// `PR_SET_THP_DISABLE`, inherited across `fork` and `execve`: prctl(2)), as [`huge_pages`]
/// wants for the run-time; the run-time benchmarks call it to measure what `orch run` does.
/// Best effort: where the kernel refuses, or off Linux, the heap stays as it was.
pub fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
}

/// Writes the completion script for `shell` to stdout (clap_complete, from the same clap
/// definition as the parser, so it always knows every subcommand, flag and value).
fn completions(shell: CompletionShell) -> ExitCode {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
        CompletionShell::Powershell => Shell::PowerShell,
    };
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "orch", &mut out);
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&out).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`orch completions bash | head`) is not an error worth a panic.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the completion script: {e}");
            ExitCode::from(1)
        }
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
    /// Makes this the choice for every stream (anstream's global choice, read by
    /// [`Stream::color`]).
    fn apply(self) {
        anstream::ColorChoice::write_global(match self {
            ColorChoice::Auto => anstream::ColorChoice::Auto,
            ColorChoice::Always => anstream::ColorChoice::AlwaysAnsi,
            ColorChoice::Never => anstream::ColorChoice::Never,
        });
    }
}

/// One of the process's output streams.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// Whether to colour it: `--color always` or `never`, or by default when it is a terminal
    /// and `NO_COLOR` is unset or empty (https://no-color.org). anstream decides, so
    /// `CLICOLOR_FORCE` and `TERM=dumb` are honoured too.
    fn color(self) -> bool {
        let choice = match self {
            Stream::Stdout => anstream::AutoStream::choice(&std::io::stdout()),
            Stream::Stderr => anstream::AutoStream::choice(&std::io::stderr()),
        };
        choice != anstream::ColorChoice::Never
    }

    /// Its width in columns: the terminal's when it is one, else `COLUMNS`, else 100.
    fn width(self) -> usize {
        let size = match self {
            Stream::Stdout => terminal_size::terminal_size_of(std::io::stdout()),
            Stream::Stderr => terminal_size::terminal_size_of(std::io::stderr()),
        };
        size.map(|(w, _)| usize::from(w.0))
            .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
            .unwrap_or(100)
    }
}

/// How to render diagnostics on `stream`.
fn style(stream: Stream) -> HumanStyle {
    HumanStyle {
        color: stream.color(),
        unicode: true,
        width: stream.width(),
    }
}

fn resolve_opts(c: &CompileArgs) -> ResolveOptions {
    ResolveOptions {
        include_paths: c.include_paths.clone(),
        ..ResolveOptions::default()
    }
}

fn check(a: CheckArgs) -> ExitCode {
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
        let crate::Compiled {
            set,
            program,
            mut diags,
            priced,
        } = crate::compile_file_priced(file, &resolve_opts(&a.compile));
        apply_levels(&mut diags, &program.sources, &levels);
        failed |= diags.has_errors();
        let mcp_ok = !a.mcp || diags.has_errors() || check_mcp(file, &program);
        failed |= !mcp_ok;
        match a.format {
            DiagFormat::Sarif => checked.push((diags, program.sources)),
            DiagFormat::Github => {
                let _ = write!(out, "{}", render_github(&diags, &program.sources));
            }
            DiagFormat::Human => {
                let _ = write!(
                    out,
                    "{}",
                    render_human(&diags, &program.sources, style(Stream::Stdout))
                );
                if diags.is_empty() && mcp_ok {
                    let _ = writeln!(out, "{}: ok", file.display());
                }
            }
            DiagFormat::Json => json_reports.push(render_json(&diags, &program.sources)),
        }
        // Not freed: the process ends soon, and the system reclaims the memory of a large
        // program (its ASTs, graphs and priced plans) faster than freeing it value by value.
        std::mem::forget((set, program.workflows, priced));
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

/// `orch check --mcp` for one checked file: starts the MCP servers its workflow's agents
/// use and checks their grants; says on stderr what failed. `false` on a failure.
fn check_mcp(file: &Path, program: &crate::check::Program) -> bool {
    let Some(entry) = program.sources.files().next().map(|(id, _)| id) else {
        return true;
    };
    // A library module without a workflow has no plan: its agents are checked where used.
    let Ok(workflow) = crate::plan::entry_workflow(program, None, Span::new(entry, 0, 0)) else {
        return true;
    };
    let plan = crate::plan::lower(program, workflow);
    match mcp::check(&plan) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("error: {}: {}", file.display(), redact(e).as_str());
            false
        }
    }
}

/// Compiles and picks the workflow; prints diagnostics to stderr. `None` when it cannot go on.
fn compile_for_plan(
    file: &Path,
    workflow: Option<&str>,
    c: &CompileArgs,
    levels: &LintLevels,
) -> Option<(crate::check::Program, crate::plan::Plan)> {
    let crate::Compiled {
        program,
        mut diags,
        priced,
        ..
    } = crate::compile_file_priced(file, &resolve_opts(c));
    apply_levels(&mut diags, &program.sources, levels);
    let st = style(Stream::Stderr);
    if !diags.is_empty() {
        eprint!("{}", render_human(&diags, &program.sources, st));
    }
    if diags.has_errors() {
        return None;
    }
    let entry = program.sources.files().next().map(|(id, _)| id)?;
    match crate::plan::entry_workflow(&program, workflow, Span::new(entry, 0, 0)) {
        Ok(wf) => {
            let plan = priced.plan(&program, wf);
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

/// A script path that names no file is a usage error (exit code 2), said before anything is
/// compiled: `orch run nope.orch` is a typo on the command line, not a broken script.
/// Returns the exit code when `file` does not exist (or cannot be looked at).
fn no_such_script(file: &Path) -> Option<ExitCode> {
    let problem = match std::fs::metadata(file) {
        Ok(m) if m.is_dir() => "is a directory, not a script".to_string(),
        Ok(_) => return None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
        Err(e) => format!("cannot be read: {e}"),
    };
    eprintln!(
        "error: file `{}` {problem}\n  give the path of an `.orch` script",
        file.display()
    );
    Some(ExitCode::from(2))
}

fn plan(a: PlanArgs) -> ExitCode {
    if let Some(code) = no_such_script(&a.file) {
        return code;
    }
    let levels = match a.compile.lint_levels() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let Some((program, mut plan)) =
        compile_for_plan(&a.file, a.workflow.as_deref(), &a.compile, &levels)
    else {
        return ExitCode::from(1);
    };
    if a.mcp
        && let Err(e) = mcp::annotate(&mut plan)
    {
        eprintln!("error: {}: {}", a.file.display(), redact(e).as_str());
        return ExitCode::from(1);
    }
    // A plan holds the script's text only, which the checker keeps free of literal keys;
    // redacting it anyway keeps the promise that nothing orch writes carries a secret.
    match a.format {
        PlanFormat::Text => print!("{}", redact(crate::plan::render_text(&plan))),
        PlanFormat::Dot => print!("{}", redact(crate::plan::render_dot(&plan))),
        PlanFormat::Mermaid => print!("{}", redact(crate::plan::render_mermaid(&plan))),
        PlanFormat::Json => match serde_json::to_string_pretty(&plan) {
            Ok(s) => println!("{}", redact(s)),
            Err(e) => {
                eprintln!("error: cannot serialize the plan: {e}");
                return ExitCode::from(1);
            }
        },
    }
    // The process ends now: freeing the program and the plan value by value takes longer
    // than the system takes to reclaim the memory (a tenth of `orch plan` at 40,000 steps).
    std::mem::forget((program, plan));
    ExitCode::SUCCESS
}

impl RunsArgs {
    /// The state directory `orch runs` reads, and the canonical path of the script it is
    /// limited to: with FILE, `--state-dir` or the directory beside FILE; without, `--state-dir`
    /// or `.orch`. An unreadable FILE is a usage error (exit status 2), printed here.
    fn scope(&self) -> Result<(PathBuf, Option<String>), ExitCode> {
        let Some(f) = &self.file else {
            let state = self.state_dir.clone();
            return Ok((state.unwrap_or_else(|| PathBuf::from(".orch")), None));
        };
        match std::fs::canonicalize(f) {
            Ok(p) => Ok((
                self.state_dir
                    .clone()
                    .unwrap_or_else(|| journal::default_state_dir(&p)),
                Some(p.to_string_lossy().into_owned()),
            )),
            Err(e) => Err(run::usage_error(&format!(
                "cannot read {}: {e}",
                f.display()
            ))),
        }
    }
}

fn runs(a: RunsArgs) -> ExitCode {
    if let Some(RunsCommand::Show(s)) = a.action {
        if s.engine.engine.is_some() {
            return engine::show(&s);
        }
        return show::show(&s);
    }
    if a.engine.engine.is_some() {
        return engine::runs(&a);
    }
    let (state, script) = match a.scope() {
        Ok(x) => x,
        Err(code) => return code,
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

/// Colours of progress and summary lines on stderr (anstyle), only when stderr is coloured
/// ([`Stream::color`]).
#[derive(Clone, Copy)]
struct Paint {
    on: bool,
}

impl Paint {
    /// Paint for stderr.
    fn stderr() -> Self {
        Paint {
            on: Stream::Stderr.color(),
        }
    }

    fn wrap(&self, style: anstyle::Style, s: &str) -> String {
        if self.on {
            format!("{style}{s}{style:#}")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.wrap(anstyle::Style::new().bold(), s)
    }
    fn green(&self, s: &str) -> String {
        self.wrap(anstyle::AnsiColor::Green.on_default(), s)
    }
    fn red(&self, s: &str) -> String {
        self.wrap(anstyle::AnsiColor::Red.on_default(), s)
    }
    fn yellow(&self, s: &str) -> String {
        self.wrap(anstyle::AnsiColor::Yellow.on_default(), s)
    }
    fn cyan(&self, s: &str) -> String {
        self.wrap(anstyle::AnsiColor::Cyan.on_default(), s)
    }
    fn dim(&self, s: &str) -> String {
        self.wrap(anstyle::Style::new().dimmed(), s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The run-time's commands turn huge pages off, and the call does turn them off (the flag
    /// is the process's: the rest of this test process runs without them, which changes no
    /// result).
    #[test]
    fn the_run_time_runs_without_huge_pages() {
        let run = Cli::try_parse_from(["orch", "run", "x.orch"]).expect("parses");
        let check = Cli::try_parse_from(["orch", "check", "x.orch"]).expect("parses");
        assert!(!huge_pages(&run.command));
        assert!(huge_pages(&check.command));
        without_huge_pages();
        #[cfg(target_os = "linux")]
        assert_eq!(nix::sys::prctl::get_thp_disable().ok(), Some(true));
    }
}
