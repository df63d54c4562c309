//! Property test of taint (docs/language.md, "Command agents and taint"): model output may
//! reach a command's argv by no route at all, and nothing else is reported as if it did.
//!
//! A generated [`E`] is a tree of ways to make a value — a model step, a workflow input,
//! literal text, a command given a value on stdin, a command ordered `after` a value (which
//! passes nothing), an approval, a structured field, a workflow call (its `return`, a field of
//! its `return`, or its last step), a `parallel for` block's value and its items, an `if`
//! whose branches define one name, a `repeat` (the last iteration's value, or the previous
//! iteration's read before its definition), a `parallel` block read whole or by member, and a
//! `then` branch — nested to any depth. Any of them may pass its value to the argv of a
//! command (`sink`) or to one's environment (`envsink`, which is allowed). Rendering the tree
//! to `.orch` computes, independently of the checker and by these rules alone, whether each
//! value derives from a model; the checker must report E0602 at exactly the `sink` steps
//! whose argument does, and no other error. A checker that flagged every `sink` fails as
//! surely as one that missed a route.
//!
//! Cases: 256, or `PROPTEST_CASES=N`.

use std::collections::BTreeSet;
use std::path::Path;

use orch::resolve::ResolveOptions;
use proptest::prelude::*;

use crate::common::proptest_config;

/// A way to make a value.
#[derive(Debug, Clone)]
enum E {
    /// `m = writer("... {e}")`: model output, whatever it reads.
    Model(Box<E>),
    /// The workflow's input (`q` in `main`, the parameter `x` in a called workflow).
    Input,
    /// Literal text.
    Text,
    /// The item of the innermost enclosing `parallel for` (the input outside any).
    Item,
    /// `c = cat("{e}")`: a command given the value on stdin.
    Stdin(Box<E>),
    /// `c = cat("fixed") after e`: ordered after the value, reads nothing.
    After(Box<E>),
    /// `a = approve("... {e}")`: a person's answer.
    Approve(Box<E>),
    /// `r = cat("{e}") -> { f: text }`, read as `r.f`.
    Field(Box<E>),
    /// `k = sink(arg: "{e}")`: the value in argv; the value is the command's output.
    Sink(Box<E>),
    /// `k = envsink(v: "{e}")`: the value in the environment.
    EnvSink(Box<E>),
    /// A call of a workflow of its own, given `arg`, whose body makes `body` from it.
    Call { arg: Box<E>, body: Box<E>, ret: Ret },
    /// `rs = parallel for it in LIST { ...; r = cat("{body}") }`, read whole.
    For { list: Box<L>, body: Box<E> },
    /// `if true { x = cat("{a}") } else { x = cat("{b}") }`, read after it.
    If { a: Box<E>, b: Box<E> },
    /// `repeat <max 2> { [y = cat("{x}")] ...; x = cat("{e}") } until true`: `x`, or `y`
    /// (which reads the previous iteration's `x`).
    Repeat { e: Box<E>, prev: bool },
    /// `b = parallel { b1 = cat("{e}"); b2 = cat("fixed") }`, read as a whole or by member.
    Block { e: Box<E>, member: Member },
    /// `b = parallel { then { t1 = cat("{e}"); t2 = cat("{t1}") }; o = cat("fixed") }`, read
    /// as `b.t2` (true) or `b.o` (false).
    Then { e: Box<E>, last: bool },
}

/// How a called workflow gives its value.
#[derive(Debug, Clone, Copy)]
enum Ret {
    /// `return "... {v}"`.
    Return,
    /// No `return`: its last step.
    Last,
    /// `-> { f: text }`, read as `call.f`.
    Field,
}

/// Which part of a `parallel` block is read.
#[derive(Debug, Clone, Copy)]
enum Member {
    Whole,
    Carrying,
    Other,
}

/// A list for a `parallel for`.
#[derive(Debug, Clone)]
enum L {
    /// `l = writer("...") -> list<text>`.
    Model,
    /// `["v {e}", "b"]`.
    Literal(Box<E>),
    /// Another `parallel for` block's value.
    For(Box<E>),
    /// The `items: list<text>` input of `main` (a literal list elsewhere).
    Input,
}

fn b(e: E) -> Box<E> {
    Box::new(e)
}

fn expr() -> impl Strategy<Value = E> {
    let leaf = prop_oneof![
        Just(E::Model(b(E::Text))),
        Just(E::Input),
        Just(E::Text),
        Just(E::Item),
    ];
    leaf.prop_recursive(6, 48, 2, |inner| {
        let list = prop_oneof![
            Just(L::Model),
            Just(L::Input),
            inner.clone().prop_map(|e| L::Literal(b(e))),
            inner.clone().prop_map(|e| L::For(b(e))),
        ];
        let ret = prop_oneof![Just(Ret::Return), Just(Ret::Last), Just(Ret::Field)];
        let member = prop_oneof![
            Just(Member::Whole),
            Just(Member::Carrying),
            Just(Member::Other)
        ];
        prop_oneof![
            inner.clone().prop_map(|e| E::Model(b(e))),
            inner.clone().prop_map(|e| E::Stdin(b(e))),
            inner.clone().prop_map(|e| E::After(b(e))),
            inner.clone().prop_map(|e| E::Approve(b(e))),
            inner.clone().prop_map(|e| E::Field(b(e))),
            inner.clone().prop_map(|e| E::Sink(b(e))),
            inner.clone().prop_map(|e| E::EnvSink(b(e))),
            (inner.clone(), inner.clone(), ret).prop_map(|(arg, body, ret)| E::Call {
                arg: b(arg),
                body: b(body),
                ret
            }),
            (list, inner.clone()).prop_map(|(list, body)| E::For {
                list: Box::new(list),
                body: b(body)
            }),
            (inner.clone(), inner.clone()).prop_map(|(a, c)| E::If { a: b(a), b: b(c) }),
            (inner.clone(), any::<bool>()).prop_map(|(e, prev)| E::Repeat { e: b(e), prev }),
            (inner.clone(), member).prop_map(|(e, member)| E::Block { e: b(e), member }),
            (inner, any::<bool>()).prop_map(|(e, last)| E::Then { e: b(e), last }),
        ]
    })
}

// ---------------------------------------------------------------------------- rendering

/// A value as it is read: a piece of template (`{m3}`, `{r2.f}`, `plain`), whether it
/// derives from a model, and a step or block to order `after` when there is one.
struct Val {
    frag: String,
    tainted: bool,
    anchor: Option<String>,
}

/// What a body may read: its input and the item of the innermost `for`.
#[derive(Clone)]
struct Cx {
    input: (String, bool),
    item: Option<(String, bool)>,
    in_main: bool,
}

#[derive(Default)]
struct Render {
    next: usize,
    /// Called workflows, in the order they were made.
    workflows: Vec<String>,
    /// Every `sink` step, with whether its argument derives from a model.
    sinks: Vec<(String, bool)>,
}

/// Statements being written, at an indentation.
struct Lines {
    out: Vec<String>,
    indent: usize,
}

impl Lines {
    fn push(&mut self, s: impl AsRef<str>) {
        self.out
            .push(format!("{}{}", "  ".repeat(self.indent), s.as_ref()));
    }
}

impl Render {
    fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn step(&mut self, prefix: &str, rhs: String, tainted: bool, out: &mut Lines) -> Val {
        let n = self.fresh(prefix);
        out.push(format!("{n} = {rhs}"));
        Val {
            frag: format!("{{{n}}}"),
            tainted,
            anchor: Some(n),
        }
    }

    fn expr(&mut self, e: &E, cx: &Cx, out: &mut Lines) -> Val {
        match e {
            E::Text => Val {
                frag: "plain".into(),
                tainted: false,
                anchor: None,
            },
            E::Input => Val {
                frag: cx.input.0.clone(),
                tainted: cx.input.1,
                anchor: None,
            },
            E::Item => {
                let (frag, tainted) = cx.item.clone().unwrap_or_else(|| cx.input.clone());
                Val {
                    frag,
                    tainted,
                    anchor: None,
                }
            }
            E::Model(e) => {
                let v = self.expr(e, cx, out);
                self.step("m", format!("writer(\"say {}\")", v.frag), true, out)
            }
            E::Stdin(e) => {
                let v = self.expr(e, cx, out);
                self.step("c", format!("cat(\"{}\")", v.frag), v.tainted, out)
            }
            E::After(e) => {
                let v = self.expr(e, cx, out);
                let after = v.anchor.map(|a| format!(" after {a}")).unwrap_or_default();
                self.step("o", format!("cat(\"fixed\"){after}"), false, out)
            }
            E::Approve(e) => {
                let v = self.expr(e, cx, out);
                self.step("a", format!("approve(\"ok {}?\")", v.frag), false, out)
            }
            E::Field(e) => {
                let v = self.expr(e, cx, out);
                let r = self.fresh("r");
                out.push(format!("{r} = cat(\"{}\") -> {{ f: text }}", v.frag));
                Val {
                    frag: format!("{{{r}.f}}"),
                    tainted: v.tainted,
                    anchor: Some(r),
                }
            }
            E::Sink(e) => {
                let v = self.expr(e, cx, out);
                let k = self.step("k", format!("sink(arg: \"v {}\")", v.frag), v.tainted, out);
                let name = k.anchor.clone().expect("a step");
                self.sinks.push((name, v.tainted));
                k
            }
            E::EnvSink(e) => {
                let v = self.expr(e, cx, out);
                self.step("e", format!("envsink(v: \"{}\")", v.frag), v.tainted, out)
            }
            E::Call { arg, body, ret } => self.call(arg, body, *ret, cx, out),
            E::For { list, body } => self.for_block(list, body, cx, out),
            E::If { a, b } => {
                let x = self.fresh("x");
                out.push("if true {");
                out.indent += 1;
                let va = self.expr(a, cx, out);
                out.push(format!("{x} = cat(\"{}\")", va.frag));
                out.indent -= 1;
                out.push("} else {");
                out.indent += 1;
                let vb = self.expr(b, cx, out);
                out.push(format!("{x} = cat(\"{}\")", vb.frag));
                out.indent -= 1;
                out.push("}");
                Val {
                    frag: format!("{{{x}}}"),
                    tainted: va.tainted || vb.tainted,
                    anchor: None,
                }
            }
            E::Repeat { e, prev } => {
                let x = self.fresh("x");
                let y = self.fresh("y");
                out.push("repeat <max 2> {");
                out.indent += 1;
                if *prev {
                    out.push(format!("{y} = cat(\"{{{x}}}\")"));
                }
                let v = self.expr(e, cx, out);
                out.push(format!("{x} = cat(\"{}\")", v.frag));
                out.indent -= 1;
                out.push("} until true");
                Val {
                    frag: format!("{{{}}}", if *prev { &y } else { &x }),
                    tainted: v.tainted,
                    anchor: None,
                }
            }
            E::Block { e, member } => {
                let v = self.expr(e, cx, out);
                let (blk, b1, b2) = (self.fresh("b"), self.fresh("b"), self.fresh("b"));
                out.push(format!("{blk} = parallel {{"));
                out.push(format!("  {b1} = cat(\"{}\")", v.frag));
                out.push(format!("  {b2} = cat(\"fixed\")"));
                out.push("}");
                let (frag, tainted) = match member {
                    Member::Whole => (format!("{{{blk}}}"), v.tainted),
                    Member::Carrying => (format!("{{{blk}.{b1}}}"), v.tainted),
                    Member::Other => (format!("{{{blk}.{b2}}}"), false),
                };
                Val {
                    frag,
                    tainted,
                    anchor: Some(blk),
                }
            }
            E::Then { e, last } => {
                let v = self.expr(e, cx, out);
                let (blk, t1, t2, o) = (
                    self.fresh("b"),
                    self.fresh("t"),
                    self.fresh("t"),
                    self.fresh("o"),
                );
                out.push(format!("{blk} = parallel {{"));
                out.push(format!(
                    "  then {{ {t1} = cat(\"{}\"); {t2} = cat(\"{{{t1}}}\") }}",
                    v.frag
                ));
                out.push(format!("  {o} = cat(\"fixed\")"));
                out.push("}");
                let (frag, tainted) = if *last {
                    (format!("{{{blk}.{t2}}}"), v.tainted)
                } else {
                    (format!("{{{blk}.{o}}}"), false)
                };
                Val {
                    frag,
                    tainted,
                    anchor: Some(blk),
                }
            }
        }
    }

    /// A workflow of its own, called once: its parameter `x` holds the argument.
    fn call(&mut self, arg: &E, body: &E, ret: Ret, cx: &Cx, out: &mut Lines) -> Val {
        let a = self.expr(arg, cx, out);
        let w = self.fresh("w");
        let inner = Cx {
            input: ("{x}".into(), a.tainted),
            item: None,
            in_main: false,
        };
        let mut lines = Lines {
            out: Vec::new(),
            indent: 1,
        };
        let v = self.expr(body, &inner, &mut lines);
        let header = match ret {
            Ret::Return => {
                lines.push(format!("return \"got {}\"", v.frag));
                format!("workflow {w}(x: text) -> text {{")
            }
            Ret::Last => {
                let l = self.fresh("l");
                lines.push(format!("{l} = cat(\"{}\")", v.frag));
                format!("workflow {w}(x: text) {{")
            }
            Ret::Field => {
                let r = self.fresh("r");
                lines.push(format!("{r} = cat(\"{}\") -> {{ f: text }}", v.frag));
                lines.push(format!("return {r}"));
                format!("workflow {w}(x: text) -> {{ f: text }} {{")
            }
        };
        let text = std::iter::once(header)
            .chain(lines.out)
            .chain(std::iter::once("}".to_string()))
            .collect::<Vec<_>>()
            .join("\n");
        self.workflows.push(text);
        let c = self.fresh("call");
        out.push(format!("{c} = {w}(x: \"{}\")", a.frag));
        let frag = match ret {
            Ret::Field => format!("{{{c}.f}}"),
            _ => format!("{{{c}}}"),
        };
        Val {
            frag,
            tainted: v.tainted,
            anchor: Some(c),
        }
    }

    fn for_block(&mut self, list: &L, body: &E, cx: &Cx, out: &mut Lines) -> Val {
        let (list, list_tainted) = match list {
            L::Model => {
                let l = self.fresh("l");
                out.push(format!("{l} = writer(\"list\") -> list<text>"));
                (l, true)
            }
            L::Input if cx.in_main => ("items".to_string(), false),
            L::Input => ("[\"a\", \"b\"]".to_string(), false),
            L::Literal(e) => {
                let v = self.expr(e, cx, out);
                (format!("[\"v {}\", \"b\"]", v.frag), v.tainted)
            }
            L::For(e) => {
                let v = self.for_block(&L::Input, e, cx, out);
                (v.frag.trim_matches(['{', '}']).to_string(), v.tainted)
            }
        };
        let (rs, it, r) = (self.fresh("rs"), self.fresh("it"), self.fresh("r"));
        out.push(format!("{rs} = parallel for {it} in {list} {{"));
        out.indent += 1;
        let inner = Cx {
            item: Some((format!("{{{it}}}"), list_tainted)),
            ..cx.clone()
        };
        let v = self.expr(body, &inner, out);
        out.push(format!("{r} = cat(\"{}\")", v.frag));
        out.indent -= 1;
        out.push("}");
        Val {
            frag: format!("{{{rs}}}"),
            tainted: v.tainted,
            anchor: Some(rs),
        }
    }
}

const HEADER: &str = r#"include "std/models.orch"
agent writer { model: haiku, max_tokens: 50 }
agent cat { run: ["cat"] }
agent sink(arg: text) { run: ["echo", "{arg}"] }
agent envsink(v: text) { run: ["printenv", "V"], env: { V: "{v}" } }
"#;

/// The script for `e`, with each `sink` step's name and whether model output reaches it.
fn render(e: &E) -> (String, Vec<(String, bool)>) {
    let mut r = Render::default();
    let cx = Cx {
        input: ("{q}".into(), false),
        item: None,
        in_main: true,
    };
    let mut lines = Lines {
        out: Vec::new(),
        indent: 1,
    };
    // The value itself goes to a last `sink`.
    r.expr(&E::Sink(b(e.clone())), &cx, &mut lines);
    let mut text = String::from(HEADER);
    for w in &r.workflows {
        text.push('\n');
        text.push_str(w);
        text.push('\n');
    }
    text.push_str("\nworkflow main(q: text, items: list<text>) {\n");
    for l in &lines.out {
        text.push_str(l);
        text.push('\n');
    }
    text.push_str("}\n");
    (text, r.sinks)
}

/// The `sink` steps the checker reports E0602 at (by the step on the error's line), and its
/// other errors.
fn reported(text: &str) -> (BTreeSet<String>, Vec<String>) {
    let (program, diags) = orch::compile_source(
        "taint.orch",
        text,
        Path::new("."),
        &ResolveOptions::default(),
    );
    let mut flagged = BTreeSet::new();
    let mut other = Vec::new();
    for d in diags.iter() {
        if d.severity != orch::diag::Severity::Error {
            continue;
        }
        // The statement of each label: the `sink` step is the primary's, or a secondary's
        // when the argument was written at a call.
        let lines: Vec<&str> = std::iter::once(&d.primary)
            .chain(&d.secondary)
            .map(|l| {
                let text = &program.sources.get(l.span.file).text;
                let start = text[..l.span.start as usize]
                    .rfind('\n')
                    .map_or(0, |i| i + 1);
                text[start..].lines().next().unwrap_or("").trim()
            })
            .collect();
        let sink = lines
            .iter()
            .find_map(|l| l.split_once(" = sink(").map(|(k, _)| k.to_string()));
        match sink {
            Some(k) if d.code == "E0602" => {
                flagged.insert(k);
            }
            _ => other.push(format!("{} {} (on `{}`)", d.code, d.message, lines[0])),
        }
    }
    (flagged, other)
}

proptest! {
    #![proptest_config(proptest_config::config(256))]

    /// E0602 is reported at exactly the `sink` steps that model output reaches, by whatever
    /// route, and the scripts have no other error.
    #[test]
    fn model_output_reaches_argv_exactly_where_reported(e in expr()) {
        let (text, sinks) = render(&e);
        let expected: BTreeSet<String> =
            sinks.iter().filter(|(_, t)| *t).map(|(k, _)| k.clone()).collect();
        let (flagged, other) = reported(&text);
        prop_assert!(other.is_empty(), "unexpected errors {:?}\n--- script:\n{}", other, text);
        prop_assert_eq!(
            &flagged,
            &expected,
            "E0602 at {:?}, expected at {:?}\n--- script:\n{}",
            flagged,
            expected,
            text
        );
    }
}

/// Both answers occur: the generator makes scripts where model output reaches argv and
/// scripts where it does not, so the property cannot pass by flagging everything or nothing.
#[test]
fn the_generator_makes_both_tainted_and_clean_sinks() {
    let tainted = E::Call {
        arg: b(E::Text),
        body: b(E::For {
            list: Box::new(L::For(b(E::Model(b(E::Text))))),
            body: b(E::Item),
        }),
        ret: Ret::Field,
    };
    let clean = E::Call {
        arg: b(E::Model(b(E::Text))),
        body: b(E::After(b(E::Input))),
        ret: Ret::Last,
    };
    for (e, expect) in [(tainted, true), (clean, false)] {
        let (text, sinks) = render(&e);
        let (flagged, other) = reported(&text);
        assert!(other.is_empty(), "{other:?}\n{text}");
        assert_eq!(sinks.len(), 1, "{text}");
        assert_eq!(flagged.len() == 1, expect, "{flagged:?}\n{text}");
    }
}
