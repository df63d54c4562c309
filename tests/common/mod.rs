//! Helpers shared by the integration tests that run or plan scripts.

use orch::check::Program;
use orch::plan::Plan;
use orch::resolve::ResolveOptions;

/// Compiles `src` (named `name`, includes relative to the working directory), asserts it has
/// no errors, and lowers its entry workflow (`main` or the only one) to a plan.
pub fn compile_plan(name: &str, src: &str) -> (Program, Plan) {
    let (program, diags) = orch::compile_source(
        name,
        src,
        std::path::Path::new("."),
        &ResolveOptions::default(),
    );
    assert!(
        !diags.has_errors(),
        "script has errors: {:?}",
        diags.iter().map(|d| &d.message).collect::<Vec<_>>()
    );
    let entry = orch::diag::Span::new(orch::diag::FileId(0), 0, 0);
    let wf = orch::plan::entry_workflow(&program, None, entry).expect("entry workflow");
    let plan = orch::plan::lower(&program, wf);
    (program, plan)
}
