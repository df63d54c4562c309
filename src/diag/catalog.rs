//! The catalogue of diagnostic codes: one [`CodeInfo`] per code the compiler emits.
//!
//! Each entry has the stable code (`E0201`), a kebab-case name (`undefined-name`) that may be
//! used wherever a code is accepted, the default severity, a one-line summary, and, in the
//! style of ruff's rule documentation (`crates/ruff_linter/src/violation.rs`), *What it does*,
//! *Why is this bad?*, a script that triggers it and the fixed script. `orch explain` prints an
//! entry, and `docs/diagnostics.md` is generated from the whole catalogue by [`markdown`].
//!
//! Codes whose default severity is [`Severity::Warning`] are *lints*: `--allow`, `--warn`,
//! `--deny` and `// orch: allow(...)` comments re-level them (see [`super::levels`]). Errors
//! always stay errors.
//!
//! An example is a complete `.orch` script. When a code is about includes, the example holds
//! several files: each starts with a `// file: NAME` line, the first one is the script that is
//! checked, and the others are written next to it ([`example_files`] splits them).

use std::fmt::Write as _;

use super::{Code, Severity};

/// The command that regenerates `docs/diagnostics.md` from the catalogue.
pub const REGENERATE: &str = "cargo run -- explain --markdown > docs/diagnostics.md";

/// Everything there is to know about one diagnostic code.
#[derive(Debug, Clone, Copy)]
pub struct CodeInfo {
    /// Stable code: `E` for errors, `W` for warnings, then four digits (`W0402`).
    pub code: Code,
    /// Kebab-case name, accepted wherever a code is (`block-model-overridden`).
    pub name: &'static str,
    /// The severity it is reported with before lint levels apply.
    pub default_severity: Severity,
    /// One line: what is reported.
    pub summary: &'static str,
    /// What it does: what the check looks for.
    pub what: &'static str,
    /// Why is this bad: what would go wrong if it were ignored.
    pub why: &'static str,
    /// A complete script that triggers it (empty when no script can: `E0100`, `E1001`).
    pub example_bad: &'static str,
    /// The same script, fixed (empty when `example_bad` is).
    pub example_good: &'static str,
}

impl CodeInfo {
    /// Base of the entries of errors.
    const ERROR: CodeInfo = CodeInfo {
        // Every entry sets its own code.
        code: Code::SyntaxError,
        name: "",
        default_severity: Severity::Error,
        summary: "",
        what: "",
        why: "",
        example_bad: "",
        example_good: "",
    };

    /// Whether it is a lint (a warning), whose level can be changed.
    pub fn is_lint(&self) -> bool {
        self.default_severity == Severity::Warning
    }

    /// `error`, or `warning (a lint)`.
    fn severity_text(&self) -> &'static str {
        match self.default_severity {
            Severity::Error => "error",
            Severity::Warning => "warning (a lint)",
            Severity::Note => "note",
        }
    }

    /// The entry as Markdown, its heading at level `depth` (`#` repeated); `orch explain`
    /// prints it with depth 1, `docs/diagnostics.md` holds each with depth 2.
    pub fn markdown(&self, depth: usize) -> String {
        let h = "#".repeat(depth);
        let sub = "#".repeat(depth + 1);
        let mut out = String::new();
        let _ = writeln!(out, "{h} {} `{}`\n", self.code, self.name);
        let head = format!("**{}**: {}", capitalise(self.severity_text()), self.summary);
        let _ = writeln!(out, "{}\n", wrap(&head));
        let _ = writeln!(out, "{sub} What it does\n\n{}\n", wrap(self.what));
        let _ = writeln!(out, "{sub} Why is this bad?\n\n{}\n", wrap(self.why));
        if self.example_bad.is_empty() {
            return out;
        }
        let _ = writeln!(out, "{sub} Example\n");
        let _ = writeln!(out, "```orch\n{}```\n", self.example_bad);
        let _ = writeln!(out, "Use instead:\n");
        let _ = writeln!(out, "```orch\n{}```\n", self.example_good);
        if self.is_lint() {
            let levels = format!(
                "A lint: `--allow {0}`, `--warn {0}` and `--deny {0}` (or the code `{1}`) change \
                 its level for a run, and `// orch: allow({0})` on the line or the line above \
                 silences one occurrence.",
                self.name, self.code
            );
            let _ = writeln!(out, "{sub} Levels\n\n{}\n", wrap(&levels));
        }
        out
    }
}

/// Prose wrapped at [`WIDTH`] columns (words are never split).
fn wrap(text: &str) -> String {
    let mut out = String::new();
    let mut col = 0;
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if col > 0 && col + 1 + len > WIDTH {
            out.push('\n');
            col = 0;
        } else if col > 0 {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += len;
    }
    out
}

/// Width of the prose of [`CodeInfo::markdown`].
const WIDTH: usize = 92;

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Every code, in code order.
pub fn all() -> &'static [CodeInfo] {
    CODES
}

/// The entry of a code. [`CODES`] is in [`Code::ALL`]'s order, one entry per code (its tests
/// check it), so the entry is found by the code's index.
pub fn entry(code: Code) -> &'static CodeInfo {
    &CODES[code as usize]
}

/// The entry of a code written out (`W0402`, any case).
pub fn by_code(code: &str) -> Option<&'static CodeInfo> {
    CODES
        .iter()
        .find(|c| c.code.as_str().eq_ignore_ascii_case(code))
}

/// The entry of a name (`block-model-overridden`; `_` is taken for `-`, any case).
pub fn by_name(name: &str) -> Option<&'static CodeInfo> {
    let name = name.replace('_', "-");
    CODES.iter().find(|c| c.name.eq_ignore_ascii_case(&name))
}

/// The entry of a code or a name.
pub fn lookup(code_or_name: &str) -> Option<&'static CodeInfo> {
    let s = code_or_name.trim();
    by_code(s).or_else(|| by_name(s))
}

/// The code or name closest to an unknown one, for "did you mean".
pub fn suggest(unknown: &str) -> Option<&'static str> {
    let candidates = CODES.iter().flat_map(|c| [c.code.as_str(), c.name]);
    super::suggest::did_you_mean(unknown, candidates)
}

/// The lints (codes whose level can be changed).
pub fn lints() -> impl Iterator<Item = &'static CodeInfo> {
    CODES.iter().filter(|c| c.is_lint())
}

/// One line per code: code, name, default severity, summary (`orch explain --list`).
pub fn list() -> String {
    let width = CODES.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in CODES {
        let sev = match c.default_severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        let _ = writeln!(
            out,
            "{}  {:<width$}  {:<7}  {}",
            c.code, c.name, sev, c.summary
        );
    }
    out
}

/// The files of an example: `(name, text)` pairs, the script that is checked first. A script
/// without `// file: NAME` lines is one file, `main.orch`.
pub fn example_files(example: &str) -> Vec<(&str, &str)> {
    let mut files = Vec::new();
    let mut name = "main.orch";
    let mut start = 0;
    let mut at = 0;
    for line in example.split_inclusive('\n') {
        if let Some(next) = line.trim_end().strip_prefix("// file: ") {
            if at > start || !files.is_empty() {
                files.push((name, &example[start..at]));
            }
            name = next.trim();
            start = at + line.len();
        }
        at += line.len();
    }
    files.push((name, &example[start..]));
    files
}

/// `docs/diagnostics.md`: an index of every code, then every entry.
pub fn markdown() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Diagnostic codes\n\n\
         <!-- Generated from src/diag/catalog.rs; do not edit. Regenerate with:\n     {REGENERATE} -->\n\n\
         Every diagnostic of `orch` has a stable code and a kebab-case name; either may be given to\n\
         `orch explain`, which prints the entry below, and to the lint flags. Errors (`E`) stop\n\
         `orch check`, `orch plan` and `orch run`. Warnings (`W`) are *lints*: `--allow`, `--warn` and\n\
         `--deny` (with a code, a name, or `warnings` for all of them) change their level for a run,\n\
         and a `// orch: allow(NAME)` comment on the line of the warning, or on its own line right\n\
         above it, silences one occurrence. An `allow` that silences nothing is reported (`W0901`).\n\
         Examples about includes hold several files, each after a `// file: NAME` line; the first is\n\
         the script that is checked. See also [the language reference](language.md#14-diagnostic-codes).\n"
    );
    let _ = writeln!(out, "| code | name | severity | summary |");
    let _ = writeln!(out, "|------|------|----------|---------|");
    for c in CODES {
        let sev = if c.is_lint() { "warning" } else { "error" };
        let _ = writeln!(
            out,
            "| [{}](#{}-{}) | `{}` | {sev} | {} |",
            c.code,
            c.code.as_str().to_lowercase(),
            c.name,
            c.name,
            c.summary.replace('|', "\\|")
        );
    }
    for c in CODES {
        let _ = write!(out, "\n{}", c.markdown(2));
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// The catalogue, in code order.
pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: Code::SyntaxError,
        name: "syntax-error",
        summary: "The script does not parse: what was expected and what was found.",
        what: "Reports the first place where the text is not `.orch` syntax: an unterminated \
               string or comment, an unbalanced bracket, a keyword used as a name, a misspelt \
               keyword (`paralel {`), a duration with a fraction (`1.5s`), a bad option \
               in `< >`, a missing `=` or `:`, constructs nested more than 64 levels deep \
               (blocks, brackets, conditions; each `else if` of a chain and each `and` and `or` \
               of a condition count as a level), or, failing those, the tokens that were \
               expected.",
        why: "A script that does not parse cannot be checked, planned or run; nothing after the \
              error is looked at until it is fixed.",
        example_bad: r#"include "std/models.orch"

agent planner { model: sonnet, system: "You plan." }

workflow main(request: text) {
  plan planner("Plan: {request}")
  return plan
}
"#,
        example_good: r#"include "std/models.orch"

agent planner { model: sonnet, system: "You plan." }

workflow main(request: text) {
  plan = planner("Plan: {request}")
  return plan
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::UnreadableScript,
        name: "unreadable-script",
        summary: "The script given on the command line cannot be read.",
        what: "Reports a path given to `orch check`, `orch plan` or `orch run` that does not \
               exist, cannot be read, is not a regular file (a directory, a FIFO, a device), \
               or is larger than 16 MiB.",
        why: "There is nothing to check. The usual cause is a typo in the path or a command run \
              from another directory: paths are relative to the working directory.",
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::IncludeNotFound,
        name: "include-not-found",
        summary: "An included file is missing or unreadable, or the standard library has no such file.",
        what: "Reports an `include` whose file does not exist relative to the including file, \
               cannot be read, is not a regular file (a FIFO or a device, which would block or \
               never end, is not opened), is larger than 16 MiB, or would be the 65th file of \
               a chain of includes; or that names a `std/...` file the standard library does \
               not have.",
        why: "The items of the missing file are unknown, so the agents, models and providers it \
              would declare cannot be checked (names from it are not reported as unknown while \
              the include is broken).",
        example_bad: r#"include "std/model.orch"

agent planner { model: sonnet, system: "You plan." }

workflow main(request: text) {
  plan = planner("Plan: {request}")
  return plan
}
"#,
        example_good: r#"include "std/models.orch"

agent planner { model: sonnet, system: "You plan." }

workflow main(request: text) {
  plan = planner("Plan: {request}")
  return plan
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::IncludeCycle,
        name: "include-cycle",
        summary: "Files include each other in a cycle.",
        what: "Reports an `include` that leads back to a file that is still being loaded, and \
               shows the whole chain of includes.",
        why: "Includes are loaded depth first: a cycle has no order in which every file's \
              includes come before it. It usually means two files share items that belong in a \
              third file both include.",
        example_bad: r#"// file: main.orch
include "std/models.orch"
include "agents.orch"

agent planner { model: sonnet, system: "You plan." }

workflow main(request: text) {
  files = scout("Find the files for: {request}")
  plan  = planner("Plan {request} from:\n{files}")
  return plan
}
// file: agents.orch
include "main.orch"

agent scout { model: haiku, system: "You explore a codebase." }
"#,
        example_good: r#"// file: main.orch
include "std/models.orch"
include "agents.orch"

agent planner { model: sonnet, system: "You plan." }

workflow main(request: text) {
  files = scout("Find the files for: {request}")
  plan  = planner("Plan {request} from:\n{files}")
  return plan
}
// file: agents.orch
agent scout { model: haiku, system: "You explore a codebase." }
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::IncludeOutsideProject,
        name: "include-outside-project",
        summary: "An include leaves the directory of the entry script.",
        what: "Reports an `include` that resolves (after `..` and symbolic links) to a file \
               outside the entry script's directory and outside every `--include-path`.",
        why: "A script should not silently depend on files elsewhere on the machine: it would \
              check differently for everyone who clones the project. Move the file into the \
              project, or allow its directory explicitly with `--include-path DIR`.",
        example_bad: r#"// file: main.orch
include "std/models.orch"
include "../shared/agents.orch"

workflow main(request: text) {
  plan = planner("Plan: {request}")
  return plan
}
// file: ../shared/agents.orch
agent planner { model: sonnet, system: "You plan." }
"#,
        example_good: r#"// file: main.orch
include "std/models.orch"
include "shared/agents.orch"

workflow main(request: text) {
  plan = planner("Plan: {request}")
  return plan
}
// file: shared/agents.orch
agent planner { model: sonnet, system: "You plan." }
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::DuplicateNamespace,
        name: "duplicate-namespace",
        summary: "Two includes use the same namespace (`include ... as ns`).",
        what: "Reports an `include \"...\" as ns` whose `ns` another include of the program \
               already uses.",
        why: "`ns.name` must name one library: with two, a call could reach either file's \
              agent or workflow.",
        example_bad: r#"// file: main.orch
include "std/models.orch"
include "reviewers.orch" as rv
include "writers.orch" as rv

workflow main(code: text) {
  review = rv.security_reviewer("Review:\n{code}")
  return review
}
// file: reviewers.orch
agent security_reviewer { model: sonnet, system: "You review code for security." }
// file: writers.orch
agent writer { model: sonnet, system: "You write." }
"#,
        example_good: r#"// file: main.orch
include "std/models.orch"
include "reviewers.orch" as rv
include "writers.orch" as wr

workflow main(code: text) {
  review = rv.security_reviewer("Review:\n{code}")
  return review
}
// file: reviewers.orch
agent security_reviewer { model: sonnet, system: "You review code for security." }
// file: writers.orch
agent writer { model: sonnet, system: "You write." }
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::DuplicateInclude,
        name: "duplicate-include",
        default_severity: Severity::Warning,
        summary: "A file includes the same file twice.",
        what: "Warns when two `include` lines of one file name the same file (after `./` and \
               `..` are resolved). Two *different* files that include a third is normal and not \
               reported.",
        why: "A file is loaded once however often it is included, so the second line does \
              nothing; it is usually a copy-paste leftover, or a sign that one of the two was \
              meant to name another file.",
        example_bad: r#"include "std/models.orch"
include "std/models.orch"

agent scout { model: haiku, system: "You explore codebases." }

workflow main(request: text) {
  files = scout("Find the files relevant to: {request}")
  return files
}
"#,
        example_good: r#"include "std/models.orch"

agent scout { model: haiku, system: "You explore codebases." }

workflow main(request: text) {
  files = scout("Find the files relevant to: {request}")
  return files
}
"#,
    },
    CodeInfo {
        code: Code::UndefinedName,
        name: "undefined-name",
        summary: "A name that is not defined: in an interpolation, after `after`, or in an agent's own text.",
        what: "Reports `{name}` in a prompt, an argument or `return` that is not a parameter, a \
               step or a named `parallel` block of the workflow; `after name` that is not a \
               step; and `{name}` in an agent's `system`, `run` or `env` that is not one of the \
               agent's parameters. Suggests the closest name.",
        why: "The value would be missing at run time. Most often it is a typo, or an agent \
              referring to a workflow's value that it can only get as a parameter.",
        example_bad: r#"include "std/models.orch"

agent planner { model: sonnet, system: "You plan." }

workflow main(request: text) {
  plan = planner("Design an implementation plan for {requst}")
  return plan
}
"#,
        example_good: r#"include "std/models.orch"

agent planner { model: sonnet, system: "You plan." }

workflow main(request: text) {
  plan = planner("Design an implementation plan for {request}")
  return plan
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::UnknownAgent,
        name: "unknown-agent",
        summary: "A step calls an agent that is not declared.",
        what: "Reports the callee of a step when no agent of that name is declared in the script \
               or its includes (and it is not the built-in `approve`). Suggests the closest \
               agent.",
        why: "The step has nothing to run.",
        example_bad: r#"include "std/models.orch"

agent scout { model: haiku, system: "You explore a codebase." }

workflow main(request: text) {
  files = scuot("Find the files relevant to: {request}")
  return files
}
"#,
        example_good: r#"include "std/models.orch"

agent scout { model: haiku, system: "You explore a codebase." }

workflow main(request: text) {
  files = scout("Find the files relevant to: {request}")
  return files
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::UnknownModel,
        name: "unknown-model",
        summary: "A model that is not declared: an agent's pin or fallback, or a model option.",
        what: "Reports a model name (in an agent's `model:` or `fallback:`, or in `< >` options) \
               that no `model` declaration defines. Suggests the closest model, or including \
               `std/models.orch` when no model is declared at all.",
        why: "The steps that would run on it have no provider, price or identifier to call.",
        example_bad: r#"include "std/models.orch"

agent reviewer { model: sonet, system: "You review code." }

workflow main(code: text) {
  review = reviewer("Review:\n{code}")
  return review
}
"#,
        example_good: r#"include "std/models.orch"

agent reviewer { model: sonnet, system: "You review code." }

workflow main(code: text) {
  review = reviewer("Review:\n{code}")
  return review
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::UnknownProvider,
        name: "unknown-provider",
        summary: "A model names a provider that is not built in or declared.",
        what: "Reports a model's `provider:` that is neither a built-in provider (`anthropic`, \
               `openai`, `sim`) nor declared with `provider NAME { ... }`.",
        why: "Without a provider there is no API to send the model's requests to.",
        example_bad: r#"model sonnet45 { provider: antropic, name: "claude-sonnet-4-5" }

agent planner { model: sonnet45, system: "You plan." }

workflow main(request: text) {
  plan = planner("Plan: {request}")
  return plan
}
"#,
        example_good: r#"model sonnet45 { provider: anthropic, name: "claude-sonnet-4-5" }

agent planner { model: sonnet45, system: "You plan." }

workflow main(request: text) {
  plan = planner("Plan: {request}")
  return plan
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::DuplicateDefinition,
        name: "duplicate-definition",
        summary: "Something is defined twice: an item, a name in a workflow, a parameter or a field.",
        what: "Reports a provider, model, agent or workflow whose name is already taken (they \
               share one namespace, across includes), a workflow name bound twice (parameters, \
               steps and named blocks), a parameter declared twice, and a field set twice.",
        why: "Only one of the definitions could be used, and which one would be a silent guess. \
              Every name means one thing.",
        example_bad: r#"include "std/models.orch"

agent writer { model: sonnet, system: "You write." }
agent editor { model: sonnet, system: "You edit." }

workflow main(topic: text) {
  draft = writer("Write about {topic}")
  draft = editor("Tighten this draft:\n{draft}")
  return draft
}
"#,
        example_good: r#"include "std/models.orch"

agent writer { model: sonnet, system: "You write." }
agent editor { model: sonnet, system: "You edit." }

workflow main(topic: text) {
  draft = writer("Write about {topic}")
  final = editor("Tighten this draft:\n{draft}")
  return final
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::UnknownField,
        name: "unknown-field",
        summary: "A provider, model, agent or record has a field it does not know.",
        what: "Reports a field key that the declaration does not have, with the closest known \
               field and the list of valid ones; points out model-agent fields on command agents \
               and the other way round.",
        why: "An unknown field is almost always a typo, and the value the author meant to set \
              (a system prompt, a timeout) would silently be missing.",
        example_bad: r#"include "std/models.orch"

agent scout {
  model: haiku
  sytem: "You explore a codebase and report relevant files."
}

workflow main(request: text) {
  files = scout("Find the files relevant to: {request}")
  return files
}
"#,
        example_good: r#"include "std/models.orch"

agent scout {
  model: haiku
  system: "You explore a codebase and report relevant files."
}

workflow main(request: text) {
  files = scout("Find the files relevant to: {request}")
  return files
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::InvalidFieldValue,
        name: "invalid-field-value",
        summary: "A field's value has the wrong kind.",
        what: "Reports a value of the wrong kind for its field: a string where a name is needed \
               or the other way round, a number without a unit for a duration, a value outside \
               the allowed words (`tier`, `complexity`, `kind`), interpolation in a field that \
               takes plain text, argv elements that are not strings, and simulator-only fields \
               on other providers.",
        why: "The value cannot mean what the field needs; guessing (is `timeout: 600` seconds or \
              milliseconds?) would make runs behave differently from what the script says.",
        example_bad: r#"include "std/models.orch"

agent builder {
  model: sonnet
  system: "You implement plans."
  timeout: 600
}

workflow main(plan: text) {
  build = builder("Execute:\n{plan}")
  return build
}
"#,
        example_good: r#"include "std/models.orch"

agent builder {
  model: sonnet
  system: "You implement plans."
  timeout: 10m
}

workflow main(plan: text) {
  build = builder("Execute:\n{plan}")
  return build
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::MissingField,
        name: "missing-field",
        summary: "A required field is missing: a model's `provider`, a provider's `kind`.",
        what: "Reports a model without `provider:`, and a declared provider without `kind:` \
               whose name is not one of the built-in kinds.",
        why: "Without them there is no way to know which API serves the model.",
        example_bad: r#"model local { name: "qwen2.5-coder", tier: fast }

agent scout { model: local, system: "You explore a codebase." }

workflow main(request: text) {
  files = scout("Find files for {request}")
  return files
}
"#,
        example_good: r#"model local { provider: openai, name: "qwen2.5-coder", tier: fast }

agent scout { model: local, system: "You explore a codebase." }

workflow main(request: text) {
  files = scout("Find files for {request}")
  return files
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::UnknownType,
        name: "unknown-type",
        summary: "A parameter's type is not a type of the language.",
        what: "Reports a type name other than `text`, `number`, `bool`, `json`, `list<T>`, a \
               record `{ field: T }` (and `agent`, which is reserved for later).",
        why: "Inputs are validated against their types before a run; an unknown type cannot be \
              validated or rendered.",
        example_bad: r#"include "std/models.orch"

agent writer { model: sonnet, system: "You write." }

workflow main(topic: string) {
  post = writer("Write about {topic}")
  return post
}
"#,
        example_good: r#"include "std/models.orch"

agent writer { model: sonnet, system: "You write." }

workflow main(topic: text) {
  post = writer("Write about {topic}")
  return post
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::InvalidFieldAccess,
        name: "invalid-field-access",
        summary: "A field access that cannot work: `{x.y}` on text, an unknown record field or block member.",
        what: "Reports `{a.b}` where `a` is a step (its output is text), a parameter whose type \
               has no field `b`, or a named `parallel` block that has no step `b`.",
        why: "The interpolation has no value to render. A step's output is text: to use part of \
              it, have the model write only that part, or pass the whole text on.",
        example_bad: r#"include "std/models.orch"

agent editor { model: sonnet, system: "You say what to change in a draft." }
agent writer { model: sonnet, system: "You write." }

workflow main(draft: text) {
  verdict = editor("Say what to change:\n{draft}")
  final   = writer("Apply this feedback:\n{verdict.feedback}\n\nto:\n{draft}")
  return final
}
"#,
        example_good: r#"include "std/models.orch"

agent editor { model: sonnet, system: "You say what to change in a draft." }
agent writer { model: sonnet, system: "You write." }

workflow main(draft: text) {
  verdict = editor("Say what to change:\n{draft}")
  final   = writer("Apply this feedback:\n{verdict}\n\nto:\n{draft}")
  return final
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::InvalidArguments,
        name: "invalid-arguments",
        summary: "A call's arguments do not fit the agent: a second prompt, an unknown, repeated or missing parameter, no prompt.",
        what: "Checks each step's arguments against the agent: one positional prompt at most, \
               named arguments only for declared parameters and each once, every parameter \
               without a default given, and a prompt for every model agent. `approve(...)` \
               takes exactly one argument, its question, and no named arguments.",
        why: "An argument that goes nowhere is lost, and a missing one leaves a `{param}` of the \
              agent's text without a value.",
        example_bad: r#"agent commit(message: text) { run: ["git", "commit", "-m", "{message}"] }

workflow main(version: text) {
  done = commit("release {version}")
  return done
}
"#,
        example_good: r#"agent commit(message: text) { run: ["git", "commit", "-m", "{message}"] }

workflow main(version: text) {
  done = commit(message: "release {version}")
  return done
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::TypeMismatch,
        name: "type-mismatch",
        summary: "A value of the wrong type: a named argument against its parameter, or `return` against the workflow's declared result.",
        what: "Checks each named argument against the type of the agent's parameter, and the \
               `return` value against the workflow's `-> T`. A step's output is text (an \
               approval's is a bool, and `-> T` on `approve(...)` can only be `bool`), a \
               parameter has its declared type, a literal must parse as the expected type \
               (`3` for `number`, `true`/`false` for `bool`, JSON for lists and records); \
               `text` and `json` accept anything.",
        why: "A parameter's type says what the agent or the caller relies on; a count that \
              is really a sentence, or a verdict that is really prose, fails later and far \
              from the cause, or silently produces nonsense.",
        example_bad: r#"include "std/models.orch"

agent writer(formal: bool) { model: sonnet, system: "Write. Formal: {formal}." }

workflow main(topic: text) {
  post = writer(formal: "yes", "Write a post about {topic}")
  return post
}
"#,
        example_good: r#"include "std/models.orch"

agent writer(formal: bool) { model: sonnet, system: "Write. Formal: {formal}." }

workflow main(topic: text) {
  post = writer(formal: true, "Write a post about {topic}")
  return post
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::DependencyCycle,
        name: "dependency-cycle",
        summary: "Steps wait for each other in a cycle, or a step uses a step that only runs after it.",
        what: "Finds cycles in a workflow's dependency graph (data uses, `after`, and the order of \
               a sequence) and shows every edge of one. A step that uses a later step of the \
               same sequence, its own output, or its own `parallel` block is a cycle too.",
        why: "No step of a cycle can ever start: each waits for another that waits for it.",
        example_bad: r#"include "std/models.orch"

agent planner { model: opus, system: "You plan." }
agent builder { model: sonnet, system: "You implement plans." }

workflow main(request: text) {
  build = builder("Execute:\n{plan}")
  plan  = planner("Plan: {request}")
  return build
}
"#,
        example_good: r#"include "std/models.orch"

agent planner { model: opus, system: "You plan." }
agent builder { model: sonnet, system: "You implement plans." }

workflow main(request: text) {
  plan  = planner("Plan: {request}")
  build = builder("Execute:\n{plan}")
  return build
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::RecursiveCall,
        name: "recursive-call",
        summary: "A workflow calls itself, directly or through other workflows.",
        what: "Reports a call of a workflow that is already being expanded: calls of reusable \
               patterns are expanded before running, so recursion would never end.",
        why: "The expansion would be infinite. A loop that runs steps again is written with \
              `repeat <max N> { ... } until COND`, which is bounded.",
        example_bad: r#"include "std/models.orch"

agent writer { model: sonnet, system: "You write." }

workflow refine(draft: text) -> text {
  better = writer("Improve:\n{draft}")
  again = refine(draft: better)
  return again
}

workflow main(topic: text) {
  post = refine(draft: topic)
  return post
}
"#,
        example_good: r#"include "std/models.orch"

agent writer { model: sonnet, system: "You write." }
agent judge { model: sonnet, system: "You judge drafts." }

workflow refine(draft: text) -> text {
  repeat <max 3> {
    better = writer("Improve:\n{draft}\n\nLast try:\n{better}")
    verdict = judge("Is this good enough?\n{better}") -> { approved: bool }
  } until verdict.approved
  return better
}

workflow main(topic: text) {
  post = refine(draft: topic)
  return post
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::ExpansionTooLarge,
        name: "expansion-too-large",
        summary: "Expanding the calls of a workflow passes a bound: calls nested more than 64 deep, statements more than 128, or more than 100,000 steps.",
        what: "Calls of workflows are expanded (the called body is copied into the caller) when a \
               workflow is checked. Reports the workflow whose expansion passes a bound: a chain \
               of more than 64 calls nested in one another, statements nested more than 128 \
               deep once the calls' bodies are nested in them, more than 100,000 steps (each \
               call, `parallel for`, `repeat`, `if` and `for` variable counts as one more), or \
               more than 400,000 steps for all the workflows of the program together. It is \
               reported once, for the workflow at the top of the chain, with the chain of calls \
               in the message and labels at its first call and where the bound was passed.",
        why: "A chain of calls is as deep as it is long, and a workflow that calls another \
              twice, which calls another twice, doubles at each level: a page of script could \
              ask for more steps, memory and time than any machine has. No real workflow comes \
              near these bounds; one that does is better written with a `parallel for` over \
              the work, which expands its body once.",
        example_bad: r#"include "std/models.orch"

agent writer { model: haiku, max_tokens: 200 }

workflow one(topic: text) { draft = writer("Write about {topic}") }
workflow ten(topic: text) { a = one(topic: topic); b = one(topic: topic); c = one(topic: topic); d = one(topic: topic); e = one(topic: topic); f = one(topic: topic); g = one(topic: topic); h = one(topic: topic); i = one(topic: topic); j = one(topic: topic) }
workflow hundred(topic: text) { a = ten(topic: topic); b = ten(topic: topic); c = ten(topic: topic); d = ten(topic: topic); e = ten(topic: topic); f = ten(topic: topic); g = ten(topic: topic); h = ten(topic: topic); i = ten(topic: topic); j = ten(topic: topic) }
workflow thousand(topic: text) { a = hundred(topic: topic); b = hundred(topic: topic); c = hundred(topic: topic); d = hundred(topic: topic); e = hundred(topic: topic); f = hundred(topic: topic); g = hundred(topic: topic); h = hundred(topic: topic); i = hundred(topic: topic); j = hundred(topic: topic) }
workflow tens(topic: text) { a = thousand(topic: topic); b = thousand(topic: topic); c = thousand(topic: topic); d = thousand(topic: topic); e = thousand(topic: topic); f = thousand(topic: topic); g = thousand(topic: topic); h = thousand(topic: topic); i = thousand(topic: topic); j = thousand(topic: topic) }
workflow many(topic: text) { a = tens(topic: topic); b = tens(topic: topic); c = tens(topic: topic); d = tens(topic: topic); e = tens(topic: topic); f = tens(topic: topic); g = tens(topic: topic); h = tens(topic: topic); i = tens(topic: topic); j = tens(topic: topic) }

workflow main(topic: text) {
  all = many(topic: topic)
  return all
}
"#,
        example_good: r#"include "std/models.orch"

agent writer { model: haiku, max_tokens: 200 }

workflow one(topic: text) -> text {
  draft = writer("Write about {topic}")
  return draft
}

workflow main(topic: text) {
  all = parallel <max 10> for angle in ["history", "science", "art"] {
    piece = one(topic: "{topic}: {angle}")
  }
  return all
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::StepWithoutModel,
        name: "step-without-model",
        summary: "A step of a model agent has no model.",
        what: "Reports a step whose model cannot be resolved: no model at the call site \
               (`agent<model>(...)`), none pinned by the agent (`model:`), and none set by an \
               enclosing block or the workflow.",
        why: "There is nothing to send the prompt to.",
        example_bad: r#"include "std/models.orch"

agent planner { complexity: high, system: "You design implementation plans." }

workflow main(request: text) {
  plan = planner("Design an implementation plan for {request}")
  return plan
}
"#,
        example_good: r#"include "std/models.orch"

agent planner { model: opus, complexity: high, system: "You design implementation plans." }

workflow main(request: text) {
  plan = planner("Design an implementation plan for {request}")
  return plan
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::BlockModelOverridden,
        name: "block-model-overridden",
        default_severity: Severity::Warning,
        summary: "An agent's pinned model overrides a different model set on the enclosing block.",
        what: "Warns when a step inside a block (or a workflow) that sets a model calls an agent \
               that pins another model, and the call site does not choose one. The agent's pin \
               wins: models resolve from the call site, then the agent, then the innermost \
               block.",
        why: "A model on a block reads as \"every step here runs on this model\"; a pin that \
              quietly overrides it changes cost and quality without that showing where the \
              block is written. Say which one is meant: choose the model at the call site, \
              remove it from the block, or, when the pin is deliberate, silence the warning with \
              `// orch: allow(block-model-overridden)`.",
        example_bad: r#"include "std/models.orch"

agent reviewer { model: sonnet, system: "You review code." }

workflow main(code: text) {
  reviews = parallel <opus> {
    security = reviewer("Security review:\n{code}")
    style    = reviewer("Style review:\n{code}")
  }
  return reviews
}
"#,
        example_good: r#"include "std/models.orch"

agent reviewer { model: sonnet, system: "You review code." }

workflow main(code: text) {
  reviews = parallel {
    security = reviewer<opus>("Security review:\n{code}")
    style    = reviewer("Style review:\n{code}")
  }
  return reviews
}
"#,
    },
    CodeInfo {
        code: Code::ModelOnCommandAgent,
        name: "model-on-command-agent",
        summary: "A model or a `fallback` is given to a command agent.",
        what: "Reports a model or `fallback` in the `< >` options of a step that calls a command \
               agent (one declared with `run:`).",
        why: "A command agent runs a program, not a model: the option would be ignored, and the \
              script would claim a model that never runs.",
        example_bad: r#"include "std/models.orch"

agent tests { run: ["cargo", "test", "--quiet"] }

workflow main(change: text) {
  result = tests<haiku>("{change}")
  return result
}
"#,
        example_good: r#"include "std/models.orch"

agent tests { run: ["cargo", "test", "--quiet"] }

workflow main(change: text) {
  result = tests("{change}")
  return result
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::ComplexityTierMismatch,
        name: "complexity-tier-mismatch",
        default_severity: Severity::Warning,
        summary: "A `deep` model on a `low`-complexity task, or a `fast` model on a `high` one.",
        what: "Compares an agent's `complexity` with the `tier` of the model each of its steps \
               runs on. A mismatch that comes from the agent's own pin is reported once, at the \
               pin; one chosen at a call site or by a block is reported at the step.",
        why: "Tiers trade cost for capability: a deep model on lookups multiplies the bill for \
              no gain (opus costs 15 times haiku per token), and a fast model on architecture \
              saves cents and loses the result. The seeds pick haiku for lookups, sonnet for \
              features and reviews, opus for architecture.",
        example_bad: r#"include "std/models.orch"

agent scout { model: opus, complexity: low, system: "You explore codebases. Be terse." }

workflow main(request: text) {
  files = scout("Find the files relevant to: {request}")
  return files
}
"#,
        example_good: r#"include "std/models.orch"

agent scout { model: haiku, complexity: low, system: "You explore codebases. Be terse." }

workflow main(request: text) {
  files = scout("Find the files relevant to: {request}")
  return files
}
"#,
    },
    CodeInfo {
        code: Code::BlockOptionOverridden,
        name: "block-option-overridden",
        default_severity: Severity::Warning,
        summary: "A block's `retry`, `timeout`, `deadline` or `fallback` that an agent's own field overrides.",
        what: "Warns when a step inside a block (or a workflow) that sets `retry`, `timeout`, \
               `deadline` or `fallback` calls an agent whose own field sets a different value, and the call \
               site does not choose. Like models, options resolve from the call site, then the \
               agent, then the innermost block.",
        why: "An option on a block reads as \"every step here gets this\"; a step that quietly \
              gets something else retries more (and costs more) or gives up sooner than the \
              block says. Choose at the call site, or remove the option from the block.",
        example_bad: r#"include "std/models.orch"

agent reviewer { model: sonnet, retry: 5, system: "You review code." }

workflow main(code: text) {
  reviews = parallel <retry 1> {
    security = reviewer("Security review:\n{code}")
    style    = reviewer("Style review:\n{code}")
  }
  return reviews
}
"#,
        example_good: r#"include "std/models.orch"

agent reviewer { model: sonnet, retry: 5, system: "You review code." }

workflow main(code: text) {
  reviews = parallel {
    security = reviewer("Security review:\n{code}")
    style    = reviewer<retry 1>("Style review:\n{code}")
  }
  return reviews
}
"#,
    },
    CodeInfo {
        code: Code::MisplacedGather,
        name: "misplaced-gather",
        summary: "A `gather` step does not follow a `parallel` block or a `parallel for`.",
        what: "Reports `gather` that is not the statement right after a `parallel` block or a \
               `parallel for` in a sequence, including a `gather` inside a `parallel` block.",
        why: "`gather` joins the branches of the block (or the instances of the `for`) right \
              before it under a policy; without one there is nothing to join.",
        example_bad: r#"include "std/models.orch"

agent reviewer { model: sonnet, system: "You review code." }
agent lead { model: opus, system: "You turn reviews into a plan." }

workflow main(code: text) {
  review = reviewer("Review:\n{code}")
  gather plan = lead("Create an action plan from:\n{review}")
  return plan
}
"#,
        example_good: r#"include "std/models.orch"

agent reviewer { model: sonnet, system: "You review code." }
agent lead { model: opus, system: "You turn reviews into a plan." }

workflow main(code: text) {
  reviews = parallel {
    security = reviewer("Security review:\n{code}")
    quality  = reviewer("Quality review:\n{code}")
  }
  gather plan = lead("Create an action plan from:\n{reviews}")
  return plan
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::InvalidOption,
        name: "invalid-option",
        summary: "An option not allowed where it is written, or given twice.",
        what: "Reports `max N` anywhere but on a `parallel` block, `budget $X` on a step (it \
               limits a workflow or a `parallel` block), a model, `retry` or `fallback` on \
               `approve(...)` (a person answers it, once; `timeout` and `deadline` bound the \
               wait), and an option (or a model) given twice in one `< >` list.",
        why: "The option would have no meaning there (a step has no branches to limit), or two \
              values would compete.",
        example_bad: r#"include "std/models.orch"

agent scout { model: haiku, system: "You explore a codebase." }

workflow main(request: text) {
  files = scout<max 3>("Find the files relevant to: {request}")
  return files
}
"#,
        example_good: r#"include "std/models.orch"

agent scout { model: haiku, system: "You explore a codebase." }

workflow main(request: text) {
  found = parallel <max 3> {
    files = scout("Find the files relevant to: {request}")
    deps  = scout("List the dependencies involved in: {request}")
  }
  return found
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::ImpossibleValue,
        name: "impossible-value",
        summary: "A value that can never work: `timeout 0ms`, `deadline 0ms`, `max 0`, `first N` or `min N` out of range, a `temperature` outside 0 to 2.",
        what: "Reports a zero timeout or deadline, `max 0` on a block, `gather <first N>` / \
               `<min N>` with N of zero or more than the block's branches (or the items of a \
               `parallel for` over a list written in the script), and a `temperature` \
               outside 0 to 2 (the widest range providers accept).",
        why: "Every attempt or step would time out, no branch would ever run, the gather policy \
              could never be met (or always would be), or the provider would reject every \
              request.",
        example_bad: r#"include "std/models.orch"

agent builder { model: sonnet, system: "You implement plans." }

workflow main(plan: text) {
  build = builder<timeout 0s>("Execute:\n{plan}")
  return build
}
"#,
        example_good: r#"include "std/models.orch"

agent builder { model: sonnet, system: "You implement plans." }

workflow main(plan: text) {
  build = builder<timeout 10m>("Execute:\n{plan}")
  return build
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::MisplacedReturn,
        name: "misplaced-return",
        summary: "A statement after `return`, or `return` inside a `parallel` block.",
        what: "Reports the first statement after a workflow's `return`, and a `return` that is a \
               branch of a `parallel` block.",
        why: "Statements after `return` never run, and a branch cannot end the workflow while \
              its sibling branches are still running.",
        example_bad: r#"include "std/models.orch"

agent planner { model: opus, system: "You plan." }
agent notifier { model: haiku, system: "You write short notifications." }

workflow main(request: text) {
  plan = planner("Plan: {request}")
  return plan
  note = notifier("Announce: {plan}")
}
"#,
        example_good: r#"include "std/models.orch"

agent planner { model: opus, system: "You plan." }
agent notifier { model: haiku, system: "You write short notifications." }

workflow main(request: text) {
  plan = planner("Plan: {request}")
  note = notifier("Announce: {plan}")
  return "{plan}\n\n{note}"
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::EmptyParallel,
        name: "empty-parallel",
        summary: "A `parallel` block with no branches.",
        what: "Reports `parallel { }` with nothing inside.",
        why: "The block does nothing, and a `gather` after it or a use of its name would wait for \
              outputs that never exist.",
        example_bad: r#"include "std/models.orch"

agent reviewer { model: sonnet, system: "You review code." }
agent lead { model: opus, system: "You turn reviews into a plan." }

workflow main(code: text) {
  reviews = parallel { }
  plan = lead("Plan from:\n{reviews}")
  return plan
}
"#,
        example_good: r#"include "std/models.orch"

agent reviewer { model: sonnet, system: "You review code." }
agent lead { model: opus, system: "You turn reviews into a plan." }

workflow main(code: text) {
  reviews = parallel {
    security = reviewer("Security review:\n{code}")
    style    = reviewer("Style review:\n{code}")
  }
  plan = lead("Plan from:\n{reviews}")
  return plan
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::SingleBranchParallel,
        name: "single-branch-parallel",
        default_severity: Severity::Warning,
        summary: "A `parallel` block with a single branch.",
        what: "Warns when a `parallel` block holds exactly one statement.",
        why: "Nothing runs in parallel: the block only adds a level of nesting, and often a \
              second branch was meant to be there (or was moved out by mistake).",
        example_bad: r#"include "std/models.orch"

agent researcher { model: sonnet, system: "You research topics." }

workflow main(topic: text) {
  research = parallel {
    history = researcher("Research the history of {topic}")
  }
  return research
}
"#,
        example_good: r#"include "std/models.orch"

agent researcher { model: sonnet, system: "You research topics." }

workflow main(topic: text) {
  history = researcher("Research the history of {topic}")
  return history
}
"#,
    },
    CodeInfo {
        code: Code::ForBodyResult,
        name: "for-body-result",
        summary: "The body of a `parallel for` does not end with a step.",
        what: "Reports a `parallel for` whose last statement is not a step (or a named block): \
               the last step's output is each item's result.",
        why: "The block's value is the list of each item's result; without a last step there \
              is nothing to collect.",
        example_bad: r#"include "std/models.orch"

agent writer { model: sonnet, system: "You write." }

workflow main() {
  posts = parallel for topic in ["rust", "go"] {
    if true { post = writer("Write about {topic}") }
  }
  return posts
}
"#,
        example_good: r#"include "std/models.orch"

agent writer { model: sonnet, system: "You write." }

workflow main() {
  posts = parallel for topic in ["rust", "go"] {
    post = writer("Write about {topic}")
  }
  return posts
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::BatchWindowBound,
        name: "batch-window-bound",
        default_severity: Severity::Warning,
        summary: "A step of a `parallel <batch>` block has a `deadline` or `timeout` shorter \
                  than the 24-hour batch window.",
        what: "Reports each model step of a `parallel <batch>` block (or `parallel <batch> for`) \
               whose `deadline` or `timeout` — its own, its agent's or a block's around it — is \
               shorter than 24 hours, the completion window of the Anthropic Message Batches \
               API and of the OpenAI Batch API.",
        why: "A provider may take up to 24 hours to end a batch. The bound is kept: when it \
              passes first, the step's batched attempt ends as timed out and its retries go \
              out as ordinary requests at the full price (or the step fails at its \
              deadline), so the saving of the batch is lost. Remove the bound, raise it to \
              `24h`, or leave out `batch`.",
        example_bad: r#"include "std/models.orch"

agent reviewer { model: haiku, system: "You review files." }

workflow main() {
  reviews = parallel <batch, deadline 1h> for file in ["a.rs", "b.rs", "c.rs"] {
    review = reviewer("Review {file}")
  }
  return reviews
}
"#,
        example_good: r#"include "std/models.orch"

agent reviewer { model: haiku, system: "You review files." }

workflow main() {
  reviews = parallel <batch, deadline 24h> for file in ["a.rs", "b.rs", "c.rs"] {
    review = reviewer("Review {file}")
  }
  return reviews
}
"#,
    },
    CodeInfo {
        code: Code::LiteralApiKey,
        name: "literal-api-key",
        summary: "An API key is written in the script.",
        what: "Reports an `api_key` field on a provider, and text anywhere in a file (strings, \
               comments) shaped like a key of a well-known format: `sk-ant-...` (Anthropic), \
               `sk-...` (OpenAI), `AKIA...` (AWS), `ghp_...` / `github_pat_...` (GitHub), \
               `xoxb-...` (Slack), at a word start, long enough and with a digit in it. The \
               report's snippet shows the key masked (`sk-ant-*****`), so that it reaches no \
               terminal or CI log.",
        why: "Scripts are shared and committed; a key written in one leaks with it. Keys are only \
              ever named by environment variable (`api_key_env`), and never appear in plans, \
              reports, journals or output: `orch run` redacts every key it reads, and anything \
              shaped like one, wherever it turns up.",
        example_bad: r#"provider work {
  kind: anthropic
  api_key: "sk-ant-api03-XXXXXXXXXXXXXXXX"
}

model sonnet { provider: work, name: "claude-sonnet-4-5" }

agent planner { model: sonnet, system: "You plan." }

workflow main(request: text) {
  plan = planner("Plan: {request}")
  return plan
}
"#,
        example_good: r#"provider work {
  kind: anthropic
  api_key_env: "WORK_ANTHROPIC_KEY"
}

model sonnet { provider: work, name: "claude-sonnet-4-5" }

agent planner { model: sonnet, system: "You plan." }

workflow main(request: text) {
  plan = planner("Plan: {request}")
  return plan
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::ModelOutputInArgv,
        name: "model-output-in-argv",
        summary: "Model output reaches the argv or the `cwd` of a command agent.",
        what: "Tracks which values derive from a model, following each value to what produced \
               it: a model step, a command given model output, a call whose `return` (or last \
               step) is, a `parallel for` block whose results are and the items of a list that \
               is, any branch of an `if` that defines the name, and a field of any of these; \
               then reports one passed to a command agent's parameter that is interpolated \
               into its `run:` argv or its `cwd`. The error shows the model step and the way when the value \
               came through others.",
        why: "A model's text can be steered by whatever it read (prompt injection). In argv it \
              can become an option or a path (`--force`, `-rf /`) of the program, and as `cwd` it picks \
              where the program runs. On stdin (the \
              prompt) or in `env` it stays data.",
        example_bad: r#"include "std/models.orch"

agent writer { model: haiku, system: "You write commit messages." }
agent commit(message: text) { run: ["git", "commit", "-m", "{message}"] }

workflow main(diff: text) {
  message = writer("Write a one-line commit message for:\n{diff}")
  done    = commit(message: "{message}")
  return done
}
"#,
        example_good: r#"include "std/models.orch"

agent writer { model: haiku, system: "You write commit messages." }
agent commit { run: ["git", "commit", "--file", "-"] }

workflow main(diff: text) {
  message = writer("Write a one-line commit message for:\n{diff}")
  done    = commit("{message}")
  return done
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::NoEntryWorkflow,
        name: "no-entry-workflow",
        summary: "`plan` or `run` cannot tell which workflow to use.",
        what: "Reported by `orch plan` and `orch run` (not by `orch check`): `--workflow` names no \
               workflow, the file has no workflow, or it has several and none is called `main`.",
        why: "There is nothing to plan or run, or the choice would be a guess.",
        example_bad: r#"include "std/models.orch"

agent planner { model: opus, system: "You plan." }

workflow design(request: text) {
  plan = planner("Plan: {request}")
  return plan
}

workflow redesign(plan: text) {
  better = planner("Improve: {plan}")
  return better
}
"#,
        example_good: r#"include "std/models.orch"

agent planner { model: opus, system: "You plan." }

workflow main(request: text) {
  plan = planner("Plan: {request}")
  return plan
}

workflow redesign(plan: text) {
  better = planner("Improve: {plan}")
  return better
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::UnusedOutput,
        name: "unused-output",
        default_severity: Severity::Warning,
        summary: "A model step whose output nothing reads.",
        what: "In a workflow with a `return`, warns for each model step whose output no other \
               step interpolates or waits for (`after`), no `gather` joins, and `return` does \
               not use. Command steps are not reported: they run for their effects. Without a \
               `return`, the steps nothing depends on are the workflow's result, so none is \
               unused.",
        why: "The step still runs and is paid for, and its answer is thrown away: usually a \
              name was misspelled or forgotten in a prompt.",
        example_bad: r#"include "std/models.orch"

agent scout   { model: haiku, system: "You explore codebases." }
agent planner { model: opus, system: "You write plans." }

workflow main(request: text) {
  found = parallel {
    files = scout("Find the files relevant to: {request}")
    deps  = scout("List the dependencies of: {request}")
  }
  plan = planner("Plan {request} using these files:\n{found.files}")
  return plan
}
"#,
        example_good: r#"include "std/models.orch"

agent scout   { model: haiku, system: "You explore codebases." }
agent planner { model: opus, system: "You write plans." }

workflow main(request: text) {
  found = parallel {
    files = scout("Find the files relevant to: {request}")
    deps  = scout("List the dependencies of: {request}")
  }
  plan = planner("Plan {request} using these findings:\n{found}")
  return plan
}
"#,
    },
    CodeInfo {
        code: Code::ParallelizableSequence,
        name: "parallelizable-sequence",
        default_severity: Severity::Warning,
        summary: "Consecutive model steps that do not use each other run one after another.",
        what: "In a sequence (a workflow body or a `then` block), finds two or more consecutive \
               model steps none of which interpolates or waits for another, and suggests the \
               `parallel { ... }` block that runs them at once. Command steps end such a \
               stretch, since their order may matter for their effects.",
        why: "A sequence waits for each step before starting the next, so independent model \
              calls add up their latencies; in a `parallel` block the stretch takes as long as \
              its slowest step, for the same cost.",
        example_bad: r#"include "std/models.orch"

agent scout   { model: haiku, system: "You explore codebases." }
agent planner { model: opus, system: "You write plans." }

workflow main(request: text) {
  files = scout("Find the files relevant to: {request}")
  deps  = scout("List the dependencies of: {request}")
  plan  = planner("Plan {request}.\nFiles: {files}\nDeps: {deps}")
  return plan
}
"#,
        example_good: r#"include "std/models.orch"

agent scout   { model: haiku, system: "You explore codebases." }
agent planner { model: opus, system: "You write plans." }

workflow main(request: text) {
  parallel {
    files = scout("Find the files relevant to: {request}")
    deps  = scout("List the dependencies of: {request}")
  }
  plan = planner("Plan {request}.\nFiles: {files}\nDeps: {deps}")
  return plan
}
"#,
    },
    CodeInfo {
        code: Code::BudgetExceeded,
        name: "budget-exceeded",
        default_severity: Severity::Warning,
        summary: "A workflow's or a `parallel` block's worst-case cost is over its `budget`.",
        what: "Computes the worst case the way `orch plan` does (each step's prompt estimate \
               plus its whole `max_tokens`, on every attempt and on its fallback, priced by the \
               model) and warns when it exceeds the workflow's `<budget $X>`, or when the steps \
               of a `parallel <budget $X>` block may cost more than the block's budget, \
               pointing at the costliest steps.",
        why: "The run enforces the budget by not starting a step that could overrun what is \
              left, so such a script may stop half-way, after paying for the first half. \
              Knowing before the run lets you lower `max_tokens` or `retry`, move steps to \
              cheaper models, or raise the budget.",
        example_bad: r#"include "std/models.orch"

agent architect { model: opus, max_tokens: 8000, retry: 2, system: "You design systems." }

workflow main(request: text) <budget $0.50> {
  design = architect("Design the architecture for: {request}")
  review = architect("Review this design:\n{design}")
  return review
}
"#,
        example_good: r#"include "std/models.orch"

agent architect { model: opus, max_tokens: 2000, retry: 1, system: "You design systems." }

workflow main(request: text) <budget $0.50> {
  design = architect("Design the architecture for: {request}")
  review = architect("Review this design:\n{design}")
  return review
}
"#,
    },
    CodeInfo {
        code: Code::ContextWindowExceeded,
        name: "context-window-exceeded",
        default_severity: Severity::Warning,
        summary: "A step's worst-case request is larger than its model's `context_window`.",
        what: "Estimates each model step's largest request the way `orch plan` does (its system \
               text and prompt at 4 characters a token, each step output it interpolates at \
               that step's whole `max_tokens`, parameters as nothing) and warns when that plus \
               the step's own `max_tokens` is more than the `context_window` of its model or of \
               its fallback, pointing at the largest outputs it interpolates.",
        why: "A provider refuses a request whose input and `max_tokens` do not fit the model's \
              context window, so the step would fail after everything before it ran and was \
              paid for. `orch run` refuses such a prompt before sending it, naming the step; \
              this warning says so before the run. Lower `max_tokens` of the steps it reads, \
              interpolate fewer outputs, or use a model with a larger window.",
        example_bad: r#"include "std/models.orch"

agent researcher { model: haiku, max_tokens: 64000, system: "You research in depth." }
agent editor     { model: haiku, max_tokens: 64000, system: "You edit reports." }

workflow main(topic: text) {
  parallel {
    history = researcher("The history of {topic}")
    market  = researcher("The market for {topic}")
    outlook = researcher("The outlook for {topic}")
  }
  report = editor("Merge into one report:\n{history}\n{market}\n{outlook}")
  return report
}
"#,
        example_good: r#"include "std/models.orch"

agent researcher { model: haiku, max_tokens: 16000, system: "You research in depth." }
agent editor     { model: haiku, max_tokens: 64000, system: "You edit reports." }

workflow main(topic: text) {
  parallel {
    history = researcher("The history of {topic}")
    market  = researcher("The market for {topic}")
    outlook = researcher("The outlook for {topic}")
  }
  report = editor("Merge into one report:\n{history}\n{market}\n{outlook}")
  return report
}
"#,
    },
    CodeInfo {
        code: Code::UnusedAllow,
        name: "unused-allow",
        default_severity: Severity::Warning,
        summary: "An `// orch: allow(...)` comment that silences nothing.",
        what: "Warns about an `allow` entry that matched no warning on the line it applies to, \
               one that names no diagnostic or names an error (errors cannot be allowed), and an \
               `orch:` directive other than `allow`. Unused entries are only reported when the \
               script has no errors, since an error may stop the check the entry is for.",
        why: "Allows rot: once the code they excuse changes, a stale `allow` would silence the \
              next, unrelated warning on that line. A misspelled one never worked at all.",
        example_bad: r#"include "std/models.orch"

agent reviewer { model: opus, system: "You review code." }

workflow main(code: text) {
  reviews = parallel <opus> {
    // orch: allow(block-model-overridden)
    security = reviewer("Security review:\n{code}")
    style    = reviewer("Style review:\n{code}")
  }
  return reviews
}
"#,
        example_good: r#"include "std/models.orch"

agent reviewer { model: opus, system: "You review code." }

workflow main(code: text) {
  reviews = parallel <opus> {
    security = reviewer("Security review:\n{code}")
    style    = reviewer("Style review:\n{code}")
  }
  return reviews
}
"#,
    },
    CodeInfo {
        code: Code::FormatRefused,
        name: "format-refused",
        summary: "`orch fmt` cannot lay the file out without changing its meaning.",
        what: "Reported by `orch fmt` (never by `check`, `plan` or `run`) when the layout it \
               computed parses to a different program than the file, or does not parse: \
               `orch fmt` checks every layout it writes this way, and refuses rather than \
               change a script.",
        why: "It is a bug of the formatter, not of the script: the file is left as it is, and \
              the script still checks and runs. Please report it with the file (or the \
              smallest part of it that is refused).",
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::UnknownTool,
        name: "unknown-tool",
        summary: "An entry of an agent's `tools` that names no tool.",
        what: "Checks each entry of `tools: [...]`: a built-in (`read`, `list`, `glob`, `grep`, \
               `write`, `edit`), `exec(\"PREFIX\", ...)`, `SERVER.tool` or `SERVER.*` of a \
               declared `mcp` server, or `agent(NAME)`. Anything else is reported with the \
               closest of those: a built-in, `NAME.*` for a server written alone, \
               `agent(NAME)` for an agent written alone.",
        why: "A grant is the whole of what an agent may do; a misspelt one would leave the agent \
              without the tool it was meant to have, and its loop would fail at run time \
              instead of here.",
        example_bad: r#"include "std/models.orch"

agent scout { model: haiku, tools: [read, grpe] }

workflow main(request: text) {
  files = scout("Find the files relevant to: {request}")
  return files
}
"#,
        example_good: r#"include "std/models.orch"

agent scout { model: haiku, tools: [read, grep] }

workflow main(request: text) {
  files = scout("Find the files relevant to: {request}")
  return files
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::InvalidExec,
        name: "invalid-exec",
        summary: "An `exec` grant without the commands it may run.",
        what: "Reports `exec` or `exec()` without a prefix, an empty prefix (`exec(\"\")`), and a \
               prefix that is not a plain string. Each prefix is split on spaces; a call is \
               allowed only when its argv starts with one of them.",
        why: "An `exec` without a prefix would let the model run any program in the workspace. \
              The allowlist is what makes a builder that runs `cargo test` safe to hand a \
              repository.",
        example_bad: r#"include "std/models.orch"

agent tester { model: sonnet, tools: [read, exec] }

workflow main(request: text) {
  report = tester("Run the tests for: {request}")
  return report
}
"#,
        example_good: r#"include "std/models.orch"

agent tester { model: sonnet, tools: [read, exec("cargo test")] }

workflow main(request: text) {
  report = tester("Run the tests for: {request}")
  return report
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::UnknownMcpServer,
        name: "unknown-mcp-server",
        summary: "A grant `NAME.tool` or `NAME.*` where no `mcp NAME` is declared.",
        what: "Checks that the server of an MCP grant is declared with `mcp NAME { ... }` in the \
               script or a file it includes (server names are global, like model names).",
        why: "orch starts (or connects to) the servers an agent is granted before the loop \
              needs them; a grant on no server could never be served.",
        example_bad: r#"include "std/models.orch"

mcp git { command: ["python3", "-m", "mcp_server_git", "--repository", "."] }

agent archivist { model: haiku, tools: [git.git_log, gti.git_status] }

workflow main(request: text) {
  history = archivist("Summarise the history of: {request}")
  return history
}
"#,
        example_good: r#"include "std/models.orch"

mcp git { command: ["python3", "-m", "mcp_server_git", "--repository", "."] }

agent archivist { model: haiku, tools: [git.git_log, git.git_status] }

workflow main(request: text) {
  history = archivist("Summarise the history of: {request}")
  return history
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::InvalidDelegation,
        name: "invalid-delegation",
        summary: "An `agent(NAME)` grant that cannot delegate.",
        what: "Checks that `agent(NAME)` names one declared agent (resolved like a callee, \
               `ns.name` through a namespace) that is a model agent, has a `model` of its own \
               and needs no argument without a default.",
        why: "A delegation hands a model a subtask as a prompt and runs it as a nested step \
              outside any block: a command agent answers no prompt, an agent without a model \
              would have none, and a parameter without a default would have no value.",
        example_bad: r#"include "std/models.orch"

agent scout { model: haiku, tools: [read, grep] }
agent lead  { model: opus, tools: [agent(scuot)] }

workflow main(request: text) {
  answer = lead("Answer with help from a scout: {request}")
  return answer
}
"#,
        example_good: r#"include "std/models.orch"

agent scout { model: haiku, tools: [read, grep] }
agent lead  { model: opus, tools: [agent(scout)] }

workflow main(request: text) {
  answer = lead("Answer with help from a scout: {request}")
  return answer
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::DelegationCycle,
        name: "delegation-cycle",
        summary: "Agents delegate to each other in a cycle.",
        what: "Follows every `agent(NAME)` grant and reports each cycle once (an agent granted \
               itself included), with every grant on it.",
        why: "A delegation runs to its end inside a turn of the delegating agent: around a \
              cycle, nested loops could go on without end, and no worst case could be given.",
        example_bad: r#"include "std/models.orch"

agent reviewer { model: sonnet, tools: [read, agent(fixer)] }
agent fixer    { model: sonnet, tools: [read, edit, agent(reviewer)] }

workflow main(request: text) {
  result = fixer("Fix: {request}")
  return result
}
"#,
        example_good: r#"include "std/models.orch"

agent reviewer { model: sonnet, tools: [read] }
agent fixer    { model: sonnet, tools: [read, edit, agent(reviewer)] }

workflow main(request: text) {
  result = fixer("Fix: {request}")
  return result
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::DelegationTooDeep,
        name: "delegation-too-deep",
        summary: "A chain of delegations deeper than 3.",
        what: "Reports an agent that starts a chain of more than 3 delegations (`a` delegates \
               to `b`, which delegates to `c`, ...), at the start of the longest chain.",
        why: "Every level is a whole agent loop inside one turn of the level above, so the \
              worst case multiplies with each level; deep chains are also hard to follow in \
              the journal. A lead that delegates to each specialist directly does the same work.",
        example_bad: r#"include "std/models.orch"

agent a { model: haiku, tools: [read] }
agent b { model: haiku, tools: [agent(a)] }
agent c { model: haiku, tools: [agent(b)] }
agent d { model: haiku, tools: [agent(c)] }
agent e { model: haiku, tools: [agent(d)] }

workflow main(request: text) {
  answer = e("Answer: {request}")
  return answer
}
"#,
        example_good: r#"include "std/models.orch"

agent a { model: haiku, tools: [read] }
agent b { model: haiku, tools: [agent(a)] }
agent c { model: haiku, tools: [agent(b)] }
agent e { model: haiku, tools: [agent(c), agent(a)] }

workflow main(request: text) {
  answer = e("Answer: {request}")
  return answer
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::TurnsWithoutTools,
        name: "turns-without-tools",
        summary: "`max_turns` or `tool_timeout` on an agent without tools.",
        what: "Reports the fields `max_turns` and `tool_timeout` of an agent without `tools`, \
               and the option `<max_turns N>` on a call of such an agent (a block's \
               `<max_turns N>` only applies to the agents with tools inside).",
        why: "Only an agent with tools runs an agent loop; on any other agent these settings \
              bound nothing, and were probably meant for another agent or for a `tools` \
              field that is missing.",
        example_bad: r#"include "std/models.orch"

agent scout { model: haiku, max_turns: 12 }

workflow main(request: text) {
  files = scout("Find the files relevant to: {request}")
  return files
}
"#,
        example_good: r#"include "std/models.orch"

agent scout { model: haiku, tools: [read, grep], max_turns: 12 }

workflow main(request: text) {
  files = scout("Find the files relevant to: {request}")
  return files
}
"#,
        ..CodeInfo::ERROR
    },
    CodeInfo {
        code: Code::LowComplexityWrites,
        name: "low-complexity-writes",
        default_severity: Severity::Warning,
        summary: "A `low`-complexity agent granted `write`, `edit` or `exec`.",
        what: "Warns at each `write`, `edit` or `exec(...)` grant of an agent declared \
               `complexity: low`.",
        why: "`low` is for lookups and formatting, usually on a fast, cheap model; tools that \
              change the workspace or run programs belong to an agent trusted with the task's \
              difficulty. Either the complexity or the grant is probably wrong.",
        example_bad: r#"include "std/models.orch"

agent scout { model: haiku, complexity: low, tools: [read, grep, write] }

workflow main(request: text) {
  files = scout("Find the files relevant to: {request}")
  return files
}
"#,
        example_good: r#"include "std/models.orch"

agent scout { model: haiku, complexity: low, tools: [read, grep] }

workflow main(request: text) {
  files = scout("Find the files relevant to: {request}")
  return files
}
"#,
    },
    CodeInfo {
        code: Code::UnusedMcpServer,
        name: "unused-mcp-server",
        default_severity: Severity::Warning,
        summary: "An `mcp` server that no agent is granted.",
        what: "Warns at an `mcp NAME { ... }` declaration when no agent's `tools` names \
               `NAME.tool` or `NAME.*`.",
        why: "A declaration nobody uses is dead text that still reads as a capability of the \
              script; it was probably meant to be granted, or is left over.",
        example_bad: r#"include "std/models.orch"

mcp fs { command: ["npx", "-y", "@modelcontextprotocol/server-filesystem", "."] }

agent scout { model: haiku, tools: [read, grep] }

workflow main(request: text) {
  files = scout("Find the files relevant to: {request}")
  return files
}
"#,
        example_good: r#"include "std/models.orch"

mcp fs { command: ["npx", "-y", "@modelcontextprotocol/server-filesystem", "."] }

agent scout { model: haiku, tools: [read, grep, fs.read_text_file] }

workflow main(request: text) {
  files = scout("Find the files relevant to: {request}")
  return files
}
"#,
    },
];

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    use super::*;

    #[test]
    fn every_code_has_one_entry_in_code_order() {
        let listed: Vec<Code> = CODES.iter().map(|c| c.code).collect();
        assert_eq!(
            listed,
            Code::ALL,
            "the catalogue must have one entry per `Code`, in the enum's order"
        );
        for pair in Code::ALL.windows(2) {
            assert!(
                pair[0].as_str()[1..] < pair[1].as_str()[1..],
                "{} and {}: `Code` is declared in code order",
                pair[0],
                pair[1]
            );
        }
        for &code in Code::ALL {
            assert_eq!(entry(code).code, code);
            assert_eq!(by_code(code.as_str()).map(|c| c.code), Some(code));
        }
    }

    /// Every Rust file of `src/` with its text.
    fn rust_sources() -> Vec<(PathBuf, String)> {
        let mut files = Vec::new();
        let mut stack = vec![PathBuf::from("src")];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).expect("src/") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("source file");
                    files.push((path, text));
                }
            }
        }
        files
    }

    /// The name of the `Code` variant at the start of `text`.
    fn variant_at(text: &str) -> String {
        text.chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect()
    }

    /// The `Code::Variant` paths written in `src/` outside the code list and the catalogue.
    fn codes_used_in_src() -> BTreeSet<String> {
        let mut used = BTreeSet::new();
        for (path, text) in rust_sources() {
            if path.ends_with("diag/code.rs") || path.ends_with("diag/catalog.rs") {
                continue;
            }
            for (at, _) in text.match_indices("Code::") {
                used.insert(variant_at(&text[at + 6..]));
            }
        }
        used
    }

    /// For each code, the files of `src/` whose non-test code makes a diagnostic of it
    /// (`Diagnostic::new(Code::X, ...)`).
    fn wording_sites() -> BTreeMap<String, BTreeSet<PathBuf>> {
        let mut sites: BTreeMap<String, BTreeSet<PathBuf>> = BTreeMap::new();
        for (path, text) in rust_sources() {
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for (at, _) in code.match_indices("Diagnostic::new(") {
                if let Some(rest) = code[at + 16..].trim_start().strip_prefix("Code::") {
                    sites
                        .entry(variant_at(rest))
                        .or_default()
                        .insert(path.clone());
                }
            }
        }
        sites
    }

    #[test]
    fn every_code_is_worded_in_one_file() {
        let sites = wording_sites();
        for &code in Code::ALL {
            let name = format!("{code:?}");
            let files = sites.get(&name).cloned().unwrap_or_default();
            assert_eq!(
                files.len(),
                1,
                "{code} ({name}) must be worded in exactly one file, its stage's error type; found {files:?}"
            );
        }
    }

    #[test]
    fn every_code_is_reported_somewhere() {
        let used = codes_used_in_src();
        let unused: Vec<String> = Code::ALL
            .iter()
            .map(|c| format!("{c:?}"))
            .filter(|name| !used.contains(name))
            .collect();
        assert!(
            unused.is_empty(),
            "codes in the catalogue that src/ never reports: {unused:?}"
        );
    }

    #[test]
    fn entries_are_well_formed() {
        let mut names = BTreeSet::new();
        for c in CODES {
            let kind = match c.default_severity {
                Severity::Error => 'E',
                Severity::Warning => 'W',
                Severity::Note => 'N',
            };
            let text = c.code.as_str();
            assert!(
                text.len() == 5
                    && text.starts_with(kind)
                    && text[1..].bytes().all(|b| b.is_ascii_digit()),
                "{}: the code must be {kind} and four digits",
                c.code
            );
            assert!(
                !c.name.is_empty()
                    && c.name.split('-').all(|w| {
                        !w.is_empty()
                            && w.bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                    }),
                "{}: `{}` is not kebab-case",
                c.code,
                c.name
            );
            assert!(
                names.insert(c.name),
                "{}: name `{}` used twice",
                c.code,
                c.name
            );
            for (what, text) in [("summary", c.summary), ("what", c.what), ("why", c.why)] {
                assert!(!text.trim().is_empty(), "{}: empty {what}", c.code);
            }
            assert!(
                c.summary.ends_with('.'),
                "{}: the summary is a sentence",
                c.code
            );
            assert!(
                !c.summary.contains('\n'),
                "{}: the summary is one line",
                c.code
            );
            assert_eq!(
                c.example_bad.is_empty(),
                c.example_good.is_empty(),
                "{}: both examples or neither",
                c.code
            );
            assert_eq!(lookup(c.code.as_str()).map(|x| x.code), Some(c.code));
            assert_eq!(lookup(c.name).map(|x| x.code), Some(c.code));
        }
        assert_eq!(
            lookup("w0402").map(|c| c.name),
            Some("block-model-overridden")
        );
        assert_eq!(
            lookup("block_model_overridden").map(|c| c.code),
            Some(Code::BlockModelOverridden)
        );
        assert_eq!(suggest("W0420"), Some("W0402"));
        assert_eq!(suggest("undefined-nme"), Some("undefined-name"));
        assert!(lookup("nothing-like-this").is_none());
    }

    #[test]
    fn example_files_split_on_file_lines() {
        assert_eq!(example_files("a\nb\n"), [("main.orch", "a\nb\n")]);
        assert_eq!(
            example_files("// file: x.orch\na\n// file: ../y.orch\nb\n"),
            [("x.orch", "a\n"), ("../y.orch", "b\n")]
        );
        assert_eq!(
            example_files("a\n// file: y.orch\nb"),
            [("main.orch", "a\n"), ("y.orch", "b")]
        );
    }

    #[test]
    fn docs_diagnostics_md_is_generated_from_the_catalogue() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/diagnostics.md");
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = markdown();
        assert!(
            on_disk == generated,
            "docs/diagnostics.md is not what the catalogue generates; regenerate it with\n\n    {REGENERATE}\n"
        );
    }
}
