//! The built-in tools (`run::tools::builtin::tools_for`): each tool's results, bad input as
//! error results, confinement attacks, `exec`'s allowlist, timeout, environment and caps.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orch::grant::{Builtin, ToolGrant};
use orch::run::tools::{Tool, ToolContext, ToolOutput, tools_for};
use serde_json::{Value, json};
use tempfile::TempDir;

/// A workspace with a few files, and a directory beside it (outside).
struct Ws {
    _dir: TempDir,
    root: PathBuf,
    outside: PathBuf,
}

fn ws() -> Ws {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = dir.path().canonicalize().expect("canonical");
    let root = base.join("ws");
    let outside = base.join("outside");
    for d in [&root, &outside, &root.join("src"), &root.join(".git")] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let files = [
        ("src/lib.rs", "pub fn login() {}\n// TODO: logout\n"),
        ("src/main.rs", "fn main() {\n    login();\n}\n"),
        ("README.md", "# Demo\nlogin docs\n"),
        (".gitignore", "target/\n"),
        ("target/debug.rs", "fn login_in_build_output() {}\n"),
        (".git/HEAD", "ref: refs/heads/main\n"),
    ];
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    std::fs::write(outside.join("secret.txt"), "outside secret\n").expect("write");
    Ws {
        _dir: dir,
        root,
        outside,
    }
}

fn cx(root: &Path) -> ToolContext {
    ToolContext {
        workspace: root.to_path_buf(),
        timeout: Duration::from_secs(10),
        max_result_bytes: 64 * 1024,
    }
}

fn tool(grant: ToolGrant) -> Arc<dyn Tool> {
    let mut tools = tools_for(&grant);
    assert_eq!(tools.len(), 1, "{grant:?}");
    tools.remove(0)
}

fn builtin(b: Builtin) -> Arc<dyn Tool> {
    tool(ToolGrant::Builtin { tool: b })
}

fn exec(prefixes: &[&str]) -> Arc<dyn Tool> {
    tool(ToolGrant::Exec {
        prefixes: prefixes
            .iter()
            .map(|p| p.split(' ').map(String::from).collect())
            .collect(),
    })
}

async fn call(t: &Arc<dyn Tool>, root: &Path, input: Value) -> ToolOutput {
    t.call(input, &cx(root)).await
}

fn ok(out: &ToolOutput) -> &str {
    assert!(!out.is_error, "expected success, got: {}", out.content);
    &out.content
}

fn refused(out: &ToolOutput) -> &str {
    assert!(
        out.is_error && out.refused,
        "expected a refusal, got: {out:?}"
    );
    &out.content
}

fn failed(out: &ToolOutput) -> &str {
    assert!(
        out.is_error && !out.refused,
        "expected an error, got: {out:?}"
    );
    &out.content
}

#[test]
fn every_tool_offers_a_schema_and_a_description() {
    let mut tools: Vec<_> = Builtin::ALL.into_iter().map(builtin).collect();
    tools.push(exec(&["cargo test"]));
    for t in tools {
        let spec = t.spec();
        assert_eq!(spec.input_schema["type"], "object", "{}", spec.name);
        assert!(spec.description.len() > 30, "{}", spec.name);
    }
    assert!(
        exec(&["cargo test"])
            .spec()
            .description
            .contains("`cargo test`")
    );
    assert!(builtin(Builtin::Grep).read_only() && !builtin(Builtin::Edit).read_only());
    let mcp = ToolGrant::Mcp {
        server: "fs".into(),
        tool: None,
    };
    assert!(tools_for(&mcp).is_empty());
}

#[tokio::test]
async fn read_numbers_lines_and_pages_with_offset_and_limit() {
    let w = ws();
    let read = builtin(Builtin::Read);
    let out = call(&read, &w.root, json!({"path": "src/main.rs"})).await;
    assert_eq!(
        ok(&out),
        "     1\tfn main() {\n     2\t    login();\n     3\t}\n"
    );
    assert_eq!(out.summary, "3 lines");
    let out = call(
        &read,
        &w.root,
        json!({"path": "src/main.rs", "offset": 2, "limit": 1}),
    )
    .await;
    assert_eq!(
        ok(&out),
        "     2\t    login();\n[more lines follow: read again with offset 3]\n"
    );
    let out = call(&read, &w.root, json!({"path": "src/main.rs", "offset": 9})).await;
    assert!(
        ok(&out).contains("offset 9 is past its end"),
        "{}",
        out.content
    );
}

#[tokio::test]
async fn read_refuses_binary_files_and_cuts_long_lines_and_big_files() {
    let w = ws();
    let read = builtin(Builtin::Read);
    std::fs::write(w.root.join("logo.png"), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").expect("write");
    let out = call(&read, &w.root, json!({"path": "logo.png"})).await;
    assert!(
        failed(&out).contains("binary file (16 bytes)"),
        "{}",
        out.content
    );

    std::fs::write(w.root.join("min.js"), "x".repeat(100_000) + "\nnext\n").expect("write");
    let out = call(&read, &w.root, json!({"path": "min.js"})).await;
    assert!(
        ok(&out).contains("[... 98000 more bytes on this line]"),
        "{}",
        &out.content[2000..]
    );
    assert!(out.content.contains("     2\tnext"));

    let big: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(w.root.join("big.log"), big).expect("write");
    let mut small = cx(&w.root);
    small.max_result_bytes = 1000;
    let out = read.call(json!({"path": "big.log"}), &small).await;
    assert!(out.content.len() < 1200, "{}", out.content.len());
    assert!(out.content.contains("more"), "{}", out.content);
}

#[tokio::test]
async fn list_shows_entries_with_kinds() {
    let w = ws();
    std::os::unix::fs::symlink("src/lib.rs", w.root.join("lib-link")).expect("symlink");
    let out = call(&builtin(Builtin::List), &w.root, json!({})).await;
    assert_eq!(
        ok(&out),
        ".git/\n.gitignore\nREADME.md\nlib-link@\nsrc/\ntarget/\n"
    );
    let out = call(
        &builtin(Builtin::List),
        &w.root,
        json!({"path": "README.md"}),
    )
    .await;
    assert!(failed(&out).contains("not a directory"));
}

#[tokio::test]
async fn glob_honours_gitignore_and_skips_git() {
    let w = ws();
    let glob = builtin(Builtin::Glob);
    let out = call(&glob, &w.root, json!({"pattern": "**/*.rs"})).await;
    assert_eq!(ok(&out), "src/lib.rs\nsrc/main.rs");
    assert_eq!(out.summary, "2 files");
    let out = call(&glob, &w.root, json!({"pattern": "*.rs", "path": "src"})).await;
    assert_eq!(ok(&out), "src/lib.rs\nsrc/main.rs");
    let out = call(&glob, &w.root, json!({"pattern": "*.rs"})).await;
    assert!(ok(&out).starts_with("no files"), "{}", out.content);
    let out = call(&glob, &w.root, json!({"pattern": "**/HEAD"})).await;
    assert!(ok(&out).starts_with("no files"), "{}", out.content);
    let out = call(&glob, &w.root, json!({"pattern": "a[b"})).await;
    assert!(failed(&out).contains("invalid glob"));
}

#[tokio::test]
async fn grep_reports_path_line_text_and_caps_matches() {
    let w = ws();
    let grep = builtin(Builtin::Grep);
    let out = call(&grep, &w.root, json!({"pattern": "login"})).await;
    let mut lines: Vec<&str> = out.content.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "README.md:2:login docs",
            "src/lib.rs:1:pub fn login() {}",
            "src/main.rs:2:    login();"
        ]
    );
    let out = call(
        &grep,
        &w.root,
        json!({"pattern": "TODO|LOGIN", "glob": "*.rs", "case_insensitive": true, "path": "src"}),
    )
    .await;
    assert_eq!(ok(&out).lines().count(), 3, "{}", out.content);
    let out = call(&grep, &w.root, json!({"pattern": "("})).await;
    assert!(failed(&out).contains("invalid regex"));

    let many: String = (0..1000).map(|i| format!("hit {i}\n")).collect();
    std::fs::write(w.root.join("many.txt"), many).expect("write");
    let out = call(
        &grep,
        &w.root,
        json!({"pattern": "hit", "path": "many.txt"}),
    )
    .await;
    assert_eq!(out.summary, "200 matches");
    assert!(out.content.ends_with("narrow the pattern, path or glob]"));
}

#[tokio::test]
async fn write_creates_and_overwrites_and_edit_replaces_a_unique_string() {
    let w = ws();
    let (write, edit) = (builtin(Builtin::Write), builtin(Builtin::Edit));
    let out = call(
        &write,
        &w.root,
        json!({"path": "new/dir/a.txt", "content": "one\ntwo\n"}),
    )
    .await;
    assert_eq!(ok(&out), "created `new/dir/a.txt` (2 lines, 8 bytes)");
    let out = call(
        &write,
        &w.root,
        json!({"path": "new/dir/a.txt", "content": "one\ntwo\ntwo\n"}),
    )
    .await;
    assert!(ok(&out).starts_with("overwrote"));
    let out = call(
        &edit,
        &w.root,
        json!({"path": "new/dir/a.txt", "old_string": "one", "new_string": "uno"}),
    )
    .await;
    assert_eq!(ok(&out), "edited `new/dir/a.txt` at line 1");
    let out = call(
        &edit,
        &w.root,
        json!({"path": "new/dir/a.txt", "old_string": "two", "new_string": "dos"}),
    )
    .await;
    assert!(failed(&out).contains("occurs 2 times"), "{}", out.content);
    let out = call(
        &edit,
        &w.root,
        json!({"path": "new/dir/a.txt", "old_string": "three", "new_string": "x"}),
    )
    .await;
    assert!(failed(&out).contains("does not occur"), "{}", out.content);
    assert_eq!(
        std::fs::read_to_string(w.root.join("new/dir/a.txt")).expect("read"),
        "uno\ntwo\ntwo\n"
    );
}

#[tokio::test]
async fn invalid_input_is_an_error_result() {
    let w = ws();
    for (b, input) in [
        (Builtin::Read, json!({})),
        (Builtin::Read, json!({"path": 3})),
        (Builtin::Read, json!({"path": "a", "bogus": 1})),
        (Builtin::Write, json!({"path": "a"})),
        (Builtin::Edit, json!("not an object")),
        (Builtin::Grep, json!({"regex": "x"})),
    ] {
        let out = call(&builtin(b), &w.root, input.clone()).await;
        assert!(
            failed(&out).starts_with(&format!("invalid input for `{}`", b.name())),
            "{input}: {}",
            out.content
        );
    }
    let out = call(&exec(&["echo"]), &w.root, json!({"argv": "echo hi"})).await;
    assert!(failed(&out).starts_with("invalid input for `exec`"));
}

#[tokio::test]
async fn confinement_refuses_escapes_for_every_file_tool() {
    let w = ws();
    std::os::unix::fs::symlink(&w.outside, w.root.join("out")).expect("symlink");
    let outside_file = w.outside.join("secret.txt");
    let attacks = [
        "../outside/secret.txt",
        "src/../../outside/secret.txt",
        outside_file.to_str().expect("utf-8"),
        "out/secret.txt",
        "/proc/self/environ",
        "/etc/passwd",
    ];
    for raw in attacks {
        for (b, input) in [
            (Builtin::Read, json!({"path": raw})),
            (Builtin::List, json!({"path": raw})),
            (Builtin::Grep, json!({"pattern": "secret", "path": raw})),
            (Builtin::Glob, json!({"pattern": "*", "path": raw})),
            (Builtin::Write, json!({"path": raw, "content": "pwned"})),
            (
                Builtin::Edit,
                json!({"path": raw, "old_string": "outside", "new_string": "x"}),
            ),
        ] {
            let out = call(&builtin(b), &w.root, input).await;
            let why = refused(&out);
            assert!(!why.contains("outside secret"), "{raw} via {b:?}");
        }
    }
    assert_eq!(
        std::fs::read_to_string(&outside_file).expect("read"),
        "outside secret\n"
    );
    // A symlink inside pointing out is not followed by the walks either.
    let out = call(
        &builtin(Builtin::Grep),
        &w.root,
        json!({"pattern": "secret"}),
    )
    .await;
    assert!(!out.content.contains("outside secret"), "{}", out.content);
}

#[tokio::test]
async fn git_and_orch_dirs_are_never_written() {
    let w = ws();
    for path in [
        ".git/HEAD",
        ".git/hooks/pre-commit",
        ".orch/journal.jsonl",
        "sub/.git/config",
    ] {
        let out = call(
            &builtin(Builtin::Write),
            &w.root,
            json!({"path": path, "content": "x"}),
        )
        .await;
        assert!(
            refused(&out).contains("never write"),
            "{path}: {}",
            out.content
        );
    }
    let out = call(
        &builtin(Builtin::Edit),
        &w.root,
        json!({"path": ".git/HEAD", "old_string": "main", "new_string": "evil"}),
    )
    .await;
    refused(&out);
    assert_eq!(
        std::fs::read_to_string(w.root.join(".git/HEAD")).expect("read"),
        "ref: refs/heads/main\n"
    );
    assert!(!w.root.join(".orch").exists());
}

#[tokio::test]
async fn exec_runs_allowlisted_argvs_in_the_workspace_without_a_shell() {
    let w = ws();
    let t = exec(&["pwd", "echo hello"]);
    let out = call(&t, &w.root, json!({"argv": ["pwd"]})).await;
    assert_eq!(
        ok(&out),
        format!("exit status 0\n--- stdout ---\n{}\n", w.root.display())
    );
    let out = call(
        &t,
        &w.root,
        json!({"argv": ["echo", "hello", "$HOME;", "rm -rf /"]}),
    )
    .await;
    assert!(
        ok(&out).ends_with("hello $HOME; rm -rf /\n"),
        "{}",
        out.content
    );
    for argv in [
        json!(["echo", "bye"]),
        json!(["echo"]),
        json!(["sh", "-c", "echo hello"]),
        json!(["/bin/echo", "hello"]),
    ] {
        let out = call(&t, &w.root, json!({ "argv": argv })).await;
        assert!(refused(&out).contains("is not allowed"), "{argv}");
    }
    let out = call(&t, &w.root, json!({"argv": []})).await;
    failed(&out);
    // A failing program is an error result that shows its output.
    let out = call(
        &exec(&["ls"]),
        &w.root,
        json!({"argv": ["ls", "no-such-file"]}),
    )
    .await;
    assert!(
        failed(&out).starts_with("exit status 2\n--- stderr ---\n"),
        "{}",
        out.content
    );
}

#[tokio::test]
async fn exec_stops_at_the_timeout_with_every_process_it_started() {
    let w = ws();
    let marker = w.root.join("survivor");
    let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
    let mut short = cx(&w.root);
    short.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let out = exec(&["sh"])
        .call(json!({"argv": ["sh", "-c", script]}), &short)
        .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        failed(&out).contains("did not finish within 300 ms"),
        "{}",
        out.content
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !marker.exists(),
        "a process started by the program outlived the timeout"
    );
}

/// Runs [`exec_environment_inner`] in a child test process whose environment holds a
/// provider key under its usual name and another under a name that says nothing (as an
/// `api_key_env: "LLM_CRED"` provider would): the environment of orch itself is what `exec`
/// scrubs, and a test cannot safely change its own.
#[test]
fn exec_environment_has_no_api_keys() {
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "tools::exec_environment_inner",
            "--exact",
            "--include-ignored",
        ])
        .env("ORCH_EXEC_ENV_INNER", "1")
        .env("ANTHROPIC_API_KEY", "sk-ant-exec-env-0123456789abcdef")
        .env("LLM_CRED", "plain-looking-value-42")
        .env("ORCH_HARMLESS", "stays")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 passed"), "{text}");
}

#[tokio::test]
#[ignore = "run by exec_environment_has_no_api_keys in a child process"]
async fn exec_environment_inner() {
    if std::env::var_os("ORCH_EXEC_ENV_INNER").is_none() {
        return;
    }
    // The run read this key (`RunOptions::read_key` registers what it reads).
    orch::redact::register("plain-looking-value-42");
    let w = ws();
    let out = call(&exec(&["env"]), &w.root, json!({"argv": ["env"]})).await;
    let text = ok(&out);
    assert!(text.contains("ORCH_HARMLESS=stays"), "{text}");
    assert!(!text.contains("ANTHROPIC_API_KEY"), "{text}");
    assert!(!text.contains("LLM_CRED"), "{text}");
    assert!(!text.contains("<redacted>"), "{text}");
}

#[tokio::test]
async fn exec_output_is_capped_and_keeps_the_end() {
    let w = ws();
    let mut small = cx(&w.root);
    small.max_result_bytes = 4000;
    let out = exec(&["seq"])
        .call(json!({"argv": ["seq", "1", "200000"]}), &small)
        .await;
    assert!(out.content.len() <= 4100, "{}", out.content.len());
    assert!(out.content.contains("[... earlier output not shown]"));
    assert!(
        out.content.ends_with("199999\n200000\n"),
        "{}",
        &out.content[out.content.len() - 40..]
    );
}

#[tokio::test]
async fn a_workspace_given_through_a_symlink_still_confines_and_shows_relative_paths() {
    let w = ws();
    let link = w.outside.join("ws-link");
    std::os::unix::fs::symlink(&w.root, &link).expect("symlink");
    let out = call(
        &builtin(Builtin::Glob),
        &link,
        json!({"pattern": "*.rs", "path": "src"}),
    )
    .await;
    assert_eq!(ok(&out), "src/lib.rs\nsrc/main.rs");
    let out = call(
        &builtin(Builtin::Grep),
        &link,
        json!({"pattern": "fn main", "path": "src/main.rs"}),
    )
    .await;
    assert_eq!(ok(&out), "src/main.rs:1:fn main() {");
    let out = call(
        &builtin(Builtin::Read),
        &link,
        json!({"path": "../outside/secret.txt"}),
    )
    .await;
    refused(&out);
}
