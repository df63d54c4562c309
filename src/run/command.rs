//! Command agents: a step answered by running a local program.
//!
//! The program is started directly (`argv[0]` looked up on `PATH`, no shell, so no quoting or
//! injection issues), the rendered prompt is written to its stdin, and its stdout is the
//! answer. A non-zero exit is an error that carries the end of stderr. What the program prints
//! is redacted ([`crate::redact`]) before anything reads it, after the values of the variables
//! set for it whose names mark them as secrets are registered.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::redact::{Redacted, redact};

/// How many trailing lines of stderr a [`CommandError::Failed`] keeps.
const STDERR_TAIL_LINES: usize = 20;

/// How many trailing characters of stderr a [`CommandError::Failed`] keeps (at most).
const STDERR_TAIL_CHARS: usize = 2000;

/// How many trailing bytes of stderr are kept while a program runs: enough for the tail an
/// error shows (2000 characters of up to 4 bytes), however much it writes.
pub const STDERR_KEPT_BYTES: usize = 64 * 1024;

/// What to run for one command step.
///
/// `Debug` shows environment variable names but not their values, which may be secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CommandSpec {
    /// Program and arguments; `argv[0]` is looked up on `PATH` unless it contains a `/`.
    /// Passed to the program verbatim — no shell is involved.
    pub argv: Vec<String>,
    /// Extra environment variables, set on top of the inherited environment.
    pub env: Vec<(String, String)>,
    /// Written to the program's stdin, which is then closed (the rendered prompt).
    pub stdin: String,
    /// Working directory; the current one when `None`.
    pub cwd: Option<PathBuf>,
    /// The longest stdout accepted, in bytes; `None`:
    /// [`crate::run::provider::DEFAULT_MAX_OUTPUT_BYTES`]. A program that writes more is
    /// killed and the step fails with [`CommandError::TooLarge`].
    pub max_stdout_bytes: Option<u32>,
    /// Whether inherited environment variables that hold secrets are left out of the
    /// program's environment: those whose names mark them as secrets
    /// ([`crate::redact::is_secret_name`]: `ANTHROPIC_API_KEY`, `GITHUB_TOKEN`) and those whose
    /// values redaction would hide (every API key the run read, whatever its variable is
    /// called, and key-shaped values). The `exec` tool sets it, so a program a model runs
    /// never sees a provider's key; a command agent, which the script's author chose to run,
    /// inherits the whole environment. Variables in [`Self::env`] are always set.
    pub scrub_secrets: bool,
    /// Whether the program runs in a process group of its own, which is killed (`SIGKILL`)
    /// when it ends or its future is dropped (a timeout): programs it started (`cargo test`'s
    /// test binaries, a `&` in a script) do not outlive the call.
    pub own_process_group: bool,
}

impl fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env_names: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("CommandSpec")
            .field("argv", &self.argv)
            .field("env", &env_names)
            .field("stdin_chars", &self.stdin.chars().count())
            .field("cwd", &self.cwd)
            .field("max_stdout_bytes", &self.max_stdout_bytes)
            .field("scrub_secrets", &self.scrub_secrets)
            .field("own_process_group", &self.own_process_group)
            .finish()
    }
}

/// What a successful command printed, redacted ([`crate::redact`]). Bytes that are not UTF-8
/// are replaced with `U+FFFD`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Everything written to stdout: the step's answer.
    pub stdout: String,
    /// The end of what was written to stderr (diagnostics; not part of the answer): its last
    /// [`STDERR_KEPT_BYTES`] bytes.
    pub stderr: String,
}

/// Why a command step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The command has no program to run.
    #[error("command has an empty argv: nothing to run")]
    EmptyArgv,
    /// The program could not be started.
    #[error("cannot start `{program}`: {message}")]
    Spawn {
        /// `argv[0]`.
        program: String,
        /// Why, with a hint (e.g. to check `PATH` when the program is not found).
        message: String,
    },
    /// Feeding stdin or reading the output failed while the program ran.
    #[error("I/O error while running `{program}`: {message}")]
    Io {
        /// `argv[0]`.
        program: String,
        /// The operating system's message.
        message: String,
    },
    /// The program wrote more to stdout than [`CommandSpec::max_stdout_bytes`]; it was
    /// killed.
    #[error("`{program}` wrote more than {max_stdout_bytes} bytes to stdout; it was stopped")]
    TooLarge {
        /// `argv[0]`.
        program: String,
        /// The bound, in bytes.
        max_stdout_bytes: u32,
    },
    /// The program ran and exited unsuccessfully.
    #[error("`{program}` {}{}", describe_status(*.status), describe_tail(.stderr_tail))]
    Failed {
        /// `argv[0]`.
        program: String,
        /// The exit code; `None` when the program was killed by a signal.
        status: Option<i32>,
        /// The last lines of stderr (at most 20 lines and 2000 characters), trimmed, redacted.
        stderr_tail: String,
    },
    /// A failure recorded in a cassette, replayed (`--replay`), or a command the replayed
    /// cassette does not have ([`crate::run::cassette::Cassette::command`]).
    #[error("{0}")]
    Replayed(String),
}

fn describe_status(status: Option<i32>) -> String {
    match status {
        Some(code) => format!("exited with status {code}"),
        None => "was killed by a signal".to_owned(),
    }
}

fn describe_tail(tail: &str) -> String {
    if tail.is_empty() {
        " (stderr was empty)".to_owned()
    } else {
        format!("; stderr ends with:\n{tail}")
    }
}

/// How a program that ran to its end exited, with what it printed (redacted), for a step
/// that declares `-> outcome` (docs/language.md, "A command's outcome as a value").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandExit {
    /// Its stdout and the end of its stderr.
    pub output: CommandOutput,
    /// The exit code.
    pub code: i32,
}

/// [`run_command`] without judging the exit code: a program that exits non-zero is a
/// [`CommandExit`] like one that exits 0.
///
/// # Errors
/// Those of [`run_command`]; [`CommandError::Failed`] only when the program was killed by a
/// signal (it has no exit code).
pub async fn run_to_exit(spec: &CommandSpec) -> Result<CommandExit, CommandError> {
    let (stdout, stderr, code) = run_raw(spec).await?;
    let Some(code) = code else {
        return Err(CommandError::Failed {
            program: spec.argv[0].clone(),
            status: None,
            stderr_tail: tail(&stderr).into_string(),
        });
    };
    Ok(CommandExit {
        output: CommandOutput {
            stdout: stdout.into_string(),
            stderr: stderr.into_string(),
        },
        code,
    })
}

/// The output of a program that exited with 0; any other exit is [`CommandError::Failed`]
/// with the end of its stderr: how [`run_command`] and a command step judge an exit, whether
/// it came from [`run_to_exit`] or from a replayed cassette.
///
/// # Errors
/// [`CommandError::Failed`] for a non-zero exit code.
pub fn require_success(
    spec: &CommandSpec,
    exit: CommandExit,
) -> Result<CommandOutput, CommandError> {
    if exit.code == 0 {
        return Ok(exit.output);
    }
    Err(CommandError::Failed {
        program: spec.argv.first().cloned().unwrap_or_default(),
        status: Some(exit.code),
        // Already redacted: it is what a run printed, as recorded.
        stderr_tail: tail_of(&exit.output.stderr).to_string(),
    })
}

/// Runs `spec.argv` without a shell, writes `spec.stdin` to the program and closes its stdin,
/// and collects stdout and stderr concurrently (so a chatty program cannot dead-lock on a full
/// pipe) until it exits.
///
/// The child is started with `kill_on_drop`: dropping the returned future (for example when
/// the scheduler's timeout fires) kills it. Processes the child itself started are not
/// tracked unless [`CommandSpec::own_process_group`] is set. A program that exits without
/// reading all of its stdin is not an error.
///
/// # Errors
/// - [`CommandError::EmptyArgv`] when `argv` is empty;
/// - [`CommandError::Spawn`] when the program cannot be started (not found, not
///   executable, bad working directory);
/// - [`CommandError::Io`] when writing stdin or reading the output fails;
/// - [`CommandError::TooLarge`] when stdout exceeds [`CommandSpec::max_stdout_bytes`];
/// - [`CommandError::Failed`] when it exits with a non-zero status or is killed by a signal.
pub async fn run_command(spec: &CommandSpec) -> Result<CommandOutput, CommandError> {
    require_success(spec, run_to_exit(spec).await?)
}

/// Runs the program to its end, stdout bounded (past [`CommandSpec::max_stdout_bytes`] it is
/// killed: [`CommandError::TooLarge`]): its redacted stdout and stderr and its exit code
/// (`None` when killed by a signal).
async fn run_raw(spec: &CommandSpec) -> Result<(Redacted, Redacted, Option<i32>), CommandError> {
    let max_stdout = max_stdout_bytes(spec);
    let program = spec.argv.first().cloned().unwrap_or_default();
    let read_stdout = |pipe| async move {
        match read_at_most(pipe, max_stdout as usize).await {
            Ok(Some(out)) => Ok(out),
            Ok(None) => Err(CommandError::TooLarge {
                program,
                max_stdout_bytes: max_stdout,
            }),
            Err(e) => Err(unnamed_io(e)),
        }
    };
    let ran = run_with(spec, read_stdout).await?;
    Ok((redact(ran.stdout), redact(ran.stderr), ran.status.code()))
}

/// How a program run by [`run_program`] ended, and what it printed (redacted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramOutput {
    /// The exit code; `None` when the program was killed by a signal.
    pub status: Option<i32>,
    /// The end of what it wrote to stdout: its last [`CommandSpec::max_stdout_bytes`] bytes.
    pub stdout: String,
    /// Whether the start of stdout was dropped to keep within that bound.
    pub stdout_cut: bool,
    /// The end of what it wrote to stderr: its last [`STDERR_KEPT_BYTES`] bytes.
    pub stderr: String,
}

/// Runs a program like [`run_command`], for callers that show its output whatever its exit
/// status (the `exec` tool: a failing `cargo test` says why on stdout). Memory stays bounded
/// however much it prints: stdout keeps its last [`CommandSpec::max_stdout_bytes`] bytes (a
/// test run's summary is at its end), stderr its last [`STDERR_KEPT_BYTES`]; the program is
/// not stopped for printing. Bound its time by dropping the future (`tokio::time::timeout`).
///
/// # Errors
/// [`CommandError::EmptyArgv`], [`CommandError::Spawn`] and [`CommandError::Io`], as for
/// [`run_command`]; an unsuccessful exit is not an error.
pub async fn run_program(spec: &CommandSpec) -> Result<ProgramOutput, CommandError> {
    let keep = max_stdout_bytes(spec) as usize;
    let read_stdout = |pipe| async move { read_tail(pipe, keep).await.map_err(unnamed_io) };
    let ran = run_with(spec, read_stdout).await?;
    let (stdout, stdout_cut) = ran.stdout;
    Ok(ProgramOutput {
        status: ran.status.code(),
        stdout: redact(stdout).into_string(),
        stdout_cut,
        stderr: redact(ran.stderr).into_string(),
    })
}

fn max_stdout_bytes(spec: &CommandSpec) -> u32 {
    spec.max_stdout_bytes
        .unwrap_or(crate::run::provider::DEFAULT_MAX_OUTPUT_BYTES)
}

/// What [`run_with`] collected: stdout as its reader made it, stderr's tail (not redacted
/// yet), the exit status.
struct Ran<T> {
    stdout: T,
    stderr: String,
    status: std::process::ExitStatus,
}

/// Reading a pipe failed: the program's name is added by [`run_with`].
fn unnamed_io(err: io::Error) -> CommandError {
    CommandError::Io {
        program: String::new(),
        message: err.to_string(),
    }
}

/// The part [`run_command`] and [`run_program`] share: start the program (environment,
/// working directory, pipes, process group), feed stdin, read stdout with `read_stdout` and
/// stderr's tail concurrently, wait for the exit.
async fn run_with<T, F, Fut>(spec: &CommandSpec, read_stdout: F) -> Result<Ran<T>, CommandError>
where
    F: FnOnce(Option<tokio::process::ChildStdout>) -> Fut,
    Fut: std::future::Future<Output = Result<T, CommandError>>,
{
    let Some(program) = spec.argv.first() else {
        return Err(CommandError::EmptyArgv);
    };
    let mut child = command(spec).spawn().map_err(|err| CommandError::Spawn {
        program: program.clone(),
        message: spawn_message(program, spec.cwd.as_ref(), &err),
    })?;
    // Declared after `child`, so dropped before it: the group goes first.
    let _group = GroupGuard(
        spec.own_process_group
            .then(|| child.id())
            .flatten()
            .and_then(|id| i32::try_from(id).ok())
            .map(nix::unistd::Pid::from_raw),
    );
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let feed = async {
        if let Some(mut pipe) = stdin {
            match pipe.write_all(spec.stdin.as_bytes()).await {
                // The program did not want (all of) its input: not our problem.
                Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {}
                other => other?,
            }
            match pipe.shutdown().await {
                Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {}
                other => other?,
            }
            // Dropping the pipe closes the program's stdin.
        }
        Ok::<(), io::Error>(())
    };
    let named = |err: CommandError| match err {
        CommandError::Io { message, .. } => CommandError::Io {
            program: program.clone(),
            message,
        },
        other => other,
    };
    // On an error (stdout too large) `child` is dropped on return, which kills it.
    let ((), stdout, (stderr, _), status) = tokio::try_join!(
        async { feed.await.map_err(unnamed_io) },
        read_stdout(stdout),
        async {
            read_tail(stderr, STDERR_KEPT_BYTES)
                .await
                .map_err(unnamed_io)
        },
        async { child.wait().await.map_err(unnamed_io) },
    )
    .map_err(named)?;
    Ok(Ran {
        stdout,
        stderr,
        status,
    })
}

/// The [`Command`] for `spec`: no shell, its environment and working directory, every pipe
/// captured, killed when dropped.
fn command(spec: &CommandSpec) -> Command {
    let mut command = Command::new(&spec.argv[0]);
    command
        .args(&spec.argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if spec.scrub_secrets {
        command
            .env_clear()
            .envs(std::env::vars_os().filter(|(name, value)| {
                !holds_secret(&name.to_string_lossy(), &value.to_string_lossy())
            }));
    }
    for (name, value) in &spec.env {
        crate::redact::register_env(name, value);
        command.env(name, value);
    }
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    if spec.own_process_group {
        command.process_group(0);
    }
    command
}

/// Whether an inherited variable holds a secret: its name says so, or redaction would hide
/// (part of) its value — a key the run read, or a key-shaped value.
fn holds_secret(name: &str, value: &str) -> bool {
    crate::redact::is_secret_name(name) || redact(value).as_str() != value
}

/// Kills a process group when dropped (see [`CommandSpec::own_process_group`]). Its members
/// that are left are reparented to init, which reaps them: no zombies.
struct GroupGuard(Option<nix::unistd::Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            // ESRCH (every member already gone) is the usual, harmless outcome.
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Reads a pipe to its end, converting lossily to UTF-8: `None` as soon as it holds more
/// than `limit` bytes.
async fn read_at_most(
    pipe: Option<impl AsyncRead + Unpin>,
    limit: usize,
) -> io::Result<Option<String>> {
    let mut bytes = Vec::new();
    if let Some(pipe) = pipe {
        // One byte past the limit tells "exactly the limit" from "more".
        pipe.take(limit as u64 + 1).read_to_end(&mut bytes).await?;
    }
    Ok((bytes.len() <= limit).then(|| lossy(bytes)))
}

/// Reads a pipe to its end, keeping its last `keep` bytes (converted lossily to UTF-8), and
/// whether any were dropped.
/// When bytes were dropped, the kept text starts after the first whitespace: the cut may
/// fall inside a secret, whose tail the redaction that follows could no longer recognise
/// (keys never hold whitespace).
pub(crate) async fn read_tail(
    pipe: Option<impl AsyncRead + Unpin>,
    keep: usize,
) -> io::Result<(String, bool)> {
    let mut kept = std::collections::VecDeque::with_capacity(keep.min(8192));
    let mut dropped = false;
    if let Some(mut pipe) = pipe {
        let mut chunk = [0u8; 8192];
        loop {
            let n = pipe.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            kept.extend(&chunk[..n]);
            let over = kept.len().saturating_sub(keep);
            dropped |= over > 0;
            kept.drain(..over);
        }
    }
    if dropped {
        let word = kept.iter().position(|b: &u8| b.is_ascii_whitespace());
        kept.drain(..word.unwrap_or(kept.len()));
    }
    Ok((lossy(kept.into()), dropped))
}

fn lossy(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    }
}

/// A spawn failure explained, with a hint for the common causes.
fn spawn_message(program: &str, cwd: Option<&PathBuf>, err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::NotFound => match cwd {
            Some(dir) if !dir.is_dir() => {
                format!("working directory {} does not exist ({err})", dir.display())
            }
            _ if program.contains('/') => format!("no such file ({err})"),
            _ => format!(
                "program not found ({err}); check that it is installed and that its \
                 directory is on PATH"
            ),
        },
        io::ErrorKind::PermissionDenied => {
            format!("permission denied ({err}); check that the file is executable")
        }
        _ => err.to_string(),
    }
}

/// The last [`STDERR_TAIL_LINES`] lines of `stderr`, at most [`STDERR_TAIL_CHARS`]
/// characters, without surrounding whitespace.
fn tail(stderr: &Redacted) -> Redacted {
    stderr.slice(tail_of)
}

fn tail_of(stderr: &str) -> &str {
    let trimmed = stderr.trim_end();
    let start = trimmed
        .rmatch_indices('\n')
        .nth(STDERR_TAIL_LINES - 1)
        .map_or(0, |(i, _)| i + 1);
    let lines = &trimmed[start..];
    let chars = lines.chars().count();
    let lines = if chars > STDERR_TAIL_CHARS {
        match lines.char_indices().nth(chars - STDERR_TAIL_CHARS) {
            Some((cut, _)) => &lines[cut..],
            None => lines,
        }
    } else {
        lines
    };
    lines.trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(argv: &[&str], stdin: &str) -> CommandSpec {
        CommandSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            stdin: stdin.to_owned(),
            ..CommandSpec::default()
        }
    }

    #[tokio::test]
    async fn cat_round_trips_stdin() {
        let out = run_command(&spec(&["cat"], "hello\nworld ✓"))
            .await
            .expect("cat");
        assert_eq!(
            out,
            CommandOutput {
                stdout: "hello\nworld ✓".into(),
                stderr: String::new()
            }
        );
    }

    #[tokio::test]
    async fn echo_ignores_stdin_and_args_are_not_shell_parsed() {
        // A large stdin that echo never reads must not fail (broken pipe is ignored).
        let big = "x".repeat(1 << 20);
        let out = run_command(&spec(&["echo", "a  b", "$HOME", "; rm -rf /"], &big))
            .await
            .expect("echo");
        assert_eq!(out.stdout, "a  b $HOME ; rm -rf /\n");
    }

    #[tokio::test]
    async fn large_output_on_both_pipes_does_not_deadlock() {
        let input = "line of text\n".repeat(50_000);
        let out = run_command(&spec(&["sh", "-c", "tee /dev/stderr"], &input))
            .await
            .expect("tee");
        assert_eq!(out.stdout, input);
        // stderr: only its end is kept, however much the program writes.
        assert!(out.stderr.len() <= STDERR_KEPT_BYTES);
        assert!(out.stderr.len() > STDERR_KEPT_BYTES - 20);
        assert!(input.ends_with(&out.stderr));
    }

    #[tokio::test]
    async fn a_secret_cut_by_the_stderr_tail_leaves_no_part_of_it() {
        // The kept tail would start inside the key: its visible part must go too.
        let key = "sk-tail-cut-0123456789abcdef";
        crate::redact::register(key);
        let filler = "y".repeat(STDERR_KEPT_BYTES - 10);
        let script = format!("printf '%s%s' '{key}' '{filler}' >&2");
        let out = run_command(&spec(&["sh", "-c", &script], ""))
            .await
            .expect("sh");
        // No whitespace after the cut: nothing of the tail can be told apart from the key.
        assert!(out.stderr.is_empty(), "kept: {:?}", out.stderr.get(..40));
    }

    #[tokio::test]
    async fn stdout_past_its_bound_stops_the_program() {
        // An endless writer: stopped at the bound instead of filling memory.
        let mut endless = spec(&["sh", "-c", "yes 0123456789abcdef"], "");
        endless.max_stdout_bytes = Some(100_000);
        let err = run_command(&endless).await.expect_err("too large");
        assert_eq!(
            err,
            CommandError::TooLarge {
                program: "sh".into(),
                max_stdout_bytes: 100_000
            }
        );
        assert!(err.to_string().contains("more than 100000 bytes"), "{err}");
        // Exactly the bound is fine.
        let mut exact = spec(&["head", "-c", "1000", "/dev/zero"], "");
        exact.max_stdout_bytes = Some(1000);
        assert_eq!(
            run_command(&exact)
                .await
                .expect("at the bound")
                .stdout
                .len(),
            1000
        );
        exact.max_stdout_bytes = Some(999);
        assert!(matches!(
            run_command(&exact).await,
            Err(CommandError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn nonzero_exit_reports_stderr_tail() {
        let err = run_command(&spec(&["sh", "-c", "echo oops >&2; exit 3"], ""))
            .await
            .expect_err("exit 3");
        assert_eq!(
            err,
            CommandError::Failed {
                program: "sh".into(),
                status: Some(3),
                stderr_tail: "oops".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "`sh` exited with status 3; stderr ends with:\noops"
        );
    }

    #[tokio::test]
    async fn long_stderr_is_cut_to_last_lines() {
        let script = "i=1; while [ $i -le 50 ]; do echo line$i >&2; i=$((i+1)); done; exit 1";
        let err = run_command(&spec(&["sh", "-c", script], ""))
            .await
            .expect_err("exit 1");
        let CommandError::Failed { stderr_tail, .. } = err else {
            panic!("expected Failed, got {err:?}");
        };
        let lines: Vec<&str> = stderr_tail.lines().collect();
        assert_eq!(lines.len(), 20);
        assert_eq!(lines[0], "line31");
        assert_eq!(lines[19], "line50");
    }

    #[test]
    fn tail_caps_characters() {
        let tail = |text: &str| tail(&redact(text)).into_string();
        let long = format!("first\n{}", "é".repeat(5000));
        let t = tail(&long);
        assert_eq!(t.chars().count(), STDERR_TAIL_CHARS);
        assert_eq!(tail("  \n"), "");
        assert_eq!(tail("a\nb\n\n"), "a\nb");
    }

    #[tokio::test]
    async fn secrets_set_for_a_program_are_redacted_from_what_it_prints() {
        let token = "cmd-test-Hx4Nq8Vw2Lp6";
        let mut s = spec(
            &[
                "sh",
                "-c",
                "echo out $DEPLOY_TOKEN; echo err $DEPLOY_TOKEN >&2",
            ],
            "",
        );
        s.env = vec![("DEPLOY_TOKEN".into(), token.into())];
        let out = run_command(&s).await.expect("sh runs");
        assert_eq!(out.stdout, "out <redacted>\n");
        assert_eq!(out.stderr, "err <redacted>\n");
        s.argv[2] = "echo $DEPLOY_TOKEN >&2; exit 3".into();
        let err = run_command(&s).await.expect_err("exit 3").to_string();
        assert!(err.ends_with("stderr ends with:\n<redacted>"), "{err}");
        // A variable whose name says nothing of a secret is not one.
        s.env = vec![("GREETING".into(), "hello-there-friend".into())];
        s.argv[2] = "echo $GREETING".into();
        let out = run_command(&s).await.expect("sh runs");
        assert_eq!(out.stdout, "hello-there-friend\n");
    }

    #[tokio::test]
    async fn killed_by_signal_has_no_status() {
        let err = run_command(&spec(&["sh", "-c", "kill -9 $$"], ""))
            .await
            .expect_err("killed");
        assert!(
            matches!(err, CommandError::Failed { status: None, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("killed by a signal"), "{err}");
    }

    #[tokio::test]
    async fn missing_program_is_spawn_error() {
        let err = run_command(&spec(&["orch-no-such-program-xyz"], ""))
            .await
            .expect_err("missing");
        match &err {
            CommandError::Spawn { program, message } => {
                assert_eq!(program, "orch-no-such-program-xyz");
                assert!(message.contains("not found"), "{message}");
                assert!(message.contains("PATH"), "{message}");
            }
            other => panic!("expected Spawn, got {other:?}"),
        }
        assert!(
            err.to_string()
                .starts_with("cannot start `orch-no-such-program-xyz`")
        );
    }

    #[tokio::test]
    async fn empty_argv() {
        assert_eq!(
            run_command(&CommandSpec::default()).await,
            Err(CommandError::EmptyArgv)
        );
    }

    #[tokio::test]
    async fn env_and_cwd_are_passed() {
        let mut s = spec(&["sh", "-c", "printf '%s|' \"$ORCH_TEST_VAR\"; pwd"], "");
        s.env = vec![("ORCH_TEST_VAR".into(), "value with spaces".into())];
        let dir = std::env::temp_dir().canonicalize().expect("temp dir");
        s.cwd = Some(dir.clone());
        let out = run_command(&s).await.expect("sh");
        assert_eq!(out.stdout, format!("value with spaces|{}\n", dir.display()));
        assert!(!format!("{s:?}").contains("value with spaces"));
    }

    #[tokio::test]
    async fn missing_cwd_is_spawn_error() {
        let mut s = spec(&["cat"], "");
        s.cwd = Some(PathBuf::from("/definitely/not/a/dir"));
        let err = run_command(&s).await.expect_err("bad cwd");
        assert!(
            matches!(&err, CommandError::Spawn { message, .. } if message.contains("working directory")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn non_utf8_output_is_lossy() {
        let out = run_command(&spec(&["sh", "-c", "printf 'a\\377b'"], ""))
            .await
            .expect("printf");
        assert_eq!(out.stdout, "a\u{fffd}b");
    }

    #[tokio::test]
    async fn dropping_the_future_kills_the_child() {
        let marker = std::env::temp_dir().join(format!("orch-kill-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let script = format!("sleep 1; touch {}", marker.display());
        let s = spec(&["sh", "-c", &script], "");
        let result = tokio::time::timeout(Duration::from_millis(100), run_command(&s)).await;
        assert!(result.is_err(), "should time out");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "child survived the dropped future");
    }
}
