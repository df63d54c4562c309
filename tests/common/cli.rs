//! The `orch` binary as the tests call it.

use std::process::{Command, Output};

/// Variables of the caller's environment that change what `orch` does: provider keys, the
/// `ORCH_*` defaults of its flags (`--simulate`, `--endpoint`, `--endpoint-model`,
/// `--state-dir`), and the OpenTelemetry variables that would send traces to a collector.
/// The binary starts without them; a test sets what it needs.
pub const CALLER_ENV: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "ORCH_SIMULATE",
    "ORCH_ENDPOINT",
    "ORCH_ENDPOINT_MODEL",
    "ORCH_STATE_DIR",
    "ORCH_ENGINE",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SERVICE_NAME",
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
];

/// `orch`, run from the crate root (where `examples/` and `tests/ui/` are), without
/// [`CALLER_ENV`].
pub fn orch_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orch"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    for name in CALLER_ENV {
        cmd.env_remove(name);
    }
    cmd
}

/// stdout, as text (invalid UTF-8 replaced).
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr, as text (invalid UTF-8 replaced).
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
