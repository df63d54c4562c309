//! `orch run`'s OpenTelemetry trace: when the standard `OTEL_*` variables ask for one
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, unless
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`), one trace per run is sent over
//! OTLP/HTTP (protobuf, or JSON with `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`) by the
//! `opentelemetry-otlp` exporter, which reads the endpoint, headers, timeout, protocol and
//! compression variables itself; `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` name the
//! service (`orch` by default).
//!
//! The spans are built from the run's [`Event`]s, following the OpenTelemetry semantic
//! conventions for generative AI, [v1.41.0](https://github.com/open-telemetry/semantic-conventions/blob/v1.41.0/docs/gen-ai/README.md)
//! ([`SEMCONV_VERSION`]):
//!
//! ```text
//! invoke_workflow {workflow}        gen_ai.operation.name=invoke_workflow, gen_ai.workflow.name
//! └─ invoke_agent {agent}           one per step (a nested step under its delegating step)
//!    ├─ chat {model id}             one per model call (attempt, agent-loop turn); kind CLIENT
//!    └─ execute_tool {tool}         one per tool call of an agent loop
//! ```
//!
//! Every span carries `gen_ai.operation.name`; chat spans `gen_ai.provider.name`,
//! `gen_ai.request.model`, `gen_ai.response.model`, `gen_ai.usage.input_tokens`,
//! `gen_ai.usage.output_tokens`, `gen_ai.response.finish_reasons`; agent spans
//! `gen_ai.agent.name` and the step's totals; tool spans `gen_ai.tool.name`,
//! `gen_ai.tool.call.id`, `gen_ai.tool.type`; failures `error.type` and an error status.
//! Cost in USD is `orch.cost_usd`. Prompts, answers and tool arguments are recorded
//! (`gen_ai.system_instructions`, `gen_ai.input.messages`, `gen_ai.output.messages`,
//! `gen_ai.tool.call.arguments`) only when `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`
//! is `true`, and always through [`redact`]. The values of `OTEL_EXPORTER_OTLP_*HEADERS` are
//! registered as secrets, so that no error text shows them.
//!
//! The trace is flushed when the run ends, waiting at most [`FLUSH_WAIT`]; a collector that
//! cannot be reached gives a warning on stderr, never a failed run.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt as _, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, StringValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span};

use crate::plan::{Plan, PlanExec};
use crate::redact::{redact, register};
use crate::run::journal::AttemptRecord;
use crate::run::{Event, RunReport, StepReport, StepStatus, Target, ToolCallReport};

/// The version of the OpenTelemetry semantic conventions (GenAI spans and attributes) the
/// trace follows.
pub(super) const SEMCONV_VERSION: &str = "1.41.0";

/// The longest the end of a run waits for the trace to be sent: 5 seconds (the SDK's own
/// bound on a flush).
pub(super) const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// The variables that ask for a trace and shape it, as read from the environment.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct OtelEnv {
    /// Where the trace goes, as the user wrote it (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub endpoint: String,
    /// `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`: record prompts and answers.
    pub capture_content: bool,
}

impl OtelEnv {
    /// Reads the variables through `get`: `None` when no trace is asked for (no endpoint
    /// variable, or an empty one; `OTEL_SDK_DISABLED=true`; `OTEL_TRACES_EXPORTER=none`).
    pub(super) fn read(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let set = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return None;
        }
        if set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none")) {
            return None;
        }
        let endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
        Some(OtelEnv {
            endpoint,
            capture_content: set("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }
}

/// Registers the values of `OTEL_EXPORTER_OTLP_HEADERS` / `..._TRACES_HEADERS`
/// (`key=value,key=value`, values percent-encoded) as secrets: in clear, decoded, and
/// without an `Authorization` scheme (`Bearer `, `Basic `).
fn register_header_secrets(get: &impl Fn(&str) -> Option<String>) {
    for var in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ] {
        let Some(list) = get(var) else { continue };
        for pair in list.split(',') {
            let Some((_, value)) = pair.split_once('=') else {
                continue;
            };
            for v in [value.trim().to_string(), percent_decode(value.trim())] {
                register(&v);
                if let Some((_, token)) = v.split_once(' ') {
                    register(token.trim());
                }
            }
        }
    }
}

/// `%XX` sequences decoded (as the OTLP exporters read header values); anything else kept.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a step's model calls are: the provider's model id and the provider, by the script's
/// model name.
#[derive(Clone)]
struct ModelInfo {
    model_id: String,
    provider: String,
}

/// The trace of one run: a [`Event`] observer that opens and ends spans as the run goes.
pub(super) struct Trace {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// The workflow span (ended by [`Trace::finish`]).
    root: Mutex<Option<Span>>,
    root_cx: SpanContext,
    env: OtelEnv,
    /// By the script's model name.
    models: HashMap<String, ModelInfo>,
    /// The provider every call goes to, when the target overrides the script's
    /// (`simulator`, an endpoint's host).
    provider_override: Option<String>,
    /// Command and approval steps: no model calls.
    no_model: std::collections::HashSet<String>,
    /// Agents of the plan's steps, by step name.
    agents: HashMap<String, String>,
    state: Mutex<HashMap<String, StepSpan>>,
}

/// An open step span.
struct StepSpan {
    span: Span,
    cx: SpanContext,
    /// The model call in flight, if any.
    call: Option<OpenCall>,
}

/// A model call in flight, opened by [`Event::Started`].
struct OpenCall {
    start: SystemTime,
    /// The script's model name (or a fallback's).
    model: String,
    attempt: u32,
    turn: Option<u32>,
}

impl Trace {
    /// The trace of a run of `plan` on `target`, when the environment asks for one.
    ///
    /// # Errors
    /// The exporter cannot be set up (an endpoint that is not a URL, a protocol this build
    /// does not speak: `grpc`), for people, redacted.
    pub(super) fn from_env(plan: &Plan, target: &Target) -> Result<Option<Self>, String> {
        let get = |k: &str| std::env::var(k).ok();
        let Some(env) = OtelEnv::read(get) else {
            return Ok(None);
        };
        register_header_secrets(&get);
        let grpc = [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ]
        .iter()
        .find_map(|k| get(k).filter(|v| !v.trim().is_empty()))
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("grpc"));
        if grpc {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: orch sends traces over OTLP/HTTP only; set it to `http/protobuf` or `http/json` (and point the endpoint at the collector's HTTP port, usually 4318) (OpenTelemetry endpoint {})",
                redact(env.endpoint.as_str()).as_str()
            ));
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| {
                redact(format!(
                    "cannot send traces to the OpenTelemetry endpoint {}: {e}; check OTEL_EXPORTER_OTLP_ENDPOINT (a URL such as http://localhost:4318)",
                    env.endpoint
                ))
                .into_string()
            })?;
        let resource = Resource::builder()
            .with_service_name(
                get("OTEL_SERVICE_NAME")
                    .filter(|s| !s.trim().is_empty())
                    .unwrap_or_else(|| "orch".into()),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let scope = opentelemetry::InstrumentationScope::builder("orch")
            .with_version(env!("CARGO_PKG_VERSION"))
            .with_schema_url(format!(
                "https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
            ))
            .build();
        let tracer = provider.tracer_with_scope(scope);
        let root = tracer
            .span_builder(format!("invoke_workflow {}", plan.workflow))
            .with_kind(SpanKind::Internal)
            .with_attributes([
                KeyValue::new("gen_ai.operation.name", "invoke_workflow"),
                KeyValue::new("gen_ai.workflow.name", plan.workflow.clone()),
                KeyValue::new("orch.steps", plan.nodes.len() as i64),
            ])
            .start(&tracer);
        let root_cx = root.span_context().clone();
        let mut models = HashMap::new();
        let mut no_model = std::collections::HashSet::new();
        let mut agents = HashMap::new();
        let execs = plan
            .nodes
            .iter()
            .map(|n| (Some(n), &n.exec))
            .chain(plan.delegates.values().map(|d| (None, &d.exec)));
        for (node, exec) in execs {
            match exec {
                PlanExec::Model {
                    model,
                    model_id,
                    provider_kind,
                    ..
                } => {
                    models.insert(
                        model.clone(),
                        ModelInfo {
                            model_id: model_id.clone(),
                            provider: provider_kind.keyword().to_string(),
                        },
                    );
                }
                _ => {
                    if let Some(n) = node {
                        no_model.insert(n.name.clone());
                    }
                }
            }
            if let Some(n) = node {
                agents.insert(n.name.clone(), n.agent.clone());
            }
        }
        let provider_override = match target {
            Target::Simulate { .. } => Some("simulator".to_string()),
            Target::Endpoint(e) => Some(e.host()),
            Target::Replay(_) => Some("cassette".to_string()),
            Target::Script => None,
        };
        Ok(Some(Trace {
            provider,
            tracer,
            root: Mutex::new(Some(root)),
            root_cx,
            env,
            models,
            provider_override,
            no_model,
            agents,
            state: Mutex::default(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, StepSpan>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one event of the run.
    pub(super) fn on_event(&self, e: &Event) {
        let now = SystemTime::now();
        let mut steps = self.lock();
        match e {
            Event::Started {
                step,
                runs_on,
                attempt,
                turn,
            } => {
                let open = self.open_step(&mut steps, step, now);
                if let Some(call) = open.call.take() {
                    self.end_call(open, call, now, CallEnd::Unknown);
                }
                if !self.no_model.contains(base_name(step)) {
                    open.call = Some(OpenCall {
                        start: now,
                        model: runs_on.clone(),
                        attempt: *attempt,
                        turn: *turn,
                    });
                }
            }
            Event::Retrying {
                step,
                error,
                delay_ms,
            } => {
                let open = self.open_step(&mut steps, step, now);
                if let Some(call) = open.call.take() {
                    self.end_call(open, call, now, CallEnd::Failed(error));
                }
                open.span.add_event_with_timestamp(
                    "orch.retry",
                    now,
                    vec![
                        KeyValue::new("orch.delay_ms", *delay_ms as i64),
                        KeyValue::new("error.type", error_type(error)),
                    ],
                );
            }
            Event::Waiting {
                step,
                delay_ms,
                reason,
            } => {
                let open = self.open_step(&mut steps, step, now);
                open.span.add_event_with_timestamp(
                    "orch.rate_limit_wait",
                    now,
                    vec![
                        KeyValue::new("orch.delay_ms", *delay_ms as i64),
                        KeyValue::new("orch.reason", redact(reason.as_str()).into_string()),
                    ],
                );
            }
            Event::Batched { step } => {
                let open = self.open_step(&mut steps, step, now);
                open.span
                    .add_event_with_timestamp("orch.batched", now, Vec::new());
            }
            Event::FallingBack { step, model } => {
                let open = self.open_step(&mut steps, step, now);
                open.span.add_event_with_timestamp(
                    "orch.fallback",
                    now,
                    vec![KeyValue::new("gen_ai.request.model", self.model_id(model))],
                );
            }
            Event::Attempt(rec) => {
                let open = self.open_step(&mut steps, &rec.step, now);
                let call = open.call.take().unwrap_or_else(|| OpenCall {
                    start: now,
                    model: rec.model.clone(),
                    attempt: rec.attempt,
                    turn: rec.turn,
                });
                // The call's own duration, ending now.
                let took = Duration::from_millis(rec.finished_ms.saturating_sub(rec.started_ms));
                let call = OpenCall {
                    start: now.checked_sub(took).unwrap_or(call.start),
                    ..call
                };
                self.end_call(open, call, now, CallEnd::Record(rec));
            }
            Event::ToolCalled { step, call } => {
                let open = self.open_step(&mut steps, step, now);
                let took = Duration::from_millis(call.time_ms);
                let start = now.checked_sub(took).unwrap_or(now);
                // The model turn that asked for the call ended before the call began.
                if let Some(c) = open.call.take() {
                    self.end_call(open, c, start, CallEnd::Unknown);
                }
                self.tool_span(open, call, start, now);
            }
            Event::Finished(r) => {
                let Some(mut open) = steps.remove(&r.name) else {
                    // It never started (skipped, cancelled): a span of no length.
                    let mut open = self.start_step(self.parent_of(&steps, &r.name), &r.name, now);
                    self.end_step(&mut open, r, now, false);
                    return;
                };
                if let Some(call) = open.call.take() {
                    let end = if r.attempts <= 1 && r.agent_loop.is_none() {
                        CallEnd::Step(r)
                    } else {
                        match &r.status {
                            StepStatus::Failed(err) => CallEnd::Failed(err),
                            _ => CallEnd::Unknown,
                        }
                    };
                    self.end_call(&open, call, now, end);
                }
                self.end_step(&mut open, r, now, false);
            }
            Event::Reused(r) | Event::Cached(r) => {
                let mut open = self.start_step(self.parent_of(&steps, &r.name), &r.name, now);
                self.end_step(&mut open, r, now, true);
            }
            // Streaming, reruns and what later versions add: nothing to record.
            _ => {}
        }
    }

    /// The open span of `step`, opened now when it has none.
    fn open_step<'a>(
        &self,
        steps: &'a mut HashMap<String, StepSpan>,
        step: &str,
        now: SystemTime,
    ) -> &'a mut StepSpan {
        let parent = self.parent_of(steps, step);
        steps
            .entry(step.to_string())
            .or_insert_with(|| self.start_step(parent, step, now))
    }

    /// The span a step's span goes under: its delegating step's for a nested step
    /// (`lead/scout#2.1` under `lead`), else the workflow's.
    fn parent_of(&self, steps: &HashMap<String, StepSpan>, step: &str) -> SpanContext {
        step.rsplit_once('/')
            .and_then(|(outer, _)| steps.get(outer))
            .map(|o| o.cx.clone())
            .unwrap_or_else(|| self.root_cx.clone())
    }

    /// A new span for `step`, under `parent`, starting at `now`.
    fn start_step(&self, parent: SpanContext, step: &str, now: SystemTime) -> StepSpan {
        let agent = self.agent_of(step);
        let span = self.tracer.build_with_context(
            self.tracer
                .span_builder(format!("invoke_agent {agent}"))
                .with_kind(SpanKind::Internal)
                .with_start_time(now)
                .with_attributes([
                    KeyValue::new("gen_ai.operation.name", "invoke_agent"),
                    KeyValue::new("gen_ai.agent.name", agent),
                    KeyValue::new("orch.step", step.to_string()),
                ]),
            &Context::new().with_remote_span_context(parent),
        );
        let cx = span.span_context().clone();
        StepSpan {
            span,
            cx,
            call: None,
        }
    }

    /// The agent of `step`: the plan's, or for a nested step the delegate's name
    /// (`lead/scout#2.1` → `scout`).
    fn agent_of(&self, step: &str) -> String {
        if let Some((_, last)) = step.rsplit_once('/') {
            return last.split('#').next().unwrap_or(last).to_string();
        }
        self.agents
            .get(base_name(step))
            .cloned()
            .unwrap_or_else(|| step.to_string())
    }

    /// The provider's model id of the script's model `name` (the name itself when unknown).
    fn model_id(&self, name: &str) -> String {
        self.models
            .get(name)
            .map(|m| m.model_id.clone())
            .unwrap_or_else(|| name.to_string())
    }

    /// Ends step span `open` with the step's report.
    fn end_step(&self, open: &mut StepSpan, r: &StepReport, now: SystemTime, reused: bool) {
        let span = &mut open.span;
        let mut attrs = vec![
            KeyValue::new("orch.attempts", i64::from(r.attempts)),
            KeyValue::new("orch.cost_usd", r.cost_usd),
            KeyValue::new("gen_ai.usage.input_tokens", r.usage.input_tokens as i64),
            KeyValue::new("gen_ai.usage.output_tokens", r.usage.output_tokens as i64),
            KeyValue::new("orch.status", status_word(&r.status)),
        ];
        if reused {
            attrs.push(KeyValue::new("orch.reused", true));
        }
        if let Some(m) = &r.model {
            attrs.push(KeyValue::new("gen_ai.request.model", self.model_id(m)));
        }
        if let Some(l) = &r.agent_loop {
            attrs.push(KeyValue::new("orch.turns", i64::from(l.turns)));
            attrs.push(KeyValue::new("orch.tool_calls", l.tool_calls.len() as i64));
        }
        if self.env.capture_content
            && let Some(out) = &r.output
        {
            attrs.push(KeyValue::new(
                "gen_ai.output.messages",
                output_messages(out, None),
            ));
        }
        span.set_attributes(attrs);
        match &r.status {
            StepStatus::Failed(err) => {
                span.set_attribute(KeyValue::new("error.type", error_type(err)));
                span.set_status(Status::error(redact(err.as_str()).into_string()));
            }
            StepStatus::Interrupted => {
                span.set_attribute(KeyValue::new("error.type", "interrupted"));
                span.set_status(Status::error("interrupted"));
            }
            _ => {}
        }
        span.end_with_timestamp(now);
    }

    /// Ends model call `call` of step `open` at `end`, as a `chat {model id}` span.
    fn end_call(&self, open: &StepSpan, call: OpenCall, end: SystemTime, how: CallEnd<'_>) {
        let info = self.models.get(&call.model).cloned();
        let model_id = info
            .as_ref()
            .map(|m| m.model_id.clone())
            .unwrap_or_else(|| call.model.clone());
        let provider = match &how {
            CallEnd::Record(rec) => rec.provider.clone(),
            _ => self
                .provider_override
                .clone()
                .or_else(|| info.as_ref().map(|m| m.provider.clone()))
                .unwrap_or_else(|| "_OTHER".into()),
        };
        // Named `{gen_ai.operation.name} {gen_ai.request.model}`, as the conventions ask.
        let span_model = model_id.clone();
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", provider),
            KeyValue::new("gen_ai.request.model", model_id.clone()),
            KeyValue::new("orch.attempt", i64::from(call.attempt)),
        ];
        if let Some(t) = call.turn {
            attrs.push(KeyValue::new("orch.turn", i64::from(t)));
        }
        let mut error = None;
        match how {
            CallEnd::Record(rec) => {
                attrs.push(KeyValue::new(
                    "gen_ai.response.model",
                    rec.served_model.clone().unwrap_or(model_id),
                ));
                attrs.extend(usage_attrs(&rec.usage, rec.cost_usd));
                if let Some(reason) = &rec.stop_reason {
                    attrs.push(KeyValue::new(
                        "gen_ai.response.finish_reasons",
                        Value::Array(vec![StringValue::from(reason.clone())].into()),
                    ));
                }
                if rec.truncated {
                    attrs.push(KeyValue::new("orch.truncated", true));
                }
                if rec.wait_ms > 0 {
                    attrs.push(KeyValue::new("orch.wait_ms", rec.wait_ms as i64));
                }
                if self.env.capture_content {
                    if let Some(s) = &rec.system {
                        attrs.push(KeyValue::new(
                            "gen_ai.system_instructions",
                            json_text(&serde_json::json!([{"type": "text", "content": s}])),
                        ));
                    }
                    if let Some(p) = &rec.prompt {
                        attrs.push(KeyValue::new(
                            "gen_ai.input.messages",
                            json_text(&serde_json::json!([
                                {"role": "user", "parts": [{"type": "text", "content": p}]}
                            ])),
                        ));
                    }
                    if let Some(a) = &rec.answer {
                        attrs.push(KeyValue::new(
                            "gen_ai.output.messages",
                            output_messages(a, rec.stop_reason.as_deref()),
                        ));
                    }
                }
                error = rec.error.clone();
            }
            CallEnd::Step(r) => {
                if let Some(m) = &r.model {
                    attrs.push(KeyValue::new("gen_ai.response.model", self.model_id(m)));
                }
                attrs.extend(usage_attrs(&r.usage, r.cost_usd));
                if let StepStatus::Failed(err) = &r.status {
                    error = Some(err.clone());
                }
            }
            CallEnd::Failed(err) => error = Some(err.to_string()),
            CallEnd::Unknown => {}
        }
        let mut span = self.tracer.build_with_context(
            self.tracer
                .span_builder(format!("chat {span_model}"))
                .with_kind(SpanKind::Client)
                .with_start_time(call.start)
                .with_attributes(attrs),
            &Context::new().with_remote_span_context(open.cx.clone()),
        );
        if let Some(err) = error {
            span.set_attribute(KeyValue::new("error.type", error_type(&err)));
            span.set_status(Status::error(redact(err).into_string()));
        }
        span.end_with_timestamp(end.max(call.start));
    }

    /// An `execute_tool {tool}` span for tool call `call` of step `open`.
    fn tool_span(
        &self,
        open: &StepSpan,
        call: &ToolCallReport,
        start: SystemTime,
        end: SystemTime,
    ) {
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", "execute_tool"),
            KeyValue::new("gen_ai.tool.name", call.tool.clone()),
            KeyValue::new("gen_ai.tool.call.id", call.id.clone()),
            KeyValue::new(
                "gen_ai.tool.type",
                if call.tool.starts_with("agent__") {
                    "extension"
                } else {
                    "function"
                },
            ),
            KeyValue::new("orch.turn", i64::from(call.turn)),
            KeyValue::new("orch.tool.result_bytes", call.result_bytes as i64),
        ];
        if call.reused {
            attrs.push(KeyValue::new("orch.reused", true));
        }
        if self.env.capture_content {
            attrs.push(KeyValue::new(
                "gen_ai.tool.call.arguments",
                json_text(&call.arguments),
            ));
            attrs.push(KeyValue::new(
                "orch.tool.summary",
                redact(call.summary.as_str()).into_string(),
            ));
        }
        let mut span = self.tracer.build_with_context(
            self.tracer
                .span_builder(format!("execute_tool {}", call.tool))
                .with_kind(SpanKind::Internal)
                .with_start_time(start)
                .with_attributes(attrs),
            &Context::new().with_remote_span_context(open.cx.clone()),
        );
        if call.is_error {
            let kind = if call.refused {
                "refused"
            } else {
                "tool_error"
            };
            span.set_attribute(KeyValue::new("error.type", kind));
            span.set_status(Status::error(kind));
        }
        span.end_with_timestamp(end);
    }

    /// At the end of the run: ends the spans still open and the workflow span (with the
    /// run's totals), then sends the trace, waiting at most [`FLUSH_WAIT`].
    ///
    /// # Errors
    /// A warning for people (redacted) when the trace could not be sent.
    pub(super) fn finish(&self, report: Option<&RunReport>) -> Result<(), String> {
        let now = SystemTime::now();
        for (_, mut open) in self.lock().drain() {
            if let Some(call) = open.call.take() {
                self.end_call(&open, call, now, CallEnd::Unknown);
            }
            open.span.end_with_timestamp(now);
        }
        let root = self.root.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut root) = root {
            if let Some(r) = report {
                let counts = r.step_counts();
                root.set_attributes([
                    KeyValue::new("orch.cost_usd", r.cost_usd),
                    KeyValue::new("gen_ai.usage.input_tokens", r.usage.input_tokens as i64),
                    KeyValue::new("gen_ai.usage.output_tokens", r.usage.output_tokens as i64),
                    KeyValue::new("orch.steps_succeeded", counts.succeeded as i64),
                ]);
                if let Some(id) = &r.run_id {
                    root.set_attribute(KeyValue::new("orch.run_id", id.clone()));
                }
                if r.interrupted {
                    root.set_attribute(KeyValue::new("error.type", "interrupted"));
                    root.set_status(Status::error("interrupted"));
                } else if !r.succeeded {
                    root.set_attribute(KeyValue::new("error.type", "step_failed"));
                    let why = r.stopped.clone().unwrap_or_else(|| "a step failed".into());
                    root.set_status(Status::error(redact(why).into_string()));
                }
            } else {
                root.set_attribute(KeyValue::new("error.type", "run_error"));
                root.set_status(Status::error("the run could not start"));
            }
            root.end_with_timestamp(now);
        }
        let flushed = self.provider.force_flush();
        // The exporter's thread ends; a collector still not answering is not waited for.
        let _ = self
            .provider
            .shutdown_with_timeout(Duration::from_millis(500));
        flushed.map_err(|e| {
            redact(format!(
                "the OpenTelemetry trace could not be sent to {} (waited at most {}s): {}; the run itself is not affected",
                self.env.endpoint,
                FLUSH_WAIT.as_secs(),
                sdk_reason(&e.to_string())
            ))
            .into_string()
        })
    }
}

/// The reason inside the SDK's wrapped error text (`Operation failed: errs:
/// [Err(InternalFailure("HTTP export failed: network error"))]` → `HTTP export failed: network
/// error`), or the text as it is.
fn sdk_reason(text: &str) -> &str {
    text.rsplit_once("(\"")
        .and_then(|(_, inner)| inner.split_once("\")").map(|(r, _)| r))
        .filter(|r| !r.is_empty())
        .unwrap_or(text)
}

/// How a model call ended, as far as the events tell.
enum CallEnd<'a> {
    /// Its `attempt` record: everything.
    Record(&'a AttemptRecord),
    /// The step's only call: the step's report.
    Step(&'a StepReport),
    /// It failed with this error.
    Failed(&'a str),
    /// Nothing more is known.
    Unknown,
}

/// Tokens and cost as span attributes.
fn usage_attrs(u: &crate::run::provider::Usage, cost_usd: f64) -> Vec<KeyValue> {
    let mut v = vec![
        KeyValue::new("gen_ai.usage.input_tokens", u.input_tokens as i64),
        KeyValue::new("gen_ai.usage.output_tokens", u.output_tokens as i64),
        KeyValue::new("orch.cost_usd", cost_usd),
    ];
    if u.estimated {
        v.push(KeyValue::new("orch.usage_estimated", true));
    }
    v
}

/// `gen_ai.output.messages` for an answer: one assistant message with one text part.
fn output_messages(text: &str, finish: Option<&str>) -> String {
    json_text(&serde_json::json!([{
        "role": "assistant",
        "parts": [{"type": "text", "content": text}],
        "finish_reason": finish.unwrap_or("stop"),
    }]))
}

/// A JSON value as text, redacted.
fn json_text(v: &serde_json::Value) -> String {
    redact(v.to_string()).into_string()
}

/// A step's name without an instance's index (`post[2]` → `post`): the plan's step.
fn base_name(step: &str) -> &str {
    step.split('[').next().unwrap_or(step)
}

/// A low-cardinality class of an error (`error.type`): `timeout`, `rate_limited`, an HTTP
/// status code, or `_OTHER`.
fn error_type(err: &str) -> String {
    let lower = err.to_ascii_lowercase();
    if lower.contains("timed out") || lower.contains("timeout") {
        return "timeout".into();
    }
    if lower.contains("429") || lower.contains("rate limit") || lower.contains("rate-limit") {
        return "rate_limited".into();
    }
    let code = lower
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 3 && (w.starts_with('4') || w.starts_with('5')));
    match code {
        Some(c) => c.to_string(),
        None => "_OTHER".into(),
    }
}

/// A step status in one word.
fn status_word(s: &StepStatus) -> &'static str {
    match s {
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed(_) => "failed",
        StepStatus::Skipped(_) => "skipped",
        StepStatus::Cancelled => "cancelled",
        StepStatus::Interrupted => "interrupted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn a_trace_is_asked_for_by_an_endpoint_variable() {
        assert_eq!(OtelEnv::read(env(&[])), None);
        assert_eq!(
            OtelEnv::read(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])),
            None
        );
        let e = OtelEnv::read(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318")])).unwrap();
        assert_eq!(e.endpoint, "http://h:4318");
        assert!(!e.capture_content);
        let e = OtelEnv::read(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://t:4318/v1/traces",
            ),
            ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "TRUE"),
        ]))
        .unwrap();
        assert_eq!(e.endpoint, "http://t:4318/v1/traces");
        assert!(e.capture_content);
    }

    #[test]
    fn a_trace_can_be_turned_off() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318");
        assert_eq!(
            OtelEnv::read(env(&[on, ("OTEL_SDK_DISABLED", "true")])),
            None
        );
        assert_eq!(
            OtelEnv::read(env(&[on, ("OTEL_TRACES_EXPORTER", "none")])),
            None
        );
        assert!(OtelEnv::read(env(&[on, ("OTEL_SDK_DISABLED", "false")])).is_some());
    }

    #[test]
    fn header_values_become_secrets() {
        register_header_secrets(&env(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-team=ops,Authorization=Bearer%20otlp-header-secret-1234",
        )]));
        let out = redact("sent with Bearer otlp-header-secret-1234 and otlp-header-secret-1234");
        assert!(
            !out.as_str().contains("otlp-header-secret-1234"),
            "{}",
            out.as_str()
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Cc"), "a b,c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn errors_have_few_types() {
        assert_eq!(error_type("the request timed out after 30s"), "timeout");
        assert_eq!(error_type("HTTP 429 Too Many Requests"), "rate_limited");
        assert_eq!(error_type("`anthropic` answered 503: overloaded"), "503");
        assert_eq!(error_type("the answer is not JSON"), "_OTHER");
    }

    #[test]
    fn sdk_reasons_are_unwrapped() {
        assert_eq!(
            sdk_reason(
                r#"Operation failed: errs: [Err(InternalFailure("HTTP export failed: network error"))]"#
            ),
            "HTTP export failed: network error"
        );
        assert_eq!(sdk_reason("timed out"), "timed out");
    }

    #[test]
    fn endpoint_hosts() {
        // The provider's name a trace gives an `--endpoint` run.
        let endpoint_host = |url: &str| {
            crate::run::Endpoint {
                base_url: url.into(),
                model: None,
                api_key_env: None,
                stream: true,
            }
            .host()
        };
        assert_eq!(endpoint_host("http://127.0.0.1:8080/v1"), "127.0.0.1");
        assert_eq!(
            endpoint_host("https://user:pw@api.example.com/v1?x=1"),
            "api.example.com"
        );
        assert_eq!(endpoint_host("localhost"), "localhost");
    }
}
