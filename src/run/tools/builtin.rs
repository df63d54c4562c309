//! The built-in tools (`docs/language.md`, "Tools"): `read`, `list`, `write`, `edit` here,
//! `glob` and `grep` in [`super::search`], `exec` in [`super::exec`]. Every path goes through
//! [`super::paths::confine`].
//!
//! The file tools do blocking I/O: each call runs on tokio's blocking pool, bounded by the
//! call's timeout (the walks of `glob` and `grep` also stop themselves at it).

use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::paths::{self, Access, Confined};
use super::{BoxFuture, Tool, ToolContext, ToolOutput};
use crate::grant::{Builtin, ToolGrant};
use crate::run::provider::conversation::ToolSpec;

/// Lines `read` returns when the model gives no `limit`.
pub const DEFAULT_READ_LINES: u64 = 2000;

/// Longest line `read` shows whole, in bytes (minified files have megabyte lines).
pub const MAX_LINE_BYTES: usize = 2000;

/// How many bytes at a file's start `read` and `edit` look at for a NUL byte, the sign of a
/// binary file (the test git and ripgrep use).
const BINARY_PROBE_BYTES: usize = 8192;

/// Largest file `edit` rewrites, in bytes (it holds the file in memory twice).
pub const MAX_EDIT_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Most entries `list` shows.
pub const MAX_LIST_ENTRIES: usize = 1000;

/// The tools a grant gives: one for a built-in or `exec`, none for an MCP or agent grant
/// (those come from [`super::mcp::McpPool`] and the agent loop).
pub fn tools_for(grant: &ToolGrant) -> Vec<Arc<dyn Tool>> {
    match grant {
        ToolGrant::Builtin { tool } => match tool {
            Builtin::Glob => vec![Arc::new(super::search::Glob)],
            Builtin::Grep => vec![Arc::new(super::search::Grep)],
            file => vec![Arc::new(FileTool(*file))],
        },
        ToolGrant::Exec { prefixes } => vec![Arc::new(super::exec::Exec::new(prefixes.clone()))],
        ToolGrant::Mcp { .. } | ToolGrant::Agent { .. } => Vec::new(),
    }
}

/// Why a call did not produce a result: refused by confinement, or failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// Refused before it ran (a path outside the workspace, not allowlisted).
    Refused(String),
    /// Bad input or a failure while running: an error result.
    Error(String),
}

impl Failure {
    pub(super) fn into_output(self, max_bytes: usize) -> ToolOutput {
        match self {
            Failure::Refused(why) => ToolOutput::refused(why),
            Failure::Error(why) => ToolOutput::new(&why, true, "error", max_bytes),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Self {
        Failure::Error(paths::plain(&err))
    }
}

/// The outcome of a tool's body: a result, or why not.
pub(super) type Outcome = Result<ToolOutput, Failure>;

/// `input` read as `T`, or an error naming the tool and the expected shape.
pub(super) fn parse<T: DeserializeOwned>(
    tool: &str,
    input: serde_json::Value,
    schema: &serde_json::Value,
) -> Result<T, Failure> {
    serde_json::from_value(input).map_err(|err| {
        Failure::Error(format!(
            "invalid input for `{tool}`: {err}; expected an object matching {schema}"
        ))
    })
}

/// Resolves a path for a tool, a refusal when confinement says no.
pub(super) fn confine(cx: &ToolContext, raw: &str, access: Access) -> Result<Confined, Failure> {
    paths::confine(&cx.workspace, raw, access).map_err(|why| {
        if why.starts_with("cannot ") {
            Failure::Error(why)
        } else {
            Failure::Refused(why)
        }
    })
}

/// Runs a blocking tool body on tokio's blocking pool, bounded by the call's timeout; `body`
/// gets the deadline to stop long walks itself.
pub(super) async fn blocking(
    name: &'static str,
    cx: &ToolContext,
    body: impl FnOnce(&ToolContext, Instant) -> Outcome + Send + 'static,
) -> ToolOutput {
    let owned = cx.clone();
    let deadline = Instant::now() + cx.timeout;
    let job = tokio::task::spawn_blocking(move || body(&owned, deadline));
    let outcome = match tokio::time::timeout(cx.timeout, job).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(join)) => Err(Failure::Error(format!("`{name}` failed: {join}"))),
        Err(_) => Err(Failure::Error(format!(
            "`{name}` did not finish within {} ms; give it a narrower path",
            cx.timeout.as_millis()
        ))),
    };
    outcome.unwrap_or_else(|failure| failure.into_output(cx.max_result_bytes))
}

/// `read`, `list`, `write` and `edit`.
struct FileTool(Builtin);

impl Tool for FileTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.0.name().to_string(),
            description: description(self.0).to_string(),
            input_schema: schema(self.0),
        }
    }

    fn read_only(&self) -> bool {
        self.0.read_only()
    }

    fn call<'a>(
        &'a self,
        input: serde_json::Value,
        cx: &'a ToolContext,
    ) -> BoxFuture<'a, ToolOutput> {
        let tool = self.0;
        Box::pin(blocking(tool.name(), cx, move |cx, _| {
            let schema = schema(tool);
            match tool {
                Builtin::Read => read(cx, parse(tool.name(), input, &schema)?),
                Builtin::List => list(cx, parse(tool.name(), input, &schema)?),
                Builtin::Write => write(cx, parse(tool.name(), input, &schema)?),
                Builtin::Edit => edit(cx, parse(tool.name(), input, &schema)?),
                Builtin::Glob | Builtin::Grep => {
                    Err(Failure::Error(format!("internal error: `{}`", tool.name())))
                }
            }
        }))
    }
}

fn description(tool: Builtin) -> &'static str {
    match tool {
        Builtin::Read => {
            "Read a text file in the workspace. Returns its lines as `NUMBER<TAB>TEXT` (the \
             number and tab are not part of the file), from line `offset` (1-based, default 1), \
             at most `limit` lines (default 2000). Binary files are refused."
        }
        Builtin::List => {
            "List a directory of the workspace (default: its root). Directories end in `/`, \
             symlinks in `@`."
        }
        Builtin::Write => {
            "Create or overwrite a file in the workspace with `content` (missing directories \
             are created). Not allowed under `.git/` or `.orch/`."
        }
        Builtin::Edit => {
            "Replace the exact text `old_string` with `new_string` in a file of the workspace. \
             `old_string` must occur exactly once: include enough surrounding lines to make it \
             unique."
        }
        Builtin::Glob | Builtin::Grep => "",
    }
}

fn schema(tool: Builtin) -> serde_json::Value {
    let path = |what: &str| json!({"type": "string", "description": what});
    match tool {
        Builtin::Read => json!({
            "type": "object",
            "properties": {
                "path": path("File path, relative to the workspace."),
                "offset": {"type": "integer", "minimum": 1, "description": "First line to show (1-based)."},
                "limit": {"type": "integer", "minimum": 1, "description": "Most lines to show."}
            },
            "required": ["path"],
            "additionalProperties": false
        }),
        Builtin::List => json!({
            "type": "object",
            "properties": {"path": path("Directory, relative to the workspace (default `.`).")},
            "additionalProperties": false
        }),
        Builtin::Write => json!({
            "type": "object",
            "properties": {
                "path": path("File path, relative to the workspace."),
                "content": {"type": "string", "description": "The whole new content."}
            },
            "required": ["path", "content"],
            "additionalProperties": false
        }),
        Builtin::Edit => json!({
            "type": "object",
            "properties": {
                "path": path("File path, relative to the workspace."),
                "old_string": {"type": "string", "description": "Exact text to replace; must occur once."},
                "new_string": {"type": "string", "description": "Replacement text."}
            },
            "required": ["path", "old_string", "new_string"],
            "additionalProperties": false
        }),
        Builtin::Glob | Builtin::Grep => json!({"type": "object"}),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadInput {
    path: String,
    offset: Option<u64>,
    limit: Option<u64>,
}

fn read(cx: &ToolContext, input: ReadInput) -> Outcome {
    let file = confine(cx, &input.path, Access::Read)?;
    let mut handle = regular_file(&file)?;
    refuse_binary(&mut handle, &file)?;
    let first = input.offset.unwrap_or(1).max(1);
    let limit = input.limit.unwrap_or(DEFAULT_READ_LINES).max(1);
    let mut reader = BufReader::new(handle);
    let mut text = String::new();
    let mut line = Vec::new();
    let (mut number, mut shown) = (0u64, 0u64);
    let more = loop {
        line.clear();
        let cut = read_line(&mut reader, &mut line)?;
        if line.is_empty() && cut == 0 {
            break false;
        }
        number += 1;
        if number < first {
            continue;
        }
        if shown == limit || text.len() >= cx.max_result_bytes {
            break true;
        }
        let body = String::from_utf8_lossy(&line);
        let body = body.trim_end_matches(['\n', '\r']);
        text.push_str(&format!("{number:>6}\t{body}"));
        if cut > 0 {
            text.push_str(&format!(" [... {cut} more bytes on this line]"));
        }
        text.push('\n');
        shown += 1;
    };
    let summary = format!("{shown} lines");
    if shown == 0 {
        text = if number == 0 {
            format!("`{}` is empty", file.shown)
        } else {
            format!(
                "`{}` has {number} lines; offset {first} is past its end",
                file.shown
            )
        };
    } else if more {
        text.push_str(&format!(
            "[more lines follow: read again with offset {}]\n",
            first + shown
        ));
    }
    Ok(ToolOutput::new(&text, false, summary, cx.max_result_bytes))
}

/// Reads one line (up to and with its `\n`) into `line`, at most [`MAX_LINE_BYTES`] of it;
/// returns how many bytes of the line were skipped past that.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<u64> {
    reader.take(MAX_LINE_BYTES as u64).read_until(b'\n', line)?;
    if line.last() == Some(&b'\n') || line.len() < MAX_LINE_BYTES {
        return Ok(0);
    }
    // Skip the rest of the long line without holding it.
    let mut skipped = 0u64;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(skipped);
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(skipped + i as u64);
            }
            None => {
                let n = buf.len();
                reader.consume(n);
                skipped += n as u64;
            }
        }
    }
}

/// Opens a confined path that must be a regular file.
fn regular_file(file: &Confined) -> Result<std::fs::File, Failure> {
    if file.path.is_dir() {
        return Err(Failure::Error(format!(
            "`{}` is a directory: use `list`",
            file.shown
        )));
    }
    let handle = paths::open_read(&file.path).map_err(|err| {
        Failure::Error(format!(
            "cannot open `{}`: {}",
            file.shown,
            paths::plain(&err)
        ))
    })?;
    if !handle.metadata()?.is_file() {
        return Err(Failure::Error(format!(
            "`{}` is not a regular file",
            file.shown
        )));
    }
    Ok(handle)
}

/// Refuses a file whose start holds a NUL byte, then rewinds it.
fn refuse_binary(handle: &mut std::fs::File, file: &Confined) -> Result<(), Failure> {
    let mut probe = Vec::with_capacity(BINARY_PROBE_BYTES);
    (&mut *handle)
        .take(BINARY_PROBE_BYTES as u64)
        .read_to_end(&mut probe)?;
    if probe.contains(&0) {
        let size = handle.metadata()?.len();
        return Err(Failure::Error(format!(
            "`{}` is a binary file ({size} bytes); only text files can be read",
            file.shown
        )));
    }
    handle.rewind()?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListInput {
    path: Option<String>,
}

fn list(cx: &ToolContext, input: ListInput) -> Outcome {
    let dir = confine(cx, input.path.as_deref().unwrap_or("."), Access::Read)?;
    if !dir.path.is_dir() {
        return Err(Failure::Error(format!(
            "`{}` is not a directory: use `read`",
            dir.shown
        )));
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir.path)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let mark = if kind.is_dir() {
            "/"
        } else if kind.is_symlink() {
            "@"
        } else {
            ""
        };
        names.push(format!("{}{mark}", entry.file_name().to_string_lossy()));
    }
    names.sort();
    let total = names.len();
    let mut text = names
        .iter()
        .take(MAX_LIST_ENTRIES)
        .fold(String::new(), |acc, n| acc + n + "\n");
    if total > MAX_LIST_ENTRIES {
        text.push_str(&format!(
            "[... {} more entries; use `glob` to narrow]\n",
            total - MAX_LIST_ENTRIES
        ));
    }
    if total == 0 {
        text = format!("`{}` is empty", dir.shown);
    }
    Ok(ToolOutput::new(
        &text,
        false,
        format!("{total} entries"),
        cx.max_result_bytes,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteInput {
    path: String,
    content: String,
}

fn write(cx: &ToolContext, input: WriteInput) -> Outcome {
    let file = confine(cx, &input.path, Access::Write)?;
    if file.path.is_dir() {
        return Err(Failure::Error(format!("`{}` is a directory", file.shown)));
    }
    let existed = file.path.exists();
    if let Some(parent) = file.path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    save(&file, &input.content)?;
    let lines = input.content.lines().count();
    let verb = if existed { "overwrote" } else { "created" };
    Ok(ToolOutput::new(
        &format!(
            "{verb} `{}` ({lines} lines, {} bytes)",
            file.shown,
            input.content.len()
        ),
        false,
        format!("wrote {lines} lines"),
        cx.max_result_bytes,
    ))
}

fn save(file: &Confined, content: &str) -> Result<(), Failure> {
    let mut handle = paths::open_write(&file.path).map_err(|err| {
        Failure::Error(format!(
            "cannot write `{}`: {}",
            file.shown,
            paths::plain(&err)
        ))
    })?;
    handle.write_all(content.as_bytes())?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditInput {
    path: String,
    old_string: String,
    new_string: String,
}

fn edit(cx: &ToolContext, input: EditInput) -> Outcome {
    let file = confine(cx, &input.path, Access::Write)?;
    if input.old_string.is_empty() {
        return Err(Failure::Error(
            "`old_string` is empty: give the exact text to replace (use `write` for a new file)"
                .into(),
        ));
    }
    if input.old_string == input.new_string {
        return Err(Failure::Error(
            "`old_string` and `new_string` are the same: nothing to change".into(),
        ));
    }
    let text = text_of(&file)?;
    let at = match text.match_indices(&input.old_string).take(3).count() {
        0 => {
            return Err(Failure::Error(format!(
                "`old_string` does not occur in `{}`: read the file and copy the text exactly \
                 (without line numbers)",
                file.shown
            )));
        }
        1 => text.find(&input.old_string).unwrap_or(0),
        _ => {
            let n = text.matches(&input.old_string).count();
            return Err(Failure::Error(format!(
                "`old_string` occurs {n} times in `{}`: include more surrounding text so that \
                 it occurs once",
                file.shown
            )));
        }
    };
    let line = text[..at].matches('\n').count() + 1;
    let changed = text.replacen(&input.old_string, &input.new_string, 1);
    save(&file, &changed)?;
    Ok(ToolOutput::new(
        &format!("edited `{}` at line {line}", file.shown),
        false,
        format!("edited line {line}"),
        cx.max_result_bytes,
    ))
}

/// The whole text of a file `edit` changes: a regular UTF-8 text file of at most
/// [`MAX_EDIT_FILE_BYTES`].
fn text_of(file: &Confined) -> Result<String, Failure> {
    let mut handle = regular_file(file)?;
    let size = handle.metadata()?.len();
    if size > MAX_EDIT_FILE_BYTES {
        return Err(Failure::Error(format!(
            "`{}` is {size} bytes, more than `edit` handles ({MAX_EDIT_FILE_BYTES})",
            file.shown
        )));
    }
    refuse_binary(&mut handle, file)?;
    let mut bytes = Vec::new();
    handle.read_to_end(&mut bytes)?;
    String::from_utf8(bytes).map_err(|_| {
        Failure::Error(format!(
            "`{}` is not UTF-8 text; `edit` would damage it",
            file.shown
        ))
    })
}

/// Whether `path` is a file the walks of `glob` and `grep` skip: under `.git` or `.orch`.
pub(super) fn is_protected_dir(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| paths::PROTECTED_DIRS.iter().any(|d| n == *d))
}
