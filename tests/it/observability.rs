//! `orch run`'s OpenTelemetry trace (src/cli/otel.rs), sent to a local OTLP/HTTP receiver
//! (tests/common/otlp_receiver.rs) in the JSON protocol: one trace per run, the span tree
//! `invoke_workflow` → `invoke_agent` → `chat` / `execute_tool`, the GenAI semantic
//! conventions' attribute names (v1.41.0), content only on request, no header value anywhere,
//! and a collector that cannot be reached only warned about.

use std::collections::HashMap;
use std::process::Output;

use crate::common::cli::{orch_command, stderr};
use crate::common::otlp_receiver::{Receiver, SpanSeen};
use crate::common::temp_dir;

/// A script with a plain step and an agent loop that reads the workspace (the simulator calls
/// its read-only tools on the first turn).
const SCRIPT: &str = r#"include "std/models.orch"

agent scout {
  model: haiku
  tools: [read, list]
  max_turns: 3
  max_tokens: 200
}

agent writer { model: sonnet, max_tokens: 200 }

workflow main(topic: text) -> text {
  found = scout("Find notes on {topic}")
  draft = writer("Write about {topic} from: {found}")
  return draft
}
"#;

const HEADER_SECRET: &str = "otlp-header-value-7f3a9c21";

/// Runs SCRIPT on the simulator with the trace going to `endpoint` (JSON protocol), plus
/// `extra` variables.
fn run_traced(endpoint: &str, extra: &[(&str, &str)]) -> Output {
    let tmp = temp_dir();
    std::fs::write(tmp.path().join("notes.md"), "# Notes\nlogin flows\n").unwrap();
    let script = tmp.path().join("traced.orch");
    std::fs::write(&script, SCRIPT).unwrap();
    let mut cmd = orch_command();
    cmd.args(["run"])
        .arg(&script)
        .args(["--simulate", "--no-journal", "--input", "topic=login"])
        .arg("--workspace")
        .arg(tmp.path())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("authorization=Bearer%20{HEADER_SECRET}"),
        )
        .env("OTEL_SERVICE_NAME", "orch-test");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.output().expect("orch runs")
}

fn by_name<'a>(spans: &'a [SpanSeen], prefix: &str) -> Vec<&'a SpanSeen> {
    spans
        .iter()
        .filter(|s| s.name.starts_with(prefix))
        .collect()
}

#[test]
fn a_run_sends_one_trace_with_the_genai_span_tree() {
    let rx = Receiver::start();
    let out = run_traced(&rx.url, &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("warning"), "{err}");
    let requests = rx.requests();
    assert!(!requests.is_empty(), "no trace was sent; stderr: {err}");
    for r in &requests {
        assert_eq!(r.path, "/v1/traces");
        let auth = r.headers.iter().find(|(k, _)| k == "authorization");
        assert_eq!(
            auth.map(|(_, v)| v.as_str()),
            Some(format!("Bearer {HEADER_SECRET}").as_str()),
            "the headers of OTEL_EXPORTER_OTLP_HEADERS are sent"
        );
    }
    let spans = rx.spans();
    let ids: HashMap<&str, &SpanSeen> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let parent = |s: &SpanSeen| ids.get(s.parent_span_id.as_str()).map(|p| p.name.clone());

    // One trace.
    let traces: std::collections::HashSet<&str> =
        spans.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(traces.len(), 1, "{spans:#?}");

    // The workflow span is the root.
    let roots: Vec<_> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .collect();
    assert_eq!(roots.len(), 1, "{spans:#?}");
    let root = roots[0];
    assert_eq!(root.name, "invoke_workflow main");
    assert_eq!(
        root.text("gen_ai.operation.name").as_deref(),
        Some("invoke_workflow")
    );
    assert_eq!(root.text("gen_ai.workflow.name").as_deref(), Some("main"));
    assert!(root.attr("orch.cost_usd").is_some());
    assert_ne!(root.status_code, 2, "a run that succeeded is no error");
    let service = root
        .resource
        .iter()
        .find(|(k, _)| k == "service.name")
        .map(|(_, v)| v.clone());
    assert_eq!(service, Some(serde_json::json!("orch-test")));

    // A step span per step, under the workflow's.
    let agents = by_name(&spans, "invoke_agent ");
    let names: Vec<_> = agents.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(agents.len(), 2, "{names:?}");
    for (step, agent) in [("found", "scout"), ("draft", "writer")] {
        let s = agents
            .iter()
            .find(|s| s.text("orch.step").as_deref() == Some(step))
            .unwrap_or_else(|| panic!("no span of step {step}: {names:?}"));
        assert_eq!(s.name, format!("invoke_agent {agent}"));
        assert_eq!(s.parent_span_id, root.span_id);
        assert_eq!(
            s.text("gen_ai.operation.name").as_deref(),
            Some("invoke_agent")
        );
        assert_eq!(s.text("gen_ai.agent.name").as_deref(), Some(agent));
        for key in [
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "orch.cost_usd",
        ] {
            assert!(s.attr(key).is_some(), "{key} missing on {}", s.name);
        }
    }

    // A chat span per model call, under its step's span; the loop takes two turns.
    let chats = by_name(&spans, "chat ");
    let mut per_step: HashMap<String, usize> = HashMap::new();
    for c in &chats {
        let p = parent(c).unwrap_or_default();
        assert!(p.starts_with("invoke_agent "), "{} under {p}", c.name);
        *per_step.entry(p).or_default() += 1;
        assert_eq!(c.kind, 3, "a chat span is a CLIENT span");
        assert_eq!(c.text("gen_ai.operation.name").as_deref(), Some("chat"));
        assert_eq!(c.text("gen_ai.provider.name").as_deref(), Some("simulator"));
        let model = c
            .text("gen_ai.request.model")
            .expect("gen_ai.request.model");
        assert!(
            model.starts_with("claude-"),
            "the provider's model id: {model}"
        );
        assert!(
            c.attr("gen_ai.input.messages").is_none(),
            "content only on request"
        );
    }
    assert!(
        per_step.get("invoke_agent scout").is_some_and(|n| *n >= 2),
        "{per_step:?}"
    );
    assert_eq!(
        per_step.get("invoke_agent writer"),
        Some(&1),
        "{per_step:?}"
    );
    let writer_chat = chats
        .iter()
        .find(|c| parent(c).as_deref() == Some("invoke_agent writer"))
        .unwrap();
    for key in [
        "gen_ai.response.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "orch.cost_usd",
    ] {
        assert!(
            writer_chat.attr(key).is_some(),
            "{key} missing: {writer_chat:#?}"
        );
    }

    // A tool span per tool call, under the loop's step span.
    let tools = by_name(&spans, "execute_tool ");
    assert!(!tools.is_empty(), "{spans:#?}");
    for t in &tools {
        assert_eq!(parent(t).as_deref(), Some("invoke_agent scout"));
        assert_eq!(
            t.text("gen_ai.operation.name").as_deref(),
            Some("execute_tool")
        );
        let tool = t.text("gen_ai.tool.name").expect("gen_ai.tool.name");
        assert_eq!(t.name, format!("execute_tool {tool}"));
        assert!(
            t.text("gen_ai.tool.call.id")
                .is_some_and(|id| !id.is_empty())
        );
        assert!(
            t.attr("gen_ai.tool.call.arguments").is_none(),
            "content only on request"
        );
    }

    // No header value anywhere in what was sent or said.
    for r in &requests {
        assert!(!String::from_utf8_lossy(&r.body).contains(HEADER_SECRET));
    }
    assert!(!err.contains(HEADER_SECRET));
}

#[test]
fn message_content_is_recorded_only_when_asked_for() {
    let rx = Receiver::start();
    let out = run_traced(
        &rx.url,
        &[("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let spans = rx.spans();
    let writer = spans
        .iter()
        .find(|s| s.name == "invoke_agent writer")
        .expect("the writer's span");
    let messages = writer
        .text("gen_ai.output.messages")
        .expect("the answer, on request");
    let parsed: serde_json::Value = serde_json::from_str(&messages).expect("JSON messages");
    assert_eq!(parsed[0]["role"], "assistant", "{parsed}");
    let tools = by_name(&spans, "execute_tool ");
    assert!(
        tools
            .iter()
            .all(|t| t.attr("gen_ai.tool.call.arguments").is_some()),
        "{tools:#?}"
    );
}

#[test]
fn a_collector_that_cannot_be_reached_is_a_warning() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run_traced(&format!("http://127.0.0.1:{port}"), &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "the run itself succeeds: {err}");
    assert!(
        err.contains("warning:") && err.contains("OpenTelemetry trace could not be sent"),
        "{err}"
    );
    assert!(!err.contains(HEADER_SECRET), "{err}");
}

#[test]
fn traces_can_be_turned_off() {
    let rx = Receiver::start();
    let out = run_traced(&rx.url, &[("OTEL_SDK_DISABLED", "true")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rx.requests().is_empty());
}

#[test]
fn grpc_is_refused_with_the_fix() {
    let rx = Receiver::start();
    let out = run_traced(&rx.url, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("http/protobuf") && err.contains("4318"),
        "{err}"
    );
}

#[test]
fn a_delegated_agent_is_traced_under_the_step_that_delegated() {
    let rx = Receiver::start();
    let tmp = temp_dir();
    std::fs::write(tmp.path().join("notes.md"), "# Notes\n").unwrap();
    let out = orch_command()
        .args([
            "run",
            "examples/lead_specialists.orch",
            "--simulate",
            "--no-journal",
        ])
        .args([
            "--input",
            "question=How is the journal written?",
            "--workspace",
        ])
        .arg(tmp.path())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &rx.url)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .output()
        .expect("orch runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let spans = rx.spans();
    let ids: HashMap<&str, &SpanSeen> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let lead = spans
        .iter()
        .find(|s| s.name == "invoke_agent lead")
        .expect("the lead's span");
    for nested in ["invoke_agent code_scout", "invoke_agent tester"] {
        let s = spans
            .iter()
            .find(|s| s.name == nested)
            .unwrap_or_else(|| panic!("no {nested} span"));
        assert_eq!(s.parent_span_id, lead.span_id, "{nested} under the lead");
        assert!(
            s.text("orch.step")
                .is_some_and(|n| n.starts_with("answer/"))
        );
        let chats = spans
            .iter()
            .filter(|c| c.name.starts_with("chat ") && c.parent_span_id == s.span_id)
            .count();
        assert!(chats >= 1, "{nested} has its model calls");
    }
    let delegations: Vec<_> = spans
        .iter()
        .filter(|s| s.name.starts_with("execute_tool agent__"))
        .collect();
    assert_eq!(delegations.len(), 2, "{spans:#?}");
    for d in delegations {
        assert_eq!(ids[d.parent_span_id.as_str()].name, "invoke_agent lead");
        assert_eq!(d.text("gen_ai.tool.type").as_deref(), Some("extension"));
    }
}
