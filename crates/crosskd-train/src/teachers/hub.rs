//! Files of Hugging Face hub repositories through hf-hub's standard cache.
//!
//! The cache is the one every hub client shares (Python's `huggingface_hub` included):
//! `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`, laid out as
//! `models--ORG--NAME/refs/REVISION` (a file holding a commit hash),
//! `models--ORG--NAME/snapshots/COMMIT/FILE` and `models--ORG--NAME/blobs/`. A file found there
//! is used without touching the network; otherwise it is downloaded with hf-hub (from
//! `$HF_ENDPOINT` when set), unless `HF_HUB_OFFLINE` is set, and a failure says in one line what
//! to download and where to put it.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// What can go wrong resolving a hub file. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Not cached, and the network may not be used.
    #[error("{file} is not in the hf-hub cache {cache} and {reason}; {advice}")]
    NotCached {
        /// `REPO/FILE@REVISION`.
        file: String,
        /// The cache searched.
        cache: PathBuf,
        /// Why no download was tried.
        reason: String,
        /// What to download and where to put it.
        advice: String,
    },
    /// The download failed (typically: the hub cannot be reached).
    #[error("could not download {file} from the Hugging Face hub ({message}); {advice}")]
    Unreachable {
        /// `REPO/FILE@REVISION`.
        file: String,
        /// hf-hub's error.
        message: String,
        /// What to download and where to put it.
        advice: String,
    },
    /// The file is there but its SHA-256 is not the pinned one.
    #[error("{path}: SHA-256 {found}, expected {expected} for {file}; delete the file (and its blob) and download it again")]
    HashMismatch {
        /// The file checked.
        path: PathBuf,
        /// `REPO/FILE@REVISION`.
        file: String,
        /// The pinned hash.
        expected: String,
        /// The file's hash.
        found: String,
    },
    /// No cache folder can be named.
    #[error("no hf-hub cache folder: set HF_HOME (or HF_HUB_CACHE); HOME is not set either")]
    NoCacheDir,
    /// Reading a cached file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// One file of a hub model repository at a revision, with its SHA-256 when pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFile {
    /// Repository id, `ORG/NAME`.
    pub repo: String,
    /// Path of the file inside the repository.
    pub file: String,
    /// Branch, tag or commit hash.
    pub revision: String,
    /// Expected SHA-256 (lower-case hex), when pinned.
    pub sha256: Option<String>,
}

impl HubFile {
    /// `REPO/FILE@REVISION`, the way messages name it.
    pub fn label(&self) -> String {
        format!("{}/{}@{}", self.repo, self.file, self.revision)
    }

    /// The repository's folder in the cache (`models--ORG--NAME`).
    pub fn repo_dir(&self, cache: &Path) -> PathBuf {
        cache.join(format!("models--{}", self.repo.replace('/', "--")))
    }

    /// The download URL (on [`endpoint`]).
    pub fn url(&self) -> String {
        format!(
            "{}/{}/resolve/{}/{}",
            endpoint(),
            self.repo,
            self.revision,
            self.file
        )
    }

    /// Where to put the file by hand so that the cache resolves it (one sentence).
    pub fn placement_advice(&self, cache: &Path) -> String {
        let repo = self.repo_dir(cache);
        if is_commit(&self.revision) {
            format!(
                "download {} and put it at {}, or copy a cache filled by `crosskd fetch-teachers` on a connected machine",
                self.url(),
                repo.join("snapshots").join(&self.revision).join(&self.file).display()
            )
        } else {
            format!(
                "download {} and put it at {} and write COMMIT (the commit hash, or any folder name) into {}, or copy a cache filled by `crosskd fetch-teachers` or `huggingface-cli download {} {}` on a connected machine",
                self.url(),
                repo.join("snapshots/COMMIT").join(&self.file).display(),
                repo.join("refs").join(&self.revision).display(),
                self.repo,
                self.file
            )
        }
    }
}

/// The hub's address: `$HF_ENDPOINT` (a mirror), else `https://huggingface.co`.
pub fn endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .map(|e| e.trim().trim_end_matches('/').to_string())
        .unwrap_or_else(|| "https://huggingface.co".to_string())
}

/// Whether `revision` is a full commit hash (40 hex digits), which names a snapshot directly.
pub fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit())
}

/// The hf-hub cache folder: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `$HOME/.cache/huggingface/hub` (as `huggingface_hub` chooses it).
pub fn cache_dir() -> Result<PathBuf, HubError> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("HF_HUB_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(home) = var("HF_HOME") {
        return Ok(PathBuf::from(home).join("hub"));
    }
    var("HOME")
        .map(|home| PathBuf::from(home).join(".cache/huggingface/hub"))
        .ok_or(HubError::NoCacheDir)
}

/// Whether `HF_HUB_OFFLINE` forbids the network (`1`, `true`, `yes` or `on`, any case).
pub fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

/// The cached copy of `file`, if any: `snapshots/REVISION/FILE` for a commit hash, else the
/// snapshot that `refs/REVISION` names.
pub fn cached(cache: &Path, file: &HubFile) -> Option<PathBuf> {
    let repo = file.repo_dir(cache);
    let commit = if is_commit(&file.revision) {
        file.revision.clone()
    } else {
        // Written by hand, a ref may end in a newline; hub clients write none.
        std::fs::read_to_string(repo.join("refs").join(&file.revision))
            .ok()?
            .trim()
            .to_string()
    };
    let path = repo.join("snapshots").join(commit).join(&file.file);
    path.is_file().then_some(path)
}

/// The path of `file`: the cached copy, or a download into the cache when `offline` is false.
/// A pinned SHA-256 is checked either way. Unpinned downloads print a warning on stderr.
pub fn resolve(cache: &Path, file: &HubFile, offline: bool) -> Result<PathBuf, HubError> {
    let path = match cached(cache, file) {
        Some(path) => path,
        None if offline => {
            return Err(HubError::NotCached {
                file: file.label(),
                cache: cache.to_path_buf(),
                reason: "offline mode (HF_HUB_OFFLINE or --offline) forbids downloading".into(),
                advice: file.placement_advice(cache),
            })
        }
        None => {
            let path = download(cache, file)?;
            if file.sha256.is_none() {
                eprintln!(
                    "warning: {} was downloaded unpinned; its SHA-256 is {} (pin it with a commit revision)",
                    file.label(),
                    sha256_file(&path)?
                );
            }
            path
        }
    };
    verify(&path, file)?;
    Ok(path)
}

/// Downloads `file` into the cache with hf-hub.
pub fn download(cache: &Path, file: &HubFile) -> Result<PathBuf, HubError> {
    if file.sha256.is_none() {
        eprintln!(
            "warning: downloading {} unpinned: no SHA-256 to check it against (pin `sha256` and a commit `revision` to make the download verifiable)",
            file.label()
        );
    }
    let unreachable = |message: String| HubError::Unreachable {
        file: file.label(),
        message,
        advice: file.placement_advice(cache),
    };
    let api = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(cache.to_path_buf()))
        .with_progress(true)
        .with_endpoint(endpoint())
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let repo = hf_hub::Repo::with_revision(
        file.repo.clone(),
        hf_hub::RepoType::Model,
        file.revision.clone(),
    );
    api.repo(repo)
        .get(&file.file)
        .map_err(|e| unreachable(first_line(&e.to_string())))
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// Checks `path` against `file`'s pinned SHA-256 (nothing to check when unpinned).
pub fn verify(path: &Path, file: &HubFile) -> Result<(), HubError> {
    let Some(expected) = &file.sha256 else {
        return Ok(());
    };
    let found = sha256_file(path)?;
    if found.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(HubError::HashMismatch {
            path: path.to_path_buf(),
            file: file.label(),
            expected: expected.clone(),
            found,
        })
    }
}

/// The SHA-256 of a file (lower-case hex), streamed.
pub fn sha256_file(path: &Path) -> Result<String, HubError> {
    let io = |source| HubError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks `ORG/NAME`: two non-empty parts of letters, digits, `-`, `_` and `.`, none `..`.
pub fn check_repo_id(repo: &str) -> Result<(), String> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match repo.split_once('/') {
        Some((org, name)) if ok_part(org) && ok_part(name) => Ok(()),
        _ => Err(format!(
            "expected a repository id ORG/NAME such as \"timm/resnet18.tv_in1k\", found {repo:?}"
        )),
    }
}

/// Checks a path inside a repository or a revision: relative, without `..` or empty parts.
pub fn check_relative(what: &str, text: &str) -> Result<(), String> {
    let bad = text.is_empty()
        || text.starts_with('/')
        || text.contains('\\')
        || text
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..");
    if bad {
        Err(format!(
            "expected {what} (a relative path without `..`), found {text:?}"
        ))
    } else {
        Ok(())
    }
}

/// Checks a SHA-256 written in a config or list: 64 hex digits.
pub fn check_sha256(text: &str) -> Result<(), String> {
    if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("expected 64 hex digits, found {text:?}"))
    }
}

/// Puts the local file `source` into the cache as `file` at snapshot `commit`, the way hub
/// clients lay it out (the blob under `blobs/SHA256`, the snapshot entry linked to it, and
/// `refs/REVISION` naming `commit` unless the revision is a commit itself). This is how a machine
/// without the hub is pre-filled (`crosskd fetch-teachers --from`). Returns the snapshot path.
pub fn place_in_cache(
    cache: &Path,
    file: &HubFile,
    source: &Path,
    commit: &str,
) -> Result<PathBuf, HubError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| HubError::Io { path, source }
    };
    let repo = file.repo_dir(cache);
    let blobs = repo.join("blobs");
    std::fs::create_dir_all(&blobs).map_err(io(&blobs))?;
    let blob = blobs.join(sha256_file(source)?);
    if !blob.is_file() {
        std::fs::copy(source, &blob).map_err(io(&blob))?;
    }
    let snapshot = repo.join("snapshots").join(commit).join(&file.file);
    if let Some(dir) = snapshot.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    // Replacing an older copy; a missing one is the usual case.
    let _ = std::fs::remove_file(&snapshot);
    if std::fs::hard_link(&blob, &snapshot).is_err() {
        std::fs::copy(&blob, &snapshot).map_err(io(&snapshot))?;
    }
    if !is_commit(&file.revision) {
        let reference = repo.join("refs").join(&file.revision);
        if let Some(dir) = reference.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::write(&reference, commit).map_err(io(&reference))?;
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn write_cached(
        cache: &Path,
        f: &HubFile,
        commit: &str,
        bytes: &[u8],
    ) -> Result<PathBuf, HubError> {
        let source = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(source.path(), bytes).unwrap();
        place_in_cache(cache, f, source.path(), commit)
    }

    fn file(sha256: Option<String>) -> HubFile {
        HubFile {
            repo: "someone/tiny-teacher".into(),
            file: "model.safetensors".into(),
            revision: "main".into(),
            sha256,
        }
    }

    #[test]
    fn a_cached_file_resolves_offline_and_its_pinned_hash_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = b"weights";
        let path = write_cached(dir.path(), &file(None), COMMIT, bytes).unwrap();
        assert_eq!(resolve(dir.path(), &file(None), true).unwrap(), path);
        let good = hex::encode(Sha256::digest(bytes));
        assert_eq!(resolve(dir.path(), &file(Some(good)), true).unwrap(), path);
        let err = resolve(dir.path(), &file(Some("0".repeat(64))), true).unwrap_err();
        assert!(matches!(err, HubError::HashMismatch { .. }), "{err}");
        // A commit revision names its snapshot directly, without a ref.
        let mut pinned = file(None);
        pinned.revision = COMMIT.into();
        assert_eq!(resolve(dir.path(), &pinned, true).unwrap(), path);
    }

    #[test]
    fn a_ref_written_by_hand_with_a_newline_resolves() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_cached(dir.path(), &file(None), COMMIT, b"w").unwrap();
        let reference = file(None).repo_dir(dir.path()).join("refs/main");
        std::fs::write(reference, format!("{COMMIT}\n")).unwrap();
        assert_eq!(cached(dir.path(), &file(None)), Some(path));
    }

    #[test]
    fn an_uncached_file_offline_is_one_line_naming_the_url_and_the_place() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(dir.path(), &file(None), true)
            .unwrap_err()
            .to_string();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(
                "https://huggingface.co/someone/tiny-teacher/resolve/main/model.safetensors"
            ),
            "{err}"
        );
        assert!(
            err.contains("models--someone--tiny-teacher/snapshots/COMMIT/model.safetensors"),
            "{err}"
        );
        assert!(
            err.contains("models--someone--tiny-teacher/refs/main"),
            "{err}"
        );
    }

    #[test]
    fn ids_paths_and_hashes_are_checked() {
        assert!(check_repo_id("timm/resnet18.tv_in1k").is_ok());
        for bad in ["resnet18", "a/b/c", "/x", "a/..", "a b/c"] {
            assert!(check_repo_id(bad).is_err(), "{bad}");
        }
        assert!(check_relative("a file", "sub/model.safetensors").is_ok());
        for bad in ["", "/etc/passwd", "../x", "a//b"] {
            assert!(check_relative("a file", bad).is_err(), "{bad}");
        }
        assert!(check_sha256(&"a".repeat(64)).is_ok());
        assert!(check_sha256("abc").is_err());
    }
}
