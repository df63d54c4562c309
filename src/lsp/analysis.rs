//! One open document compiled with the library's front end (`resolve`, `check`, the planning
//! stage's lints, `diag::apply_levels`, exactly as `orch check` does), and an index of every
//! name written in it and its includes: which declaration each occurrence names.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::check::Program;
use crate::diag::{Diagnostics, FileId, LintLevels, Span, apply_levels};
use crate::resolve::{self, ModuleSet, ResolveOptions};
use crate::syntax::ast::{self, Block, Cond, Stmt, Value, ValueKind};

/// What kind of thing a symbol is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymKind {
    /// `agent NAME`.
    Agent,
    /// `workflow NAME`.
    Workflow,
    /// `model NAME`.
    Model,
    /// `provider NAME`.
    Provider,
    /// `mcp NAME`.
    Mcp,
    /// A parameter of a workflow or an agent.
    Param,
    /// A step, a named `parallel` block, or a `parallel for` variable.
    Local,
}

/// A declared name.
#[derive(Debug, Clone)]
pub struct Symbol {
    /// What it is.
    pub kind: SymKind,
    /// Its key: the table key of an item (`ns.name` in a namespaced file), the bare name of a
    /// parameter or local.
    pub key: String,
    /// The name as written at the declaration.
    pub def: Span,
    /// The whole declaration (item or statement).
    pub decl: Span,
    /// The item it belongs to, for parameters and locals: `agent:KEY` or `workflow:KEY`.
    pub scope: Option<String>,
    /// Its `///` doc comment.
    pub doc: Option<String>,
}

/// One place a symbol's name is written.
#[derive(Debug, Clone, Copy)]
pub struct Occurrence {
    /// The name as written (only the last part of `ns.name`).
    pub span: Span,
    /// Index in [`Index::symbols`].
    pub sym: usize,
    /// Whether it is the declaration.
    pub is_def: bool,
}

/// Every symbol of a module set and every occurrence of each.
#[derive(Debug, Default)]
pub struct Index {
    /// The symbols.
    pub symbols: Vec<Symbol>,
    /// The occurrences, in no particular order.
    pub occurrences: Vec<Occurrence>,
    items: HashMap<(Cat, String), usize>,
    locals: HashMap<(String, String), usize>,
}

/// The namespaces of item names: agents and workflows are both callees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Cat {
    Callee,
    Model,
    Provider,
    Mcp,
}

/// A compiled document.
pub struct Analysis {
    /// The entry file and its includes.
    pub set: ModuleSet,
    /// The checked program (also when there are errors).
    pub program: Program,
    /// Every diagnostic, lint levels and `// orch: allow(...)` comments applied.
    pub diags: Diagnostics,
    /// The names.
    pub index: Index,
    /// The URI of each file, by [`FileId`] index.
    pub uris: Vec<String>,
}

/// Compiles the document `uri` with text `text`, reading the other open documents from
/// `opts.overlay`. A `file:` URI whose file exists is loaded as that file (its includes
/// resolve relative to its directory); any other is loaded as text, relative to the working
/// directory. `std_uri` gives the URI a standard library file is served at.
pub fn analyse(
    uri: &str,
    text: &str,
    opts: &ResolveOptions,
    std_uri: &dyn Fn(&str) -> String,
) -> Analysis {
    let path = super::documents::uri_to_path(uri).filter(|p| p.is_file());
    let (set, mut diags) = match &path {
        Some(p) => resolve::load_file(p, opts),
        None => {
            let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            let name = uri.rsplit('/').next().unwrap_or(uri);
            resolve::load_source(name, text, &dir, opts)
        }
    };
    let program = crate::check_loaded(&set, &mut diags);
    apply_levels(&mut diags, &program.sources, &LintLevels::default());
    let uris = set
        .sources
        .files()
        .map(|(id, f)| {
            if id == set.entry {
                uri.to_string()
            } else if f.is_stdlib() {
                std_uri(&f.name)
            } else {
                match &f.path {
                    Some(p) => super::documents::path_to_uri(p).as_str().to_string(),
                    None => format!("file://{}", f.name),
                }
            }
        })
        .collect();
    let index = Index::build(&set, &program);
    Analysis {
        set,
        program,
        diags,
        index,
        uris,
    }
}

impl Analysis {
    /// The text of a file.
    pub fn text(&self, file: FileId) -> &str {
        &self.set.sources.get(file).text
    }
    /// The URI of a file.
    pub fn uri(&self, file: FileId) -> &str {
        &self.uris[file.0 as usize]
    }
    /// Whether this analysis read any of the documents named by `uris` (as URIs) or `paths`
    /// (canonical paths): its entry file or one of its includes.
    pub fn reads_any(&self, uris: &[String], paths: &[PathBuf]) -> bool {
        self.uris.iter().any(|u| uris.contains(u))
            || self
                .set
                .sources
                .files()
                .any(|(_, f)| f.path.as_ref().is_some_and(|p| paths.contains(p)))
    }
    /// Whether the entry file parsed (its AST is in the module set).
    pub fn parsed(&self) -> bool {
        self.set
            .modules
            .first()
            .is_some_and(|m| m.module.file == self.set.entry)
    }
    /// The occurrence at byte `offset` of the entry file (the name under the cursor: its
    /// span holds the offset, or ends at it).
    pub fn occurrence_at(&self, offset: usize) -> Option<Occurrence> {
        let offset = offset as u32;
        self.index
            .occurrences
            .iter()
            .filter(|o| {
                o.span.file == self.set.entry && o.span.start <= offset && offset <= o.span.end
            })
            .min_by_key(|o| o.span.len())
            .copied()
    }
    /// Every occurrence of symbol `sym`.
    pub fn occurrences_of(&self, sym: usize) -> impl Iterator<Item = &Occurrence> {
        self.index.occurrences.iter().filter(move |o| o.sym == sym)
    }
}

/// What [`Index::declare_callee`] declares: an agent or a workflow, by its (possibly namespaced) key.
struct Callee<'a> {
    key: String,
    name: &'a ast::Ident,
    span: Span,
    doc: &'a Option<String>,
    params: &'a [ast::Param],
}

impl Index {
    fn build(set: &ModuleSet, program: &Program) -> Index {
        let mut ix = Index::default();
        // Declarations first, so that a use before its declaration (or in another file)
        // finds it.
        for m in &set.modules {
            let prefix = |n: &str| match &m.namespace {
                Some(ns) => format!("{ns}.{n}"),
                None => n.to_string(),
            };
            for item in &m.module.items {
                match item {
                    ast::Item::Include(_) => {}
                    ast::Item::Provider(d) => {
                        ix.item(Cat::Provider, SymKind::Provider, d.name.name.clone(), d)
                    }
                    ast::Item::Model(d) => {
                        ix.item(Cat::Model, SymKind::Model, d.name.name.clone(), d)
                    }
                    ast::Item::Mcp(d) => ix.item(Cat::Mcp, SymKind::Mcp, d.name.name.clone(), d),
                    ast::Item::Agent(a) => {
                        let callee = Callee {
                            key: prefix(&a.name.name),
                            name: &a.name,
                            span: a.span,
                            doc: &a.doc,
                            params: &a.params,
                        };
                        ix.declare_callee(SymKind::Agent, "agent", callee);
                    }
                    ast::Item::Workflow(w) => {
                        let callee = Callee {
                            key: prefix(&w.name.name),
                            name: &w.name,
                            span: w.span,
                            doc: &w.doc,
                            params: &w.params,
                        };
                        let scope = ix.declare_callee(SymKind::Workflow, "workflow", callee);
                        ix.block_defs(&scope, &w.body);
                    }
                }
            }
        }
        for m in &set.modules {
            let prefix = |n: &str| match &m.namespace {
                Some(ns) => format!("{ns}.{n}"),
                None => n.to_string(),
            };
            for item in &m.module.items {
                match item {
                    ast::Item::Include(_) => {}
                    ast::Item::Provider(d) | ast::Item::Mcp(d) => {
                        ix.fields(program, None, &d.fields)
                    }
                    ast::Item::Model(d) => ix.fields(program, None, &d.fields),
                    ast::Item::Agent(a) => {
                        let scope = format!("agent:{}", prefix(&a.name.name));
                        for p in &a.params {
                            if let Some(v) = &p.default {
                                ix.value(&scope, v);
                            }
                        }
                        ix.fields(program, Some(&scope), &a.fields);
                    }
                    ast::Item::Workflow(w) => {
                        let scope = format!("workflow:{}", prefix(&w.name.name));
                        ix.options(&w.options);
                        ix.block_refs(program, &scope, &w.body);
                    }
                }
            }
        }
        ix
    }

    fn add(&mut self, sym: Symbol) -> usize {
        self.symbols.push(sym);
        let id = self.symbols.len() - 1;
        self.occurrences.push(Occurrence {
            span: self.symbols[id].def,
            sym: id,
            is_def: true,
        });
        id
    }

    fn item(&mut self, cat: Cat, kind: SymKind, key: String, d: &ast::Decl) {
        let sym = self.add(Symbol {
            kind,
            key: key.clone(),
            def: d.name.span,
            decl: d.span,
            scope: None,
            doc: d.doc.clone(),
        });
        self.items.entry((cat, key)).or_insert(sym);
    }

    /// Declares an agent or workflow (callable by its key) and its parameters, locals of the
    /// scope `{what}:{key}`, which it returns.
    fn declare_callee(&mut self, kind: SymKind, what: &str, c: Callee<'_>) -> String {
        let sym = self.add(Symbol {
            kind,
            key: c.key.clone(),
            def: c.name.span,
            decl: c.span,
            scope: None,
            doc: c.doc.clone(),
        });
        let scope = format!("{what}:{}", c.key);
        self.items.entry((Cat::Callee, c.key)).or_insert(sym);
        for p in c.params {
            self.local(&scope, &p.name, p.span, SymKind::Param);
        }
        scope
    }

    /// Declares a local of `scope`; a second declaration of the name (another branch) is one
    /// more declaring occurrence of the same symbol.
    fn local(&mut self, scope: &str, name: &ast::Ident, decl: Span, kind: SymKind) {
        let key = (scope.to_string(), name.name.clone());
        match self.locals.get(&key) {
            Some(&sym) => self.occurrences.push(Occurrence {
                span: name.span,
                sym,
                is_def: true,
            }),
            None => {
                let sym = self.add(Symbol {
                    kind,
                    key: name.name.clone(),
                    def: name.span,
                    decl,
                    scope: Some(scope.to_string()),
                    doc: None,
                });
                self.locals.insert(key, sym);
            }
        }
    }

    fn block_defs(&mut self, scope: &str, b: &Block) {
        for s in &b.stmts {
            match s {
                Stmt::Step(st) => self.local(scope, &st.name, st.span, SymKind::Local),
                Stmt::Gather(g) => self.local(scope, &g.step.name, g.step.span, SymKind::Local),
                Stmt::Parallel(p) => {
                    if let Some(n) = &p.name {
                        self.local(scope, n, p.span, SymKind::Local);
                    }
                    if let Some(f) = &p.for_each {
                        self.local(scope, &f.var, f.span, SymKind::Local);
                    }
                    self.block_defs(scope, &p.body);
                }
                Stmt::Then(b) => self.block_defs(scope, b),
                Stmt::Repeat(r) => self.block_defs(scope, &r.body),
                Stmt::If(i) => {
                    self.block_defs(scope, &i.then);
                    if let Some(o) = &i.otherwise {
                        self.block_defs(scope, o);
                    }
                }
                Stmt::Return(_) => {}
            }
        }
    }

    fn reference(&mut self, span: Span, sym: usize) {
        self.occurrences.push(Occurrence {
            span,
            sym,
            is_def: false,
        });
    }

    fn item_ref(&mut self, cat: Cat, name: &ast::Ident) {
        if let Some(&sym) = self.items.get(&(cat, name.name.clone())) {
            self.reference(name.span, sym);
        }
    }

    fn local_ref(&mut self, scope: &str, name: &ast::Ident) -> bool {
        match self.locals.get(&(scope.to_string(), name.name.clone())) {
            Some(&sym) => {
                self.reference(name.span, sym);
                true
            }
            None => false,
        }
    }

    /// A callee (`agent`, `ns.agent`, a workflow, or an `agent` parameter): its symbol key.
    fn callee(&mut self, program: &Program, scope: &str, p: &ast::Path) -> Option<String> {
        let found = program.tables.lookup(p, |k| {
            self.items.contains_key(&(Cat::Callee, k.to_string()))
        });
        match found {
            Some(key) => {
                let sym = self.items[&(Cat::Callee, key.clone())];
                let at = p.fields.last().map_or(p.root.span, |f| f.span);
                self.reference(at, sym);
                Some(key)
            }
            None => {
                self.local_ref(scope, &p.root);
                None
            }
        }
    }

    fn options(&mut self, opts: &[ast::Opt]) {
        for o in opts {
            if let ast::OptKind::Model(m) | ast::OptKind::Fallback(m) = &o.kind {
                self.item_ref(Cat::Model, m);
            }
        }
    }

    fn fields(&mut self, program: &Program, scope: Option<&str>, fields: &[ast::Field]) {
        for f in fields {
            match (f.key.name.as_str(), &f.value.kind) {
                ("model" | "fallback", ValueKind::Path(p)) => self.item_ref(Cat::Model, &p.root),
                ("provider", ValueKind::Path(p)) => self.item_ref(Cat::Provider, &p.root),
                ("tools", ValueKind::List(items)) => {
                    for v in items {
                        match &v.kind {
                            ValueKind::Call { name, args } if name.name == "agent" => {
                                for a in args {
                                    if let ValueKind::Path(p) = &a.kind {
                                        self.callee(program, "", p);
                                    }
                                }
                            }
                            ValueKind::Path(p) if !p.fields.is_empty() => {
                                self.item_ref(Cat::Mcp, &p.root)
                            }
                            ValueKind::Wildcard(server) => self.item_ref(Cat::Mcp, server),
                            _ => {}
                        }
                    }
                }
                _ => {
                    if let Some(scope) = scope {
                        self.value(scope, &f.value);
                    }
                }
            }
        }
    }

    /// Names inside a value: interpolations and paths name locals (or parameters) of `scope`.
    fn value(&mut self, scope: &str, v: &Value) {
        match &v.kind {
            ValueKind::Str(t) => {
                for p in t.interps() {
                    self.local_ref(scope, &p.root);
                }
            }
            ValueKind::Path(p) => {
                self.local_ref(scope, &p.root);
            }
            ValueKind::List(vs) => {
                for v in vs {
                    self.value(scope, v);
                }
            }
            ValueKind::Record(fs) => {
                for f in fs {
                    self.value(scope, &f.value);
                }
            }
            ValueKind::Call { args, .. } => {
                for v in args {
                    self.value(scope, v);
                }
            }
            _ => {}
        }
    }

    fn cond(&mut self, scope: &str, c: &Cond) {
        for v in c.operands() {
            self.value(scope, v);
        }
    }

    fn step(&mut self, program: &Program, scope: &str, st: &ast::Step) {
        let callee = self.callee(program, scope, &st.callee);
        self.options(&st.options);
        for a in &st.args {
            if let (Some(name), Some(key)) = (&a.name, &callee) {
                // A named argument names a parameter of the agent or workflow called.
                if !self.local_ref(&format!("agent:{key}"), name) {
                    self.local_ref(&format!("workflow:{key}"), name);
                }
            }
            self.value(scope, &a.value);
        }
        for n in &st.after {
            self.local_ref(scope, n);
        }
    }

    fn block_refs(&mut self, program: &Program, scope: &str, b: &Block) {
        for s in &b.stmts {
            match s {
                Stmt::Step(st) => self.step(program, scope, st),
                Stmt::Gather(g) => self.step(program, scope, &g.step),
                Stmt::Parallel(p) => {
                    self.options(&p.options);
                    if let Some(f) = &p.for_each {
                        self.value(scope, &f.list);
                    }
                    self.block_refs(program, scope, &p.body);
                }
                Stmt::Then(b) => self.block_refs(program, scope, b),
                Stmt::Return(r) => self.value(scope, &r.value),
                Stmt::Repeat(r) => {
                    self.options(&r.options);
                    self.block_refs(program, scope, &r.body);
                    self.cond(scope, &r.until);
                }
                Stmt::If(i) => {
                    self.cond(scope, &i.cond);
                    self.block_refs(program, scope, &i.then);
                    if let Some(o) = &i.otherwise {
                        self.block_refs(program, scope, o);
                    }
                }
            }
        }
    }
}

/// The directory the standard library files are written to, so that editors can open them
/// as ordinary files: `orch-std-<hash>/std/` under the system's temporary directory, one per
/// distinct content (a hash of every file), files read-only. Written once and reused.
///
/// # Errors
/// What `std::fs` reports when the directory cannot be written.
pub fn write_stdlib() -> std::io::Result<PathBuf> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (name, text) in resolve::STDLIB {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let root = std::env::temp_dir().join(format!("orch-std-{hex}"));
    for (name, text) in resolve::STDLIB {
        let path = root.join(name);
        if std::fs::read_to_string(&path).is_ok_and(|t| t == *text) {
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // A read-only file from an earlier version cannot be overwritten in place.
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, text)?;
        let mut perms = std::fs::metadata(&path)?.permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(&path, perms)?;
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_callees_and_named_arguments_are_occurrences() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("lib.orch"),
            "agent critic(focus: text) { model: m, system: \"Review {focus}.\" }\n",
        )
        .unwrap();
        let main = dir.path().join("main.orch");
        let text = "include \"lib.orch\" as rv\nmodel m { provider: sim, name: \"m\" }\nworkflow main(x: text) {\n  a = rv.critic(\"{x}\", focus: \"style\")\n  return a\n}\n";
        std::fs::write(&main, text).unwrap();
        let uri = super::super::documents::path_to_uri(&main.canonicalize().unwrap());
        let a = analyse(uri.as_str(), text, &ResolveOptions::default(), &|n| {
            n.to_string()
        });
        assert!(
            !a.diags.has_errors(),
            "{:?}",
            a.diags.iter().collect::<Vec<_>>()
        );
        // `critic` in `rv.critic`: the agent of the namespaced include.
        let at = text.find("critic(").unwrap() + 1;
        let occ = a.occurrence_at(at).expect("an occurrence at `critic`");
        let sym = &a.index.symbols[occ.sym];
        assert_eq!((sym.kind, sym.key.as_str()), (SymKind::Agent, "rv.critic"));
        assert_eq!(a.occurrences_of(occ.sym).count(), 2);
        // `focus:` names the agent's parameter, also used in its system text.
        let at = text.find("focus:").unwrap() + 1;
        let occ = a.occurrence_at(at).expect("an occurrence at `focus`");
        assert_eq!(a.index.symbols[occ.sym].kind, SymKind::Param);
        assert_eq!(a.occurrences_of(occ.sym).count(), 3);
        // The model, declared here and used in the include.
        let at = text.find("model m").unwrap() + 6;
        let occ = a.occurrence_at(at).expect("an occurrence at `m`");
        assert_eq!(a.occurrences_of(occ.sym).count(), 2);
    }
}
