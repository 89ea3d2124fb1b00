//! The named teachers of `models/teachers.toml`, compiled into the binary so that a config's
//! `teacher.name` means the same on every machine (`crosskd fetch-teachers --list` reads another
//! list for downloading). The file's header documents its keys.

use std::path::{Path, PathBuf};

use crosskd_models::naming::WeightNaming;
use crosskd_models::ArchitectureConfig;
use serde::Deserialize;

use super::hub::{check_relative, check_repo_id, check_sha256, is_commit, HubFile};
use crate::error::{Result, TrainError};

/// The shipped list, as compiled in.
const BUILTIN: &str = include_str!("../../../../models/teachers.toml");
/// Where the shipped list lives in the repository (for messages).
pub const BUILTIN_PATH: &str = "models/teachers.toml";

/// One named teacher.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CatalogueEntry {
    /// The short name configs use (`teacher.name`).
    pub name: String,
    /// The crosskd architecture that loads the weights.
    pub architecture: ArchitectureConfig,
    /// Hugging Face repository id, `ORG/NAME`.
    pub hub: String,
    /// The weights file inside the repository (safetensors).
    pub file: String,
    /// Branch, tag or commit hash.
    pub revision: String,
    /// How the file names its tensors (`timm`, `torchvision`; default detected from the names).
    #[serde(default)]
    pub naming: WeightNaming,
    /// SHA-256 of the file; with a commit `revision` this pins the entry.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Why the entry is not pinned (instead of `sha256`).
    #[serde(default)]
    pub unpinned: Option<String>,
    /// Feature taps the reproduction reads from this teacher (shown by `crosskd list teachers`).
    #[serde(default)]
    pub taps: Vec<String>,
}

/// Whether an entry's download can be verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinning {
    /// A commit revision and the file's SHA-256: the download is checked.
    Pinned {
        /// The expected SHA-256.
        sha256: String,
    },
    /// Nothing to check against; the reason is the list's.
    Unpinned {
        /// Why.
        reason: String,
    },
}

impl CatalogueEntry {
    /// The hub file the entry names (with its hash when pinned).
    pub fn hub_file(&self) -> HubFile {
        HubFile {
            repo: self.hub.clone(),
            file: self.file.clone(),
            revision: self.revision.clone(),
            sha256: self.sha256.clone(),
        }
    }

    /// Whether the entry is pinned.
    pub fn pinning(&self) -> Pinning {
        match (&self.sha256, &self.unpinned) {
            (Some(sha256), _) => Pinning::Pinned {
                sha256: sha256.clone(),
            },
            (None, reason) => Pinning::Unpinned {
                reason: reason.clone().unwrap_or_default(),
            },
        }
    }

    fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err((
                "name",
                format!(
                    "expected letters, digits, `-`, `_` or `.`, found {:?}",
                    self.name
                ),
            ));
        }
        check_repo_id(&self.hub).map_err(|m| ("hub", m))?;
        check_relative("a file in the repository", &self.file).map_err(|m| ("file", m))?;
        check_relative("a branch, tag or commit", &self.revision).map_err(|m| ("revision", m))?;
        match (&self.sha256, &self.unpinned) {
            (Some(_), Some(_)) => Err((
                "unpinned",
                "an entry with `sha256` is pinned; remove `unpinned`".to_string(),
            )),
            (None, None) => Err((
                "sha256",
                "expected `sha256` (with a commit `revision`) or `unpinned = \"reason\"`, found neither"
                    .to_string(),
            )),
            (Some(sha), None) => {
                check_sha256(sha).map_err(|m| ("sha256", m))?;
                if is_commit(&self.revision) {
                    Ok(())
                } else {
                    Err((
                        "revision",
                        format!(
                            "a pinned entry needs a commit hash (40 hex digits), found {:?}",
                            self.revision
                        ),
                    ))
                }
            }
            (None, Some(reason)) if reason.trim().is_empty() => Err((
                "unpinned",
                "expected the reason the entry is not pinned, found \"\"".to_string(),
            )),
            (None, Some(_)) => Ok(()),
        }
    }
}

/// A teacher list.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    /// Where it was read from (for messages).
    pub source: PathBuf,
    /// The entries, in file order.
    pub entries: Vec<CatalogueEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFile {
    #[serde(default)]
    teacher: Vec<CatalogueEntry>,
}

impl Catalogue {
    /// The list compiled into this binary.
    pub fn builtin() -> Result<Catalogue> {
        Catalogue::parse(BUILTIN, Path::new(BUILTIN_PATH))
    }

    /// Reads a list file.
    pub fn from_file(path: &Path) -> Result<Catalogue> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Catalogue::parse(&text, path)
    }

    /// Parses and checks a list; errors name the file and the entry's key
    /// (`teacher.resnet18-imagenet.sha256`).
    pub fn parse(text: &str, source: &Path) -> Result<Catalogue> {
        let error = |key: String, message: String| TrainError::Config {
            file: Some(source.to_path_buf()),
            key,
            message,
        };
        let list: ListFile = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| error(e.path().to_string(), e.inner().message().trim().to_string()))?;
        let mut seen = std::collections::BTreeSet::new();
        for entry in &list.teacher {
            entry
                .check()
                .map_err(|(key, m)| error(format!("teacher.{}.{key}", entry.name), m))?;
            if !seen.insert(entry.name.as_str()) {
                return Err(error(
                    format!("teacher.{}", entry.name),
                    "the name appears twice".into(),
                ));
            }
        }
        Ok(Catalogue {
            source: source.to_path_buf(),
            entries: list.teacher,
        })
    }

    /// The entry called `name`, or an error listing the names there are.
    pub fn get(&self, name: &str) -> std::result::Result<&CatalogueEntry, String> {
        self.entries.iter().find(|e| e.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
            format!(
                "expected a teacher of {} ({}), found {name:?} (see `crosskd list teachers`)",
                self.source.display(),
                names.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = "[[teacher]]\nname = \"t\"\narchitecture = { arch = \"resnet\", depth = 18 }\nhub = \"o/r\"\nfile = \"model.safetensors\"\n";

    fn parse(extra: &str) -> Result<Catalogue> {
        Catalogue::parse(&format!("{ENTRY}{extra}"), Path::new("list.toml"))
    }

    #[test]
    fn the_shipped_list_parses_and_every_entry_is_pinned_or_says_why_not() {
        let list = Catalogue::builtin().unwrap();
        assert!(!list.entries.is_empty());
        for entry in &list.entries {
            match entry.pinning() {
                Pinning::Pinned { .. } => assert!(is_commit(&entry.revision)),
                Pinning::Unpinned { reason } => assert!(!reason.is_empty(), "{}", entry.name),
            }
        }
    }

    #[test]
    fn pinning_needs_a_commit_and_a_hash_or_a_reason() {
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let sha = "a".repeat(64);
        assert!(parse(&format!("revision = \"{commit}\"\nsha256 = \"{sha}\"\n")).is_ok());
        assert!(parse("revision = \"main\"\nunpinned = \"no hash yet\"\n").is_ok());
        for (extra, key) in [
            ("revision = \"main\"\n".to_string(), "teacher.t.sha256"),
            (
                format!("revision = \"main\"\nsha256 = \"{sha}\"\n"),
                "teacher.t.revision",
            ),
            (
                format!("revision = \"{commit}\"\nsha256 = \"xyz\"\n"),
                "teacher.t.sha256",
            ),
            (
                "revision = \"main\"\nunpinned = \"\"\n".to_string(),
                "teacher.t.unpinned",
            ),
            (
                "revision = \"main\"\nunpinned = \"x\"\nsize = 3\n".to_string(),
                "size",
            ),
        ] {
            let err = parse(&extra).unwrap_err().to_string();
            assert!(
                err.contains("list.toml") && err.contains(key),
                "{extra}: {err}"
            );
        }
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let list = parse("revision = \"main\"\nunpinned = \"x\"\n").unwrap();
        let err = list.get("nope").unwrap_err();
        assert!(err.contains("\"nope\"") && err.contains("(t)"), "{err}");
    }
}
