//! Realistic large scripts for the benchmark (and a test): a long workflow mixing sequential
//! steps, wide `parallel` blocks (some with `max N`, some with `then` branches), `gather`s
//! with every policy, `after` clauses, interpolations of earlier steps, of whole blocks and of
//! block members, and a command agent. Deterministic for a seed; every output is used.

use std::fmt::Write as _;

/// A generated script.
pub struct Generated {
    /// The `.orch` text.
    pub text: String,
    /// How many steps it has.
    pub steps: usize,
    /// How many `parallel` blocks it has.
    pub blocks: usize,
}

const HEADER: &str = r#"include "std/models.orch"

/// Explores the codebase.
agent scout { model: haiku, complexity: low, max_tokens: 300, system: "You explore codebases. Be terse." }
/// Synthesises findings.
agent analyst { model: sonnet, complexity: medium, max_tokens: 500, system: "You synthesise findings and name gaps." }
/// Plans the work.
agent planner { model: opus, complexity: high, max_tokens: 600, retry: 1, timeout: 2m, system: "You write step-by-step plans." }
/// Writes with a focus.
agent writer(focus: text = "clarity") { model: sonnet, complexity: medium, max_tokens: 400, system: "You write for {focus}." }
/// Reviews on the block's model.
agent reviewer { complexity: medium, max_tokens: 400, system: "You review work. List problems first." }
/// Lints a tagged build.
agent lint(tag: text) { run: ["echo", "lint", "{tag}"], timeout: 30s }

"#;

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
    "in",
    "three",
    "points",
    "Compare",
    "design",
    "findings",
    "module",
];

struct Gen {
    rng: fastrand::Rng,
    out: String,
    steps: usize,
    blocks: usize,
    /// Names usable after the current statement: steps and named blocks.
    names: Vec<String>,
    /// Steps whose output nothing has read yet, oldest first.
    unused: std::collections::VecDeque<String>,
    /// Members of each block, by block number.
    members: Vec<Vec<String>>,
}

/// A script of about `steps` steps (never fewer; a block may add a few more).
pub fn generate(steps: usize, seed: u64) -> Generated {
    let mut g = Gen {
        rng: fastrand::Rng::with_seed(seed),
        out: String::with_capacity(steps * 90),
        steps: 0,
        blocks: 0,
        names: Vec::new(),
        unused: std::collections::VecDeque::new(),
        members: Vec::new(),
    };
    g.out.push_str(HEADER);
    g.out.push_str("/// A long pipeline.\nworkflow main(request: text, repo: text = \"shop\") -> text <budget $5000.00, retry 1> {\n");
    while g.steps < steps {
        match g.rng.u32(0..100) {
            0..55 => g.sequential(),
            55..88 => g.parallel(steps),
            _ => g.command(),
        }
    }
    let rest: Vec<String> = g.unused.drain(..).map(|u| format!("{{{u}}}")).collect();
    let _ = writeln!(g.out, "  return \"{}\"\n}}", rest.join("\\n"));
    Generated {
        text: g.out,
        steps: g.steps,
        blocks: g.blocks,
    }
}

impl Gen {
    fn words(&mut self) -> String {
        let n = self.rng.usize(2..7);
        let w: Vec<&str> = (0..n)
            .map(|_| WORDS[self.rng.usize(..WORDS.len())])
            .collect();
        w.join(" ")
    }

    /// An interpolation of something defined earlier: preferably an unused step, else a recent
    /// or any earlier name, a block, or a block member.
    fn reference(&mut self) -> String {
        if self.names.is_empty() {
            return "request".into();
        }
        let r = self.rng.u32(0..100);
        if r < 55
            && let Some(u) = self.unused.pop_front()
        {
            return u;
        }
        if r < 65 && !self.members.is_empty() {
            let b = self.rng.usize(..self.members.len());
            let m = &self.members[b];
            let member = m[self.rng.usize(..m.len())].clone();
            self.mark_used(&member);
            return format!("b{b}.{member}");
        }
        if r < 90 {
            let lo = self.names.len().saturating_sub(50);
            let name = self.names[self.rng.usize(lo..self.names.len())].clone();
            self.mark_used(&name);
            return name;
        }
        let name = self.names[self.rng.usize(..self.names.len())].clone();
        self.mark_used(&name);
        name
    }

    fn mark_used(&mut self, name: &str) {
        if let Some(b) = name.strip_prefix('b').and_then(|n| n.parse::<usize>().ok()) {
            let members = self.members[b].clone();
            self.unused.retain(|u| !members.contains(u));
        } else if let Some(i) = self.unused.iter().position(|u| u == name) {
            self.unused.remove(i);
        }
    }

    fn prompt(&mut self, refs: usize) -> String {
        let mut p = self.words();
        for _ in 0..refs {
            let r = self.reference();
            let _ = write!(p, "\\n{{{r}}}");
        }
        if self.rng.u32(0..10) == 0 {
            let _ = write!(p, " for {{request}} in {{repo}}");
        }
        p
    }

    fn new_step(&mut self) -> String {
        let name = format!("s{}", self.steps);
        self.steps += 1;
        name
    }

    /// `sN = agent("...")`, maybe with `after`.
    fn sequential(&mut self) {
        let name = self.new_step();
        let refs = self.rng.usize(0..4);
        let prompt = self.prompt(refs);
        let call = match self.rng.u32(0..10) {
            0..3 => format!("scout(\"{prompt}\")"),
            3..6 => format!("analyst(\"{prompt}\")"),
            6 => format!("planner(\"{prompt}\")"),
            7 => format!("writer(\"{prompt}\", focus: \"security\")"),
            8 => format!("reviewer<sonnet>(\"{prompt}\")"),
            _ => format!("writer<haiku, retry 2>(\"{prompt}\")"),
        };
        let _ = write!(self.out, "  {name} = {call}");
        if self.rng.u32(0..12) == 0 && self.names.len() > 10 {
            let a = self.names[self.rng.usize(self.names.len() - 10..self.names.len())].clone();
            let _ = write!(self.out, " after {a}");
        }
        self.out.push('\n');
        self.names.push(name.clone());
        self.unused.push_back(name);
    }

    /// `lint(...)` on stdin, with a workflow input in argv.
    fn command(&mut self) {
        let name = self.new_step();
        let r = self.reference();
        let _ = writeln!(self.out, "  {name} = lint(\"{{{r}}}\", tag: \"{{repo}}\")");
        self.names.push(name.clone());
        self.unused.push_back(name);
    }

    /// A named block of 2 to 40 branches (now and then 150), maybe followed by a `gather`.
    fn parallel(&mut self, target: usize) {
        let b = self.blocks;
        self.blocks += 1;
        let width = match self.rng.u32(0..20) {
            0 => 150,
            1..8 => self.rng.usize(10..41),
            _ => self.rng.usize(2..10),
        }
        .min(target.saturating_sub(self.steps).max(2));
        let mut opts = vec!["sonnet".to_string()];
        if self.rng.bool() {
            opts.push(format!("max {}", self.rng.u32(2..9)));
        }
        if self.rng.u32(0..4) == 0 {
            opts.push("timeout 5m".into());
        }
        let _ = writeln!(self.out, "  b{b} = parallel <{}> {{", opts.join(", "));
        let outside = self.names.len();
        let mut members = Vec::new();
        let mut k = 0;
        while k < width {
            if self.rng.u32(0..8) == 0 {
                // A `then` branch of two or three steps.
                self.out.push_str("    then {\n");
                let n = self.rng.usize(2..4);
                let mut prev: Option<String> = None;
                for _ in 0..n {
                    let name = self.new_step();
                    let mut prompt = self.prompt(usize::from(prev.is_none()));
                    if let Some(p) = &prev {
                        let _ = write!(prompt, "\\n{{{p}}}");
                    }
                    let _ = writeln!(self.out, "      {name} = reviewer(\"{prompt}\")");
                    self.names.push(name.clone());
                    members.push(name.clone());
                    prev = Some(name);
                }
                self.out.push_str("    }\n");
                // The last step of the branch is the only unread one.
                if let Some(p) = prev {
                    self.unused.push_back(p);
                }
            } else {
                let name = self.new_step();
                let refs = self.rng.usize(0..3);
                let mut prompt = self.prompt(refs);
                // Now and then a sibling: the block is a DAG, not just a fan-out.
                if self.names.len() > outside && self.rng.u32(0..6) == 0 {
                    let s = self.names[self.rng.usize(outside..self.names.len())].clone();
                    self.mark_used(&s);
                    let _ = write!(prompt, "\\n{{{s}}}");
                }
                let agent = if self.rng.u32(0..3) == 0 {
                    "scout<sonnet>"
                } else {
                    "reviewer"
                };
                let _ = writeln!(self.out, "    {name} = {agent}(\"{prompt}\")");
                self.names.push(name.clone());
                self.unused.push_back(name.clone());
                members.push(name);
            }
            k += 1;
        }
        self.out.push_str("  }\n");
        self.members.push(members);
        self.names.push(format!("b{b}"));
        if self.rng.bool() {
            let policy = match self.rng.u32(0..5) {
                0 => String::new(),
                1 => "<all> ".into(),
                2 => "<any> ".into(),
                3 => format!("<first {}> ", self.rng.usize(1..=k)),
                _ => format!("<min {}> ", self.rng.usize(1..=k)),
            };
            let name = self.new_step();
            self.mark_used(&format!("b{b}"));
            let _ = writeln!(
                self.out,
                "  gather {policy}{name} = analyst(\"Combine these results:\\n{{b{b}}}\")"
            );
            self.names.push(name.clone());
            self.unused.push_back(name);
        }
    }
}
