//! The abstract syntax tree of one `.orch` file. Every node keeps its [`Span`].

pub use crate::common::{CmpOp, Policy};
use crate::diag::{FileId, Span};

/// A name with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    /// The name.
    pub name: String,
    /// Where it is written.
    pub span: Span,
}

/// One parsed file.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    /// The file.
    pub file: FileId,
    /// Its items, in source order.
    pub items: Vec<Item>,
}

/// A top-level item.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `include "path" [as ns]`
    Include(Include),
    /// `provider name { ... }`
    Provider(Decl),
    /// `model name { ... }`
    Model(Decl),
    /// `agent name(params) { ... }`
    Agent(AgentDecl),
    /// `mcp name { command: [...] }` or `mcp name { url: "..." }`: an MCP server.
    Mcp(Decl),
    /// `workflow name(params) -> T <options> { ... }`
    Workflow(Workflow),
}

/// `include "path" [as ns]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    /// The path as written (no interpolation allowed).
    pub path: String,
    /// Span of the path string.
    pub path_span: Span,
    /// `as ns`, if present.
    pub alias: Option<Ident>,
    /// The whole item.
    pub span: Span,
}

/// A `provider`, `model` or `mcp` declaration: a name and a record of fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Decl {
    /// `///` doc comment text, if any.
    pub doc: Option<String>,
    /// The declared name.
    pub name: Ident,
    /// The fields in `{ }`.
    pub fields: Vec<Field>,
    /// The whole item.
    pub span: Span,
}

/// `agent name(params) { fields }`.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDecl {
    /// `///` doc comment text, if any.
    pub doc: Option<String>,
    /// The agent's name.
    pub name: Ident,
    /// Parameters (filled by named arguments at the call site).
    pub params: Vec<Param>,
    /// The fields in `{ }`.
    pub fields: Vec<Field>,
    /// The whole item.
    pub span: Span,
}

/// `key: value` in a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The key.
    pub key: Ident,
    /// The value.
    pub value: Value,
}

/// A literal value with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// What it is.
    pub kind: ValueKind,
    /// Where.
    pub span: Span,
}

/// The kinds of literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    /// A string, possibly with interpolations.
    Str(Template),
    /// An integer.
    Int(i64),
    /// A decimal number.
    Decimal(f64),
    /// A duration in milliseconds (`500ms`, `30s`, `2m`, `1h`).
    Duration(u64),
    /// Money in USD (`$2.50`).
    Money(f64),
    /// `true` / `false`.
    Bool(bool),
    /// `[a, b]`
    List(Vec<Value>),
    /// `{ k: v }`
    Record(Vec<Field>),
    /// A bare name or dotted path: a reference (`haiku`, `fast`, `request`, `plan.steps`).
    Path(Path),
    /// `name(values)`: a tool grant with arguments (`exec("cargo test")`, `agent(scout)`).
    Call {
        /// The name applied (`exec`, `agent`).
        name: Ident,
        /// Its arguments, in order.
        args: Vec<Value>,
    },
    /// `server.*`: every tool of an MCP server.
    Wildcard(Ident),
}

impl ValueKind {
    /// A word for the kind, for messages ("expected a duration, found a string").
    pub fn describe(&self) -> &'static str {
        match self {
            ValueKind::Str(_) => "a string",
            ValueKind::Int(_) => "an integer",
            ValueKind::Decimal(_) => "a decimal number",
            ValueKind::Duration(_) => "a duration",
            ValueKind::Money(_) => "an amount of money",
            ValueKind::Bool(_) => "a boolean",
            ValueKind::List(_) => "a list",
            ValueKind::Record(_) => "a record",
            ValueKind::Path(_) => "a name",
            ValueKind::Call { .. } => "a tool grant like `exec(\"...\")`",
            ValueKind::Wildcard(_) => "a tool grant like `server.*`",
        }
    }
}

/// `name` or `name.field.field`.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    /// The first name.
    pub root: Ident,
    /// Field accesses after it.
    pub fields: Vec<Ident>,
    /// The whole path.
    pub span: Span,
}

impl Path {
    /// `a.b.c` as written.
    pub fn dotted(&self) -> String {
        let mut s = self.root.name.clone();
        for f in &self.fields {
            s.push('.');
            s.push_str(&f.name);
        }
        s
    }
}

/// A string literal: text with `{path}` interpolations. Escapes and `{{ }}` are already
/// resolved in the text parts; `"""` blocks are already dedented.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// The parts in order.
    pub parts: Vec<TemplatePart>,
}

/// A piece of a [`Template`].
#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePart {
    /// Literal text.
    Text(String),
    /// `{path}`
    Interp(Path),
}

impl Template {
    /// The interpolated paths.
    pub fn interps(&self) -> impl Iterator<Item = &Path> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Interp(p) => Some(p),
            TemplatePart::Text(_) => None,
        })
    }
    /// The text when there are no interpolations.
    pub fn as_plain(&self) -> Option<String> {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                TemplatePart::Text(t) => s.push_str(t),
                TemplatePart::Interp(_) => return None,
            }
        }
        Some(s)
    }
}

/// A type annotation.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeExpr {
    /// What type.
    pub kind: TypeKind,
    /// Where.
    pub span: Span,
}

/// The types of the language.
#[derive(Debug, Clone, PartialEq)]
pub enum TypeKind {
    /// A named type (`text`, `number`, `bool`, `json`, `agent`), validated by the checker.
    Named(Ident),
    /// `list<T>`
    List(Box<TypeExpr>),
    /// `{ field: T, ... }`
    Record(Vec<(Ident, TypeExpr)>),
}

/// A parameter of a workflow or agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Its name.
    pub name: Ident,
    /// Its type (`text` when omitted).
    pub ty: Option<TypeExpr>,
    /// Default value.
    pub default: Option<Value>,
    /// The whole parameter.
    pub span: Span,
}

/// `workflow name(params) -> T <options> { body }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    /// `///` doc comment text, if any.
    pub doc: Option<String>,
    /// Its name.
    pub name: Ident,
    /// Parameters (inputs).
    pub params: Vec<Param>,
    /// Declared result type.
    pub ret: Option<TypeExpr>,
    /// Options in angle brackets (a model, `budget`, `retry`, `timeout`, `deadline`).
    pub options: Vec<Opt>,
    /// The body.
    pub body: Block,
    /// The whole item.
    pub span: Span,
}

/// A `{ ... }` list of statements.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// The statements in order.
    pub stmts: Vec<Stmt>,
    /// From `{` to `}`.
    pub span: Span,
}

/// One option in angle brackets.
#[derive(Debug, Clone, PartialEq)]
pub struct Opt {
    /// Which option.
    pub kind: OptKind,
    /// Where.
    pub span: Span,
}

/// Options: how a step or block runs.
#[derive(Debug, Clone, PartialEq)]
pub enum OptKind {
    /// A model name: the model for the step, or the default for agents in a block.
    Model(Ident),
    /// `max N`: at most N branches of a `parallel` block in flight.
    Max(u32),
    /// `retry N`: attempts after the first.
    Retry(u32),
    /// `timeout D`: bound on one attempt, in milliseconds.
    Timeout(u64),
    /// `deadline D`: bound on the whole step (every attempt, backoff and fallback), in
    /// milliseconds.
    Deadline(u64),
    /// `fallback M`: the model to use when retries on the own model are exhausted.
    Fallback(Ident),
    /// `budget $X`: spending limit in USD.
    Budget(f64),
    /// `max_turns N`: the most model turns of an agent loop (agents with `tools`).
    MaxTurns(u32),
    /// `batch`: the model requests of a `parallel` block's steps go to their provider's
    /// batch API, at its batch price (docs/language.md, "Batches").
    Batch,
}

impl OptKind {
    /// The option's keyword, for messages.
    pub fn keyword(&self) -> &'static str {
        match self {
            OptKind::Model(_) => "model",
            OptKind::Max(_) => "max",
            OptKind::Retry(_) => "retry",
            OptKind::Timeout(_) => "timeout",
            OptKind::Deadline(_) => "deadline",
            OptKind::Fallback(_) => "fallback",
            OptKind::Budget(_) => "budget",
            OptKind::MaxTurns(_) => "max_turns",
            OptKind::Batch => "batch",
        }
    }
}

/// A statement in a block.
#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    /// `name = agent<opts>("prompt") after a -> T`
    Step(Step),
    /// `[name =] parallel <opts> { ... }`
    Parallel(Parallel),
    /// `then { ... }`
    Then(Block),
    /// `gather <policy> name = agent("...")`
    Gather(Gather),
    /// `return expr`
    Return(Return),
    /// `repeat <max N> { ... } until COND`
    Repeat(Repeat),
    /// `if COND { ... } else { ... }`
    If(If),
}

impl Stmt {
    /// The statement's span.
    pub fn span(&self) -> Span {
        match self {
            Stmt::Step(s) => s.span,
            Stmt::Parallel(p) => p.span,
            Stmt::Then(b) => b.span,
            Stmt::Gather(g) => g.span,
            Stmt::Return(r) => r.span,
            Stmt::Repeat(r) => r.span,
            Stmt::If(i) => i.span,
        }
    }
}

/// `name = callee<options>(args) after a, b -> T`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The name the output is bound to.
    pub name: Ident,
    /// The agent called (`agent` or `ns.agent`).
    pub callee: Path,
    /// Call-site options.
    pub options: Vec<Opt>,
    /// Arguments: at most one positional (the prompt) and named ones for parameters.
    pub args: Vec<Arg>,
    /// `after a, b`: ordering without data.
    pub after: Vec<Ident>,
    /// `-> T`: structured output type.
    pub output: Option<TypeExpr>,
    /// The whole statement.
    pub span: Span,
}

/// A call argument.
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    /// `name:` for a named argument.
    pub name: Option<Ident>,
    /// The value.
    pub value: Value,
}

/// `[name =] parallel <options> { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Parallel {
    /// Name of the block's combined output.
    pub name: Option<Ident>,
    /// Options (model, `max`, `retry`, `timeout`, `deadline`, `fallback`).
    pub options: Vec<Opt>,
    /// `for x in LIST`: the body runs once per item, as a fan-out over a list.
    pub for_each: Option<ForEach>,
    /// The branches (with `for`: the body of each instance).
    pub body: Block,
    /// The `parallel` keyword (used to point at the block in messages).
    pub keyword: Span,
    /// The whole statement.
    pub span: Span,
}

/// `gather <policy> name = agent("...")`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gather {
    /// The join policy (`all` when omitted).
    pub policy: Policy,
    /// Span of the policy, or of `gather` when omitted.
    pub policy_span: Span,
    /// The synthesising step.
    pub step: Step,
    /// The `gather` keyword.
    pub keyword: Span,
    /// The whole statement.
    pub span: Span,
}

/// `return expr`.
#[derive(Debug, Clone, PartialEq)]
pub struct Return {
    /// What is returned.
    pub value: Value,
    /// The whole statement.
    pub span: Span,
}

/// `for var in LIST` on a `parallel` block.
#[derive(Debug, Clone, PartialEq)]
pub struct ForEach {
    /// The loop variable, bound to one item in each instance of the body.
    pub var: Ident,
    /// The list: a literal (`[a, b]`) or a name or field path (`plan.tasks`).
    pub list: Value,
    /// From `for` to the end of the list.
    pub span: Span,
}

/// `repeat <options> { ... } until COND [else fail]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Repeat {
    /// Options: `max N` (the bound on iterations, required) and step policies.
    pub options: Vec<Opt>,
    /// The body, run once per iteration.
    pub body: Block,
    /// The condition that ends the loop, checked after each iteration.
    pub until: Cond,
    /// `else fail` after the condition: stopping at `max` without it holding fails the loop
    /// (without it, the loop ends with a warning). The span of `else fail`.
    pub else_fail: Option<Span>,
    /// The `repeat` keyword.
    pub keyword: Span,
    /// The whole statement.
    pub span: Span,
}

/// `if COND { ... } else { ... }` (`else if` is an `else` block holding one `if`).
#[derive(Debug, Clone, PartialEq)]
pub struct If {
    /// The condition.
    pub cond: Cond,
    /// Runs when it holds.
    pub then: Block,
    /// Runs otherwise.
    pub otherwise: Option<Block>,
    /// The `if` keyword.
    pub keyword: Span,
    /// The whole statement.
    pub span: Span,
}

/// A condition of `if` or `until`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    /// What it is.
    pub kind: CondKind,
    /// Where.
    pub span: Span,
}

/// The forms of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum CondKind {
    /// A boolean operand alone: `verdict.approved`, `true`.
    Value(Value),
    /// `a == b`, `n < 3`.
    Compare(Value, CmpOp, Value),
    /// `not c`
    Not(Box<Cond>),
    /// `a and b`
    And(Box<Cond>, Box<Cond>),
    /// `a or b`
    Or(Box<Cond>, Box<Cond>),
}

impl Cond {
    /// Every operand, left to right.
    pub fn operands(&self) -> Vec<&Value> {
        match &self.kind {
            CondKind::Value(v) => vec![v],
            CondKind::Compare(a, _, b) => vec![a, b],
            CondKind::Not(c) => c.operands(),
            CondKind::And(a, b) | CondKind::Or(a, b) => {
                let mut v = a.operands();
                v.extend(b.operands());
                v
            }
        }
    }
}
