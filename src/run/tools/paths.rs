//! Confinement: every path a file tool touches is resolved here, and refused unless it stays
//! inside the workspace.
//!
//! A path from the model is relative to the workspace (an absolute path is accepted only when
//! it is inside). It may not contain `..`; it is canonicalised (every symlink followed), and
//! the result must still be inside the canonical workspace, so a symlink that points out is
//! refused like a path that does. The kernel's pseudo-filesystems (`/proc`, `/sys`, `/dev`)
//! are refused even when a workspace contains them. Writes are refused under any `.git` or
//! `.orch` directory (the repository's history and orch's own journal), and on the workspace
//! root itself.
//!
//! # What is and is not guaranteed (time of check, time of use)
//! The check runs on the path as it is when the tool call starts. Between the check and the
//! use another process (a program started by `exec`, a concurrent tool call, the user) could
//! replace a directory on the way with a symlink that points out. The last component is
//! opened with `O_NOFOLLOW` ([`open_read`], [`open_write`]), so swapping the file itself for a
//! symlink makes the open fail; swapping a directory higher up between check and open is not
//! detected. orch runs one agent's tool calls of a turn concurrently, but no built-in tool
//! creates symlinks, so only `exec` (an allowlisted program) or something outside orch can
//! race a check. Programs run by `exec` are not confined by this module at all: their working
//! directory is the workspace, and what they do beyond it is the allowlist's responsibility.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Directories never written, wherever they are in the workspace.
pub const PROTECTED_DIRS: [&str; 2] = [".git", ".orch"];

/// Trees refused even inside a workspace: the kernel's view of processes (their environments
/// hold keys), devices and the system.
const PSEUDO_FILESYSTEMS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// What a tool means to do with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read it (or list it, search under it).
    Read,
    /// Create or change it.
    Write,
}

/// A path inside the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confined {
    /// Canonical and absolute (for a file `write` creates: its parent's canonical path joined
    /// with the names still to be created).
    pub path: PathBuf,
    /// Relative to the workspace, for the model (`.` for the workspace itself).
    pub shown: String,
}

/// Resolves `raw`, a path the model gave, against `workspace` (canonical) for `access`.
///
/// # Errors
/// A sentence for the model saying why the path is refused: empty, holding `..` or a NUL
/// byte, absolute and outside, leading out through a symlink, under a pseudo-filesystem,
/// writing under `.git`/`.orch` or the workspace root; or it cannot be resolved (a missing
/// file to read).
pub fn confine(workspace: &Path, raw: &str, access: Access) -> Result<Confined, String> {
    // The context's workspace is canonical already; resolving it again costs one system call
    // and keeps a caller that forgot from refusing every path.
    let workspace = &workspace.canonicalize().map_err(|err| {
        format!(
            "cannot resolve the workspace {}: {}",
            workspace.display(),
            plain(&err)
        )
    })?;
    let relative = lexical(workspace, raw)?;
    let path = match workspace.join(&relative).canonicalize() {
        Ok(path) => path,
        Err(err) if err.kind() == io::ErrorKind::NotFound && access == Access::Write => {
            not_yet_created(workspace, &relative, raw)?
        }
        Err(err) => return Err(format!("cannot open `{raw}`: {}", plain(&err))),
    };
    let shown = inside(workspace, &path, raw)?;
    if access == Access::Write {
        writable(&shown, raw)?;
    }
    Ok(Confined { path, shown })
}

/// `raw` as a relative path with no `..`, or why not.
fn lexical(workspace: &Path, raw: &str) -> Result<PathBuf, String> {
    if raw.contains('\0') {
        return Err("a path cannot contain a NUL byte".into());
    }
    let raw = if raw.trim().is_empty() { "." } else { raw };
    let path = Path::new(raw);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "`{raw}`: `..` is not allowed; give a path inside the workspace, relative to it"
        ));
    }
    if !path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    // An absolute path must name the workspace as canonical, or through the way it was given
    // (`/tmp/ws` on a system where that is `/private/tmp/ws`): checked again once canonical.
    path.strip_prefix(workspace)
        .map(Path::to_path_buf)
        .map_err(|_| outside(raw))
}

/// For a path that does not exist yet: its nearest existing ancestor canonicalised, joined
/// with the rest. A dangling symlink among the rest would be followed by the write: refused.
fn not_yet_created(workspace: &Path, relative: &Path, raw: &str) -> Result<PathBuf, String> {
    let full = workspace.join(relative);
    let mut missing = Vec::new();
    let mut existing = full.as_path();
    loop {
        if existing.symlink_metadata().is_ok() {
            if existing.is_symlink() && existing.canonicalize().is_err() {
                return Err(format!(
                    "`{raw}` goes through a symlink whose target does not exist; refused"
                ));
            }
            break;
        }
        let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
            break;
        };
        missing.push(name.to_owned());
        existing = parent;
    }
    let mut path = existing
        .canonicalize()
        .map_err(|err| format!("cannot resolve `{raw}`: {}", plain(&err)))?;
    path.extend(missing.iter().rev());
    Ok(path)
}

/// `path` relative to `workspace` for display, or why it is refused.
fn inside(workspace: &Path, path: &Path, raw: &str) -> Result<String, String> {
    if PSEUDO_FILESYSTEMS
        .iter()
        .any(|fs| path.starts_with(fs) && !workspace.starts_with(fs))
    {
        return Err(format!("`{raw}` is a system path; refused"));
    }
    let relative = path.strip_prefix(workspace).map_err(|_| {
        if Path::new(raw).is_absolute() {
            outside(raw)
        } else {
            format!(
                "`{raw}` leads outside the workspace (through a symlink to {}); refused",
                path.display()
            )
        }
    })?;
    let shown = relative.to_string_lossy().into_owned();
    Ok(if shown.is_empty() { ".".into() } else { shown })
}

/// Refuses writes under `.git`/`.orch` and on the workspace root.
fn writable(shown: &str, raw: &str) -> Result<(), String> {
    if shown == "." {
        return Err(format!("`{raw}` is the workspace itself, not a file"));
    }
    let protected = Path::new(shown).components().find_map(|c| match c {
        Component::Normal(name) => PROTECTED_DIRS.iter().find(|d| name == **d),
        _ => None,
    });
    if let Some(dir) = protected {
        return Err(format!(
            "`{raw}` is inside `{dir}/`, which tools never write; refused"
        ));
    }
    Ok(())
}

fn outside(raw: &str) -> String {
    format!("`{raw}` is outside the workspace; give a path relative to the workspace")
}

/// An I/O error's message without the `(os error N)` noise.
pub fn plain(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_lowercase(),
        None => text,
    }
}

/// Opens a confined file for reading, refusing a symlink swapped in since the check.
pub fn open_read(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
}

/// Opens a confined file for writing (created, or truncated), refusing a symlink swapped in
/// since the check.
pub fn open_write(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().canonicalize().expect("canonical");
        std::fs::create_dir_all(root.join("src")).expect("mkdir");
        std::fs::write(root.join("src/a.rs"), "fn a() {}\n").expect("write");
        (dir, root)
    }

    #[test]
    fn relative_and_absolute_paths_inside_resolve() {
        let (_dir, ws) = workspace();
        let rel = confine(&ws, "src/a.rs", Access::Read).expect("inside");
        assert_eq!(rel.path, ws.join("src/a.rs"));
        assert_eq!(rel.shown, "src/a.rs");
        let abs = ws.join("src/a.rs");
        let abs = confine(&ws, abs.to_str().expect("utf-8"), Access::Read).expect("inside");
        assert_eq!(abs.shown, "src/a.rs");
        assert_eq!(confine(&ws, "", Access::Read).expect("root").shown, ".");
        assert_eq!(
            confine(&ws, "./src/", Access::Read).expect("dir").shown,
            "src"
        );
    }

    #[test]
    fn escapes_are_refused() {
        let (_dir, ws) = workspace();
        for raw in [
            "../x",
            "src/../../etc/passwd",
            "/etc/passwd",
            "/proc/self/environ",
        ] {
            for access in [Access::Read, Access::Write] {
                let err = confine(&ws, raw, access).expect_err(raw);
                assert!(
                    err.contains("outside") || err.contains("`..`"),
                    "{raw}: {err}"
                );
            }
        }
        assert!(confine(&ws, "a\0b", Access::Read).is_err());
    }

    #[test]
    fn symlinks_out_are_refused_also_dangling_ones_for_writes() {
        let (_dir, ws) = workspace();
        let out = tempfile::tempdir().expect("outside");
        std::os::unix::fs::symlink(out.path(), ws.join("out")).expect("symlink");
        std::os::unix::fs::symlink(out.path().join("new"), ws.join("dangling")).expect("symlink");
        std::os::unix::fs::symlink(ws.join("src/a.rs"), ws.join("alias")).expect("symlink");
        let err = confine(&ws, "out/x", Access::Write).expect_err("through a symlink");
        assert!(err.contains("leads outside"), "{err}");
        assert!(confine(&ws, "out", Access::Read).is_err());
        let err = confine(&ws, "dangling", Access::Write).expect_err("dangling");
        assert!(err.contains("symlink"), "{err}");
        assert!(!out.path().join("new").exists());
        // A symlink that stays inside is fine.
        assert_eq!(
            confine(&ws, "alias", Access::Read).expect("inside").shown,
            "src/a.rs"
        );
    }

    #[test]
    fn new_files_resolve_through_their_parent_and_protected_dirs_are_not_written() {
        let (_dir, ws) = workspace();
        let new = confine(&ws, "src/deep/new.rs", Access::Write).expect("new file");
        assert_eq!(new.path, ws.join("src/deep/new.rs"));
        for raw in [".git/config", ".orch/journal", "sub/.git/HEAD", "."] {
            assert!(confine(&ws, raw, Access::Write).is_err(), "{raw}");
        }
        // Reading them is fine (when they exist).
        std::fs::create_dir(ws.join(".git")).expect("mkdir");
        std::fs::write(ws.join(".git/HEAD"), "ref").expect("write");
        assert!(confine(&ws, ".git/HEAD", Access::Read).is_ok());
        assert!(confine(&ws, "missing.rs", Access::Read).is_err());
    }
}
