//! Diagnostics as a SARIF 2.1.0 log, for GitHub code scanning and other SARIF viewers.
//!
//! The shape follows the OASIS standard *Static Analysis Results Interchange Format (SARIF)
//! Version 2.1.0* (errata 01, <https://docs.oasis-open.org/sarif/sarif/v2.1.0/>; section
//! numbers below are its) and the subset GitHub reads
//! (<https://docs.github.com/en/code-security/code-scanning/integrating-with-code-scanning/sarif-support-for-code-scanning>):
//!
//! - one `sarifLog` (§3.13) with one `run` (§3.14) for every file checked together;
//! - `run.tool.driver` (§3.18, §3.19): `name` `orch`, the crate version, and as `rules` one
//!   `reportingDescriptor` (§3.49) per code of the [`catalog`], in catalogue order, so a
//!   result's `ruleIndex` is the code's position in [`catalog::all`];
//! - `run.columnKind` (§3.14.17) is `utf16CodeUnits`: columns are counted in UTF-16 code units;
//! - one `result` (§3.27) per diagnostic: `ruleId`, `ruleIndex`, `level` (`error`, `warning`
//!   or `note`), `message.text` (the message, then `help: ...`), the primary label as
//!   `locations[0]` and the secondary labels (an earlier definition, the `include` that
//!   brought a file in, ...) as `relatedLocations` (§3.27.22);
//! - a `physicalLocation` (§3.29) has an `artifactLocation` (§3.4) and a `region` (§3.30) with
//!   1-based `startLine`, `startColumn`, `endLine`, `endColumn` (exclusive) and `byteOffset`,
//!   `byteLength`.
//!
//! Artifact URIs (§3.4.3): a file under the working directory is a relative reference with
//! `uriBaseId` `%SRCROOT%` (the root GitHub resolves against when `orch check` runs at the
//! repository's root); a file elsewhere is an absolute `file://` URI without a base; a file of
//! the embedded standard library (`std/models.orch`) is `models.orch` relative to
//! [`STDLIB_BASE_ID`], which `run.originalUriBaseIds` (§3.14.14) describes without a URI, as
//! the library has none on disk.

use serde_json::{Map, Value, json};

use super::catalog::{self, CodeInfo};
use super::{Diagnostic, Diagnostics, Label, Severity, SourceFile, SourceMap, Span};

/// The `$schema` of the log: the OASIS schema of SARIF 2.1.0 (errata 01).
pub const SCHEMA_URI: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// The `uriBaseId` of files of the embedded standard library.
pub const STDLIB_BASE_ID: &str = "ORCH_STDLIB";

/// The `uriBaseId` of files named relative to the working directory (GitHub's name for the
/// repository root).
pub const SRCROOT_BASE_ID: &str = "%SRCROOT%";

/// Renders the diagnostics of the files checked in one invocation as one pretty-printed SARIF
/// log (see the module documentation for the shape). No diagnostics give a log whose run has
/// `results: []`.
pub fn render_sarif(checked: &[(&Diagnostics, &SourceMap)]) -> String {
    serde_json::to_string_pretty(&to_sarif(checked))
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The SARIF log as a JSON value (see [`render_sarif`]).
pub fn to_sarif(checked: &[(&Diagnostics, &SourceMap)]) -> Value {
    let results: Vec<Value> = checked
        .iter()
        .flat_map(|(diags, sources)| diags.iter().map(|d| result(d, sources)))
        .collect();
    json!({
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": driver() },
            "originalUriBaseIds": {
                STDLIB_BASE_ID: {
                    "description": {
                        "text": "The standard library embedded in the orch binary: \
                                 `include \"std/NAME\"` reads the file NAME of it.",
                    },
                },
            },
            "columnKind": "utf16CodeUnits",
            "results": results,
        }],
    })
}

/// `tool.driver`: orch, its version, and every code of the catalogue as a rule.
fn driver() -> Value {
    let rules: Vec<Value> = catalog::all().iter().map(rule).collect();
    json!({
        "name": "orch",
        "version": env!("CARGO_PKG_VERSION"),
        "semanticVersion": env!("CARGO_PKG_VERSION"),
        "rules": rules,
    })
}

/// One `reportingDescriptor` (§3.49): the catalogue entry of a code, its Markdown (what, why,
/// a failing and a fixed example) as `help`.
fn rule(info: &CodeInfo) -> Value {
    json!({
        "id": info.code,
        "name": info.name,
        "shortDescription": { "text": info.summary },
        "fullDescription": { "text": info.what },
        "help": {
            "text": format!("{}\n\n{}", info.what, info.why),
            "markdown": info.markdown(1),
        },
        "defaultConfiguration": { "level": level(info.default_severity) },
    })
}

/// The SARIF `level` (§3.27.10) of a severity.
fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    }
}

/// One `result` (§3.27).
fn result(d: &Diagnostic, sources: &SourceMap) -> Value {
    let mut text = d.message.clone();
    if let Some(help) = &d.help {
        text.push_str("\nhelp: ");
        text.push_str(help);
    }
    let mut r = Map::new();
    r.insert("ruleId".into(), json!(d.code));
    if let Some(i) = catalog::all().iter().position(|c| c.code == d.code) {
        r.insert("ruleIndex".into(), json!(i));
    }
    r.insert("level".into(), json!(level(d.severity)));
    r.insert("message".into(), json!({ "text": text }));
    r.insert("locations".into(), json!([location(&d.primary, sources)]));
    if !d.secondary.is_empty() {
        let related: Vec<Value> = d
            .secondary
            .iter()
            .enumerate()
            .map(|(i, l)| {
                // `id` (§3.28.2) first, then the location's fields.
                let mut loc = Map::new();
                loc.insert("id".into(), json!(i + 1));
                if let Value::Object(fields) = location(l, sources) {
                    loc.extend(fields);
                }
                Value::Object(loc)
            })
            .collect();
        r.insert("relatedLocations".into(), Value::Array(related));
    }
    if let Some(text) = &d.replacement {
        r.insert("fixes".into(), json!([fix(d, text, sources)]));
    }
    Value::Object(r)
}

/// A `fix` (§3.55): the diagnostic's replacement put in place of its primary span, described
/// by its help (or by the replacement itself when there is none).
fn fix(d: &Diagnostic, text: &str, sources: &SourceMap) -> Value {
    let description = d
        .help
        .clone()
        .unwrap_or_else(|| format!("replace with `{text}`"));
    let place = physical_location(d.primary.span, sources);
    json!({
        "description": { "text": description },
        "artifactChanges": [{
            "artifactLocation": place["artifactLocation"],
            "replacements": [{
                "deletedRegion": place["region"],
                "insertedContent": { "text": text },
            }],
        }],
    })
}

/// A `location` (§3.28): the label's place, and its text as the location's `message` when it
/// has one.
fn location(label: &Label, sources: &SourceMap) -> Value {
    let mut loc = json!({ "physicalLocation": physical_location(label.span, sources) });
    if !label.message.is_empty() {
        loc["message"] = json!({ "text": label.message });
    }
    loc
}

/// A `physicalLocation` (§3.29) with its `region` (§3.30).
fn physical_location(span: Span, sources: &SourceMap) -> Value {
    let (start_line, start_column) = sources.line_col_utf16(span.file, span.start);
    let (end_line, end_column) = sources.line_col_utf16(span.file, span.end.max(span.start));
    json!({
        "artifactLocation": artifact_location(sources.get(span.file)),
        "region": {
            "startLine": start_line,
            "startColumn": start_column,
            "endLine": end_line,
            "endColumn": end_column,
            "byteOffset": span.start,
            "byteLength": span.len(),
        },
    })
}

/// An `artifactLocation` (§3.4): see the module documentation for the three kinds of file.
fn artifact_location(file: &SourceFile) -> Value {
    if file.is_stdlib() {
        let rest = file.name.trim_start_matches("std/");
        return json!({ "uri": encode_path(rest), "uriBaseId": STDLIB_BASE_ID });
    }
    let name = if cfg!(windows) {
        file.name.replace('\\', "/")
    } else {
        file.name.clone()
    };
    if name.starts_with('/') {
        return json!({ "uri": format!("file://{}", encode_path(&name)) });
    }
    if let Some((drive, rest)) = windows_drive(&name) {
        return json!({ "uri": format!("file:///{drive}:{}", encode_path(rest)) });
    }
    json!({ "uri": encode_path(&name), "uriBaseId": SRCROOT_BASE_ID })
}

/// `C:/x` → `('C', "/x")`: a path that starts with a Windows drive.
fn windows_drive(path: &str) -> Option<(char, &str)> {
    let mut chars = path.chars();
    let drive = chars.next().filter(char::is_ascii_alphabetic)?;
    let rest = chars.as_str().strip_prefix(':')?;
    rest.starts_with('/').then_some((drive, rest))
}

/// A path with `/` separators as the path of a URI reference (RFC 3986 §2): every byte
/// other than an unreserved character (`A-Z a-z 0-9 - . _ ~`) or `/` is percent-encoded, so
/// spaces, `%`, `#`, `?` and `:` (which would start a scheme) cannot change its meaning.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Code;

    #[test]
    fn paths_are_percent_encoded() {
        assert_eq!(encode_path("a b/c%d#e.orch"), "a%20b/c%25d%23e.orch");
        assert_eq!(encode_path("x:y/é.orch"), "x%3Ay/%C3%A9.orch");
        assert_eq!(encode_path("../lib/agents.orch"), "../lib/agents.orch");
    }

    #[test]
    fn artifact_locations() {
        let file = |name: &str, on_disk: bool| SourceFile {
            name: name.to_string(),
            path: on_disk.then(|| name.into()),
            text: "".into(),
        };
        assert_eq!(
            artifact_location(&file("std/models.orch", false)),
            json!({ "uri": "models.orch", "uriBaseId": "ORCH_STDLIB" })
        );
        assert_eq!(
            artifact_location(&file("lib/my agents.orch", true)),
            json!({ "uri": "lib/my%20agents.orch", "uriBaseId": "%SRCROOT%" })
        );
        assert_eq!(
            artifact_location(&file("/tmp/x.orch", true)),
            json!({ "uri": "file:///tmp/x.orch" })
        );
        assert_eq!(windows_drive("C:/x/y.orch"), Some(('C', "/x/y.orch")));
        assert_eq!(windows_drive("C:x"), None);
        assert_eq!(windows_drive("lib/x"), None);
    }

    #[test]
    fn empty_log_has_a_run_and_no_results() {
        let (diags, sources) = (Diagnostics::new(), SourceMap::new());
        let log = to_sarif(&[(&diags, &sources)]);
        assert_eq!(log["version"], "2.1.0");
        assert_eq!(log["runs"].as_array().map(Vec::len), Some(1));
        assert_eq!(log["runs"][0]["results"], json!([]));
        let rules = log["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .unwrap();
        assert_eq!(rules.len(), catalog::all().len());
    }

    #[test]
    fn columns_are_utf16_and_labels_related() {
        let mut sources = SourceMap::new();
        // `𝄞` is 4 bytes, 2 UTF-16 code units.
        let id = sources.add("a.orch", Some("a.orch".into()), "x = \"𝄞\" + y\nz");
        let start = "x = \"𝄞\" + ".len();
        let d = Diagnostic::new(
            Code::UndefinedName,
            Span::new(id, start, start + 1),
            "`y` is undefined",
        )
        .with_label("not defined")
        .with_secondary(Span::new(id, start + 2, start + 3), "`z` here")
        .with_help("define it");
        let r = result(&d, &sources);
        let region = &r["locations"][0]["physicalLocation"]["region"];
        // Ten characters precede `y`, eleven UTF-16 code units.
        assert_eq!(sources.line_col(id, start as u32), (1, 11));
        assert_eq!(region["startColumn"], 12);
        assert_eq!(region["endColumn"], 13);
        assert_eq!(region["byteOffset"], start);
        assert_eq!(r["message"]["text"], "`y` is undefined\nhelp: define it");
        assert_eq!(r["locations"][0]["message"]["text"], "not defined");
        let related = &r["relatedLocations"][0];
        assert_eq!(related["id"], 1);
        assert_eq!(related["physicalLocation"]["region"]["startLine"], 2);
        assert_eq!(related["message"]["text"], "`z` here");
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(catalog::all()[index].code, "E0201");
    }
}
