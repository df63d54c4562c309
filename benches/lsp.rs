//! How soon `orch lsp` publishes diagnostics after a change: `cargo bench --bench lsp` (or
//! `scripts/bench.sh lsp`).
//!
//! Starts the release binary's language server, opens a generated script of at least 500
//! lines (`large_script`, in a temporary directory), then sends changes that alternately
//! break a name (an error) and fix it, and times each from the `didChange` written to the
//! `publishDiagnostics` of that version read back: the median and the minimum wall time, and
//! the server's CPU time (user + system, from `/proc/PID/stat`) per change, which does not
//! depend on what else the machine runs. The goal is 50 ms per change; the bench exits with
//! status 1 when the CPU time per change misses it (wall time is printed, not judged: on a
//! loaded machine it measures the load).
//!
//! `ORCH_BENCH_LINES` (default 500) and `ORCH_BENCH_RUNS` (default 40) change the size and
//! the number of changes.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod large_script;

/// The most CPU time the server may spend per change.
const BUDGET: Duration = Duration::from_millis(50);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The server's user + system CPU time so far (Linux; zero elsewhere).
fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after `) state`.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

fn main() {
    let lines = env_or("ORCH_BENCH_LINES", 500);
    let runs = env_or("ORCH_BENCH_RUNS", 40);
    // The smallest generated script with at least `lines` lines.
    let mut steps = lines / 2;
    let generated = loop {
        let g = large_script::generate(steps, 7);
        if g.text.lines().count() >= lines {
            break g;
        }
        steps += lines / 10;
    };
    let text = generated.text.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().canonicalize().unwrap().join("bench.orch");
    std::fs::write(&path, &text).unwrap();
    let uri = format!("file://{}", path.display());
    // A change that breaks a name and the one that fixes it.
    let first_agent = text
        .lines()
        .find_map(|l| l.strip_prefix("agent "))
        .and_then(|l| l.split([' ', '(', '{']).next())
        .expect("the script declares an agent")
        .to_string();
    let call = format!("= {first_agent}(");
    assert!(text.contains(&call), "the script calls `{first_agent}`");
    let broken = text.replacen(&call, &format!("= {first_agent}x("), 1);

    let mut child = Command::new(env!("CARGO_BIN_EXE_orch"))
        .arg("lsp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start orch lsp");
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = channel::<Value>();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line.trim_end().is_empty() {
                    break;
                }
                if let Some(v) = line.trim_end().strip_prefix("Content-Length: ") {
                    len = v.parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err()
                || tx.send(serde_json::from_slice(&body).unwrap()).is_err()
            {
                return;
            }
        }
    });
    let mut send = |v: Value| {
        let body = v.to_string();
        write!(stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        stdin.flush().unwrap();
    };
    let wait = |pred: &dyn Fn(&Value) -> bool| -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = rx
                .recv_timeout(left)
                .expect("orch lsp answered within 30 s");
            if pred(&m) {
                return m;
            }
        }
    };
    let published = |version: i64| {
        move |m: &Value| {
            m["method"] == "textDocument/publishDiagnostics"
                && m["params"]["version"] == json!(version)
        }
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}}),
    );
    wait(&|m| m["id"] == 1);
    send(json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}));
    send(
        json!({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {"uri": uri, "languageId": "orch", "version": 1, "text": text}}}),
    );
    // Errors (severity 1) among the diagnostics published (the generated script has lints).
    let errors = |m: &Value| {
        m["params"]["diagnostics"]
            .as_array()
            .map_or(0, |d| d.iter().filter(|d| d["severity"] == 1).count())
    };
    let first = wait(&published(1));
    assert_eq!(
        errors(&first),
        0,
        "the generated script has no error: {first}"
    );

    let cpu_before = cpu_time(pid);
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let version = i as i64 + 2;
        let body = if i % 2 == 0 { &broken } else { &text };
        let start = Instant::now();
        send(
            json!({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": body}]}}),
        );
        let m = wait(&published(version));
        times.push(start.elapsed());
        assert_eq!(
            errors(&m) > 0,
            i % 2 == 0,
            "a broken text has an error, a fixed one none"
        );
    }
    let cpu = (cpu_time(pid) - cpu_before) / runs as u32;
    send(json!({"jsonrpc": "2.0", "id": 2, "method": "shutdown", "params": null}));
    wait(&|m| m["id"] == 2);
    send(json!({"jsonrpc": "2.0", "method": "exit", "params": null}));
    let _ = child.wait();

    times.sort();
    let median = times[times.len() / 2];
    println!(
        "lsp: {} lines ({} steps, {} parallel blocks, {} bytes), {runs} changes: diagnostics after a change in {:.1} ms median, {:.1} ms min (wall); server CPU (user+sys) {:.1} ms per change; goal {} ms",
        text.lines().count(),
        generated.steps,
        generated.blocks,
        text.len(),
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        cpu.as_secs_f64() * 1e3,
        BUDGET.as_millis()
    );
    if cpu > BUDGET {
        eprintln!("lsp: the server's CPU time per change is over the goal");
        std::process::exit(1);
    }
}
