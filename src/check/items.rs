//! Item tables: providers, models and agents, with their fields validated.

use indexmap::IndexMap;
use serde::Serialize;

use super::error::{
    DuplicateDefinition, FieldMix, ImpossibleValue, InvalidFieldValue, LiteralApiKey,
    MODEL_PROVIDER_HELP, MissingField, PROVIDER_KIND_HELP, UndefinedName, UnknownField, Written,
};
use super::types::{Type, resolve_type};
use crate::diag::suggest::did_you_mean;
use crate::diag::{Diagnostics, Span};
use crate::syntax::ast::{self, Field, Ident, Template, TemplatePart, Value, ValueKind};
use crate::syntax::print::value_text;

/// The kind of API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Anthropic Messages API.
    Anthropic,
    /// OpenAI Chat Completions (and compatible servers: llama.cpp, Ollama, vLLM).
    Openai,
    /// The built-in simulator.
    Sim,
}

impl ProviderKind {
    /// The keyword in source (`anthropic`, `openai`, `sim`).
    pub fn keyword(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Openai => "openai",
            ProviderKind::Sim => "sim",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "anthropic" => Some(ProviderKind::Anthropic),
            "openai" => Some(ProviderKind::Openai),
            "sim" => Some(ProviderKind::Sim),
            _ => None,
        }
    }
}

/// A provider: built in or declared with `provider name { ... }`.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderDef {
    /// Its name.
    pub name: String,
    /// The API it speaks.
    pub kind: ProviderKind,
    /// Base URL override (OpenAI: up to `/v1`; Anthropic: the host).
    pub base_url: Option<String>,
    /// The environment variable holding the API key (never the key itself).
    pub api_key_env: Option<String>,
    /// At most this many requests in flight to this provider.
    pub max_concurrency: Option<u32>,
    /// Simulator latency per call, in milliseconds.
    pub latency_ms: Option<u64>,
    /// Simulator only: the first N calls for each distinct prompt fail (to try retry and
    /// fallback policies in a dry run).
    pub failures: Option<u32>,
    /// HTTP providers: whether answers are streamed (server-sent events). `None` means the
    /// default, which is to stream.
    pub stream: Option<bool>,
    /// HTTP providers, when streaming: the longest silence (no bytes) tolerated while
    /// waiting for or reading an answer, in milliseconds. `None` means the runtime's default.
    pub idle_timeout_ms: Option<u64>,
    /// At most this many requests per minute to this provider, shared by every step of the
    /// run.
    pub requests_per_minute: Option<u32>,
    /// At most this many tokens per minute to this provider (each request counts its
    /// estimated input plus its `max_tokens`), shared by every step of the run.
    pub tokens_per_minute: Option<u32>,
    /// The first wait before a provider batch (`parallel <batch>`) is polled, in
    /// milliseconds; each later wait doubles, up to 32 times the first (at most 10 minutes).
    /// `None`: 30 s.
    pub batch_poll_ms: Option<u64>,
    /// Declaration span (`None` for built-ins).
    #[serde(skip)]
    pub span: Option<Span>,
}

impl ProviderDef {
    /// The environment variable that holds this provider's key, if it needs one.
    pub fn key_env(&self) -> Option<&str> {
        match (&self.api_key_env, self.kind) {
            (Some(v), _) => Some(v),
            (None, ProviderKind::Anthropic) => Some("ANTHROPIC_API_KEY"),
            // A custom base URL is usually a local server that needs no key.
            (None, ProviderKind::Openai) if self.base_url.is_none() => Some("OPENAI_API_KEY"),
            _ => None,
        }
    }
}

/// The built-in providers `anthropic`, `openai` and `sim`.
pub fn builtin_providers() -> IndexMap<String, ProviderDef> {
    [
        ProviderKind::Anthropic,
        ProviderKind::Openai,
        ProviderKind::Sim,
    ]
    .into_iter()
    .map(|kind| {
        let name = kind.keyword().to_string();
        (
            name.clone(),
            ProviderDef {
                name,
                kind,
                base_url: None,
                api_key_env: None,
                max_concurrency: None,
                latency_ms: None,
                failures: None,
                stream: None,
                idle_timeout_ms: None,
                requests_per_minute: None,
                tokens_per_minute: None,
                batch_poll_ms: None,
                span: None,
            },
        )
    })
    .collect()
}

/// Capability tier of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Cheap and fast (haiku).
    Fast,
    /// The default (sonnet).
    Balanced,
    /// Expensive and deep (opus).
    Deep,
}

/// Price of a model in USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Price {
    /// USD per million input tokens.
    pub input: f64,
    /// USD per million output tokens.
    pub output: f64,
}

impl Price {
    /// Cost in USD of the given token counts.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input + output_tokens as f64 * self.output) / 1_000_000.0
    }
}

/// A model declared with `model name { ... }`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelDef {
    /// The script's name for it (`sonnet`).
    pub name: String,
    /// The provider that serves it.
    pub provider: String,
    /// The provider's identifier (`claude-sonnet-4-5`).
    pub api_name: String,
    /// Its tier, if declared.
    pub tier: Option<Tier>,
    /// Its price (zero when not declared).
    pub price: Price,
    /// Default output-token limit for steps on this model.
    pub max_tokens: Option<u32>,
    /// Its context window, in tokens: the most a request's input plus its `max_tokens` may
    /// be (never zero). `None`: unknown, not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
    /// Declaration span.
    #[serde(skip)]
    pub span: Span,
}

/// Task complexity declared on an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Complexity {
    /// Lookups, formatting.
    Low,
    /// Features, reviews.
    Medium,
    /// Architecture, hard problems.
    High,
}

/// A parameter of an agent or workflow, resolved.
#[derive(Debug, Clone, Serialize)]
pub struct ParamDef {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: Type,
    /// Whether it has a default (then it may be omitted).
    pub default: Option<String>,
    /// Declaration span.
    #[serde(skip)]
    pub span: Span,
}

/// What an agent is.
#[derive(Debug, Clone)]
pub enum AgentKind {
    /// An LLM agent.
    Model {
        /// Pinned model (`model:` field).
        model: Option<Ident>,
        /// System text.
        system: Option<Template>,
        /// Output-token limit.
        max_tokens: Option<u32>,
        /// Sampling temperature.
        temperature: Option<f64>,
        /// Fallback model.
        fallback: Option<Ident>,
    },
    /// A program run without a shell; the prompt is its stdin.
    Command {
        /// argv templates (may interpolate the agent's parameters), with spans.
        argv: Vec<(Template, Span)>,
        /// Environment variables set for it.
        env: Vec<(String, Template, Span)>,
        /// Working directory (may interpolate the agent's parameters, never model output),
        /// with its span.
        cwd: Option<(Template, Span)>,
    },
}

/// An agent declared with `agent name(params) { ... }`.
#[derive(Debug, Clone)]
pub struct AgentDef {
    /// Its name.
    pub name: String,
    /// `///` doc comment.
    pub doc: Option<String>,
    /// Parameters, filled by named arguments.
    pub params: Vec<ParamDef>,
    /// Model or command agent.
    pub kind: AgentKind,
    /// Declared complexity.
    pub complexity: Option<Complexity>,
    /// `retry:` field.
    pub retry: Option<u32>,
    /// `timeout:` field, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// `deadline:` field (bound on a whole step), in milliseconds.
    pub deadline_ms: Option<u64>,
    /// `max_output_bytes:` field: the longest output (a model's answer, a program's stdout)
    /// a step of this agent may produce, in bytes; never zero. `None`: the default,
    /// [`crate::common::DEFAULT_MAX_OUTPUT_BYTES`].
    pub max_output_bytes: Option<u32>,
    /// `tools: [...]`: the agent runs an agent loop with these grants. The entries as written
    /// until `check::tools` resolves them against every table; `None` without the field.
    pub tools: Option<Vec<super::tools::Granted>>,
    /// `on_truncated:` field (model agents): what a step does with an answer cut off by the
    /// token limit. Default: [`crate::common::OnTruncated::Warn`].
    pub on_truncated: crate::common::OnTruncated,
    /// `max_turns:` field: the most model turns of its agent loop.
    pub max_turns: Option<u32>,
    /// `tool_timeout:` field: bound on one tool call, in milliseconds.
    pub tool_timeout_ms: Option<u64>,
    /// The entries of `tools: [...]` as written, for `check::tools`.
    pub(crate) tools_written: Vec<Value>,
    /// Declaration span.
    pub span: Span,
    /// Name span.
    pub name_span: Span,
    /// Where each field is written (`key: value`), by key, for labels.
    pub field_spans: IndexMap<String, Span>,
}

// ------------------------------------------------------------------------- field reading

/// Reads the fields of a `{ }` record against a list of known keys, reporting unknown and
/// duplicate keys; the caller then takes typed values out with the `take_*` helpers.
pub(crate) struct Fields<'a> {
    what: &'static str,
    map: IndexMap<&'a str, &'a Field>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(
        what: &'static str,
        fields: &'a [Field],
        known: &'static [&'static str],
        diags: &mut Diagnostics,
    ) -> Self {
        let mut map: IndexMap<&str, &Field> = IndexMap::new();
        for f in fields {
            let key = f.key.name.as_str();
            if let Some(prev) = map.get(key) {
                diags.push(
                    DuplicateDefinition::Field {
                        at: f.key.span,
                        key: key.to_string(),
                        first: prev.key.span,
                    }
                    .into(),
                );
                continue;
            }
            if !known.contains(&key) {
                let mix = if what == "a command agent" && MODEL_AGENT_FIELDS.contains(&key) {
                    FieldMix::ModelFieldOnCommand
                } else if what == "an agent" && COMMAND_AGENT_FIELDS.contains(&key) {
                    FieldMix::CommandFieldOnModel
                } else {
                    FieldMix::None
                };
                diags.push(
                    UnknownField {
                        at: f.key.span,
                        key: key.to_string(),
                        what,
                        known,
                        suggestion: did_you_mean(key, known.iter().copied()).map(String::from),
                        mix,
                    }
                    .into(),
                );
                continue;
            }
            map.insert(key, f);
        }
        Fields { what, map }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Field> {
        self.map.get(key).copied()
    }

    fn mismatch(&self, f: &Field, expected: &'static str, diags: &mut Diagnostics) {
        let written = match &f.value.kind {
            ValueKind::Str(t) => Written::Str(t.as_plain()),
            ValueKind::Int(n) => Written::Int(*n),
            ValueKind::Decimal(x) => Written::Decimal(*x),
            ValueKind::Path(p) => Written::Name(p.dotted()),
            _ => Written::Other,
        };
        diags.push(
            InvalidFieldValue::Kind {
                at: f.value.span,
                key: f.key.name.clone(),
                what: self.what,
                expected,
                found: f.value.kind.describe(),
                written,
            }
            .into(),
        );
    }

    pub(crate) fn string(&self, key: &str, diags: &mut Diagnostics) -> Option<(Template, Span)> {
        let f = self.get(key)?;
        match &f.value.kind {
            ValueKind::Str(t) => Some((t.clone(), f.value.span)),
            _ => {
                self.mismatch(f, "a string", diags);
                None
            }
        }
    }

    /// A string without interpolations.
    pub(crate) fn plain(&self, key: &str, diags: &mut Diagnostics) -> Option<String> {
        let (t, span) = self.string(key, diags)?;
        match t.as_plain() {
            Some(s) => Some(s),
            None => {
                diags.push(
                    InvalidFieldValue::Interpolates {
                        at: span,
                        key: key.to_string(),
                        what: self.what,
                    }
                    .into(),
                );
                None
            }
        }
    }

    pub(crate) fn int(&self, key: &str, diags: &mut Diagnostics) -> Option<u32> {
        let f = self.get(key)?;
        match &f.value.kind {
            ValueKind::Int(n) if (0..=i64::from(u32::MAX)).contains(n) => Some(*n as u32),
            _ => {
                self.mismatch(f, "a whole number", diags);
                None
            }
        }
    }

    pub(crate) fn number(&self, key: &str, diags: &mut Diagnostics) -> Option<f64> {
        let f = self.get(key)?;
        match &f.value.kind {
            ValueKind::Int(n) => Some(*n as f64),
            ValueKind::Decimal(x) => Some(*x),
            ValueKind::Money(x) => Some(*x),
            _ => {
                self.mismatch(f, "a number", diags);
                None
            }
        }
    }

    pub(crate) fn boolean(&self, key: &str, diags: &mut Diagnostics) -> Option<bool> {
        let f = self.get(key)?;
        match &f.value.kind {
            ValueKind::Bool(b) => Some(*b),
            _ => {
                self.mismatch(f, "`true` or `false`", diags);
                None
            }
        }
    }

    pub(crate) fn duration(&self, key: &str, diags: &mut Diagnostics) -> Option<u64> {
        let f = self.get(key)?;
        match &f.value.kind {
            ValueKind::Duration(ms) => Some(*ms),
            _ => {
                self.mismatch(f, "a duration like `30s` or `500ms`", diags);
                None
            }
        }
    }

    /// A bare name (`haiku`, `fast`).
    pub(crate) fn name(&self, key: &str, diags: &mut Diagnostics) -> Option<Ident> {
        let f = self.get(key)?;
        match &f.value.kind {
            ValueKind::Path(p) if p.fields.is_empty() => Some(p.root.clone()),
            _ => {
                self.mismatch(f, "a name", diags);
                None
            }
        }
    }

    /// A bare name that must be one of `choices`.
    pub(crate) fn choice(
        &self,
        key: &str,
        choices: &'static [&'static str],
        diags: &mut Diagnostics,
    ) -> Option<(String, Span)> {
        let f = self.get(key)?;
        let word = match &f.value.kind {
            ValueKind::Path(p) if p.fields.is_empty() => Some(p.root.name.clone()),
            ValueKind::Str(t) => t.as_plain(),
            _ => None,
        };
        match word {
            Some(w) if choices.contains(&w.as_str()) => Some((w, f.value.span)),
            _ => {
                let shown = self.map.get(key).map(|f| f.value.span);
                diags.push(
                    InvalidFieldValue::Choice {
                        at: shown.unwrap_or(f.value.span),
                        key: key.to_string(),
                        what: self.what,
                        choices,
                        suggestion: word
                            .as_deref()
                            .and_then(|w| did_you_mean(w, choices.iter().copied()))
                            .map(String::from),
                    }
                    .into(),
                );
                None
            }
        }
    }

    pub(crate) fn require(
        &self,
        key: &'static str,
        item_span: Span,
        name: &Ident,
        diags: &mut Diagnostics,
        help: &'static str,
    ) -> bool {
        if self.get(key).is_some() {
            return true;
        }
        let _ = item_span;
        let what = self
            .what
            .strip_prefix("a ")
            .or_else(|| self.what.strip_prefix("an "))
            .unwrap_or(self.what);
        diags.push(
            MissingField {
                at: name.span,
                what,
                name: name.name.clone(),
                key,
                help,
            }
            .into(),
        );
        false
    }
}

/// Reports a literal `api_key`: keys are only ever named by environment variable.
fn reject_literal_key(fields: &[Field], diags: &mut Diagnostics) {
    for f in fields.iter().filter(|f| f.key.name == "api_key") {
        diags.push(LiteralApiKey::Field { at: f.value.span }.into());
    }
}

// ------------------------------------------------------------------------- providers

/// The fields a `provider` declaration may have.
pub const PROVIDER_FIELDS: &[&str] = &[
    "kind",
    "base_url",
    "api_key_env",
    "max_concurrency",
    "latency",
    "failures",
    "stream",
    "idle_timeout",
    "requests_per_minute",
    "tokens_per_minute",
    "batch_poll",
];

pub(crate) fn provider(decl: &ast::Decl, diags: &mut Diagnostics) -> ProviderDef {
    reject_literal_key(&decl.fields, diags);
    let without_key: Vec<Field> = decl
        .fields
        .iter()
        .filter(|f| f.key.name != "api_key")
        .cloned()
        .collect();
    let f = Fields::new("a provider", &without_key, PROVIDER_FIELDS, diags);
    let kind = match f.choice("kind", &["anthropic", "openai", "sim"], diags) {
        Some((k, _)) => ProviderKind::parse(&k),
        None if f.get("kind").is_some() => None,
        None => ProviderKind::parse(&decl.name.name),
    };
    let kind = kind.unwrap_or_else(|| {
        if f.get("kind").is_none() {
            diags.push(
                MissingField {
                    at: decl.name.span,
                    what: "provider",
                    name: decl.name.name.clone(),
                    key: "kind",
                    help: PROVIDER_KIND_HELP,
                }
                .into(),
            );
        }
        ProviderKind::Openai
    });
    let latency_ms = f.duration("latency", diags);
    let failures = f.int("failures", diags);
    for key in ["latency", "failures"] {
        if kind != ProviderKind::Sim
            && let Some(field) = f.get(key)
        {
            diags.push(
                InvalidFieldValue::SimulatorOnly {
                    at: field.key.span,
                    key,
                }
                .into(),
            );
        }
    }
    let stream = f.boolean("stream", diags);
    let idle_timeout_ms = f.duration("idle_timeout", diags);
    for key in ["stream", "idle_timeout"] {
        if kind == ProviderKind::Sim
            && let Some(field) = f.get(key)
        {
            diags.push(
                InvalidFieldValue::HttpOnly {
                    at: field.key.span,
                    key,
                }
                .into(),
            );
        }
    }
    let requests_per_minute = f.int("requests_per_minute", diags);
    let tokens_per_minute = f.int("tokens_per_minute", diags);
    let batch_poll_ms = f.duration("batch_poll", diags);
    for (key, zero) in [
        ("batch_poll", batch_poll_ms == Some(0)),
        ("idle_timeout", idle_timeout_ms == Some(0)),
        ("requests_per_minute", requests_per_minute == Some(0)),
        ("tokens_per_minute", tokens_per_minute == Some(0)),
    ] {
        if let (true, Some(field)) = (zero, f.get(key)) {
            diags.push(
                InvalidFieldValue::ProviderZero {
                    at: field.value.span,
                    key,
                }
                .into(),
            );
        }
    }
    ProviderDef {
        name: decl.name.name.clone(),
        kind,
        base_url: f.plain("base_url", diags),
        api_key_env: f.plain("api_key_env", diags),
        max_concurrency: f.int("max_concurrency", diags),
        latency_ms,
        failures,
        stream,
        idle_timeout_ms: idle_timeout_ms.filter(|ms| *ms > 0),
        requests_per_minute: requests_per_minute.filter(|n| *n > 0),
        tokens_per_minute: tokens_per_minute.filter(|n| *n > 0),
        batch_poll_ms: batch_poll_ms.filter(|ms| *ms > 0),
        span: Some(decl.span),
    }
}

// ------------------------------------------------------------------------- models

/// The fields a `model` declaration may have.
pub const MODEL_FIELDS: &[&str] = &[
    "provider",
    "name",
    "tier",
    "price",
    "max_tokens",
    "context_window",
];

/// A model; the provider name is validated later, against the whole provider table.
pub(crate) fn model(decl: &ast::Decl, diags: &mut Diagnostics) -> (ModelDef, Option<Ident>) {
    let f = Fields::new("a model", &decl.fields, MODEL_FIELDS, diags);
    f.require(
        "provider",
        decl.span,
        &decl.name,
        diags,
        MODEL_PROVIDER_HELP,
    );
    let provider = f.name("provider", diags);
    let tier = f
        .choice("tier", &["fast", "balanced", "deep"], diags)
        .map(|(t, _)| match t.as_str() {
            "fast" => Tier::Fast,
            "deep" => Tier::Deep,
            _ => Tier::Balanced,
        });
    let price = f.get("price").map(|p| price(p, diags)).unwrap_or_default();
    let def = ModelDef {
        name: decl.name.name.clone(),
        provider: provider
            .as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_default(),
        api_name: f
            .plain("name", diags)
            .unwrap_or_else(|| decl.name.name.clone()),
        tier,
        price,
        max_tokens: f.int("max_tokens", diags),
        context_window: context_window(&f, diags),
        span: decl.span,
    };
    (def, provider)
}

/// `context_window:` a whole number of tokens, not zero.
fn context_window(f: &Fields<'_>, diags: &mut Diagnostics) -> Option<u32> {
    let n = f.int("context_window", diags)?;
    if n > 0 {
        return Some(n);
    }
    let at = f.get("context_window")?.value.span;
    diags.push(
        InvalidFieldValue::ProviderZero {
            at,
            key: "context_window",
        }
        .into(),
    );
    None
}

fn price(field: &Field, diags: &mut Diagnostics) -> Price {
    let ValueKind::Record(fields) = &field.value.kind else {
        diags.push(
            InvalidFieldValue::PriceNotRecord {
                at: field.value.span,
            }
            .into(),
        );
        return Price::default();
    };
    let f = Fields::new("a price", fields, &["input", "output"], diags);
    Price {
        input: f.number("input", diags).unwrap_or(0.0),
        output: f.number("output", diags).unwrap_or(0.0),
    }
}

// ------------------------------------------------------------------------- agents

/// The fields a model agent may have.
pub const MODEL_AGENT_FIELDS: &[&str] = &[
    "model",
    "complexity",
    "system",
    "max_tokens",
    "temperature",
    "retry",
    "timeout",
    "deadline",
    "fallback",
    "max_output_bytes",
    "description",
    "tools",
    "max_turns",
    "tool_timeout",
    "on_truncated",
];
/// The fields a command agent (one with `run:`) may have.
pub const COMMAND_AGENT_FIELDS: &[&str] = &[
    "run",
    "env",
    "cwd",
    "retry",
    "timeout",
    "deadline",
    "max_output_bytes",
    "description",
];

pub(crate) fn agent(decl: &ast::AgentDecl, diags: &mut Diagnostics) -> AgentDef {
    let params = params(&decl.params, diags);
    let is_command = decl.fields.iter().any(|f| f.key.name == "run");
    let (known, what) = if is_command {
        (COMMAND_AGENT_FIELDS, "a command agent")
    } else {
        (MODEL_AGENT_FIELDS, "an agent")
    };
    let f = Fields::new(what, &decl.fields, known, diags);
    let kind = if is_command {
        command_kind(&f, &params, &decl.name.name, diags)
    } else {
        let system = f.string("system", diags).map(|(t, span)| {
            check_param_refs(&t, span, &params, &decl.name.name, diags);
            t
        });
        AgentKind::Model {
            model: f.name("model", diags),
            system,
            max_tokens: f.int("max_tokens", diags),
            temperature: temperature(&f, diags),
            fallback: f.name("fallback", diags),
        }
    };
    let complexity = f
        .choice("complexity", &["low", "medium", "high"], diags)
        .map(|(c, _)| match c.as_str() {
            "low" => Complexity::Low,
            "high" => Complexity::High,
            _ => Complexity::Medium,
        });
    let tools_written = super::tools::tools_field(&f, diags);
    AgentDef {
        name: decl.name.name.clone(),
        doc: decl.doc.clone(),
        params,
        kind,
        complexity,
        retry: f.int("retry", diags),
        timeout_ms: f.duration("timeout", diags),
        deadline_ms: f.duration("deadline", diags),
        max_output_bytes: max_output_bytes(&f, diags),
        on_truncated: f
            .choice("on_truncated", &["warn", "fail", "retry"], diags)
            .map_or(crate::common::OnTruncated::Warn, |(c, _)| {
                match c.as_str() {
                    "fail" => crate::common::OnTruncated::Fail,
                    "retry" => crate::common::OnTruncated::Retry,
                    _ => crate::common::OnTruncated::Warn,
                }
            }),
        tools: tools_written.as_ref().map(|_| Vec::new()),
        max_turns: super::tools::max_turns_field(&f, diags),
        tool_timeout_ms: super::tools::tool_timeout_field(&f, diags),
        tools_written: tools_written.unwrap_or_default(),
        span: decl.span,
        name_span: decl.name.span,
        field_spans: decl
            .fields
            .iter()
            .map(|f| (f.key.name.clone(), f.key.span.to(f.value.span)))
            .collect(),
    }
}

/// `max_output_bytes:` a whole number of bytes, not zero.
fn max_output_bytes(f: &Fields<'_>, diags: &mut Diagnostics) -> Option<u32> {
    let n = f.int("max_output_bytes", diags)?;
    if n > 0 {
        return Some(n);
    }
    let span = f.get("max_output_bytes")?.value.span;
    diags.push(
        InvalidFieldValue::MaxOutputZero {
            at: span,
            default: crate::common::DEFAULT_MAX_OUTPUT_BYTES,
        }
        .into(),
    );
    None
}

/// `temperature:` must be in 0..=2: the widest range providers accept (OpenAI Chat Completions
/// takes 0 to 2, Anthropic Messages 0 to 1; see their API references).
fn temperature(f: &Fields<'_>, diags: &mut Diagnostics) -> Option<f64> {
    let t = f.number("temperature", diags)?;
    if (0.0..=2.0).contains(&t) {
        return Some(t);
    }
    let span = f.get("temperature")?.value.span;
    diags.push(ImpossibleValue::Temperature { at: span, value: t }.into());
    None
}

fn command_kind(
    f: &Fields<'_>,
    params: &[ParamDef],
    agent: &str,
    diags: &mut Diagnostics,
) -> AgentKind {
    let mut argv = Vec::new();
    if let Some(run) = f.get("run") {
        match &run.value.kind {
            ValueKind::List(items) if !items.is_empty() => {
                for v in items {
                    match &v.kind {
                        ValueKind::Str(t) => {
                            check_param_refs(t, v.span, params, agent, diags);
                            argv.push((t.clone(), v.span));
                        }
                        _ => diags.push(
                            InvalidFieldValue::ArgvElement {
                                at: v.span,
                                found: v.kind.describe(),
                            }
                            .into(),
                        ),
                    }
                }
            }
            _ => diags.push(InvalidFieldValue::RunNotList { at: run.value.span }.into()),
        }
    }
    let mut env = Vec::new();
    if let Some(e) = f.get("env") {
        match &e.value.kind {
            ValueKind::Record(fields) => {
                for field in fields {
                    match &field.value.kind {
                        ValueKind::Str(t) => {
                            check_param_refs(t, field.value.span, params, agent, diags);
                            env.push((field.key.name.clone(), t.clone(), field.value.span));
                        }
                        _ => diags.push(
                            InvalidFieldValue::EnvValue {
                                at: field.value.span,
                                name: field.key.name.clone(),
                                found: field.value.kind.describe(),
                                text: value_text(&field.value),
                            }
                            .into(),
                        ),
                    }
                }
            }
            _ => diags.push(InvalidFieldValue::EnvNotRecord { at: e.value.span }.into()),
        }
    }
    let cwd = f.string("cwd", diags);
    if let Some((t, span)) = &cwd {
        check_param_refs(t, *span, params, agent, diags);
    }
    AgentKind::Command { argv, env, cwd }
}

/// Agent templates (system, argv, env) may interpolate the agent's own parameters only.
fn check_param_refs(
    t: &Template,
    _span: Span,
    params: &[ParamDef],
    agent: &str,
    diags: &mut Diagnostics,
) {
    for part in &t.parts {
        let TemplatePart::Interp(p) = part else {
            continue;
        };
        if params.iter().any(|q| q.name == p.root.name) {
            continue;
        }
        diags.push(
            UndefinedName::NotAParameter {
                at: p.root.span,
                name: p.root.name.clone(),
                agent: agent.to_string(),
                suggestion: did_you_mean(&p.root.name, params.iter().map(|q| q.name.as_str()))
                    .map(String::from),
                params: params.iter().map(|q| q.name.clone()).collect(),
            }
            .into(),
        );
    }
}

pub(crate) fn params(ps: &[ast::Param], diags: &mut Diagnostics) -> Vec<ParamDef> {
    let mut out: Vec<ParamDef> = Vec::new();
    for p in ps {
        if let Some(prev) = out.iter().find(|q| q.name == p.name.name) {
            diags.push(
                DuplicateDefinition::Parameter {
                    at: p.name.span,
                    name: p.name.name.clone(),
                    first: prev.span,
                }
                .into(),
            );
            continue;
        }
        let ty =
            p.ty.as_ref()
                .map(|t| resolve_type(t, diags))
                .unwrap_or(Type::Text);
        out.push(ParamDef {
            name: p.name.name.clone(),
            ty,
            default: p.default.as_ref().map(value_text),
            span: p.name.span,
        });
    }
    out
}

/// A value where a template is expected (a prompt, an argument, `return`): a string as
/// written, a name as `{name}`, anything else as its literal text.
pub(crate) fn value_template(v: &Value) -> crate::syntax::ast::Template {
    use crate::syntax::ast::{Template, TemplatePart};
    match &v.kind {
        ValueKind::Str(t) => t.clone(),
        ValueKind::Path(p) => Template {
            parts: vec![TemplatePart::Interp(p.clone())],
        },
        _ => Template {
            parts: vec![TemplatePart::Text(value_text(v))],
        },
    }
}
