//! `crosskd fetch-teachers` and `crosskd list teachers`: the named teachers against the hf-hub
//! cache. `cargo xtask fetch-teachers` runs the same code.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::catalogue::{Catalogue, CatalogueEntry, Pinning};
use super::hub::{self, HubError};

/// What `fetch-teachers` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Use the cache only (also implied by `HF_HUB_OFFLINE`).
    pub offline: bool,
    /// Only these teachers (all when empty).
    pub only: Vec<String>,
    /// Another teacher list than the compiled-in one.
    pub list: Option<PathBuf>,
    /// Another cache folder than the environment's.
    pub cache_dir: Option<PathBuf>,
    /// Put this local file into the cache as the one teacher named by `only`, instead of
    /// downloading (how a machine without the hub is filled).
    pub from: Option<PathBuf>,
}

/// Where one teacher stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeacherStatus {
    /// In the cache (or just put there), its pinned hash checked.
    Verified(PathBuf),
    /// In the cache, not pinned: this is the hash it has.
    Unpinned {
        /// The cached file.
        path: PathBuf,
        /// Its SHA-256.
        sha256: String,
    },
    /// Not in the cache, and not fetched.
    Missing(String),
    /// Present or downloaded, but not what is pinned.
    Mismatch(String),
}

impl TeacherStatus {
    /// Whether the teacher can be used.
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Verified(_) | Self::Unpinned { .. })
    }

    fn line(&self, entry: &CatalogueEntry) -> String {
        let head = format!("{:<22} {:<13}", entry.name, entry.architecture.name());
        match self {
            Self::Verified(path) => format!("{head} cached, sha256 verified  {}", path.display()),
            Self::Unpinned { path, sha256 } => format!(
                "{head} cached, unpinned (sha256 {sha256})  {}",
                path.display()
            ),
            Self::Missing(_) => format!("{head} missing  {}", entry.hub_file().url()),
            Self::Mismatch(_) => format!("{head} HASH MISMATCH"),
        }
    }
}

fn cache_dir(opts: &FetchOptions) -> anyhow::Result<PathBuf> {
    match &opts.cache_dir {
        Some(dir) => Ok(dir.clone()),
        None => Ok(hub::cache_dir()?),
    }
}

fn catalogue(list: Option<&Path>) -> anyhow::Result<Catalogue> {
    Ok(match list {
        Some(path) => Catalogue::from_file(path)?,
        None => Catalogue::builtin()?,
    })
}

/// The status of `entry` in `cache`, fetching it first unless `offline`.
pub fn fetch_one(cache: &Path, entry: &CatalogueEntry, offline: bool) -> TeacherStatus {
    let file = entry.hub_file();
    match hub::resolve(cache, &file, offline) {
        Ok(path) => status_of(path, entry),
        Err(e @ HubError::HashMismatch { .. }) => TeacherStatus::Mismatch(e.to_string()),
        Err(e) => TeacherStatus::Missing(e.to_string()),
    }
}

/// `Verified` for a pinned entry (the hash was checked by the resolution), `Unpinned` with the
/// file's hash otherwise.
fn status_of(path: PathBuf, entry: &CatalogueEntry) -> TeacherStatus {
    match entry.pinning() {
        Pinning::Pinned { .. } => TeacherStatus::Verified(path),
        Pinning::Unpinned { .. } => match hub::sha256_file(&path) {
            Ok(sha256) => TeacherStatus::Unpinned { path, sha256 },
            Err(e) => TeacherStatus::Missing(e.to_string()),
        },
    }
}

/// Runs `crosskd fetch-teachers`: one line per teacher on stdout, then an error naming every
/// teacher that is missing or does not match, with what to do about it.
pub fn fetch_teachers(opts: &FetchOptions) -> anyhow::Result<()> {
    let list = catalogue(opts.list.as_deref())?;
    let cache = cache_dir(opts)?;
    let offline = opts.offline || hub::offline_from_env();
    let selected: Vec<&CatalogueEntry> = if opts.only.is_empty() {
        list.entries.iter().collect()
    } else {
        opts.only
            .iter()
            .map(|name| list.get(name).map_err(|m| anyhow::anyhow!("--only: {m}")))
            .collect::<anyhow::Result<_>>()?
    };
    println!(
        "hf-hub cache: {}{}",
        cache.display(),
        if offline { " (offline)" } else { "" }
    );
    if let Some(from) = &opts.from {
        let [entry] = selected.as_slice() else {
            bail!(
                "--from {}: name the one teacher it is with --only",
                from.display()
            );
        };
        return import(&cache, entry, from);
    }
    let mut missing = Vec::new();
    let mut failures = Vec::new();
    for entry in selected {
        let status = fetch_one(&cache, entry, offline);
        println!("{}", status.line(entry));
        match status {
            TeacherStatus::Missing(why) => {
                missing.push(entry.name.as_str());
                if !offline {
                    failures.push(format!("{}: {why}", entry.name));
                }
            }
            TeacherStatus::Mismatch(why) => failures.push(format!("{}: {why}", entry.name)),
            _ => {}
        }
    }
    if !missing.is_empty() {
        failures.push(format!(
            "missing from {}: {}. Fill the cache where the hub is reachable (`crosskd fetch-teachers`) and copy the folder here, or put each downloaded file (URL above) in place with `crosskd fetch-teachers --only NAME --from FILE`",
            cache.display(),
            missing.join(", ")
        ));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("{}", failures.join("\n"))
    }
}

/// `--from FILE`: checks `from` against a pinned hash, then lays it out in the cache.
fn import(cache: &Path, entry: &CatalogueEntry, from: &Path) -> anyhow::Result<()> {
    let file = entry.hub_file();
    hub::verify(from, &file)?;
    let sha = hub::sha256_file(from)?;
    let commit = if hub::is_commit(&file.revision) {
        file.revision.clone()
    } else {
        // The commit is unknown offline; a name that says where the snapshot came from.
        format!("local-{}", &sha[..16])
    };
    let path = hub::place_in_cache(cache, &file, from, &commit)
        .with_context(|| format!("putting {} into the cache", from.display()))?;
    println!("{}", status_of(path, entry).line(entry));
    Ok(())
}

/// `crosskd list teachers`: each named teacher with its architecture, source, pinning, taps and
/// whether the cache holds it (never touching the network).
pub fn list_teachers(list: Option<&Path>, cache_dir: Option<&Path>) -> anyhow::Result<String> {
    let list = catalogue(list)?;
    let cache = match cache_dir {
        Some(dir) => dir.to_path_buf(),
        None => hub::cache_dir()?,
    };
    let mut out = format!(
        "{:<22} {:<13} {:<7} {:<9} {:<9} source\n",
        "name", "arch", "naming", "pinning", "cache"
    );
    for entry in &list.entries {
        let file = entry.hub_file();
        let pinning = match entry.pinning() {
            Pinning::Pinned { .. } => "pinned",
            Pinning::Unpinned { .. } => "unpinned",
        };
        let cached = if hub::cached(&cache, &file).is_some() {
            "cached"
        } else {
            "missing"
        };
        out.push_str(&format!(
            "{:<22} {:<13} {:<7} {:<9} {:<9} hub {}  taps: {}\n",
            entry.name,
            entry.architecture.name(),
            entry.naming.name(),
            pinning,
            cached,
            file.label(),
            entry.taps.join(", ")
        ));
    }
    out.push_str(&format!(
        "list: {} (compiled in unless --list); cache: {}\n",
        list.source.display(),
        cache.display()
    ));
    Ok(out)
}
