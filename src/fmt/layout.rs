//! The layout: a parsed module and its source text become lines, then the comments are put
//! back between and after them, consecutive lines are aligned, and the text is written out.
//!
//! Two passes. [`Printer`] walks the AST and produces [`Line`]s, each remembering the byte
//! range of the source it prints (`lo..hi`); literals are copied from the source, never
//! re-escaped. [`Printer::render`] then places every comment by its offset: inside a line's
//! range it goes to the end of that line; after code on its source line it stays at the end of
//! that code's line (a trailing comment; after a list that the layout splits, at the end of the
//! list's first line); otherwise it goes on its own line before the next line.

use super::comments::{Comment, CommentKind};
use crate::syntax::ast::*;

/// The width records are fitted into.
pub const WIDTH: usize = 100;

/// One level of indentation.
const INDENT: &str = "  ";

/// Which lines align with each other: the `=` of steps, or the `{` of declarations of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Step,
    Decl(&'static str),
}

/// One line of output (a `"""` block inside makes it several physical lines).
#[derive(Debug)]
struct Line {
    /// Indentation level.
    indent: usize,
    /// The code, without indentation.
    text: String,
    /// Source range printed on it: first byte, and one past the last.
    lo: usize,
    hi: usize,
    /// Starts an item, a statement, a field or an element: may follow a blank line.
    entry: bool,
    /// Ends with an opening `{`, `(`, `[` or `<` whose contents follow on their own lines.
    opens: bool,
    /// Starts with the closing delimiter of such a list.
    closer: bool,
    /// Goes on after its closing `}` with code of its own (`} until COND`). A comment after
    /// that code is about it, so it stays on this line rather than moving up to the line that
    /// opened the block (where an `// orch: allow(...)` would no longer cover the condition).
    tail: bool,
    /// Where alignment padding goes (a byte index into `text`), for one-line steps and
    /// declarations.
    pad: Option<(Align, usize)>,
}

/// Something in a delimited list.
#[derive(Clone, Copy)]
enum Elem<'a> {
    Value(&'a Value),
    Arg(&'a Arg),
    Param(&'a Param),
    Opt(&'a Opt),
    Field(&'a Field),
    TypeField(&'a Ident, &'a TypeExpr),
}

impl Elem<'_> {
    fn start(&self) -> usize {
        let s = match self {
            Elem::Value(v) => v.span.start,
            Elem::Arg(a) => a.name.as_ref().map_or(a.value.span.start, |n| n.span.start),
            Elem::Param(p) => p.span.start,
            Elem::Opt(o) => o.span.start,
            Elem::Field(f) => f.key.span.start,
            Elem::TypeField(k, _) => k.span.start,
        };
        s as usize
    }
}

/// How a delimited list is written when it does not fit on its line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ListKind {
    /// `( )`, `[ ]`, `< >`: on one line, unless the source breaks the line right after the
    /// opening delimiter or a comment is inside; then one element per line, each followed by
    /// a comma.
    Commas,
    /// `{ }` of fields: also broken when the line would be wider than [`WIDTH`] or a `"""`
    /// block is inside; broken, one field per line without commas.
    Record,
}

/// Builds the lines of one module.
pub struct Printer<'t> {
    text: &'t str,
    comments: &'t [Comment],
    lines: Vec<Line>,
    cur: Option<Line>,
    /// First and last line of each item, and its keyword.
    items: Vec<(usize, usize, &'static str)>,
}

impl<'t> Printer<'t> {
    /// A printer for the module parsed from `text`, whose comments are `comments`.
    pub fn new(text: &'t str, comments: &'t [Comment]) -> Self {
        Printer {
            text,
            comments,
            lines: Vec::new(),
            cur: None,
            items: Vec::new(),
        }
    }

    /// Lays out the module.
    pub fn module(&mut self, m: &Module) {
        for item in &m.items {
            self.item(item);
        }
    }

    // ------------------------------------------------------------------ lines

    fn open(&mut self, indent: usize, lo: usize, entry: bool) {
        self.finish();
        self.cur = Some(Line {
            indent,
            text: String::new(),
            lo,
            hi: lo,
            entry,
            opens: false,
            closer: false,
            tail: false,
            pad: None,
        });
    }

    fn cur(&mut self) -> &mut Line {
        self.cur.as_mut().expect("fmt: a line is open")
    }

    /// Appends code that ends at source offset `hi`.
    fn push(&mut self, s: &str, hi: usize) {
        let line = self.cur();
        line.text.push_str(s);
        line.hi = line.hi.max(hi);
    }

    /// Appends code that prints no source (`,` after an element, a space).
    fn push_plain(&mut self, s: &str) {
        self.cur().text.push_str(s);
    }

    fn finish(&mut self) {
        if let Some(line) = self.cur.take() {
            self.lines.push(line);
        }
    }

    /// The column the current line has reached.
    fn col(&self) -> usize {
        let Some(line) = &self.cur else { return 0 };
        match line.text.rfind('\n') {
            Some(i) => line.text[i + 1..].chars().count(),
            None => INDENT.len() * line.indent + line.text.chars().count(),
        }
    }

    /// Marks the current line as a complete one-line step or declaration for alignment, if it
    /// is; `line` is its index once finished.
    fn keep_pad_if_single(&mut self, line: usize) {
        let single = self.lines.len() == line
            && self
                .cur
                .as_ref()
                .is_some_and(|l| !l.text.contains('\n') && !l.opens);
        if !single && let Some(l) = self.cur.as_mut() {
            l.pad = None;
        }
        if !single && let Some(l) = self.lines.get_mut(line) {
            l.pad = None;
        }
    }

    // ------------------------------------------------------------------ source helpers

    fn byte(&self, pos: usize) -> u8 {
        self.text.as_bytes().get(pos).copied().unwrap_or(0)
    }

    fn slice(&self, span: crate::diag::Span) -> &'t str {
        &self.text[span.start as usize..span.end as usize]
    }

    /// The comment starting at `pos`, if any.
    fn comment_at(&self, pos: usize) -> Option<&Comment> {
        let i = self.comments.partition_point(|c| c.start < pos);
        self.comments.get(i).filter(|c| c.start == pos)
    }

    /// Whether a comment starts in `lo..hi`.
    fn has_comment(&self, lo: usize, hi: usize) -> bool {
        let i = self.comments.partition_point(|c| c.start < lo);
        self.comments.get(i).is_some_and(|c| c.start < hi)
    }

    /// The first offset from `pos` that is not white space or a comment (nor a separator, `,`
    /// or `;`, when `seps`).
    fn skip(&self, mut pos: usize, seps: bool) -> usize {
        let b = self.text.as_bytes();
        loop {
            while pos < b.len()
                && (matches!(b[pos], b' ' | b'\t' | b'\r' | b'\n')
                    || (seps && matches!(b[pos], b',' | b';')))
            {
                pos += 1;
            }
            match self.comment_at(pos) {
                Some(c) => pos = c.end,
                None => return pos,
            }
        }
    }

    /// The words of `lo..hi` with comments left out, joined by one space: `max 3`, `min 2`.
    fn words(&self, lo: usize, hi: usize) -> String {
        let mut s = String::new();
        let mut pos = lo;
        let i = self.comments.partition_point(|c| c.start < lo);
        for c in self.comments[i..].iter().take_while(|c| c.start < hi) {
            s.push_str(&self.text[pos..c.start]);
            s.push(' ');
            pos = c.end;
        }
        s.push_str(&self.text[pos.min(hi)..hi]);
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The closing delimiter of a list opened at `open` whose last element ends at `last_end`.
    fn close_of(&self, open: usize, last_end: Option<usize>) -> usize {
        self.skip(last_end.unwrap_or(open + 1), true)
    }

    // ------------------------------------------------------------------ items

    fn item(&mut self, item: &Item) {
        let first = self.lines.len();
        let kind = match item {
            Item::Include(_) => "include",
            Item::Provider(_) => "provider",
            Item::Model(_) => "model",
            Item::Mcp(_) => "mcp",
            Item::Agent(_) => "agent",
            Item::Workflow(_) => "workflow",
        };
        match item {
            Item::Include(inc) => {
                self.open(0, inc.span.start as usize, true);
                let mut s = format!("include {}", self.slice(inc.path_span));
                if let Some(a) = &inc.alias {
                    s.push_str(" as ");
                    s.push_str(&a.name);
                }
                self.push(&s, inc.span.end as usize);
            }
            Item::Provider(d) => self.decl("provider", d.span, &d.name, None, &d.fields),
            Item::Model(d) => self.decl("model", d.span, &d.name, None, &d.fields),
            Item::Mcp(d) => self.decl("mcp", d.span, &d.name, None, &d.fields),
            Item::Agent(a) => self.decl("agent", a.span, &a.name, Some(&a.params), &a.fields),
            Item::Workflow(w) => self.workflow(w),
        }
        self.finish();
        self.items.push((first, self.lines.len() - 1, kind));
    }

    fn decl(
        &mut self,
        kw: &'static str,
        span: crate::diag::Span,
        name: &Ident,
        params: Option<&[Param]>,
        fields: &[Field],
    ) {
        self.open(0, span.start as usize, true);
        let line = self.lines.len();
        self.push(&format!("{kw} {}", name.name), name.span.end as usize);
        let mut pos = name.span.end as usize;
        if let Some(params) = params {
            let open = self.skip(pos, false);
            if self.byte(open) == b'(' {
                pos = self.params(open, params, 0);
            }
        }
        let open = self.skip(pos, false);
        let close = span.end as usize - 1;
        debug_assert_eq!((self.byte(open), self.byte(close)), (b'{', b'}'));
        let at = self.cur().text.len();
        self.cur().pad = Some((Align::Decl(kw), at));
        self.push_plain(" ");
        let elems: Vec<Elem> = fields.iter().map(Elem::Field).collect();
        self.list(open, close, ("{", "}"), &elems, 0, ListKind::Record);
        self.keep_pad_if_single(line);
    }

    /// `(params)` opened at `open`; returns the offset after `)`.
    fn params(&mut self, open: usize, params: &[Param], indent: usize) -> usize {
        let close = self.close_of(open, params.last().map(|p| p.span.end as usize));
        debug_assert_eq!(self.byte(close), b')');
        let elems: Vec<Elem> = params.iter().map(Elem::Param).collect();
        self.list(open, close, ("(", ")"), &elems, indent, ListKind::Commas);
        close + 1
    }

    /// `<options>` opened at `open`, after a space when `space`; returns the offset after
    /// `>`. Empty options (`<>`) are left out.
    fn options(&mut self, open: usize, opts: &[Opt], indent: usize, space: bool) -> usize {
        let close = self.close_of(open, opts.last().map(|o| o.span.end as usize));
        debug_assert_eq!(self.byte(close), b'>');
        if !opts.is_empty() || self.has_comment(open + 1, close) {
            if space {
                self.push_plain(" ");
            }
            let elems: Vec<Elem> = opts.iter().map(Elem::Opt).collect();
            self.list(open, close, ("<", ">"), &elems, indent, ListKind::Commas);
        }
        close + 1
    }

    fn workflow(&mut self, w: &Workflow) {
        self.open(0, w.span.start as usize, true);
        self.push(
            &format!("workflow {}", w.name.name),
            w.name.span.end as usize,
        );
        let mut pos = w.name.span.end as usize;
        let next = self.skip(pos, false);
        if self.byte(next) == b'(' {
            pos = self.params(next, &w.params, 0);
        }
        if let Some(ret) = &w.ret {
            self.push_plain(" -> ");
            self.ty(ret, 0);
            pos = ret.span.end as usize;
        }
        let next = self.skip(pos, false);
        if self.byte(next) == b'<' {
            self.options(next, &w.options, 0, true);
        }
        self.push_plain(" ");
        self.block(&w.body, 0);
    }

    // ------------------------------------------------------------------ statements

    fn block(&mut self, b: &Block, indent: usize) {
        let open = b.span.start as usize;
        let close = b.span.end as usize - 1;
        debug_assert_eq!((self.byte(open), self.byte(close)), (b'{', b'}'));
        if b.stmts.is_empty() && !self.has_comment(open + 1, close) {
            self.push("{}", close + 1);
            return;
        }
        self.push("{", open + 1);
        self.cur().opens = true;
        let mut prev = open + 1;
        for s in &b.stmts {
            let start = match s {
                Stmt::Then(_) => self.skip(prev, true),
                _ => s.span().start as usize,
            };
            self.open(indent + 1, start, true);
            let line = self.lines.len();
            self.stmt(s, start, indent + 1);
            if matches!(s, Stmt::Step(_)) {
                self.keep_pad_if_single(line);
            }
            self.finish();
            prev = s.span().end as usize;
        }
        self.open(indent, close, false);
        self.cur().closer = true;
        self.push("}", close + 1);
    }

    fn stmt(&mut self, s: &Stmt, start: usize, indent: usize) {
        match s {
            Stmt::Step(step) => self.step(step, indent, true),
            Stmt::Parallel(p) => {
                if let Some(name) = &p.name {
                    self.push(&format!("{} = ", name.name), name.span.end as usize);
                }
                self.push("parallel", p.keyword.end as usize);
                let next = self.skip(p.keyword.end as usize, false);
                if self.byte(next) == b'<' {
                    self.options(next, &p.options, indent, true);
                }
                if let Some(f) = &p.for_each {
                    self.push(&format!(" for {} in ", f.var.name), f.var.span.end as usize);
                    // A list literal is laid out like any list: broken when the source breaks
                    // it or a comment is inside, its `]` then starting the line of the `{`.
                    self.value(&f.list, indent);
                }
                self.push_plain(" ");
                self.block(&p.body, indent);
            }
            Stmt::Repeat(r) => {
                self.push("repeat", r.keyword.end as usize);
                let next = self.skip(r.keyword.end as usize, false);
                if self.byte(next) == b'<' {
                    self.options(next, &r.options, indent, true);
                }
                self.push_plain(" ");
                self.block(&r.body, indent);
                // `until` may start the next line in the source; it always follows the `}`.
                self.cur().tail = true;
                self.push_plain(" until ");
                let until = self.cond(&r.until);
                match r.else_fail {
                    Some(at) => {
                        self.push(&until, r.until.span.end as usize);
                        self.push(" else fail", at.end as usize);
                    }
                    None => self.push(&until, r.span.end as usize),
                }
            }
            Stmt::If(i) => self.if_chain(i, indent),
            Stmt::Then(b) => {
                debug_assert!(self.text[start..].starts_with("then"));
                self.push("then ", start + 4);
                self.block(b, indent);
            }
            Stmt::Gather(g) => {
                self.push("gather ", g.keyword.end as usize);
                if g.policy_span != g.keyword {
                    let (lo, hi) = (g.policy_span.start as usize, g.policy_span.end as usize);
                    let policy = format!("<{}> ", self.words(lo + 1, hi - 1));
                    self.push(&policy, hi);
                }
                self.step(&g.step, indent, false);
            }
            Stmt::Return(r) => {
                self.push("return ", r.value.span.start as usize);
                self.value(&r.value, indent);
            }
        }
    }

    /// `if COND { ... } else if COND { ... } else { ... }`: each `else` on the line of the `}`
    /// before it. A loop rather than recursion, as an `else if` chain may be long.
    fn if_chain(&mut self, first: &If, indent: usize) {
        let mut i = first;
        loop {
            self.push("if ", i.keyword.end as usize);
            let cond = self.cond(&i.cond);
            self.push(&cond, i.cond.span.end as usize);
            self.push_plain(" ");
            self.block(&i.then, indent);
            let Some(otherwise) = &i.otherwise else {
                return;
            };
            self.push_plain(" else ");
            match otherwise.stmts.as_slice() {
                // The parser gives `else if` as an `else` block holding just that `if`, with
                // the `if`'s span; a block written with braces starts at its `{` instead.
                [Stmt::If(nested)] if nested.span == otherwise.span => i = nested,
                _ => {
                    self.block(otherwise, indent);
                    return;
                }
            }
        }
    }

    /// A condition, on one line: operands as values are written elsewhere, and parentheses
    /// exactly where the precedence (`not` over `and` over `or`, both left-associative) needs
    /// them, since the AST does not keep the ones of the source.
    fn cond(&self, c: &Cond) -> String {
        /// Binding strength: a sub-condition weaker than its place needs parentheses.
        fn strength(c: &Cond) -> u8 {
            match c.kind {
                CondKind::Or(..) => 1,
                CondKind::And(..) => 2,
                CondKind::Not(_) => 3,
                CondKind::Value(_) | CondKind::Compare(..) => 4,
            }
        }
        let sub = |c: &Cond, min: u8| {
            let s = self.cond(c);
            if strength(c) < min {
                format!("({s})")
            } else {
                s
            }
        };
        // Operands are strings, numbers, booleans or paths: never `None`.
        let operand = |v: &Value| self.inline_value(v).unwrap_or_default();
        match &c.kind {
            CondKind::Value(v) => operand(v),
            CondKind::Compare(a, op, b) => {
                format!("{} {} {}", operand(a), op.symbol(), operand(b))
            }
            CondKind::Not(inner) => format!("not {}", sub(inner, 3)),
            // The right operand binds one step tighter: `a and (b and c)` is another tree
            // than `a and b and c`, which the parser groups to the left.
            CondKind::And(a, b) => format!("{} and {}", sub(a, 2), sub(b, 3)),
            CondKind::Or(a, b) => format!("{} or {}", sub(a, 1), sub(b, 2)),
        }
    }

    fn step(&mut self, s: &Step, indent: usize, pad: bool) {
        self.push(&s.name.name, s.name.span.end as usize);
        if pad {
            let at = self.cur().text.len();
            self.cur().pad = Some((Align::Step, at));
        }
        self.push_plain(" = ");
        self.push(&s.callee.dotted(), s.callee.span.end as usize);
        let mut pos = s.callee.span.end as usize;
        let next = self.skip(pos, false);
        if self.byte(next) == b'<' {
            pos = self.options(next, &s.options, indent, false);
        }
        let open = self.skip(pos, false);
        debug_assert_eq!(self.byte(open), b'(');
        let close = self.close_of(open, s.args.last().map(|a| a.value.span.end as usize));
        debug_assert_eq!(self.byte(close), b')');
        let elems: Vec<Elem> = s.args.iter().map(Elem::Arg).collect();
        self.list(open, close, ("(", ")"), &elems, indent, ListKind::Commas);
        if let Some(last) = s.after.last() {
            let names: Vec<&str> = s.after.iter().map(|a| a.name.as_str()).collect();
            self.push(
                &format!(" after {}", names.join(", ")),
                last.span.end as usize,
            );
        }
        if let Some(t) = &s.output {
            self.push_plain(" -> ");
            self.ty(t, indent);
        }
    }

    // ------------------------------------------------------------------ lists and values

    /// Whether a list opened at `open` and closed at `close` must be written one element per
    /// line: a comment inside, or a line break right after the opening delimiter.
    fn must_break(&self, open: usize, close: usize, first: Option<usize>) -> bool {
        self.has_comment(open + 1, close)
            || first.is_some_and(|f| self.text[open + 1..f].contains('\n'))
    }

    /// The one-line form of a list, if it may have one (without the width check).
    fn inline_list(
        &self,
        open: usize,
        close: usize,
        delims: (&str, &str),
        elems: &[Elem],
        kind: ListKind,
    ) -> Option<String> {
        if self.must_break(open, close, elems.first().map(Elem::start)) {
            return None;
        }
        let parts = elems
            .iter()
            .map(|e| self.inline_elem(*e))
            .collect::<Option<Vec<_>>>()?;
        let s = match kind {
            ListKind::Record if parts.is_empty() => "{}".to_string(),
            ListKind::Record => format!("{{ {} }}", parts.join(", ")),
            ListKind::Commas => format!("{}{}{}", delims.0, parts.join(", "), delims.1),
        };
        if kind == ListKind::Record && s.contains('\n') {
            return None;
        }
        Some(s)
    }

    /// Writes a delimited list at the current position.
    fn list(
        &mut self,
        open: usize,
        close: usize,
        delims: (&str, &str),
        elems: &[Elem],
        indent: usize,
        kind: ListKind,
    ) {
        if let Some(s) = self.inline_list(open, close, delims, elems, kind)
            && (kind == ListKind::Commas || self.col() + s.chars().count() <= WIDTH)
        {
            self.push(&s, close + 1);
            return;
        }
        self.push(delims.0, open + 1);
        self.cur().opens = true;
        for e in elems {
            self.open(indent + 1, e.start(), true);
            self.elem(*e, indent + 1);
            if kind == ListKind::Commas {
                self.push_plain(",");
            }
        }
        self.open(indent, close, false);
        self.cur().closer = true;
        self.push(delims.1, close + 1);
    }

    fn inline_elem(&self, e: Elem) -> Option<String> {
        Some(match e {
            Elem::Value(v) => self.inline_value(v)?,
            Elem::Arg(a) => match &a.name {
                Some(n) => format!("{}: {}", n.name, self.inline_value(&a.value)?),
                None => self.inline_value(&a.value)?,
            },
            Elem::Param(p) => {
                let mut s = p.name.name.clone();
                if let Some(t) = &p.ty {
                    s.push_str(": ");
                    s.push_str(&self.inline_type(t)?);
                }
                if let Some(v) = &p.default {
                    s.push_str(" = ");
                    s.push_str(&self.inline_value(v)?);
                }
                s
            }
            Elem::Opt(o) => self.words(o.span.start as usize, o.span.end as usize),
            Elem::Field(f) => format!("{}: {}", f.key.name, self.inline_value(&f.value)?),
            Elem::TypeField(k, t) => format!("{}: {}", k.name, self.inline_type(t)?),
        })
    }

    fn elem(&mut self, e: Elem, indent: usize) {
        match e {
            Elem::Value(v) => self.value(v, indent),
            Elem::Arg(a) => {
                if let Some(n) = &a.name {
                    self.push(&format!("{}: ", n.name), n.span.end as usize);
                }
                self.value(&a.value, indent);
            }
            Elem::Param(p) => {
                self.push(&p.name.name, p.name.span.end as usize);
                if let Some(t) = &p.ty {
                    self.push_plain(": ");
                    self.ty(t, indent);
                }
                if let Some(v) = &p.default {
                    self.push_plain(" = ");
                    self.value(v, indent);
                }
            }
            Elem::Opt(o) => {
                let s = self.words(o.span.start as usize, o.span.end as usize);
                self.push(&s, o.span.end as usize);
            }
            Elem::Field(f) => {
                self.push(&format!("{}: ", f.key.name), f.key.span.end as usize);
                self.value(&f.value, indent);
            }
            Elem::TypeField(k, t) => {
                self.push(&format!("{}: ", k.name), k.span.end as usize);
                self.ty(t, indent);
            }
        }
    }

    fn inline_value(&self, v: &Value) -> Option<String> {
        let (open, close) = (v.span.start as usize, v.span.end as usize - 1);
        match &v.kind {
            ValueKind::List(items) => {
                let elems: Vec<Elem> = items.iter().map(Elem::Value).collect();
                self.inline_list(open, close, ("[", "]"), &elems, ListKind::Commas)
            }
            ValueKind::Record(fields) => {
                let elems: Vec<Elem> = fields.iter().map(Elem::Field).collect();
                self.inline_list(open, close, ("{", "}"), &elems, ListKind::Record)
            }
            ValueKind::Path(p) => Some(p.dotted()),
            ValueKind::Call { name, args } => {
                let open = self.call_open(name);
                let elems: Vec<Elem> = args.iter().map(Elem::Value).collect();
                let list = self.inline_list(open, close, ("(", ")"), &elems, ListKind::Commas)?;
                Some(format!("{}{list}", name.name))
            }
            // Strings, numbers, durations, money, booleans: exactly as written.
            _ => Some(self.slice(v.span).to_string()),
        }
    }

    fn value(&mut self, v: &Value, indent: usize) {
        let (open, close) = (v.span.start as usize, v.span.end as usize - 1);
        match &v.kind {
            ValueKind::List(items) => {
                let elems: Vec<Elem> = items.iter().map(Elem::Value).collect();
                self.list(open, close, ("[", "]"), &elems, indent, ListKind::Commas);
            }
            ValueKind::Record(fields) => {
                let elems: Vec<Elem> = fields.iter().map(Elem::Field).collect();
                self.list(open, close, ("{", "}"), &elems, indent, ListKind::Record);
            }
            ValueKind::Call { name, args } => {
                self.push(&name.name, name.span.end as usize);
                let open = self.call_open(name);
                let elems: Vec<Elem> = args.iter().map(Elem::Value).collect();
                self.list(open, close, ("(", ")"), &elems, indent, ListKind::Commas);
            }
            _ => {
                let s = self.inline_value(v).unwrap_or_default();
                self.push(&s, close + 1);
            }
        }
    }

    /// The `(` of a call value (`exec ("a")` may have space before it).
    fn call_open(&self, name: &Ident) -> usize {
        self.skip(name.span.end as usize, false)
    }

    fn inline_type(&self, t: &TypeExpr) -> Option<String> {
        match &t.kind {
            TypeKind::Named(n) => Some(n.name.clone()),
            TypeKind::List(inner) => Some(format!("list<{}>", self.inline_type(inner)?)),
            TypeKind::Record(fields) => {
                let elems: Vec<Elem> = fields.iter().map(|(k, t)| Elem::TypeField(k, t)).collect();
                let (open, close) = (t.span.start as usize, t.span.end as usize - 1);
                self.inline_list(open, close, ("{", "}"), &elems, ListKind::Record)
            }
        }
    }

    fn ty(&mut self, t: &TypeExpr, indent: usize) {
        match &t.kind {
            TypeKind::Named(n) => self.push(&n.name, t.span.end as usize),
            TypeKind::List(inner) => {
                self.push_plain("list<");
                self.ty(inner, indent);
                self.push(">", t.span.end as usize);
            }
            TypeKind::Record(fields) => {
                let elems: Vec<Elem> = fields.iter().map(|(k, t)| Elem::TypeField(k, t)).collect();
                let (open, close) = (t.span.start as usize, t.span.end as usize - 1);
                self.list(open, close, ("{", "}"), &elems, indent, ListKind::Record);
            }
        }
    }

    // ------------------------------------------------------------------ comments and text

    /// Places the comments, aligns, and writes the text.
    pub fn render(mut self) -> String {
        self.finish();
        let text = self.text;
        let n = self.lines.len();
        // Where each comment goes: before line i (i == n: at the end), hoisted before line i
        // (a line comment inside a line), before the code of line i on the same line, or after it.
        let mut before: Vec<Vec<&Comment>> = vec![Vec::new(); n + 1];
        let mut hoisted: Vec<Vec<&Comment>> = vec![Vec::new(); n];
        let mut prefix: Vec<Vec<&Comment>> = vec![Vec::new(); n];
        let mut trailing: Vec<Vec<&Comment>> = vec![Vec::new(); n];
        for c in self.comments {
            let next = self.lines.partition_point(|l| l.lo <= c.start);
            let prev = next.checked_sub(1);
            match prev {
                Some(p) if self.lines[p].hi > c.start => trailing[p].push(c),
                Some(p) if !text[self.lines[p].hi..c.start].contains('\n') => {
                    // After code on its source line: at the end of that code's line. When the
                    // code is the end of a list that was on one source line and is now split,
                    // at the end of the list's first line instead, so the comment stays with
                    // the line it was written on. Not when the line goes on after the list
                    // with a `{` that opens a block (`} else {`, `] {`): the comment follows
                    // that `{` and is about the block, whose layout it may decide (an empty
                    // block holding a comment is broken); nor after `until COND`.
                    let line_start = text[..c.start].rfind('\n').map_or(0, |i| i + 1);
                    let first = self.skip(line_start, true);
                    let head = self.lines.partition_point(|l| l.lo <= first).checked_sub(1);
                    let line = &self.lines[p];
                    match head {
                        Some(h)
                            if line.closer
                                && !line.opens
                                && !line.tail
                                && h < p
                                && first < self.lines[h].hi =>
                        {
                            trailing[h].push(c)
                        }
                        _ => trailing[p].push(c),
                    }
                }
                _ if next < n
                    && c.kind == CommentKind::Block
                    && !text[c.end..self.lines[next].lo].contains('\n') =>
                {
                    prefix[next].push(c)
                }
                _ => before[next].push(c),
            }
        }
        // Only the last trailing comment may run to the end of the line: block comments first,
        // then one line comment; any other line comment goes on its own line above.
        for (i, t) in trailing.iter_mut().enumerate() {
            let (blocks, mut ends): (Vec<&Comment>, Vec<&Comment>) =
                t.iter().partition(|c| !c.ends_line());
            let last = ends.pop();
            hoisted[i].extend(ends);
            *t = blocks.into_iter().chain(last).collect();
        }

        // Which lines start an item, and whether each item spans several lines.
        let mut item_at = vec![None; n];
        for (k, &(first, _, _)) in self.items.iter().enumerate() {
            item_at[first] = Some(k);
        }
        let multi = |k: usize| {
            let (first, last, _) = self.items[k];
            first != last || self.lines[first].text.contains('\n')
        };
        // A blank line between items, except between one-line items of one kind.
        let apart = |k: usize| multi(k - 1) || multi(k) || self.items[k - 1].2 != self.items[k].2;

        let newlines = |a: usize, b: usize| a <= b && text[a..b].matches('\n').count() >= 2;
        let mut rows: Vec<Row> = Vec::new();
        let mut prev_end: Option<usize> = None;
        let mut after_opener = false;
        for i in 0..=n {
            let mut forced = i < n && item_at[i].is_some_and(|k| k > 0 && apart(k));
            let comment_indent = if i < n {
                self.lines[i].indent + usize::from(self.lines[i].closer)
            } else {
                0
            };
            let mut last: Option<&Comment> = None;
            for c in &before[i] {
                // Comments that share a source line share an output line (`/* a */ // b`):
                // a `///` line only documents an item when it starts its line.
                if let (Some(l), Some(Row::Comment { text: row, .. })) = (last, rows.last_mut())
                    && !text[l.end..c.start].contains('\n')
                {
                    row.push(' ');
                    row.push_str(c.text(text));
                    last = Some(c);
                    prev_end = Some(c.end);
                    continue;
                }
                let natural = !after_opener && prev_end.is_some_and(|e| newlines(e, c.start));
                if (forced || natural) && !rows.is_empty() {
                    rows.push(Row::Blank);
                }
                forced = false;
                rows.push(Row::Comment {
                    indent: comment_indent,
                    text: c.text(text).to_string(),
                });
                last = Some(c);
                prev_end = Some(c.end);
                after_opener = false;
            }
            if i == n {
                break;
            }
            let line = &self.lines[i];
            let start = prefix[i].first().map_or(line.lo, |c| c.start);
            let natural =
                line.entry && !after_opener && prev_end.is_some_and(|e| newlines(e, start));
            if (forced || natural) && !rows.is_empty() {
                rows.push(Row::Blank);
            }
            for c in &hoisted[i] {
                // At the indentation of a comment before the line, which is what it is once
                // formatted: inside the block when the line closes one (`} // a` then
                // `until x // b`), so that formatting again does not move it.
                rows.push(Row::Comment {
                    indent: comment_indent,
                    text: c.text(text).to_string(),
                });
            }
            let prefix_text: Vec<&str> = prefix[i].iter().map(|c| c.text(text)).collect();
            rows.push(Row::Code {
                line: i,
                prefix: prefix_text.join(" "),
                trailing: trailing[i]
                    .iter()
                    .map(|c| c.text(text))
                    .collect::<Vec<_>>()
                    .join(" "),
            });
            prev_end = Some(
                trailing[i]
                    .iter()
                    .chain(&hoisted[i])
                    .map(|c| c.end)
                    .fold(line.hi, usize::max),
            );
            after_opener = line.opens;
        }

        self.align(&rows);
        self.write(&rows)
    }

    /// Pads the `=` of runs of one-line steps and the `{` of runs of one-line declarations of
    /// one kind: lines next to each other at one indentation, with no blank line between
    /// (comment lines may be).
    fn align(&mut self, rows: &[Row]) {
        let mut run: Vec<usize> = Vec::new();
        let flush = |run: &mut Vec<usize>, lines: &mut Vec<Line>| {
            if run.len() > 1 {
                let width = |l: &Line| l.pad.map_or(0, |(_, at)| l.text[..at].chars().count());
                let max = run.iter().map(|&i| width(&lines[i])).max().unwrap_or(0);
                for &i in run.iter() {
                    let line = &mut lines[i];
                    let w = width(line);
                    if let Some((_, at)) = line.pad {
                        line.text.insert_str(at, &" ".repeat(max - w));
                    }
                }
            }
            run.clear();
        };
        for row in rows {
            if matches!(row, Row::Comment { .. }) {
                // A comment line between two steps does not separate them.
                continue;
            }
            let key = match row {
                Row::Code { line, prefix, .. } if prefix.is_empty() => {
                    let l = &self.lines[*line];
                    l.pad.map(|(kind, _)| (kind, l.indent))
                }
                _ => None,
            };
            let same = match (key, run.last()) {
                (Some(k), Some(&last)) => {
                    let l = &self.lines[last];
                    l.pad.map(|(kind, _)| (kind, l.indent)) == Some(k)
                }
                _ => false,
            };
            if !same {
                flush(&mut run, &mut self.lines);
            }
            if key.is_some()
                && let Row::Code { line, .. } = row
            {
                run.push(*line);
            }
        }
        flush(&mut run, &mut self.lines);
    }

    /// Writes the rows; trailing comments of consecutive one-line rows at one indentation
    /// (not opening or closing a list) start in one column, two spaces after the longest code.
    fn write(&self, rows: &[Row]) -> String {
        let code_of = |row: &Row| -> Option<(String, usize)> {
            let Row::Code { line, prefix, .. } = row else {
                return None;
            };
            let l = &self.lines[*line];
            let mut s = INDENT.repeat(l.indent);
            if !prefix.is_empty() {
                s.push_str(prefix);
                s.push(' ');
            }
            s.push_str(&l.text);
            Some((s, l.indent))
        };
        // The column of each row's trailing comment.
        let mut columns: Vec<Option<usize>> = vec![None; rows.len()];
        let mut i = 0;
        while i < rows.len() {
            // Lines that open or close a list stand alone: their comments are about the
            // list, not about the statement next to them.
            let alignable = |r: &Row| match r {
                Row::Code { line, trailing, .. }
                    if !trailing.is_empty()
                        && !self.lines[*line].opens
                        && !self.lines[*line].closer =>
                {
                    code_of(r).filter(|(s, _)| !s.contains('\n'))
                }
                _ => None,
            };
            let Some((_, indent)) = alignable(&rows[i]) else {
                i += 1;
                continue;
            };
            let mut j = i;
            let mut max = 0;
            while j < rows.len() {
                match alignable(&rows[j]) {
                    Some((s, ind)) if ind == indent => max = max.max(s.chars().count()),
                    _ => break,
                }
                j += 1;
            }
            for c in &mut columns[i..j] {
                *c = Some(max + 2);
            }
            i = j;
        }
        let mut out = String::new();
        if self.text.starts_with('\u{feff}') {
            out.push('\u{feff}');
        }
        // Line breaks as the file writes them (its first one): `\r\n` or `\n`. Breaks inside
        // `"""` blocks and block comments are copied as they are.
        let eol = match self.text.find('\n') {
            Some(i) if self.text[..i].ends_with('\r') => "\r\n",
            _ => "\n",
        };
        for (row, column) in rows.iter().zip(columns) {
            match row {
                Row::Blank => {}
                Row::Comment { indent, text } => {
                    out.push_str(&INDENT.repeat(*indent));
                    out.push_str(text);
                }
                Row::Code { trailing, .. } => {
                    let (code, _) = code_of(row).unwrap_or_default();
                    out.push_str(&code);
                    if !trailing.is_empty() {
                        let last = code.rsplit('\n').next().unwrap_or("").chars().count();
                        let pad = column.map_or(2, |c| c.saturating_sub(last).max(2));
                        out.push_str(&" ".repeat(pad));
                        out.push_str(trailing);
                    }
                }
            }
            out.push_str(eol);
        }
        out
    }
}

/// One row of output: a blank line, a comment on its own line, or a line of code with the
/// comments written on it.
#[derive(Debug)]
enum Row {
    Blank,
    Comment {
        indent: usize,
        text: String,
    },
    Code {
        line: usize,
        /// Block comments written before the code.
        prefix: String,
        /// Comments after it, joined.
        trailing: String,
    },
}
