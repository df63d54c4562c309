//! The wording of what loading a script and its includes reports (`E0100`–`E0104`): one type
//! per code, whose variants carry the facts the message names, and one `diagnostic` function
//! each; [`super`] finds the problems and gathers the facts.

use crate::diag::{Code, Diagnostic, Span};

use super::MAX_INCLUDE_DEPTH;

/// `E0100`: the entry script cannot be read (`reason` is the I/O error).
pub(super) struct UnreadableScript {
    pub at: Span,
    pub path: String,
    pub reason: String,
}

impl From<UnreadableScript> for Diagnostic {
    fn from(e: UnreadableScript) -> Self {
        Diagnostic::new(
            Code::UnreadableScript,
            e.at,
            format!("cannot read `{}`: {}", e.path, e.reason),
        )
        .with_help("check the path; `orch check` takes paths to `.orch` files")
    }
}

/// `E0101`: an included file cannot be had.
pub(super) enum IncludeNotFound {
    /// The include would be file `MAX_INCLUDE_DEPTH + 1` of a chain; `name` is its path.
    TooDeep { at: Span, name: String },
    /// The file cannot be read (`reason` is the I/O error).
    Unreadable {
        at: Span,
        name: String,
        reason: String,
    },
    /// `std/...` names no file of the standard library; `suggestion` is the closest (without
    /// `std/`), `files` every file it has.
    NotInStdlib {
        at: Span,
        path: String,
        suggestion: Option<String>,
        files: Vec<String>,
    },
    /// A standard library file including a file outside it.
    StdlibIncludesOther { at: Span },
    /// No file at the path (`looked_for` is where it was looked for).
    Missing {
        at: Span,
        path: String,
        looked_for: String,
    },
}

impl From<IncludeNotFound> for Diagnostic {
    fn from(e: IncludeNotFound) -> Self {
        let error = |at, message: String| Diagnostic::new(Code::IncludeNotFound, at, message);
        match e {
            IncludeNotFound::TooDeep { at, name } => error(
                at,
                format!("includes nest more than {MAX_INCLUDE_DEPTH} files deep here"),
            )
            .with_label(format!(
                "`{name}` would be file {} of the chain",
                MAX_INCLUDE_DEPTH + 1
            ))
            .with_help(
                "include the files of a long chain from one file rather than each from the one before",
            ),
            IncludeNotFound::Unreadable { at, name, reason } => {
                error(at, format!("cannot read included file `{name}`: {reason}"))
                    .with_label("not readable as a script")
            }
            IncludeNotFound::NotInStdlib {
                at,
                path,
                suggestion,
                files,
            } => {
                let d = error(at, format!("the standard library has no file `{path}`"))
                    .with_label("not in the standard library");
                match suggestion {
                    Some(s) => d
                        .with_help(format!(
                            "did you mean `std/{s}`? The standard library has {}",
                            files.join(", ")
                        ))
                        .with_replacement(format!("\"std/{s}\"")),
                    None => d.with_help(format!("the standard library has {}", files.join(", "))),
                }
            }
            IncludeNotFound::StdlibIncludesOther { at } => error(
                at,
                "a standard library file can only include `std/...` files".to_string(),
            ),
            IncludeNotFound::Missing {
                at,
                path,
                looked_for,
            } => error(at, format!("included file `{path}` not found"))
                .with_label(format!("looked for {looked_for}"))
                .with_help(
                    "paths are relative to the including file; `std/...` names the standard library",
                ),
        }
    }
}

/// `E0102`: files include each other: `chain` are the files of the loop, in order; `edges`
/// where each after the first is included.
pub(super) struct IncludeCycle {
    pub at: Span,
    pub chain: Vec<String>,
    pub edges: Vec<(Span, String)>,
}

impl From<IncludeCycle> for Diagnostic {
    fn from(e: IncludeCycle) -> Self {
        let first = e.chain.first().cloned().unwrap_or_default();
        let mut d = Diagnostic::new(
            Code::IncludeCycle,
            e.at,
            format!("include cycle: {} → {first}", e.chain.join(" → ")),
        )
        .with_label(format!("includes `{first}` again"))
        .with_help(
            "move the shared items into a file that both include, and include that file from each",
        );
        for (span, name) in e.edges {
            d = d.with_secondary(span, format!("includes `{name}`"));
        }
        d
    }
}

/// `E0103`: include `path` resolves to `resolved`, outside the allowed `root`; `dir` is the
/// directory to allow.
pub(super) struct IncludeOutsideProject {
    pub at: Span,
    pub path: String,
    pub resolved: String,
    pub root: String,
    pub dir: String,
}

impl From<IncludeOutsideProject> for Diagnostic {
    fn from(e: IncludeOutsideProject) -> Self {
        let root = &e.root;
        Diagnostic::new(
            Code::IncludeOutsideProject,
            e.at,
            format!("include `{}` leaves the directory of the entry script", e.path),
        )
        .with_label(format!("resolves to {}, outside {root}", e.resolved))
        .with_help(format!(
            "includes may only read files under the entry script's directory ({root}); move the file there, or allow its directory with `--include-path {}`",
            e.dir
        ))
    }
}

/// `E0104`: namespace `name` used by two includes.
pub(super) struct DuplicateNamespace {
    pub at: Span,
    pub name: String,
    pub first: Span,
}

impl From<DuplicateNamespace> for Diagnostic {
    fn from(e: DuplicateNamespace) -> Self {
        Diagnostic::new(
            Code::DuplicateNamespace,
            e.at,
            format!("namespace `{}` is used twice", e.name),
        )
        .with_label("used again")
        .with_secondary(e.first, "first used here")
        .with_help("give each included library its own name")
    }
}
