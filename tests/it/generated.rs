//! Property tests over random *valid* scripts.
//!
//! A [`Script`] is a tree of choices (models, agents, a workflow of steps, `parallel` blocks with
//! `max N` and `batch`, `then` branches, `gather` policies, `after` clauses, interpolations of
//! earlier names and of block members, `return`), rendered to `.orch` text by [`render`]. Every
//! reference is a [`proptest::sample::Index`] into the names that may be used at that point, resolved
//! while rendering, so every script is valid by construction and stays valid while proptest
//! shrinks it. Generated programs are natural: a step only uses names defined before it, and
//! every step's output is used (the `return`, or a final step, interpolates what nothing else
//! did). Names are numbered (`s0`, `b1`, `a2`, `m0`), so a shrunk failure reads easily.
//!
//! Properties, for each script:
//! - (a) the checker reports no error (warnings are allowed: lints come and go);
//! - (b) `orch fmt` accepts it, its output parses to the same program, formatting that output
//!   again changes nothing, and the output still checks without errors;
//! - (c) the plan builds: one node per step, every dependency on a lower level, one group per
//!   `parallel` block.
//!
//! Cases: [`DEFAULT_CASES`], or `PROPTEST_CASES=N`. The large-script generator of the
//! benchmark (`benches/large_script`) is tested here too, on a smaller size.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use orch::diag::{Diagnostics, FileId, Span};
use orch::resolve::ResolveOptions;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, subsequence};

use crate::common::proptest_config;

#[path = "../../benches/large_script/mod.rs"]
mod large_script;

/// Cases per run unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 256;

// ---------------------------------------------------------------------------- the choices

/// The models: `include "std/models.orch"`, declared simulator models, or both (at least one).
#[derive(Debug, Clone)]
struct Models {
    std: bool,
    sim: Vec<SimModel>,
    latency_ms: Option<u16>,
    max_concurrency: Option<u8>,
}

#[derive(Debug, Clone)]
struct SimModel {
    tier: Option<usize>,
    price: Option<(u8, u8)>,
    max_tokens: Option<u16>,
    api_name: bool,
}

#[derive(Debug, Clone)]
enum AgentSpec {
    Model(ModelAgent),
    Command(CommandAgent),
}

#[derive(Debug, Clone)]
struct ModelAgent {
    pin: Option<Index>,
    complexity: Option<usize>,
    max_tokens: Option<u16>,
    temperature: Option<u8>,
    policy: Policy,
    fallback: Option<Index>,
    /// A `focus` parameter used in the system text; `Some(true)` when it has a default.
    focus: Option<bool>,
    doc: bool,
    triple_system: bool,
}

#[derive(Debug, Clone)]
struct CommandAgent {
    /// A `tag` parameter in argv (always passed, never model output).
    tag: bool,
    /// A `notes` parameter in env (with a default).
    notes: bool,
    policy: Policy,
    cwd: bool,
}

/// `retry` and `timeout`, as fields or options.
#[derive(Debug, Clone)]
struct Policy {
    retry: Option<u8>,
    timeout_s: Option<u16>,
}

#[derive(Debug, Clone)]
struct Workflow {
    params: Vec<&'static str>,
    return_type: bool,
    budget_cents: Option<u16>,
    model: Option<Index>,
    policy: Policy,
    fallback: Option<Index>,
    body: Vec<Stmt>,
    /// `return` (true) or a final summary step (false).
    explicit_return: bool,
}

#[derive(Debug, Clone)]
enum Stmt {
    Step(Step),
    Parallel(Block),
    /// A `then` block in a sequence: it only groups.
    Then(Vec<Stmt>),
}

#[derive(Debug, Clone)]
struct Block {
    named: bool,
    max: Option<u8>,
    model: Option<Index>,
    policy: Policy,
    fallback: Option<Index>,
    /// `batch`: its model requests go in provider batches.
    batch: bool,
    branches: Vec<Branch>,
    /// Rendered only where a `gather` may follow the block (in a sequence).
    gather: Option<(GatherPolicy, Step)>,
}

#[derive(Debug, Clone)]
enum Branch {
    Step(Step),
    Then(Vec<Stmt>),
    Parallel(Block),
}

#[derive(Debug, Clone)]
enum GatherPolicy {
    Default,
    All,
    Any,
    First(Index),
    Min(Index),
}

#[derive(Debug, Clone)]
struct Step {
    agent: Index,
    prompt: Prompt,
    call_model: Option<Index>,
    policy: Policy,
    fallback: Option<Index>,
    after: Vec<Index>,
    /// The value of a parameter argument, when the agent has one.
    arg: ArgForm,
    comment: Option<usize>,
}

#[derive(Debug, Clone)]
struct Prompt {
    words: Vec<Index>,
    refs: Vec<Index>,
    /// 0: a string, 1: a `"""` block, 2: a bare name (when there is a reference).
    form: usize,
    escapes: bool,
}

#[derive(Debug, Clone)]
enum ArgForm {
    Omit,
    Literal,
    Ref(Index),
}

/// How the text is laid out: every choice `false` is the tidy layout.
#[derive(Debug, Clone)]
struct Style {
    tabs: bool,
    blank_lines: bool,
    compact: bool,
    tight: bool,
}

#[derive(Debug, Clone)]
struct Script {
    models: Models,
    agents: Vec<AgentSpec>,
    workflow: Workflow,
    style: Style,
}

// ---------------------------------------------------------------------------- strategies

const WORDS: &[&str] = &[
    "Review",
    "the",
    "plan",
    "for",
    "Summarise",
    "risks",
    "of",
    "and",
    "list",
    "tests",
    "API",
    "schema",
    "draft",
    "briefly",
    "in",
    "three",
    "points",
    "Compare",
    "design",
    "findings",
];

/// Workflow parameters: name, declaration, and the references it offers.
const PARAMS: &[(&str, &str, &[&str])] = &[
    ("q", "q: text", &["q"]),
    ("n", "n: number = 3", &["n"]),
    ("flag", "flag: bool = false", &["flag"]),
    ("items", "items: list<text>", &["items"]),
    ("ctx", "ctx: json", &["ctx", "ctx.repo"]),
    (
        "brief",
        "brief: { topic: text, depth: number }",
        &["brief", "brief.topic"],
    ),
    ("lang", "lang = \"en\"", &["lang"]),
];

const TIERS: &[&str] = &["fast", "balanced", "deep"];
const COMPLEXITIES: &[&str] = &["low", "medium", "high"];

fn policy() -> impl Strategy<Value = Policy> {
    (
        proptest::option::weighted(0.2, 0u8..4),
        proptest::option::weighted(0.2, 1u16..600),
    )
        .prop_map(|(retry, timeout_s)| Policy { retry, timeout_s })
}

fn models() -> impl Strategy<Value = Models> {
    let sim = (
        proptest::option::of(0..TIERS.len()),
        proptest::option::of((0u8..20, 0u8..80)),
        proptest::option::weighted(0.3, 50u16..4000),
        any::<bool>(),
    )
        .prop_map(|(tier, price, max_tokens, api_name)| SimModel {
            tier,
            price,
            max_tokens,
            api_name,
        });
    (
        any::<bool>(),
        vec(sim, 0..3),
        proptest::option::of(0u16..100),
        proptest::option::weighted(0.3, 1u8..5),
    )
        .prop_map(|(std, sim, latency_ms, max_concurrency)| Models {
            std: std || sim.is_empty(),
            sim,
            latency_ms,
            max_concurrency,
        })
}

fn model_agent() -> impl Strategy<Value = ModelAgent> {
    (
        proptest::option::weighted(0.7, any::<Index>()),
        proptest::option::of(0..COMPLEXITIES.len()),
        proptest::option::of(50u16..2000),
        proptest::option::weighted(0.3, 0u8..11),
        policy(),
        proptest::option::weighted(0.2, any::<Index>()),
        proptest::option::weighted(0.3, any::<bool>()),
        any::<bool>(),
        proptest::bool::weighted(0.15),
    )
        .prop_map(
            |(pin, complexity, max_tokens, temperature, policy, fallback, focus, doc, triple)| {
                ModelAgent {
                    pin,
                    complexity,
                    max_tokens,
                    temperature,
                    policy,
                    fallback,
                    focus,
                    doc,
                    triple_system: triple,
                }
            },
        )
}

fn agent() -> impl Strategy<Value = AgentSpec> {
    let command = (
        any::<bool>(),
        any::<bool>(),
        policy(),
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(tag, notes, policy, cwd)| {
            AgentSpec::Command(CommandAgent {
                tag,
                notes,
                policy,
                cwd,
            })
        });
    prop_oneof![3 => model_agent().prop_map(AgentSpec::Model), 1 => command]
}

fn prompt() -> impl Strategy<Value = Prompt> {
    (
        vec(any::<Index>(), 1..6),
        vec(any::<Index>(), 0..4),
        prop_oneof![6 => Just(0usize), 1 => Just(1usize), 2 => Just(2usize)],
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(words, refs, form, escapes)| Prompt {
            words,
            refs,
            form,
            escapes,
        })
}

fn step() -> impl Strategy<Value = Step> {
    let arg = prop_oneof![
        Just(ArgForm::Omit),
        Just(ArgForm::Literal),
        any::<Index>().prop_map(ArgForm::Ref)
    ];
    (
        any::<Index>(),
        prompt(),
        proptest::option::weighted(0.2, any::<Index>()),
        policy(),
        proptest::option::weighted(0.1, any::<Index>()),
        vec(any::<Index>(), 0..3).prop_map(|mut v| {
            // Most steps have no `after`.
            v.truncate(v.len().saturating_sub(1));
            v
        }),
        arg,
        proptest::option::weighted(0.15, 0usize..3),
    )
        .prop_map(
            |(agent, prompt, call_model, policy, fallback, after, arg, comment)| Step {
                agent,
                prompt,
                call_model,
                policy,
                fallback,
                after,
                arg,
                comment,
            },
        )
}

fn gather_policy() -> impl Strategy<Value = GatherPolicy> {
    prop_oneof![
        Just(GatherPolicy::Default),
        Just(GatherPolicy::All),
        Just(GatherPolicy::Any),
        any::<Index>().prop_map(GatherPolicy::First),
        any::<Index>().prop_map(GatherPolicy::Min),
    ]
}

/// A `parallel` block whose branches nest at most `depth` more levels.
fn block(depth: u32) -> BoxedStrategy<Block> {
    let branch = if depth == 0 {
        step().prop_map(Branch::Step).boxed()
    } else {
        prop_oneof![
            6 => step().prop_map(Branch::Step),
            2 => vec(stmt(depth - 1), 1..4).prop_map(Branch::Then),
            1 => block(depth - 1).prop_map(Branch::Parallel),
        ]
        .boxed()
    };
    (
        any::<bool>(),
        proptest::option::weighted(0.3, 1u8..5),
        proptest::option::weighted(0.3, any::<Index>()),
        policy(),
        proptest::option::weighted(0.15, any::<Index>()),
        proptest::bool::weighted(0.2),
        vec(branch, 1..5),
        proptest::option::weighted(0.4, (gather_policy(), step())),
    )
        .prop_map(
            |(named, max, model, policy, fallback, batch, branches, gather)| Block {
                named,
                max,
                model,
                policy,
                fallback,
                batch,
                branches,
                gather,
            },
        )
        .boxed()
}

/// A statement of a sequence, nesting at most `depth` more levels.
fn stmt(depth: u32) -> BoxedStrategy<Stmt> {
    if depth == 0 {
        return step().prop_map(Stmt::Step).boxed();
    }
    prop_oneof![
        5 => step().prop_map(Stmt::Step),
        3 => block(depth - 1).prop_map(Stmt::Parallel),
        1 => vec(stmt(depth - 1), 1..3).prop_map(Stmt::Then),
    ]
    .boxed()
}

fn workflow() -> impl Strategy<Value = Workflow> {
    let names: Vec<&'static str> = PARAMS.iter().map(|p| p.0).collect();
    (
        subsequence(names, 0..=3),
        any::<bool>(),
        proptest::option::weighted(0.3, 1u16..500),
        proptest::option::weighted(0.2, any::<Index>()),
        policy(),
        proptest::option::weighted(0.1, any::<Index>()),
        vec(stmt(2), 1..6),
        proptest::bool::weighted(0.8),
    )
        .prop_map(
            |(params, return_type, budget_cents, model, policy, fallback, body, ret)| Workflow {
                params,
                return_type,
                budget_cents,
                model,
                policy,
                fallback,
                body,
                explicit_return: ret,
            },
        )
}

fn script() -> impl Strategy<Value = Script> {
    let style = (
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.3),
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(tabs, blank_lines, compact, tight)| Style {
            tabs,
            blank_lines,
            compact,
            tight,
        });
    (
        models(),
        (model_agent(), vec(agent(), 0..4)),
        workflow(),
        style,
    )
        .prop_map(|(models, (first, more), workflow, style)| Script {
            models,
            agents: std::iter::once(AgentSpec::Model(first))
                .chain(more)
                .collect(),
            workflow,
            style,
        })
}

// ---------------------------------------------------------------------------- rendering

/// What rendering a script produced besides the text, for the plan checks.
#[derive(Debug, Default)]
struct Shape {
    steps: usize,
    blocks: usize,
}

/// The names a statement may use, as rendering goes.
#[derive(Clone, Default)]
struct Scope {
    /// Interpolations: parameters (and their fields), steps, named blocks, `block.member`.
    refs: Vec<String>,
    /// Parameters whose value is not model output (for argv).
    clean_refs: Vec<String>,
    /// Steps and named blocks, for `after`.
    targets: Vec<String>,
    /// The model in force from enclosing blocks or the workflow.
    model: Option<String>,
}

struct Renderer<'s> {
    s: &'s Script,
    out: String,
    model_names: Vec<String>,
    shape: Shape,
    /// Members of each named block, for marking outputs used.
    members: HashMap<String, Vec<String>>,
    /// Steps in source order, and the ones whose output some interpolation reads.
    steps: Vec<String>,
    used: HashSet<String>,
}

/// Renders a script to `.orch` text.
fn render(s: &Script) -> (String, Shape) {
    let mut r = Renderer {
        s,
        out: String::new(),
        model_names: Vec::new(),
        shape: Shape::default(),
        members: HashMap::new(),
        steps: Vec::new(),
        used: HashSet::new(),
    };
    r.items();
    (r.out, r.shape)
}

impl Renderer<'_> {
    fn indent(&mut self, level: usize) {
        for _ in 0..level {
            self.out
                .push_str(if self.s.style.tabs { "\t" } else { "  " });
        }
    }

    /// `key: value` fields as a record: one line, or one field per line.
    fn record(&mut self, fields: &[(String, String)], broken: bool) {
        if fields.is_empty() {
            self.out.push_str("{}");
        } else if broken {
            self.out.push_str("{\n");
            for (k, v) in fields {
                self.indent(1);
                let _ = writeln!(self.out, "{k}: {v}");
            }
            self.out.push('}');
        } else {
            let sep = if self.s.style.tight { "," } else { ", " };
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = write!(self.out, "{{ {} }}", body.join(sep));
        }
    }

    fn items(&mut self) {
        let m = &self.s.models;
        if m.std {
            self.out.push_str("include \"std/models.orch\"\n\n");
            self.model_names
                .extend(["haiku", "sonnet", "opus"].map(String::from));
        }
        if !m.sim.is_empty() {
            let mut fields = vec![("kind".to_string(), "sim".to_string())];
            if let Some(l) = m.latency_ms {
                fields.push(("latency".into(), format!("{l}ms")));
            }
            if let Some(c) = m.max_concurrency {
                fields.push(("max_concurrency".into(), c.to_string()));
            }
            self.out.push_str("provider lab ");
            self.record(&fields, false);
            self.out.push('\n');
        }
        for (i, sm) in m.sim.iter().enumerate() {
            let mut fields = vec![("provider".to_string(), "lab".to_string())];
            if sm.api_name {
                fields.push(("name".into(), format!("\"lab-model-{i}\"")));
            }
            if let Some(t) = sm.tier {
                fields.push(("tier".into(), TIERS[t].into()));
            }
            if let Some((input, output)) = sm.price {
                fields.push((
                    "price".into(),
                    format!(
                        "{{ input: {}.{:02}, output: {} }}",
                        input / 4,
                        input % 4 * 25,
                        output
                    ),
                ));
            }
            if let Some(t) = sm.max_tokens {
                fields.push(("max_tokens".into(), t.to_string()));
            }
            let _ = write!(self.out, "model m{i} ");
            self.record(&fields, i % 2 == 1);
            self.out.push('\n');
            self.model_names.push(format!("m{i}"));
        }
        self.out.push('\n');
        for i in 0..self.s.agents.len() {
            self.agent(i);
        }
        self.workflow();
    }

    fn model(&self, i: &Index) -> String {
        self.model_names[i.index(self.model_names.len())].clone()
    }

    fn agent(&mut self, i: usize) {
        match &self.s.agents[i] {
            AgentSpec::Model(a) => {
                if a.doc {
                    let _ = writeln!(self.out, "/// Agent number {i}.\n/// It answers briefly.");
                }
                let mut fields = Vec::new();
                if let Some(p) = &a.pin {
                    fields.push(("model".to_string(), self.model(p)));
                }
                if let Some(c) = a.complexity {
                    fields.push(("complexity".into(), COMPLEXITIES[c].into()));
                }
                let focus = if a.focus.is_some() { " on {focus}" } else { "" };
                let system = if a.triple_system {
                    format!("\"\"\"\n    You are agent {i}.\n    Work{focus}, tersely.\n    \"\"\"")
                } else {
                    format!("\"You are agent {i}. Work{focus}, tersely.\"")
                };
                fields.push(("system".into(), system));
                if let Some(t) = a.max_tokens {
                    fields.push(("max_tokens".into(), t.to_string()));
                }
                if let Some(t) = a.temperature {
                    fields.push(("temperature".into(), format!("{}.{}", t / 10, t % 10)));
                }
                policy_fields(&a.policy, &mut fields);
                if let Some(f) = &a.fallback {
                    fields.push(("fallback".into(), self.model(f)));
                }
                let params = match a.focus {
                    Some(true) => "(focus: text = \"correctness\")",
                    Some(false) => "(focus)",
                    None => "",
                };
                let _ = write!(self.out, "agent a{i}{params} ");
                self.record(&fields, a.triple_system || fields.len() > 4);
                self.out.push('\n');
            }
            AgentSpec::Command(c) => {
                let mut params = Vec::new();
                let mut argv = vec!["\"echo\"".to_string(), format!("\"agent {i}\"")];
                if c.tag {
                    params.push("tag: text");
                    argv.push("\"v{tag}\"".into());
                }
                let mut fields = vec![("run".to_string(), format!("[{}]", argv.join(", ")))];
                if c.notes {
                    params.push("notes: text = \"\"");
                    fields.push(("env".into(), "{ NOTES: \"{notes}\" }".into()));
                }
                if c.cwd {
                    fields.push(("cwd".into(), "\".\"".into()));
                }
                policy_fields(&c.policy, &mut fields);
                let params = if params.is_empty() {
                    String::new()
                } else {
                    format!("({})", params.join(", "))
                };
                let _ = write!(self.out, "agent a{i}{params} ");
                self.record(&fields, false);
                self.out.push('\n');
            }
        }
        if self.s.style.blank_lines {
            self.out.push('\n');
        }
    }

    fn workflow(&mut self) {
        let w = &self.s.workflow;
        let mut scope = Scope::default();
        let mut decls = Vec::new();
        for name in &w.params {
            let (_, decl, refs) = PARAMS.iter().find(|p| p.0 == *name).expect("a parameter");
            decls.push(*decl);
            scope.refs.extend(refs.iter().map(|r| r.to_string()));
            scope.clean_refs.push(name.to_string());
        }
        let mut opts = Vec::new();
        if let Some(c) = w.budget_cents {
            opts.push(format!("budget ${}.{:02}", c / 100, c % 100));
        }
        if let Some(m) = &w.model {
            let m = self.model(m);
            opts.push(m.clone());
            scope.model = Some(m);
        }
        policy_options(&w.policy, &mut opts);
        if let Some(f) = &w.fallback {
            opts.push(format!("fallback {}", self.model(f)));
        }
        self.out.push_str("\n/// The entry point.\n");
        let _ = write!(self.out, "workflow main({})", decls.join(", "));
        if w.return_type {
            self.out.push_str(" -> text");
        }
        if !opts.is_empty() {
            let _ = write!(self.out, " <{}>", opts.join(", "));
        }
        self.out.push_str(" {\n");
        self.sequence(&w.body, 1, &mut scope);
        // Every output is used: what nothing interpolated goes to the result.
        let unused: Vec<String> = self
            .steps
            .iter()
            .filter(|s| !self.used.contains(*s))
            .cloned()
            .collect();
        let all: Vec<String> = unused.iter().map(|u| format!("{{{u}}}")).collect();
        self.indent(1);
        if w.explicit_return {
            match unused.as_slice() {
                [one] => {
                    let _ = writeln!(self.out, "return {one}");
                }
                [] => self.out.push_str("return \"done\"\n"),
                _ => {
                    let _ = writeln!(self.out, "return \"{}\"", all.join("\\n"));
                }
            }
        } else {
            // A last step on the first agent (a model agent) summarises the rest.
            let model = match (&scope.model, self.first_agent_pin()) {
                (_, true) => String::new(),
                (Some(_), false) => String::new(),
                (None, false) => format!("<{}>", self.model_names[0]),
            };
            let arg = match &self.s.agents[0] {
                AgentSpec::Model(ModelAgent {
                    focus: Some(false), ..
                }) => ", focus: \"all\"",
                _ => "",
            };
            let name = format!("s{}", self.shape.steps);
            self.shape.steps += 1;
            let _ = writeln!(
                self.out,
                "{name} = a0{model}(\"Summarise:{}\"{arg})",
                all.join("\\n")
            );
        }
        self.out.push_str("}\n");
    }

    fn first_agent_pin(&self) -> bool {
        matches!(&self.s.agents[0], AgentSpec::Model(a) if a.pin.is_some())
    }

    /// Statements of a sequence, each starting on its own line at `level`.
    fn sequence(&mut self, stmts: &[Stmt], level: usize, scope: &mut Scope) {
        for (k, st) in stmts.iter().enumerate() {
            if self.s.style.blank_lines && k > 0 {
                self.out.push('\n');
            }
            match st {
                Stmt::Step(step) => self.step(step, level, scope, None),
                Stmt::Parallel(b) => self.block(b, level, scope, true),
                Stmt::Then(body) => {
                    self.indent(level);
                    self.out.push_str("then {\n");
                    self.sequence(body, level + 1, scope);
                    self.indent(level);
                    self.out.push_str("}\n");
                }
            }
        }
    }

    /// A `parallel` block (and its `gather` when `in_sequence`). Adds the block's name and
    /// members to `scope` once it is closed.
    fn block(&mut self, b: &Block, level: usize, scope: &mut Scope, in_sequence: bool) {
        let id = self.shape.blocks;
        self.shape.blocks += 1;
        let name = format!("b{id}");
        let mut inner = scope.clone();
        let mut opts = Vec::new();
        if let Some(m) = &b.model {
            let m = self.model(m);
            opts.push(m.clone());
            inner.model = Some(m);
        }
        if let Some(n) = b.max {
            opts.push(format!("max {n}"));
        }
        policy_options(&b.policy, &mut opts);
        if let Some(f) = &b.fallback {
            opts.push(format!("fallback {}", self.model(f)));
        }
        if b.batch {
            opts.push("batch".to_string());
        }
        self.indent(level);
        if b.named {
            let _ = write!(self.out, "{name} = ");
        }
        self.out.push_str("parallel");
        if !opts.is_empty() {
            let _ = write!(self.out, " <{}>", opts.join(", "));
        } else if self.s.style.tight {
            self.out.push_str(" <>");
        }
        let first_step = self.steps.len();
        // Compact: simple steps on one line, separated by `;`.
        let compact = self.s.style.compact
            && b.branches.iter().all(
                |br| matches!(br, Branch::Step(s) if s.comment.is_none() && s.prompt.form != 1),
            );
        if compact {
            self.out.push_str(" { ");
            for (k, br) in b.branches.iter().enumerate() {
                if let Branch::Step(s) = br {
                    if k > 0 {
                        self.out.push_str("; ");
                    }
                    self.step_inline(s, &mut inner);
                }
            }
            self.out.push_str(" }\n");
        } else {
            self.out.push_str(" {\n");
            for br in &b.branches {
                match br {
                    Branch::Step(s) => self.step(s, level + 1, &mut inner, None),
                    Branch::Then(body) => {
                        self.indent(level + 1);
                        self.out.push_str("then {\n");
                        self.sequence(body, level + 2, &mut inner);
                        self.indent(level + 1);
                        self.out.push_str("}\n");
                    }
                    Branch::Parallel(nested) => self.block(nested, level + 1, &mut inner, false),
                }
            }
            self.indent(level);
            self.out.push_str("}\n");
        }
        // Names defined inside are available after the block, and so is the block.
        let members: Vec<String> = self.steps[first_step..].to_vec();
        scope.refs = inner.refs;
        scope.targets = inner.targets;
        if b.named {
            scope.refs.push(name.clone());
            scope
                .refs
                .extend(members.iter().map(|m| format!("{name}.{m}")));
            scope.targets.push(name.clone());
            self.members.insert(name, members);
        }
        if let (true, Some((policy, step))) = (in_sequence, &b.gather) {
            let n = b.branches.len();
            let p = match policy {
                GatherPolicy::Default => String::new(),
                GatherPolicy::All => "<all> ".into(),
                GatherPolicy::Any => "<any> ".into(),
                GatherPolicy::First(i) => format!("<first {}> ", i.index(n) + 1),
                GatherPolicy::Min(i) => format!("<min {}> ", i.index(n) + 1),
            };
            self.step(step, level, scope, Some(&p));
        }
    }

    fn step(&mut self, s: &Step, level: usize, scope: &mut Scope, gather: Option<&str>) {
        if s.comment == Some(0) {
            self.indent(level);
            self.out.push_str("// The next step.\n");
        }
        self.indent(level);
        if let Some(p) = gather {
            let _ = write!(self.out, "gather {p}");
        }
        self.step_inline(s, scope);
        match s.comment {
            Some(1) => self.out.push_str("  // why"),
            Some(2) => self.out.push_str(" /* note */"),
            _ => {}
        }
        self.out.push('\n');
    }

    /// `name = agent<opts>(args) after ...`, without indentation or line break. Defines the
    /// step in `scope`.
    fn step_inline(&mut self, s: &Step, scope: &mut Scope) {
        let name = format!("s{}", self.shape.steps);
        self.shape.steps += 1;
        let agent_i = s.agent.index(self.s.agents.len());
        let agent = &self.s.agents[agent_i];
        let is_model = matches!(agent, AgentSpec::Model(_));
        let mut opts = Vec::new();
        if let AgentSpec::Model(a) = agent {
            let pin = a.pin.as_ref().map(|p| self.model(p));
            let call = s.call_model.as_ref().map(|m| self.model(m));
            // A model is needed; a pin that differs from the block's model would be a lint:
            // ask for the block's model at the call instead.
            let call = match (call, &pin, &scope.model) {
                (Some(c), _, _) => Some(c),
                (None, Some(p), Some(b)) if p != b => Some(b.clone()),
                (None, None, None) => {
                    Some(self.model_names[agent_i % self.model_names.len()].clone())
                }
                _ => None,
            };
            opts.extend(call);
        }
        policy_options(&s.policy, &mut opts);
        if let (true, Some(f)) = (is_model, &s.fallback) {
            opts.push(format!("fallback {}", self.model(f)));
        }
        let eq = if self.s.style.tight { "=" } else { " = " };
        let _ = write!(self.out, "{name}{eq}a{agent_i}");
        if !opts.is_empty() {
            let _ = write!(self.out, "<{}>", opts.join(", "));
        }
        self.out.push('(');
        let mut args = Vec::new();
        args.push(self.prompt(&s.prompt, scope));
        match agent {
            AgentSpec::Model(a) => {
                if let Some(has_default) = a.focus {
                    match (&s.arg, has_default) {
                        (ArgForm::Omit, true) => {}
                        (ArgForm::Ref(r), _) if !scope.refs.is_empty() => {
                            let r = scope.refs[r.index(scope.refs.len())].clone();
                            self.mark_used(&r);
                            args.push(format!("focus: {r}"));
                        }
                        _ => args.push("focus: \"security\"".into()),
                    }
                }
            }
            AgentSpec::Command(c) => {
                if c.tag {
                    // Never model output: argv would be tainted (E0602).
                    match (&s.arg, scope.clean_refs.is_empty()) {
                        (ArgForm::Ref(r), false) => {
                            let r = &scope.clean_refs[r.index(scope.clean_refs.len())];
                            args.push(format!("tag: \"{{{r}}}\""));
                        }
                        _ => args.push("tag: \"1\"".into()),
                    }
                }
                if let (true, ArgForm::Ref(r), false) = (c.notes, &s.arg, scope.refs.is_empty()) {
                    let r = scope.refs[r.index(scope.refs.len())].clone();
                    self.mark_used(&r);
                    args.push(format!("notes: \"{{{r}}}\""));
                }
            }
        }
        let sep = if self.s.style.tight { "," } else { ", " };
        let _ = write!(self.out, "{})", args.join(sep));
        if !s.after.is_empty() && !scope.targets.is_empty() {
            let mut after: Vec<String> = s
                .after
                .iter()
                .map(|i| scope.targets[i.index(scope.targets.len())].clone())
                .collect();
            after.dedup();
            let _ = write!(self.out, " after {}", after.join(", "));
        }
        scope.refs.push(name.clone());
        scope.targets.push(name.clone());
        self.steps.push(name);
    }

    fn prompt(&mut self, p: &Prompt, scope: &Scope) -> String {
        let refs: Vec<String> = if scope.refs.is_empty() {
            Vec::new()
        } else {
            p.refs
                .iter()
                .map(|i| scope.refs[i.index(scope.refs.len())].clone())
                .collect()
        };
        for r in &refs {
            self.mark_used(r);
        }
        if p.form == 2
            && let Some(r) = refs.first()
        {
            return r.clone();
        }
        let words: Vec<&str> = p
            .words
            .iter()
            .map(|i| WORDS[i.index(WORDS.len())])
            .collect();
        let mut text = words.join(" ");
        if p.escapes {
            text.push_str(" \\\"quoted\\\" {{literal}} \\{x\\}\\t");
        }
        let interps: Vec<String> = refs.iter().map(|r| format!("{{{r}}}")).collect();
        if p.form == 1 {
            let mut lines = vec![text];
            lines.extend(interps);
            format!("\"\"\"\n    {}\n    \"\"\"", lines.join("\n    "))
        } else {
            if !interps.is_empty() {
                text.push_str(":\\n");
                text.push_str(&interps.join("\\n"));
            }
            format!("\"{text}\"")
        }
    }

    /// Marks the steps a reference reads as used.
    fn mark_used(&mut self, r: &str) {
        let (root, field) = match r.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (r, None),
        };
        match (self.members.get(root), field) {
            (Some(_), Some(m)) => {
                self.used.insert(m.to_string());
            }
            (Some(members), None) => {
                let members = members.clone();
                self.used.extend(members);
            }
            (None, _) => {
                self.used.insert(root.to_string());
            }
        }
    }
}

fn policy_fields(p: &Policy, fields: &mut Vec<(String, String)>) {
    if let Some(r) = p.retry {
        fields.push(("retry".into(), r.to_string()));
    }
    if let Some(t) = p.timeout_s {
        fields.push(("timeout".into(), format!("{t}s")));
    }
}

fn policy_options(p: &Policy, opts: &mut Vec<String>) {
    if let Some(r) = p.retry {
        opts.push(format!("retry {r}"));
    }
    if let Some(t) = p.timeout_s {
        opts.push(format!("timeout {t}s"));
    }
}

// ---------------------------------------------------------------------------- properties

fn compile(text: &str) -> (orch::check::Program, Diagnostics) {
    orch::compile_source(
        "generated.orch",
        text,
        Path::new("."),
        &ResolveOptions::default(),
    )
}

/// The errors among `diags`, one line each.
fn errors(diags: &Diagnostics) -> Vec<String> {
    diags
        .iter()
        .filter(|d| d.severity == orch::diag::Severity::Error)
        .map(|d| {
            format!(
                "{} {} (at {}..{})",
                d.code, d.message, d.primary.span.start, d.primary.span.end
            )
        })
        .collect()
}

/// Checks the three properties of one script's text; `Err` says what broke.
fn properties(text: &str, shape: &Shape) -> Result<(), String> {
    // (a) no errors.
    let (program, diags) = compile(text);
    let errs = errors(&diags);
    if !errs.is_empty() {
        return Err(format!("the checker reports errors:\n{}", errs.join("\n")));
    }
    // (b) fmt round-trips.
    let formatted =
        orch::fmt::format_source(text).map_err(|d| format!("fmt refuses: {}", d.message))?;
    let before = orch::syntax::parse(FileId(0), text).map_err(|d| d.message.clone())?;
    let after = orch::syntax::parse(FileId(0), &formatted)
        .map_err(|d| format!("formatted text does not parse: {}\n{formatted}", d.message))?;
    if !orch::fmt::same_program(&before, &after) {
        return Err(format!("formatting changed the program:\n{formatted}"));
    }
    let again = orch::fmt::format_source(&formatted)
        .map_err(|d| format!("formatted text does not format: {}", d.message))?;
    if again != formatted {
        return Err(format!(
            "formatting is not idempotent:\n--- once:\n{formatted}\n--- twice:\n{again}"
        ));
    }
    let errs = errors(&compile(&formatted).1);
    if !errs.is_empty() {
        return Err(format!(
            "the formatted text has errors:\n{}",
            errs.join("\n")
        ));
    }
    // (c) the plan builds and has the script's shape.
    let entry = program
        .sources
        .files()
        .next()
        .map(|(id, _)| id)
        .ok_or("no source")?;
    let wf = orch::plan::entry_workflow(&program, None, Span::new(entry, 0, 0))
        .map_err(|d| d.message.clone())?;
    let plan = orch::plan::lower(&program, wf);
    if plan.nodes.len() != shape.steps {
        return Err(format!(
            "{} steps written, {} planned",
            shape.steps,
            plan.nodes.len()
        ));
    }
    if plan.groups.len() != shape.blocks {
        return Err(format!(
            "{} blocks written, {} planned",
            shape.blocks,
            plan.groups.len()
        ));
    }
    for n in &plan.nodes {
        for &d in &n.deps {
            if plan.nodes[d].level >= n.level {
                return Err(format!(
                    "`{}` (level {}) waits for `{}` (level {})",
                    n.name, n.level, plan.nodes[d].name, plan.nodes[d].level
                ));
            }
        }
    }
    let peak = reference_peak(&plan);
    if plan.peak_concurrency != peak {
        return Err(format!(
            "peak concurrency {} planned, {peak} by the reference",
            plan.peak_concurrency
        ));
    }
    for n in &plan.nodes {
        let (line, column) = program.sources.line_col(n.span.file, n.span.start);
        if (n.location.line, n.location.column) != (line, column) {
            return Err(format!(
                "`{}` is located at {}:{}, not {line}:{column}",
                n.name, n.location.line, n.location.column
            ));
        }
    }
    let levelled: usize = plan.levels.iter().map(Vec::len).sum();
    if levelled != plan.nodes.len() || plan.critical_path.is_empty() {
        return Err("levels or critical path do not cover the plan".into());
    }
    let _ = orch::plan::render_text(&plan);
    Ok(())
}

/// Peak concurrency by the definition, round by round over every step: each round starts, in
/// step order, every step whose dependencies finished in earlier rounds and that its blocks'
/// `max N` allow.
fn reference_peak(plan: &orch::plan::Plan) -> usize {
    let mut done = vec![false; plan.nodes.len()];
    let mut peak = 0;
    loop {
        let mut in_group = vec![0u32; plan.groups.len()];
        let mut started = Vec::new();
        for n in &plan.nodes {
            if done[n.id] || !n.deps.iter().all(|&d| done[d]) {
                continue;
            }
            if n.groups
                .iter()
                .all(|&g| plan.groups[g].max.is_none_or(|m| in_group[g] < m))
            {
                for &g in &n.groups {
                    in_group[g] += 1;
                }
                started.push(n.id);
            }
        }
        if started.is_empty() {
            return peak;
        }
        peak = peak.max(started.len());
        for s in started {
            done[s] = true;
        }
    }
}

proptest! {
    #![proptest_config(proptest_config::config(DEFAULT_CASES))]

    /// Random valid scripts check without errors, format faithfully and idempotently, and plan.
    #[test]
    fn generated_scripts_check_format_and_plan(script in script()) {
        let (text, shape) = render(&script);
        if let Err(why) = properties(&text, &shape) {
            prop_assert!(false, "{}\n--- script:\n{}", why, text);
        }
    }
}

/// The benchmark's large scripts are valid too (at a size a debug build checks quickly).
#[test]
fn large_scripts_check_format_and_plan() {
    for seed in [1, 2] {
        let large_script::Generated {
            text,
            steps,
            blocks,
        } = large_script::generate(1_500, seed);
        assert!((1_500..1_600).contains(&steps), "{steps} steps");
        let (program, diags) = compile(&text);
        let errs = errors(&diags);
        assert!(errs.is_empty(), "seed {seed}: {}", errs.join("\n"));
        let entry = program.sources.files().next().map(|(id, _)| id).unwrap();
        let wf = orch::plan::entry_workflow(&program, None, Span::new(entry, 0, 0)).unwrap();
        let plan = orch::plan::lower(&program, wf);
        assert_eq!(plan.nodes.len(), steps);
        assert_eq!(plan.groups.len(), blocks);
        assert_eq!(plan.peak_concurrency, reference_peak(&plan));
        assert!(
            plan.groups.iter().any(|g| g.branches.len() >= 10),
            "no wide block"
        );
        assert!(plan.nodes.iter().any(|n| n.join.is_some()), "no gather");
        let formatted = orch::fmt::format_source(&text).expect("fmt accepts it");
        let (a, b) = (
            orch::syntax::parse(FileId(0), &text).unwrap(),
            orch::syntax::parse(FileId(0), &formatted).unwrap(),
        );
        assert!(orch::fmt::same_program(&a, &b));
    }
}
