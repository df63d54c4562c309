//! Running scripts in process: compile, lower, run the entry workflow, and collect every event
//! the run reports, in order.

use std::sync::{Arc, Mutex};

use indexmap::IndexMap;
use orch::run::{EnvLookup, Event, RunOptions, RunReport, StepReport};

/// Compiles `src` (which must check clean) and runs its entry workflow with `opts`; the report
/// and every event, in the order they came.
pub async fn run_with(src: &str, opts: &RunOptions) -> (RunReport, Vec<Event>) {
    let (program, plan) = super::compile_plan("test.orch", src);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let on_event = move |e: &Event| sink.lock().unwrap().push(e.clone());
    let report = orch::run::run(&plan, &program.tables.models, opts, &on_event)
        .await
        .expect("run starts");
    let events = events.lock().unwrap().clone();
    (report, events)
}

/// [`run_with`] the default options and these inputs (`(name, value)` as on the command line).
pub async fn run_script(src: &str, pairs: &[(&str, &str)]) -> (RunReport, Vec<Event>) {
    let opts = RunOptions {
        inputs: inputs(pairs),
        ..RunOptions::default()
    };
    run_with(src, &opts).await
}

/// [`run_with`] the script's own providers, every API key variable reading `key` (the servers
/// of these tests are on loopback).
pub async fn run_keyed(key: &'static str, src: &str) -> (RunReport, Vec<Event>) {
    let opts = RunOptions {
        env: Some(EnvLookup(Arc::new(move |_: &str| Some(key.to_string())))),
        ..RunOptions::default()
    };
    run_with(src, &opts).await
}

/// Run inputs from `(name, value)` pairs, in order.
pub fn inputs(pairs: &[(&str, &str)]) -> IndexMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The report of step `name`; fails the test when the run has none.
pub fn step<'r>(r: &'r RunReport, name: &str) -> &'r StepReport {
    r.steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name}"))
}

/// Every retry the run announced: `(error, delay in ms)`, in order.
pub fn retries(events: &[Event]) -> Vec<(String, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Retrying {
                error, delay_ms, ..
            } => Some((error.clone(), *delay_ms)),
            _ => None,
        })
        .collect()
}
