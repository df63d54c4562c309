//! One diagnostic model for every stage of the pipeline.
//!
//! A [`Diagnostic`] is renderer-free: a stable code, a severity, a message, a primary label at
//! a [`Span`], secondary labels (possibly in other files), and an optional help line. Stages
//! push diagnostics into a [`Diagnostics`] list and carry on, so one run reports every error of
//! a file. Rendering happens at the edge: [`render_human`] through miette, [`render_json`] as a
//! documented JSON shape for CI and editors (its JSON Schema is `docs/diagnostics.schema.json`),
//! [`render_sarif`] as a SARIF 2.1.0 log for GitHub code scanning ([`sarif`]), and
//! [`render_github`] as GitHub Actions workflow commands, which become annotations ([`github`]).
//!
//! Modelled on Gleam's `compiler-core/src/diagnostic.rs` (one renderer-free diagnostic) and
//! starlark-rust's `codemap.rs` (a small `Copy` span into a file table).
//!
//! Every code is described in one place, the [`catalog`] (what it means, why it matters, a
//! failing and a fixed example), which `orch explain` prints and `docs/diagnostics.md` is
//! generated from. Warnings are *lints*: [`apply_levels`] re-levels them after checking, from
//! the command line's [`LintLevels`] and the `// orch: allow(...)` comments in the source.

pub mod catalog;
pub mod code;
pub mod github;
pub mod levels;
pub mod sarif;
pub mod suggest;

pub use code::Code;
pub use github::render_github;
pub use levels::{Level, LevelError, LintLevels, apply_levels};
pub use sarif::render_sarif;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::common::plural;

/// Index of a source file in a [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FileId(pub u32);

/// A byte range `start..end` in one source file. Small and `Copy`; every AST and plan node has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    /// The file the range is in.
    pub file: FileId,
    /// First byte (inclusive).
    pub start: u32,
    /// Last byte (exclusive).
    pub end: u32,
}

impl Span {
    /// A span from byte offsets.
    pub fn new(file: FileId, start: usize, end: usize) -> Self {
        Span {
            file,
            start: start as u32,
            end: end as u32,
        }
    }
    /// The smallest span covering both (which must be in the same file).
    pub fn to(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
    /// Whether `other` lies within this span (in the same file).
    pub fn contains(self, other: Span) -> bool {
        self.file == other.file && self.start <= other.start && other.end <= self.end
    }
    /// Length in bytes.
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }
    /// Whether the span is empty.
    pub fn is_empty(self) -> bool {
        self.end == self.start
    }
}

/// One loaded source file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The name shown to users: a path relative to the working directory, or `std/models.orch`.
    pub name: String,
    /// The canonical path on disk; `None` for embedded stdlib files and in-memory sources.
    pub path: Option<PathBuf>,
    /// The text.
    pub text: Arc<str>,
}

/// The table of every source file of a compilation; [`FileId`]s index it.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
    /// Byte offset of the start of every line of each file, for locating offsets in
    /// O(log lines) rather than by scanning from the start (thousands of diagnostics in a
    /// large script would otherwise take seconds to render).
    line_starts: Vec<Arc<Vec<usize>>>,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a file and returns its id.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        path: Option<PathBuf>,
        text: impl Into<Arc<str>>,
    ) -> FileId {
        let text: Arc<str> = text.into();
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        self.line_starts.push(Arc::new(starts));
        self.files.push(SourceFile {
            name: name.into(),
            path,
            text,
        });
        FileId((self.files.len() - 1) as u32)
    }
    /// The file with this id.
    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }
    /// The map as snippets show it: every file with its secrets and key-shaped text masked in
    /// place ([`crate::redact::mask`]), so that a report on a literal key (E0601) does not
    /// print it into a terminal or a CI log, while every offset, line and label stays where it
    /// was. Borrowed when there is nothing to mask.
    pub fn masked(&self) -> std::borrow::Cow<'_, SourceMap> {
        let masked: Vec<String> = self
            .files
            .iter()
            .map(|f| crate::redact::mask(&f.text))
            .collect();
        if self.files.iter().zip(&masked).all(|(f, m)| *f.text == **m) {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut map = self.clone();
        for (file, text) in map.files.iter_mut().zip(masked) {
            file.text = text.into();
        }
        std::borrow::Cow::Owned(map)
    }
    /// All files, in load order.
    pub fn files(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (FileId(i as u32), f))
    }
    /// The source text a span covers.
    pub fn snippet(&self, span: Span) -> &str {
        let text = &self.get(span.file).text;
        text.get(span.start as usize..span.end as usize)
            .unwrap_or("")
    }
    /// 1-based line and column (in characters, i.e. Unicode scalar values) of a byte offset.
    pub fn line_col(&self, file: FileId, offset: u32) -> (usize, usize) {
        let (line, before) = self.line_prefix(file, offset);
        (line, before.chars().count() + 1)
    }
    /// 1-based line and column in UTF-16 code units of a byte offset: the unit of SARIF's
    /// `columnKind: "utf16CodeUnits"` (SARIF 2.1.0 §3.14.17) and of editors' positions.
    pub fn line_col_utf16(&self, file: FileId, offset: u32) -> (usize, usize) {
        let (line, before) = self.line_prefix(file, offset);
        (line, before.encode_utf16().count() + 1)
    }
    /// The 1-based line of a byte offset and the text of that line before it. An offset past
    /// the end is taken as the end, and one inside a character as that character's start.
    fn line_prefix(&self, file: FileId, offset: u32) -> (usize, &str) {
        let text = &self.get(file).text;
        let mut offset = (offset as usize).min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let starts = &self.line_starts[file.0 as usize];
        // The last line start at or before `offset` (line 1 starts at 0).
        let line = starts.partition_point(|&s| s <= offset);
        (line, &text[starts[line - 1]..offset])
    }
}

impl SourceFile {
    /// Whether it is a file of the standard library embedded in the binary (`std/...`), which
    /// has no path on disk.
    pub fn is_stdlib(&self) -> bool {
        self.path.is_none() && self.name.starts_with("std/")
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational: printed, never fails a check.
    Note,
    /// Does not fail `orch check`; a lint, so `--deny` can make it an [`Severity::Error`]
    /// and `--allow` or an `// orch: allow(...)` comment can silence it.
    Warning,
    /// Fails `orch check`; `orch plan` and `orch run` refuse to go on.
    Error,
}

/// A labelled span.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What is there (may be empty for the primary label when the message says it all).
    pub message: String,
}

/// One finding of the compiler. Build with [`Diagnostic::new`] and the `with_*` methods. The
/// wording of each code has one place, the error type of the stage that reports it, the only
/// code that calls [`Diagnostic::new`] for it: `syntax::error` (`E0001`), `resolve::error`
/// (`E0100`–`E0104`), `check::error` (the checker's codes, `E0701` included), `plan::budget`
/// (`W0803`), `plan::window` (`W0804`), [`levels`] (`W0901`) and `fmt` (`E1001`).
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// Stable code, e.g. `E0201`; every code is described in [`catalog`].
    pub code: Code,
    /// Severity.
    pub severity: Severity,
    /// One-line message naming the culprit.
    pub message: String,
    /// The place the message is about.
    pub primary: Label,
    /// Other places that explain it (an earlier definition, each edge of a cycle, the include
    /// that brought a file in); they may be in other files.
    pub secondary: Vec<Label>,
    /// How to fix it, when that is known.
    pub help: Option<String>,
    /// Text that fixes it when put in place of the primary span, when that is known: the
    /// name a "did you mean" suggests. Editors offer it as a quick fix (`orch lsp`).
    pub replacement: Option<String>,
}

impl Diagnostic {
    /// A diagnostic of `code` at `span`, with the code's default severity (an error, or a
    /// warning for a lint; [`apply_levels`] may change a lint's later).
    pub fn new(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: code.default_severity(),
            message: message.into(),
            primary: Label {
                span,
                message: String::new(),
            },
            secondary: Vec::new(),
            help: None,
            replacement: None,
        }
    }
    /// Sets the primary label's text.
    pub fn with_label(mut self, message: impl Into<String>) -> Self {
        self.primary.message = message.into();
        self
    }
    /// Adds a secondary label.
    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Self {
        self.secondary.push(Label {
            span,
            message: message.into(),
        });
        self
    }
    /// Sets the help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    /// Sets the text that replaces the primary span to fix it (a "did you mean" name).
    pub fn with_replacement(mut self, text: impl Into<String>) -> Self {
        self.replacement = Some(text.into());
        self
    }
    /// [`Diagnostic::with_replacement`] when there is a suggestion.
    pub fn with_replacement_of(mut self, text: Option<impl Into<String>>) -> Self {
        self.replacement = text.map(Into::into);
        self
    }
}

/// The diagnostics of a compilation, in the order found.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds one.
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }
    /// Whether any is an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }
    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
    /// Number of warnings.
    pub fn warning_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }
    /// All, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// Number of diagnostics.
    pub fn len(&self) -> usize {
        self.items.len()
    }
    /// Sorts by file, then position, then code, and removes exact duplicates, so output is stable.
    pub fn sort(&mut self) {
        self.items.sort_by(|a, b| {
            (a.primary.span.file, a.primary.span.start, a.code).cmp(&(
                b.primary.span.file,
                b.primary.span.start,
                b.code,
            ))
        });
        self.items.dedup();
    }
    /// All, mutably (to re-level them).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Diagnostic> {
        self.items.iter_mut()
    }
    /// Keeps only the diagnostics for which `keep` is true.
    pub fn retain(&mut self, keep: impl FnMut(&Diagnostic) -> bool) {
        self.items.retain(keep);
    }
    /// Consumes the list.
    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.items
    }
}

impl Extend<Diagnostic> for Diagnostics {
    fn extend<T: IntoIterator<Item = Diagnostic>>(&mut self, iter: T) {
        self.items.extend(iter);
    }
}

// ------------------------------------------------------------------ rendering: human (miette)

/// A diagnostic adapted to miette: labels in the primary's file are shown inline; labels in
/// other files become `related` diagnostics so each is shown with its own source.
#[derive(Debug)]
struct MietteDiag {
    message: String,
    code: String,
    severity: miette::Severity,
    help: Option<String>,
    source: Snippets,
    labels: Vec<miette::LabeledSpan>,
    related: Vec<MietteDiag>,
}

/// A file as miette reads it for snippets, with the start of each of its lines (as miette
/// counts them: after `\n`, `\r\n` or a lone `\r`). miette's own `SourceCode` for text scans
/// from the start of the file for every label, which makes thousands of diagnostics on a
/// large script take seconds; this one finds a snippet's lines by binary search in the line
/// index (a file with a `\r` has miette scan from the snippet's first line), with the same
/// result (a test compares the two on every span of a few texts).
#[derive(Debug, Clone)]
struct Snippets {
    name: String,
    text: Arc<str>,
    line_starts: Arc<Vec<usize>>,
    /// Whether the text has a `\r`: then snippets are read by miette's own scan.
    has_cr: bool,
    /// For the text [`elide`] makes of a report's snippets: where each run of its lines starts
    /// (its index among the text's lines) and that line's number in the file (both 0-based).
    /// Empty for a whole file.
    runs: Arc<[(usize, usize)]>,
    /// Whether [`elide`] may cut the text's lines: no `\r` and no [`ELIDED`] in it.
    elidable: bool,
}

impl Snippets {
    fn new(file: &SourceFile) -> Self {
        let bytes = file.text.as_bytes();
        let has_cr = bytes.contains(&b'\r');
        let starts = if has_cr {
            std::iter::once(0)
                .chain(bytes.iter().enumerate().filter_map(|(i, &b)| {
                    let ends_line = b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
                    ends_line.then_some(i + 1)
                }))
                .collect()
        } else {
            std::iter::once(0)
                .chain(file.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        };
        Snippets {
            name: file.name.clone(),
            text: file.text.clone(),
            line_starts: Arc::new(starts),
            has_cr,
            runs: Arc::new([]),
            elidable: !has_cr && !file.text.contains(ELIDED),
        }
    }

    /// What miette's scan of the text (`context_info` in its `source_impls.rs`) makes of a span
    /// with `before` and `after` context lines, found in the line index instead: the byte range
    /// of the snippet, its first line and column (0-based) and the number of line breaks
    /// before its end. `None` where that scan's rules are not reproduced here: a text with a
    /// `\r`, a span ending past the text, or no context before but some after (miette asks
    /// for the same number on both sides, or none).
    fn context(
        &self,
        offset: usize,
        len: usize,
        before: usize,
        after: usize,
    ) -> Option<(std::ops::Range<usize>, usize, usize, usize)> {
        let n = self.text.len();
        // The last byte of the span (the byte before it when it is empty).
        let last = (offset + len).saturating_sub(1);
        if self.has_cr || last >= n || (before == 0 && after > 0) {
            return None;
        }
        let starts = &self.line_starts;
        // Line breaks before a byte: the line starts after 0 at or before it.
        let breaks_before = |at: usize| starts.partition_point(|&s| s <= at) - 1;
        let line = breaks_before(offset);
        let first_line = line.saturating_sub(before);
        let (start, column) = if before == 0 {
            (offset, offset - starts[line])
        } else {
            (starts[first_line], 0)
        };
        // The snippet ends after the span's last byte, or after the `after + 1`-th line break
        // past it (the first one ends the span's own line), or at the end of the text.
        let end = if after == 0 {
            last + 1
        } else {
            let past = starts.partition_point(|&s| s <= last + 1);
            starts.get(past + after).copied().unwrap_or(n)
        };
        Some((start..end, first_line, column, breaks_before(end)))
    }
}

impl miette::SourceCode for Snippets {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        if let Some((range, line, column, line_count)) = self.context(
            span.offset(),
            span.len(),
            context_lines_before,
            context_lines_after,
        ) {
            // In an elided text, a snippet lies in one run: its lines are numbered from there.
            let shift = match self.runs.partition_point(|&(first, _)| first <= line) {
                0 => 0,
                i => self.runs[i - 1].1 - self.runs[i - 1].0,
            };
            let at = miette::SourceSpan::new(range.start.into(), range.len());
            return Ok(Box::new(miette::MietteSpanContents::new_named(
                self.name.clone(),
                &self.text.as_bytes()[range],
                at,
                line + shift,
                column,
                line_count + shift,
            )));
        }
        if !self.runs.is_empty() {
            // Not made by `elide` (which checks its labels' ends).
            return Err(miette::MietteError::OutOfBounds);
        }
        // The line of the span's start (the line a line break ends counts it), then back by
        // the context lines miette shows before it.
        let line = self
            .line_starts
            .partition_point(|&s| s <= span.offset())
            .saturating_sub(1);
        let first = line.saturating_sub(context_lines_before);
        let base = self.line_starts[first];
        let shifted =
            miette::SourceSpan::new(span.offset().saturating_sub(base).into(), span.len());
        let inner =
            self.text[base..].read_span(&shifted, context_lines_before, context_lines_after)?;
        let at = inner.span();
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            miette::SourceSpan::new((at.offset() + base).into(), at.len()),
            inner.line() + first,
            inner.column(),
            inner.line_count() + first,
        )))
    }
}

impl std::fmt::Display for MietteDiag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MietteDiag {}

impl miette::Diagnostic for MietteDiag {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        if self.code.is_empty() {
            None
        } else {
            Some(Box::new(&self.code))
        }
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(
            self.related.iter().map(|d| d as &dyn miette::Diagnostic),
        ))
    }
}

fn labeled(span: Span, message: &str, primary: bool) -> miette::LabeledSpan {
    let label = if message.is_empty() {
        None
    } else {
        Some(message.to_string())
    };
    let range = (span.start as usize, span.len());
    if primary {
        miette::LabeledSpan::new_primary_with_span(label, range)
    } else {
        miette::LabeledSpan::new_with_span(label, range)
    }
}

/// The furthest column (in characters) a label may start or end at to be drawn under its
/// line. miette pads to a label's column with a format width, which panics past 65,535; a tab
/// or a wide character takes up to 4 columns, so a quarter of that is always safe.
const MAX_LABEL_COLUMN: usize = u16::MAX as usize / 4;

/// Whether a label can be drawn under its source line (see [`MAX_LABEL_COLUMN`]). Finds the
/// line's start in the line index, so that it costs nothing on files of ordinary lines.
fn drawable(span: Span, sources: &SourceMap) -> bool {
    [span.start, span.end].iter().all(|&at| {
        let (_, before) = sources.line_prefix(span.file, at);
        // A byte count bounds the character count: only long lines need counting.
        before.len() <= MAX_LABEL_COLUMN || before.chars().count() <= MAX_LABEL_COLUMN
    })
}

/// The drawable secondary labels of `d` outside its primary file, grouped by file in order of
/// first appearance: one `related` report per file, whose first label is its primary one
/// (miette heads the report with that label's position).
fn related_by_file(d: &Diagnostic, sources: &SourceMap, snippets: &[Snippets]) -> Vec<MietteDiag> {
    let mut groups: Vec<(FileId, Vec<miette::LabeledSpan>)> = Vec::new();
    for l in d
        .secondary
        .iter()
        .filter(|l| l.span.file != d.primary.span.file && drawable(l.span, sources))
    {
        match groups.iter_mut().find(|(f, _)| *f == l.span.file) {
            Some((_, labels)) => labels.push(labeled(l.span, &l.message, false)),
            None => groups.push((l.span.file, vec![labeled(l.span, &l.message, true)])),
        }
    }
    groups
        .into_iter()
        .map(|(id, labels)| {
            let other = sources.get(id);
            MietteDiag {
                message: format!("in {}", other.name),
                code: String::new(),
                severity: miette::Severity::Advice,
                help: None,
                source: snippets[id.0 as usize].clone(),
                labels,
                related: Vec::new(),
            }
        })
        .collect()
}

fn to_miette(d: &Diagnostic, sources: &SourceMap, snippets: &[Snippets]) -> MietteDiag {
    let file = sources.get(d.primary.span.file);
    if !drawable(d.primary.span, sources) {
        // Too far into a long line to show: the location goes in the message instead.
        let (line, column) = sources.line_col(d.primary.span.file, d.primary.span.start);
        return MietteDiag {
            message: format!("{} (at {}:{line}:{column})", d.message, file.name),
            code: d.code.to_string(),
            severity: miette_severity(d.severity),
            help: d.help.clone(),
            source: snippets[d.primary.span.file.0 as usize].clone(),
            labels: Vec::new(),
            related: Vec::new(),
        };
    }
    let mut labels = vec![labeled(d.primary.span, &d.primary.message, true)];
    for l in &d.secondary {
        if l.span.file == d.primary.span.file && drawable(l.span, sources) {
            labels.push(labeled(l.span, &l.message, false));
        }
    }
    let related = related_by_file(d, sources, snippets);
    MietteDiag {
        message: d.message.clone(),
        code: d.code.to_string(),
        severity: miette_severity(d.severity),
        help: d.help.clone(),
        source: snippets[d.primary.span.file.0 as usize].clone(),
        labels,
        related,
    }
}

/// What stands for an elided line in the text [`elide`] gives miette: `\u{1}N\u{1}`, `N` the
/// line's index among the elided ones.
const ELIDED: char = '\u{1}';

/// The shortest line [`elide`] replaces by a marker (a marker takes 3 to 7 bytes).
const ELIDE_MIN: usize = 12;

/// A report's source and labels with its plain lines cut out: what [`elide`] makes.
struct Elided<'s> {
    source: Snippets,
    labels: Vec<miette::LabeledSpan>,
    /// The elided lines' text (without line break), in marker order.
    lines: Vec<&'s str>,
}

/// Cuts miette's work on a report whose snippets span many lines (a block of a hundred steps
/// shown from its header to a step inside it): miette draws every line of a snippet char by
/// char (width, tabs, styles), though a line without a label is only ` N │ text`. This gives
/// it instead the window of lines from the one before the first label to the one after the
/// last, where each line without a label's start or end is a short marker ([`ELIDED`]) and the
/// labels are moved to match; [`splice`] then puts the lines' text back in place of their
/// markers. Lines keep their numbers and the labelled lines their text, so miette's layout
/// (which lines a snippet shows, gutters, underlines, the `[file:line:column]` header) is
/// the same; a line with a tab is kept (miette expands tabs by column). `None` when the
/// report is left whole: related reports, no label, a file with a `\r` or a marker
/// character, a marker in the report's own text, or nothing to cut.
fn elide<'s>(m: &MietteDiag, file: &'s Snippets) -> Option<Elided<'s>> {
    if !file.elidable || m.labels.is_empty() || !m.related.is_empty() {
        return None;
    }
    let marked = |t: &str| t.contains(ELIDED);
    if marked(&m.message)
        || m.help.as_deref().is_some_and(marked)
        || m.labels.iter().any(|l| l.label().is_some_and(marked))
    {
        return None;
    }
    let (text, starts) = (&*file.text, &*file.line_starts);
    let n = text.len();
    let line_of = |at: usize| starts.partition_point(|&s| s <= at) - 1;
    // The lines of the labels' ends, kept whole.
    let mut kept = Vec::with_capacity(m.labels.len() * 3);
    for l in &m.labels {
        let end = l.offset() + l.len();
        if end > n {
            return None;
        }
        kept.extend([
            line_of(l.offset()),
            line_of(end.saturating_sub(1)),
            line_of(end),
        ]);
    }
    kept.sort_unstable();
    kept.dedup();
    // The snippets miette will show, found as it finds them (`render_snippets`): labels in
    // order of offset, each with a line of context on each side, joined to the snippet before
    // when that one's line number plus its `line_count` reaches this one's line. Each becomes
    // a run of lines of the window; the window's snippets are then the same.
    let mut order: Vec<(usize, usize)> = m.labels.iter().map(|l| (l.offset(), l.len())).collect();
    order.sort_unstable();
    let mut snippets: Vec<(usize, usize, std::ops::Range<usize>, usize, usize)> = Vec::new();
    for (offset, len) in order {
        let (range, line, _, count) = file.context(offset, len, 1, 1)?;
        if let Some(left) = snippets.last_mut()
            && left.3 + left.4 >= line
        {
            let end = left.1.max(offset + len);
            let (range, line, _, count) = file.context(left.0, end - left.0, 1, 1)?;
            *left = (left.0, end, range, line, count);
            continue;
        }
        snippets.push((offset, offset + len, range, line, count));
    }
    let mut runs: Vec<(usize, usize)> = Vec::with_capacity(snippets.len());
    for (_, _, range, _, _) in &snippets {
        let (from, to) = (line_of(range.start), line_of(range.end.saturating_sub(1)));
        match runs.last_mut() {
            Some((_, end)) if from <= *end => *end = (*end).max(to),
            _ => runs.push((from, to)),
        }
    }
    let mut window = String::new();
    let mut window_starts = Vec::new();
    // Each run's first line's index in the window and its number in the file.
    let mut run_lines = Vec::with_capacity(runs.len());
    let mut lines = Vec::new();
    for &(from, to) in &runs {
        run_lines.push((window_starts.len(), from));
        for l in from..=to {
            window_starts.push(window.len());
            let whole = &text[starts[l]..starts.get(l + 1).copied().unwrap_or(n)];
            let body = whole.strip_suffix('\n').unwrap_or(whole);
            if body.len() < ELIDE_MIN || body.contains('\t') || kept.binary_search(&l).is_ok() {
                window.push_str(whole);
            } else {
                let _ = write!(window, "{ELIDED}{}{ELIDED}", lines.len());
                lines.push(body);
                if whole.len() > body.len() {
                    window.push('\n');
                }
            }
        }
    }
    if lines.is_empty() {
        return None;
    }
    if window.ends_with('\n') {
        window_starts.push(window.len());
    }
    // A label's ends are on kept lines, whose text is whole: at the same column of their line.
    let moved = |at: usize| {
        let l = line_of(at);
        let run = runs.partition_point(|&(from, _)| from <= l) - 1;
        window_starts[run_lines[run].0 + (l - runs[run].0)] + (at - starts[l])
    };
    let labels = m
        .labels
        .iter()
        .map(|l| {
            let (start, end) = (moved(l.offset()), moved(l.offset() + l.len()));
            let label = l.label().map(str::to_string);
            if l.primary() {
                miette::LabeledSpan::new_primary_with_span(label, (start, end - start))
            } else {
                miette::LabeledSpan::new_with_span(label, (start, end - start))
            }
        })
        .collect();
    Some(Elided {
        source: Snippets {
            name: file.name.clone(),
            text: window.into(),
            line_starts: Arc::new(window_starts),
            has_cr: false,
            runs: run_lines.into(),
            elidable: false,
        },
        labels,
        lines,
    })
}

/// Appends `rendered` (a report of an [`elide`]d source) to `out` with each marker replaced by
/// its line's text. Whether every marker was whole and known (else `out` is left as it was).
fn splice(rendered: &str, lines: &[&str], out: &mut String) -> bool {
    let mark = out.len();
    let mut parts = rendered.split(ELIDED);
    out.push_str(parts.next().unwrap_or_default());
    while let Some(index) = parts.next() {
        let line = index.parse::<usize>().ok().and_then(|i| lines.get(i));
        match (line, parts.next()) {
            (Some(line), Some(rest)) => {
                out.push_str(line);
                out.push_str(rest);
            }
            _ => {
                out.truncate(mark);
                return false;
            }
        }
    }
    true
}

fn miette_severity(s: Severity) -> miette::Severity {
    match s {
        Severity::Error => miette::Severity::Error,
        Severity::Warning => miette::Severity::Warning,
        Severity::Note => miette::Severity::Advice,
    }
}

/// Options for [`render_human`].
#[derive(Debug, Clone, Copy)]
pub struct HumanStyle {
    /// ANSI colours (only on a terminal and without `NO_COLOR`; the CLI decides).
    pub color: bool,
    /// Unicode box drawing (off gives plain ASCII, used by snapshot tests).
    pub unicode: bool,
    /// Terminal width in columns.
    pub width: usize,
}

impl Default for HumanStyle {
    fn default() -> Self {
        HumanStyle {
            color: false,
            unicode: true,
            width: 100,
        }
    }
}

/// From how many diagnostics [`render_human`] renders on several threads: below it, starting
/// threads costs more than it saves.
const PARALLEL_RENDER_MIN: usize = 256;

/// Renders diagnostics as rustc-style reports with source snippets, followed by a summary line.
/// Reports are independent: from [`PARALLEL_RENDER_MIN`] diagnostics on, consecutive runs of
/// them are rendered on one thread per available core (at most 8) and joined in order, so the
/// text is the same as on one thread.
pub fn render_human(diags: &Diagnostics, sources: &SourceMap, style: HumanStyle) -> String {
    if diags.is_empty() {
        // Nothing to draw, and no summary line: spare masking and indexing the sources.
        return String::new();
    }
    let theme = match (style.color, style.unicode) {
        (true, true) => miette::GraphicalTheme::unicode(),
        (true, false) => miette::GraphicalTheme::ascii(),
        (false, true) => miette::GraphicalTheme::unicode_nocolor(),
        (false, false) => miette::GraphicalTheme::none(),
    };
    let sources = &*sources.masked();
    let snippets: Vec<Snippets> = sources.files().map(|(_, f)| Snippets::new(f)).collect();
    let render =
        |run: &[&Diagnostic]| render_run(run, sources, &snippets, &theme, style.width, true);
    let all: Vec<&Diagnostic> = diags.iter().collect();
    let threads = if all.len() < PARALLEL_RENDER_MIN {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    };
    let mut out = if threads <= 1 {
        render(&all)
    } else {
        let runs = split_by_weight(&all, threads);
        std::thread::scope(|scope| {
            let (last, rest) = runs.split_last().expect("one run at least");
            let handles: Vec<_> = rest.iter().map(|run| scope.spawn(|| render(run))).collect();
            // The last run on this thread, while the others render.
            let last = render(last);
            let parts: Vec<String> = handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .chain(std::iter::once(last))
                .collect();
            let mut out = String::with_capacity(parts.iter().map(String::len).sum::<usize>() + 64);
            for part in &parts {
                out.push_str(part);
            }
            out
        })
    };
    let (e, w) = (diags.error_count(), diags.warning_count());
    if e + w > 0 {
        let _ = writeln!(out, "{}", summary_line(e, w));
    }
    out
}

/// Renders `run`'s reports, each followed by a blank line. With `shortcuts` (always but in the
/// test that compares them with miette's own output), a help's footer is rendered once per
/// text and appended to the reports that end in it, and plain snippet lines are [`elide`]d.
fn render_run(
    run: &[&Diagnostic],
    sources: &SourceMap,
    snippets: &[Snippets],
    theme: &miette::GraphicalTheme,
    width: usize,
    shortcuts: bool,
) -> String {
    let handler = miette::GraphicalReportHandler::new_themed(theme.clone())
        .with_width(width)
        .with_context_lines(1);
    // Each help text's footer, rendered once (wrapping it is a good part of a report's
    // cost, and reports of one code mostly share their help).
    let mut footers: HashMap<&str, Option<String>> = HashMap::new();
    let mut out = String::new();
    // A report of an elided source, before its lines are put back.
    let mut buf = String::new();
    for d in run {
        let mut m = to_miette(d, sources, snippets);
        // The footer is the end of a report without related reports: take the help out and
        // append its footer instead.
        let footer = match &d.help {
            Some(help) if shortcuts && m.related.is_empty() => footers
                .entry(help.as_str())
                .or_insert_with(|| footer_of(&handler, help, &snippets[0]))
                .as_deref(),
            _ => None,
        };
        if footer.is_some() {
            m.help = None;
        }
        let mut rendered = Err(std::fmt::Error);
        let cut = shortcuts
            .then(|| elide(&m, &snippets[d.primary.span.file.0 as usize]))
            .flatten();
        if let Some(cut) = cut {
            let whole = (
                std::mem::replace(&mut m.source, cut.source),
                std::mem::replace(&mut m.labels, cut.labels),
            );
            buf.clear();
            if handler.render_report(&mut buf, &m).is_ok() && splice(&buf, &cut.lines, &mut out) {
                rendered = Ok(());
            } else {
                (m.source, m.labels) = whole;
            }
        }
        if rendered.is_err() {
            rendered = handler.render_report(&mut out, &m);
        }
        if rendered.is_err() {
            // Rendering into a String cannot fail for I/O reasons; fall back to the bare
            // message.
            let _ = writeln!(
                out,
                "{}[{}]: {}",
                severity_word(d.severity),
                d.code,
                d.message
            );
        } else if let Some(footer) = footer {
            out.push_str(footer);
        }
        out.push('\n');
    }
    out
}

/// The footer miette renders for `help` (`  help: ...`, wrapped to the handler's width):
/// what a report of the help alone has more than the same report without it. `None` when that
/// report does not end in the footer (then the help stays in its reports).
fn footer_of(
    handler: &miette::GraphicalReportHandler,
    help: &str,
    source: &Snippets,
) -> Option<String> {
    let alone = |help: Option<String>| {
        let m = MietteDiag {
            message: String::new(),
            code: String::new(),
            severity: miette::Severity::Advice,
            help,
            source: source.clone(),
            labels: Vec::new(),
            related: Vec::new(),
        };
        let mut out = String::new();
        handler.render_report(&mut out, &m).ok().map(|()| out)
    };
    let (with, without) = (alone(Some(help.to_string()))?, alone(None)?);
    with.strip_prefix(without.as_str()).map(str::to_string)
}

/// Splits `all` into at most `n` consecutive runs of about equal rendering work, reckoned as
/// the bytes of source a report shows (from its first to its last label in the primary's
/// file) plus a fixed cost per report.
fn split_by_weight<'d>(all: &'d [&'d Diagnostic], n: usize) -> Vec<&'d [&'d Diagnostic]> {
    let weight = |d: &Diagnostic| {
        let file = d.primary.span.file;
        let (lo, hi) = d
            .secondary
            .iter()
            .filter(|l| l.span.file == file)
            .fold((d.primary.span.start, d.primary.span.end), |(lo, hi), l| {
                (lo.min(l.span.start), hi.max(l.span.end))
            });
        // About three lines of source's worth per report besides its snippet.
        200 + (hi - lo) as u64
    };
    let weights: Vec<u64> = all.iter().map(|d| weight(d)).collect();
    let total: u64 = weights.iter().sum();
    let mut runs = Vec::with_capacity(n);
    let (mut start, mut done) = (0, 0);
    for (i, w) in weights.iter().enumerate() {
        done += w;
        // Cut after the report that brings the work done to the next n-th of the total.
        if runs.len() + 1 < n && done * n as u64 >= total * (runs.len() as u64 + 1) {
            runs.push(&all[start..=i]);
            start = i + 1;
        }
    }
    runs.push(&all[start..]);
    runs
}

/// `2 errors, 1 warning`.
pub fn summary_line(errors: usize, warnings: usize) -> String {
    match (errors, warnings) {
        (0, w) => plural(w as u64, "warning"),
        (e, 0) => plural(e as u64, "error"),
        (e, w) => format!(
            "{}, {}",
            plural(e as u64, "error"),
            plural(w as u64, "warning")
        ),
    }
}

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    }
}

// ------------------------------------------------------------------ rendering: JSON

/// A location in the JSON output: file name, byte range, and 1-based line and column of its
/// start and of its end. Columns count characters (Unicode scalar values); the end is exclusive,
/// like the byte range: `end_column` is the column just after the last character.
#[derive(Debug, Serialize)]
pub struct JsonLocation {
    /// File name as shown to users (`std/models.orch` for the standard library).
    pub file: String,
    /// Byte offset of the start.
    pub start: u32,
    /// Byte offset of the end (exclusive).
    pub end: u32,
    /// 1-based line of the start.
    pub line: usize,
    /// 1-based column (characters) of the start.
    pub column: usize,
    /// 1-based line of the end.
    pub end_line: usize,
    /// 1-based column (characters) of the end (exclusive).
    pub end_column: usize,
}

/// A label in the JSON output.
#[derive(Debug, Serialize)]
pub struct JsonLabel {
    /// Where.
    #[serde(flatten)]
    pub location: JsonLocation,
    /// What is there.
    pub message: String,
}

/// One diagnostic in the JSON output. The shape is stable; fields are only ever added.
/// `docs/diagnostics.schema.json` is its JSON Schema.
#[derive(Debug, Serialize)]
pub struct JsonDiagnostic {
    /// Stable code, e.g. `E0201`.
    pub code: Code,
    /// The code's kebab-case name in the [`catalog`], e.g. `undefined-name`.
    pub name: &'static str,
    /// `error`, `warning` or `note`.
    pub severity: Severity,
    /// The message.
    pub message: String,
    /// The primary location.
    #[serde(flatten)]
    pub location: JsonLocation,
    /// Every label, the primary first.
    pub labels: Vec<JsonLabel>,
    /// How to fix it, or null.
    pub help: Option<String>,
    /// Text that fixes it when put in place of the primary location's byte range
    /// (`start`..`end`), or null: the [`Diagnostic::replacement`] editors offer as a quick fix.
    pub replacement: Option<String>,
}

/// The whole JSON document: `{"diagnostics": [...], "errors": N, "warnings": N}`.
#[derive(Debug, Serialize)]
pub struct JsonReport {
    /// Every diagnostic.
    pub diagnostics: Vec<JsonDiagnostic>,
    /// Number of errors.
    pub errors: usize,
    /// Number of warnings.
    pub warnings: usize,
}

fn json_location(span: Span, sources: &SourceMap) -> JsonLocation {
    let (line, column) = sources.line_col(span.file, span.start);
    let (end_line, end_column) = sources.line_col(span.file, span.end);
    JsonLocation {
        file: sources.get(span.file).name.clone(),
        start: span.start,
        end: span.end,
        line,
        column,
        end_line,
        end_column,
    }
}

/// The catalogue name of a code (`undefined-name`).
pub fn code_name(code: Code) -> &'static str {
    code.name()
}

/// Builds the JSON report (see [`JsonReport`] for the shape).
pub fn to_json(diags: &Diagnostics, sources: &SourceMap) -> JsonReport {
    let diagnostics = diags
        .iter()
        .map(|d| {
            let labels = std::iter::once(&d.primary)
                .chain(d.secondary.iter())
                .map(|l| JsonLabel {
                    location: json_location(l.span, sources),
                    message: l.message.clone(),
                })
                .collect();
            JsonDiagnostic {
                code: d.code,
                name: code_name(d.code),
                severity: d.severity,
                message: d.message.clone(),
                location: json_location(d.primary.span, sources),
                labels,
                help: d.help.clone(),
                replacement: d.replacement.clone(),
            }
        })
        .collect();
    JsonReport {
        diagnostics,
        errors: diags.error_count(),
        warnings: diags.warning_count(),
    }
}

/// Renders the JSON report as pretty-printed JSON.
pub fn render_json(diags: &Diagnostics, sources: &SourceMap) -> String {
    serde_json::to_string_pretty(&to_json(diags, sources))
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_at_odd_offsets_do_not_panic() {
        let mut sources = SourceMap::new();
        let id = sources.add("a.orch", None, "é\n𝄞x");
        // Inside `é`, inside `𝄞`, past the end.
        assert_eq!(sources.line_col(id, 1), (1, 1));
        assert_eq!(sources.line_col(id, 5), (2, 1));
        assert_eq!(sources.line_col_utf16(id, 7), (2, 3));
        assert_eq!(sources.line_col(id, 99), (2, 3));
    }

    /// The snippets `Snippets` reads from its line index are the ones miette's own
    /// `SourceCode` for text reads, for every span of a few texts (empty lines, with and
    /// without a final line break) with the context lines miette asks for (as many before as
    /// after). A text with a `\r` is read by miette's scan from the snippet's first line, as
    /// before the index.
    #[test]
    fn snippets_read_what_miettes_scan_reads() {
        use miette::SourceCode as _;
        let texts = [
            "",
            "a",
            "\n",
            "ab\ncd\n",
            "ab\ncd",
            "x\n\n\ny = é(1)\n  z\n\nlast",
        ];
        for text in texts {
            let file = SourceFile {
                name: "t.orch".into(),
                path: None,
                text: text.into(),
            };
            let snippets = Snippets::new(&file);
            for offset in 0..=text.len() {
                for len in 0..=text.len() - offset {
                    for (before, after) in [(0, 0), (1, 1), (2, 2), (3, 3)] {
                        let span = miette::SourceSpan::new(offset.into(), len);
                        let ours = snippets.read_span(&span, before, after);
                        let theirs = text.read_span(&span, before, after);
                        let what = format!("{text:?} at {offset}+{len}, context {before}/{after}");
                        match (ours, theirs) {
                            (Ok(a), Ok(b)) => {
                                assert_eq!(a.data(), b.data(), "{what}");
                                assert_eq!(a.span(), b.span(), "{what}");
                                assert_eq!(a.line(), b.line(), "{what}");
                                assert_eq!(a.column(), b.column(), "{what}");
                                assert_eq!(a.line_count(), b.line_count(), "{what}");
                                assert_eq!(a.name(), Some("t.orch"), "{what}");
                            }
                            (a, b) => assert_eq!(a.is_ok(), b.is_ok(), "{what}"),
                        }
                    }
                }
            }
        }
    }

    /// `render_run`'s shortcuts (a help's footer rendered once, plain snippet lines elided and
    /// put back) give miette's own output byte for byte: many pseudo-random reports (labels on
    /// one line or across many, empty, at the end of the text, several on a line, labels and
    /// helps of several lines, secondary labels far from the primary) on texts with long,
    /// short, empty, tabbed and wide lines, `\r\n` line ends or a marker character, in every
    /// theme and two widths.
    #[test]
    fn shortcuts_render_what_miette_renders() {
        let seed = std::cell::Cell::new(0x2545_f491_4f6c_dd1d_u64);
        let next = |below: usize| {
            let mut s = seed.get();
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            seed.set(s);
            (s % below.max(1) as u64) as usize
        };
        let words = [
            "step",
            "=",
            "reviewer(\"for the design\")",
            "é",
            "名前",
            "\t",
            "x",
            "",
        ];
        let mut texts = Vec::new();
        for kind in 0..4 {
            let mut text = String::new();
            for _ in 0..300 {
                let line: Vec<&str> = (0..next(9)).map(|_| words[next(words.len())]).collect();
                text.push_str(&line.join(" "));
                text.push_str(if kind == 1 && next(4) == 0 {
                    "\r\n"
                } else {
                    "\n"
                });
            }
            if kind == 2 {
                text.insert(text.len() / 2, ELIDED);
            }
            if kind == 3 {
                text.pop();
            }
            texts.push(text);
        }
        for text in &texts {
            let mut sources = SourceMap::new();
            let id = sources.add("t.orch", None, text.as_str());
            let n = text.len();
            let mut diags = Vec::new();
            for i in 0..150 {
                let span = |long: bool| {
                    let start = next(text.len() + 1);
                    let len = if long { next(2000) } else { next(12) };
                    let mut end = (start + len).min(text.len());
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    let mut start = start.min(end);
                    while !text.is_char_boundary(start) {
                        start -= 1;
                    }
                    Span::new(id, start, end)
                };
                let message = ["", "here", "the block\nasks for it"][next(3)];
                let mut d = Diagnostic::new(Code::DuplicateDefinition, span(i % 5 == 0), "m")
                    .with_label(message);
                for _ in 0..next(4) {
                    let message = ["", "runs on `haiku`", "two\nlines"][next(3)];
                    d = d.with_secondary(span(next(6) == 0), message);
                }
                let help = [
                    None,
                    Some(
                        "to use `sonnet`, write `scout<sonnet>(...)`; to keep `haiku`, remove `sonnet` from the block's options",
                    ),
                    Some("short"),
                    Some("one\ntwo"),
                ][next(4)];
                if let Some(help) = help {
                    d = d.with_help(help);
                }
                if i == 0 {
                    d.primary.span = Span::new(id, n, n);
                }
                diags.push(d);
            }
            let all: Vec<&Diagnostic> = diags.iter().collect();
            let masked = sources.masked();
            let snippets: Vec<Snippets> = masked.files().map(|(_, f)| Snippets::new(f)).collect();
            let elided = all
                .iter()
                .filter(|d| elide(&to_miette(d, &masked, &snippets), &snippets[0]).is_some())
                .count();
            // Texts with `\r` or the marker are never elided; the others mostly are.
            assert_eq!(elided > 100, snippets[0].elidable, "{elided} elided");
            for theme in [
                miette::GraphicalTheme::unicode(),
                miette::GraphicalTheme::ascii(),
                miette::GraphicalTheme::unicode_nocolor(),
                miette::GraphicalTheme::none(),
            ] {
                for width in [100, 40] {
                    let fast = render_run(&all, &masked, &snippets, &theme, width, true);
                    let plain = render_run(&all, &masked, &snippets, &theme, width, false);
                    if fast != plain {
                        let at = fast
                            .bytes()
                            .zip(plain.bytes())
                            .position(|(a, b)| a != b)
                            .unwrap_or(fast.len().min(plain.len()));
                        let from = at.saturating_sub(300);
                        let around = |s: &str| {
                            String::from_utf8_lossy(&s.as_bytes()[from..(at + 300).min(s.len())])
                                .into_owned()
                        };
                        panic!(
                            "differ at byte {at}:\n--- shortcuts\n{}\n--- miette\n{}",
                            around(&fast),
                            around(&plain)
                        );
                    }
                }
            }
        }
    }

    /// From `PARALLEL_RENDER_MIN` diagnostics on, reports are rendered on several threads:
    /// the text is each report rendered alone, in order, then the summary.
    #[test]
    fn many_reports_render_as_one_at_a_time_in_order() {
        let mut sources = SourceMap::new();
        let n = PARALLEL_RENDER_MIN + 45;
        let text: String = (0..n).map(|i| format!("s{i} = a(\"{i}\")\n")).collect();
        let id = sources.add("many.orch", None, text.as_str());
        let mut all = Diagnostics::new();
        let mut one_by_one = String::new();
        let mut at = 0;
        for (i, line) in text.lines().enumerate() {
            let d = Diagnostic::new(
                Code::DuplicateDefinition,
                Span::new(id, at, at + line.find(' ').unwrap_or(1)),
                format!("report {i}"),
            )
            .with_secondary(
                Span::new(id, at + line.len() - 2, at + line.len() - 1),
                "here",
            );
            let mut alone = Diagnostics::new();
            alone.push(d.clone());
            let rendered = render_human(&alone, &sources, HumanStyle::default());
            // Without its summary line.
            one_by_one.push_str(&rendered[..rendered.len() - "1 error\n".len()]);
            all.push(d);
            at += line.len() + 1;
        }
        one_by_one.push_str(&format!("{n} errors\n"));
        assert_eq!(
            render_human(&all, &sources, HumanStyle::default()),
            one_by_one
        );
    }

    #[test]
    fn labels_in_another_file_are_one_snippet_per_file() {
        let mut sources = SourceMap::new();
        let main = sources.add("main.orch", None, "include \"lib.orch\"\nx\n");
        let lib = sources.add("lib.orch", None, "a\nb\nc\n");
        let mut diags = Diagnostics::new();
        diags.push(
            Diagnostic::new(
                Code::DuplicateDefinition,
                Span::new(main, 19, 20),
                "`x` is defined three times",
            )
            .with_secondary(Span::new(lib, 0, 1), "first here")
            .with_secondary(Span::new(lib, 4, 5), "again here"),
        );
        let style = HumanStyle {
            unicode: false,
            ..HumanStyle::default()
        };
        let out = render_human(&diags, &sources, style);
        assert_eq!(out.matches("in lib.orch").count(), 1, "{out}");
        assert!(
            out.contains("first here") && out.contains("again here"),
            "{out}"
        );
    }
}
