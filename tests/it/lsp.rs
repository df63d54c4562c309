//! `orch lsp`: the built binary driven over stdio by a small JSON-RPC client
//! (`Content-Length` framing), every wait bounded by a timeout so a silent server fails the
//! test instead of hanging it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::cli::orch_command;

/// How long any one answer may take.
const TIMEOUT: Duration = Duration::from_secs(20);

struct Client {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    next_id: i64,
    /// Notifications read while waiting for something else.
    stash: Vec<Value>,
}

impl Client {
    fn start() -> Client {
        Client::start_with(&[])
    }

    /// `orch lsp` with more arguments.
    fn start_with(args: &[&str]) -> Client {
        Client::start_full(args, Value::Null)
    }

    /// `orch lsp` with the workspace folder `root` (a `file:` URI) as `rootUri`.
    fn start_in(root: &str) -> Client {
        Client::start_full(&[], json!(root))
    }

    fn start_full(args: &[&str], root_uri: Value) -> Client {
        let mut child = orch_command()
            .arg("lsp")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start orch lsp");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut len = None;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.parse::<usize>().ok();
                    }
                }
                let mut body = vec![0; len.expect("a Content-Length header")];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                let v: Value = serde_json::from_slice(&body).expect("a JSON message");
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let mut c = Client {
            child,
            stdin,
            rx,
            next_id: 1,
            stash: Vec::new(),
        };
        let caps = c.request(
            "initialize",
            json!({"processId": null, "rootUri": root_uri, "capabilities": {}}),
        );
        assert!(
            caps["capabilities"]["hoverProvider"]
                .as_bool()
                .unwrap_or(false),
            "{caps}"
        );
        c.notify("initialized", json!({}));
        c
    }

    fn send(&mut self, v: &Value) {
        let body = v.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).expect("write");
        self.stdin.flush().expect("flush");
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    fn next(&mut self, deadline: Instant) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        self.rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no message from orch lsp in {TIMEOUT:?}: {e}"))
    }

    /// The whole response to a request (`result` or `error`).
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let m = self.next(deadline);
            if m["id"] == json!(id) {
                return m;
            }
            self.stash.push(m);
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let m = self.call(method, params);
        assert!(m.get("error").is_none(), "{method}: {m}");
        m["result"].clone()
    }

    /// The diagnostics published for `uri` at `version`.
    fn diagnostics(&mut self, uri: &str, version: i64) -> Vec<Value> {
        let matches = |m: &Value| {
            m["method"] == "textDocument/publishDiagnostics"
                && m["params"]["uri"] == uri
                && m["params"]["version"] == json!(version)
        };
        if let Some(i) = self.stash.iter().position(matches) {
            let m = self.stash.remove(i);
            return m["params"]["diagnostics"]
                .as_array()
                .cloned()
                .unwrap_or_default();
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let m = self.next(deadline);
            if matches(&m) {
                return m["params"]["diagnostics"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
            }
            self.stash.push(m);
        }
    }

    fn open(&mut self, uri: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "orch", "version": 1, "text": text}}),
        );
    }

    fn change(&mut self, uri: &str, version: i64, text: &str) {
        self.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]}),
        );
    }

    fn shutdown(mut self) {
        let r = self.call("shutdown", Value::Null);
        assert_eq!(r["result"], Value::Null, "{r}");
        self.notify("exit", Value::Null);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "orch lsp exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "orch lsp did not exit after `exit`"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn uri(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// The position (line, UTF-16 column; ASCII here) of the `nth` occurrence of `needle`, plus
/// `shift` columns.
fn pos(text: &str, needle: &str, nth: usize, shift: usize) -> Value {
    let at = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("`{needle}` #{nth} not in the text"))
        .0
        + shift;
    let line = text[..at].matches('\n').count();
    let col = at - text[..at].rfind('\n').map_or(0, |i| i + 1);
    json!({"line": line, "character": col})
}

/// Applies LSP text edits (ASCII text) to `text`.
fn apply(text: &str, edits: &[Value]) -> String {
    let offset = |p: &Value| {
        let line = p["line"].as_u64().unwrap() as usize;
        let col = p["character"].as_u64().unwrap() as usize;
        let start: usize = text.split_inclusive('\n').take(line).map(str::len).sum();
        (start + col).min(text.len())
    };
    let mut edits: Vec<(usize, usize, String)> = edits
        .iter()
        .map(|e| {
            (
                offset(&e["range"]["start"]),
                offset(&e["range"]["end"]),
                e["newText"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = text.to_string();
    for (s, e, t) in edits {
        out.replace_range(s..e, &t);
    }
    out
}

const LIB: &str = "include \"std/models.orch\"\n\n/// Reports the relevant files tersely.\nagent scout { model: haiku, system: \"Report files.\" }\n";

const MAIN: &str = "include \"std/models.orch\"\ninclude \"lib.orch\"\n\n/// Finds and plans.\nworkflow main(request: text) -> text {\n  found = scuot(\"Find {request}\")\n  return found\n}\n";

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("lib.orch"), LIB).unwrap();
    std::fs::write(dir.path().join("main.orch"), MAIN).unwrap();
    dir
}

#[test]
fn diagnostics_quick_fix_and_clearing() {
    let dir = project();
    let main = uri(&dir.path().canonicalize().unwrap().join("main.orch"));
    let mut c = Client::start();
    c.open(&main, MAIN);
    let diags = c.diagnostics(&main, 1);
    assert_eq!(diags.len(), 1, "{diags:?}");
    let d = &diags[0];
    assert_eq!(d["code"], "E0202", "{d}");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("unknown agent `scuot`"),
        "{d}"
    );
    assert_eq!(d["range"]["start"], pos(MAIN, "scuot", 0, 0));

    // The did-you-mean is a quick fix.
    let actions = c.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": main}, "range": d["range"], "context": {"diagnostics": [d]}}),
    );
    let fix = actions
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["title"] == "Replace with `scout`")
        .unwrap_or_else(|| panic!("no did-you-mean fix in {actions}"));
    let fixed = apply(MAIN, fix["edit"]["changes"][&main].as_array().unwrap());
    assert!(
        fixed.contains("found = scout(\"Find {request}\")"),
        "{fixed}"
    );

    // The fix clears the diagnostic.
    c.change(&main, 2, &fixed);
    assert_eq!(c.diagnostics(&main, 2), Vec::<Value>::new());

    // An error in the unsaved text of an included file is shown at its include.
    let lib = uri(&dir.path().canonicalize().unwrap().join("lib.orch"));
    c.open(&lib, &LIB.replace("haiku", "haikuu"));
    let lib_diags = c.diagnostics(&lib, 1);
    assert_eq!(lib_diags[0]["code"], "E0203", "{lib_diags:?}");
    let diags = c.diagnostics(&main, 2);
    let d = diags
        .iter()
        .find(|d| d["code"] == "E0203")
        .unwrap_or_else(|| panic!("no E0203 from the include in {diags:?}"));
    assert_eq!(d["range"]["start"]["line"], 1, "{diags:?}");
    assert!(
        d["message"].as_str().unwrap().starts_with("in `"),
        "{diags:?}"
    );
    let related = &d["relatedInformation"][0]["location"];
    assert_eq!(related["uri"], lib.as_str(), "{diags:?}");
    c.shutdown();
}

#[test]
fn hover_definition_references_rename() {
    let dir = project();
    let main = uri(&dir.path().canonicalize().unwrap().join("main.orch"));
    let lib = uri(&dir.path().canonicalize().unwrap().join("lib.orch"));
    let text = MAIN.replace("scuot", "scout");
    let mut c = Client::start();
    c.open(&main, &text);
    assert_eq!(c.diagnostics(&main, 1), Vec::<Value>::new());
    let at = |needle: &str, nth: usize| json!({"textDocument": {"uri": main}, "position": pos(&text, needle, nth, 1)});

    // Hover: an agent's doc comment; a step's model, price and worst-case cost.
    let h = c.request("textDocument/hover", at("scout", 0));
    let value = h["contents"]["value"].as_str().unwrap();
    assert!(
        value.contains("Reports the relevant files tersely."),
        "{value}"
    );
    let h = c.request("textDocument/hover", at("found", 0));
    let value = h["contents"]["value"].as_str().unwrap();
    assert!(value.contains("found: text"), "{value}");
    assert!(value.contains("model `haiku`"), "{value}");
    assert!(value.contains("worst case: $"), "{value}");
    let h = c.request("textDocument/hover", at("main", 0));
    assert!(
        h["contents"]["value"]
            .as_str()
            .unwrap()
            .contains("Finds and plans."),
        "{h}"
    );

    // Definition: into the include, and into the standard library.
    let d = c.request("textDocument/definition", at("scout", 0));
    assert_eq!(d["uri"], lib.as_str(), "{d}");
    assert_eq!(
        d["range"]["start"],
        json!({"line": 3, "character": 6}),
        "{d}"
    );
    c.open(&lib, LIB);
    let _ = c.diagnostics(&lib, 1);
    let lib_at = json!({"textDocument": {"uri": lib}, "position": pos(LIB, "haiku", 0, 1)});
    let d = c.request("textDocument/definition", lib_at.clone());
    let std_uri = d["uri"].as_str().unwrap().to_string();
    assert!(std_uri.ends_with("/std/models.orch"), "{d}");
    let std_path = std_uri.strip_prefix("file://").unwrap();
    let std_text = std::fs::read_to_string(std_path).expect("the stdlib file is served");
    assert!(std_text.contains("model haiku"), "{std_text}");

    // References: the parameter, its declaration and its use.
    let mut p = at("request", 0);
    p["context"] = json!({"includeDeclaration": true});
    let refs = c.request("textDocument/references", p);
    assert_eq!(refs.as_array().unwrap().len(), 2, "{refs}");

    // Rename a step: its declaration and its use.
    let mut p = at("found", 0);
    p["newName"] = json!("result");
    let edit = c.request("textDocument/rename", p);
    let renamed = apply(&text, edit["changes"][&main].as_array().unwrap());
    assert!(
        renamed.contains("result = scout(") && renamed.contains("return result"),
        "{renamed}"
    );

    // Renaming a name of the standard library is refused.
    let mut p = lib_at;
    p["newName"] = json!("fast");
    let r = c.call("textDocument/rename", p);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("standard library"),
        "{r}"
    );
    c.shutdown();
}

#[test]
fn references_and_rename_reach_the_files_that_include_the_declaration() {
    let dir = project();
    let root = dir.path().canonicalize().unwrap();
    let other = "include \"lib.orch\"\n\nworkflow other() {\n  a = scout(\"A\")\n  b = scout(\"B {a}\")\n}\n";
    std::fs::write(root.join("other.orch"), other).unwrap();
    // Ignored as `ignore` ignores it: not part of the workspace's sources.
    std::fs::create_dir(root.join(".hidden")).unwrap();
    std::fs::write(root.join(".hidden/x.orch"), other).unwrap();
    let (lib, main, other_uri) = (
        uri(&root.join("lib.orch")),
        uri(&root.join("main.orch")),
        uri(&root.join("other.orch")),
    );
    let mut c = Client::start_in(&uri(&root));
    // main.orch is open with unsaved text: that text is what is searched.
    let main_text = MAIN
        .replace("scuot", "scout")
        .replace("return found", "again = scout(\"{found}\")\n  return again");
    c.open(&main, &main_text);
    c.open(&lib, LIB);
    let _ = c.diagnostics(&lib, 1);
    let at = json!({"textDocument": {"uri": lib}, "position": pos(LIB, "scout", 0, 1)});

    let mut p = at.clone();
    p["context"] = json!({"includeDeclaration": true});
    let refs = c.request("textDocument/references", p);
    let mut per_file: Vec<(String, usize)> = Vec::new();
    for r in refs.as_array().unwrap() {
        let u = r["uri"].as_str().unwrap().to_string();
        match per_file.iter_mut().find(|(f, _)| *f == u) {
            Some((_, n)) => *n += 1,
            None => per_file.push((u, 1)),
        }
    }
    per_file.sort();
    let mut want = vec![(lib.clone(), 1), (main.clone(), 2), (other_uri.clone(), 2)];
    want.sort();
    assert_eq!(per_file, want, "{refs}");

    let mut p = at;
    p["newName"] = json!("finder");
    let edit = c.request("textDocument/rename", p);
    let changes = &edit["changes"];
    assert_eq!(changes.as_object().unwrap().len(), 3, "{edit}");
    let renamed = apply(LIB, changes[&lib].as_array().unwrap());
    assert!(renamed.contains("agent finder {"), "{renamed}");
    let renamed = apply(&main_text, changes[&main].as_array().unwrap());
    assert!(
        renamed.contains("found = finder(") && renamed.contains("again = finder("),
        "{renamed}"
    );
    let renamed = apply(other, changes[&other_uri].as_array().unwrap());
    assert_eq!(renamed.matches("finder(").count(), 2, "{renamed}");
    c.shutdown();
}

#[test]
fn completion_formatting_symbols_tokens() {
    let dir = project();
    let main = uri(&dir.path().canonicalize().unwrap().join("main.orch"));
    let text = MAIN.replace("scuot", "scout");
    // `--stdio`, which many clients pass, is accepted.
    let mut c = Client::start_with(&["--stdio"]);
    c.open(&main, &text);
    assert_eq!(c.diagnostics(&main, 1), Vec::<Value>::new());
    let labels = |r: Value| -> Vec<String> {
        r.as_array()
            .unwrap()
            .iter()
            .map(|i| i["label"].as_str().unwrap().to_string())
            .collect()
    };
    // Inside `{` of a prompt: the workflow's names.
    let edited = text.replace("Find {request}", "Find {re");
    c.change(&main, 2, &edited);
    let _ = c.diagnostics(&main, 2);
    let got = labels(c.request(
        "textDocument/completion",
        json!({"textDocument": {"uri": main}, "position": pos(&edited, "{re", 0, 3)}),
    ));
    assert!(got.contains(&"request".to_string()), "{got:?}");
    // After `=`: the agents.
    let edited = text.replace("  return found\n", "  more = \n  return found\n");
    c.change(&main, 3, &edited);
    let _ = c.diagnostics(&main, 3);
    let got = labels(c.request(
        "textDocument/completion",
        json!({"textDocument": {"uri": main}, "position": pos(&edited, "more = ", 0, 7)}),
    ));
    assert!(got.contains(&"scout".to_string()), "{got:?}");
    // In `< >`: options and models.
    let edited = text.replace("scout(", "scout<ma(");
    c.change(&main, 4, &edited);
    let _ = c.diagnostics(&main, 4);
    let got = labels(c.request(
        "textDocument/completion",
        json!({"textDocument": {"uri": main}, "position": pos(&edited, "<ma", 0, 3)}),
    ));
    assert!(
        got.contains(&"max".to_string())
            && got.contains(&"batch".to_string())
            && got.contains(&"haiku".to_string()),
        "{got:?}"
    );

    // Formatting is `orch fmt`'s.
    let messy = text.replace("  found = scout", "     found   =   scout");
    c.change(&main, 5, &messy);
    let _ = c.diagnostics(&main, 5);
    let edits = c.request(
        "textDocument/formatting",
        json!({"textDocument": {"uri": main}, "options": {"tabSize": 2, "insertSpaces": true}}),
    );
    let formatted = apply(&messy, edits.as_array().unwrap());
    let mut fmt = orch_command()
        .args(["fmt", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    fmt.stdin
        .take()
        .unwrap()
        .write_all(messy.as_bytes())
        .unwrap();
    let out = fmt.wait_with_output().unwrap();
    assert_eq!(formatted, String::from_utf8(out.stdout).unwrap());

    // Symbols and semantic tokens.
    let syms = c.request(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": main}}),
    );
    let names: Vec<&str> = syms
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["main"], "{syms}");
    let tokens = c.request(
        "textDocument/semanticTokens/full",
        json!({"textDocument": {"uri": main}}),
    );
    let data = tokens["data"].as_array().unwrap();
    assert!(!data.is_empty() && data.len().is_multiple_of(5), "{tokens}");
    c.shutdown();
}

#[test]
fn quick_fixes_add_the_models_include_and_parallelise() {
    let dir = project();
    let path = dir.path().canonicalize().unwrap().join("fix.orch");
    let text = "agent a { model: sonnet }\n\nworkflow main() {\n  x = a(\"one\")\n  y = a(\"two\")\n  return \"{x} {y}\"\n}\n";
    std::fs::write(&path, text).unwrap();
    let doc = uri(&path);
    let mut c = Client::start();
    c.open(&doc, text);
    let diags = c.diagnostics(&doc, 1);
    let d = diags
        .iter()
        .find(|d| d["code"] == "E0203")
        .unwrap_or_else(|| panic!("no E0203 in {diags:?}"));
    let actions = c.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": doc}, "range": d["range"], "context": {"diagnostics": [d]}}),
    );
    let add = actions
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["title"] == "Add `include \"std/models.orch\"`")
        .unwrap_or_else(|| panic!("no include fix in {actions}"));
    let with_include = apply(text, add["edit"]["changes"][&doc].as_array().unwrap());
    assert!(
        with_include.starts_with("include \"std/models.orch\"\nagent a"),
        "{with_include}"
    );
    c.change(&doc, 2, &with_include);
    let diags = c.diagnostics(&doc, 2);
    // Now only the lint that the two steps could run at once is left; its fix rewrites them.
    let w = diags
        .iter()
        .find(|d| d["code"] == "W0802")
        .unwrap_or_else(|| panic!("no W0802 in {diags:?}"));
    assert_eq!(diags.len(), 1, "{diags:?}");
    let actions = c.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": doc}, "range": w["range"], "context": {"diagnostics": [w]}}),
    );
    let rewrite = actions
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["title"] == "Run them at once in a `parallel` block")
        .unwrap_or_else(|| panic!("no W0802 rewrite in {actions}"));
    let parallel = apply(
        &with_include,
        rewrite["edit"]["changes"][&doc].as_array().unwrap(),
    );
    assert!(
        parallel.contains("  parallel {\n    x = a(\"one\")\n    y = a(\"two\")\n  }\n  return"),
        "{parallel}"
    );
    c.change(&doc, 3, &parallel);
    assert_eq!(c.diagnostics(&doc, 3), Vec::<Value>::new());
    c.shutdown();
}

#[test]
fn an_edit_rechecks_the_edited_document_and_its_includers_only() {
    let dir = project();
    let root = dir.path().canonicalize().unwrap();
    let other_text = "include \"std/models.orch\"\n\nagent solo { model: haiku }\n\nworkflow other() {\n  a = solo(\"A\")\n}\n";
    std::fs::write(root.join("other.orch"), other_text).unwrap();
    let (main, lib, other) = (
        uri(&root.join("main.orch")),
        uri(&root.join("lib.orch")),
        uri(&root.join("other.orch")),
    );
    let mut c = Client::start();
    c.open(&main, MAIN);
    c.diagnostics(&main, 1);
    c.open(&other, other_text);
    assert_eq!(c.diagnostics(&other, 1), Vec::<Value>::new());
    c.open(&lib, LIB);
    c.diagnostics(&lib, 1);
    // Opening the included file re-checks its includer (which now reads the open text).
    c.diagnostics(&main, 1);

    // Editing the included file re-checks its includer: the unsaved error shows at the include.
    c.change(&lib, 2, &LIB.replace("haiku", "haikuu"));
    assert_eq!(c.diagnostics(&lib, 2)[0]["code"], "E0203");
    let diags = c.diagnostics(&main, 1);
    assert!(diags.iter().any(|d| d["code"] == "E0203"), "{diags:?}");

    // The unrelated document was not checked again: a request answered after the edit
    // finds no second publication for it among the messages that came before the answer.
    c.request(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": other}}),
    );
    let republished = c
        .stash
        .iter()
        .filter(|m| m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == other)
        .count();
    assert_eq!(republished, 0, "{:?}", c.stash);

    // Saving (the disk may have changed for anyone) checks every document again.
    c.notify(
        "textDocument/didSave",
        json!({"textDocument": {"uri": lib}}),
    );
    assert_eq!(c.diagnostics(&other, 1), Vec::<Value>::new());
    c.shutdown();
}
