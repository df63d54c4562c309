//! How fast the front end is on a large script: `cargo bench --bench check` (or
//! `scripts/bench.sh`).
//!
//! Generates a realistic 10,000-step script (`large_script`), then times each stage over
//! several runs and prints the median and the minimum: parsing the file, loading it (parse and
//! includes), checking, applying lint levels, planning, and the whole of what `orch check`
//! does; then `orch check` itself, end to end (process start to exit, warnings printed), on
//! the release binary: the goal is 100 ms for 10,000 steps on the project's machine (2 cores).
//! Its CPU time (user + system of the child) is printed too: the figure to compare when other
//! work shares the machine. Last, the same script with a warning on a quarter of its steps:
//! checking, and rendering the warnings (human and JSON; the human rendering must stay under
//! 100 ms for 10,000 steps), each with the CPU time it took on all threads (the human rendering
//! uses one thread per core from 256 diagnostics on, so its CPU time can exceed its wall time).
//! Then `orch plan` (text) end to end on scripts of 5,000 to 40,000 steps: wall time and the
//! child's peak resident memory (its `ru_maxrss` from `wait4`); at 40,000 steps it must stay
//! under 2 s and 300 MB.
//!
//! Every figure is printed; the bench exits with status 1 when a goal is missed (at the
//! default size), so `scripts/bench.sh` fails.
//!
//! `ORCH_BENCH_STEPS` (default 10000) and `ORCH_BENCH_RUNS` (default 15) change the size and
//! the number of runs; `ORCH_BENCH_WRITE=PATH` only writes the script to PATH (to profile
//! `orch check PATH`, e.g. under `perf record` or `valgrind --tool=callgrind`). A plain harness (no criterion): a few figures, no build weight.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use orch::diag::{FileId, LintLevels, Span, apply_levels};
use orch::resolve::ResolveOptions;

mod large_script;

/// What `orch check` (end to end, median) must stay under on a 10,000-step script.
const BUDGET: Duration = Duration::from_millis(100);

/// What rendering the warnings of a 10,000-step script as human text must stay under.
const RENDER_BUDGET: Duration = Duration::from_millis(100);

/// What `orch plan` (text) must stay under on a 40,000-step script: time, then peak RSS in
/// bytes.
const PLAN_BUDGET: (Duration, u64) = (Duration::from_secs(2), 300 << 20);

/// The script sizes `orch plan` is measured on.
const PLAN_STEPS: [usize; 4] = [5_000, 10_000, 20_000, 40_000];

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median and minimum of `runs` timings of `f`.
fn time<T>(runs: usize, f: impl FnMut() -> T) -> (Duration, Duration) {
    let (median, min, _) = time_cpu(runs, f);
    (median, min)
}

/// Median and minimum wall time of `runs` runs of `f`, and the median CPU time (user +
/// system) this process spent in them, on all its threads: the figure to compare when other
/// work shares the machine.
fn time_cpu<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration, Duration) {
    let (mut times, mut cpu): (Vec<Duration>, Vec<Duration>) = (0..runs)
        .map(|_| {
            let (start, cpu_start) = (Instant::now(), cpu_time(libc::RUSAGE_SELF));
            black_box(f());
            (
                start.elapsed(),
                cpu_time(libc::RUSAGE_SELF).saturating_sub(cpu_start),
            )
        })
        .unzip();
    times.sort();
    cpu.sort();
    (times[times.len() / 2], times[0], cpu[cpu.len() / 2])
}

/// User + system time so far of `who` (`RUSAGE_SELF`, or `RUSAGE_CHILDREN`: the waited-for
/// children), from `getrusage(2)`.
fn cpu_time(who: libc::c_int) -> Duration {
    // SAFETY: all-zero is a valid `rusage` (plain integers).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is valid for the call.
    let r = unsafe { libc::getrusage(who, &mut usage) };
    assert_eq!(r, 0, "getrusage: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn ms(d: Duration) -> String {
    format!("{:8.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    // `cargo test --benches` runs this file too: stay quick there.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let steps_asked = env_or("ORCH_BENCH_STEPS", 10_000);
    let runs = env_or("ORCH_BENCH_RUNS", 15).max(1);
    let large_script::Generated {
        text,
        steps,
        blocks,
    } = large_script::generate(steps_asked, 1);
    if let Ok(path) = std::env::var("ORCH_BENCH_WRITE") {
        std::fs::write(&path, &text).expect("write the script");
        println!("wrote {path}: {steps} steps, {blocks} parallel blocks");
        return;
    }
    println!(
        "script: {steps} steps, {blocks} parallel blocks, {} lines, {} KiB; {runs} runs each",
        text.lines().count(),
        text.len() / 1024
    );
    let opts = ResolveOptions::default();
    let dir = Path::new(".");

    // Each stage on its own, the earlier stages done once beforehand.
    let (set, load_diags) = orch::resolve::load_source("large.orch", &text, dir, &opts);
    assert!(!load_diags.has_errors(), "the generated script must load");
    let (program, mut diags) = orch::compile_source("large.orch", &text, dir, &opts);
    assert!(!diags.has_errors(), "the generated script must check");
    let levels = LintLevels::new();
    apply_levels(&mut diags, &program.sources, &levels);
    let entry = Span::new(program.sources.files().next().expect("a file").0, 0, 0);
    let wf = orch::plan::entry_workflow(&program, None, entry).expect("main");

    let rows: Vec<(&str, (Duration, Duration))> = vec![
        (
            "parse",
            time(runs, || orch::syntax::parse(FileId(0), &text).is_ok()),
        ),
        (
            "load (parse + includes)",
            time(runs, || {
                orch::resolve::load_source("large.orch", &text, dir, &opts)
                    .0
                    .modules
                    .len()
            }),
        ),
        (
            "check",
            time(runs, || {
                let mut d = orch::diag::Diagnostics::new();
                orch::check::check(&set, &mut d).workflows.len()
            }),
        ),
        (
            "lint levels",
            time(runs, || {
                let mut d = diags.clone();
                apply_levels(&mut d, &program.sources, &levels);
                d.len()
            }),
        ),
        (
            "plan",
            time(runs, || orch::plan::lower(&program, wf).nodes.len()),
        ),
        (
            "total: load + check + levels",
            time(runs, || {
                let (p, mut d) = orch::compile_source("large.orch", &text, dir, &opts);
                apply_levels(&mut d, &p.sources, &levels);
                d.has_errors()
            }),
        ),
    ];
    println!(
        "{:<30} {:>11} {:>11} {:>12}",
        "stage", "median", "min", "µs/step"
    );
    for (name, (median, min)) in &rows {
        println!(
            "{name:<30} {} {} {:12.2}",
            ms(*median),
            ms(*min),
            median.as_secs_f64() * 1e6 / steps as f64
        );
    }
    let total = rows.last().expect("rows").1.0;
    println!(
        "in-process check of {steps} steps: {} median",
        ms(total).trim()
    );
    let cli_ok = cli(&text, runs);
    let render_ok = warnings(&text, &opts, &levels);
    let plan_ok = plan_cli();
    // The goals are for the default size; other sizes only print their figures.
    if steps_asked == 10_000 && !(cli_ok && render_ok && plan_ok) {
        println!("check bench: a goal was missed");
        std::process::exit(1);
    }
}

/// The same script with a lint on about a quarter of its steps: a pinned agent inside a
/// block of another model (W0402). Checking, then rendering every warning. Whether the human
/// rendering met [`RENDER_BUDGET`].
fn warnings(text: &str, opts: &ResolveOptions, levels: &LintLevels) -> bool {
    let text = text.replace("scout<sonnet>(", "scout(");
    let (program, mut diags) = orch::compile_source("large.orch", &text, Path::new("."), opts);
    apply_levels(&mut diags, &program.sources, levels);
    let runs = 3;
    println!(
        "with {} warnings ({runs} runs each):",
        diags.warning_count()
    );
    let rows = [
        (
            "total: load + check + levels",
            time_cpu(runs, || {
                let (p, mut d) = orch::compile_source("large.orch", &text, Path::new("."), opts);
                apply_levels(&mut d, &p.sources, levels);
                d.len()
            }),
        ),
        (
            "render human",
            time_cpu(runs, || {
                orch::diag::render_human(&diags, &program.sources, Default::default()).len()
            }),
        ),
        (
            "render json",
            time_cpu(runs, || {
                orch::diag::render_json(&diags, &program.sources).len()
            }),
        ),
    ];
    println!("{:<30} {:>11} {:>11} {:>11}", "", "median", "min", "CPU");
    for (name, (median, min, cpu)) in &rows {
        println!("{name:<30} {} {} {}", ms(*median), ms(*min), ms(*cpu));
    }
    let (human, _, human_cpu) = rows[1].1;
    println!(
        "human rendering: {} median ({} CPU on all threads), budget {} ms: {}",
        ms(human).trim(),
        ms(human_cpu).trim(),
        RENDER_BUDGET.as_millis(),
        if human <= RENDER_BUDGET { "ok" } else { "OVER" }
    );
    human <= RENDER_BUDGET
}

/// `orch plan FILE` (text) end to end at each of [`PLAN_STEPS`]: wall time and peak RSS of
/// the child, one run each (the largest takes long when planning is not linear). Whether the
/// largest met [`PLAN_BUDGET`].
fn plan_cli() -> bool {
    let bin = Path::new(env!("CARGO_BIN_EXE_orch"));
    let file = std::env::temp_dir().join(format!("orch-bench-plan-{}.orch", std::process::id()));
    println!("`orch plan` (text), one run each:");
    println!("{:>8} {:>11} {:>10}", "steps", "wall", "peak RSS");
    let mut last = (Duration::ZERO, 0);
    for steps in PLAN_STEPS {
        std::fs::write(&file, large_script::generate(steps, 1).text).expect("write the script");
        let start = Instant::now();
        let child = std::process::Command::new(bin)
            .arg("plan")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run orch");
        let (ok, rss) = wait_with_peak_rss(child);
        let wall = start.elapsed();
        assert!(ok, "orch plan failed on {steps} steps");
        println!("{steps:>8} {} {:7} MiB", ms(wall), rss >> 20);
        last = (wall, rss);
    }
    let _ = std::fs::remove_file(&file);
    let ok = last.0 <= PLAN_BUDGET.0 && last.1 <= PLAN_BUDGET.1;
    println!(
        "plan of {} steps: budget {} s and {} MiB: {}",
        PLAN_STEPS[PLAN_STEPS.len() - 1],
        PLAN_BUDGET.0.as_secs(),
        PLAN_BUDGET.1 >> 20,
        if ok { "ok" } else { "OVER" }
    );
    ok
}

/// Waits for `child`: whether it succeeded, and its peak resident set in bytes (`ru_maxrss`
/// of `wait4(2)`, which Linux gives in KiB).
fn wait_with_peak_rss(child: std::process::Child) -> (bool, u64) {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: all-zero is a valid `rusage` (plain integers).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unwaited child; both pointers are valid for the call.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    // The child is reaped: dropping `child` does not wait again.
    drop(child);
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (ok, usage.ru_maxrss as u64 * 1024)
}

/// `orch check FILE` end to end on the binary built with this bench, its warnings printed
/// (to a pipe, as when piped into a pager). Whether the median met [`BUDGET`].
fn cli(text: &str, runs: usize) -> bool {
    let bin = Path::new(env!("CARGO_BIN_EXE_orch"));
    let file = std::env::temp_dir().join(format!("orch-bench-{}.orch", std::process::id()));
    std::fs::write(&file, text).expect("write the script");
    let mut cpu = Vec::new();
    let (median, min) = time(runs, || {
        let before = cpu_time(libc::RUSAGE_CHILDREN);
        let out = std::process::Command::new(bin)
            .args(["check", "--color", "never"])
            .arg(&file)
            .output()
            .expect("run orch");
        assert!(out.status.success(), "orch check failed");
        cpu.push(cpu_time(libc::RUSAGE_CHILDREN).saturating_sub(before));
    });
    let _ = std::fs::remove_file(&file);
    cpu.sort();
    println!(
        "{:<30} {} {}   ({})",
        "`orch check` wall time",
        ms(median),
        ms(min),
        bin.display()
    );
    println!(
        "{:<30} {} {}",
        "`orch check` CPU (user + sys)",
        ms(cpu[cpu.len() / 2]),
        ms(cpu[0])
    );
    println!(
        "`orch check` end to end: {} median, budget {} ms: {}",
        ms(median).trim(),
        BUDGET.as_millis(),
        if median <= BUDGET { "ok" } else { "OVER" }
    );
    median <= BUDGET
}
