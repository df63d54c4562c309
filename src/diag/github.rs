//! Diagnostics as GitHub Actions workflow commands, which GitHub shows as annotations on the
//! lines of a pull request.
//!
//! One line per diagnostic
//! (<https://docs.github.com/en/actions/reference/workflows-and-actions/workflow-commands>,
//! "Setting an error message"):
//!
//! ```text
//! ::error file=PATH,line=L,col=C,endLine=L2,endColumn=C2,title=E0201 undefined-name::MESSAGE
//! ```
//!
//! `::error` for errors, `::warning` for warnings, `::notice` for notes. Lines and columns are
//! 1-based, columns in characters, `endColumn` just after the last character (as in the JSON
//! output). MESSAGE is the message, then one line per secondary label
//! (`PATH:LINE:COLUMN: text`, e.g. the `include` that brought the file in), then `help: ...`;
//! the line breaks are escaped, so the command stays on one line.
//!
//! Escaping follows the runner's parser, `@actions/core`'s `command.ts`
//! (<https://github.com/actions/toolkit/blob/main/packages/core/src/command.ts>): in the message
//! `%` → `%25`, `\r` → `%0D`, `\n` → `%0A`; in property values also `:` → `%3A` and
//! `,` → `%2C`.

use std::fmt::Write as _;

use super::{Diagnostic, Diagnostics, Severity, SourceMap, Span, code_name};

/// Renders every diagnostic as one workflow command line (each ends with `\n`); no
/// diagnostics give the empty string.
pub fn render_github(diags: &Diagnostics, sources: &SourceMap) -> String {
    diags.iter().map(|d| command(d, sources) + "\n").collect()
}

/// The command name of a severity.
fn command_name(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "notice",
    }
}

/// One diagnostic as a workflow command, without the line break.
fn command(d: &Diagnostic, sources: &SourceMap) -> String {
    let span = d.primary.span;
    let (line, col) = sources.line_col(span.file, span.start);
    let (end_line, end_col) = sources.line_col(span.file, span.end.max(span.start));
    let title = format!("{} {}", d.code, code_name(d.code));
    format!(
        "::{} file={},line={line},col={col},endLine={end_line},endColumn={end_col},title={}::{}",
        command_name(d.severity),
        escape_property(&sources.get(span.file).name),
        escape_property(title.trim_end()),
        escape_data(&message(d, sources)),
    )
}

/// The text of the annotation: message, secondary labels with their places, help.
fn message(d: &Diagnostic, sources: &SourceMap) -> String {
    let mut text = d.message.clone();
    for l in &d.secondary {
        let _ = write!(text, "\n{}: {}", place(l.span, sources), l.message);
    }
    if let Some(help) = &d.help {
        let _ = write!(text, "\nhelp: {help}");
    }
    text
}

/// `PATH:LINE:COLUMN` of the start of a span.
fn place(span: Span, sources: &SourceMap) -> String {
    let (line, col) = sources.line_col(span.file, span.start);
    format!("{}:{line}:{col}", sources.get(span.file).name)
}

/// Escapes the message of a workflow command: `%`, `\r` and `\n`.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a property value of a workflow command: as [`escape_data`], and `:` and `,`.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Code;

    #[test]
    fn escaping() {
        assert_eq!(
            escape_data("100% done\r\nnext: a, b"),
            "100%25 done%0D%0Anext: a, b"
        );
        assert_eq!(escape_property("C:\\x,y%.orch"), "C%3A\\x%2Cy%25.orch");
    }

    #[test]
    fn one_line_per_diagnostic() {
        let mut sources = SourceMap::new();
        let main = sources.add("dir,x/main.orch", None, "include \"a.orch\"\n");
        let lib = sources.add("dir,x/a.orch", None, "agent a {\n  model: sonet\n}\n");
        let mut diags = Diagnostics::new();
        diags.push(
            Diagnostic::new(
                Code::UnknownModel,
                Span::new(lib, 19, 24),
                "unknown model `sonet`",
            )
            .with_label("not a declared model")
            .with_secondary(Span::new(main, 0, 16), "`dir,x/a.orch` included here")
            .with_help("did you mean `sonnet`?"),
        );
        diags.push(Diagnostic::new(
            Code::UnusedAllow,
            Span::new(main, 0, 0),
            "50% unused",
        ));
        let out = render_github(&diags, &sources);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "::error file=dir%2Cx/a.orch,line=2,col=10,endLine=2,endColumn=15,\
                 title=E0203 unknown-model::unknown model `sonet`\
                 %0Adir,x/main.orch:1:1: `dir,x/a.orch` included here\
                 %0Ahelp: did you mean `sonnet`?",
                "::warning file=dir%2Cx/main.orch,line=1,col=1,endLine=1,endColumn=1,\
                 title=W0901 unused-allow::50%25 unused",
            ]
        );
        assert!(out.ends_with('\n'));
        assert_eq!(render_github(&Diagnostics::new(), &sources), "");
    }
}
