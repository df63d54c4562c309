//! The `orch` binary as users call it: exit codes, streams, formats, colour.

use std::path::Path;
use std::process::Output;

use tempfile::TempDir;

use crate::common::cli::{orch_command, stderr, stdout};
use crate::common::temp_dir;

/// Runs `orch ARGS` ([`orch_command`]) with its run journals in a directory of its own,
/// removed afterwards.
fn orch(args: &[&str]) -> Output {
    let state = temp_dir();
    orch_command()
        .args(args)
        .env("ORCH_STATE_DIR", state.path())
        .output()
        .expect("orch runs")
}

/// Writes `text` to `name` in `dir`; its path.
fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

const WARN: &str = "provider s { kind: sim }\nmodel a { provider: s }\nmodel b { provider: s }\nagent x { model: b }\nworkflow main() { parallel <a> { one = x(\"1\"); two = x(\"2\") } }\n";

/// `--mcp` on scripts whose agents grant no MCP tool (and on a module without a workflow)
/// starts nothing and checks as without it; grants are checked in `mcp::` against real servers.
#[test]
fn check_mcp_without_mcp_grants() {
    let dir = temp_dir();
    let ok = orch(&["check", "--mcp", "examples/scout_plan_build.orch"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(stdout(&ok).ends_with("examples/scout_plan_build.orch: ok\n"));
    let lib = write(
        &dir,
        "lib.orch",
        "provider s { kind: sim }\nmodel m { provider: s }\nagent a { model: m }\n",
    );
    let o = orch(&["check", "--mcp", &lib]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn check_exit_codes() {
    let dir = temp_dir();
    let ok = orch(&["check", "examples/scout_plan_build.orch"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("ok"));

    let bad = write(&dir, "bad.orch", "workflow main() { a = nobody(\"x\") }\n");
    let o = orch(&["check", &bad]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("E0202"), "{}", stdout(&o));

    let warn = write(&dir, "warn.orch", WARN);
    assert_eq!(
        orch(&["check", &warn]).status.code(),
        Some(0),
        "warnings do not fail"
    );
    assert_eq!(
        orch(&["check", "--deny", "warnings", &warn]).status.code(),
        Some(1)
    );

    assert_eq!(orch(&["check"]).status.code(), Some(2), "usage error");
    assert_eq!(
        orch(&["check", "--format", "yaml", &warn]).status.code(),
        Some(2)
    );
}

#[test]
fn check_json_is_one_document_with_positions() {
    let dir = temp_dir();
    let bad = write(
        &dir,
        "bad_json.orch",
        "agent a { }\nworkflow main() {\n  x = a(\"{missing}\")\n}\n",
    );
    let o = orch(&["check", "--format", "json", &bad]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
    let codes: Vec<&str> = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"E0201") && codes.contains(&"E0401"),
        "{codes:?}"
    );
    let undefined = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "E0201")
        .unwrap();
    assert_eq!(undefined["line"], 3);
    assert_eq!(undefined["column"], 11);
    assert_eq!(undefined["severity"], "error");
    assert_eq!(v["errors"], 2);
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let dir = temp_dir();
    let bad = write(
        &dir,
        "colour.orch",
        "workflow main() { a = nobody(\"x\") }\n",
    );
    // Not a terminal: no escapes.
    assert!(!stdout(&orch(&["check", &bad])).contains('\x1b'));
    let forced = orch_command()
        .args(["--color", "always", "check", &bad])
        .output()
        .unwrap();
    assert!(stdout(&forced).contains('\x1b'));
    let no_color = orch_command()
        .args(["--color", "always", "check", &bad])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        stdout(&no_color).contains('\x1b'),
        "--color always wins over NO_COLOR"
    );
}

#[test]
fn plan_prints_levels_and_json() {
    let o = orch(&["plan", "examples/scout_plan_build.orch"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("level 1 (3 steps, together)") && text.contains("critical path"),
        "{text}"
    );
    let j = orch(&["plan", "--format", "json", "examples/scout_plan_build.orch"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&j)).unwrap();
    assert_eq!(v["workflow"], "main");
    assert_eq!(v["levels"][0].as_array().unwrap().len(), 3);
    // Plans name key variables, never keys.
    assert!(stdout(&j).contains("\"providers\""));
}

#[test]
fn run_puts_the_result_on_stdout_and_progress_on_stderr() {
    let dir = temp_dir();
    let input = write(&dir, "request.txt", "Add a login page");
    let o = orch(&[
        "run",
        "examples/scout_plan_build.orch",
        "--simulate",
        "--sim-latency",
        "1ms",
        "--input",
        &format!("request=@{input}"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("[sim claude-sonnet-4-5]"), "{out}");
    let err = stderr(&o);
    assert!(
        err.contains("6/6 steps succeeded") && err.contains("tokens in"),
        "{err}"
    );
    assert!(err.contains("files") && err.contains("review"));
}

#[test]
fn run_without_key_says_what_to_do() {
    let o = orch(&[
        "run",
        "examples/scout_plan_build.orch",
        "--input",
        "request=x",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("ANTHROPIC_API_KEY is not set")
            && err.contains("--simulate")
            && err.contains("--endpoint"),
        "{err}"
    );
}

#[test]
fn run_usage_errors() {
    let o = orch(&[
        "run",
        "examples/scout_plan_build.orch",
        "--simulate",
        "--input",
        "request",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not `name=value`"));
    let o = orch(&[
        "run",
        "examples/scout_plan_build.orch",
        "--simulate",
        "--input",
        "request=@/no/such/file",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read"));
    let o = orch(&["run", "examples/scout_plan_build.orch", "--simulate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("missing input `request`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_script_that_does_not_exist_is_a_usage_error() {
    for cmd in ["run", "plan"] {
        let o = orch(&[cmd, "nope.orch"]);
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        assert!(
            stderr(&o).starts_with("error: file `nope.orch` does not exist\n"),
            "{cmd}: {}",
            stderr(&o)
        );
    }
    let dir = temp_dir();
    let o = orch(&["run", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is a directory, not a script"),
        "{}",
        stderr(&o)
    );
}

const TYPED_INPUTS: &str = "provider s { kind: sim, latency: 1ms }\nmodel m { provider: s }\nagent a { model: m, max_tokens: 40 }\nworkflow main(items: list<text>, n: number, topic: text) {\n  x = a(\"Do {items} {n} {topic}\")\n  return x\n}\n";

#[test]
fn input_problems_are_all_reported_at_once_in_plain_words() {
    let dir = temp_dir();
    let script = write(&dir, "typed.orch", TYPED_INPUTS);
    let o = orch(&["run", &script, "--simulate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("error: missing inputs `items` (list<text>), `n` (number), `topic` (text) for workflow `main`: pass `--input items=... --input n=... --input topic=...`"),
        "{}",
        stderr(&o)
    );

    let o = orch(&[
        "run",
        &script,
        "--simulate",
        "--input",
        "items=foo",
        "--input",
        "n=x",
        "--input",
        "tpoic=t",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    for line in [
        "workflow `main` has no parameter `tpoic`; did you mean `topic`?",
        "missing input `topic` (text) for workflow `main`",
        "input `items` (list<text>): `foo` is not JSON; an input of type list<text> is a JSON array, like `--input items='[\"text\", \"text\"]'` (or `--input items=@FILE` with the JSON in FILE)",
        "input `n` (number): expected a number, found `x`",
    ] {
        assert!(err.contains(line), "{line}\n{err}");
    }
    // No words of the JSON parser leak.
    assert!(!err.contains("expected value"), "{err}");

    // A list item of the wrong type is named by its place.
    let o = orch(&[
        "run",
        &script,
        "--simulate",
        "--input",
        "items=[\"a\", [1]]",
        "--input",
        "n=2",
        "--input",
        "topic=t",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("input `items` (list<text>): $[1]: expected text, found an array [1]"),
        "{}",
        stderr(&o)
    );

    // A list from a file: a JSON array.
    let list = write(&dir, "items.json", "[\n  \"first\",\n  \"second\"\n]\n");
    let o = orch(&[
        "run",
        &script,
        "--simulate",
        "--input",
        &format!("items=@{list}"),
        "--input",
        "n=2",
        "--input",
        "topic=t",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn an_input_file_over_the_bound_is_refused_before_it_is_read() {
    let dir = temp_dir();
    let script = write(&dir, "typed.orch", TYPED_INPUTS);
    // A sparse file of 16 MiB and one byte: no disk used.
    let big = dir.path().join("big.txt");
    std::fs::File::create(&big)
        .unwrap()
        .set_len((16 << 20) + 1)
        .unwrap();
    let o = orch(&[
        "run",
        &script,
        "--simulate",
        "--input",
        &format!("topic=@{}", big.display()),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is larger than 16 MiB, the most an input file may be (about 4 million tokens, more than any model's context window)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn counts_of_one_are_singular() {
    let dir = temp_dir();
    let one = "provider s { kind: sim, latency: 1ms }\nmodel m { provider: s }\nagent a { model: m, max_tokens: 40 }\nworkflow main() {\n  x = a(\"Hello\")\n  return x\n}\n";
    let script = write(&dir, "one.orch", one);
    let o = orch(&["plan", &script]);
    assert!(
        stdout(&o).contains("1 step in 1 level · peak concurrency 1 · critical path 1 step: x"),
        "{}",
        stdout(&o)
    );
    let o = orch(&["run", &script, "--simulate"]);
    let err = stderr(&o);
    assert!(
        err.contains("running main (1 step, 1 level) on the simulator"),
        "{err}"
    );
    assert!(err.contains("1/1 step succeeded"), "{err}");
}

#[test]
fn a_failed_run_exits_1_and_keeps_what_completed() {
    let dir = temp_dir();
    let script = write(
        &dir,
        "fail.orch",
        "provider s { kind: sim, latency: 1ms }\nprovider bad { kind: sim, failures: 99 }\nmodel ok { provider: s }\nmodel no { provider: bad }\nagent a { }\nworkflow main() {\n  first = a<ok>(\"1\")\n  second = a<no>(\"2 {first}\")\n}\n",
    );
    let report = Path::new(&script).with_extension("json");
    let o = orch(&["run", &script, "--report", report.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("stopped: step `second` failed"),
        "{}",
        stderr(&o)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(v["steps"][0]["status"], "succeeded");
    assert!(
        v["steps"][0]["output"]
            .as_str()
            .unwrap()
            .starts_with("[sim")
    );
    assert_eq!(v["steps"][1]["status"], "failed");
}

const APPROVAL: &str = "provider s { kind: sim, latency: 1ms }\nmodel m { provider: s }\nagent writer { model: m, max_tokens: 40 }\nworkflow main(version: text) {\n  notes = writer(\"Notes for {version}\")\n  ok = approve(\"Deploy {version} to production?\")\n  done = writer(\"Announce {version}: {ok}\")\n  return done\n}\n";

#[test]
fn approvals_are_refused_before_anything_runs_without_a_terminal_and_pass_with_yes() {
    let dir = temp_dir();
    let script = write(&dir, "approval.orch", APPROVAL);
    // The tests' stdin and stderr are not terminals: nobody to ask. The run is refused
    // before `notes` runs, as a usage error.
    let o = orch(&["run", &script, "--input", "version=1.2"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("error: step `ok` (\"Deploy {version} to production?\") needs a person's approval, but there is no terminal to ask on and --yes was not given; nothing was run.\n  Run on a terminal to answer, or pass --yes to approve every approval step"),
        "{err}"
    );
    assert!(!err.contains("✓ notes"), "{err}");

    let report = Path::new(&script).with_extension("json");
    let o = orch(&[
        "run",
        &script,
        "--input",
        "version=1.2",
        "--yes",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("✓ ok     approved by --yes"), "{err}");
    assert!(stdout(&o).contains("Announce 1.2: true"), "{}", stdout(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let ok = &v["steps"][1];
    assert_eq!(ok["status"], "succeeded");
    assert_eq!(ok["model"], "--yes");
    assert_eq!(ok["output"], "true");
    assert_eq!(ok["value"], true);
    assert_eq!(
        ok["approval"],
        serde_json::json!({"approved": true, "via": "by --yes"})
    );
    assert!(v["steps"][0].get("approval").is_none());
}

#[test]
fn help_lists_the_commands() {
    let o = orch(&["--help"]);
    let text = stdout(&o);
    for cmd in ["check", "plan", "run", "explain", "completions"] {
        assert!(text.contains(cmd), "{text}");
    }
    let run = stdout(&orch(&["run", "--help"]));
    for flag in [
        "--simulate",
        "--endpoint",
        "--input",
        "--max-concurrency",
        "--report",
        "--resume",
        "--why-rerun",
        "--keep-going",
        "--state-dir",
        "--no-journal",
    ] {
        assert!(run.contains(flag), "{flag} missing from run --help");
    }
}

#[test]
fn explain_prints_an_entry_by_code_or_name() {
    let o = orch(&["explain", "W0402"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    for part in [
        "W0402",
        "block-model-overridden",
        "Warning",
        "What it does",
        "Why is this bad?",
        "Example",
        "Use instead",
        "```orch",
    ] {
        assert!(text.contains(part), "`{part}` missing from:\n{text}");
    }
    let by_name = orch(&["explain", "dependency-cycle"]);
    assert_eq!(by_name.status.code(), Some(0));
    assert!(stdout(&by_name).contains("E0301"), "{}", stdout(&by_name));
    assert!(stdout(&orch(&["explain", "e0201"])).contains("undefined-name"));

    let unknown = orch(&["explain", "W0420"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stdout(&unknown).is_empty());
    assert!(
        stderr(&unknown).contains("did you mean `W0402`?"),
        "{}",
        stderr(&unknown)
    );
    assert_eq!(
        orch(&["explain"]).status.code(),
        Some(2),
        "a code is needed"
    );
}

#[test]
fn explain_lists_every_code_and_prints_the_docs() {
    let o = orch(&["explain", "--list"]);
    assert_eq!(o.status.code(), Some(0));
    let text = stdout(&o);
    assert_eq!(text.lines().count(), orch::diag::catalog::all().len());
    assert!(
        text.lines()
            .any(|l| l.starts_with("W0402  block-model-overridden")),
        "{text}"
    );
    let md = orch(&["explain", "--markdown"]);
    assert_eq!(md.status.code(), Some(0));
    assert_eq!(stdout(&md), orch::diag::catalog::markdown());
}

#[test]
fn lint_levels_from_flags() {
    let dir = temp_dir();
    let warn = write(&dir, "levels.orch", WARN);
    let o = orch(&["check", "--allow", "W0402", &warn]);
    assert_eq!(o.status.code(), Some(0));
    assert!(!stdout(&o).contains("W0402"), "{}", stdout(&o));
    assert!(stdout(&o).contains("ok"), "{}", stdout(&o));

    let o = orch(&["check", "--deny", "W0402", &warn]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("W0402"));
    let o = orch(&[
        "check",
        "--format",
        "json",
        "--deny",
        "block-model-overridden",
        &warn,
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    let list = v["diagnostics"].as_array().expect("diagnostics");
    assert!(!list.is_empty());
    assert!(
        list.iter()
            .all(|d| d["code"] == "W0402" && d["severity"] == "error"),
        "{v}"
    );
    assert_eq!(v["errors"].as_u64(), Some(list.len() as u64));
    assert_eq!(v["warnings"], 0);

    // A code or name beats `warnings`.
    let o = orch(&["check", "--deny", "warnings", "--warn", "W0402", &warn]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // `plan` shares the flags: a denied lint stops it.
    assert_eq!(
        orch(&["plan", "--deny", "W0402", &warn]).status.code(),
        Some(1)
    );
    assert_eq!(
        orch(&["plan", "--allow", "W0402", &warn]).status.code(),
        Some(0)
    );

    let o = orch(&["check", "--allow", "W0420", &warn]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("did you mean `W0402`?"),
        "{}",
        stderr(&o)
    );
    let o = orch(&["check", "--allow", "undefined-name", &warn]);
    assert_eq!(o.status.code(), Some(2), "errors cannot be allowed");
    assert!(
        stderr(&o).contains("is an error, not a lint"),
        "{}",
        stderr(&o)
    );
    let o = orch(&["check", "--allow", "W0402", "--deny", "W0402", &warn]);
    assert_eq!(o.status.code(), Some(2), "two levels for one lint");
}

#[test]
fn allow_comments_in_the_source() {
    let dir = temp_dir();
    let allowed = WARN.replace(
        "one = x(\"1\"); two = x(\"2\") }",
        "\n  one = x(\"1\") // orch: allow(W0402)\n  // orch: allow(block-model-overridden)\n  two = x(\"2\")\n}",
    );
    assert_ne!(allowed, WARN);
    let path = write(&dir, "allowed.orch", &allowed);
    let o = orch(&["check", "--deny", "warnings", &path]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("ok"), "{}", stdout(&o));

    let unused = write(
        &dir,
        "unused_allow.orch",
        "// orch: allow(block-model-overridden)\nworkflow main() { }\n",
    );
    let o = orch(&["check", &unused]);
    assert_eq!(o.status.code(), Some(0), "an unused allow is a warning");
    assert!(stdout(&o).contains("W0901"), "{}", stdout(&o));
    assert_eq!(
        orch(&["check", "--deny", "unused-allow", &unused])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn plan_draws_an_example_as_dot_and_mermaid() {
    let dot = orch(&["plan", "--format", "dot", "examples/review_refine.orch"]);
    assert!(dot.status.success(), "{}", stderr(&dot));
    let text = stdout(&dot);
    assert!(text.starts_with("digraph \"main\" {"), "{text}");
    assert!(text.contains("subgraph cluster_r0 {"), "{text}");
    assert!(text.contains("writer · sonnet"), "{text}");
    let mermaid = orch(&["plan", "--format", "mermaid", "examples/review_refine.orch"]);
    assert!(mermaid.status.success(), "{}", stderr(&mermaid));
    let text = stdout(&mermaid);
    assert!(text.contains("\nflowchart TB\n"), "{text}");
    assert!(text.contains("subgraph r1[\"repeat\"]"), "{text}");
    let help = stdout(&orch(&["plan", "--help"]));
    assert!(help.contains("mermaid") && help.contains("dot"), "{help}");
}

#[test]
fn completions_for_every_shell_name_the_commands() {
    for (shell, marker) in [
        ("bash", "complete -F _orch"),
        ("zsh", "#compdef orch"),
        ("fish", "complete -c orch"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let o = orch(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let text = stdout(&o);
        assert!(text.contains(marker), "{shell}: no `{marker}`");
        for word in ["plan", "completions", "--endpoint"] {
            assert!(text.contains(word), "{shell}: `{word}` is not completed");
        }
        // clap_complete's PowerShell script completes commands and flags, not their values.
        if shell != "powershell" {
            assert!(
                text.contains("mermaid"),
                "{shell}: `--format` values are not completed"
            );
        }
    }
    // The bash script is valid bash (bash is on every machine the tests run on).
    let script = stdout(&orch(&["completions", "bash"]));
    let dir = temp_dir();
    let path = write(&dir, "orch.bash", &script);
    let check = std::process::Command::new("bash")
        .args(["-n", &path])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let bad = orch(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("possible values"), "{}", stderr(&bad));
}
