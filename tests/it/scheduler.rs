//! The interpreter on the simulator with a paused clock: timings are exact and instant.

use std::sync::Arc;

use orch::resolve::ResolveOptions;
use orch::run::{Event, RunOptions, RunReport, StepStatus, Target};

use crate::common::run::{run_script, run_with, step};

fn window(r: &RunReport, name: &str) -> (u64, u64) {
    let s = step(r, name);
    (
        s.started_ms.expect("started"),
        s.finished_ms.expect("finished"),
    )
}

/// The most steps running at once, from the reports' start/finish times.
fn peak_overlap(r: &RunReport, names: &[&str]) -> usize {
    let windows: Vec<(u64, u64)> = names.iter().map(|n| window(r, n)).collect();
    windows
        .iter()
        .map(|(s, _)| windows.iter().filter(|(a, b)| a <= s && s < b).count())
        .max()
        .unwrap_or(0)
}

const MODELS: &str = r#"
provider simp { kind: sim, latency: 1s }
model m { provider: simp, name: "sim-1", price: { input: 1.0, output: 2.0 } }
agent a { model: m, max_tokens: 100 }
"#;

#[tokio::test(start_paused = true)]
async fn parallel_branches_overlap_and_dag_order_is_respected() {
    let src = format!(
        "{MODELS}\nworkflow main(topic: text) {{
          block = parallel <> {{
            x = a(\"one {{topic}}\")
            y = a(\"two {{topic}}\")
            z = a(\"three, after reading {{x}}\")
          }}
          done = a(\"sum up {{block}}\")
          return done
        }}"
    );
    let (r, _) = run_script(&src, &[("topic", "cats")]).await;
    assert!(r.succeeded, "{r:?}");
    // x and y start together at 0 and run 1 s; z needs x; done needs all.
    assert_eq!(window(&r, "x"), (0, 1000));
    assert_eq!(window(&r, "y"), (0, 1000));
    assert_eq!(window(&r, "z"), (1000, 2000));
    assert_eq!(window(&r, "done"), (2000, 3000));
    assert_eq!(r.wall_ms, 3000);
    // The block renders every branch under its name.
    let out = r.output.as_deref().unwrap();
    assert!(out.starts_with("[sim sim-1]"), "{out}");
}

#[tokio::test(start_paused = true)]
async fn max_n_bounds_branches_in_flight() {
    let src = format!(
        "{MODELS}\nworkflow main() {{
          parallel <max 2> {{
            p1 = a(\"1\")
            p2 = a(\"2\")
            p3 = a(\"3\")
            p4 = a(\"4\")
            p5 = a(\"5\")
          }}
        }}"
    );
    let (r, _) = run_script(&src, &[]).await;
    assert!(r.succeeded);
    assert_eq!(peak_overlap(&r, &["p1", "p2", "p3", "p4", "p5"]), 2);
    // Five 1-second steps two at a time: three rounds.
    assert_eq!(r.wall_ms, 3000);
}

#[tokio::test(start_paused = true)]
async fn global_max_concurrency_bounds_the_whole_run() {
    let src = format!(
        "{MODELS}\nworkflow main() {{ parallel <> {{ p1 = a(\"1\"); p2 = a(\"2\"); p3 = a(\"3\") }} }}"
    );
    let opts = RunOptions {
        max_concurrency: Some(1),
        ..RunOptions::default()
    };
    let (r, _) = run_with(&src, &opts).await;
    assert_eq!(peak_overlap(&r, &["p1", "p2", "p3"]), 1);
    assert_eq!(r.wall_ms, 3000);
}

#[tokio::test(start_paused = true)]
async fn provider_max_concurrency_is_shared_across_blocks() {
    let src = r#"
provider simp { kind: sim, latency: 1s, max_concurrency: 2 }
model m { provider: simp }
agent a { model: m }
workflow main() { parallel <> { p1 = a("1"); p2 = a("2"); p3 = a("3"); p4 = a("4") } }
"#;
    let (r, _) = run_script(src, &[]).await;
    assert_eq!(peak_overlap(&r, &["p1", "p2", "p3", "p4"]), 2);
    assert_eq!(r.wall_ms, 2000);
}

#[tokio::test(start_paused = true)]
async fn then_branches_run_in_order_inside_parallel() {
    let src = format!(
        "{MODELS}\nworkflow main() {{
          parallel <> {{
            then {{ ui = a(\"ui\"); ds = a(\"design system for {{ui}}\") }}
            then {{ api = a(\"api\"); schema = a(\"schema\") }}
          }}
        }}"
    );
    let (r, _) = run_script(&src, &[]).await;
    assert_eq!(window(&r, "ui"), (0, 1000));
    assert_eq!(window(&r, "api"), (0, 1000));
    // `schema` does not use `api`, but a `then` block is a sequence.
    assert_eq!(window(&r, "schema"), (1000, 2000));
    assert_eq!(window(&r, "ds"), (1000, 2000));
}

#[tokio::test(start_paused = true)]
async fn after_orders_without_data() {
    let src = format!(
        "{MODELS}\nworkflow main() {{ parallel <> {{ first = a(\"1\"); second = a(\"2\") after first }} }}"
    );
    let (r, _) = run_script(&src, &[]).await;
    assert_eq!(window(&r, "second"), (1000, 2000));
}

#[tokio::test(start_paused = true)]
async fn retry_reattempts_with_backoff() {
    let src = r#"
provider flaky { kind: sim, latency: 1s, failures: 2 }
model m { provider: flaky }
agent a { model: m }
workflow main() { x = a<retry 2>("hello") }
"#;
    let (r, events) = run_script(src, &[]).await;
    assert!(r.succeeded, "{r:?}");
    let x = step(&r, "x");
    assert_eq!(x.attempts, 3);
    // Three 1 s attempts, with backoffs of 500 ms and 1 s less up to 25% jitter between them.
    let delays: Vec<u64> = events
        .iter()
        .filter_map(|e| {
            if let Event::Retrying { delay_ms, .. } = e {
                Some(*delay_ms)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(delays.len(), 2);
    assert!((375..=500).contains(&delays[0]), "{delays:?}");
    assert!((750..=1000).contains(&delays[1]), "{delays:?}");
    assert_eq!(r.wall_ms, 3000 + delays[0] + delays[1]);
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_fail_the_step_and_stop_new_work() {
    let src = r#"
provider flaky { kind: sim, latency: 1s, failures: 5 }
provider ok { kind: sim, latency: 1s }
model bad { provider: flaky }
model good { provider: ok }
agent a { }
workflow main() {
  parallel <> {
    broken = a<bad, retry 1>("x")
    slow   = a<good>("y")
  }
  later = a<good>("after {broken}")
}
"#;
    let (r, _) = run_script(src, &[]).await;
    assert!(!r.succeeded);
    assert!(matches!(step(&r, "broken").status, StepStatus::Failed(_)));
    // The step in flight finished and is recorded; the dependent never started.
    assert_eq!(step(&r, "slow").status, StepStatus::Succeeded);
    assert!(matches!(step(&r, "later").status, StepStatus::Skipped(_)));
    assert!(r.output.is_none());
    assert!(r.stopped.as_deref().unwrap().contains("broken"));
}

#[tokio::test(start_paused = true)]
async fn fallback_model_answers_when_retries_are_exhausted() {
    let src = r#"
provider flaky { kind: sim, latency: 1s, failures: 2 }
provider ok { kind: sim, latency: 1s }
model primary { provider: flaky, name: "primary-1" }
model backup { provider: ok, name: "backup-1" }
agent a { model: primary, fallback: backup, retry: 1 }
workflow main() { x = a("hello"); return x }
"#;
    let (r, events) = run_script(src, &[]).await;
    assert!(r.succeeded, "{r:?}");
    let x = step(&r, "x");
    assert_eq!(x.model.as_deref(), Some("backup"));
    assert_eq!(x.attempts, 3);
    assert!(r.output.as_deref().unwrap().contains("backup-1"));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::FallingBack { model, .. } if model == "backup"))
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_bounds_each_attempt() {
    let src = r#"
provider slow { kind: sim, latency: 10s }
model m { provider: slow }
agent a { model: m }
workflow main() { x = a<timeout 2s, retry 1>("hello") }
"#;
    let (r, _) = run_script(src, &[]).await;
    let x = step(&r, "x");
    assert_eq!(x.attempts, 2);
    assert!(
        matches!(&x.status, StepStatus::Failed(e) if e.contains("timed out after 2s")),
        "{:?}",
        x.status
    );
    // Two 2 s attempts and one backoff of 500 ms less up to 25% jitter.
    assert!(
        (2000 + 375 + 2000..=2000 + 500 + 2000).contains(&r.wall_ms),
        "{}",
        r.wall_ms
    );
}

const GATHER: &str = r#"
provider fast { kind: sim, latency: 1s }
provider slow { kind: sim, latency: 10s }
provider broken { kind: sim, latency: 1s, failures: 9 }
model f { provider: fast }
model s { provider: slow }
model b { provider: broken }
agent a { }
"#;

#[tokio::test(start_paused = true)]
async fn gather_any_starts_on_first_success_and_cancels_the_rest() {
    let src = format!(
        "{GATHER}\nworkflow main() {{
          reviews = parallel <> {{ quick = a<f>(\"q\"); thorough = a<s>(\"t\") }}
          gather <any> plan = a<f>(\"plan from {{reviews}}\")
          return plan
        }}"
    );
    let (r, _) = run_script(&src, &[]).await;
    assert!(r.succeeded, "{r:?}");
    assert_eq!(step(&r, "thorough").status, StepStatus::Cancelled);
    assert_eq!(window(&r, "plan"), (1000, 2000));
    assert_eq!(r.wall_ms, 2000);
}

#[tokio::test(start_paused = true)]
async fn gather_min_tolerates_failed_branches() {
    let src = format!(
        "{GATHER}\nworkflow main() {{
          reviews = parallel <> {{ one = a<f>(\"1\"); two = a<f>(\"2\"); three = a<b>(\"3\") }}
          gather <min 2> plan = a<f>(\"plan from {{reviews}}\")
          return plan
        }}"
    );
    let (r, events) = run_script(&src, &[]).await;
    assert!(r.succeeded, "{r:?}");
    assert!(matches!(step(&r, "three").status, StepStatus::Failed(_)));
    assert_eq!(step(&r, "plan").status, StepStatus::Succeeded);
    assert!(r.stopped.is_none());
    // The failed branch is left out of the rendered block.
    let started = events
        .iter()
        .filter(|e| matches!(e, Event::Started { step, .. } if step == "plan"))
        .count();
    assert_eq!(started, 1);
}

#[tokio::test(start_paused = true)]
async fn gather_min_fails_when_too_few_branches_succeed() {
    let src = format!(
        "{GATHER}\nworkflow main() {{
          reviews = parallel <> {{ one = a<f>(\"1\"); two = a<b>(\"2\"); three = a<b>(\"3\") }}
          gather <min 2> plan = a<f>(\"plan from {{reviews}}\")
        }}"
    );
    let (r, _) = run_script(&src, &[]).await;
    assert!(!r.succeeded);
    assert!(
        matches!(&step(&r, "plan").status, StepStatus::Skipped(why) if why.contains("only 1 of 3"))
    );
}

#[tokio::test(start_paused = true)]
async fn gather_all_fails_on_any_failed_branch() {
    let src = format!(
        "{GATHER}\nworkflow main() {{
          reviews = parallel <> {{ one = a<f>(\"1\"); two = a<b>(\"2\") }}
          gather plan = a<f>(\"plan from {{reviews}}\")
        }}"
    );
    let (r, _) = run_script(&src, &[]).await;
    assert!(!r.succeeded);
    assert!(matches!(step(&r, "plan").status, StepStatus::Skipped(_)));
}

#[tokio::test(start_paused = true)]
async fn budget_stops_before_a_step_could_overrun_it() {
    // Each call can cost up to 1,000 output tokens at $100 per million: $0.10.
    let src = r#"
provider simp { kind: sim, latency: 1s }
model pricey { provider: simp, price: { input: 100.0, output: 100.0 } }
agent a { model: pricey, max_tokens: 1000 }
workflow main() <budget $0.102> {
  one = a("first")
  two = a("second, after {one}")
}
"#;
    let (r, _) = run_script(src, &[]).await;
    assert!(!r.succeeded);
    assert_eq!(step(&r, "one").status, StepStatus::Succeeded);
    assert!(
        matches!(&step(&r, "two").status, StepStatus::Skipped(why) if why.contains("budget")),
        "{:?}",
        step(&r, "two").status
    );
    assert!(r.cost_usd <= 0.102);
    assert!(r.stopped.as_deref().unwrap().contains("budget"));
}

#[tokio::test(start_paused = true)]
async fn inputs_are_typed_and_required() {
    let src = format!(
        "{MODELS}\nworkflow main(n: number, topic: text) {{ x = a(\"{{topic}} x{{n}}\"); return x }}"
    );
    let (program, _) = orch::compile_source(
        "t.orch",
        &src,
        std::path::Path::new("."),
        &ResolveOptions::default(),
    );
    let plan = orch::plan::lower(&program, &program.workflows["main"]);
    let noop = |_: &Event| {};
    let mut opts = RunOptions::default();
    opts.inputs.insert("topic".into(), "cats".into());
    let err = orch::run::run(&plan, &program.tables.models, &opts, &noop)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing input `n`"), "{err}");
    opts.inputs.insert("n".into(), "seven".into());
    let err = orch::run::run(&plan, &program.tables.models, &opts, &noop)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expected a number"), "{err}");
    opts.inputs.insert("topik".into(), "x".into());
    let err = orch::run::run(&plan, &program.tables.models, &opts, &noop)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did you mean `topic`"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_missing_key_names_the_variable_and_the_alternatives() {
    let src =
        "include \"std/models.orch\"\nagent a { model: sonnet }\nworkflow main() { x = a(\"hi\") }";
    let (program, diags) = orch::compile_source(
        "t.orch",
        src,
        std::path::Path::new("."),
        &ResolveOptions::default(),
    );
    assert!(!diags.has_errors());
    let plan = orch::plan::lower(&program, &program.workflows["main"]);
    let opts = RunOptions {
        env: Some(orch::run::EnvLookup(Arc::new(|_| None))),
        ..RunOptions::default()
    };
    let err = orch::run::run(&plan, &program.tables.models, &opts, &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("ANTHROPIC_API_KEY is not set"), "{err}");
    assert!(
        err.contains("--simulate") && err.contains("--endpoint"),
        "{err}"
    );
    // With --simulate the same script runs without any key.
    let opts = RunOptions {
        target: Target::Simulate {
            latency_ms: 10,
            run_commands: false,
        },
        ..opts
    };
    let r = orch::run::run(&plan, &program.tables.models, &opts, &|_| {})
        .await
        .unwrap();
    assert!(r.succeeded);
    assert!(step(&r, "x").usage.output_tokens > 0);
}

#[tokio::test(start_paused = true)]
async fn simulate_does_not_run_commands_unless_asked() {
    let src = "agent touch(path: text) { run: [\"touch\", \"{path}\"] }\nworkflow main() { t = touch(path: \"/nonexistent-dir/should-not-exist\"); return t }";
    let opts = RunOptions {
        target: Target::Simulate {
            latency_ms: 10,
            run_commands: false,
        },
        ..RunOptions::default()
    };
    let (r, _) = run_with(src, &opts).await;
    assert!(r.succeeded);
    assert!(
        r.output
            .as_deref()
            .unwrap()
            .contains("[simulated] would run [\"touch\",\"/nonexistent-dir/should-not-exist\"]")
    );
}

#[tokio::test]
async fn command_agents_get_the_prompt_on_stdin_and_params_in_argv_and_env() {
    let src = r#"
agent show(label: text) { run: ["printf", "%s:", "{label}"] }
agent echo_stdin { run: ["cat"] }
agent env_reader(value: text) { run: ["printenv", "ORCH_TEST_VALUE"], env: { ORCH_TEST_VALUE: "{value}" } }
agent fails { run: ["ls", "/definitely/not/here"] }
workflow main() {
  parallel <> {
    a = show(label: "hello")
    b = echo_stdin("from stdin")
    c = env_reader(value: "from env")
  }
  d = fails()
}
"#;
    let (r, _) = run_script(src, &[]).await;
    assert_eq!(step(&r, "a").output.as_deref(), Some("hello:"));
    assert_eq!(step(&r, "b").output.as_deref(), Some("from stdin"));
    assert_eq!(step(&r, "c").output.as_deref(), Some("from env\n"));
    assert!(
        matches!(&step(&r, "d").status, StepStatus::Failed(e) if e.contains("exited with status")),
        "{:?}",
        step(&r, "d").status
    );
}

#[tokio::test]
async fn a_fallback_runs_on_its_own_provider() {
    // Regression: the fallback's provider was missing from the plan and ran on the simulator.
    let src = r#"
provider flaky { kind: sim, failures: 5 }
provider local { kind: openai, base_url: "http://127.0.0.1:9/v1" }
model bad { provider: flaky }
model other { provider: local, name: "other-model" }
agent a { model: bad, fallback: other }
workflow main() { x = a("hi") }
"#;
    let (r, _) = run_script(src, &[]).await;
    let x = step(&r, "x");
    assert_eq!(x.model.as_deref(), Some("other"));
    assert!(
        matches!(&x.status, StepStatus::Failed(e) if e.contains("cannot reach openai at http://127.0.0.1:9/v1")),
        "{:?}",
        x.status
    );
}

#[tokio::test(start_paused = true)]
async fn simulate_keeps_a_sim_providers_failures() {
    let src = "provider flaky { kind: sim, failures: 1 }\nmodel m { provider: flaky }\nagent a { model: m, retry: 1 }\nworkflow main() { x = a(\"hi\") }";
    let opts = RunOptions {
        target: Target::Simulate {
            latency_ms: 10,
            run_commands: false,
        },
        ..RunOptions::default()
    };
    let (r, _) = run_with(src, &opts).await;
    assert_eq!(step(&r, "x").attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn numbers_render_as_written() {
    let src = format!(
        "{MODELS}\nworkflow main(n: number, x: number) {{ s = a(\"{{n}} and {{x}}\"); return \"{{n}}/{{x}}\" }}"
    );
    let (r, _) = run_script(&src, &[("n", "3"), ("x", "2.5")]).await;
    assert_eq!(r.output.as_deref(), Some("3/2.5"));
}

#[tokio::test(start_paused = true)]
async fn record_inputs_keep_their_field_order() {
    let src = format!(
        "{MODELS}\nworkflow main(r: {{ zeta: text, alpha: text }}) {{ s = a(\"{{r}}\"); return \"{{r}} {{r.alpha}}\" }}"
    );
    let (r, _) = run_script(&src, &[("r", r#"{"zeta": "z", "alpha": "a"}"#)]).await;
    assert_eq!(r.output.as_deref(), Some(r#"{"zeta":"z","alpha":"a"} a"#));
}

#[test]
fn backoff_follows_the_sdk_formula() {
    // Exposed through the Retrying events above; here the bounds over many samples.
    let src = r#"
provider flaky { kind: sim, latency: 1s, failures: 6 }
model m { provider: flaky }
agent a { model: m }
workflow main() { x = a<retry 6>("hello") }
"#;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let (_, events) = rt.block_on(run_script(src, &[]));
    let delays: Vec<u64> = events
        .iter()
        .filter_map(|e| {
            if let Event::Retrying { delay_ms, .. } = e {
                Some(*delay_ms)
            } else {
                None
            }
        })
        .collect();
    let caps = [500, 1000, 2000, 4000, 8000, 8000];
    assert_eq!(delays.len(), caps.len());
    for (d, cap) in delays.iter().zip(caps) {
        assert!(*d <= cap && *d >= cap * 3 / 4, "{delays:?}");
    }
}

#[tokio::test]
async fn an_overloaded_model_falls_back_at_once_and_a_final_error_is_not_retried() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(529).set_body_string(r#"{"error":{"message":"Overloaded"}}"#),
        )
        .expect(1) // no retries on the overloaded model: the fallback is used at once
        .mount(&server)
        .await;
    let src = format!(
        r#"
provider busy {{ kind: openai, base_url: "{}/v1" }}
provider spare {{ kind: sim }}
model primary {{ provider: busy }}
model backup {{ provider: spare }}
agent a {{ model: primary, fallback: backup, retry: 3 }}
workflow main() {{ x = a("hi") }}
"#,
        server.uri()
    );
    let (r, _) = run_script(&src, &[]).await;
    let x = step(&r, "x");
    assert_eq!(x.status, StepStatus::Succeeded, "{:?}", x.status);
    assert_eq!(x.model.as_deref(), Some("backup"));
    assert_eq!(x.attempts, 2);

    // A 400 (for example a prompt over the context length) is final: one request, no retry.
    let bad = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_string(r#"{"error":{"message":"context length exceeded"}}"#),
        )
        .expect(1)
        .mount(&bad)
        .await;
    let src = format!(
        "provider p {{ kind: openai, base_url: \"{}/v1\" }}\nmodel m {{ provider: p }}\nagent a {{ model: m, retry: 3 }}\nworkflow main() {{ x = a(\"hi\") }}",
        bad.uri()
    );
    let (r, _) = run_script(&src, &[]).await;
    let x = step(&r, "x");
    assert_eq!(x.attempts, 1);
    assert!(
        matches!(&x.status, StepStatus::Failed(e) if e.contains("HTTP 400") && e.contains("context length")),
        "{:?}",
        x.status
    );
}

#[tokio::test(start_paused = true)]
async fn model_steps_retry_twice_by_default_commands_not_at_all() {
    let src = r#"
provider flaky { kind: sim, latency: 1s, failures: 2 }
model m { provider: flaky }
agent a { model: m }
agent fails { run: ["false"] }
workflow main() { x = a("hello"); y = fails("") }
"#;
    let (r, events) = run_script(src, &[]).await;
    let x = step(&r, "x");
    assert_eq!(x.status, StepStatus::Succeeded, "{:?}", x.status);
    assert_eq!(x.attempts, 3);
    let y = step(&r, "y");
    assert!(matches!(y.status, StepStatus::Failed(_)), "{:?}", y.status);
    assert_eq!(y.attempts, 1);
    let retried: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Retrying { step, .. } => Some(step.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(retried, ["x", "x"]);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_ends_the_step_across_attempts_and_skips_the_fallback() {
    let src = r#"
provider slow { kind: sim, latency: 10s }
provider quick { kind: sim, latency: 1s }
model primary { provider: slow }
model backup { provider: quick }
agent a { model: primary, fallback: backup, retry: 5, timeout: 2s }
workflow main() { x = a<deadline 5s>("hello"); later = a("after {x}") }
"#;
    let (r, events) = run_script(src, &[]).await;
    let x = step(&r, "x");
    // Attempt 1 runs 0–2 s, a backoff of 375–500 ms, attempt 2 until about 4.5 s, and the
    // deadline passes during the next backoff.
    assert_eq!(x.attempts, 2);
    assert_eq!(
        x.status,
        StepStatus::Failed(
            "deadline of 5s passed after 2 attempts on `primary` (last error: attempt timed out after 2s)"
                .into()
        )
    );
    assert_eq!((x.started_ms, x.finished_ms), (Some(0), Some(5000)));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::FallingBack { .. })),
        "the deadline covers the fallback too"
    );
    assert!(matches!(step(&r, "later").status, StepStatus::Skipped(_)));
    assert_eq!(r.wall_ms, 5000);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_long_enough_changes_nothing() {
    let src = r#"
provider quick { kind: sim, latency: 1s, failures: 1 }
model m { provider: quick }
agent a { model: m, deadline: 1m }
workflow main() <deadline 2s> { x = a("hello") }
"#;
    let (r, _) = run_script(src, &[]).await;
    let x = step(&r, "x");
    // The agent's deadline (1 m) wins over the workflow's (2 s), as `timeout` would.
    assert_eq!(x.status, StepStatus::Succeeded, "{:?}", x.status);
    assert_eq!(x.attempts, 2);
}

#[tokio::test]
async fn a_deadline_kills_a_command() {
    let src = r#"
agent nap { run: ["sleep", "30"] }
workflow main() { x = nap<deadline 300ms>("") }
"#;
    let (r, _) = run_script(src, &[]).await;
    let x = step(&r, "x");
    assert_eq!(
        x.status,
        StepStatus::Failed("deadline of 300ms passed after 1 attempt on `command`".into())
    );
}

/// Start of each step's first attempt, in milliseconds.
fn starts(r: &RunReport, names: &[&str]) -> Vec<u64> {
    names
        .iter()
        .map(|n| step(r, n).started_ms.expect("started"))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn requests_per_minute_is_shared_by_the_whole_run() {
    let src = r#"
provider limited { kind: sim, latency: 100ms, requests_per_minute: 60 }
provider free { kind: sim, latency: 100ms }
model m { provider: limited }
model f { provider: free }
agent a { model: m }
agent b { model: f }
workflow main() {
  parallel <> {
    p1 = a("1")
    p2 = a("2")
    then { p3 = a("3") }
    q1 = b("1")
    q2 = b("2")
  }
  p4 = a("4")
}
"#;
    let (r, events) = run_script(src, &[]).await;
    assert!(r.succeeded, "{r:?}");
    // One request a second to `limited`, whichever block or sequence asks; `free` is unbounded.
    let mut limited = starts(&r, &["p1", "p2", "p3"]);
    limited.sort_unstable();
    assert_eq!(limited, [0, 1000, 2000]);
    assert_eq!(starts(&r, &["q1", "q2"]), [0, 0]);
    assert_eq!(starts(&r, &["p4"]), [3000]);
    let waits = events
        .iter()
        .filter(|e| matches!(e, Event::Waiting { reason, .. } if reason.contains("`limited`'s requests_per_minute")))
        .count();
    assert!(waits >= 3, "{waits}");
}

#[tokio::test(start_paused = true)]
async fn tokens_per_minute_counts_input_and_max_tokens() {
    let src = r#"
provider limited { kind: sim, latency: 100ms, tokens_per_minute: 1000 }
model m { provider: limited }
agent a { model: m, max_tokens: 400 }
workflow main() { parallel <> { t1 = a("1"); t2 = a("2"); t3 = a("3") } }
"#;
    let (r, _) = run_script(src, &[]).await;
    assert!(r.succeeded, "{r:?}");
    let mut at = starts(&r, &["t1", "t2", "t3"]);
    at.sort_unstable();
    // Each request counts 1 token of prompt + 400 of max_tokens: two fit in the minute's
    // 1000; the third waits until 401 tokens have refilled beyond the 198 left, at 1000 a
    // minute: (2 × 401 + 401 − 1000) × 60 ms = 12.18 s.
    assert_eq!(at, [0, 0, 12_180]);
}

// ------------------------------------------------------------------ context windows

const WINDOWED: &str = r#"
provider s { kind: sim, latency: 1s }
model small { provider: s, name: "small-1", context_window: 1000 }
model large { provider: s, name: "large-1", context_window: 100000 }
agent reader { model: small, max_tokens: 100 }
agent careful { model: small, max_tokens: 100, fallback: large }
workflow main(doc: text) {
  first = reader("Say hello")
  summary = reader("Summarise: {doc}")
  return summary
}
"#;

#[tokio::test(start_paused = true)]
async fn a_prompt_over_the_context_window_fails_its_step_before_any_request() {
    // 3,600 characters: ~900 tokens, which with max_tokens 100 is over the window of 1,000.
    let doc = "word ".repeat(720);
    let (r, events) = run_script(WINDOWED, &[("doc", &doc)]).await;
    assert!(!r.succeeded);
    assert_eq!(step(&r, "first").status, StepStatus::Succeeded);
    let s = step(&r, "summary");
    assert_eq!(
        s.status,
        StepStatus::Failed(
            "step `summary`: its prompt is ~903 tokens (system text and prompt at 4 characters a token), which with `max_tokens` 100 is more than the 1,000-token context window of model `small` (small-1); nothing was sent. Interpolate less (the largest value it interpolates is `{doc}`, ~900 tokens), lower `max_tokens`, or use a model with a larger `context_window`".into()
        )
    );
    // No attempt was made: nothing was sent, nothing was paid.
    assert_eq!((s.attempts, s.cost_usd), (0, 0.0));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Started { step, .. } if step == "summary"))
    );

    // A shorter one fits (~878 tokens and 100 to answer).
    let fits = "word ".repeat(700);
    let (r, _) = run_script(WINDOWED, &[("doc", &fits)]).await;
    assert!(r.succeeded, "{:?}", step(&r, "summary").status);
}

#[tokio::test(start_paused = true)]
async fn a_fallback_with_a_larger_window_takes_a_prompt_its_model_cannot() {
    let src = WINDOWED.replace("summary = reader(", "summary = careful(");
    let doc = "word ".repeat(720);
    let (r, events) = run_script(&src, &[("doc", &doc)]).await;
    assert!(r.succeeded, "{:?}", step(&r, "summary").status);
    assert_eq!(step(&r, "summary").model.as_deref(), Some("large"));
    assert!(events.iter().any(
        |e| matches!(e, Event::FallingBack { step, model } if step == "summary" && model == "large")
    ));
}
