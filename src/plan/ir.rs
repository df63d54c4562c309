//! What a plan's steps render and decide at run time, in the plan's own types: templates,
//! conditions and `for` lists, lowered from the AST ([`super::lower`]) with every name
//! resolved to what it reads — a parameter by index, a step by node id, a block by group id,
//! an agent's argument by position. The interpreter evaluates them without names, scopes or
//! the AST (the split of PRQL's `pl` and `rq`: each stage owns its IR).
//!
//! Each lowered value keeps its source text, which is what the plan's JSON shows of it: a
//! [`Template`], [`Cond`] or [`ForList`] serializes as that text alone.

use serde::{Serialize, Serializer};
use serde_json::Value as Json;

use crate::common::CmpOp;

/// Index of a step in [`super::Plan::nodes`].
pub type NodeId = usize;
/// Index of a `parallel` block in [`super::Plan::groups`].
pub type GroupId = usize;
/// Index of a region in [`super::Plan::regions`].
pub type RegionId = usize;

/// What a name in a template or condition reads, resolved when the plan is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ref {
    /// The workflow's parameter of this index in [`super::Plan::params`] (a run's input).
    Param(usize),
    /// A step's output.
    Node(NodeId),
    /// `{block}`: every step of a named `parallel` block, each under a `## name` heading.
    Group(GroupId),
    /// `{block.step}`: one step of a named block, read as its text.
    Member(NodeId),
    /// In an agent's system text, argv or env: the step's argument at this position in
    /// [`super::PlanNode::args`] followed by [`super::PlanNode::defaults`].
    Arg(usize),
    /// Nothing: a name the checker reported, or a parameter the call leaves without a value.
    /// It reads as empty text.
    Unbound,
}

/// An interpolation `{a.b.c}`, or a name read by a condition or a `for`.
#[derive(Debug, Clone, PartialEq)]
pub struct Interp {
    /// The path as written (`plan.tasks`): names the value in messages and in the journal's
    /// record of what a step read.
    pub path: String,
    /// What its first name (for a block member, its first two) reads.
    pub target: Ref,
    /// The fields read inside that value, in order (`["tasks"]`).
    pub fields: Vec<String>,
}

/// A piece of a [`Template`].
#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePart {
    /// Literal text.
    Text(String),
    /// A value rendered as text.
    Interp(Interp),
}

/// Text with interpolations, as the plan keeps it: the parts to render and the source text
/// (`{{`/`}}` for literal braces), which is its JSON form.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<TemplatePart>,
}

impl Template {
    /// A template of `parts`, shown as `source`.
    pub fn new(source: String, parts: Vec<TemplatePart>) -> Self {
        Template { source, parts }
    }

    /// The source text: literal text with `{path}` placeholders and braces doubled.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The parts in order.
    pub fn parts(&self) -> &[TemplatePart] {
        &self.parts
    }

    /// The interpolations, in order.
    pub fn interps(&self) -> impl Iterator<Item = &Interp> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Interp(i) => Some(i),
            TemplatePart::Text(_) => None,
        })
    }

    /// The interpolation when the template is exactly one (`"{plan}"`), whose value can then
    /// be taken as it is rather than as text.
    pub fn only_interp(&self) -> Option<&Interp> {
        match self.parts.as_slice() {
            [TemplatePart::Interp(i)] => Some(i),
            _ => None,
        }
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// One side of a comparison, or a condition's lone operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A name or field path: its value as it is (a bool stays a bool).
    Ref(Interp),
    /// A string: its rendered text.
    Text {
        /// The string.
        template: Template,
        /// As written, for messages.
        source: String,
    },
    /// A number or `true`/`false`; any other literal is `null`.
    Const {
        /// The value.
        value: Json,
        /// As written, for messages.
        source: String,
    },
}

impl Operand {
    /// The operand as written, for messages (`verdict.score`, `3`).
    pub fn source(&self) -> &str {
        match self {
            Operand::Ref(i) => &i.path,
            Operand::Text { source, .. } | Operand::Const { source, .. } => source,
        }
    }
}

/// The structure of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum CondExpr {
    /// An operand alone, which must be a bool.
    Value(Operand),
    /// `a == b`, `n < 3`.
    Compare(Operand, CmpOp, Operand),
    /// `not c`.
    Not(Box<CondExpr>),
    /// `a and b`.
    And(Box<CondExpr>, Box<CondExpr>),
    /// `a or b`.
    Or(Box<CondExpr>, Box<CondExpr>),
}

/// The condition of an `if` or of a `repeat`'s `until`: what to evaluate, and its source text
/// (its JSON form).
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    /// As written (`verdict.approved and tries < 3`).
    pub source: String,
    /// What to evaluate.
    pub expr: CondExpr,
}

impl std::fmt::Display for Cond {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for Cond {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// Where a `parallel for` takes its items.
#[derive(Debug, Clone, PartialEq)]
pub enum ListSource {
    /// `[a, b, c]` written in the script: one template per item (a lone `{name}` keeps its
    /// value).
    Literal(Vec<Template>),
    /// A parameter, step output or field of one (`plan.tasks`), known at run time.
    Ref(Interp),
    /// Agents (a `list<agent>` argument of a pattern): one body per agent, lowered apart.
    Agents(Vec<String>),
}

/// The list of a `parallel for`, and its source text (its JSON form: `plan.tasks`,
/// `[a, b]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ForList {
    /// As the plan shows it.
    pub source: String,
    /// The items.
    pub items: ListSource,
}

impl std::fmt::Display for ForList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for ForList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}
