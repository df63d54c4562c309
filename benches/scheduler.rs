//! Scheduler benchmark: DAGs of 10,000 steps on the simulator with a fixed latency, run on
//! tokio's paused clock so that the simulated latency costs no real time.
//!
//! For each shape it prints
//! - **makespan / lower bound**: the run's virtual wall time against
//!   `max(critical path × latency, steps × latency / concurrency)` (tightened for DAGs of
//!   rounds, see [`lower_bound`]), the best any scheduler could do (goal ≤ 1.05);
//! - **overhead per step**: real CPU time of the run (the scheduler, the simulator, the
//!   reports) divided by the steps, in µs (goal ≤ 5 µs);
//! - **memory per step**: the peak of live heap bytes during the run above what the plan
//!   already held, divided by the steps, from a counting global allocator (goal ≤ 1 KiB).
//!
//! Run with `cargo bench --bench scheduler` (or `scripts/bench.sh`). Compiling and planning
//! the scripts is timed separately and not counted. Exits non-zero when a goal is missed.

use std::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use orch::resolve::ResolveOptions;
use orch::run::{RunOptions, RunReport};

/// The `orch` binary's allocator (mimalloc, src/main.rs), counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is to mimalloc.
        let p = unsafe { MiMalloc.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { MiMalloc.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is to mimalloc.
        let p = unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                    - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Latency of every simulated call.
const LATENCY_MS: u64 = 100;
/// Steps per DAG.
const STEPS: usize = 10_000;

const GOAL_RATIO: f64 = 1.05;
const GOAL_OVERHEAD_US: f64 = 5.0;
const GOAL_BYTES: f64 = 1024.0;

fn header() -> String {
    format!(
        "provider s {{ kind: sim, latency: {LATENCY_MS}ms }}\nmodel m {{ provider: s }}\nagent a {{ model: m, max_tokens: 64 }}\n"
    )
}

/// `layers` rounds of a fan-out of `width` parallel steps and a fan-in step after them.
fn fan_out_fan_in(layers: usize, width: usize) -> String {
    let mut s = header();
    s.push_str("workflow main() {\n");
    for l in 0..layers {
        s.push_str("  parallel <> {\n");
        for w in 0..width {
            s.push_str(&format!("    s{l}_{w} = a(\"task {w} of round {l}\")\n"));
        }
        s.push_str("  }\n");
        s.push_str(&format!("  j{l} = a(\"join round {l}\")\n"));
    }
    s.push_str("}\n");
    s
}

/// `chains` independent chains of `len` steps each, side by side.
fn parallel_chains(chains: usize, len: usize) -> String {
    let mut s = header();
    s.push_str("workflow main() {\n  parallel <> {\n");
    for c in 0..chains {
        s.push_str("    then {\n");
        for i in 0..len {
            s.push_str(&format!("      c{c}_{i} = a(\"link {i} of chain {c}\")\n"));
        }
        s.push_str("    }\n");
    }
    s.push_str("  }\n}\n");
    s
}

/// One long chain, each step after the one before.
fn chain(len: usize) -> String {
    let mut s = header();
    s.push_str("workflow main() {\n");
    for i in 0..len {
        s.push_str(&format!("  c{i} = a(\"link {i}\")\n"));
    }
    s.push_str("}\n");
    s
}

/// CPU time of this thread, from the scheduler's statistics (nanoseconds on CPU).
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

struct Figures {
    name: String,
    steps: usize,
    makespan_ms: u64,
    bound_ms: u64,
    wall: Duration,
    cpu: Option<Duration>,
    peak_bytes: usize,
    retained_bytes: usize,
}

/// A lower bound on the makespan: `max(critical path × latency, steps × latency /
/// concurrency)`, and, for DAGs built of rounds that each wait for the one before
/// (`rounds = Some(width)`: a fan-out of `width` steps, then one fan-in step), the tighter
/// `rounds × (ceil(width / concurrency) + 1) × latency`, since no step of a round can start
/// before the previous fan-in is done.
fn lower_bound(
    steps: usize,
    critical: usize,
    max_concurrency: Option<usize>,
    rounds: Option<(usize, usize)>,
) -> u64 {
    let critical = critical as u64 * LATENCY_MS;
    let Some(c) = max_concurrency else {
        return critical;
    };
    let work = (steps as u64 * LATENCY_MS).div_ceil(c as u64);
    let layered = rounds.map_or(0, |(n, width)| {
        n as u64 * (width.div_ceil(c) as u64 + 1) * LATENCY_MS
    });
    critical.max(work).max(layered)
}

fn run_case(
    name: &str,
    src: &str,
    max_concurrency: Option<usize>,
    rounds: Option<(usize, usize)>,
) -> Figures {
    let t = Instant::now();
    let (program, diags) = orch::compile_source(
        "bench.orch",
        src,
        std::path::Path::new("."),
        &ResolveOptions::default(),
    );
    assert!(!diags.has_errors(), "{name}: the script has errors");
    let wf = orch::plan::entry_workflow(
        &program,
        None,
        orch::diag::Span::new(orch::diag::FileId(0), 0, 0),
    )
    .expect("workflow");
    let plan = orch::plan::lower(&program, wf);
    let compile = t.elapsed();
    let steps = plan.nodes.len();
    let bound_ms = lower_bound(steps, plan.critical_path.len(), max_concurrency, rounds);
    let opts = RunOptions {
        max_concurrency,
        ..RunOptions::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    // As `orch run` does: the plan shared with the run's tasks, not copied.
    let plan = std::sync::Arc::new(plan);
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let cpu0 = thread_cpu();
    let t = Instant::now();
    let report: RunReport = rt
        .block_on(orch::run::run_shared(
            plan.clone(),
            &program.tables.models,
            &opts,
            &|_| {},
        ))
        .expect("run starts");
    let wall = t.elapsed();
    let cpu = thread_cpu().zip(cpu0).map(|(b, a)| b.saturating_sub(a));
    let peak_bytes = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    let retained_bytes = LIVE.load(Ordering::Relaxed).saturating_sub(base);
    assert!(
        report.succeeded,
        "{name}: the run failed: {:?}",
        report.stopped
    );
    eprintln!(
        "  ({name}: compiled and planned {steps} steps in {:.0} ms)",
        compile.as_secs_f64() * 1e3
    );
    Figures {
        name: name.to_string(),
        steps,
        makespan_ms: report.wall_ms,
        bound_ms,
        wall,
        cpu,
        peak_bytes,
        retained_bytes,
    }
}

/// One benchmark case: a script, the run's `--max-concurrency`, and for DAGs of rounds their
/// number and width (see [`lower_bound`]).
struct Case {
    name: &'static str,
    src: String,
    max_concurrency: Option<usize>,
    rounds: Option<(usize, usize)>,
}

fn main() {
    // As `orch run` does: the run-time's heap without transparent huge pages.
    orch::cli::without_huge_pages();
    // `cargo bench` passes `--bench`; a name filters the cases.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let width = 999;
    let layers = STEPS / (width + 1);
    let rounds = Some((layers, width));
    let case = |name, src, max_concurrency, rounds| Case {
        name,
        src,
        max_concurrency,
        rounds,
    };
    let cases = vec![
        case(
            "fan-out/fan-in 10 × 999, unbounded",
            fan_out_fan_in(layers, width),
            None,
            rounds,
        ),
        case(
            "fan-out/fan-in 10 × 999, --max-concurrency 64",
            fan_out_fan_in(layers, width),
            Some(64),
            rounds,
        ),
        case(
            "100 chains × 100, --max-concurrency 64",
            parallel_chains(100, STEPS / 100),
            Some(64),
            None,
        ),
        case("chain of 10,000", chain(STEPS), None, None),
    ];
    println!(
        "scheduler benchmark: {STEPS} steps per DAG, simulated latency {LATENCY_MS} ms (paused clock)\n"
    );
    println!(
        "{:<46} {:>9} {:>9} {:>7} {:>10} {:>10} {:>11} {:>11}",
        "case", "makespan", "bound", "ratio", "wall µs/st", "cpu µs/st", "peak B/st", "kept B/st"
    );
    let mut missed = Vec::new();
    for c in cases {
        if filter.as_deref().is_some_and(|f| !c.name.contains(f)) {
            continue;
        }
        let f = run_case(c.name, &c.src, c.max_concurrency, c.rounds);
        let ratio = f.makespan_ms as f64 / f.bound_ms as f64;
        let per = |d: Duration| d.as_secs_f64() * 1e6 / f.steps as f64;
        let cpu_us = f.cpu.map(per);
        let peak = f.peak_bytes as f64 / f.steps as f64;
        let kept = f.retained_bytes as f64 / f.steps as f64;
        println!(
            "{:<46} {:>7}ms {:>7}ms {:>7.3} {:>10.1} {:>10} {:>11.0} {:>11.0}",
            f.name,
            f.makespan_ms,
            f.bound_ms,
            ratio,
            per(f.wall),
            cpu_us.map_or("n/a".to_string(), |c| format!("{c:.1}")),
            peak,
            kept
        );
        if ratio > GOAL_RATIO {
            missed.push(format!("{}: ratio {ratio:.3} > {GOAL_RATIO}", f.name));
        }
        let overhead = cpu_us.unwrap_or(per(f.wall));
        if overhead > GOAL_OVERHEAD_US {
            missed.push(format!(
                "{}: {overhead:.1} µs per step > {GOAL_OVERHEAD_US}",
                f.name
            ));
        }
        if peak > GOAL_BYTES {
            missed.push(format!("{}: {peak:.0} B per step > {GOAL_BYTES}", f.name));
        }
    }
    println!(
        "\ngoals: ratio ≤ {GOAL_RATIO}, overhead ≤ {GOAL_OVERHEAD_US} µs/step, memory ≤ {GOAL_BYTES} B/step"
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
