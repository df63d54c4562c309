//! The wording of every diagnostic the checker reports. Each code has one type here whose
//! variants carry the facts a message names (names, spans, types, a did-you-mean), and one
//! `diagnostic` function that words them: the only place the checker makes a [`Diagnostic`]
//! (the model is Gleam's `compiler-core/src/error.rs`; ruff's one-rule-one-struct gives each
//! code its own type). The checks decide *that* something is wrong and gather the facts;
//! this module decides how it reads.
//!
//! The types follow the catalogue's order ([`crate::diag::catalog`]); each converts into a
//! [`Diagnostic`] with `.into()`.

use crate::check::types::Type;
use crate::diag::{Code, Diagnostic, Span};
use crate::syntax::ast::Policy;

use super::items::{Complexity, Tier};

/// `impl From<T> for Diagnostic` through `T::diagnostic`.
macro_rules! into_diagnostic {
    ($($t:ident),* $(,)?) => {
        $(impl From<$t> for Diagnostic {
            fn from(e: $t) -> Self {
                e.diagnostic()
            }
        })*
    };
}

into_diagnostic!(
    DuplicateInclude,
    UndefinedName,
    UnknownAgent,
    UnknownModel,
    UnknownProvider,
    DuplicateDefinition,
    UnknownField,
    InvalidFieldValue,
    MissingField,
    UnknownType,
    InvalidFieldAccess,
    InvalidArguments,
    TypeMismatch,
    DependencyCycle,
    RecursiveCall,
    ExpansionTooLarge,
    StepWithoutModel,
    BlockModelOverridden,
    ModelOnCommandAgent,
    ComplexityTierMismatch,
    BlockOptionOverridden,
    MisplacedGather,
    InvalidOption,
    ImpossibleValue,
    MisplacedReturn,
    EmptyParallel,
    SingleBranchParallel,
    ForBodyResult,
    BatchWindowBound,
    LiteralApiKey,
    ModelOutputInArgv,
    NoEntryWorkflow,
    UnusedOutput,
    ParallelizableSequence,
    UnknownTool,
    InvalidExec,
    UnknownMcpServer,
    InvalidDelegation,
    DelegationCycle,
    DelegationTooDeep,
    TurnsWithoutTools,
    LowComplexityWrites,
    UnusedMcpServer,
);

/// `` `a`, `b` ``: names in backticks, joined with commas.
fn ticked(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "a" or "an", for a kind of item.
fn article(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// `branch` or `branches`.
fn branches(n: u32) -> &'static str {
    if n == 1 { "branch" } else { "branches" }
}

// ------------------------------------------------------------------ W0105

/// `W0105`: a file includes the same file twice.
pub(crate) struct DuplicateInclude {
    pub at: Span,
    pub path: String,
    pub first: Span,
}

impl DuplicateInclude {
    fn diagnostic(self) -> Diagnostic {
        Diagnostic::new(
            Code::DuplicateInclude,
            self.at,
            format!("`{}` is included twice", self.path),
        )
        .with_label("included again")
        .with_secondary(self.first, "first included here")
        .with_help("remove this line: a file is loaded once, however often it is included")
    }
}

// ------------------------------------------------------------------ E0201

/// `E0201`: a name that is not defined where it is used.
pub(crate) enum UndefinedName {
    /// A reference to no name of the workflow; `suggestion` is the closest name, `names` all
    /// of them.
    InWorkflow {
        at: Span,
        name: String,
        workflow: String,
        suggestion: Option<String>,
        is_agent: bool,
        names: Vec<String>,
    },
    /// `after p` naming a parameter.
    AfterParameter { at: Span, name: String },
    /// A name defined in another branch of the `if` the use is in.
    InOtherBranch {
        at: Span,
        name: String,
        definition: Span,
    },
    /// A name of a `parallel for` body used outside it; `list` is the block's name when the
    /// block is named.
    InsideFor {
        at: Span,
        name: String,
        block: Span,
        list: Option<String>,
    },
    /// A name defined in only one branch of an `if`, used after it.
    InOneBranch { at: Span, name: String, if_at: Span },
    /// An agent's own text using a name that is not one of its parameters.
    NotAParameter {
        at: Span,
        name: String,
        agent: String,
        suggestion: Option<String>,
        params: Vec<String>,
    },
}

impl UndefinedName {
    fn diagnostic(self) -> Diagnostic {
        let error = |at, message: String| Diagnostic::new(Code::UndefinedName, at, message);
        match self {
            UndefinedName::InWorkflow {
                at,
                name,
                workflow,
                suggestion,
                is_agent,
                names,
            } => {
                let d = error(at, format!("`{name}` is not defined in workflow `{workflow}`"))
                    .with_label("not defined");
                match suggestion {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")).with_replacement(s),
                    None if is_agent => d.with_help(format!(
                        "`{name}` is an agent, not a value; call it in a step (`result = {name}(\"...\")`) and use `{{result}}`"
                    )),
                    None if names.is_empty() => d.with_help(format!(
                        "workflow `{workflow}` defines no names; a name is a parameter, a step or a named `parallel` block"
                    )),
                    None => d.with_help(format!(
                        "a name is a parameter, a step or a named `parallel` block; `{workflow}` defines {}",
                        ticked(&names)
                    )),
                }
            }
            UndefinedName::AfterParameter { at, name } => {
                error(at, format!("`{name}` is a parameter, not a step"))
                    .with_label("`after` names steps")
                    .with_help("parameters are available from the start; remove it")
            }
            UndefinedName::InOtherBranch {
                at,
                name,
                definition,
            } => error(at, format!("`{name}` is defined in another branch"))
                .with_label("not defined on this path")
                .with_secondary(definition, "defined here, in another branch")
                .with_help(format!(
                    "only one branch runs: define `{name}` in this branch too, or use it after the `if`"
                )),
            UndefinedName::InsideFor {
                at,
                name,
                block,
                list,
            } => error(at, format!("`{name}` is defined inside a `parallel for`"))
                .with_label("not visible here")
                .with_secondary(block, "it is defined for each item of this block")
                .with_help(match list {
                    Some(list) => format!(
                        "`{name}` has one value per item; outside the block, use `{{{list}}}`, the list of every item's result"
                    ),
                    None => format!(
                        "`{name}` has one value per item; name the block (`results = parallel for ...`) and use the list `{{results}}`"
                    ),
                }),
            UndefinedName::InOneBranch { at, name, if_at } => {
                error(at, format!("`{name}` is only defined in one branch of an `if`"))
                    .with_label("may not be defined here")
                    .with_secondary(if_at, "the `if` that defines it in one branch")
                    .with_help(format!(
                        "define `{name}` in both branches (`else {{ {name} = ... }}`), or use it inside the branch"
                    ))
            }
            UndefinedName::NotAParameter {
                at,
                name,
                agent,
                suggestion,
                params,
            } => {
                let d = error(at, format!("`{name}` is not a parameter of agent `{agent}`"))
                    .with_label("not a parameter");
                match suggestion {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")).with_replacement(s),
                    None if params.is_empty() => d.with_help(format!(
                        "an agent's own text can only use its parameters; declare one (`agent {agent}({name}: text) {{ ... }}`) and pass it at the call, or put the value in the prompt"
                    )),
                    None => d.with_help(format!(
                        "an agent's own text can only use its parameters; those of `{agent}` are {}",
                        ticked(&params)
                    )),
                }
            }
        }
    }
}

// ------------------------------------------------------------------ E0202, E0203, E0204

/// `E0202`: a step calls an agent that is not declared. `namespaced` is the key of an agent
/// of that name in a namespaced include; `suggestion` the closest callee.
pub(crate) struct UnknownAgent {
    pub at: Span,
    pub name: String,
    pub root: String,
    pub namespaced: Option<String>,
    pub suggestion: Option<String>,
}

impl UnknownAgent {
    fn diagnostic(self) -> Diagnostic {
        let name = &self.name;
        let d = Diagnostic::new(
            Code::UnknownAgent,
            self.at,
            format!("unknown agent `{name}`"),
        )
        .with_label("not a declared agent");
        match (self.namespaced, self.suggestion) {
            (Some(k), _) => d.with_help(format!(
                "`{name}` is in a namespaced include: call it `{k}(...)`"
            )),
            (None, Some(s)) => d
                .with_help(format!("did you mean `{s}`?"))
                .with_replacement(s),
            (None, None) => d.with_help(format!(
                "declare it: `agent {} {{ model: sonnet, system: \"...\" }}`",
                self.root
            )),
        }
    }
}

/// `E0203`: a model that is not declared; `declared` are the models that are.
pub(crate) struct UnknownModel {
    pub at: Span,
    pub name: String,
    pub suggestion: Option<String>,
    pub declared: Vec<String>,
}

impl UnknownModel {
    fn diagnostic(self) -> Diagnostic {
        let d = Diagnostic::new(
            Code::UnknownModel,
            self.at,
            format!("unknown model `{}`", self.name),
        )
        .with_label("not a declared model");
        match self.suggestion {
            Some(s) => d.with_help(format!("did you mean `{s}`?")).with_replacement(s),
            None if self.declared.is_empty() => d.with_help(
                "no models are declared; add `include \"std/models.orch\"` for haiku, sonnet and opus, or declare one with `model NAME { ... }`",
            ),
            None => d.with_help(format!("declared models: {}", self.declared.join(", "))),
        }
    }
}

/// `E0204`: a model names a provider that is neither built in nor declared.
pub(crate) struct UnknownProvider {
    pub at: Span,
    pub name: String,
    pub suggestion: Option<String>,
}

impl UnknownProvider {
    fn diagnostic(self) -> Diagnostic {
        let d = Diagnostic::new(
            Code::UnknownProvider,
            self.at,
            format!("unknown provider `{}`", self.name),
        )
        .with_label("not a provider");
        match self.suggestion {
            Some(s) => d.with_help(format!("did you mean `{s}`?")).with_replacement(s),
            None => d.with_help(format!(
                "built-in providers are anthropic, openai and sim; declare others with `provider {} {{ kind: openai, base_url: \"...\" }}`",
                self.name
            )),
        }
    }
}

// ------------------------------------------------------------------ E0205

/// One declaration of an item: where, and what kind of item (`agent`, `workflow`, ...).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Declared {
    pub at: Span,
    pub kind: &'static str,
}

/// `E0205`: something is defined twice.
pub(crate) enum DuplicateDefinition {
    /// An item declared twice: `primary` is the declaration reported (in the entry script
    /// when one is), `other` the other one, in `other_file`.
    Item {
        name: String,
        primary: Declared,
        other: Declared,
        other_file: String,
    },
    /// A field set twice in one record.
    Field { at: Span, key: String, first: Span },
    /// A name bound twice in a workflow; `first_is_param` when the first is a parameter.
    Name {
        at: Span,
        name: String,
        workflow: String,
        first: Span,
        first_is_param: bool,
    },
    /// A parameter declared twice.
    Parameter { at: Span, name: String, first: Span },
}

impl DuplicateDefinition {
    fn diagnostic(self) -> Diagnostic {
        let error = |at, message: String| Diagnostic::new(Code::DuplicateDefinition, at, message);
        match self {
            DuplicateDefinition::Item {
                name,
                primary,
                other,
                other_file,
            } => {
                let message = if primary.kind == other.kind {
                    format!("{} `{name}` is defined twice", primary.kind)
                } else {
                    format!(
                        "`{name}` is defined twice: as {} {} and as {} {}",
                        article(other.kind),
                        other.kind,
                        article(primary.kind),
                        primary.kind
                    )
                };
                let same_file = primary.at.file == other.at.file;
                let (label, other_label) = if same_file && primary.at.start > other.at.start {
                    (
                        "defined again here".to_string(),
                        "first defined here".to_string(),
                    )
                } else {
                    (
                        format!("{} `{name}` defined here", primary.kind),
                        format!("{} `{name}` also defined here", other.kind),
                    )
                };
                let help = if other_file.starts_with("std/") {
                    format!(
                        "`{name}` is {} {} of the standard library ({other_file}); rename yours",
                        article(other.kind),
                        other.kind
                    )
                } else if other.kind == primary.kind {
                    "rename one of them, or remove the copy".to_string()
                } else {
                    "providers, models, agents and workflows share one namespace; rename one of them"
                        .to_string()
                };
                error(primary.at, message)
                    .with_label(label)
                    .with_secondary(other.at, other_label)
                    .with_help(help)
            }
            DuplicateDefinition::Field { at, key, first } => {
                error(at, format!("field `{key}` is set twice"))
                    .with_label("set again here")
                    .with_secondary(first, "first set here")
                    .with_help("remove one of them")
            }
            DuplicateDefinition::Name {
                at,
                name,
                workflow,
                first,
                first_is_param,
            } => {
                let what = if first_is_param {
                    "a parameter"
                } else {
                    "a step"
                };
                error(
                    at,
                    format!("`{name}` is defined twice in workflow `{workflow}`"),
                )
                .with_label("defined again here")
                .with_secondary(first, format!("first defined here, as {what}"))
                .with_help("every name is defined once per workflow; rename one of them")
            }
            DuplicateDefinition::Parameter { at, name, first } => {
                error(at, format!("parameter `{name}` is declared twice"))
                    .with_label("declared again")
                    .with_secondary(first, "first declared here")
                    .with_help("rename one of them")
            }
        }
    }
}

// ------------------------------------------------------------------ E0206

/// Why a field is unknown, beyond not being one of `known`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldMix {
    /// Nothing more.
    None,
    /// A model agent's field on a command agent.
    ModelFieldOnCommand,
    /// A command agent's field on a model agent.
    CommandFieldOnModel,
}

/// `E0206`: a field that `what` (`an agent`, `a provider`) does not have.
pub(crate) struct UnknownField {
    pub at: Span,
    pub key: String,
    pub what: &'static str,
    pub known: &'static [&'static str],
    pub suggestion: Option<String>,
    pub mix: FieldMix,
}

impl UnknownField {
    fn diagnostic(self) -> Diagnostic {
        let (key, what, known) = (&self.key, self.what, self.known.join(", "));
        let d = Diagnostic::new(
            Code::UnknownField,
            self.at,
            format!("unknown field `{key}` in {what}"),
        )
        .with_label("unknown field");
        match (self.suggestion, self.mix) {
            (Some(s), _) => d.with_help(format!("did you mean `{s}`? Fields of {what}: {known}")).with_replacement(s),
            (None, FieldMix::ModelFieldOnCommand) => d
                .with_label("only for model agents")
                .with_help(format!(
                    "an agent with `run:` runs a program and gets its prompt on stdin; `{key}` applies to model agents only. Fields of a command agent: {known}"
                )),
            (None, FieldMix::CommandFieldOnModel) => d
                .with_label("only for command agents")
                .with_help(format!(
                    "`{key}` applies to command agents, which are declared with `run: [\"program\", ...]`"
                )),
            (None, FieldMix::None) => d.with_help(format!("fields of {what}: {known}")),
        }
    }
}

// ------------------------------------------------------------------ E0207

/// What was written where another kind of value was expected, as far as the help needs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Written {
    /// A string; its text when it has no interpolation.
    Str(Option<String>),
    /// A whole number.
    Int(i64),
    /// A decimal number.
    Decimal(f64),
    /// A name (its dotted path).
    Name(String),
    /// Anything else.
    Other,
}

/// `E0207`: a field's value is of the wrong kind.
pub(crate) enum InvalidFieldValue {
    /// `key` of `what` must be `expected`; `found` describes the value.
    Kind {
        at: Span,
        key: String,
        what: &'static str,
        expected: &'static str,
        found: &'static str,
        written: Written,
    },
    /// A plain field that interpolates.
    Interpolates {
        at: Span,
        key: String,
        what: &'static str,
    },
    /// A word that is none of `choices`; `suggestion` is the closest.
    Choice {
        at: Span,
        key: String,
        what: &'static str,
        choices: &'static [&'static str],
        suggestion: Option<String>,
    },
    /// `latency` or `failures` on a provider that is not a simulator.
    SimulatorOnly { at: Span, key: &'static str },
    /// `stream` or `idle_timeout` on the simulator.
    HttpOnly { at: Span, key: &'static str },
    /// A provider's or a model's field that cannot be zero (a model's `context_window`).
    ProviderZero { at: Span, key: &'static str },
    /// `price` that is no record.
    PriceNotRecord { at: Span },
    /// `max_output_bytes: 0`; `default` is the default bound, in bytes.
    MaxOutputZero { at: Span, default: u32 },
    /// An argv element that is no string; `found` describes it.
    ArgvElement { at: Span, found: &'static str },
    /// `run` that is no non-empty list.
    RunNotList { at: Span },
    /// An environment variable whose value is no string.
    EnvValue {
        at: Span,
        name: String,
        found: &'static str,
        text: String,
    },
    /// `env` that is no record.
    EnvNotRecord { at: Span },
    /// `tools` that is no list.
    ToolsNotList { at: Span },
    /// An `mcp` server with both `command` and `url`.
    McpBothTransports { at: Span, name: String },
    /// An `mcp` server's `command` that is no non-empty list.
    McpCommandNotList { at: Span },
    /// An `mcp` server's `url` that is not `http://` or `https://`.
    McpUrl { at: Span },
    /// `env` on an `mcp` server reached by `url`.
    McpEnvOnUrl { at: Span },
}

/// `` `a`, `b` or `c` ``.
fn or_list(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// How to write a field's value as the expected kind, judged from what was written.
fn kind_help(key: &str, expected: &str, written: &Written) -> String {
    match (expected, written) {
        ("a whole number" | "a number", Written::Str(Some(p)))
            if p.trim().parse::<f64>().is_ok() =>
        {
            format!("remove the quotes: `{key}: {}`", p.trim())
        }
        (e, Written::Int(n)) if e.starts_with("a duration") => {
            format!("add a unit: `{key}: {n}s` (units are `ms`, `s`, `m` and `h`)")
        }
        ("a string", Written::Name(p)) => format!("quote it: `{key}: \"{p}\"`"),
        ("a name", Written::Str(Some(p))) => {
            format!("write the name without quotes: `{key}: {p}`")
        }
        ("a whole number", Written::Decimal(x)) => {
            format!("use a whole number: `{key}: {}`", x.round())
        }
        ("a whole number", _) => format!("for example `{key}: 3`"),
        ("a number", _) => format!("for example `{key}: 0.5`"),
        (e, _) if e.starts_with("a duration") => format!("for example `{key}: 30s`"),
        ("a string", _) => format!("for example `{key}: \"...\"`"),
        _ => format!("write `{key}: ` followed by {expected}"),
    }
}

impl InvalidFieldValue {
    fn diagnostic(self) -> Diagnostic {
        let error = |at, message: String| Diagnostic::new(Code::InvalidFieldValue, at, message);
        match self {
            InvalidFieldValue::Kind {
                at,
                key,
                what,
                expected,
                found,
                written,
            } => error(
                at,
                format!("field `{key}` of {what} must be {expected}, found {found}"),
            )
            .with_label(format!("expected {expected}"))
            .with_help(kind_help(&key, expected, &written)),
            InvalidFieldValue::Interpolates { at, key, what } => {
                error(at, format!("field `{key}` of {what} cannot interpolate values"))
                    .with_label("interpolation not allowed here")
                    .with_help("write the value out in full; for literal braces write `{{` and `}}`")
            }
            InvalidFieldValue::Choice {
                at,
                key,
                what,
                choices,
                suggestion,
            } => {
                let d = error(
                    at,
                    format!("field `{key}` of {what} must be {}", or_list(choices)),
                )
                .with_label(format!("expected {}", or_list(choices)));
                match suggestion {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")).with_replacement(s),
                    None => d.with_help(format!("write `{key}: {}`", choices[0])),
                }
            }
            InvalidFieldValue::SimulatorOnly { at, key } => {
                error(at, format!("`{key}` applies to `kind: sim` providers only"))
                    .with_label("not a simulator")
                    .with_help("remove it, or set `kind: sim`")
            }
            InvalidFieldValue::HttpOnly { at, key } => error(
                at,
                format!(
                    "`{key}` applies to HTTP providers (`kind: openai` or `kind: anthropic`) only"
                ),
            )
            .with_label("the simulator does not stream")
            .with_help("remove it"),
            InvalidFieldValue::ProviderZero { at, key } => {
                let help = if key == "idle_timeout" {
                    "give a positive duration like `60s`, or remove it for the default of 60 s"
                        .to_string()
                } else if key == "context_window" {
                    "give the model's context window in tokens (like `200000`), or remove it: \
                     requests are then not checked against a window"
                        .to_string()
                } else {
                    format!("give a positive number, or remove `{key}` for no limit")
                };
                error(at, format!("`{key}` cannot be zero"))
                    .with_label("zero")
                    .with_help(help)
            }
            InvalidFieldValue::PriceNotRecord { at } => {
                error(at, "field `price` of a model must be a record".to_string())
                    .with_label("expected `{ input: N, output: N }`")
                    .with_help(
                        "prices are USD per million tokens, e.g. `price: { input: 3.00, output: 15.00 }`",
                    )
            }
            InvalidFieldValue::MaxOutputZero { at, default } => {
                error(at, "`max_output_bytes` cannot be zero".to_string())
                    .with_label("zero")
                    .with_help(format!(
                        "give a positive number of bytes, or remove it for the default of {default} ({} MiB)",
                        default >> 20
                    ))
            }
            InvalidFieldValue::ArgvElement { at, found } => {
                error(at, format!("argv elements must be strings, found {found}"))
                    .with_label("expected a string")
                    .with_help("quote it: `\"...\"`")
            }
            InvalidFieldValue::RunNotList { at } => {
                error(at, "field `run` must be a non-empty list of strings".to_string())
                    .with_label("expected `[\"program\", \"arg\", ...]`")
                    .with_help(
                        "the program runs directly, without a shell: `run: [\"cargo\", \"test\"]`",
                    )
            }
            InvalidFieldValue::EnvValue {
                at,
                name,
                found,
                text,
            } => error(
                at,
                format!("environment variable `{name}` must be a string, found {found}"),
            )
            .with_label("expected a string")
            .with_help(format!("quote it: `{name}: \"{text}\"`")),
            InvalidFieldValue::ToolsNotList { at } => {
                error(at, "field `tools` must be a list of tool grants".to_string())
                    .with_label("expected `[read, grep, ...]`")
                    .with_help("for example `tools: [read, list, glob, grep, exec(\"cargo test\")]`")
            }
            InvalidFieldValue::McpBothTransports { at, name } => error(
                at,
                format!("mcp server `{name}` has both `command` and `url`"),
            )
            .with_label("one transport only")
            .with_help("keep `command: [...]` for a server orch starts (stdio), or `url: \"...\"` for one already running (streamable HTTP)"),
            InvalidFieldValue::McpCommandNotList { at } => {
                error(at, "field `command` of an mcp server must be a non-empty list of strings".to_string())
                    .with_label("expected `[\"program\", \"arg\", ...]`")
                    .with_help("the server runs without a shell: `command: [\"npx\", \"-y\", \"@modelcontextprotocol/server-filesystem\", \".\"]`")
            }
            InvalidFieldValue::McpUrl { at } => {
                error(at, "field `url` of an mcp server must start with `http://` or `https://`".to_string())
                    .with_label("not an HTTP URL")
                    .with_help("give the server's streamable-HTTP endpoint, like `url: \"http://127.0.0.1:3001/mcp\"`")
            }
            InvalidFieldValue::McpEnvOnUrl { at } => {
                error(at, "`env` applies to mcp servers started with `command` only".to_string())
                    .with_label("the server at `url` is already running")
                    .with_help("remove `env`, or set the variables where that server is started")
            }
            InvalidFieldValue::EnvNotRecord { at } => {
                error(at, "field `env` must be a record of strings".to_string())
                    .with_label("expected `{ NAME: \"value\" }`")
                    .with_help("write the variables as a record: `env: { NAME: \"value\", OTHER: \"{param}\" }`")
            }
        }
    }
}

// ------------------------------------------------------------------ E0208

/// `E0208`: `what` (`model`, `provider`) `name` lacks its required field `key`; `help` says
/// what to add.
pub(crate) struct MissingField {
    pub at: Span,
    pub what: &'static str,
    pub name: String,
    pub key: &'static str,
    pub help: &'static str,
}

impl MissingField {
    fn diagnostic(self) -> Diagnostic {
        let key = self.key;
        Diagnostic::new(
            Code::MissingField,
            self.at,
            format!("{} `{}` has no `{key}` field", self.what, self.name),
        )
        .with_label(format!("`{key}` is required"))
        .with_help(self.help)
    }
}

/// What to add for a model's missing `provider`.
pub(crate) const MODEL_PROVIDER_HELP: &str =
    "add `provider: anthropic`, `provider: openai` or the name of a declared provider";

/// What to add for a provider's missing `kind`.
pub(crate) const PROVIDER_KIND_HELP: &str =
    "add `kind: openai` (also for llama.cpp, Ollama, vLLM), `kind: anthropic` or `kind: sim`";

// ------------------------------------------------------------------ E0209

/// `E0209`: a type that is not a type of the language; `suggestion` is a synonym's type or
/// the closest type name.
pub(crate) struct UnknownType {
    pub at: Span,
    pub name: String,
    pub suggestion: Option<&'static str>,
}

impl UnknownType {
    fn diagnostic(self) -> Diagnostic {
        let d = Diagnostic::new(
            Code::UnknownType,
            self.at,
            format!("unknown type `{}`", self.name),
        )
        .with_label("unknown type");
        match self.suggestion {
            Some(s) => d
                .with_help(format!("did you mean `{s}`?"))
                .with_replacement(s),
            None => {
                d.with_help("types are text, number, bool, json, list<T> and records `{ name: T }`")
            }
        }
    }
}

// ------------------------------------------------------------------ E0210

/// `E0210`: a field access that cannot work.
pub(crate) enum InvalidFieldAccess {
    /// `{block.x}` where the block has no step `x`; `steps` are its steps.
    NoSuchStep {
        at: Span,
        block: String,
        step: String,
        suggestion: Option<String>,
        steps: Vec<String>,
    },
    /// `{block.step.x}`: a step's output is text.
    StepOutputIsText {
        at: Span,
        block: String,
        step: String,
    },
    /// `{owner.x}` where `owner` is a record (of type `ty`) without field `x`; `fields` are
    /// its fields when it is a record.
    NoSuchField {
        at: Span,
        owner: String,
        field: String,
        ty: Type,
        suggestion: Option<String>,
        fields: Option<Vec<String>>,
    },
    /// `{owner.x}` where `owner` (of type `ty`) has no fields; `root` is the name the path
    /// starts at, a parameter when `root_is_param`.
    NoFields {
        at: Span,
        owner: String,
        field: String,
        ty: Type,
        root: String,
        root_is_param: bool,
    },
}

impl InvalidFieldAccess {
    fn diagnostic(self) -> Diagnostic {
        let error = |at, message: String| Diagnostic::new(Code::InvalidFieldAccess, at, message);
        match self {
            InvalidFieldAccess::NoSuchStep {
                at,
                block,
                step,
                suggestion,
                steps,
            } => {
                let d = error(at, format!("block `{block}` has no step `{step}`"))
                    .with_label("not in the block");
                match suggestion {
                    Some(s) => d
                        .with_help(format!("did you mean `{s}`?"))
                        .with_replacement(s),
                    None => d.with_help(format!("its steps: {}", steps.join(", "))),
                }
            }
            InvalidFieldAccess::StepOutputIsText { at, block, step } => {
                error(at, format!("`{block}.{step}` is text; it has no fields"))
                    .with_label("no such field")
            }
            InvalidFieldAccess::NoSuchField {
                at,
                owner,
                field,
                ty,
                suggestion,
                fields,
            } => {
                let d = error(at, format!("`{owner}` has no field `{field}`"))
                    .with_label(format!("not a field of {ty}"));
                match (suggestion, fields) {
                    (Some(s), _) => d
                        .with_help(format!("did you mean `{s}`?"))
                        .with_replacement(s),
                    (None, Some(fields)) => d.with_help(format!("its fields: {}", ticked(&fields))),
                    (None, None) => d,
                }
            }
            InvalidFieldAccess::NoFields {
                at,
                owner,
                field,
                ty,
                root,
                root_is_param,
            } => {
                let help = if ty == Type::Text && root_is_param {
                    format!(
                        "use `{{{owner}}}` whole, or declare the parameter as a record: `{root}: {{ {field}: text }}`"
                    )
                } else if ty == Type::Text {
                    format!(
                        "use `{{{owner}}}` whole, or give the step a structured output with that field: `-> {{ {field}: text }}`"
                    )
                } else {
                    format!("use `{{{owner}}}` whole")
                };
                error(at, format!("`{owner}` is {ty}; it has no field `{field}`"))
                    .with_label("no such field")
                    .with_help(help)
            }
        }
    }
}

// ------------------------------------------------------------------ E0211

/// `E0211`: a call's arguments do not fit what it calls.
pub(crate) enum InvalidArguments {
    /// A second positional argument to an agent.
    SecondPrompt { at: Span },
    /// `agent(prompt: "...")`.
    PromptByName { at: Span, agent: String },
    /// A named argument for no parameter of the agent; `params` are its parameters.
    NoSuchParameter {
        at: Span,
        agent: String,
        name: String,
        declared: Span,
        suggestion: Option<String>,
        params: Vec<String>,
    },
    /// A named argument given twice; `first` is where, when known.
    GivenTwice {
        at: Span,
        name: String,
        first: Option<Span>,
    },
    /// Parameters without a default left out of a call of an agent; `with_prompt` says
    /// whether the call has a prompt, and `command` whether the agent is a command agent.
    MissingArguments {
        at: Span,
        agent: String,
        declared: Span,
        missing: Vec<String>,
        with_prompt: bool,
        command: bool,
    },
    /// A model agent called without a prompt.
    NoPrompt {
        at: Span,
        step: String,
        agent: String,
    },
    /// A second question to `approve`.
    SecondQuestion { at: Span },
    /// A named argument to `approve`; `only` when it is the call's only argument.
    ApproveByName { at: Span, name: String, only: bool },
    /// `approve()` without a question.
    NoQuestion { at: Span, step: String },
    /// A positional argument to a workflow; `example` is its first parameter's name.
    WorkflowPositional {
        at: Span,
        workflow: String,
        example: String,
    },
    /// A named argument for no parameter of the workflow.
    NoSuchWorkflowParameter {
        at: Span,
        workflow: String,
        name: String,
        declared: Span,
        suggestion: Option<String>,
        params: Vec<String>,
    },
    /// Parameters without a default left out of a call of a workflow.
    MissingWorkflowArguments {
        at: Span,
        workflow: String,
        declared: Span,
        missing: Vec<String>,
    },
}

impl InvalidArguments {
    fn diagnostic(self) -> Diagnostic {
        let error = |at, message: String| Diagnostic::new(Code::InvalidArguments, at, message);
        match self {
            InvalidArguments::SecondPrompt { at } => {
                error(at, "a step takes one prompt; this is a second one".to_string())
                    .with_label("extra argument")
                    .with_help("join the texts into one string, or pass named arguments (`name: value`) for the agent's parameters")
            }
            InvalidArguments::PromptByName { at, agent } => {
                error(at, "the prompt is passed without a name".to_string())
                    .with_label("`prompt:` is not a parameter")
                    .with_help(format!("drop `prompt:` and pass the text first: `{agent}(\"...\")`; names are for the agent's declared parameters"))
            }
            InvalidArguments::NoSuchParameter {
                at,
                agent,
                name,
                declared,
                suggestion,
                params,
            } => {
                let d = error(at, format!("agent `{agent}` has no parameter `{name}`"))
                    .with_label("unknown parameter")
                    .with_secondary(declared, "agent declared here");
                match suggestion {
                    Some(x) => d.with_help(format!("did you mean `{x}`?")).with_replacement(x),
                    None if params.is_empty() => d.with_help(format!(
                        "`{agent}` declares no parameters; to pass one, declare it (`agent {agent}({name}: text) {{ ... }}`) and use `{{{name}}}` in its fields"
                    )),
                    None => d.with_help(format!("its parameters: {}", params.join(", "))),
                }
            }
            InvalidArguments::GivenTwice { at, name, first } => {
                let d = error(at, format!("argument `{name}` is given twice"))
                    .with_label("given again");
                match first {
                    Some(first) => d.with_secondary(first, "first given here"),
                    None => d,
                }
                .with_help("remove one of them")
            }
            InvalidArguments::MissingArguments {
                at,
                agent,
                declared,
                missing,
                with_prompt,
                command,
            } => {
                let list = ticked(&missing);
                let (noun, it) = if missing.len() == 1 {
                    ("argument", "it")
                } else {
                    ("arguments", "them")
                };
                let mut help = format!("pass {it} by name: `{agent}({}: \"...\")`", missing[0]);
                if with_prompt {
                    let what = if command {
                        "the prompt (the command's stdin)"
                    } else {
                        "the prompt"
                    };
                    help.push_str(&format!(
                        "; an argument without a name is {what}, not a parameter"
                    ));
                }
                error(at, format!("call of `{agent}` is missing the {noun} {list}"))
                    .with_label(format!("missing {list}"))
                    .with_secondary(declared, format!("`{agent}` declared here"))
                    .with_help(help)
            }
            InvalidArguments::NoPrompt { at, step, agent } => {
                error(at, format!("step `{step}` gives agent `{agent}` no prompt"))
                    .with_label("no prompt")
                    .with_help(format!("say what the agent is asked: `{agent}(\"...\")`"))
            }
            InvalidArguments::SecondQuestion { at } => {
                error(at, "`approve` asks one question; this is a second one".to_string())
                    .with_label("extra argument")
                    .with_help("join the texts into one question: `approve(\"Deploy {version}? {notes}\")`")
            }
            InvalidArguments::ApproveByName { at, name, only } => {
                let help = if only {
                    "pass the question without a name: `approve(\"...\")`"
                } else {
                    "`approve` takes nothing but its question; put what the person needs to know in it: `approve(\"Deploy {version}? Notes: {notes}\")`"
                };
                error(at, format!("`approve` has no parameter `{name}`"))
                    .with_label("named arguments are for agents' parameters")
                    .with_help(help)
            }
            InvalidArguments::NoQuestion { at, step } => {
                error(at, format!("step `{step}` asks `approve` no question"))
                    .with_label("no question")
                    .with_help(
                        "say what the person approves: `approve(\"Deploy {version} to production?\")`",
                    )
            }
            InvalidArguments::WorkflowPositional {
                at,
                workflow,
                example,
            } => error(at, format!("workflow `{workflow}` takes arguments by name"))
                .with_label("no parameter name")
                .with_help(format!("name the parameter: `{workflow}({example}: ...)`")),
            InvalidArguments::NoSuchWorkflowParameter {
                at,
                workflow,
                name,
                declared,
                suggestion,
                params,
            } => {
                let d = error(at, format!("workflow `{workflow}` has no parameter `{name}`"))
                    .with_label("unknown parameter")
                    .with_secondary(declared, format!("`{workflow}` declared here"));
                match suggestion {
                    Some(x) => d.with_help(format!("did you mean `{x}`?")).with_replacement(x),
                    None => d.with_help(format!("its parameters: {}", params.join(", "))),
                }
            }
            InvalidArguments::MissingWorkflowArguments {
                at,
                workflow,
                declared,
                missing,
            } => {
                let list = ticked(&missing);
                error(at, format!("call of `{workflow}` is missing {list}"))
                    .with_label(format!("missing {list}"))
                    .with_secondary(declared, format!("`{workflow}` declared here"))
                    .with_help(format!(
                        "pass {} by name: `{workflow}({}: ...)`",
                        if missing.len() == 1 { "it" } else { "them" },
                        missing[0]
                    ))
            }
        }
    }
}

// ------------------------------------------------------------------ E0212

/// `E0212`: a value of the wrong type. `found` phrases say what the value is (`` `x` is a
/// number ``).
pub(crate) enum TypeMismatch {
    /// A tool grant (`exec("...")`, `agent(NAME)`, `SERVER.*`) written as a value, outside
    /// an agent's `tools`.
    GrantAsValue { at: Span, written: String },
    /// An approval's `-> T` other than `bool`.
    ApprovalOutput { at: Span, ty: Type, step: String },
    /// `-> T` on a call of a workflow.
    OutputOnWorkflowCall { at: Span, workflow: String },
    /// `-> outcome` on a model step.
    OutcomeOfModel {
        at: Span,
        step: String,
        agent: String,
    },
    /// An agent passed for a parameter that takes a value.
    AgentForValue {
        at: Span,
        param: String,
        workflow: String,
        ty: Type,
        agent: String,
        declared: Span,
    },
    /// A value passed for an `agent` (`list` false) or `list<agent>` parameter.
    NotAnAgent {
        at: Span,
        param: String,
        workflow: String,
        declared: Span,
        list: bool,
    },
    /// A condition that is not a bool; `operand` is its source text.
    ConditionNotBool {
        at: Span,
        word: &'static str,
        found: String,
        ty: Type,
        operand: String,
    },
    /// An ordering comparison of something that is not a number.
    OrderingNotNumber {
        at: Span,
        op: &'static str,
        found: String,
    },
    /// A comparison of values of different types.
    UnlikeComparison {
        at: Span,
        op: &'static str,
        found: (String, String),
        types: (Type, Type),
    },
    /// `for` over something that is not a list (`ty`).
    ForNotList {
        at: Span,
        path: String,
        root: String,
        ty: Type,
    },
    /// A named argument of the wrong type.
    Argument {
        at: Span,
        param: String,
        agent: String,
        ty: Type,
        found: String,
        declared: Span,
    },
    /// A value argument of a workflow call whose type is not its parameter's.
    WorkflowArgument {
        at: Span,
        param: String,
        workflow: String,
        ty: Type,
        found: String,
        declared: Span,
    },
    /// A declared result type without a `return`.
    NoReturn {
        at: Span,
        workflow: String,
        ty: Type,
    },
    /// A `return` of the wrong type.
    Return {
        at: Span,
        workflow: String,
        ty: Type,
        found: String,
        declared: Span,
    },
}

/// How to pass a value of type `ty`.
fn type_fix(ty: &Type) -> String {
    match ty {
        Type::Number => {
            "pass a number (`3`, `0.5`) or a workflow parameter declared `number`".into()
        }
        Type::Bool => "pass `true` or `false`, or a workflow parameter declared `bool`".into(),
        other => format!(
            "pass a workflow parameter declared `{other}`, or declare the agent's parameter as `text`"
        ),
    }
}

/// How to pass a value of type `ty` to a workflow's parameter.
fn workflow_type_fix(ty: &Type) -> String {
    match ty {
        Type::Number | Type::Bool => type_fix(ty),
        Type::List(item) => format!(
            "pass a list in brackets (`[\"a\", \"b\"]`, each item {item}), or a parameter or a step's output declared `{ty}`"
        ),
        other => format!("pass a parameter or a step's output declared `{other}`"),
    }
}

impl TypeMismatch {
    fn diagnostic(self) -> Diagnostic {
        let error = |at, message: String| Diagnostic::new(Code::TypeMismatch, at, message);
        match self {
            TypeMismatch::GrantAsValue { at, written } => {
                error(at, format!("`{written}` is a tool grant, not a value"))
                    .with_label("only in an agent's `tools: [...]`")
                    .with_help("tool grants are written in `tools: [...]` of an agent; quote it to use it as text")
            }
            TypeMismatch::ApprovalOutput { at, ty, step } => {
                error(at, format!("`approve` answers with a bool, not {ty}"))
                    .with_label(format!("declared {ty}"))
                    .with_help(format!(
                        "remove `-> {ty}`: the output of `{step}` is `true` (approved) or `false` (declined)"
                    ))
            }
            TypeMismatch::OutcomeOfModel { at, step, agent } => error(
                at,
                format!("`-> outcome` on step `{step}`, which calls model agent `{agent}`"),
            )
            .with_label("only a command has an exit code")
            .with_help(
                "call a command agent (`agent tests { run: [...] }`), or declare the fields the model should answer: `-> { ok: bool, reason: text }`",
            ),
            TypeMismatch::OutputOnWorkflowCall { at, workflow } => {
                error(at, format!("`-> T` on a call of workflow `{workflow}`"))
                    .with_label("the workflow declares its result type")
                    .with_help(format!(
                        "remove `-> ...`; declare the type on the workflow: `workflow {workflow}(...) -> T`"
                    ))
            }
            TypeMismatch::AgentForValue {
                at,
                param,
                workflow,
                ty,
                agent,
                declared,
            } => error(
                at,
                format!("argument `{param}` of `{workflow}` is {ty}, but `{agent}` is an agent"),
            )
            .with_label("an agent, not a value")
            .with_secondary(declared, format!("`{param}` is declared as {ty} here"))
            .with_help(format!(
                "declare the parameter as `{param}: agent` to pass an agent, or pass a value"
            )),
            TypeMismatch::NotAnAgent {
                at,
                param,
                workflow,
                declared,
                list,
            } => {
                let (what, help) = if list {
                    (
                        "a list of agents",
                        "pass agents by name in brackets: `[security, performance]`",
                    )
                } else {
                    (
                        "an agent",
                        "pass a declared agent by name, without quotes: `lead: architect`",
                    )
                };
                error(at, format!("argument `{param}` of `{workflow}` must be {what}"))
                    .with_label(format!("not {what}"))
                    .with_secondary(declared, format!("`{param}` declared here"))
                    .with_help(help)
            }
            TypeMismatch::ConditionNotBool {
                at,
                word,
                found,
                ty,
                operand,
            } => {
                let help = match ty {
                    Type::Text => format!(
                        "a text is not true or false: compare it (`{operand} == \"yes\"`), or give the step a structured output (`-> {{ approved: bool }}`) and test its field"
                    ),
                    Type::Number => format!("compare the number: `{operand} > 0`"),
                    _ => "test a `bool` value, or compare values with `==`, `<`, `>`".into(),
                };
                error(at, format!("the condition of `{word}` must be a bool, but {found}"))
                    .with_label("not a bool")
                    .with_help(help)
            }
            TypeMismatch::OrderingNotNumber { at, op, found } => {
                error(at, format!("`{op}` compares numbers, but {found}"))
                    .with_label("not a number")
                    .with_help("compare numbers with `<`, `<=`, `>`, `>=`; text only with `==` and `!=`; a step's output is a number with `-> number`")
            }
            TypeMismatch::UnlikeComparison {
                at,
                op,
                found: (wa, wb),
                types: (ta, tb),
            } => error(
                at,
                format!("`{op}` compares values of different types: {wa}, {wb}"),
            )
            .with_label(format!("{ta} {op} {tb}"))
            .with_help(
                "compare values of one type: text with text, numbers with numbers, bools with bools",
            ),
            TypeMismatch::ForNotList { at, path, root, ty } => {
                let help = match ty {
                    Type::Text => format!(
                        "give the step that makes `{root}` a structured output: `-> list<text>`"
                    ),
                    _ => "iterate over a `list<T>` value or a list literal `[a, b]`".to_string(),
                };
                error(at, format!("`for` needs a list, but `{path}` is {ty}"))
                    .with_label("not a list")
                    .with_help(help)
            }
            TypeMismatch::Argument {
                at,
                param,
                agent,
                ty,
                found,
                declared,
            } => error(
                at,
                format!("argument `{param}` of `{agent}` must be {ty}, but {found}"),
            )
            .with_label(format!("expected {ty}"))
            .with_secondary(declared, format!("`{param}` is declared as {ty} here"))
            .with_help(type_fix(&ty)),
            TypeMismatch::WorkflowArgument {
                at,
                param,
                workflow,
                ty,
                found,
                declared,
            } => error(
                at,
                format!("argument `{param}` of workflow `{workflow}` must be {ty}, but {found}"),
            )
            .with_label(format!("expected {ty}"))
            .with_secondary(declared, format!("`{param}` is declared as {ty} here"))
            .with_help(workflow_type_fix(&ty)),
            TypeMismatch::NoReturn { at, workflow, ty } => error(
                at,
                format!("workflow `{workflow}` declares a result of type {ty} but has no `return`"),
            )
            .with_label(format!("declared {ty}"))
            .with_help("end the body with `return NAME`, or drop `-> ...` to return text"),
            TypeMismatch::Return {
                at,
                workflow,
                ty,
                found,
                declared,
            } => error(at, format!("workflow `{workflow}` must return {ty}, but {found}"))
                .with_label(format!("expected {ty}"))
                .with_secondary(declared, format!("result declared as {ty} here"))
                .with_help(format!(
                    "return a value of type {ty}, or declare the result as `-> text`"
                )),
        }
    }
}

// ------------------------------------------------------------------ E0301

/// Why one step waits for another, as an edge of a cycle says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// It uses the other's output.
    Uses,
    /// `after` the other.
    After,
    /// It comes later in a sequence.
    Sequence,
}

/// `from` waits for `to` because of `wait`.
fn edge_label(from: &str, to: &str, wait: Wait) -> String {
    match wait {
        Wait::Uses => format!("`{from}` uses `{to}`"),
        Wait::After => format!("`{from}` runs after `{to}`"),
        Wait::Sequence => format!("`{from}` comes after `{to}` in sequence"),
    }
}

/// One edge of a cycle: where it is shown, the step that waits, the step waited for, why.
pub(crate) struct Edge {
    pub at: Span,
    pub from: String,
    pub to: String,
    pub wait: Wait,
}

/// `E0301`: steps wait for each other in a cycle.
pub(crate) enum DependencyCycle {
    /// A step that uses the block it is in.
    OwnBlock {
        at: Span,
        step: String,
        block: String,
    },
    /// A step that uses its own output.
    OwnOutput { at: Span, step: String },
    /// `from` uses (or waits for, `after`) `to`, which only runs after it; `defined` is
    /// where `to` is defined.
    Later {
        at: Span,
        from: String,
        to: String,
        after: bool,
        defined: Option<Span>,
    },
    /// A cycle of several edges, the first one primary.
    Cycle { edges: Vec<Edge> },
}

impl DependencyCycle {
    fn diagnostic(self) -> Diagnostic {
        let error = |at, message: String| Diagnostic::new(Code::DependencyCycle, at, message);
        match self {
            DependencyCycle::OwnBlock { at, step, block } => {
                error(at, format!("step `{step}` uses the block it is in"))
                    .with_label(format!("`{block}` includes this step's own output"))
                    .with_help("a branch can use its siblings by name, not the whole block")
            }
            DependencyCycle::OwnOutput { at, step } => {
                error(at, format!("step `{step}` uses its own output"))
                    .with_label("refers to itself")
                    .with_help("a step can only use outputs of other steps")
            }
            DependencyCycle::Later {
                at,
                from,
                to,
                after,
                defined,
            } => {
                let verb = if after { "waits for" } else { "uses" };
                let d = error(
                    at,
                    format!("`{from}` {verb} `{to}`, which only runs after it"),
                )
                .with_label(format!("`{to}` has not run yet here"))
                .with_help(format!(
                    "statements of a sequence run top to bottom: move `{to} = ...` above `{from}`"
                ));
                match defined {
                    Some(def) => {
                        d.with_secondary(def, format!("`{to}` is defined here, after `{from}`"))
                    }
                    None => d,
                }
            }
            DependencyCycle::Cycle { edges } => {
                let names: Vec<String> = edges.iter().map(|e| format!("`{}`", e.from)).collect();
                let first = &edges[0];
                let mut d = error(
                    first.at,
                    format!("dependency cycle: {} → {}", names.join(" → "), names[0]),
                )
                .with_label(edge_label(&first.from, &first.to, first.wait))
                .with_help("a step cannot wait, directly or through others, for itself: remove one of these dependencies");
                for e in &edges[1..] {
                    d = d.with_secondary(e.at, edge_label(&e.from, &e.to, e.wait));
                }
                d
            }
        }
    }
}

// ------------------------------------------------------------------ E0303, E0304

/// `E0303`: a workflow calls itself: `chain` are the workflows of the loop, the called one
/// last; `calls` where each after the first is called.
pub(crate) struct RecursiveCall {
    pub at: Span,
    pub chain: Vec<String>,
    pub calls: Vec<(String, Span)>,
}

impl RecursiveCall {
    fn diagnostic(self) -> Diagnostic {
        let called = self.chain.last().cloned().unwrap_or_default();
        let mut d = Diagnostic::new(
            Code::RecursiveCall,
            self.at,
            format!(
                "recursive workflow call: {}",
                self.chain
                    .iter()
                    .map(|w| format!("`{w}`"))
                    .collect::<Vec<_>>()
                    .join(" → ")
            ),
        )
        .with_label(format!("calls `{called}` again"))
        .with_help("calls are expanded before running, so a workflow cannot call itself, directly or through others; use `repeat <max N> { ... } until COND` to run steps again");
        for (w, at) in self.calls {
            d = d.with_secondary(at, format!("`{w}` is called here"));
        }
        d
    }
}

/// Which bound on expanding calls was passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// Calls nested more than `n` deep.
    CallDepth(usize),
    /// Statements nested more than `n` deep.
    Nesting(usize),
    /// More than `n` steps in one workflow.
    Steps(usize),
    /// More than `n` steps in the program.
    ProgramSteps(usize),
}

/// `E0304`: expanding the calls of `workflow` passes `bound`. `path` is the chain of calls
/// as text; `first_call` the first call of the chain, when it is not the primary place;
/// `passed_at` where the bound was passed, when it is not either.
pub(crate) struct ExpansionTooLarge {
    pub at: Span,
    pub bound: Bound,
    pub workflow: String,
    pub path: String,
    pub has_chain: bool,
    pub first_call: Option<(String, Span)>,
    pub passed_at: Option<Span>,
}

impl ExpansionTooLarge {
    fn diagnostic(self) -> Diagnostic {
        let (workflow, path) = (&self.workflow, &self.path);
        // The chain, for the bounds other than depth, whose message is the chain.
        let through = if self.has_chain {
            format!(", through {path}")
        } else {
            String::new()
        };
        let (message, label, help) = match self.bound {
            Bound::CallDepth(max) => (
                format!("calls nest more than {max} deep: {path}"),
                format!("call {} of the chain", max + 1),
                format!(
                    "calls are expanded into the calling workflow, at most {max} deep; \
                     call the workflows of the chain one after another from one workflow, \
                     rather than each from the one before"
                ),
            ),
            Bound::Nesting(max) => (
                format!(
                    "statements nest more than {max} deep once the calls of `{workflow}` are expanded{through}"
                ),
                "the calls nest the blocks of the called workflows from here".to_string(),
                "each call nests the called workflow's blocks inside the call; flatten the \
                 blocks of the workflows in the chain, or call fewer of them inside one another"
                    .to_string(),
            ),
            Bound::Steps(max) => (
                format!("workflow `{workflow}` expands to more than {max} steps{through}"),
                "expanding this call passes the bound".to_string(),
                "every call is a copy of the called workflow's steps, so a workflow that calls \
                 another twice, which calls another twice, doubles at each level; call a \
                 pattern once inside a `parallel for` over the work instead of writing the \
                 call many times"
                    .to_string(),
            ),
            Bound::ProgramSteps(max) => (
                format!(
                    "the workflows of this program expand to more than {max} steps in all (passed while checking `{workflow}`); the rest are not checked"
                ),
                "the bound is passed in this workflow".to_string(),
                "every workflow is checked on its own with its calls expanded; a large pattern \
                 called from many workflows is copied into each: call it from fewer"
                    .to_string(),
            ),
        };
        let mut d = Diagnostic::new(Code::ExpansionTooLarge, self.at, message)
            .with_label(label)
            .with_help(help);
        if let Some((w, s)) = self.first_call {
            d = d.with_secondary(
                s,
                format!("`{workflow}` calls `{w}` here, the first call of the chain"),
            );
        }
        if let Some(at) = self.passed_at {
            d = d.with_secondary(at, "the bound is passed while lowering this statement");
        }
        d
    }
}

// ------------------------------------------------------------------ E0401 … W0405

/// `E0401`: a step of a model agent has no model.
pub(crate) struct StepWithoutModel {
    pub at: Span,
    pub step: String,
    pub agent: String,
    pub declared: Span,
}

impl StepWithoutModel {
    fn diagnostic(self) -> Diagnostic {
        let agent = &self.agent;
        Diagnostic::new(
            Code::StepWithoutModel,
            self.at,
            format!("step `{}` has no model", self.step),
        )
        .with_label(format!("`{agent}` pins no model and no block gives one"))
        .with_secondary(self.declared, "agent declared here")
        .with_help(format!(
            "pick one at the call (`{agent}<sonnet>(...)`), pin one in the agent (`model: sonnet`), or set one on an enclosing block (`parallel <sonnet> {{ ... }}`)"
        ))
    }
}

/// `W0402`: agent `agent` runs on its pinned `pin`, not on the block's `block` model.
pub(crate) struct BlockModelOverridden {
    pub at: Span,
    pub agent: String,
    pub pin: String,
    pub pin_at: Span,
    pub block: String,
    pub block_at: Span,
}

impl BlockModelOverridden {
    fn diagnostic(self) -> Diagnostic {
        let (agent, pin, block) = (&self.agent, &self.pin, &self.block);
        Diagnostic::new(
            Code::BlockModelOverridden,
            self.at,
            format!("`{agent}` runs on `{pin}`, not on the block's model `{block}`"),
        )
        .with_label(format!("runs on `{pin}`"))
        .with_secondary(self.pin_at, format!("`{agent}` pins `{pin}` here"))
        .with_secondary(self.block_at, format!("the block asks for `{block}`"))
        .with_help(format!(
            "to use `{block}`, write `{agent}<{block}>(...)`; to keep `{pin}`, remove `{block}` from the block's options"
        ))
    }
}

/// `E0403`: a model or a fallback given to command agent `agent` (declared at `declared`).
pub(crate) enum ModelOnCommandAgent {
    /// `agent<model>(...)`.
    Model {
        at: Span,
        agent: String,
        model: String,
        declared: Span,
    },
    /// `agent<fallback m>(...)`.
    Fallback {
        at: Span,
        agent: String,
        declared: Span,
    },
}

impl ModelOnCommandAgent {
    fn diagnostic(self) -> Diagnostic {
        match self {
            ModelOnCommandAgent::Model {
                at,
                agent,
                model,
                declared,
            } => Diagnostic::new(
                Code::ModelOnCommandAgent,
                at,
                format!("`{agent}` is a command agent; it takes no model"),
            )
            .with_label(format!("model `{model}` given here"))
            .with_secondary(declared, "declared with `run:` here")
            .with_help(format!(
                "remove `{model}` from the options: a command agent runs a program, not a model"
            )),
            ModelOnCommandAgent::Fallback {
                at,
                agent,
                declared,
            } => Diagnostic::new(
                Code::ModelOnCommandAgent,
                at,
                format!("`{agent}` is a command agent; it has no model to fall back from"),
            )
            .with_label("`fallback` given here")
            .with_secondary(declared, "declared with `run:` here")
            .with_help("remove `fallback`; `retry N` re-runs a failed command"),
        }
    }
}

fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Fast => "fast",
        Tier::Balanced => "balanced",
        Tier::Deep => "deep",
    }
}

fn complexity_name(c: Complexity) -> &'static str {
    match c {
        Complexity::Low => "low",
        Complexity::Medium => "medium",
        Complexity::High => "high",
    }
}

/// `W0404`: agent `agent` (of `complexity`, declared at `field`) runs on `model` of `tier`;
/// `better` is a model of the tier it should have. Reported at the agent's pin when the pin
/// chose the model (`step` is `None`), else at step `step`.
pub(crate) struct ComplexityTierMismatch {
    pub at: Span,
    pub agent: String,
    pub step: Option<String>,
    pub complexity: Complexity,
    pub field: Span,
    pub model: String,
    pub tier: Tier,
    pub wanted: Tier,
    pub better: Option<String>,
}

impl ComplexityTierMismatch {
    fn diagnostic(self) -> Diagnostic {
        let problem = match self.complexity {
            Complexity::Low => "pays for a `deep` model on a `low` task",
            _ => "asks a `fast` model to do a `high` task",
        };
        let complexity = format!(
            "`{}` is declared `complexity: {}`",
            self.agent,
            complexity_name(self.complexity)
        );
        let label = format!("runs on `{}` (tier `{}`)", self.model, tier_name(self.tier));
        let wanted = tier_name(self.wanted);
        let (message, help) = match (&self.step, &self.better) {
            (None, Some(b)) => (
                format!("agent `{}` {problem}", self.agent),
                format!(
                    "pin a {wanted} model: `model: {b}`; or, if its tasks are harder or easier than declared, change `complexity`"
                ),
            ),
            (None, None) => (
                format!("agent `{}` {problem}", self.agent),
                format!(
                    "pin a {wanted} model; or, if its tasks are harder or easier than declared, change `complexity`"
                ),
            ),
            (Some(step), Some(b)) => (
                format!("step `{step}` {problem}"),
                format!(
                    "run it on a {wanted} model: `{}<{b}>(...)`; or, if the task is harder or easier than declared, change the agent's `complexity`",
                    self.agent
                ),
            ),
            (Some(step), None) => (
                format!("step `{step}` {problem}"),
                format!(
                    "run it on a {wanted} model; or, if the task is harder or easier than declared, change the agent's `complexity`"
                ),
            ),
        };
        Diagnostic::new(Code::ComplexityTierMismatch, self.at, message)
            .with_label(label)
            .with_secondary(self.field, complexity)
            .with_help(help)
    }
}

/// `W0405`: agent `agent` uses its own `keyword: own` (set at `field`), not the block's
/// `keyword block` (set at `block_at`).
pub(crate) struct BlockOptionOverridden {
    pub at: Span,
    pub agent: String,
    pub keyword: &'static str,
    pub own: String,
    pub field: Span,
    pub block: String,
    pub block_at: Span,
}

impl BlockOptionOverridden {
    fn diagnostic(self) -> Diagnostic {
        let (agent, kw, own, block) = (&self.agent, self.keyword, &self.own, &self.block);
        Diagnostic::new(
            Code::BlockOptionOverridden,
            self.at,
            format!("`{agent}` uses its own `{kw}: {own}`, not the block's `{kw} {block}`"),
        )
        .with_label(format!("gets `{kw} {own}`"))
        .with_secondary(self.field, format!("`{agent}` sets `{kw}` here"))
        .with_secondary(self.block_at, format!("the block asks for `{kw} {block}`"))
        .with_help(format!(
            "to use the block's value, write `{agent}<{kw} {block}>(...)`; to keep the agent's, remove `{kw}` from the block's options"
        ))
    }
}

// ------------------------------------------------------------------ E0501 … E0508

/// `E0501`: a `gather` that does not follow a `parallel` block or a `parallel for`;
/// `in_parallel` when it is a
/// branch of one.
pub(crate) struct MisplacedGather {
    pub at: Span,
    pub in_parallel: bool,
}

impl MisplacedGather {
    fn diagnostic(self) -> Diagnostic {
        let help = if self.in_parallel {
            "inside `parallel` every statement is a branch; put the `gather` after the block"
        } else {
            "put `gather` right after the `parallel` block (or `parallel for`) whose branches it joins"
        };
        Diagnostic::new(
            Code::MisplacedGather,
            self.at,
            "`gather` does not follow a `parallel` block or a `parallel for`",
        )
        .with_label("nothing to gather here")
        .with_help(help)
    }
}

/// Where an option is written, for "not an option of ...".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OptionPlace {
    /// `workflow w() <...>`.
    Workflow,
    /// `parallel <...> { }`.
    Parallel,
    /// `agent<...>(...)`.
    Step,
}

/// `E0502`: an option not allowed where it is written, or given twice.
pub(crate) enum InvalidOption {
    /// An option given twice (`keyword`; two models when it is `model`).
    Twice {
        at: Span,
        keyword: &'static str,
        first: Span,
    },
    /// An option the place does not take.
    NotHere {
        at: Span,
        keyword: &'static str,
        place: OptionPlace,
    },
    /// `budget` on a `parallel for`.
    BudgetOnFor { at: Span },
    /// `budget` on a `repeat`.
    BudgetOnRepeat { at: Span },
    /// A model on `approve`.
    ModelOnApprove { at: Span, model: String },
    /// `retry` on `approve`.
    RetryOnApprove { at: Span },
    /// `fallback` on `approve`.
    FallbackOnApprove { at: Span },
}

impl InvalidOption {
    fn diagnostic(self) -> Diagnostic {
        let error = |at, message: String| Diagnostic::new(Code::InvalidOption, at, message);
        match self {
            InvalidOption::Twice { at, keyword, first } => {
                let message = if keyword == "model" {
                    "two models are given in these options".to_string()
                } else {
                    format!("`{keyword}` is given twice in these options")
                };
                error(at, message)
                    .with_label("given again")
                    .with_secondary(first, "first given here")
                    .with_help("keep one of them")
            }
            InvalidOption::NotHere { at, keyword, place } => {
                let help = match keyword {
                    "max" => {
                        "`max N` limits the branches of a `parallel` block; put it on the block"
                    }
                    "budget" => {
                        "`budget $X` limits a workflow or a `parallel` block: `workflow main() <budget $2.00> { ... }`"
                    }
                    "batch" => {
                        "`batch` sends the model requests of a `parallel` block (or `parallel for`) as one provider batch; put the step in `parallel <batch> { ... }`"
                    }
                    _ => "remove it",
                };
                let place = match place {
                    OptionPlace::Workflow => "a workflow",
                    OptionPlace::Parallel => "a `parallel` block",
                    OptionPlace::Step => "a step",
                };
                error(at, format!("`{keyword}` is not an option of {place}"))
                    .with_label("not allowed here")
                    .with_help(help)
            }
            InvalidOption::BudgetOnFor { at } => {
                error(at, "`budget` is not an option of a `parallel for`".to_string())
                    .with_label("not allowed here")
                    .with_help("put the budget on the workflow (`workflow main() <budget $2.00> { ... }`), which covers every instance")
            }
            InvalidOption::BudgetOnRepeat { at } => {
                error(at, "`budget` is not an option of `repeat`".to_string())
                    .with_label("not allowed here")
                    .with_help("put the budget on the workflow, which covers every iteration")
            }
            InvalidOption::ModelOnApprove { at, model } => {
                error(at, "`approve` asks a person; it takes no model".to_string())
                    .with_label(format!("model `{model}` given here"))
                    .with_help(format!("remove `{model}`: no model is called, the step waits for a person's yes or no"))
            }
            InvalidOption::RetryOnApprove { at } => {
                error(at, "`approve` asks once; it takes no `retry`".to_string())
                    .with_label("`retry` given here")
                    .with_help("remove `retry`; to bound the wait for an answer, use `timeout` or `deadline`: `approve<timeout 30m>(\"...\")`")
            }
            InvalidOption::FallbackOnApprove { at } => {
                error(at, "`approve` has no model to fall back from".to_string())
                    .with_label("`fallback` given here")
                    .with_help("remove `fallback`; a person answers an approval")
            }
        }
    }
}

/// `E0503`: a value that can never work.
pub(crate) enum ImpossibleValue {
    /// `timeout 0ms`.
    ZeroTimeout { at: Span },
    /// `deadline 0ms`.
    ZeroDeadline { at: Span },
    /// `max 0` on a `parallel` block.
    ZeroMax { at: Span },
    /// `max 0` on a `repeat`.
    ZeroRepeat { at: Span },
    /// `repeat` without `max N`.
    UnboundedRepeat { at: Span },
    /// A `first N` or `min N` the block (of `branches`, written at `block`) cannot meet.
    Policy {
        at: Span,
        policy: Policy,
        branches: u32,
        block: Span,
    },
    /// A `first N` or `min N` after a `parallel for` (written at `for_at`) over `items` items
    /// (`None`: known at run time) that cannot be met.
    ForPolicy {
        at: Span,
        policy: Policy,
        items: Option<u32>,
        for_at: Span,
    },
    /// A `temperature` out of range.
    Temperature { at: Span, value: f64 },
    /// `max_turns 0` (an option) or `max_turns: 0` (a field).
    ZeroMaxTurns { at: Span },
}

impl ImpossibleValue {
    fn diagnostic(self) -> Diagnostic {
        let error = |at, message: String| Diagnostic::new(Code::ImpossibleValue, at, message);
        match self {
            ImpossibleValue::ZeroTimeout { at } => {
                error(at, "a timeout of zero would fail every attempt".to_string())
                    .with_label("zero")
                    .with_help("give a positive duration like `30s`")
            }
            ImpossibleValue::ZeroDeadline { at } => {
                error(at, "a deadline of zero would fail every step".to_string())
                    .with_label("zero")
                    .with_help("give a positive duration like `10m`")
            }
            ImpossibleValue::ZeroMax { at } => {
                error(at, "`max 0` would never run any branch".to_string())
                    .with_label("zero")
                    .with_help("use `max 1` to run the branches one at a time, or remove `max` for no limit")
            }
            ImpossibleValue::ZeroRepeat { at } => {
                error(at, "`max 0` would never run the loop".to_string())
                    .with_label("zero")
                    .with_help("give the most iterations the loop may take, like `max 3`")
            }
            ImpossibleValue::UnboundedRepeat { at } => {
                error(at, "`repeat` needs a bound: `repeat <max N>`".to_string())
                    .with_label("no `max N`")
                    .with_help("write `repeat <max 3> { ... } until COND`: the loop stops after N iterations even when COND never holds")
            }
            ImpossibleValue::ForPolicy {
                at,
                policy,
                items,
                for_at,
            } => {
                let message = match (policy, items) {
                    (Policy::First(0), _) => {
                        "`first 0` would cancel every instance before it runs".to_string()
                    }
                    (Policy::Min(0), _) => {
                        "`min 0` is met even when every instance fails".to_string()
                    }
                    (_, Some(n)) => format!(
                        "`{policy}` cannot be met by a `parallel for` over {n} {}",
                        if n == 1 { "item" } else { "items" }
                    ),
                    (_, None) => format!("`{policy}` cannot be met"),
                };
                let mut d = error(at, message).with_label("instances that must succeed");
                if let Some(n) = items {
                    d = d.with_secondary(
                        for_at,
                        format!("runs once per item: {n} {}", if n == 1 { "item" } else { "items" }),
                    );
                }
                d.with_help(match items {
                    Some(n) => format!(
                        "use a number from 1 to {n}, or `all` to wait for every instance"
                    ),
                    None => "use a number from 1 up, or `all` to wait for every instance".into(),
                })
            }
            ImpossibleValue::Policy {
                at,
                policy,
                branches: n_branches,
                block,
            } => {
                let n = match policy {
                    Policy::First(n) | Policy::Min(n) => n,
                    _ => 0,
                };
                let message = match policy {
                    Policy::First(0) => {
                        "`first 0` would cancel every branch before it runs".to_string()
                    }
                    Policy::Min(0) => "`min 0` is met even when every branch fails".to_string(),
                    _ => format!(
                        "`{policy}` cannot be met by a block of {n_branches} {}",
                        branches(n_branches)
                    ),
                };
                let label = if n == 0 {
                    "zero".to_string()
                } else {
                    format!("needs {n} successful branches")
                };
                error(at, message)
                    .with_label(label)
                    .with_secondary(
                        block,
                        format!("this block has {n_branches} {}", branches(n_branches)),
                    )
                    .with_help(if n_branches == 0 {
                        "the block has no branches to gather".to_string()
                    } else {
                        format!(
                            "use a number from 1 to {n_branches}, or `all` to wait for every branch"
                        )
                    })
            }
            ImpossibleValue::ZeroMaxTurns { at } => {
                error(at, "`max_turns` of zero would end every agent loop before its first turn".to_string())
                    .with_label("zero")
                    .with_help("give the most model turns the loop may take, like `max_turns 10` (the default)")
            }
            ImpossibleValue::Temperature { at, value } => {
                error(at, format!("a temperature of {value} is out of range"))
                    .with_label("must be from 0 to 2")
                    .with_help("use a value from 0 (most deterministic) to 1; OpenAI-compatible servers accept up to 2, Anthropic up to 1")
            }
        }
    }
}

/// `E0505`: a statement after `return`, or a `return` where it cannot be.
pub(crate) enum MisplacedReturn {
    /// The first statement after a `return`.
    AfterReturn { at: Span },
    /// `return` inside a `for`, `repeat` or `if`.
    InRegion { at: Span },
    /// `return` inside a `parallel` block.
    InParallel { at: Span },
}

impl MisplacedReturn {
    fn diagnostic(self) -> Diagnostic {
        let error = |at, message: &str| Diagnostic::new(Code::MisplacedReturn, at, message);
        match self {
            MisplacedReturn::AfterReturn { at } => {
                error(at, "statement after `return` never runs")
                    .with_label("unreachable")
                    .with_help("move `return` to the end of the workflow body")
            }
            MisplacedReturn::InRegion { at } => {
                error(at, "`return` inside a `for`, `repeat` or `if`")
                    .with_label("may not run, or run many times")
                    .with_help("define a name in the block and return it after the block, at the end of the workflow body")
            }
            MisplacedReturn::InParallel { at } => error(at, "`return` inside a `parallel` block")
                .with_label("a branch cannot return")
                .with_help("return after the block, at the end of the workflow body"),
        }
    }
}

/// `E0506`: a `parallel` block (or a `parallel for`, `is_for`) with nothing inside.
pub(crate) struct EmptyParallel {
    pub at: Span,
    pub is_for: bool,
}

impl EmptyParallel {
    fn diagnostic(self) -> Diagnostic {
        if self.is_for {
            Diagnostic::new(
                Code::EmptyParallel,
                self.at,
                "this `parallel for` has an empty body",
            )
            .with_label("empty block")
            .with_help("put the step to run for each item inside, or remove the block")
        } else {
            Diagnostic::new(
                Code::EmptyParallel,
                self.at,
                "this `parallel` block has no branches",
            )
            .with_label("empty block")
            .with_help("put at least one step inside, or remove the block")
        }
    }
}

/// `W0507`: a `parallel` block with a single branch, or a `parallel for` over an empty list.
pub(crate) enum SingleBranchParallel {
    /// A block of one branch; `name` is the block's name, when it has one.
    OneBranch { at: Span, name: Option<String> },
    /// `for x in []`.
    EmptyList { at: Span },
}

impl SingleBranchParallel {
    fn diagnostic(self) -> Diagnostic {
        match self {
            SingleBranchParallel::OneBranch { at, name } => {
                let mut help =
                    "remove `parallel { }` and keep the step: one branch runs the same on its own"
                        .to_string();
                if let Some(name) = name {
                    help.push_str(&format!(
                        "; then use the step's own name where `{{{name}}}` is used"
                    ));
                }
                Diagnostic::new(
                    Code::SingleBranchParallel,
                    at,
                    "this `parallel` block has a single branch",
                )
                .with_label("nothing runs in parallel here")
                .with_help(help)
            }
            SingleBranchParallel::EmptyList { at } => Diagnostic::new(
                Code::SingleBranchParallel,
                at,
                "this `for` runs over an empty list",
            )
            .with_label("no items")
            .with_help("put items in the list, or remove the block"),
        }
    }
}

/// `E0508`: the body of the `parallel for` at `keyword` ends with a statement (at `at`)
/// that is not a step.
pub(crate) struct ForBodyResult {
    pub at: Span,
    pub keyword: Span,
}

impl ForBodyResult {
    fn diagnostic(self) -> Diagnostic {
        Diagnostic::new(
            Code::ForBodyResult,
            self.at,
            "the body of a `parallel for` must end with a step",
        )
        .with_label("the last statement gives each item's result")
        .with_secondary(self.keyword, "in this `parallel for`")
        .with_help("end the body with `result = agent(\"...\")`: the block's value is the list of those outputs")
    }
}

// ------------------------------------------------------------------ E0601, E0602

/// `E0601`: an API key written in the script.
pub(crate) enum LiteralApiKey {
    /// An `api_key` field.
    Field { at: Span },
    /// Key-shaped text anywhere.
    KeyShaped { at: Span },
}

impl LiteralApiKey {
    fn diagnostic(self) -> Diagnostic {
        match self {
            LiteralApiKey::Field { at } => Diagnostic::new(
                Code::LiteralApiKey,
                at,
                "an API key must not be written in a script",
            )
            .with_label("literal secret")
            .with_help("remove it and set `api_key_env: \"NAME\"`, then export NAME in the environment"),
            LiteralApiKey::KeyShaped { at } => Diagnostic::new(
                Code::LiteralApiKey,
                at,
                "this looks like an API key written in the script",
            )
            .with_label("literal secret")
            .with_help("remove it (and revoke it: it may be in version control) and name the variable that holds it: `api_key_env: \"NAME\"` on the provider"),
        }
    }
}

/// `E0602`: model output `value` reaches parameter `param` of command agent `agent`, which
/// puts it in argv (at `argv_at`); `step` is the step passing it, `origin` the model step it
/// came from with the way it took, when it came a long way.
pub(crate) struct ModelOutputInArgv {
    pub at: Span,
    pub value: String,
    pub agent: String,
    pub param: String,
    /// Where the parameter is used, and whether that is `"argv"` or `"cwd"`.
    pub used_at: Span,
    pub place: &'static str,
    pub step: Option<(Span, String)>,
    pub origin: Option<(Span, String, String)>,
}

impl ModelOutputInArgv {
    fn diagnostic(self) -> Diagnostic {
        let (agent, param) = (&self.agent, &self.param);
        let mut d = Diagnostic::new(
            Code::ModelOutputInArgv,
            self.at,
            format!(
                "model output `{}` reaches the {} of command agent `{agent}`",
                self.value, self.place
            ),
        )
        .with_label(format!("produced by a model, passed as `{param}`"))
        .with_help(match self.place {
            "cwd" => format!(
                "a model must not pick where a program runs: give `{agent}` a `cwd` from workflow inputs or a fixed path, and pass model output on stdin (the prompt) or in `env`"
            ),
            _ => format!(
                "pass model output on stdin (the prompt) or in `env`, never in argv: change `{agent}` to read `{param}` from an environment variable"
            ),
        })
        .with_secondary(
            self.used_at,
            format!("`{param}` is used in {} here", self.place),
        );
        if let Some((span, name)) = self.step {
            d = d.with_secondary(span, format!("`{name}` passes it to `{agent}` here"));
        }
        if let Some((span, model, way)) = self.origin {
            d = d.with_secondary(
                span,
                format!("model output of `{model}` reaches it through {way}"),
            );
        }
        d
    }
}

// ------------------------------------------------------------------ E0701

/// `E0701`: which workflow to plan or run cannot be told. `own` are the entry file's
/// workflows.
pub(crate) enum NoEntryWorkflow {
    /// `--workflow NAME` names none.
    NoSuchWorkflow {
        at: Span,
        name: String,
        suggestion: Option<String>,
        own: Vec<String>,
    },
    /// The file has no workflow.
    None { at: Span },
    /// Several, none of them `main`.
    Several { at: Span, own: Vec<String> },
    /// The workflow is a pattern: its parameter `param` is of type `ty`.
    Pattern {
        at: Span,
        workflow: String,
        param: String,
        ty: Type,
    },
}

impl NoEntryWorkflow {
    fn diagnostic(self) -> Diagnostic {
        let error = |at, message: String| Diagnostic::new(Code::NoEntryWorkflow, at, message);
        match self {
            NoEntryWorkflow::NoSuchWorkflow {
                at,
                name,
                suggestion,
                own,
            } => {
                let d = error(at, format!("no workflow named `{name}`")).with_label("in this file");
                match suggestion {
                    Some(s) => d
                        .with_help(format!("did you mean `{s}`?"))
                        .with_replacement(s),
                    None => d.with_help(format!(
                        "workflows here: {}",
                        if own.is_empty() {
                            "none".into()
                        } else {
                            own.join(", ")
                        }
                    )),
                }
            }
            NoEntryWorkflow::None { at } => {
                error(at, "this file has no workflow to run".to_string())
                    .with_label("no `workflow` here")
                    .with_help("add `workflow main() { ... }`, or plan a file that has one")
            }
            NoEntryWorkflow::Several { at, own } => error(
                at,
                format!("several workflows and none is `main`: {}", own.join(", ")),
            )
            .with_label("which one?")
            .with_help("choose one with `--workflow NAME`, or name one `main`"),
            NoEntryWorkflow::Pattern {
                at,
                workflow,
                param,
                ty,
            } => error(
                at,
                format!("workflow `{workflow}` is a pattern: its parameter `{param}` is {ty}"),
            )
            .with_label("filled by a workflow that calls this one")
            .with_help(format!(
                "run a workflow that calls it: `result = {workflow}({param}: ...)`"
            )),
        }
    }
}

// ------------------------------------------------------------------ W0801, W0802

/// `W0801`: the output of step `step` (named at `at`) is never used.
pub(crate) struct UnusedOutput {
    pub at: Span,
    pub step: String,
}

impl UnusedOutput {
    fn diagnostic(self) -> Diagnostic {
        Diagnostic::new(
            Code::UnusedOutput,
            self.at,
            format!("the output of step `{}` is never used", self.step),
        )
        .with_label("nothing reads this")
        .with_help(format!(
            "use `{{{}}}` in a later prompt or in `return`, or remove the step: it still runs and costs tokens",
            self.step
        ))
    }
}

/// `W0802`: steps `steps` (with their source text, `sources`) do not use each other but run
/// one after another. `indent` is the white space before the first step on its line when only
/// white space separates the steps (so `at` can be rewritten as one `parallel` block without
/// losing a comment); `None` otherwise.
pub(crate) struct ParallelizableSequence {
    pub at: Span,
    pub steps: Vec<String>,
    pub sources: Vec<String>,
    pub indent: Option<String>,
}

impl ParallelizableSequence {
    fn diagnostic(self) -> Diagnostic {
        let names: Vec<String> = self.steps.iter().map(|n| format!("`{n}`")).collect();
        let names = match names.as_slice() {
            [] => String::new(),
            [one] => one.clone(),
            [init @ .., last] => format!("{} and {last}", init.join(", ")),
        };
        let mut rewrite = String::from("run them at once:\n\n    parallel {\n");
        for text in &self.sources {
            for line in text.lines() {
                rewrite.push_str("      ");
                rewrite.push_str(line.trim_start());
                rewrite.push('\n');
            }
        }
        rewrite.push_str("    }");
        // The same block at the steps' own indentation, to replace `at` with: a step's first
        // line is re-indented, its other lines keep theirs, one level deeper.
        let replacement = self.indent.map(|indent| {
            let mut block = String::from("parallel {\n");
            for text in &self.sources {
                for (i, line) in text.lines().enumerate() {
                    match i {
                        0 => block.push_str(&format!("{indent}  {}", line.trim_start())),
                        _ => block.push_str(&format!("  {line}")),
                    }
                    block.push('\n');
                }
            }
            block.push_str(&indent);
            block.push('}');
            block
        });
        let d = Diagnostic::new(
            Code::ParallelizableSequence,
            self.at,
            format!("steps {names} do not use each other but run one after another"),
        )
        .with_label(format!(
            "{} independent steps in sequence",
            self.steps.len()
        ))
        .with_help(rewrite);
        d.with_replacement_of(replacement)
    }
}

// ------------------------------------------------------------------ E1201..W1209: tools
// (docs/language.md, "Tools"; the checks are in `check::tools`).

/// `E1201`: an entry of `tools: [...]` that names no tool. `suggestion` is the closest grant
/// as it would be written (`grep`, `git.*`, `agent(scout)`).
pub(crate) struct UnknownTool {
    pub at: Span,
    /// The entry as written.
    pub written: String,
    /// Whether it is a string (`"read"`) rather than a name.
    pub quoted: bool,
    pub suggestion: Option<String>,
}

impl UnknownTool {
    fn diagnostic(self) -> Diagnostic {
        let d = Diagnostic::new(
            Code::UnknownTool,
            self.at,
            format!("unknown tool `{}`", self.written),
        )
        .with_label("not a tool");
        match (self.suggestion, self.quoted) {
            (Some(s), true) => d.with_help(format!("write the tool without quotes: `{s}`")),
            (Some(s), false) => d.with_help(format!("did you mean `{s}`?")).with_replacement(s),
            (None, _) => d.with_help(format!(
                "tools are the built-ins {}, `exec(\"PREFIX\", ...)`, `SERVER.tool` or `SERVER.*` of a declared `mcp` server, and `agent(NAME)`",
                crate::grant::Builtin::ALL
                    .iter()
                    .map(|b| format!("`{}`", b.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

/// `E1202`: an `exec` grant without a usable prefix.
pub(crate) enum InvalidExec {
    /// `exec` or `exec()`: no prefix at all.
    NoPrefix { at: Span },
    /// `exec("")`: a prefix with no word.
    EmptyPrefix { at: Span },
    /// A prefix that is no plain string (a name, a number, an interpolation).
    NotText { at: Span, found: &'static str },
}

impl InvalidExec {
    fn diagnostic(self) -> Diagnostic {
        let example = "`exec(\"cargo test\", \"git diff\")` allows exactly the programs (and first arguments) listed";
        match self {
            InvalidExec::NoPrefix { at } => Diagnostic::new(
                Code::InvalidExec,
                at,
                "`exec` needs the commands it may run".to_string(),
            )
            .with_label("no prefix")
            .with_help(format!(
                "{example}; an `exec` that could run any program is not allowed"
            )),
            InvalidExec::EmptyPrefix { at } => Diagnostic::new(
                Code::InvalidExec,
                at,
                "an empty `exec` prefix would allow any program".to_string(),
            )
            .with_label("empty")
            .with_help(format!("name the program: {example}")),
            InvalidExec::NotText { at, found } => Diagnostic::new(
                Code::InvalidExec,
                at,
                format!("an `exec` prefix must be a string without interpolations, found {found}"),
            )
            .with_label("expected a string")
            .with_help(example.to_string()),
        }
    }
}

/// `E1203`: `NAME.tool` or `NAME.*` where no `mcp NAME { ... }` is declared.
pub(crate) struct UnknownMcpServer {
    pub at: Span,
    pub name: String,
    pub suggestion: Option<String>,
}

impl UnknownMcpServer {
    fn diagnostic(self) -> Diagnostic {
        let d = Diagnostic::new(
            Code::UnknownMcpServer,
            self.at,
            format!("unknown mcp server `{}`", self.name),
        )
        .with_label("not a declared mcp server");
        match self.suggestion {
            Some(s) => d.with_help(format!("did you mean `{s}`?")).with_replacement(s),
            None => d.with_help(format!(
                "declare it: `mcp {} {{ command: [\"program\", \"arg\"] }}` or `mcp {} {{ url: \"http://127.0.0.1:3001/mcp\" }}`",
                self.name, self.name
            )),
        }
    }
}

/// `E1204`: an `agent(NAME)` grant that cannot delegate.
pub(crate) enum InvalidDelegation {
    /// No agent of that name; `suggestion` is the closest.
    Unknown {
        at: Span,
        name: String,
        suggestion: Option<String>,
    },
    /// A command agent (it answers no prompt with a model).
    Command {
        at: Span,
        name: String,
        declared: Span,
    },
    /// An agent without a model of its own (a nested step has no block to take one from).
    NoModel {
        at: Span,
        name: String,
        declared: Span,
    },
    /// An agent with parameters that have no default (a delegation gives only a prompt).
    NeedsArguments {
        at: Span,
        name: String,
        params: Vec<String>,
        declared: Span,
    },
    /// `agent(...)` with no name, several, or something else than a name.
    Malformed { at: Span },
}

impl InvalidDelegation {
    fn diagnostic(self) -> Diagnostic {
        let error = |at, m: String| Diagnostic::new(Code::InvalidDelegation, at, m);
        match self {
            InvalidDelegation::Unknown {
                at,
                name,
                suggestion,
            } => {
                let d = error(at, format!("cannot delegate to unknown agent `{name}`"))
                    .with_label("not a declared agent");
                match suggestion {
                    Some(s) => d.with_help(format!("did you mean `agent({s})`?")),
                    None => d.with_help(format!(
                        "declare it: `agent {name} {{ model: haiku, tools: [read, grep] }}`"
                    )),
                }
            }
            InvalidDelegation::Command { at, name, declared } => error(
                at,
                format!("cannot delegate to command agent `{name}`"),
            )
            .with_label("runs a program, not a model")
            .with_secondary(declared, "declared with `run:` here")
            .with_help(format!(
                "a delegation hands a model a subtask in words; to let the agent run `{name}`'s program, grant `exec(\"PROGRAM\")` instead"
            )),
            InvalidDelegation::NoModel { at, name, declared } => error(
                at,
                format!("cannot delegate to `{name}`: it has no model of its own"),
            )
            .with_label("no `model:`")
            .with_secondary(declared, "declared here")
            .with_help(format!(
                "a delegated subtask runs outside any block, so `{name}` needs `model: NAME`"
            )),
            InvalidDelegation::NeedsArguments {
                at,
                name,
                params,
                declared,
            } => error(
                at,
                if params.len() == 1 {
                    format!("cannot delegate to `{name}`: parameter {} has no default", ticked(&params))
                } else {
                    format!("cannot delegate to `{name}`: parameters {} have no default", ticked(&params))
                },
            )
            .with_label("a delegation gives only a prompt")
            .with_secondary(declared, "declared here")
            .with_help("give each parameter a default (`name: text = \"...\"`), or delegate to an agent without parameters"),
            InvalidDelegation::Malformed { at } => {
                error(at, "`agent(...)` names one agent".to_string())
                    .with_label("expected one agent name")
                    .with_help("write `agent(scout)` (without quotes)")
            }
        }
    }
}

/// `E1205`: agents delegate to each other in a cycle: `edges` are (from, to, where the grant
/// is written), in order around the cycle.
pub(crate) struct DelegationCycle {
    pub edges: Vec<(String, String, Span)>,
}

impl DelegationCycle {
    fn diagnostic(self) -> Diagnostic {
        let mut chain: Vec<String> = self
            .edges
            .iter()
            .map(|(f, _, _)| format!("`{f}`"))
            .collect();
        if let Some((first, _, _)) = self.edges.first() {
            chain.push(format!("`{first}`"));
        }
        let (_, first_to, at) = self.edges[0].clone();
        let mut d = Diagnostic::new(
            Code::DelegationCycle,
            at,
            format!("agents delegate to each other in a cycle: {}", chain.join(" → ")),
        )
        .with_label(format!("delegates to `{first_to}`"))
        .with_help("a delegation runs to its end before the delegating agent goes on, so a cycle could nest without end; remove one of the `agent(...)` grants");
        for (from, to, span) in self.edges.into_iter().skip(1) {
            d = d.with_secondary(span, format!("`{from}` delegates to `{to}`"));
        }
        d
    }
}

/// `E1206`: a chain of delegations (`chain`, the first agent first) deeper than `bound`.
pub(crate) struct DelegationTooDeep {
    pub at: Span,
    pub chain: Vec<String>,
    pub bound: usize,
}

impl DelegationTooDeep {
    fn diagnostic(self) -> Diagnostic {
        Diagnostic::new(
            Code::DelegationTooDeep,
            self.at,
            format!(
                "delegation nests {} deep, more than {}: {}",
                self.chain.len() - 1,
                self.bound,
                self.chain
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(" → ")
            ),
        )
        .with_label("starts a chain that is too deep")
        .with_help(format!(
            "each delegation is a whole agent loop inside another's turn, so cost multiplies with depth; keep chains to {} delegations, e.g. let the lead delegate to every specialist directly",
            self.bound
        ))
    }
}

/// `E1207`: `max_turns` or `tool_timeout` where no agent loop runs.
pub(crate) enum TurnsWithoutTools {
    /// The agent's own field `key`.
    Field {
        at: Span,
        key: String,
        agent: String,
    },
    /// `<max_turns N>` on the call of `agent`.
    Option { at: Span, agent: String },
}

impl TurnsWithoutTools {
    fn diagnostic(self) -> Diagnostic {
        let help = "an agent loop runs only for an agent with `tools: [...]`; grant it tools or remove the setting";
        match self {
            TurnsWithoutTools::Field { at, key, agent } => Diagnostic::new(
                Code::TurnsWithoutTools,
                at,
                format!("`{key}` on agent `{agent}`, which has no tools"),
            )
            .with_label("no agent loop to bound")
            .with_help(help),
            TurnsWithoutTools::Option { at, agent } => Diagnostic::new(
                Code::TurnsWithoutTools,
                at,
                format!("`max_turns` on a call of `{agent}`, which has no tools"),
            )
            .with_label("no agent loop to bound")
            .with_help(help),
        }
    }
}

/// `W1208`: a `low`-complexity agent granted `tool` (`write`, `edit` or `exec(...)`).
pub(crate) struct LowComplexityWrites {
    pub at: Span,
    pub agent: String,
    pub tool: String,
    pub complexity: Span,
}

impl LowComplexityWrites {
    fn diagnostic(self) -> Diagnostic {
        Diagnostic::new(
            Code::LowComplexityWrites,
            self.at,
            format!(
                "`{}` lets `{}`, a `low`-complexity agent, change files or run programs",
                self.tool, self.agent
            ),
        )
        .with_label("changes files or runs programs")
        .with_secondary(self.complexity, "declared `low` here")
        .with_help("agents for lookups should only read (`read`, `list`, `glob`, `grep`); give the changes to an agent of `medium` or `high` complexity, or raise this one's")
    }
}

/// `W1209`: an `mcp` server no agent is granted.
pub(crate) struct UnusedMcpServer {
    pub at: Span,
    pub name: String,
}

impl UnusedMcpServer {
    fn diagnostic(self) -> Diagnostic {
        Diagnostic::new(
            Code::UnusedMcpServer,
            self.at,
            format!("mcp server `{}` is never granted", self.name),
        )
        .with_label("declared here")
        .with_help(format!(
            "grant its tools to an agent (`tools: [{}.*]`) or remove the declaration",
            self.name
        ))
    }
}

// ------------------------------------------------------------------ W0509

/// `W0509`: step `step` of a `parallel <batch>` block (its `batch` option at `batch`) is
/// bounded by `keyword` (`deadline` or `timeout`) of `ms` milliseconds, shorter than the
/// batch APIs' completion window of `window_ms`.
pub(crate) struct BatchWindowBound {
    pub at: Span,
    pub step: String,
    pub keyword: &'static str,
    pub ms: u64,
    pub window_ms: u64,
    pub batch: Span,
}

impl BatchWindowBound {
    fn diagnostic(self) -> Diagnostic {
        // Whole hours as `24h`, not `24h0m`.
        let words = |ms: u64| match ms {
            ms if ms >= 3_600_000 && ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
            ms => crate::common::format_duration(ms),
        };
        let (bound, window) = (words(self.ms), words(self.window_ms));
        let kw = self.keyword;
        Diagnostic::new(
            Code::BatchWindowBound,
            self.at,
            format!(
                "step `{}` has `{kw} {bound}`, shorter than the batch window of {window}",
                self.step
            ),
        )
        .with_label(format!("`{kw} {bound}` may pass before its batch ends"))
        .with_secondary(
            self.batch,
            "the block's requests go to the provider's batch API",
        )
        .with_help(format!(
            "a provider may take up to {window} to end a batch; when `{kw}` passes first, the \
             step is retried with ordinary requests at the full price, or fails: remove \
             `{kw}`, raise it to `{window}`, or leave out `batch`"
        ))
    }
}
