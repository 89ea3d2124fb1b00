//! Which code produced a cell, and whether the report's code still matches it.
//!
//! A cell's config hash names the experiment, not the code that ran it: a kernel fix changes
//! results without changing any config. So every cell this command trains records the
//! *code identity* it ran at — the git tree id of `crates/`, `xtask/`, `Cargo.toml` and
//! `Cargo.lock` as they were on disk, uncommitted edits included (hashed through a throw-away
//! index, so a dirty tree still gets an exact identity) — and a finished cell whose identity
//! differs from the current one is retrained instead of reused.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The paths whose content decides a cell's numbers.
const CODE_PATHS: [&str; 4] = ["crates", "xtask", "Cargo.toml", "Cargo.lock"];

/// The file in a cell folder that records its provenance.
pub const CELL_FILE: &str = "provenance.json";

/// The source a process runs from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// `git rev-parse HEAD`.
    pub commit: String,
    /// Whether the code paths differ from that commit (uncommitted edits).
    pub dirty: bool,
    /// Tree id of the code paths as on disk; equal ids mean identical code.
    pub code: String,
}

impl Source {
    /// `abc1234` or `abc1234 (+ uncommitted changes)`.
    pub fn describe(&self) -> String {
        let short = &self.commit[..self.commit.len().min(12)];
        if self.dirty {
            format!(
                "{short} (+ uncommitted changes in crates/ or xtask/, code tree {})",
                &self.code[..self.code.len().min(12)]
            )
        } else {
            short.to_string()
        }
    }
}

fn git(root: &Path, args: &[&str], index: Option<&Path>) -> anyhow::Result<String> {
    let mut command = Command::new("git");
    command.current_dir(root).args(args);
    if let Some(index) = index {
        command.env("GIT_INDEX_FILE", index);
    }
    let output = command
        .output()
        .with_context(|| format!("running git {}", args.join(" ")))?;
    if !output.status.success() {
        anyhow::bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The source the repository at `root` holds now.
pub fn current(root: &Path) -> anyhow::Result<Source> {
    let commit = git(root, &["rev-parse", "HEAD"], None)?;
    let index = std::env::temp_dir().join(format!("crosskd-code-index-{}", std::process::id()));
    let _ = std::fs::remove_file(&index);
    let code = (|| {
        git(root, &["read-tree", "--empty"], Some(&index))?;
        let mut add = vec!["add", "--all", "--"];
        // git refuses a pathspec that matches nothing.
        add.extend(CODE_PATHS.iter().filter(|p| root.join(p).exists()));
        git(root, &add, Some(&index))?;
        git(root, &["write-tree"], Some(&index))
    })();
    let _ = std::fs::remove_file(&index);
    let code = code?;
    let committed_code = committed_code_tree(root)?;
    Ok(Source {
        dirty: committed_code != code,
        commit,
        code,
    })
}

/// The code tree of HEAD itself, hashed the same way as the working copy.
fn committed_code_tree(root: &Path) -> anyhow::Result<String> {
    let index =
        std::env::temp_dir().join(format!("crosskd-code-index-head-{}", std::process::id()));
    let _ = std::fs::remove_file(&index);
    let tree = (|| {
        git(root, &["read-tree", "--empty"], Some(&index))?;
        for path in CODE_PATHS {
            // `read-tree --prefix` needs the entry to exist in HEAD.
            let spec = format!("HEAD:{path}");
            let Ok(id) = git(root, &["rev-parse", "--verify", "--quiet", &spec], None) else {
                continue;
            };
            let kind = git(root, &["cat-file", "-t", &id], None)?;
            if kind == "tree" {
                git(
                    root,
                    &["read-tree", &format!("--prefix={path}/"), &id],
                    Some(&index),
                )?;
            } else {
                git(
                    root,
                    &[
                        "update-index",
                        "--add",
                        "--cacheinfo",
                        &format!("100644,{id},{path}"),
                    ],
                    Some(&index),
                )?;
            }
        }
        git(root, &["write-tree"], Some(&index))
    })();
    let _ = std::fs::remove_file(&index);
    tree
}

/// What a cell folder records about the code that trained it, if anything.
pub fn cell_source(dir: &Path) -> Option<Source> {
    let text = std::fs::read_to_string(dir.join(CELL_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Records that `dir` was trained by `source`.
pub fn record_cell(dir: &Path, source: &Source) -> anyhow::Result<()> {
    let path = dir.join(CELL_FILE);
    let text = serde_json::to_string_pretty(source)?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// Moves a stale cell out of the way (`OUT/stale/<hash>-<commit>`), so it is retrained and its
/// old numbers stay inspectable. Only the latest stale copy of a cell is kept: an older one is
/// removed first, so `stale/` never holds more than one grid however often the code changes (it
/// grew by a whole grid on every rerun after a code change).
pub fn retire_cell(out: &Path, dir: &Path, recorded: Option<&Source>) -> anyhow::Result<PathBuf> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tag = recorded
        .map(|s| s.commit[..s.commit.len().min(12)].to_string())
        .unwrap_or_else(|| "unrecorded".to_string());
    let stale = out.join("stale");
    std::fs::create_dir_all(&stale).with_context(|| format!("creating {}", stale.display()))?;
    let listing =
        std::fs::read_dir(&stale).with_context(|| format!("reading {}", stale.display()))?;
    let prefix = format!("{name}-");
    for entry in listing {
        let older = entry
            .with_context(|| format!("reading {}", stale.display()))?
            .path();
        let of_this_cell = older
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&prefix));
        if of_this_cell {
            std::fs::remove_dir_all(&older)
                .with_context(|| format!("removing the older stale copy {}", older.display()))?;
        }
    }
    let target = stale.join(format!("{name}-{tag}"));
    std::fs::rename(dir, &target)
        .with_context(|| format!("moving {} to {}", dir.display(), target.display()))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> anyhow::Result<tempfile::TempDir> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        git(root, &["init", "-q"], None)?;
        git(root, &["config", "user.email", "t@example.com"], None)?;
        git(root, &["config", "user.name", "t"], None)?;
        std::fs::create_dir_all(root.join("crates/a"))?;
        std::fs::write(root.join("crates/a/lib.rs"), "fn a() {}\n")?;
        std::fs::write(root.join("Cargo.toml"), "[workspace]\n")?;
        std::fs::write(root.join("README.md"), "docs\n")?;
        git(root, &["add", "-A"], None)?;
        git(root, &["commit", "-q", "-m", "one"], None)?;
        Ok(dir)
    }

    #[test]
    fn code_identity_follows_code_edits_not_docs() -> anyhow::Result<()> {
        let dir = repo()?;
        let root = dir.path();
        let clean = current(root)?;
        assert!(!clean.dirty, "{clean:?}");
        // Docs are not code: the identity and the clean state stay.
        std::fs::write(root.join("README.md"), "more docs\n")?;
        let docs_edited = current(root)?;
        assert_eq!(docs_edited.code, clean.code);
        assert!(!docs_edited.dirty);
        // An uncommitted code edit is dirty and has another identity...
        std::fs::write(root.join("crates/a/lib.rs"), "fn a() { let _ = 1; }\n")?;
        let edited = current(root)?;
        assert!(edited.dirty);
        assert_ne!(edited.code, clean.code);
        // ...which is exactly the identity of that code once committed.
        git(root, &["add", "-A"], None)?;
        git(root, &["commit", "-q", "-m", "two"], None)?;
        let committed = current(root)?;
        assert!(!committed.dirty);
        assert_eq!(committed.code, edited.code);
        assert_ne!(committed.commit, clean.commit);
        Ok(())
    }

    #[test]
    fn a_retired_cell_is_moved_aside_with_its_commit_and_replaces_its_older_copy(
    ) -> anyhow::Result<()> {
        let out = tempfile::tempdir()?;
        let cell = out.path().join("runs").join("abcd");
        std::fs::create_dir_all(&cell)?;
        let source = Source {
            commit: "0123456789abcdef0123".into(),
            dirty: false,
            code: "feed".into(),
        };
        record_cell(&cell, &source)?;
        assert_eq!(cell_source(&cell), Some(source.clone()));
        let moved = retire_cell(out.path(), &cell, Some(&source))?;
        assert!(!cell.exists());
        assert!(moved.ends_with("stale/abcd-0123456789ab"));
        assert_eq!(cell_source(&moved), Some(source));

        // Retired again from later code: the newer copy replaces the older one, and another
        // cell's copy (whose hash starts the same) stays.
        let other = out.path().join("stale").join("abcdef-0123456789ab");
        std::fs::create_dir_all(&other)?;
        std::fs::create_dir_all(&cell)?;
        let later = Source {
            commit: "4567".into(),
            dirty: false,
            code: "beef".into(),
        };
        record_cell(&cell, &later)?;
        let moved_again = retire_cell(out.path(), &cell, Some(&later))?;
        assert!(moved_again.ends_with("stale/abcd-4567"));
        assert_eq!(cell_source(&moved_again), Some(later));
        assert!(!moved.exists() && other.exists());
        Ok(())
    }
}
