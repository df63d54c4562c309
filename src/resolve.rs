//! Resolve: an entry file and everything it includes → a [`ModuleSet`].
//!
//! `include "path"` is resolved relative to the including file; `include "std/..."` names a
//! file of the standard library, which is `.orch` source embedded in the binary (like jaq's
//! `std.jq`). Includes may not leave the directory of the entry script unless that directory
//! is allowed with `--include-path`. A stack of open files detects include cycles and reports
//! the whole chain; a file included twice on different paths is loaded once. The module set
//! remembers which `include` brought each file in, and [`label_include_chains`] gives every
//! diagnostic inside an included file a label at each include of its chain.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod error;

use error::{
    DuplicateNamespace, IncludeCycle, IncludeNotFound, IncludeOutsideProject, UnreadableScript,
};

use crate::diag::suggest::did_you_mean;
use crate::diag::{Diagnostics, FileId, Label, SourceMap, Span};
use crate::syntax::{self, ast};

/// The standard library: `(name, source)` pairs embedded at build time.
pub const STDLIB: &[(&str, &str)] = &[
    ("std/models.orch", include_str!("../stdlib/models.orch")),
    ("std/patterns.orch", include_str!("../stdlib/patterns.orch")),
];

/// The largest script or included file that is read: 16 MiB. A real script is a few
/// kilobytes; the benchmark's 10,000-step script about a megabyte.
pub const MAX_SOURCE_BYTES: u64 = 16 * 1024 * 1024;

/// The most files in a chain of includes (a file including a file including ...): 64.
/// Loading recurses once per file of the chain.
pub const MAX_INCLUDE_DEPTH: usize = 64;

/// Reads a source file: a regular file (a FIFO, a device or a directory could block or never
/// end) of at most [`MAX_SOURCE_BYTES`], in UTF-8. The type is checked before the file is
/// opened (opening a FIFO blocks until someone writes to it).
///
/// # Errors
/// What `std::fs` reports, or an `InvalidInput` error saying what the file is, or how large.
pub fn read_source(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("it is {}, not a regular file", file_kind(&meta.file_type())),
        ));
    }
    let too_large = || {
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "it is larger than {} MiB, the most a script may be",
                MAX_SOURCE_BYTES / (1024 * 1024)
            ),
        )
    };
    if meta.len() > MAX_SOURCE_BYTES {
        return Err(too_large());
    }
    // It may have grown since: read one byte past the bound at most.
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_SOURCE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SOURCE_BYTES {
        return Err(too_large());
    }
    Ok(text)
}

/// What a file that is not a regular file is, for messages.
fn file_kind(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// How includes are resolved.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    /// Extra directories (besides the entry script's) that includes may read from.
    pub include_paths: Vec<PathBuf>,
    /// Texts to use instead of what is on disk, by canonical path: an editor's unsaved
    /// buffers (`orch lsp`). A file found here is not read; it must still exist on disk to be
    /// found by an include (its path is canonicalised).
    pub overlay: HashMap<PathBuf, std::sync::Arc<str>>,
}

impl ResolveOptions {
    /// The text of `path`: its overlay entry, else the file read with [`read_source`].
    fn read(&self, path: &Path) -> std::io::Result<String> {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        match self.overlay.get(&key) {
            Some(text) => Ok(text.to_string()),
            None => read_source(path),
        }
    }
}

/// One parsed file of a module set.
#[derive(Debug, Clone)]
pub struct LoadedModule {
    /// Its AST.
    pub module: ast::Module,
    /// The `include` item that first brought it in (`None` for the entry file).
    pub included_from: Option<Span>,
    /// `include "..." as ns` that first brought it in: its agents and workflows are named
    /// `ns.name` (`None`: global names).
    pub namespace: Option<String>,
}

/// An entry file with every file it includes, transitively; each file once.
#[derive(Debug, Clone)]
pub struct ModuleSet {
    /// Every loaded source file (also files that failed to parse).
    pub sources: SourceMap,
    /// Parsed modules, the entry first, then includes in load order.
    pub modules: Vec<LoadedModule>,
    /// The entry file.
    pub entry: FileId,
    /// Whether an included file could not be loaded (missing, outside the project, or with a
    /// syntax error): its items are then unknown, so the checker does not report names that
    /// it may have declared.
    pub incomplete: bool,
    /// For every included file (also one that failed to parse), the `include` item that first
    /// brought it in; the entry file has none.
    pub included_from: HashMap<FileId, Span>,
    /// The namespace of each file included with `as ns` (its agents and workflows are
    /// `ns.name`).
    pub namespaces: HashMap<FileId, String>,
    /// Each `as ns` written: the prefix its names have (`ns`, or empty when the file had
    /// been loaded without a namespace already).
    pub aliases: indexmap::IndexMap<String, String>,
}

impl ModuleSet {
    /// The includes that brought `file` in, innermost first: the `include` item that loaded
    /// it, then the one that loaded the file holding that item, and so on up to the entry
    /// script. Each is paired with the file it brought in. Empty for the entry file.
    pub fn include_chain(&self, file: FileId) -> Vec<(FileId, Span)> {
        let mut chain = Vec::new();
        let mut current = file;
        // A file is loaded once, from one include, so the chain is a path up a tree; the bound
        // only guards against a malformed map.
        while let Some(&span) = self.included_from.get(&current) {
            if chain.len() > self.included_from.len() {
                break;
            }
            chain.push((current, span));
            current = span.file;
        }
        chain
    }
}

/// Gives every diagnostic located in an included file a secondary label at each `include`
/// that brought the file in (innermost first: "`lib/agents.orch` included here"), so that an
/// error inside a library also points at the line of the script that pulled the library in.
/// A label already at one of those spans (an include cycle's chain) is not repeated.
pub fn label_include_chains(set: &ModuleSet, diags: &mut Diagnostics) {
    for d in diags.iter_mut() {
        for (file, span) in set.include_chain(d.primary.span.file) {
            let labelled = std::iter::once(&d.primary)
                .chain(d.secondary.iter())
                .any(|l| l.span == span);
            if !labelled {
                let name = &set.sources.get(file).name;
                d.secondary.push(Label {
                    span,
                    message: format!("`{name}` included here"),
                });
            }
        }
    }
}

/// Where a file comes from: disk (canonical path) or the embedded stdlib (its name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Origin {
    Disk(PathBuf),
    Std(&'static str),
    Memory(String),
}

struct Loader<'o> {
    opts: &'o ResolveOptions,
    /// Directories includes may read from (canonical).
    roots: Vec<PathBuf>,
    sources: SourceMap,
    modules: Vec<LoadedModule>,
    loaded: HashMap<Origin, FileId>,
    /// The include that brought each included file in.
    included_from: HashMap<FileId, Span>,
    /// Files being loaded, with the include span that opened each (for cycle chains).
    stack: Vec<(Origin, FileId, Option<Span>)>,
    diags: Diagnostics,
    /// Whether some include could not be loaded.
    incomplete: bool,
    /// The namespace of the file about to be loaded (`include ... as ns`).
    pending_namespace: Option<String>,
    /// Each namespaced file's namespace.
    namespaces: HashMap<FileId, String>,
    /// Every `as ns`: the prefix of its names (empty when the file was loaded without one)
    /// and where it is written.
    aliases: indexmap::IndexMap<String, (String, Span)>,
}

/// Loads `entry` from disk with its includes. Diagnostics cover unreadable files, syntax errors
/// and include errors; loading goes on past them so every error is reported.
pub fn load_file(entry: &Path, opts: &ResolveOptions) -> (ModuleSet, Diagnostics) {
    let mut loader = Loader::new(opts);
    let canonical = entry.canonicalize().unwrap_or_else(|_| entry.to_path_buf());
    if let Some(dir) = canonical.parent() {
        loader.roots.insert(0, dir.to_path_buf());
    }
    let entry_id = match opts.read(entry) {
        Ok(text) => loader.load(Origin::Disk(canonical), display_name(entry), text, None),
        Err(e) => {
            // No file to point into: report against an empty in-memory source named after it.
            let id = loader
                .sources
                .add(display_name(entry), Some(entry.to_path_buf()), "");
            loader.diags.push(
                UnreadableScript {
                    at: Span::new(id, 0, 0),
                    path: entry.display().to_string(),
                    reason: e.to_string(),
                }
                .into(),
            );
            id
        }
    };
    loader.finish(entry_id)
}

/// Loads a script given as text (tests, stdin). Relative includes resolve against `dir`.
pub fn load_source(
    name: &str,
    text: &str,
    dir: &Path,
    opts: &ResolveOptions,
) -> (ModuleSet, Diagnostics) {
    let mut loader = Loader::new(opts);
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    loader.roots.insert(0, dir.clone());
    let id = loader.load(
        Origin::Memory(dir.join(name).to_string_lossy().into_owned()),
        name.to_string(),
        text.to_string(),
        None,
    );
    loader.finish(id)
}

/// `path` without `.` components and with `..` applied, without touching the disk. A `..`
/// with nothing left to cancel is kept (`../../a.orch` stays as it is).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// An absolute path for messages: relative to the working directory when it is inside it, so
/// that output does not depend on where the project is checked out.
fn shown(path: &Path) -> String {
    let path = normalize(path);
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|d| d.canonicalize().ok());
    match cwd.as_deref().and_then(|c| path.strip_prefix(c).ok()) {
        Some(r) if r.as_os_str().is_empty() => ".".to_string(),
        Some(r) => r.display().to_string(),
        None => path.display().to_string(),
    }
}

/// A path as users wrote it, relative to the working directory when possible.
fn display_name(path: &Path) -> String {
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|d| d.canonicalize().ok());
    let canonical = path.canonicalize().ok();
    match (cwd, canonical) {
        (Some(cwd), Some(p)) => p
            .strip_prefix(&cwd)
            .map(|r| r.display().to_string())
            .unwrap_or_else(|_| path.display().to_string()),
        _ => path.display().to_string(),
    }
}

impl<'o> Loader<'o> {
    fn new(opts: &'o ResolveOptions) -> Self {
        let roots = opts
            .include_paths
            .iter()
            .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
            .collect();
        Loader {
            opts,
            roots,
            sources: SourceMap::new(),
            modules: Vec::new(),
            loaded: HashMap::new(),
            included_from: HashMap::new(),
            stack: Vec::new(),
            diags: Diagnostics::new(),
            incomplete: false,
            pending_namespace: None,
            namespaces: HashMap::new(),
            aliases: indexmap::IndexMap::new(),
        }
    }

    fn finish(self, entry: FileId) -> (ModuleSet, Diagnostics) {
        (
            ModuleSet {
                sources: self.sources,
                modules: self.modules,
                entry,
                incomplete: self.incomplete,
                included_from: self.included_from,
                namespaces: self.namespaces,
                aliases: self
                    .aliases
                    .into_iter()
                    .map(|(k, (prefix, _))| (k, prefix))
                    .collect(),
            },
            self.diags,
        )
    }

    /// Adds, parses and recursively loads one file; returns its id.
    fn load(&mut self, origin: Origin, name: String, text: String, from: Option<Span>) -> FileId {
        let path = match &origin {
            Origin::Disk(p) => Some(p.clone()),
            _ => None,
        };
        let namespace = self.pending_namespace.take();
        let id = self.sources.add(name, path, text);
        self.loaded.insert(origin.clone(), id);
        if let Some(ns) = &namespace {
            self.namespaces.insert(id, ns.clone());
        }
        if let Some(span) = from {
            self.included_from.insert(id, span);
        }
        let text = self.sources.get(id).text.clone();
        let module = match syntax::parse(id, &text) {
            Ok(m) => m,
            Err(d) => {
                // The include chain is labelled later, with every other diagnostic's
                // (`label_include_chains`).
                self.incomplete |= from.is_some();
                self.diags.push(*d);
                return id;
            }
        };
        self.stack.push((origin.clone(), id, from));
        let includes: Vec<ast::Include> = module
            .items
            .iter()
            .filter_map(|i| match i {
                ast::Item::Include(inc) => Some(inc.clone()),
                _ => None,
            })
            .collect();
        self.modules.push(LoadedModule {
            module,
            included_from: from,
            namespace,
        });
        for inc in includes {
            self.include(&origin, &inc);
        }
        self.stack.pop();
        id
    }

    fn include(&mut self, from: &Origin, inc: &ast::Include) {
        let Some(target) = self.locate(from, inc) else {
            self.incomplete = true;
            return;
        };
        let name = match &target {
            Origin::Std(n) => n.to_string(),
            Origin::Disk(p) => display_name(p),
            Origin::Memory(m) => m.clone(),
        };
        if let Some(pos) = self.stack.iter().position(|(o, _, _)| *o == target) {
            self.report_cycle(pos, inc);
            return;
        }
        if self.stack.len() >= MAX_INCLUDE_DEPTH && !self.loaded.contains_key(&target) {
            self.diags.push(
                IncludeNotFound::TooDeep {
                    at: inc.path_span,
                    name: name.to_string(),
                }
                .into(),
            );
            self.incomplete = true;
            return;
        }
        if let Some(alias) = &inc.alias {
            if let Some((_, prev)) = self.aliases.get(&alias.name) {
                let prev = *prev;
                self.diags.push(
                    DuplicateNamespace {
                        at: alias.span,
                        name: alias.name.clone(),
                        first: prev,
                    }
                    .into(),
                );
                return;
            }
            // A file already loaded without a namespace keeps its global names; `ns.name`
            // then still finds them.
            let prefix = match self.loaded.get(&target) {
                Some(id) => self.namespaces.get(id).cloned().unwrap_or_default(),
                None => alias.name.clone(),
            };
            self.aliases
                .insert(alias.name.clone(), (prefix, alias.span));
        }
        if self.loaded.contains_key(&target) {
            return; // Already loaded through another include: its items are defined once.
        }
        self.pending_namespace = inc.alias.as_ref().map(|a| a.name.clone());
        let text = match &target {
            Origin::Std(n) => STDLIB
                .iter()
                .find(|(s, _)| s == n)
                .map(|(_, t)| t.to_string())
                .unwrap_or_default(),
            Origin::Disk(p) => match self.opts.read(p) {
                Ok(t) => t,
                Err(e) => {
                    self.diags.push(
                        IncludeNotFound::Unreadable {
                            at: inc.path_span,
                            name: name.to_string(),
                            reason: e.to_string(),
                        }
                        .into(),
                    );
                    self.incomplete = true;
                    return;
                }
            },
            Origin::Memory(_) => return,
        };
        self.load(target, name, text, Some(inc.span));
    }

    /// Finds the file an include names, or reports why it cannot.
    fn locate(&mut self, from: &Origin, inc: &ast::Include) -> Option<Origin> {
        if let Some(rest) = inc.path.strip_prefix("std/") {
            if let Some((name, _)) = STDLIB.iter().find(|(n, _)| *n == inc.path) {
                return Some(Origin::Std(name));
            }
            let known: Vec<&str> = STDLIB.iter().map(|(n, _)| *n).collect();
            self.diags.push(
                IncludeNotFound::NotInStdlib {
                    at: inc.path_span,
                    path: inc.path.clone(),
                    suggestion: did_you_mean(rest, known.iter().map(|n| &n[4..])).map(String::from),
                    files: known.iter().map(|n| n.to_string()).collect(),
                }
                .into(),
            );
            return None;
        }
        let base_dir = match from {
            Origin::Disk(p) => p.parent().map(Path::to_path_buf),
            Origin::Memory(m) => Path::new(m).parent().map(Path::to_path_buf),
            Origin::Std(_) => {
                self.diags
                    .push(IncludeNotFound::StdlibIncludesOther { at: inc.path_span }.into());
                return None;
            }
        }
        .unwrap_or_default();
        let joined = base_dir.join(&inc.path);
        let Ok(canonical) = joined.canonicalize() else {
            self.diags.push(
                IncludeNotFound::Missing {
                    at: inc.path_span,
                    path: inc.path.clone(),
                    looked_for: shown(&joined),
                }
                .into(),
            );
            return None;
        };
        if !self.roots.iter().any(|r| canonical.starts_with(r)) {
            let root = self.roots.first().map(|r| shown(r)).unwrap_or_default();
            self.diags.push(
                IncludeOutsideProject {
                    at: inc.path_span,
                    path: inc.path.clone(),
                    resolved: shown(&canonical),
                    root,
                    dir: canonical.parent().map(shown).unwrap_or_default(),
                }
                .into(),
            );
            return None;
        }
        Some(Origin::Disk(canonical))
    }

    /// The include at `inc` closes a cycle with the files `stack[pos..]`.
    fn report_cycle(&mut self, pos: usize, inc: &ast::Include) {
        let chain: Vec<String> = self.stack[pos..]
            .iter()
            .map(|(_, id, _)| self.sources.get(*id).name.clone())
            .collect();
        let edges = self.stack[pos + 1..]
            .iter()
            .filter_map(|(_, id, from)| from.map(|span| (span, self.sources.get(*id).name.clone())))
            .collect();
        self.diags.push(
            IncludeCycle {
                at: inc.path_span,
                chain,
                edges,
            }
            .into(),
        );
    }
}
