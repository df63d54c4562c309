//! Runtime benchmark on a real clock: the journal's cost, a large fan-out, and the
//! simulator's latency.
//!
//! - **journal**: a 20,000-item `parallel for` on the simulator (10 ms a call, unbounded),
//!   run without a journal and with one (in a temporary directory); prints both wall (and CPU) times,
//!   their ratio (goal ≤ 1.2) and the journal's syncs per step (group commit: goal ≤ 0.1);
//! - **fan-out 100k**: a 100,000-item `parallel for` with the journal (goal ≤ 5 s wall, the
//!   script's compilation not counted), with the run's CPU time (user + system, all threads,
//!   from `getrusage`: the figure to compare on a busy machine) and peak RSS per item
//!   (`ORCH_BENCH_ITEMS=N` runs another size, for profiling);
//! - **sim latency**: a chain of 100 calls of 10 ms each, on the real clock: makespan against
//!   100 × 10 ms (goal ≤ 1.02: the simulator's latency is exact, not rounded to the next
//!   millisecond).
//!
//! Each run is on a current-thread tokio runtime and allocates with mimalloc, as `orch run`
//! does (src/cli/run.rs `execute`, src/main.rs), so these are the binary's figures. Run with
//! `cargo bench --bench runtime` (or `scripts/bench.sh runtime`); a name filters the cases
//! (`journal`, `fan-out`, `latency`). Exits non-zero when a goal is missed.

use std::time::{Duration, Instant};

use orch::resolve::ResolveOptions;
use orch::run::{RunOptions, RunReport, Target, journal::Journal};

/// The allocator of the `orch` binary (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LATENCY_MS: u64 = 10;
const GOAL_JOURNAL_RATIO: f64 = 1.2;
const GOAL_SYNCS_PER_STEP: f64 = 0.1;
const GOAL_FAN_OUT_S: f64 = 5.0;
const GOAL_LATENCY_RATIO: f64 = 1.02;

fn header() -> String {
    format!(
        "provider s {{ kind: sim, latency: {LATENCY_MS}ms }}\nmodel m {{ provider: s }}\nagent a {{ model: m, max_tokens: 16 }}\n"
    )
}

/// A `parallel for` over `n` literal items, one model step each.
fn fan_out(n: usize) -> String {
    let items: Vec<String> = (0..n).map(|i| format!("\"item {i}\"")).collect();
    format!(
        "{}workflow main() {{\n  r = parallel for x in [{}] {{\n    y = a(\"do {{x}}\")\n  }}\n}}\n",
        header(),
        items.join(", ")
    )
}

/// One chain of `n` steps, each after the one before.
fn chain(n: usize) -> String {
    let mut s = header();
    s.push_str("workflow main() {\n");
    for i in 0..n {
        s.push_str(&format!("  c{i} = a(\"link {i}\")\n"));
    }
    s.push_str("}\n");
    s
}

struct Compiled {
    program: orch::check::Program,
    plan: std::sync::Arc<orch::plan::Plan>,
}

fn compile(src: &str) -> Compiled {
    let (program, diags) = orch::compile_source(
        "bench.orch",
        src,
        std::path::Path::new("."),
        &ResolveOptions::default(),
    );
    assert!(!diags.has_errors(), "the script has errors");
    let wf = orch::plan::entry_workflow(
        &program,
        None,
        orch::diag::Span::new(orch::diag::FileId(0), 0, 0),
    )
    .expect("workflow");
    let plan = std::sync::Arc::new(orch::plan::lower(&program, wf));
    Compiled { program, plan }
}

struct Ran {
    wall: Duration,
    /// CPU time of the whole process during the run (user + system, every thread).
    cpu: Duration,
    /// Peak resident memory of the process during the run, in bytes (`None` where Linux's
    /// `/proc/self/status` is not there).
    peak_rss: Option<u64>,
    report: RunReport,
    syncs: u64,
}

/// CPU time of the process so far, user + system, from `getrusage`.
fn process_cpu() -> Duration {
    // SAFETY: `getrusage` fills the struct it is given; a zeroed `rusage` is a valid value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable `rusage`.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Resets the process's peak resident memory to its current size (Linux: `clear_refs`
/// 5), so that [`peak_rss`] reports the peak of what runs after.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident memory since the last [`reset_peak_rss`], in bytes (Linux's
/// `VmHWM`).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs `c` on the simulator on a real clock, with a journal in a new temporary directory
/// when `journal` is set.
fn run(c: &Compiled, journal: bool) -> Ran {
    run_watched(c, journal, &|_| {})
}

/// [`run`], telling `on_event` of every event of the run.
fn run_watched(
    c: &Compiled,
    journal: bool,
    on_event: &(dyn Fn(&orch::run::Event) + Send + Sync),
) -> Ran {
    let state = tempfile::tempdir().expect("a temporary directory");
    let journal = journal.then(|| Journal::create(state.path(), "/bench/bench.orch"));
    let opts = RunOptions {
        target: Target::Simulate {
            latency_ms: LATENCY_MS,
            run_commands: false,
        },
        journal: journal.clone(),
        ..RunOptions::default()
    };
    // The runtime `orch run` drives a run on (src/cli/run.rs `execute`): one thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    reset_peak_rss();
    let cpu0 = process_cpu();
    let t = Instant::now();
    let report = rt
        .block_on(orch::run::run_shared(
            c.plan.clone(),
            &c.program.tables.models,
            &opts,
            on_event,
        ))
        .expect("run starts");
    let wall = t.elapsed();
    let cpu = process_cpu().saturating_sub(cpu0);
    let peak_rss = peak_rss();
    assert!(report.succeeded, "the run failed: {:?}", report.stopped);
    let syncs = journal.as_ref().map_or(0, Journal::syncs);
    drop(rt);
    Ran {
        wall,
        cpu,
        peak_rss,
        report,
        syncs,
    }
}

fn main() {
    // As `orch run` does: the run-time's heap without transparent huge pages.
    orch::cli::without_huge_pages();
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let mut missed = Vec::new();
    println!("runtime benchmark: real clock, simulator at {LATENCY_MS} ms a call\n");

    if wanted("journal") {
        let n = 20_000;
        let c = compile(&fan_out(n));
        // Warm up (allocator, threads, page cache), then measure each twice and keep the
        // better, so one noisy neighbour does not decide.
        let _ = run(&c, false);
        let without = (0..2)
            .map(|_| run(&c, false))
            .min_by_key(|r| r.wall)
            .expect("runs");
        let with = (0..2)
            .map(|_| run(&c, true))
            .min_by_key(|r| r.wall)
            .expect("runs");
        let steps = with.report.steps.len();
        let ratio = with.wall.as_secs_f64() / without.wall.as_secs_f64();
        let per_step = with.syncs as f64 / steps as f64;
        println!("journal: {n}-item parallel for ({steps} steps)");
        println!(
            "  without journal {:>8.3} s   (cpu {:.3} s)\n  with journal    {:>8.3} s   (cpu {:.3} s)   ratio {ratio:.3} (goal ≤ {GOAL_JOURNAL_RATIO})\n  syncs           {:>8}     {per_step:.4} per step (goal ≤ {GOAL_SYNCS_PER_STEP})\n",
            without.wall.as_secs_f64(),
            without.cpu.as_secs_f64(),
            with.wall.as_secs_f64(),
            with.cpu.as_secs_f64(),
            with.syncs
        );
        if ratio > GOAL_JOURNAL_RATIO {
            missed.push(format!("journal: ratio {ratio:.3} > {GOAL_JOURNAL_RATIO}"));
        }
        if per_step > GOAL_SYNCS_PER_STEP {
            missed.push(format!(
                "journal: {per_step:.4} syncs per step > {GOAL_SYNCS_PER_STEP}"
            ));
        }
    }

    if wanted("fan-out") {
        // ORCH_BENCH_ITEMS: another size, for profiling (the goal is for 100,000).
        let n = std::env::var("ORCH_BENCH_ITEMS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        let t = Instant::now();
        let c = compile(&fan_out(n));
        let compiled = t.elapsed();
        let r = run(&c, true);
        let s = r.wall.as_secs_f64();
        let steps = r.report.steps.len() as f64;
        let rss = r.peak_rss.map_or("n/a".to_string(), |b| {
            format!(
                "{:.0} MB, {:.0} B per item",
                b as f64 / 1e6,
                b as f64 / n as f64
            )
        });
        println!(
            "fan-out: {n}-item parallel for with journal: {s:.3} s (goal ≤ {GOAL_FAN_OUT_S} s; {:.1} µs per step; {} syncs; compiled in {:.0} ms, not counted)\n  cpu {:.3} s (user + system, {:.1} µs per step); peak RSS {rss}\n",
            s * 1e6 / steps,
            r.syncs,
            compiled.as_secs_f64() * 1e3,
            r.cpu.as_secs_f64(),
            r.cpu.as_secs_f64() * 1e6 / steps,
        );
        if s > GOAL_FAN_OUT_S {
            missed.push(format!("fan-out: {s:.3} s > {GOAL_FAN_OUT_S} s"));
        }
    }

    if wanted("latency") {
        let n = 100;
        let c = compile(&chain(n));
        // When each step's attempt started and when the scheduler took its end, to tell
        // the time inside the steps (the simulated call) from the scheduler's between them.
        let seen = std::sync::Mutex::new(Vec::new());
        let r = run_watched(&c, false, &|e| {
            let at = Instant::now();
            let mark = match e {
                orch::run::Event::Started { .. } => Some(true),
                orch::run::Event::Finished(_) => Some(false),
                _ => None,
            };
            if let Some(started) = mark {
                seen.lock().expect("marks").push((started, at));
            }
        });
        let seen = seen.into_inner().expect("marks");
        let (mut inside, mut between) = (Duration::ZERO, Duration::ZERO);
        for w in seen.windows(2) {
            match (w[0], w[1]) {
                ((true, a), (false, b)) => inside += b - a,
                ((false, a), (true, b)) => between += b - a,
                _ => {}
            }
        }
        let bound = n as f64 * LATENCY_MS as f64;
        let ms = r.wall.as_secs_f64() * 1e3;
        let ratio = ms / bound;
        println!(
            "sim latency: chain of {n} × {LATENCY_MS} ms: {ms:.1} ms wall, {:.3} ms per call, ratio {ratio:.4} (goal ≤ {GOAL_LATENCY_RATIO})",
            ms / n as f64
        );
        println!(
            "  per link: {:.3} ms from an attempt's start to its step's end (the call), {:.3} ms from a step's end to the next attempt's start (the scheduler)\n",
            inside.as_secs_f64() * 1e3 / n as f64,
            between.as_secs_f64() * 1e3 / (n - 1) as f64
        );
        if ratio > GOAL_LATENCY_RATIO {
            missed.push(format!(
                "sim latency: ratio {ratio:.4} > {GOAL_LATENCY_RATIO}"
            ));
        }
    }

    println!(
        "goals: journal ≤ {GOAL_JOURNAL_RATIO}× and ≤ {GOAL_SYNCS_PER_STEP} syncs per step, 100k fan-out ≤ {GOAL_FAN_OUT_S} s, sim latency ≤ {GOAL_LATENCY_RATIO}× exact"
    );
    if missed.is_empty() {
        println!("all goals met");
    } else {
        for m in &missed {
            println!("missed: {m}");
        }
        std::process::exit(1);
    }
}
