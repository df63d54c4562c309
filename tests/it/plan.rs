//! Plans: levels, critical path, worst-case cost, peak concurrency, and the JSON shape.

use crate::common::compile_plan;

fn plan_of(src: &str) -> orch::plan::Plan {
    compile_plan("p.orch", src).1
}

fn names(plan: &orch::plan::Plan, ids: &[usize]) -> Vec<String> {
    ids.iter().map(|&i| plan.nodes[i].name.clone()).collect()
}

const CART: &str = r#"
provider s { kind: sim }
model m { provider: s, price: { input: 1.0, output: 10.0 } }
agent dev { model: m, max_tokens: 100 }
workflow main() {
  cart = parallel <max 2> {
    schema   = dev("Design the cart database schema")
    api      = dev("Design the cart API endpoints")
    backend  = dev("Implement cart backend logic.\nSchema: {schema}\nAPI: {api}")
    frontend = dev("Build the cart UI for this API:\n{api}")
    payment  = dev("Integrate payment processing into:\n{backend}")
    e2e      = dev("Test the complete cart flow") after frontend, payment
  }
  summary = dev("Summarise:\n{cart}")
  return summary
}
"#;

#[test]
fn dependency_groups_become_levels() {
    let plan = plan_of(CART);
    let levels: Vec<Vec<String>> = plan.levels.iter().map(|l| names(&plan, l)).collect();
    assert_eq!(
        levels,
        vec![
            vec!["schema", "api"],
            vec!["backend", "frontend"],
            vec!["payment"],
            vec!["e2e"],
            vec!["summary"],
        ]
    );
    assert_eq!(
        names(&plan, &plan.critical_path),
        vec!["schema", "backend", "payment", "e2e", "summary"]
    );
    // `max 2`: never more than two of the block at once.
    assert_eq!(plan.peak_concurrency, 2);
}

#[test]
fn worst_case_cost_counts_interpolated_outputs_at_their_bound() {
    let plan = plan_of(CART);
    let summary = plan.nodes.iter().find(|n| n.name == "summary").unwrap();
    // Literal text "Summarise:\n" is 11 chars → 3 tokens; six branches of at most 100 tokens,
    // each under a heading of about 4 tokens. The step sets no `retry`, so a model step's
    // default of 2 applies: three attempts.
    assert_eq!(summary.retry, 2);
    assert_eq!(summary.worst_case.input_tokens, 3 * (3 + 6 * (100 + 4)));
    assert_eq!(summary.worst_case.output_tokens, 3 * 100);
    let expected = 3.0 * (627.0 * 1.0 + 100.0 * 10.0) / 1e6;
    assert!((summary.worst_case.cost_usd - expected).abs() < 1e-12);
    let total: f64 = plan.nodes.iter().map(|n| n.worst_case.cost_usd).sum();
    assert!((plan.worst_case.cost_usd - total).abs() < 1e-12);
}

#[test]
fn retries_and_fallbacks_multiply_the_worst_case() {
    let plan = plan_of(
        r#"
provider s { kind: sim }
model cheap { provider: s, price: { input: 0, output: 1.0 } }
model dear { provider: s, price: { input: 0, output: 10.0 } }
agent a { model: cheap, max_tokens: 1000 }
workflow main() { x = a<retry 2, fallback dear>("hi") }
"#,
    );
    let x = &plan.nodes[0];
    assert_eq!(x.worst_case.output_tokens, 2 * 3 * 1000);
    assert!((x.worst_case.cost_usd - (3000.0 * 1.0 + 3000.0 * 10.0) / 1e6).abs() < 1e-12);
}

#[test]
fn model_assignment_follows_call_site_then_pin_then_block() {
    let plan = plan_of(
        r#"
provider s { kind: sim }
model a1 { provider: s }
model a2 { provider: s }
model a3 { provider: s }
agent pinned { model: a2 }
agent free { }
workflow main() <a1> {
  parallel <a3> {
    call_site = pinned<a1>("x")
    free_in_block = free("x")
  }
  outer = free("x")
}
"#,
    );
    let model_of = |name: &str| match &plan.nodes.iter().find(|n| n.name == name).unwrap().exec {
        orch::plan::PlanExec::Model { model, .. } => model.clone(),
        _ => unreachable!(),
    };
    assert_eq!(model_of("call_site"), "a1");
    assert_eq!(model_of("free_in_block"), "a3");
    assert_eq!(model_of("outer"), "a1");
}

#[test]
fn plan_text_is_stable() {
    insta::assert_snapshot!(orch::plan::render_text(&plan_of(CART)));
}

#[test]
fn plan_json_has_the_documented_shape() {
    let plan = plan_of(CART);
    let v: serde_json::Value = serde_json::to_value(&plan).unwrap();
    for key in [
        "workflow",
        "params",
        "budget_usd",
        "nodes",
        "groups",
        "levels",
        "critical_path",
        "worst_case",
        "peak_concurrency",
        "providers",
        "output",
    ] {
        assert!(v.get(key).is_some(), "plan JSON lacks `{key}`");
    }
    let node = &v["nodes"][2];
    for key in [
        "id",
        "name",
        "agent",
        "kind",
        "model",
        "model_id",
        "provider",
        "provider_kind",
        "max_tokens",
        "prompt",
        "deps",
        "data_deps",
        "level",
        "retry",
        "timeout_ms",
        "deadline_ms",
        "groups",
        "join",
        "worst_case",
        "location",
    ] {
        assert!(
            node.get(key).is_some(),
            "plan node JSON lacks `{key}`: {node}"
        );
    }
    assert_eq!(node["name"], "backend");
    assert_eq!(node["kind"], "model");
    assert_eq!(node["deps"], serde_json::json!([0, 1]));
    assert_eq!(node["location"]["line"], 9);
    assert_eq!(v["groups"][0]["max"], 2);
}

#[test]
fn a_block_member_reference_needs_only_that_member() {
    let plan = plan_of(
        r#"
provider s { kind: sim }
model m { provider: s }
agent a { model: m, max_tokens: 100 }
workflow main() {
  b = parallel <> { x = a("x"); y = a("y") }
  u = a("{b.x}")
}
"#,
    );
    let u = plan.nodes.iter().find(|n| n.name == "u").unwrap();
    assert_eq!(u.data_deps, vec![0]);
    // Only `x`'s 100 tokens, on each of the default three attempts.
    assert_eq!(u.worst_case.input_tokens, 3 * 100);
}

#[test]
fn model_steps_retry_twice_by_default_and_commands_never() {
    let plan = plan_of(
        r#"
provider s { kind: sim }
model m { provider: s, price: { input: 0, output: 1.0 } }
agent a { model: m, max_tokens: 1000 }
agent once { model: m, max_tokens: 1000, retry: 0 }
agent sh { run: ["true"] }
workflow main() {
  plain = a("x")
  none = once("x")
  cmd = sh("x")
  parallel <retry 5> { blocked = a("x"); cmd_in_block = sh("x"); pinned = once("x") }
}
"#,
    );
    let node = |name: &str| plan.nodes.iter().find(|n| n.name == name).unwrap();
    assert_eq!(node("plain").retry, 2);
    assert_eq!(node("plain").worst_case.output_tokens, 3 * 1000);
    assert_eq!(node("none").retry, 0);
    assert_eq!(node("none").worst_case.output_tokens, 1000);
    assert_eq!(node("cmd").retry, 0);
    // A block's `retry` reaches every step that sets none, commands included.
    assert_eq!(node("blocked").retry, 5);
    assert_eq!(node("cmd_in_block").retry, 5);
    assert_eq!(node("pinned").retry, 0);
}

#[test]
fn deadline_resolves_like_timeout() {
    let plan = plan_of(
        r#"
provider s { kind: sim }
model m { provider: s }
agent a { model: m }
agent patient { model: m, deadline: 1h }
workflow main() <deadline 10m> {
  outer = a("x")
  parallel <deadline 2m> { inner = a("x"); own = patient("x"); call = a<deadline 30s>("x") }
}
"#,
    );
    let deadline = |name: &str| {
        plan.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap()
            .deadline_ms
    };
    assert_eq!(deadline("outer"), Some(600_000));
    assert_eq!(deadline("inner"), Some(120_000));
    assert_eq!(deadline("own"), Some(3_600_000));
    assert_eq!(deadline("call"), Some(30_000));
    let text = orch::plan::render_text(&plan);
    assert!(text.contains("deadline 30s"), "{text}");
}

#[test]
fn a_called_workflow_reads_a_member_of_its_own_block() {
    // The block and its member are both renamed `r/...` by the expansion.
    let plan = plan_of(
        r#"
provider s { kind: sim }
model m { provider: s }
agent dev { model: m, max_tokens: 100 }
workflow sub() -> text {
  b = parallel { x = dev("x"); y = dev("y") }
  return "{b.x}"
}
workflow main() {
  r = sub()
  s = dev("{r}")
  return s
}
"#,
    );
    let region = plan
        .regions
        .iter()
        .find(|r| matches!(r.kind, orch::plan::PlanRegionKind::Call { .. }))
        .expect("the call's region");
    assert_eq!(names(&plan, &region.members), ["r/x", "r/y"]);
}

#[test]
fn an_agent_parameter_left_out_calls_its_default() {
    let plan = plan_of(
        r#"
provider s { kind: sim }
model m { provider: s }
agent lead { model: m, max_tokens: 100 }
agent dev { model: m, max_tokens: 100 }
workflow review(code: text, by: agent = lead) -> text {
  plan = by("Plan for {code}")
  return plan
}
workflow main(code: text) {
  a = review(code: code)
  b = review(code: code, by: dev)
  return "{a}{b}"
}
"#,
    );
    let agent = |name: &str| {
        let n = plan.nodes.iter().find(|n| n.name == name).expect(name);
        n.agent.clone()
    };
    assert_eq!(agent("a/plan"), "lead");
    assert_eq!(agent("b/plan"), "dev");
}

const TOOLS: &str = r#"
provider s { kind: sim }
model m { provider: s, price: { input: 1.0, output: 10.0 } }
mcp git  { command: ["python3", "-m", "mcp_server_git"], env: { GIT_PAGER: "cat" } }
mcp docs { url: "http://127.0.0.1:3001/mcp" }
agent scout   { model: m, max_tokens: 100, tools: [read, grep, git.git_log], max_turns: 4 }
agent builder { model: m, max_tokens: 200, tools: [edit, exec("cargo test")], tool_timeout: 30s }
agent lead    { model: m, tools: [agent(scout), agent(builder), docs.*] }
workflow main() <max_turns 6> {
  done = lead("Implement the cart")
  return done
}
"#;

#[test]
fn plan_text_shows_tools_delegates_and_servers() {
    insta::assert_snapshot!(orch::plan::render_text(&plan_of(TOOLS)));
}

#[test]
fn plan_json_has_tools_delegates_and_servers() {
    let v: serde_json::Value = serde_json::to_value(plan_of(TOOLS)).unwrap();
    let tools = &v["nodes"][0]["tools"];
    assert_eq!(tools["max_turns"], 6, "the workflow's option: {tools}");
    assert_eq!(
        tools["grants"],
        serde_json::json!([
            { "kind": "agent", "name": "scout" },
            { "kind": "agent", "name": "builder" },
            { "kind": "mcp", "server": "docs", "tool": null },
        ])
    );
    assert_eq!(v["delegates"]["scout"]["tools"]["max_turns"], 4);
    assert_eq!(
        v["delegates"]["builder"]["tools"]["grants"][1],
        serde_json::json!({ "kind": "exec", "prefixes": [["cargo", "test"]] })
    );
    assert_eq!(v["delegates"]["builder"]["tools"]["tool_timeout_ms"], 30000);
    assert_eq!(
        v["mcp"],
        serde_json::json!({
            "git": { "transport": "stdio", "command": ["python3", "-m", "mcp_server_git"], "env": [["GIT_PAGER", "cat"]] },
            "docs": { "transport": "http", "url": "http://127.0.0.1:3001/mcp" },
        })
    );
    // A step without tools has no `tools`, a plan without any no `mcp` or `delegates`.
    let plain: serde_json::Value = serde_json::to_value(plan_of(CART)).unwrap();
    assert!(plain["nodes"][0].get("tools").is_none());
    assert!(plain.get("mcp").is_none() && plain.get("delegates").is_none());
}

/// Every kind of node and region, an order-only edge, and text to escape: for the pictures.
const PICTURE: &str = r##"
provider s { kind: sim }
model m { provider: s }
agent dev   { model: m, max_tokens: 100 }
agent judge { model: m, max_tokens: 50 }
agent tests { run: ["cargo", "test"] }
workflow main() {
  spec = dev("Write a spec")
  drafts = parallel <max 2> for t in ["api <v2>", "say \"hi\"", "#1 & co"] {
    d = dev("Draft {t} from {spec}")
  }
  gather <all> merged = dev("Merge:\n{drafts}")
  repeat <max 3> {
    review = judge("Review {merged}") -> { ok: bool }
    if not review.ok {
      fix = dev("Fix {merged}")
    }
  } until review.ok
  check = tests() after review
  ok = approve("Ship it?")
}
"##;

#[test]
fn plan_dot_is_stable() {
    insta::assert_snapshot!(orch::plan::render_dot(&plan_of(PICTURE)));
}

#[test]
fn plan_mermaid_is_stable() {
    insta::assert_snapshot!(orch::plan::render_mermaid(&plan_of(PICTURE)));
}

/// What a picture declares, read back from its text: each node with the regions (clusters or
/// subgraphs) it is written in, innermost last; each edge; each region's nesting.
#[derive(Debug, Default)]
struct Drawn {
    /// Node id → enclosing region ids, outermost first.
    nodes: std::collections::BTreeMap<usize, Vec<usize>>,
    /// (from, to) node ids.
    edges: Vec<(usize, usize)>,
    /// Region ids opened, in order.
    regions: Vec<usize>,
}

fn node_id(s: &str) -> Option<usize> {
    let digits: String = s
        .strip_prefix('n')?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Reads a DOT picture as `render_dot` writes it, checking its syntax on the way: balanced
/// braces, every statement ends with `;`, strings closed, nodes declared once.
fn read_dot(dot: &str) -> Drawn {
    let mut drawn = Drawn::default();
    let mut stack: Vec<Option<usize>> = Vec::new();
    for line in dot.lines() {
        let l = line.trim();
        let quotes = l
            .replace("\\\\", "")
            .replace("\\\"", "")
            .matches('"')
            .count();
        assert!(quotes % 2 == 0, "an unclosed string: {l}");
        if l.starts_with("digraph ") {
            assert!(stack.is_empty() && l.ends_with('{'), "{l}");
            stack.push(None);
        } else if let Some(rest) = l.strip_prefix("subgraph cluster_r") {
            let r: usize = rest.trim_end_matches(" {").parse().expect("a region id");
            drawn.regions.push(r);
            stack.push(Some(r));
        } else if l == "}" {
            assert!(stack.pop().is_some(), "an unbalanced `}}`");
        } else if let Some((from, rest)) = l.split_once(" -> ") {
            assert!(l.ends_with(';'), "{l}");
            let to = rest.split([' ', ';']).next().unwrap();
            drawn
                .edges
                .push((node_id(from).expect(from), node_id(to).expect(to)));
        } else if l.starts_with('n') && l.contains(" [label=\"") {
            assert!(l.ends_with("];"), "{l}");
            let id = node_id(l).expect(l);
            let regions = stack.iter().flatten().copied().collect();
            assert!(
                drawn.nodes.insert(id, regions).is_none(),
                "n{id} declared twice"
            );
        } else {
            assert!(l.ends_with(';'), "not a statement: {l}");
        }
    }
    assert!(stack.is_empty(), "unbalanced braces");
    drawn
}

/// Reads a Mermaid flowchart as `render_mermaid` writes it, checking its syntax on the way:
/// front matter, `flowchart TB`, `subgraph`/`end` balanced, labels quoted with no raw `"`.
fn read_mermaid(text: &str) -> Drawn {
    let mut drawn = Drawn::default();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("---"));
    assert!(lines.next().unwrap().starts_with("title: \""));
    assert_eq!(lines.next(), Some("---"));
    assert_eq!(lines.next(), Some("flowchart TB"));
    let mut stack: Vec<usize> = Vec::new();
    for line in lines {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("subgraph r") {
            let (r, label) = rest.split_once('[').expect("a titled subgraph");
            assert!(label.starts_with('"') && label.ends_with("\"]"), "{l}");
            assert_eq!(label.matches('"').count(), 2, "a raw quote in {l}");
            let r: usize = r.parse().expect("a region id");
            drawn.regions.push(r);
            stack.push(r);
        } else if l == "end" {
            assert!(stack.pop().is_some(), "an unbalanced `end`");
        } else if let Some((from, to)) = ["-->", "-.->", "-.-"]
            .iter()
            .find_map(|arrow| l.split_once(&format!(" {arrow} ")))
        {
            drawn
                .edges
                .push((node_id(from).expect(from), node_id(to).expect(to)));
        } else {
            let id = node_id(l).unwrap_or_else(|| panic!("not a node: {l}"));
            let label = l.trim_start_matches(|c: char| c == 'n' || c.is_ascii_digit());
            assert!(label.contains("<br/>"), "two lines: {l}");
            assert_eq!(label.matches('"').count(), 2, "a raw quote in {l}");
            assert!(
                !label.contains('<') || label.matches('<').count() == 1,
                "raw `<` in {l}"
            );
            assert!(
                drawn.nodes.insert(id, stack.clone()).is_none(),
                "n{id} declared twice"
            );
        }
    }
    assert!(stack.is_empty(), "unbalanced subgraphs");
    drawn
}

/// What the plan says the picture must hold: every node once, inside the clusters of its
/// regions (a region's own node inside its own), and an edge for each reduced dependency.
fn check_drawn(plan: &orch::plan::Plan, drawn: &Drawn, what: &str) {
    assert_eq!(
        drawn.nodes.len(),
        plan.nodes.len(),
        "{what}: every node once"
    );
    let mut regions = drawn.regions.clone();
    regions.sort_unstable();
    assert_eq!(
        regions,
        (0..plan.regions.len()).collect::<Vec<_>>(),
        "{what}: a cluster per region"
    );
    for n in &plan.nodes {
        // The chain of regions the node is in, outermost first.
        let mut chain = Vec::new();
        if let orch::plan::PlanExec::Region { region } = n.exec {
            chain.push(region);
        }
        let mut cur = n.region;
        while let Some(r) = cur {
            chain.push(r);
            cur = plan.nodes[plan.regions[r].node].region;
        }
        chain.reverse();
        assert_eq!(
            drawn.nodes[&n.id], chain,
            "{what}: `{}` in its regions",
            n.name
        );
        for &d in &n.deps {
            let reaches = {
                // The dependency is drawn directly or through drawn edges.
                let mut seen = vec![false; plan.nodes.len()];
                let mut todo = vec![d];
                while let Some(x) = todo.pop() {
                    if std::mem::replace(&mut seen[x], true) {
                        continue;
                    }
                    todo.extend(drawn.edges.iter().filter(|e| e.0 == x).map(|e| e.1));
                }
                seen[n.id]
            };
            assert!(
                reaches,
                "{what}: no path from `{}` to `{}`",
                plan.nodes[d].name, n.name
            );
        }
    }
    for &(a, b) in &drawn.edges {
        assert!(
            a < plan.nodes.len() && b < plan.nodes.len(),
            "{what}: edge to nowhere"
        );
    }
}

#[test]
fn plan_pictures_hold_every_step_in_its_regions() {
    let plan = plan_of(PICTURE);
    assert!(plan.regions.len() >= 3, "the script has for, repeat and if");
    check_drawn(&plan, &read_dot(&orch::plan::render_dot(&plan)), "dot");
    check_drawn(
        &plan,
        &read_mermaid(&orch::plan::render_mermaid(&plan)),
        "mermaid",
    );
}

#[test]
fn plan_pictures_of_every_example_are_well_formed() {
    for path in crate::common::files::orch_files("examples") {
        let src = std::fs::read_to_string(&path).unwrap();
        let plan = crate::common::compile_plan(&path.display().to_string(), &src).1;
        let what = path.display();
        check_drawn(
            &plan,
            &read_dot(&orch::plan::render_dot(&plan)),
            &format!("{what} dot"),
        );
        check_drawn(
            &plan,
            &read_mermaid(&orch::plan::render_mermaid(&plan)),
            &format!("{what} mermaid"),
        );
    }
}

/// Graphviz itself reads every example's picture. Needs `dot`: scripts/test.sh installs
/// Graphviz and runs the ignored tests, so a run of this test without it fails rather than
/// passes untested.
#[test]
#[ignore = "needs Graphviz's `dot` (scripts/test.sh installs it and runs ignored tests)"]
fn plan_dot_of_every_example_renders_with_graphviz() {
    use std::io::Write;
    for path in crate::common::files::orch_files("examples") {
        let out = crate::common::cli::orch_command()
            .args(["plan", "--format", "dot"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut dot = std::process::Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("Graphviz's `dot` on PATH (apt-get install graphviz; scripts/test.sh does)");
        dot.stdin.take().unwrap().write_all(&out.stdout).unwrap();
        let res = dot.wait_with_output().unwrap();
        let svg = String::from_utf8_lossy(&res.stdout);
        assert!(
            res.status.success() && res.stderr.is_empty() && svg.contains("<svg"),
            "{}: dot said {}",
            path.display(),
            String::from_utf8_lossy(&res.stderr)
        );
        // Every step's name is drawn.
        let plan_json = crate::common::cli::orch_command()
            .args(["plan", "--format", "json"])
            .arg(&path)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&plan_json.stdout).unwrap();
        for n in v["nodes"].as_array().unwrap() {
            let name = n["name"].as_str().unwrap();
            assert!(
                svg.contains(&format!(">{name}<")),
                "{}: `{name}` not drawn",
                path.display()
            );
        }
    }
}

const BATCHED: &str = r#"
provider s { kind: sim }
model m { provider: s, price: { input: 1.0, output: 10.0 } }
model dear { provider: s, price: { input: 2.0, output: 20.0 } }
agent dev { model: m, max_tokens: 100, retry: 1 }
workflow main() {
  reviews = parallel <batch, max 10> for file in ["a.rs", "b.rs"] {
    review = dev<fallback dear>("Review {file}")
  }
  summary = dev("Summarise:\n{reviews}")
  return summary
}
"#;

#[test]
fn batched_steps_are_priced_at_the_batch_rate_on_their_first_attempt() {
    let plan = plan_of(BATCHED);
    let review = plan.nodes.iter().find(|n| n.name == "review").unwrap();
    assert_eq!(review.batch, Some(0));
    // "Review " is 2 tokens. Two attempts on `m` and two on `dear`, for each of the two
    // items; the first attempt on `m` at half price.
    let once = |i: f64, o: f64| (2.0 * i + 100.0 * o) / 1e6;
    let per_item = 2.0 * once(1.0, 10.0) + 2.0 * once(2.0, 20.0) - 0.5 * once(1.0, 10.0);
    assert!(
        (review.worst_case.cost_usd - 2.0 * per_item).abs() < 1e-12,
        "{}",
        review.worst_case.cost_usd
    );
    let summary = plan.nodes.iter().find(|n| n.name == "summary").unwrap();
    assert_eq!(summary.batch, None);
    assert_eq!(plan.batches.len(), 1);
    assert_eq!(plan.batches[0].steps, vec![review.id]);
    assert_eq!(plan.batches[0].window_ms, 24 * 3_600_000);
    assert_eq!(plan.critical_path_batch_wait_ms, Some(24 * 3_600_000));
    let v: serde_json::Value = serde_json::to_value(&plan).unwrap();
    assert_eq!(v["batches"][0]["max"], 10);
    assert_eq!(v["batches"][0]["window_ms"], 86_400_000);
    assert_eq!(v["critical_path_batch_wait_ms"], 86_400_000);
    assert_eq!(v["nodes"][review.id]["batch"], 0);
    // No batch: no keys.
    let v: serde_json::Value = serde_json::to_value(plan_of(CART)).unwrap();
    assert!(v.get("batches").is_none() && v.get("critical_path_batch_wait_ms").is_none());
}

#[test]
fn plan_text_shows_batches_and_their_window() {
    insta::assert_snapshot!(orch::plan::render_text(&plan_of(BATCHED)));
}
