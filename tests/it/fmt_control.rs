//! Property test of `orch fmt` on random control flow: `parallel for`, `repeat ... until`,
//! `if` / `else if` / `else`, with random conditions (extra parentheses included), random
//! layouts (`until` and `else` on the line after `}`, one-line bodies) and comments in and
//! around the constructs.
//!
//! Only the formatter is tested here, not the checker: the scripts parse but their names do
//! not resolve. (`generated` generates scripts that must also check without errors,
//! which is why these constructs are not generated there.) For each script, formatting keeps
//! the program (the AST, spans aside) and every comment, and formatting the result again
//! changes nothing.
//!
//! Cases: 256, or `PROPTEST_CASES=N`.

use orch::diag::FileId;
use orch::fmt::{format_source, same_program};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::common::proptest_config;
use crate::fmt::comments;

// ---------------------------------------------------------------------------- conditions

const OPERANDS: &[&str] = &[
    "v", "v.ok", "plan.n", "\"x\"", "\"{v}\"", "3", "2.5", "true", "false",
];
const OPS: &[&str] = &["==", "!=", "<", "<=", ">", ">="];

#[derive(Debug, Clone)]
enum Cond {
    Operand(usize),
    Compare(usize, usize, usize),
    Not(Box<Cond>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    /// Parentheses that may not be needed: the formatter drops those.
    Paren(Box<Cond>),
}

fn cond() -> impl Strategy<Value = Cond> {
    let leaf = prop_oneof![
        (0..OPERANDS.len()).prop_map(Cond::Operand),
        (0..OPERANDS.len(), 0..OPS.len(), 0..OPERANDS.len())
            .prop_map(|(a, op, b)| Cond::Compare(a, op, b)),
    ];
    leaf.prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|c| Cond::Not(Box::new(c))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Cond::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Cond::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|c| Cond::Paren(Box::new(c))),
        ]
    })
}

/// Binding strength, as in the grammar: `or` 1, `and` 2, `not` 3, an operand or comparison 4.
fn strength(c: &Cond) -> u8 {
    match c {
        Cond::Or(..) => 1,
        Cond::And(..) => 2,
        Cond::Not(_) => 3,
        Cond::Operand(_) | Cond::Compare(..) | Cond::Paren(_) => 4,
    }
}

/// The condition as text that parses to its tree: parentheses where they are needed (the
/// parser groups `and` and `or` to the left) and where the tree has them.
fn render_cond(c: &Cond) -> String {
    let sub = |c: &Cond, min: u8| {
        let s = render_cond(c);
        if strength(c) < min {
            format!("({s})")
        } else {
            s
        }
    };
    match c {
        Cond::Operand(i) => OPERANDS[*i].to_string(),
        Cond::Compare(a, op, b) => format!("{}{}{}", OPERANDS[*a], OPS[*op], OPERANDS[*b]),
        Cond::Not(inner) => format!("not {}", sub(inner, 3)),
        Cond::And(a, b) => format!("{} and {}", sub(a, 2), sub(b, 3)),
        Cond::Or(a, b) => format!("{} or {}", sub(a, 1), sub(b, 2)),
        Cond::Paren(inner) => format!("( {} )", render_cond(inner)),
    }
}

// ---------------------------------------------------------------------------- statements

#[derive(Debug, Clone)]
enum Stmt {
    Step,
    For {
        named: bool,
        max: Option<u8>,
        /// A list literal (broken over lines when `true`), or a path.
        list: Option<bool>,
        body: Body,
    },
    Repeat {
        max: u8,
        body: Body,
        until: Cond,
        /// `// c` after the condition.
        comment: bool,
    },
    If {
        arms: Vec<(Cond, Body)>,
        otherwise: Option<Body>,
    },
}

#[derive(Debug, Clone)]
struct Body {
    stmts: Vec<Stmt>,
    /// On one line, separated by `;` (when nothing inside needs its own line).
    inline: bool,
    /// `until`, `else` or the next statement on the line after the `}`.
    next_line: bool,
    /// 0: none; 1: `// c` after the `{`; 2: a `/* c */` after the `}`; 3: `// c` after the `}`
    /// (then a line break); 4: `// c` on its own line in the body.
    comment: u8,
}

fn body(stmt: BoxedStrategy<Stmt>) -> impl Strategy<Value = Body> {
    (
        vec(stmt, 0..3),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![3 => Just(0u8), 1 => 1u8..5],
    )
        .prop_map(|(stmts, inline, next_line, comment)| Body {
            stmts,
            inline,
            next_line,
            comment,
        })
}

fn stmt() -> BoxedStrategy<Stmt> {
    let leaf = Just(Stmt::Step).boxed();
    leaf.prop_recursive(3, 24, 3, |inner| {
        prop_oneof![
            2 => Just(Stmt::Step),
            1 => (
                any::<bool>(),
                proptest::option::of(1u8..5),
                proptest::option::of(any::<bool>()),
                body(inner.clone()),
            )
                .prop_map(|(named, max, list, body)| Stmt::For {
                    named,
                    max,
                    list,
                    body,
                }),
            1 => (1u8..5, body(inner.clone()), cond(), proptest::bool::weighted(0.2))
                .prop_map(|(max, body, until, comment)| Stmt::Repeat {
                    max,
                    body,
                    until,
                    comment,
                }),
            1 => (
                vec((cond(), body(inner.clone())), 1..4),
                proptest::option::of(body(inner)),
            )
                .prop_map(|(arms, otherwise)| Stmt::If { arms, otherwise }),
        ]
        .boxed()
    })
    .boxed()
}

// ---------------------------------------------------------------------------- rendering

struct Renderer {
    out: String,
    steps: usize,
}

impl Renderer {
    fn indent(&mut self, level: usize) {
        self.out.push_str(&"  ".repeat(level));
    }

    /// Statements each on its own line at `level`.
    fn lines(&mut self, stmts: &[Stmt], level: usize) {
        for s in stmts {
            self.indent(level);
            self.stmt(s, level);
            self.out.push('\n');
        }
    }

    fn stmt(&mut self, s: &Stmt, level: usize) {
        match s {
            Stmt::Step => {
                self.out.push_str(&format!("s{} = a(\"go\")", self.steps));
                self.steps += 1;
            }
            Stmt::For {
                named,
                max,
                list,
                body,
            } => {
                if *named {
                    self.out.push_str(&format!("p{} = ", self.steps));
                    self.steps += 1;
                }
                self.out.push_str("parallel");
                if let Some(m) = max {
                    self.out.push_str(&format!(" <max {m}>"));
                }
                self.out.push_str(" for x in ");
                self.out.push_str(match list {
                    None => "plan.items",
                    Some(false) => "[\"a\", \"b\"]",
                    Some(true) => "[\n\"a\", // first\n\"b\"\n]",
                });
                self.out.push(' ');
                self.body(body, level, "");
            }
            Stmt::Repeat {
                max,
                body,
                until,
                comment,
            } => {
                self.out.push_str(&format!("repeat <max {max}> "));
                let until = format!("until {}", render_cond(until));
                self.body(body, level, &until);
                if *comment {
                    // A statement always ends its line.
                    self.out.push_str(" // after until");
                }
            }
            Stmt::If { arms, otherwise } => {
                for (k, (c, b)) in arms.iter().enumerate() {
                    self.out.push_str(&format!("if {} ", render_cond(c)));
                    let more = k + 1 < arms.len() || otherwise.is_some();
                    self.body(b, level, if more { "else" } else { "" });
                    if more {
                        self.out.push(' ');
                    }
                }
                if let Some(b) = otherwise {
                    self.body(b, level, "");
                }
            }
        }
    }

    /// `{ ... }`, then `after` (the `until COND` or `else` that follows, if any) on the line
    /// of the `}` or the next one.
    fn body(&mut self, b: &Body, level: usize, after: &str) {
        let simple = b.stmts.iter().all(|s| matches!(s, Stmt::Step));
        self.out.push('{');
        if b.comment == 1 {
            self.out.push_str(" // opens\n");
        }
        if b.inline && simple && b.comment != 1 && b.comment != 4 {
            for (k, s) in b.stmts.iter().enumerate() {
                self.out.push_str(if k == 0 { " " } else { "; " });
                self.stmt(s, level + 1);
            }
            self.out.push_str(" }");
        } else {
            if b.comment != 1 {
                self.out.push('\n');
            }
            if b.comment == 4 {
                self.indent(level + 1);
                self.out.push_str("// inside\n");
            }
            self.lines(&b.stmts, level + 1);
            self.indent(level);
            self.out.push('}');
        }
        match b.comment {
            2 => self.out.push_str(" /* closes */"),
            3 => self.out.push_str(" // closes\n"),
            _ => {}
        }
        if after.is_empty() {
            return;
        }
        if b.next_line || b.comment == 3 {
            if b.comment != 3 {
                self.out.push('\n');
            }
            self.indent(level);
        } else {
            self.out.push(' ');
        }
        self.out.push_str(after);
    }
}

fn script() -> impl Strategy<Value = String> {
    vec(stmt(), 1..4).prop_map(|stmts| {
        let mut r = Renderer {
            out: String::from("workflow main() {\n"),
            steps: 0,
        };
        r.lines(&stmts, 1);
        r.out.push_str("}\n");
        r.out
    })
}

// ---------------------------------------------------------------------------- the property

proptest! {
    #![proptest_config(proptest_config::config(256))]

    /// Random control flow formats faithfully and idempotently.
    #[test]
    fn control_flow_formats_faithfully_and_idempotently(text in script()) {
        let before = orch::syntax::parse(FileId(0), &text)
            .map_err(|d| TestCaseError::fail(format!("the generator's script does not parse: {}\n{text}", d.message)))?;
        let once = format_source(&text)
            .map_err(|d| TestCaseError::fail(format!("fmt refuses: {}\n{text}", d.message)))?;
        let after = orch::syntax::parse(FileId(0), &once)
            .map_err(|d| TestCaseError::fail(format!("the result does not parse: {}\n{once}", d.message)))?;
        prop_assert!(same_program(&before, &after), "the meaning changed:\n{}\n---\n{}", text, once);
        prop_assert_eq!(comments(&text), comments(&once), "comments changed:\n{}\n---\n{}", text, once);
        let twice = format_source(&once)
            .map_err(|d| TestCaseError::fail(format!("second pass refused: {}\n{once}", d.message)))?;
        prop_assert_eq!(&twice, &once, "not idempotent:\n{}\n---\n{}", text, once);
    }
}
