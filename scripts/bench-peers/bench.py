"""The side-by-side benchmark of scripts/bench-peers.sh: orch, LangGraph and an asyncio floor
against one fake OpenAI-compatible server, on the same workloads, cap and latency.

    python bench.py --orch PATH/TO/orch [--cap 16] [--delay-ms 10] [--no-stream]
                    [--workloads dag-1k,dag-10k,fanout-100]
                    [--runners orch,langgraph,langgraph-aiohttp,floor]

Each runner is its own process, started after the server's counters are reset; its CPU time
(user + system) and peak RSS come from the kernel (`wait4`), its makespan from the server:
from the first request's arrival to the last answer's end, so interpreter or binary start-up
is not counted for anyone (the process's wall time is printed beside it). The server's
request count and peak in-flight count, and each runner's own count of calls and of
completion tokens (from `usage`), show that all three did the same work under the same cap.

Runners: `langgraph` is LangGraph as its users write it, each node calling the model through
LangChain's `ChatOpenAI`; `langgraph-aiohttp` is the same graph with the floor's bare aiohttp
call, to show the framework's own cost apart from its chat-model client.

Goals (issue 17), checked at the end; exit status 0 only when all hold:
- orch's makespan at or below the floor's, on every workload run;
- on dag-10k: orch at least 5x faster than LangGraph (`langgraph`), and at least 30x less CPU.
  `langgraph-aiohttp` is printed beside it and judged by nothing.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from workloads import all_workloads  # noqa: E402

GOAL_FLOOR_RATIO = 1.0  # orch makespan / floor makespan, at most
GOAL_LANGGRAPH_SPEEDUP = 5.0  # LangGraph makespan / orch makespan on dag-10k, at least
GOAL_LANGGRAPH_CPU = 30.0  # LangGraph CPU / orch CPU on dag-10k, at least

# The Python runners: their program and extra arguments.
PY_RUNNERS = {
    "floor": ("floor.py", []),
    "langgraph": ("langgraph_runner.py", ["--client", "langchain"]),
    "langgraph-aiohttp": ("langgraph_runner.py", ["--client", "aiohttp"]),
}
RUNNERS = ("orch", *PY_RUNNERS)


def http(method, url):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def start_server(delay_ms):
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "fake_server.py"), "--delay-ms", str(delay_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().split()
    if len(line) != 2 or line[0] != "ready":
        proc.kill()
        sys.exit("bench-peers: the fake server did not start")
    return proc, int(line[1])


def run_measured(argv, log_path):
    """Runs argv to the end; returns (exit status, stdout, wall s, CPU s, peak RSS in KiB)."""
    with open(log_path, "w") as err:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out.decode(), wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def orch_counts(report_path):
    """Calls and completion tokens from orch's JSON run report."""
    with open(report_path) as f:
        report = json.load(f)
    calls = sum(
        1
        for s in report["steps"]
        if s.get("status") == "succeeded" and s.get("model") not in (None, "command")
        and s.get("attempts")
    )
    return {"calls": calls, "tokens": report["usage"]["output_tokens"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orch", required=True, help="the orch binary (a release build)")
    p.add_argument("--cap", type=int, default=16)
    p.add_argument("--delay-ms", type=float, default=10.0)
    p.add_argument("--no-stream", action="store_true", help="whole answers instead of SSE")
    p.add_argument("--workloads", default="dag-1k,dag-10k,fanout-100")
    p.add_argument("--runners", default="orch,langgraph,langgraph-aiohttp,floor")
    a = p.parse_args()

    workloads = all_workloads()
    chosen = a.workloads.split(",")
    runners = a.runners.split(",")
    for w in chosen:
        if w not in workloads:
            sys.exit(f"bench-peers: unknown workload {w!r} (known: {', '.join(workloads)})")
    for r in runners:
        if r not in RUNNERS:
            sys.exit(f"bench-peers: unknown runner {r!r} (known: {', '.join(RUNNERS)})")
    stream = not a.no_stream
    delay_s = a.delay_ms / 1000.0

    server, port = start_server(a.delay_ms)
    url = f"http://127.0.0.1:{port}/v1"
    base = f"http://127.0.0.1:{port}"
    tmp = tempfile.mkdtemp(prefix="orch-bench-peers-")
    print(
        f"fake server {url}: {a.delay_ms:g} ms per call, {'streamed' if stream else 'whole'} "
        f"answers; cap {a.cap}; scratch {tmp}"
    )
    results, failures = {}, []
    try:
        for name in chosen:
            w = workloads[name]
            script = os.path.join(tmp, f"{name}.orch")
            with open(script, "w") as f:
                f.write(w.orch_text)
            for runner in runners:
                http("POST", base + "/reset")
                log = os.path.join(tmp, f"{name}.{runner}.log")
                if runner == "orch":
                    report = os.path.join(tmp, f"{name}.report.json")
                    argv = [a.orch, "run", script, "--endpoint", url, "--endpoint-model", "fake",
                            "--max-concurrency", str(a.cap), "-q",
                            "--state-dir", os.path.join(tmp, "state"), "--report", report]
                    for i in w.orch_inputs:
                        argv += ["--input", i]
                    if not stream:
                        argv.append("--no-stream")
                else:
                    prog, extra = PY_RUNNERS[runner]
                    argv = [sys.executable, os.path.join(HERE, prog), "--url", url,
                            "--workload", name, "--cap", str(a.cap), *extra]
                    if not stream:
                        argv.append("--no-stream")
                code, out, wall, cpu, rss_kib = run_measured(argv, log)
                stats = http("GET", base + "/stats")
                if code != 0:
                    failures.append(f"{runner} on {name} exited {code} (log: {log})")
                    continue
                own = orch_counts(report) if runner == "orch" else json.loads(out.splitlines()[-1])
                makespan = stats["last_end"] - stats["first_start"]
                results[(name, runner)] = dict(
                    steps=w.steps, requests=stats["requests"], calls=own["calls"],
                    tokens=own["tokens"], peak=stats["peak_in_flight"], makespan=makespan,
                    wall=wall, cpu=cpu, rss=rss_kib / 1024.0,
                    bound=w.lower_bound_s(a.cap, delay_s),
                )
                r = results[(name, runner)]
                if r["requests"] != w.steps or r["calls"] != w.steps:
                    failures.append(
                        f"{runner} on {name}: {r['requests']} requests at the server and "
                        f"{r['calls']} calls counted by the runner, not {w.steps}"
                    )
                if r["peak"] > a.cap:
                    failures.append(f"{runner} on {name}: {r['peak']} calls in flight > cap {a.cap}")
                print(f"  {name:<10} {runner:<17} done: makespan {makespan:.3f} s", flush=True)
    finally:
        server.terminate()
        server.wait()
    if failures:
        print(f"logs and scripts kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    head = (f"{'workload':<10} {'runner':<17} {'steps':>6} {'requests':>8} {'calls':>6} "
            f"{'tokens':>6} {'peak':>4} {'makespan s':>10} {'bound s':>7} {'ratio':>6} "
            f"{'ovh/step ms':>11} {'wall s':>7} {'CPU s':>7} {'CPU/step us':>11} {'RSS MiB':>7}")
    print(head)
    print("-" * len(head))
    for name in chosen:
        for runner in runners:
            r = results.get((name, runner))
            if r is None:
                print(f"{name:<10} {runner:<17} (failed)")
                continue
            print(f"{name:<10} {runner:<17} {r['steps']:>6} {r['requests']:>8} {r['calls']:>6} "
                  f"{r['tokens']:>6} {r['peak']:>4} {r['makespan']:>10.3f} {r['bound']:>7.3f} "
                  f"{r['makespan'] / r['bound']:>6.2f} "
                  f"{(r['makespan'] - r['bound']) / r['steps'] * 1000:>11.3f} {r['wall']:>7.2f} "
                  f"{r['cpu']:>7.2f} {r['cpu'] / r['steps'] * 1e6:>11.0f} {r['rss']:>7.1f}")
    print()
    print("makespan: first request to last answer at the server; bound: rounds of "
          f"ceil(layer width / {a.cap}) calls of {a.delay_ms:g} ms, layer after layer; ratio = "
          "makespan / bound; ovh/step = (makespan - bound) / steps; wall: the whole process "
          "(start-up included); CPU: user + system of the runner's process; RSS: its peak.")

    print("\ngoals:")
    ok = not failures
    for f in failures:
        print(f"  FAIL {f}")

    judged = 0

    def goal(desc, value, target, holds):
        nonlocal ok, judged
        ok = ok and holds
        judged += 1
        print(f"  {'ok  ' if holds else 'FAIL'} {desc}: {value} (goal {target})")

    if "orch" in runners and "floor" in runners:
        for name in chosen:
            o, f = results.get((name, "orch")), results.get((name, "floor"))
            if o and f:
                ratio = o["makespan"] / f["makespan"]
                goal(f"{name}: orch makespan / floor makespan", f"{ratio:.3f}",
                     f"<= {GOAL_FLOOR_RATIO:g}", ratio <= GOAL_FLOOR_RATIO)
    if "orch" in runners and "langgraph" in runners and "dag-10k" in chosen:
        o, lg = results.get(("dag-10k", "orch")), results.get(("dag-10k", "langgraph"))
        if o and lg:
            speed = lg["makespan"] / o["makespan"]
            goal("dag-10k: LangGraph makespan / orch makespan", f"{speed:.2f}x",
                 f">= {GOAL_LANGGRAPH_SPEEDUP:g}x", speed >= GOAL_LANGGRAPH_SPEEDUP)
            cpu = lg["cpu"] / o["cpu"]
            goal("dag-10k: LangGraph CPU / orch CPU", f"{cpu:.1f}x",
                 f">= {GOAL_LANGGRAPH_CPU:g}x", cpu >= GOAL_LANGGRAPH_CPU)
    if judged == 0 and ok:
        print("no goal judged: the goals need orch beside floor or langgraph (and dag-10k)")
    else:
        print("all goals met" if ok else "some goals missed")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
