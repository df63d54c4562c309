//! Syntax: source text → [`ast::Module`].
//!
//! The pest grammar is `grammar/orch.pest`. pest types never leave this module: [`parse`]
//! turns every pest span into a [`Span`] exactly once and every pest error into a
//! [`Diagnostic`] (`E0001`) whose message lists the expected tokens in words.

pub mod ast;
mod diagnose;
mod error;
mod guard;
mod lexer;
pub mod print;

pub use diagnose::KEYWORDS;
pub use error::OPTIONS;

use pest::Parser as _;
use pest::iterators::Pair;
use std::sync::{PoisonError, RwLock};

use crate::common::parse_duration;
use crate::diag::{Diagnostic, FileId, Span};
use ast::*;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/orch.pest"]
struct OrchParser;

/// Held (shared) by every parse; held exclusively while pest's error detail is switched on.
static ERROR_DETAIL: RwLock<()> = RwLock::new(());

/// Parses one file.
///
/// # Errors
/// A syntax error (`E0001`) at the first place the text cannot be parsed, naming what was
/// expected there.
pub fn parse(file: FileId, text: &str) -> Result<Module, Box<Diagnostic>> {
    // pest is linked without its stack probe: this guard keeps its recursion bounded.
    if let Some(at) = guard::too_deep_to_parse(text) {
        return Err(Box::new(
            error::SyntaxError::TooDeepToParse {
                at: (at, (at + 1).min(text.len())),
            }
            .diagnostic(file),
        ));
    }
    // Parse attempts (the literal tokens tried at the error position) make the error messages
    // precise, but collecting them makes every parse about twice as slow. Parsing is
    // deterministic, so a text is parsed without them, and again with them only when it has
    // an error. pest's switch is global and read when a parse starts: the detailed parse holds
    // the write lock while it is on, so that no other thread's parse starts meanwhile.
    let fast = {
        let _parsing = ERROR_DETAIL.read().unwrap_or_else(PoisonError::into_inner);
        OrchParser::parse(Rule::file, text)
    };
    let mut pairs = match fast {
        Ok(pairs) => pairs,
        Err(plain) => {
            let _detailed = ERROR_DETAIL.write().unwrap_or_else(PoisonError::into_inner);
            pest::set_error_detail(true);
            let again = OrchParser::parse(Rule::file, text);
            pest::set_error_detail(false);
            let e = again.err().unwrap_or(plain);
            return Err(Box::new(diagnose::syntax_error(text, &e).diagnostic(file)));
        }
    };
    let root = pairs
        .next()
        .expect("grammar: `file` always yields one pair");
    if let Some(at) = too_deep(&root) {
        return Err(Box::new(
            error::SyntaxError::NestedTooDeep { at }.diagnostic(file),
        ));
    }
    let lower = Lower { file, text };
    let items = root
        .into_inner()
        .filter(|p| p.as_rule() != Rule::EOI)
        .map(|p| lower.item(p))
        .collect();
    Ok(Module { file, items })
}

/// How deeply bracketed constructs (blocks, lists, records, parameter, argument and option
/// lists, types, parenthesised conditions) may nest, counting each `else if` of a chain and
/// each `and` and `or` of a condition as one level more (the tree of an `else if` chain or of
/// `a and b and c` is as deep as the chain is long). Lowering, checking and formatting recurse
/// over them, so an unbounded depth would overflow the stack (pest's parser is bounded before
/// it starts, by `guard`). No real script comes near it.
pub const MAX_NESTING: usize = 64;

/// The offset of the first construct nested deeper than [`MAX_NESTING`], if any. Walks the
/// parse tree in pre-order with a stack of its own (no recursion): on reaching a pair, its
/// children's depths are checked first, then they are descended into. Each pair's children are
/// listed once: they go on the stack with their depths, the first child on top.
fn too_deep(root: &Pair<'_, Rule>) -> Option<usize> {
    let mut stack: Vec<(Pair<'_, Rule>, usize)> = vec![(root.clone(), 0)];
    while let Some((p, depth)) = stack.pop() {
        let rule = p.as_rule();
        let first = stack.len();
        for c in p.into_inner() {
            let d = depth + levels(&c, rule);
            if d > MAX_NESTING {
                return Some(c.as_span().start());
            }
            stack.push((c, d));
        }
        stack[first..].reverse();
    }
    None
}

/// How many levels a pair adds under its parent's rule.
fn levels(p: &Pair<'_, Rule>, parent: Rule) -> usize {
    match p.as_rule() {
        Rule::block
        | Rule::list
        | Rule::record
        | Rule::params
        | Rule::args
        | Rule::options
        | Rule::list_type
        | Rule::record_type
        | Rule::cond_not
        | Rule::comparison => 1,
        // `else if`: the `if` is nested in the one before it.
        Rule::if_stmt if parent == Rule::if_stmt => 1,
        // `a or b or c` is `(a or b) or c`: one level per operator.
        Rule::cond | Rule::cond_and => p
            .clone()
            .into_inner()
            .filter(|c| matches!(c.as_rule(), Rule::kw_or | Rule::kw_and))
            .count(),
        _ => 0,
    }
}

// ------------------------------------------------------------------------- lowering

struct Lower<'t> {
    file: FileId,
    text: &'t str,
}

impl<'t> Lower<'t> {
    fn span(&self, p: &Pair<'_, Rule>) -> Span {
        let s = p.as_span();
        Span::new(self.file, s.start(), s.end())
    }

    fn ident(&self, p: Pair<'_, Rule>) -> Ident {
        Ident {
            name: p.as_str().to_string(),
            span: self.span(&p),
        }
    }

    /// The `///` lines directly above `start`, joined.
    fn doc(&self, start: usize) -> Option<String> {
        let mut lines = Vec::new();
        let mut end = self.text[..start].rfind('\n').map_or(0, |i| i);
        // `end` is the newline ending the line above the item (or 0 at the top).
        while end > 0 {
            let begin = self.text[..end].rfind('\n').map_or(0, |i| i + 1);
            let line = self.text[begin..end].trim();
            match line.strip_prefix("///") {
                Some(doc) if !doc.starts_with('/') => {
                    lines.push(doc.strip_prefix(' ').unwrap_or(doc).to_string())
                }
                _ => break,
            }
            end = begin.saturating_sub(1);
            if begin == 0 {
                break;
            }
        }
        if lines.is_empty() {
            return None;
        }
        lines.reverse();
        Some(lines.join("\n"))
    }

    fn item(&self, p: Pair<'_, Rule>) -> Item {
        let span = self.span(&p);
        let doc = self.doc(p.as_span().start());
        match p.as_rule() {
            Rule::include => {
                let mut inner = p
                    .into_inner()
                    .filter(|p| p.as_rule() != Rule::kw_include && p.as_rule() != Rule::kw_as);
                let s = inner.next().expect("grammar: include has a string");
                let path_span = self.span(&s);
                let tpl = self.string(s);
                let path = tpl.parts.iter().map(|part| match part {
                    TemplatePart::Text(t) => t.clone(),
                    TemplatePart::Interp(p) => format!("{{{}}}", p.dotted()),
                });
                let alias = inner.next().map(|a| self.ident(a));
                Item::Include(Include {
                    path: path.collect(),
                    path_span,
                    alias,
                    span,
                })
            }
            Rule::provider | Rule::model | Rule::mcp => {
                let rule = p.as_rule();
                let mut inner = p.into_inner().skip(1);
                let name = self.ident(inner.next().expect("grammar: name"));
                let fields = self.record(inner.next().expect("grammar: record"));
                let decl = Decl {
                    doc,
                    name,
                    fields,
                    span,
                };
                match rule {
                    Rule::model => Item::Model(decl),
                    Rule::mcp => Item::Mcp(decl),
                    _ => Item::Provider(decl),
                }
            }
            Rule::agent => {
                let mut inner = p.into_inner().skip(1);
                let name = self.ident(inner.next().expect("grammar: name"));
                let mut params = Vec::new();
                let mut fields = Vec::new();
                for q in inner {
                    match q.as_rule() {
                        Rule::params => params = self.params(q),
                        Rule::record => fields = self.record(q),
                        r => unreachable!("grammar: agent child {r:?}"),
                    }
                }
                Item::Agent(AgentDecl {
                    doc,
                    name,
                    params,
                    fields,
                    span,
                })
            }
            Rule::workflow => Item::Workflow(self.workflow(p, doc, span)),
            r => unreachable!("grammar: item {r:?}"),
        }
    }

    fn workflow(&self, p: Pair<'_, Rule>, doc: Option<String>, span: Span) -> Workflow {
        let mut inner = p.into_inner().skip(1);
        let name = self.ident(inner.next().expect("grammar: name"));
        let mut wf = Workflow {
            doc,
            name,
            params: Vec::new(),
            ret: None,
            options: Vec::new(),
            body: Block {
                stmts: Vec::new(),
                span,
            },
            span,
        };
        for q in inner {
            match q.as_rule() {
                Rule::params => wf.params = self.params(q),
                Rule::return_type => {
                    wf.ret = Some(self.type_expr(q.into_inner().next().expect("grammar: type")))
                }
                Rule::options => wf.options = self.options(q),
                Rule::block => wf.body = self.block(q),
                r => unreachable!("grammar: workflow child {r:?}"),
            }
        }
        wf
    }

    fn params(&self, p: Pair<'_, Rule>) -> Vec<Param> {
        p.into_inner()
            .map(|q| {
                let span = self.span(&q);
                let mut inner = q.into_inner();
                let name = self.ident(inner.next().expect("grammar: param name"));
                let mut param = Param {
                    name,
                    ty: None,
                    default: None,
                    span,
                };
                for r in inner {
                    match r.as_rule() {
                        Rule::type_expr => param.ty = Some(self.type_expr(r)),
                        Rule::value => param.default = Some(self.value(r)),
                        x => unreachable!("grammar: param child {x:?}"),
                    }
                }
                param
            })
            .collect()
    }

    fn type_expr(&self, p: Pair<'_, Rule>) -> TypeExpr {
        let span = self.span(&p);
        let inner = p.into_inner().next().expect("grammar: type");
        let kind = match inner.as_rule() {
            Rule::type_name => {
                TypeKind::Named(self.ident(inner.into_inner().next().expect("grammar: ident")))
            }
            Rule::list_type => TypeKind::List(Box::new(
                self.type_expr(inner.into_inner().next().expect("grammar: elem")),
            )),
            Rule::record_type => TypeKind::Record(
                inner
                    .into_inner()
                    .map(|f| {
                        let mut fi = f.into_inner();
                        let k = self.ident(fi.next().expect("grammar: key"));
                        (k, self.type_expr(fi.next().expect("grammar: type")))
                    })
                    .collect(),
            ),
            r => unreachable!("grammar: type {r:?}"),
        };
        TypeExpr { kind, span }
    }

    fn record(&self, p: Pair<'_, Rule>) -> Vec<Field> {
        p.into_inner()
            .map(|f| {
                let mut inner = f.into_inner();
                let key = self.ident(inner.next().expect("grammar: key"));
                let value = self.value(inner.next().expect("grammar: value"));
                Field { key, value }
            })
            .collect()
    }

    /// `value` and `expr` pairs wrap one literal; lower it.
    fn value(&self, p: Pair<'_, Rule>) -> Value {
        let p = match p.as_rule() {
            Rule::value | Rule::expr => p.into_inner().next().expect("grammar: value"),
            _ => p,
        };
        let span = self.span(&p);
        let text = p.as_str();
        let kind = match p.as_rule() {
            Rule::string | Rule::triple => ValueKind::Str(self.string(p)),
            Rule::int => match text.parse() {
                Ok(n) => ValueKind::Int(n),
                Err(_) => ValueKind::Decimal(text.parse().unwrap_or(f64::MAX)),
            },
            Rule::decimal => ValueKind::Decimal(text.parse().unwrap_or(0.0)),
            Rule::duration => ValueKind::Duration(parse_duration(text)),
            Rule::money => ValueKind::Money(text[1..].parse().unwrap_or(0.0)),
            Rule::boolean => ValueKind::Bool(text == "true"),
            Rule::list => ValueKind::List(p.into_inner().map(|v| self.value(v)).collect()),
            Rule::record => ValueKind::Record(self.record(p)),
            Rule::path => ValueKind::Path(self.path(p)),
            Rule::call_value => {
                let mut inner = p.into_inner();
                let name = self.ident(inner.next().expect("grammar: call name"));
                ValueKind::Call {
                    name,
                    args: inner.map(|v| self.value(v)).collect(),
                }
            }
            Rule::wildcard => {
                ValueKind::Wildcard(self.ident(p.into_inner().next().expect("grammar: server")))
            }
            r => unreachable!("grammar: value {r:?}"),
        };
        Value { kind, span }
    }

    fn path(&self, p: Pair<'_, Rule>) -> Path {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let root = self.ident(inner.next().expect("grammar: root"));
        Path {
            root,
            fields: inner.map(|f| self.ident(f)).collect(),
            span,
        }
    }

    fn string(&self, p: Pair<'_, Rule>) -> Template {
        let triple = p.as_rule() == Rule::triple;
        let outer = p.as_span();
        let quote = if triple { 3 } else { 1 };
        let (inner_start, inner_end) = (outer.start() + quote, outer.end() - quote);
        let dedent = if triple {
            Dedent::new(&self.text[inner_start..inner_end], inner_start)
        } else {
            Dedent::none()
        };
        let mut parts: Vec<TemplatePart> = Vec::new();
        let push_text = |parts: &mut Vec<TemplatePart>, s: &str| {
            if s.is_empty() {
                return;
            }
            if let Some(TemplatePart::Text(t)) = parts.last_mut() {
                t.push_str(s);
            } else {
                parts.push(TemplatePart::Text(s.to_string()));
            }
        };
        for q in p.into_inner() {
            let start = q.as_span().start();
            match q.as_rule() {
                Rule::str_text | Rule::triple_text => {
                    let kept = dedent.apply(q.as_str(), start);
                    push_text(&mut parts, &kept);
                }
                Rule::escape => push_text(&mut parts, unescape(q.as_str())),
                Rule::lbrace_esc => push_text(&mut parts, "{"),
                Rule::rbrace_esc => push_text(&mut parts, "}"),
                Rule::interp => parts.push(TemplatePart::Interp(
                    self.path(q.into_inner().next().expect("grammar: path")),
                )),
                r => unreachable!("grammar: string part {r:?}"),
            }
        }
        Template { parts }
    }

    fn options(&self, p: Pair<'_, Rule>) -> Vec<Opt> {
        p.into_inner().map(|o| self.option(o)).collect()
    }

    fn option(&self, o: Pair<'_, Rule>) -> Opt {
        let span = self.span(&o);
        let rule = o.as_rule();
        let arg = o.into_inner().last().expect("grammar: option argument");
        let int = |a: &Pair<'_, Rule>| a.as_str().parse::<u32>().unwrap_or(u32::MAX);
        let kind = match rule {
            Rule::opt_max => OptKind::Max(int(&arg)),
            Rule::opt_max_turns => OptKind::MaxTurns(int(&arg)),
            Rule::opt_retry => OptKind::Retry(int(&arg)),
            Rule::opt_timeout => OptKind::Timeout(parse_duration(arg.as_str())),
            Rule::opt_deadline => OptKind::Deadline(parse_duration(arg.as_str())),
            Rule::opt_fallback => OptKind::Fallback(self.ident(arg)),
            Rule::opt_budget => OptKind::Budget(arg.as_str()[1..].parse().unwrap_or(0.0)),
            Rule::opt_model => OptKind::Model(self.ident(arg)),
            Rule::opt_batch => OptKind::Batch,
            r => unreachable!("grammar: option {r:?}"),
        };
        Opt { kind, span }
    }

    fn block(&self, p: Pair<'_, Rule>) -> Block {
        let span = self.span(&p);
        Block {
            stmts: p.into_inner().map(|s| self.stmt(s)).collect(),
            span,
        }
    }

    fn stmt(&self, p: Pair<'_, Rule>) -> Stmt {
        let span = self.span(&p);
        match p.as_rule() {
            Rule::step => Stmt::Step(self.step(p)),
            Rule::return_stmt => {
                let e = p.into_inner().nth(1).expect("grammar: return value");
                Stmt::Return(Return {
                    value: self.value(e),
                    span,
                })
            }
            Rule::then_stmt => {
                Stmt::Then(self.block(p.into_inner().nth(1).expect("grammar: then block")))
            }
            Rule::gather_stmt => {
                let mut inner = p.into_inner();
                let keyword = self.span(&inner.next().expect("grammar: gather"));
                let mut policy = (Policy::All, keyword);
                let mut step = None;
                for q in inner {
                    match q.as_rule() {
                        Rule::policy => policy = (self.policy(&q), self.span(&q)),
                        Rule::step => step = Some(self.step(q)),
                        r => unreachable!("grammar: gather child {r:?}"),
                    }
                }
                Stmt::Gather(Gather {
                    policy: policy.0,
                    policy_span: policy.1,
                    step: step.expect("grammar: gather step"),
                    keyword,
                    span,
                })
            }
            Rule::parallel_stmt => {
                let mut par = Parallel {
                    name: None,
                    options: Vec::new(),
                    for_each: None,
                    body: Block {
                        stmts: Vec::new(),
                        span,
                    },
                    keyword: span,
                    span,
                };
                for q in p.into_inner() {
                    match q.as_rule() {
                        Rule::ident => par.name = Some(self.ident(q)),
                        Rule::kw_parallel => par.keyword = self.span(&q),
                        Rule::options => par.options = self.options(q),
                        Rule::for_clause => par.for_each = Some(self.for_clause(q)),
                        Rule::block => par.body = self.block(q),
                        r => unreachable!("grammar: parallel child {r:?}"),
                    }
                }
                Stmt::Parallel(par)
            }
            Rule::repeat_stmt => {
                let mut inner = p.into_inner();
                let keyword = self.span(&inner.next().expect("grammar: repeat"));
                let mut options = Vec::new();
                let mut body = None;
                let mut until = None;
                let mut else_fail = None;
                for q in inner {
                    match q.as_rule() {
                        Rule::options => options = self.options(q),
                        Rule::block => body = Some(self.block(q)),
                        Rule::kw_until => {}
                        Rule::cond => until = Some(self.cond(q)),
                        Rule::else_fail => else_fail = Some(self.span(&q)),
                        r => unreachable!("grammar: repeat child {r:?}"),
                    }
                }
                Stmt::Repeat(Repeat {
                    options,
                    body: body.expect("grammar: repeat body"),
                    until: until.expect("grammar: until"),
                    else_fail,
                    keyword,
                    span,
                })
            }
            Rule::if_stmt => Stmt::If(self.if_stmt(p)),
            r => unreachable!("grammar: stmt {r:?}"),
        }
    }

    fn for_clause(&self, p: Pair<'_, Rule>) -> ForEach {
        let span = self.span(&p);
        let mut var = None;
        let mut list = None;
        for q in p.into_inner() {
            match q.as_rule() {
                Rule::ident => var = Some(self.ident(q)),
                Rule::list | Rule::path => list = Some(self.value(q)),
                _ => {}
            }
        }
        ForEach {
            var: var.expect("grammar: for variable"),
            list: list.expect("grammar: for list"),
            span,
        }
    }

    fn if_stmt(&self, p: Pair<'_, Rule>) -> If {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let keyword = self.span(&inner.next().expect("grammar: if"));
        let cond = self.cond(inner.next().expect("grammar: if condition"));
        let then = self.block(inner.next().expect("grammar: if block"));
        let mut otherwise = None;
        for q in inner {
            match q.as_rule() {
                Rule::kw_else => {}
                Rule::block => otherwise = Some(self.block(q)),
                Rule::if_stmt => {
                    let nested = self.if_stmt(q);
                    otherwise = Some(Block {
                        span: nested.span,
                        stmts: vec![Stmt::If(nested)],
                    });
                }
                r => unreachable!("grammar: if child {r:?}"),
            }
        }
        If {
            cond,
            then,
            otherwise,
            keyword,
            span,
        }
    }

    /// `cond`, `cond_and`, `cond_not` and `comparison` pairs → a [`Cond`].
    fn cond(&self, p: Pair<'_, Rule>) -> Cond {
        let span = self.span(&p);
        match p.as_rule() {
            Rule::cond | Rule::cond_and => {
                let is_or = p.as_rule() == Rule::cond;
                let mut parts = p
                    .into_inner()
                    .filter(|q| !matches!(q.as_rule(), Rule::kw_or | Rule::kw_and));
                let mut acc = self.cond(parts.next().expect("grammar: condition"));
                for q in parts {
                    let rhs = self.cond(q);
                    let span = acc.span.to(rhs.span);
                    let (a, b) = (Box::new(acc), Box::new(rhs));
                    acc = Cond {
                        kind: if is_or {
                            CondKind::Or(a, b)
                        } else {
                            CondKind::And(a, b)
                        },
                        span,
                    };
                }
                acc
            }
            Rule::cond_not => {
                let mut inner = p.into_inner();
                let first = inner.next().expect("grammar: not");
                if first.as_rule() == Rule::kw_not {
                    let c = self.cond(inner.next().expect("grammar: not operand"));
                    Cond {
                        kind: CondKind::Not(Box::new(c)),
                        span,
                    }
                } else {
                    self.cond(first)
                }
            }
            Rule::comparison => {
                let mut inner = p.into_inner();
                let a = self.operand(inner.next().expect("grammar: operand"));
                match (inner.next(), inner.next()) {
                    (Some(op), Some(b)) => {
                        let op = match op.as_str() {
                            "==" => CmpOp::Eq,
                            "!=" => CmpOp::Ne,
                            "<" => CmpOp::Lt,
                            "<=" => CmpOp::Le,
                            ">" => CmpOp::Gt,
                            _ => CmpOp::Ge,
                        };
                        Cond {
                            kind: CondKind::Compare(a, op, self.operand(b)),
                            span,
                        }
                    }
                    _ => Cond {
                        kind: CondKind::Value(a),
                        span,
                    },
                }
            }
            r => unreachable!("grammar: condition {r:?}"),
        }
    }

    fn operand(&self, p: Pair<'_, Rule>) -> Value {
        self.value(p.into_inner().next().expect("grammar: operand"))
    }

    fn policy(&self, p: &Pair<'_, Rule>) -> Policy {
        let q = p.clone().into_inner().next().expect("grammar: policy");
        let n = || {
            q.clone()
                .into_inner()
                .find(|n| n.as_rule() == Rule::int)
                .map_or(0, |n| n.as_str().parse().unwrap_or(u32::MAX))
        };
        match q.as_rule() {
            Rule::policy_all => Policy::All,
            Rule::policy_any => Policy::Any,
            Rule::policy_first => Policy::First(n()),
            Rule::policy_min => Policy::Min(n()),
            r => unreachable!("grammar: policy {r:?}"),
        }
    }

    fn step(&self, p: Pair<'_, Rule>) -> Step {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let name = self.ident(inner.next().expect("grammar: step name"));
        let call = inner.next().expect("grammar: call");
        let mut step = Step {
            name,
            callee: Path {
                root: Ident {
                    name: String::new(),
                    span,
                },
                fields: Vec::new(),
                span,
            },
            options: Vec::new(),
            args: Vec::new(),
            after: Vec::new(),
            output: None,
            span,
        };
        for q in call.into_inner() {
            match q.as_rule() {
                Rule::callee => step.callee = self.path(q),
                Rule::options => step.options = self.options(q),
                Rule::args => step.args = q.into_inner().map(|a| self.arg(a)).collect(),
                r => unreachable!("grammar: call child {r:?}"),
            }
        }
        for q in inner {
            match q.as_rule() {
                Rule::after_clause => step.after.extend(
                    q.into_inner()
                        .filter(|x| x.as_rule() == Rule::ident)
                        .map(|x| self.ident(x)),
                ),
                Rule::type_clause => {
                    step.output =
                        Some(self.type_expr(q.into_inner().next().expect("grammar: type")))
                }
                r => unreachable!("grammar: step tail {r:?}"),
            }
        }
        step
    }

    fn arg(&self, a: Pair<'_, Rule>) -> Arg {
        match a.as_rule() {
            Rule::named_arg => {
                let mut inner = a.into_inner();
                let name = self.ident(inner.next().expect("grammar: arg name"));
                Arg {
                    name: Some(name),
                    value: self.value(inner.next().expect("grammar: arg value")),
                }
            }
            _ => Arg {
                name: None,
                value: self.value(a),
            },
        }
    }
}

// The callee rule is `ident ("." ident)?`; reuse `path` lowering by treating it as one.
impl Lower<'_> {}

fn unescape(s: &str) -> &'static str {
    match s {
        "\\n" => "\n",
        "\\t" => "\t",
        "\\r" => "\r",
        "\\\"" => "\"",
        "\\\\" => "\\",
        "\\{" => "{",
        "\\}" => "}",
        "\\0" => "\0",
        _ => "",
    }
}

/// End (exclusive byte offset) of the block comment opening at `start` (which must point at
/// `/*`), or `None` when it is never closed. Block comments nest, as in the grammar.
pub fn block_comment_end(b: &[u8], start: usize) -> Option<usize> {
    comment_end_within(b, start, usize::MAX).unwrap_or(None)
}

/// [`block_comment_end`] that stops at the first `/*` nested more than `room` levels deep
/// (`Err` with its offset; the comment itself is the first level).
fn comment_end_within(b: &[u8], start: usize, room: usize) -> Result<Option<usize>, usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        if b[i..].starts_with(b"/*") {
            depth += 1;
            if depth > room {
                return Err(i);
            }
            i += 2;
        } else if b[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Ok(Some(i));
            }
        } else {
            i += 1;
        }
    }
    Ok(None)
}

/// Indentation stripping of `"""` blocks: the first line break after the opening quotes and
/// the last line (white space only) before the closing quotes are dropped, and the common
/// indentation of the other lines is removed. Works on absolute offsets so that text pieces
/// between interpolations are dedented consistently.
struct Dedent {
    /// Absolute byte ranges to drop.
    drop: Vec<(usize, usize)>,
}

impl Dedent {
    fn none() -> Self {
        Dedent { drop: Vec::new() }
    }

    fn new(inner: &str, base: usize) -> Self {
        let mut drop = Vec::new();
        let mut lines: Vec<(usize, &str)> = Vec::new();
        let mut off = 0;
        for line in inner.split('\n') {
            lines.push((off, line));
            off += line.len() + 1;
        }
        let mut first = 0;
        let mut last = lines.len();
        if lines.len() > 1 && lines[0].1.trim().is_empty() {
            // Opening `"""` followed by a line break: drop that line.
            drop.push((base, base + lines[0].1.len() + 1));
            first = 1;
        }
        if last > first + 1 && lines[last - 1].1.trim().is_empty() {
            // Closing `"""` on its own line: drop the line break before it and its indentation.
            let (o, l) = lines[last - 1];
            drop.push((base + o - 1, base + o + l.len()));
            last -= 1;
        }
        let indent = lines[first..last]
            .iter()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(_, l)| l.len() - l.trim_start_matches([' ', '\t']).len())
            .min()
            .unwrap_or(0);
        for (o, l) in &lines[first..last] {
            let n = indent.min(l.len() - l.trim_start_matches([' ', '\t']).len());
            if n > 0 {
                drop.push((base + o, base + o + n));
            }
        }
        Dedent { drop }
    }

    /// `text` starts at absolute offset `start`; returns it without dropped bytes.
    fn apply<'a>(&self, text: &'a str, start: usize) -> std::borrow::Cow<'a, str> {
        if self.drop.is_empty() {
            return std::borrow::Cow::Borrowed(text);
        }
        text.char_indices()
            .filter(|(i, _)| {
                let at = start + i;
                !self.drop.iter().any(|(a, b)| at >= *a && at < *b)
            })
            .map(|(_, c)| c)
            .collect::<String>()
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(src: &str) -> Module {
        match parse(FileId(0), src) {
            Ok(m) => m,
            Err(d) => panic!("parse failed: {}", d.message),
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |d: usize| {
            format!(
                "workflow w {{ {} x = a(\"{{p}}\", l: {}{}) {} }}",
                "parallel { then { ".repeat(d / 2),
                "[".repeat(MAX_NESTING - 2 - d),
                "]".repeat(MAX_NESTING - 2 - d),
                "} } ".repeat(d / 2),
            )
        };
        // The workflow's block, `d` blocks, the arguments and the lists: MAX_NESTING levels.
        parse_ok(&nested(MAX_NESTING - 4));
        parse_ok(&nested(10));
        let err = parse(
            FileId(0),
            &format!("agent a {{ x: {}{} }}", "[".repeat(64), "]".repeat(64)),
        )
        .unwrap_err();
        assert_eq!(err.code, "E0001");
        assert!(err.message.contains("64 levels"), "{}", err.message);
        // The record is the first level, so the 64th `[` (at 13 + 63) is the 65th.
        assert_eq!(err.primary.span.start, 13 + 63);
        let deep = format!(
            "workflow w {{ {} }}",
            "then { ".repeat(200) + &"} ".repeat(200)
        );
        assert_eq!(parse(FileId(0), &deep).unwrap_err().code, "E0001");
    }

    /// pest is linked without its stack probe (`guard`). Each way to nest, at the deepest the
    /// guard lets through, closed or not, parses (or fails to) on a 2 MiB stack, a spawned
    /// thread's default, in whatever build the tests run in.
    #[test]
    fn the_deepest_texts_the_guard_allows_fit_a_small_stack() {
        let n = guard::GUARD - 4;
        let rep = |s: &str, k: usize| s.repeat(k);
        let texts = vec![
            format!("agent a {{ x: {}{} }}", rep("[", n), rep("]", n)),
            format!("agent a {{ x: {}", rep("[", n)),
            format!("agent a {{ x: {}{} }}", rep("{a: ", n), rep("}", n)),
            format!("agent a {{ x: {}", rep("{a: ", n)),
            format!("agent a {{ tools: [{}{}] }}", rep("f(", n), rep(")", n)),
            format!("agent a {{ tools: [{}", rep("f(", n)),
            format!("workflow w {{ x = s({}{}) }}", rep("[", n), rep("]", n)),
            format!("workflow w {{ if {}x{} {{ }} }}", rep("(", n), rep(")", n)),
            format!("workflow w {{ if {}x", rep("(", n)),
            format!("workflow w {{ if {}x {{ }} }}", rep("not ", n)),
            format!("workflow w {{ if {}x", rep("not (", n / 2)),
            format!("workflow w {{ {}{} }}", rep("then { ", n), rep("} ", n)),
            format!("workflow w {{ {}", rep("parallel { ", n)),
            format!("workflow w {{ if x {{ }}{} }}", rep(" else if x { }", n)),
            format!("workflow w {{ if x {{ }}{}", rep(" else if x {", n / 2)),
            format!("agent a(x: {}text{}) {{ }}", rep("list<", n), rep(">", n)),
            format!("agent a(x: {}", rep("list<", n)),
            format!("workflow w -> {}text{} {{ }}", rep("{a: ", n), rep("}", n)),
            format!("{}{}agent a {{ }}", rep("/* ", n), rep("*/ ", n)),
            format!("agent a {{ {}", rep("/* ", n)),
        ];
        for t in &texts {
            assert_eq!(guard::too_deep_to_parse(t), None, "{t}");
        }
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                for t in &texts {
                    let _ = parse(FileId(0), t);
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// `else if` chains and `and`/`or` chains nest their trees as deep as they are long, so
    /// they count towards the bound too; far past it, pest's own stack guard is reported as
    /// nesting, not as a misleading "expected ...".
    #[test]
    fn long_else_if_and_condition_chains_are_bounded() {
        let chain = |n: usize| {
            format!(
                "workflow w(x: bool) {{\n  if x {{ a = s(\"1\") }}{} else {{ a = s(\"2\") }}\n}}",
                " else if x { a = s(\"1\") }".repeat(n)
            )
        };
        // The workflow's block, the first `if`'s: 2 levels before the chain.
        parse_ok(&chain(30));
        let err = parse(FileId(0), &chain(200)).unwrap_err();
        assert!(err.message.contains("64 levels"), "{}", err.message);
        let cond = |n: usize, op: &str| {
            format!(
                "workflow w(x: bool) {{ repeat <max 2> {{ a = s(\"1\") }} until {} }}",
                vec!["x"; n + 1].join(op)
            )
        };
        parse_ok(&cond(40, " and "));
        for op in [" and ", " or "] {
            let err = parse(FileId(0), &cond(100, op)).unwrap_err();
            assert!(err.message.contains("64 levels"), "{}", err.message);
        }
        // Far past the bound: the guard refuses the text before pest parses it.
        let err = parse(FileId(0), &chain(20_000)).unwrap_err();
        assert_eq!(err.code, "E0001");
        assert!(err.message.contains("nests"), "{}", err.message);
    }

    #[test]
    fn parses_a_workflow_with_parallel_and_gather() {
        let m = parse_ok(
            r#"
include "std/models.orch"
/// Finds things.
agent scout { model: haiku, system: "You scout." }
workflow main(request: text) -> text <budget $2.00> {
  scouting = parallel <haiku, max 3> {
    files = scout("Find files for: {request}")
    deps  = scout("Deps of {request}") after files
  }
  gather <min 1> plan = scout<opus, retry 2, timeout 30s>("Plan from {scouting}")
  return plan
}
"#,
        );
        assert_eq!(m.items.len(), 3);
        let Item::Agent(a) = &m.items[1] else {
            panic!()
        };
        assert_eq!(a.doc.as_deref(), Some("Finds things."));
        let Item::Workflow(w) = &m.items[2] else {
            panic!()
        };
        assert_eq!(w.body.stmts.len(), 3);
        let Stmt::Gather(g) = &w.body.stmts[1] else {
            panic!()
        };
        assert_eq!(g.policy, Policy::Min(1));
        assert_eq!(g.step.options.len(), 3);
        let Stmt::Parallel(p) = &w.body.stmts[0] else {
            panic!()
        };
        let Stmt::Step(deps) = &p.body.stmts[1] else {
            panic!()
        };
        assert_eq!(deps.after[0].name, "files");
    }

    #[test]
    fn after_list_stops_before_the_next_statement() {
        let m = parse_ok("workflow w { a = x(\"1\") after b, c = y(\"2\") }");
        let Item::Workflow(w) = &m.items[0] else {
            panic!()
        };
        assert_eq!(w.body.stmts.len(), 2);
    }

    #[test]
    fn strings_escape_and_interpolate() {
        let m = parse_ok(r#"workflow w { a = x("a {{b}} {c.d} \"e\"\n") }"#);
        let Item::Workflow(w) = &m.items[0] else {
            panic!()
        };
        let Stmt::Step(s) = &w.body.stmts[0] else {
            panic!()
        };
        let ValueKind::Str(t) = &s.args[0].value.kind else {
            panic!()
        };
        assert_eq!(t.parts[0], TemplatePart::Text("a {b} ".into()));
        let TemplatePart::Interp(p) = &t.parts[1] else {
            panic!()
        };
        assert_eq!(p.dotted(), "c.d");
        assert_eq!(t.parts[2], TemplatePart::Text(" \"e\"\n".into()));
    }

    #[test]
    fn triple_strings_are_dedented() {
        let src = "workflow w {\n  a = x(\"\"\"\n    line one {y}\n      indented\n    \"\"\")\n}";
        let m = parse_ok(src);
        let Item::Workflow(w) = &m.items[0] else {
            panic!()
        };
        let Stmt::Step(s) = &w.body.stmts[0] else {
            panic!()
        };
        let ValueKind::Str(t) = &s.args[0].value.kind else {
            panic!()
        };
        assert_eq!(t.parts[0], TemplatePart::Text("line one ".into()));
        assert_eq!(t.parts[2], TemplatePart::Text("\n  indented".into()));
    }

    /// `ident` tests a word against the keywords only when it starts with one of their first
    /// letters (`keyword_initial`): every keyword must still be refused as a name, and a longer
    /// word starting with one must not be.
    #[test]
    fn every_keyword_is_refused_as_a_name() {
        for kw in KEYWORDS {
            assert!(
                OrchParser::parse(Rule::ident, kw).is_err(),
                "`{kw}` parsed as a name"
            );
            let longer = format!("{kw}_x");
            let name = OrchParser::parse(Rule::ident, &longer)
                .unwrap_or_else(|e| panic!("`{longer}` is not a name: {e}"));
            assert_eq!(name.as_str(), longer);
        }
    }

    #[test]
    fn syntax_errors_name_expected_tokens() {
        let err = parse(FileId(0), "workflow w { a = }").unwrap_err();
        assert_eq!(err.code, "E0001");
        assert!(err.message.contains("expected"), "{}", err.message);
        assert!(err.message.contains("found `}`"), "{}", err.message);
    }
}
