//! The `orch` binary: see [`orch::cli`].
fn main() -> std::process::ExitCode {
    orch::cli::main()
}
