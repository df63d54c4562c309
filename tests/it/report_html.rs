//! The HTML run report (`orch run --report run.html`, `orch report RUN_ID`): the page's
//! structure read with an HTML parser (ids and classes present, texts escaped and redacted),
//! and, `#[ignore]`d, the page rendered by headless Chromium (`scripts/test.sh` installs
//! Debian's `chromium` and runs it with `--include-ignored`).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::cli::{orch_command, stderr};
use crate::common::temp_dir;

/// A workflow with a prompt holding markup, a `parallel for` region and a step after it.
const SCRIPT: &str = r#"provider s { kind: sim }
model m { provider: s }
agent writer { model: m }

workflow main(topic: text) -> text {
  outline = writer("{topic} <script>alert(1)</script> & outline")
  drafts = parallel for part in ["intro", "body"] {
    draft = writer("Write the {part} of {outline}")
  }
  final = writer("Join {drafts}")
  return final
}
"#;

/// Key-shaped text given as an input: it must not reach the page.
const KEY: &str = "sk-ant-api03-Zx9Qw8Er7Ty6Ui5Op4As3Df2";

struct Run {
    _dir: tempfile::TempDir,
    state: PathBuf,
    page: PathBuf,
    run_id: String,
    out: Output,
}

/// Runs [`SCRIPT`] on the simulator with `--report DIR/REPORT` (and `extra` flags).
fn run_with_report(report: &str, extra: &[&str]) -> Run {
    let dir = temp_dir();
    let script = dir.path().join("report.orch");
    std::fs::write(&script, SCRIPT).unwrap();
    let state = dir.path().join("state");
    let page = dir.path().join(report);
    let out = orch_command()
        .args([
            "run",
            script.to_str().unwrap(),
            "--simulate",
            "--sim-latency",
            "5ms",
        ])
        .args(["--input", &format!("topic={KEY} Cats")])
        .args(["--report", page.to_str().unwrap()])
        .args(extra)
        .env("ORCH_STATE_DIR", &state)
        .output()
        .expect("orch runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let run_id = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("run "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    Run {
        _dir: dir,
        state,
        page,
        run_id,
        out,
    }
}

/// The `class` attribute of a tag.
fn class_of(tag: &tl::HTMLTag) -> String {
    tag.attributes()
        .class()
        .map(|c| c.as_utf8_str().into_owned())
        .unwrap_or_default()
}

/// The inner HTML of the step section named `step`.
fn section(html: &str, step: &str) -> String {
    let dom = tl::parse(html, tl::ParserOptions::default()).unwrap();
    let parser = dom.parser();
    dom.query_selector("section.step")
        .unwrap()
        .map(|h| h.get(parser).unwrap().as_tag().unwrap())
        .find(|t| {
            t.attributes()
                .get("data-step")
                .flatten()
                .is_some_and(|v| v.as_utf8_str() == step)
        })
        .map(|t| t.inner_html(parser))
        .unwrap_or_else(|| panic!("no section for {step}"))
}

/// The structure every report page has, checked on `html`; returns the step sections' names.
fn check_page(html: &str) -> Vec<String> {
    let dom = tl::parse(html, tl::ParserOptions::default()).expect("the page parses");
    let parser = dom.parser();
    for id in [
        "run",
        "totals",
        "dag",
        "dag-svg",
        "timeline",
        "timeline-svg",
        "steps",
    ] {
        assert!(dom.get_element_by_id(id).is_some(), "no element #{id}");
    }
    // Nothing is fetched: no external script, style, image or link.
    for sel in ["script[src]", "link", "img", "iframe"] {
        assert_eq!(
            dom.query_selector(sel).unwrap().count(),
            0,
            "the page has a {sel}"
        );
    }
    assert_eq!(dom.query_selector("script").unwrap().count(), 1);
    assert_eq!(dom.query_selector("style").unwrap().count(), 1);
    // Each step execution has a section with a prompt and an answer.
    let mut names = Vec::new();
    for h in dom.query_selector("section").unwrap() {
        let tag = h.get(parser).unwrap().as_tag().unwrap();
        if !class_of(tag).split(' ').any(|c| c == "step") {
            continue;
        }
        let name = tag
            .attributes()
            .get("data-step")
            .flatten()
            .map(|v| v.as_utf8_str().into_owned())
            .unwrap();
        let inner = tag.inner_html(parser);
        assert!(
            inner.contains("<details class=\"prompt\">")
                && inner.contains("<details class=\"answer\">"),
            "step {name} has no prompt or answer: {inner}"
        );
        names.push(name);
    }
    names
}

#[test]
fn run_writes_an_html_report_with_the_dag_timeline_and_every_step() {
    let run = run_with_report("run.html", &[]);
    let html = std::fs::read_to_string(&run.page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..80]);
    let names = check_page(&html);
    for step in ["outline", "final", "draft[1]", "draft[2]"] {
        assert!(
            names.iter().any(|n| n == step),
            "no section for {step}: {names:?}"
        );
    }
    let dom = tl::parse(&html, tl::ParserOptions::default()).unwrap();
    let parser = dom.parser();
    // The DAG: a node per step (the loop variable is not one), the region as a box, edges.
    let nodes: Vec<String> = dom
        .query_selector("g.node")
        .unwrap()
        .map(|h| {
            let tag = h.get(parser).unwrap().as_tag().unwrap();
            let node = tag.attributes().get("data-node").flatten().unwrap();
            format!("{} {}", node.as_utf8_str(), class_of(tag))
        })
        .collect();
    for want in [
        "outline node status-succeeded",
        "draft node status-succeeded",
        "final node status-succeeded",
    ] {
        assert!(nodes.iter().any(|n| n == want), "{want} not in {nodes:?}");
    }
    assert_eq!(dom.query_selector("g.region").unwrap().count(), 1);
    assert!(dom.query_selector("path.edge").unwrap().count() >= 2);
    // The timeline: a row per step execution, each linked to its section.
    assert_eq!(
        dom.query_selector("g.row").unwrap().count(),
        names.len(),
        "{names:?}"
    );
    // Outside text is escaped and redacted: the prompt's markup shows as text (in the
    // simulator's answer, which quotes it, and in the prompt when it is recorded).
    assert!(!html.contains("<script>alert"), "unescaped markup");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains(KEY), "a key reached the page");
    assert!(
        !html.contains("Zx9Qw8Er7Ty6"),
        "part of a key reached the page"
    );
    // Each attempt's prompt and answer are on record, escaped.
    let outline = section(&html, "outline");
    assert!(
        outline.contains("<pre class=\"prompt\">&lt;redacted&gt; Cats &lt;script&gt;alert(1)&lt;/script&gt; &amp; outline</pre>"),
        "{outline}"
    );
    assert!(
        outline.contains("<pre class=\"answer\">[sim m] Regarding"),
        "{outline}"
    );
    assert!(
        outline.contains("class=\"attempt ok\"") && outline.contains("data-attempt=\"1\""),
        "{outline}"
    );
    // Totals: steps, tokens, cost, and the budget line.
    let totals = dom
        .get_element_by_id("totals")
        .unwrap()
        .get(parser)
        .unwrap()
        .inner_text(parser);
    assert!(totals.contains("5/5 succeeded"), "{totals}");
    assert!(totals.contains("budget"), "{totals}");

    // `orch report` makes the same page from the journal.
    assert!(!run.run_id.is_empty(), "{}", stderr(&run.out));
    let again = run.page.with_file_name("again.html");
    let o = orch_command()
        .args(["report", &run.run_id, "-o", again.to_str().unwrap()])
        .env("ORCH_STATE_DIR", &run.state)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&again).unwrap(), html);
    // By default, into the run's directory.
    let o = orch_command()
        .args([
            "report",
            &run.run_id,
            "--state-dir",
            run.state.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let default = run.state.join("runs").join(&run.run_id).join("report.html");
    assert_eq!(std::fs::read_to_string(&default).unwrap(), html);
    assert!(stderr(&o).contains("report.html"), "{}", stderr(&o));
}

#[test]
fn report_of_a_changed_script_draws_steps_without_edges() {
    let run = run_with_report("run.html", &[]);
    let script = run.page.with_file_name("report.orch");
    std::fs::write(&script, SCRIPT.replace("Join", "Merge")).unwrap();
    let o = orch_command()
        .args(["report", &run.run_id, "-o", "-"])
        .env("ORCH_STATE_DIR", &run.state)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let html = String::from_utf8(o.stdout).unwrap();
    check_page(&html);
    assert!(html.contains("changed since the run"), "no note");
    assert!(!html.contains("class=\"edge\""));
    assert!(html.contains("data-node=\"final\""));
}

#[test]
fn report_without_a_journal_and_json_reports_stay() {
    let run = run_with_report("run.HTML", &["--no-journal"]);
    let html = std::fs::read_to_string(&run.page).unwrap();
    let names = check_page(&html);
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(!html.contains("<script>alert"));
    // A `.json` path is JSON, as before.
    let run = run_with_report("run.json", &[]);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&run.page).unwrap()).unwrap();
    assert_eq!(json["succeeded"], true);
    assert_eq!(json["steps"].as_array().unwrap().len(), 5);
}

#[test]
fn prompts_not_stored_are_said_not_recorded() {
    let run = run_with_report("run.html", &["--no-store-prompts"]);
    let html = std::fs::read_to_string(&run.page).unwrap();
    check_page(&html);
    let outline = section(&html, "outline");
    assert!(
        outline.contains("<p class=\"prompt not-recorded\">not recorded"),
        "{outline}"
    );
    assert!(!html.contains("alert(1)&lt;/script&gt; &amp; outline</pre>"));
}

#[test]
fn report_of_an_unknown_run_says_where_it_looked() {
    let dir = temp_dir();
    for id in ["20990101-000000-000-nosuch", "../../etc"] {
        let o = orch_command()
            .args(["report", id])
            .env("ORCH_STATE_DIR", dir.path())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
        let e = stderr(&o);
        assert!(
            e.contains(&format!("no run `{id}`")) && e.contains("orch runs"),
            "{e}"
        );
    }
}

/// The Chromium binary: `ORCH_E2E_CHROMIUM`, else `chromium` on the PATH. This test is
/// `#[ignore]`d, so one that runs was asked for: without Chromium it fails, saying how to
/// install it, rather than pass without testing.
fn chromium() -> PathBuf {
    if let Ok(p) = std::env::var("ORCH_E2E_CHROMIUM")
        && !p.is_empty()
    {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    });
    found.expect(
        "headless Chromium is needed: run scripts/test.sh (it installs Debian's `chromium`), or \
         `apt-get install -y chromium` and set ORCH_E2E_CHROMIUM to its path",
    )
}

/// Runs headless Chromium on `page` with `args` (bounded by `timeout`, 120 s).
fn headless(page: &Path, profile: &Path, args: &[&str]) -> Output {
    let out = std::process::Command::new("timeout")
        .arg("120")
        .arg(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium starts");
    assert!(out.status.success(), "chromium failed: {}", stderr(&out));
    out
}

/// Width and height of a PNG, from its IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

/// An example's report, opened in headless Chromium: its screenshot is taken, and the DOM
/// Chromium built (scripts run) holds the DAG, the timeline and every step's prompt and answer.
#[test]
#[ignore = "needs headless Chromium: run by scripts/test.sh"]
fn html_report_renders_in_chromium() {
    let dir = temp_dir();
    let page = dir.path().join("fan_out.html");
    let out = orch_command()
        .args([
            "run",
            "examples/fan_out.orch",
            "--simulate",
            "--sim-latency",
            "20ms",
        ])
        .args([
            "--input",
            "question=Is this API design RESTful? <b>bold</b>",
        ])
        .args(["--report", page.to_str().unwrap()])
        .env("ORCH_STATE_DIR", dir.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let profile = dir.path().join("profile");
    let shot = std::env::var_os("ORCH_E2E_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.path().join("report.png"));
    headless(
        &page,
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1800",
        ],
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert_eq!(png_size(&png), (1280, 1800));
    let dom = headless(&page, &profile, &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    // The script ran (it marks the document), the SVGs are there, with a node per step.
    assert!(
        dom.contains("data-js=\"ready\""),
        "the page's script did not run"
    );
    let names = check_page(&dom);
    for step in [
        "answers/answer[1]",
        "answers/answer[2]",
        "answers/answer[3]",
        "summary",
    ] {
        assert!(
            names.iter().any(|n| n == step),
            "no section for {step}: {names:?}"
        );
    }
    assert!(dom.contains("<svg id=\"dag-svg\""));
    assert!(dom.contains("<svg id=\"timeline-svg\""));
    for step in &names {
        let inner = section(&dom, step);
        assert!(
            inner.contains("<pre class=\"prompt\">") && inner.contains("<pre class=\"answer\">"),
            "{step}: no prompt or answer on record"
        );
    }
    assert!(dom.contains("&lt;b&gt;bold&lt;/b&gt;"));
    assert!(!dom.contains("<b>bold</b>"));
}
