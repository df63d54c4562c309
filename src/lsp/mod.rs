//! `orch lsp`: a language server over standard input and output (JSON-RPC with
//! `Content-Length` framing, on rust-analyzer's `lsp-server` crate and `lsp-types`).
//!
//! It runs the library's own front end — `resolve`, `check`, the planning stage's lints,
//! `diag::apply_levels` — on the editor's text, so an editor shows what `orch check` says:
//!
//! - diagnostics of each open document (full text sync), with codes, related information
//!   (secondary labels, also in included files), `// orch: allow(...)` comments honoured;
//!   a diagnostic inside an included file is shown at the `include` that brought it in.
//!   The unsaved text of every open document is used, also when another document includes
//!   it. Changes are coalesced: every message waiting is handled before checking again;
//! - hover ([`hover`]), go to definition, find references and rename ([`navigate`]; these
//!   two also in the files that include the declaring one: the other open documents and the
//!   `.orch` files of the workspace folders, at most [`MAX_WORKSPACE_FILES`]),
//!   completion ([`completion`]), quick fixes ([`actions`]), formatting (`orch fmt`'s
//!   [`crate::fmt::format_source`]), document symbols ([`symbols`]) and semantic tokens
//!   ([`tokens`]).
//!
//! The standard library's files, embedded in the binary, are written read-only to
//! `orch-std-<hash>/std/` in the system's temporary directory, and definitions and references
//! in them point there ([`analysis::write_stdlib`]); a rename that would edit them is refused.
//!
//! A leaf module: only `cli` (the `orch lsp` subcommand) uses it.

mod actions;
mod analysis;
mod completion;
mod diagnostics;
mod documents;
mod hover;
mod navigate;
mod symbols;
mod tokens;

use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidChangeWatchedFiles, DidCloseTextDocument, DidOpenTextDocument,
    DidSaveTextDocument, Notification as _, PublishDiagnostics,
};
use lsp_types::request::{
    CodeActionRequest, Completion, DocumentSymbolRequest, Formatting, GotoDefinition, HoverRequest,
    References, Rename, Request as _, SemanticTokensFullRequest,
};
use lsp_types::{
    CodeActionProviderCapability, CompletionOptions, HoverContents, HoverProviderCapability,
    MarkupContent, MarkupKind, OneOf, PublishDiagnosticsParams, SemanticTokensFullOptions,
    SemanticTokensOptions, SemanticTokensServerCapabilities, ServerCapabilities,
    TextDocumentSyncCapability, TextDocumentSyncKind, TextEdit, Uri,
};
use serde_json::Value;

use analysis::Analysis;
use documents::{Documents, LineIndex, uri_to_path};

/// An error that ends the server: the connection failed.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// What the server can do, as announced in its `initialize` result.
pub fn capabilities() -> ServerCapabilities {
    ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::FULL)),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        rename_provider: Some(OneOf::Left(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(
                ["{", ".", "<", ":", "\"", "/", "(", "="]
                    .map(String::from)
                    .to_vec(),
            ),
            ..Default::default()
        }),
        code_action_provider: Some(CodeActionProviderCapability::Simple(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        semantic_tokens_provider: Some(SemanticTokensServerCapabilities::SemanticTokensOptions(
            SemanticTokensOptions {
                legend: tokens::legend(),
                full: Some(SemanticTokensFullOptions::Bool(true)),
                range: None,
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// Runs the server on standard input and output until the client sends `exit`.
///
/// # Errors
/// When the connection fails (the client went away without `shutdown`, or sent something
/// that is not JSON-RPC).
pub fn run() -> Result<(), Error> {
    let (connection, io_threads) = Connection::stdio();
    let caps = serde_json::to_value(capabilities())?;
    let init = connection.initialize(caps)?;
    let mut server = Server::new();
    server.roots = workspace_roots(&init);
    server.main_loop(&connection)?;
    // The writer thread ends when the connection's sender is gone.
    drop(connection);
    io_threads.join()?;
    Ok(())
}

/// The server's state.
struct Server {
    docs: Documents,
    /// Each open document's latest analysis.
    analyses: HashMap<String, Rc<Analysis>>,
    /// Each open document's latest analysis of a text that parsed (for completion while
    /// typing).
    parsed: HashMap<String, Rc<Analysis>>,
    /// Whether a document changed since they were last checked.
    dirty: bool,
    /// Whether every open document is to be checked again, not only those that read a
    /// changed one: a file changed on disk or a document was closed (its includers now read
    /// the disk), which may concern any of them.
    recheck_all: bool,
    /// The documents opened or edited since, checked (and published) before the others.
    changed: Vec<String>,
    /// Documents closed since, whose diagnostics are to be cleared.
    closed: Vec<Uri>,
    /// Where the standard library is served from (`None` when it could not be written: the
    /// definitions in it then have no location).
    std_root: Option<PathBuf>,
    /// The workspace folders the client named, whose `.orch` files references and rename
    /// search (see [`Server::peers`]).
    roots: Vec<PathBuf>,
}

/// The most `.orch` files of the workspace folders that references and rename analyse, so a
/// huge folder costs a bounded time.
pub const MAX_WORKSPACE_FILES: usize = 500;

/// The workspace folders of an `initialize` request: `workspaceFolders`, else the older
/// `rootUri`, else `rootPath` (LSP 3.17, "Initialize Request"). Only `file:` folders.
fn workspace_roots(init: &Value) -> Vec<PathBuf> {
    let folders: Vec<PathBuf> = init["workspaceFolders"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| uri_to_path(f["uri"].as_str()?))
        .collect();
    if !folders.is_empty() {
        return folders;
    }
    init["rootUri"]
        .as_str()
        .and_then(uri_to_path)
        .or_else(|| init["rootPath"].as_str().map(PathBuf::from))
        .into_iter()
        .collect()
}

impl Server {
    fn new() -> Self {
        Server {
            docs: Documents::default(),
            analyses: HashMap::new(),
            parsed: HashMap::new(),
            dirty: false,
            recheck_all: false,
            changed: Vec::new(),
            closed: Vec::new(),
            std_root: analysis::write_stdlib().ok(),
            roots: Vec::new(),
        }
    }

    /// What the resolver reads: the open documents' texts before the disk.
    fn resolve_options(&self) -> crate::resolve::ResolveOptions {
        crate::resolve::ResolveOptions {
            overlay: self.docs.overlay(),
            ..Default::default()
        }
    }

    /// The URI a standard library file is served at.
    fn std_uri(&self) -> impl Fn(&str) -> String + use<> {
        let std_root = self.std_root.clone();
        move |name: &str| match &std_root {
            Some(root) => documents::path_to_uri(&root.join(name))
                .as_str()
                .to_string(),
            None => format!("orch-std:///{name}"),
        }
    }

    /// The analyses that may include the file a name of `here` is declared in: every other
    /// open document's, then those of the workspace folders' `.orch` files that are not open
    /// (walked as `ignore` walks them, honouring `.gitignore`; at most
    /// [`MAX_WORKSPACE_FILES`]), each compiled now with the open documents' texts.
    fn peers(&self, here: &str) -> Vec<Rc<Analysis>> {
        let mut out: Vec<Rc<Analysis>> = self
            .analyses
            .iter()
            .filter(|(uri, _)| uri.as_str() != here)
            .map(|(_, a)| a.clone())
            .collect();
        let open: std::collections::HashSet<PathBuf> = self
            .docs
            .uris()
            .iter()
            .filter_map(|u| uri_to_path(u)?.canonicalize().ok())
            .collect();
        let opts = self.resolve_options();
        let std_uri = self.std_uri();
        for path in workspace_files(&self.roots) {
            if open.contains(&path) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let uri = documents::path_to_uri(&path);
            out.push(Rc::new(analysis::analyse(
                uri.as_str(),
                &text,
                &opts,
                &std_uri,
            )));
        }
        out
    }

    fn main_loop(&mut self, conn: &Connection) -> Result<(), Error> {
        while let Ok(first) = conn.receiver.recv() {
            // Coalesce: every message already waiting is taken before checking, so a burst of
            // changes is checked once.
            let mut batch = vec![first];
            batch.extend(conn.receiver.try_iter());
            for msg in batch {
                match msg {
                    Message::Notification(n) => {
                        if n.method == "exit" {
                            return Ok(());
                        }
                        self.notification(n);
                    }
                    Message::Request(req) => {
                        if conn.handle_shutdown(&req)? {
                            return Ok(());
                        }
                        self.refresh(conn)?;
                        let resp = self.request(req);
                        conn.sender.send(Message::Response(resp))?;
                    }
                    Message::Response(_) => {}
                }
            }
            self.refresh(conn)?;
        }
        Ok(())
    }

    fn notification(&mut self, n: Notification) {
        match n.method.as_str() {
            DidOpenTextDocument::METHOD => {
                if let Ok(p) =
                    serde_json::from_value::<lsp_types::DidOpenTextDocumentParams>(n.params)
                {
                    let d = p.text_document;
                    self.docs.set(&d.uri, d.text, d.version);
                    self.changed.push(d.uri.as_str().to_string());
                    self.dirty = true;
                }
            }
            DidChangeTextDocument::METHOD => {
                if let Ok(p) =
                    serde_json::from_value::<lsp_types::DidChangeTextDocumentParams>(n.params)
                    // Full sync: the last change holds the whole text.
                    && let Some(change) = p.content_changes.into_iter().next_back()
                {
                    self.docs
                        .set(&p.text_document.uri, change.text, p.text_document.version);
                    self.changed.push(p.text_document.uri.as_str().to_string());
                    self.dirty = true;
                }
            }
            DidCloseTextDocument::METHOD => {
                if let Ok(p) =
                    serde_json::from_value::<lsp_types::DidCloseTextDocumentParams>(n.params)
                {
                    self.docs.remove(&p.text_document.uri);
                    self.analyses.remove(p.text_document.uri.as_str());
                    self.parsed.remove(p.text_document.uri.as_str());
                    self.closed.push(p.text_document.uri);
                    self.dirty = true;
                    self.recheck_all = true;
                }
            }
            // A file saved or changed on disk may be included by an open document.
            DidSaveTextDocument::METHOD | DidChangeWatchedFiles::METHOD => {
                self.dirty = true;
                self.recheck_all = true;
            }
            _ => {}
        }
    }

    /// Checks the open documents again that a change concerns (see `recheck_all`), and
    /// publishes the diagnostics of each: an empty list clears those that were fixed.
    fn refresh(&mut self, conn: &Connection) -> Result<(), Error> {
        for uri in std::mem::take(&mut self.closed) {
            publish(conn, uri, Vec::new(), None)?;
        }
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        let opts = self.resolve_options();
        let std_uri = self.std_uri();
        // The documents just edited first: their diagnostics are the ones awaited.
        let mut uris = self.docs.uris();
        let changed = std::mem::take(&mut self.changed);
        uris.sort_by_key(|u| !changed.contains(u));
        let all = std::mem::take(&mut self.recheck_all);
        let changed_paths: Vec<PathBuf> = changed
            .iter()
            .filter_map(|u| uri_to_path(u)?.canonicalize().ok())
            .collect();
        for uri in uris {
            let Some(doc) = self.docs.get(&uri) else {
                continue;
            };
            // An edit concerns the edited document and those whose last analysis read it
            // (they include it); the rest keep their diagnostics, so typing in one file
            // of a large workspace costs one file's check, not all of them.
            let unaffected = |a: &Analysis| !a.reads_any(&changed, &changed_paths);
            if !all
                && !changed.contains(&uri)
                && self.analyses.get(&uri).is_some_and(|a| unaffected(a))
            {
                continue;
            }
            let version = doc.version;
            let a = Rc::new(analysis::analyse(&uri, &doc.text, &opts, &std_uri));
            if a.parsed() {
                self.parsed.insert(uri.clone(), a.clone());
            }
            let diags = diagnostics::to_lsp(&a);
            self.analyses.insert(uri.clone(), a);
            if let Ok(u) = uri.parse::<Uri>() {
                publish(conn, u, diags, Some(version))?;
            }
        }
        Ok(())
    }

    fn request(&mut self, req: Request) -> Response {
        let id = req.id.clone();
        match self.answer(req) {
            Ok(v) => Response::new_ok(id, v),
            Err((code, msg)) => Response::new_err(id, code as i32, msg),
        }
    }

    /// The document and analysis a request is about, and the byte offset of its position.
    fn at(
        &self,
        uri: &Uri,
        pos: lsp_types::Position,
    ) -> Result<(Rc<Analysis>, usize), (ErrorCode, String)> {
        let a = self
            .analyses
            .get(uri.as_str())
            .cloned()
            .ok_or_else(|| not_open(uri))?;
        let text = a.text(a.set.entry);
        let offset = LineIndex::new(text).offset(text, pos);
        Ok((a, offset))
    }

    fn answer(&mut self, req: Request) -> Result<Value, (ErrorCode, String)> {
        let method = req.method.clone();
        let params = req.params;
        let json = |v: Result<Value, serde_json::Error>| {
            v.map_err(|e| (ErrorCode::InternalError, e.to_string()))
        };
        match method.as_str() {
            HoverRequest::METHOD => {
                let p: lsp_types::HoverParams = parse(params)?;
                let tp = p.text_document_position_params;
                let (a, offset) = self.at(&tp.text_document.uri, tp.position)?;
                let hover = hover::hover(&a, offset).map(|(text, span)| lsp_types::Hover {
                    contents: HoverContents::Markup(MarkupContent {
                        kind: MarkupKind::Markdown,
                        value: text,
                    }),
                    range: Some(diagnostics::Ranges::new(&a).range(span)),
                });
                json(serde_json::to_value(hover))
            }
            GotoDefinition::METHOD => {
                let p: lsp_types::GotoDefinitionParams = parse(params)?;
                let tp = p.text_document_position_params;
                let (a, offset) = self.at(&tp.text_document.uri, tp.position)?;
                json(serde_json::to_value(navigate::definition(&a, offset)))
            }
            References::METHOD => {
                let p: lsp_types::ReferenceParams = parse(params)?;
                let tp = p.text_document_position;
                let (a, offset) = self.at(&tp.text_document.uri, tp.position)?;
                let peers = self.peers(tp.text_document.uri.as_str());
                let refs = navigate::references(&a, &peers, offset, p.context.include_declaration);
                json(serde_json::to_value(refs))
            }
            Rename::METHOD => {
                let p: lsp_types::RenameParams = parse(params)?;
                let tp = p.text_document_position;
                let (a, offset) = self.at(&tp.text_document.uri, tp.position)?;
                let peers = self.peers(tp.text_document.uri.as_str());
                match navigate::rename(&a, &peers, offset, &p.new_name) {
                    Ok(edit) => json(serde_json::to_value(edit)),
                    Err(e) => Err((ErrorCode::InvalidRequest, e.to_string())),
                }
            }
            Completion::METHOD => {
                let p: lsp_types::CompletionParams = parse(params)?;
                let tp = p.text_document_position;
                let uri = tp.text_document.uri;
                let doc = self.docs.get(uri.as_str()).ok_or_else(|| not_open(&uri))?;
                let offset = LineIndex::new(&doc.text).offset(&doc.text, tp.position);
                let dir = uri_to_path(uri.as_str()).and_then(|p| p.parent().map(PathBuf::from));
                let items = completion::complete(
                    self.parsed.get(uri.as_str()).map(|a| &**a),
                    &doc.text,
                    offset,
                    dir.as_deref(),
                );
                json(serde_json::to_value(items))
            }
            CodeActionRequest::METHOD => {
                let p: lsp_types::CodeActionParams = parse(params)?;
                let uri = p.text_document.uri;
                let (a, start) = self.at(&uri, p.range.start)?;
                let (_, end) = self.at(&uri, p.range.end)?;
                json(serde_json::to_value(actions::actions(&a, &uri, start, end)))
            }
            Formatting::METHOD => {
                let p: lsp_types::DocumentFormattingParams = parse(params)?;
                let uri = p.text_document.uri;
                let doc = self.docs.get(uri.as_str()).ok_or_else(|| not_open(&uri))?;
                json(serde_json::to_value(format(&doc.text)?))
            }
            DocumentSymbolRequest::METHOD => {
                let p: lsp_types::DocumentSymbolParams = parse(params)?;
                let (a, _) = self.at(&p.text_document.uri, Default::default())?;
                json(serde_json::to_value(symbols::document_symbols(&a)))
            }
            SemanticTokensFullRequest::METHOD => {
                let p: lsp_types::SemanticTokensParams = parse(params)?;
                let uri = p.text_document.uri;
                let doc = self.docs.get(uri.as_str()).ok_or_else(|| not_open(&uri))?;
                let a = self.analyses.get(uri.as_str()).map(|a| &**a);
                json(serde_json::to_value(tokens::semantic_tokens(&doc.text, a)))
            }
            _ => Err((
                ErrorCode::MethodNotFound,
                format!("orch lsp does not handle `{method}`"),
            )),
        }
    }
}

/// The edits that format a document as `orch fmt` does: one edit replacing the whole text,
/// none when it is formatted already.
fn format(text: &str) -> Result<Vec<TextEdit>, (ErrorCode, String)> {
    let formatted = crate::fmt::format_source(text).map_err(|d| {
        (
            ErrorCode::RequestFailed,
            format!("cannot format: {}", d.message),
        )
    })?;
    if formatted == text {
        return Ok(Vec::new());
    }
    let idx = LineIndex::new(text);
    Ok(vec![TextEdit::new(
        idx.range(text, 0, text.len()),
        formatted,
    )])
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, (ErrorCode, String)> {
    serde_json::from_value(v).map_err(|e| (ErrorCode::InvalidParams, e.to_string()))
}

fn not_open(uri: &Uri) -> (ErrorCode, String) {
    (
        ErrorCode::InvalidParams,
        format!(
            "`{}` is not open: send textDocument/didOpen first",
            uri.as_str()
        ),
    )
}

fn publish(
    conn: &Connection,
    uri: Uri,
    diagnostics: Vec<lsp_types::Diagnostic>,
    version: Option<i32>,
) -> Result<(), Error> {
    let params = PublishDiagnosticsParams {
        uri,
        diagnostics,
        version,
    };
    let n = Notification::new(PublishDiagnostics::METHOD.to_string(), params);
    conn.sender.send(Message::Notification(n))?;
    Ok(())
}

/// The `.orch` files under `roots` (canonical paths, sorted, each once), walked with the
/// `ignore` crate's standard filters (hidden files, `.gitignore`), at most
/// [`MAX_WORKSPACE_FILES`].
fn workspace_files(roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = std::collections::BTreeSet::new();
    for root in roots {
        for entry in ignore::WalkBuilder::new(root).build().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "orch")
                && entry.file_type().is_some_and(|t| t.is_file())
                && let Ok(p) = path.canonicalize()
            {
                files.insert(p);
            }
            if files.len() >= MAX_WORKSPACE_FILES {
                return files.into_iter().collect();
            }
        }
    }
    files.into_iter().collect()
}
