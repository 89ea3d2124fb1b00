//! The fuzz targets: one per parser of outside input, each with seeds that are real files of its
//! format written by the code's own writers (or by PyTorch, for the `.pth` fixtures).

mod data;
mod models;
mod train;

use std::path::Path;

/// A parser under test.
///
/// `execute` writes the input where the parser expects a file (inside `dir`, a scratch folder
/// owned by the worker thread), runs the parser as crosskd runs it, and returns its verdict:
/// `Ok` when the input was accepted, `Err(message)` when it was refused with an error. Panics,
/// hangs and over-allocation are what the runner looks for; refusals are fine.
pub trait Target: Send {
    /// Short name (`idx`, `pth`, ...), used by `cargo xtask fuzz --target`.
    fn name(&self) -> &'static str;
    /// Valid inputs to start mutating from.
    fn seeds(&self) -> Vec<Vec<u8>>;
    /// Format tokens (keys, magic numbers, opcodes) the mutator inserts.
    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[]
    }
    /// Writes the companion files the parser needs besides the input (once per worker).
    fn prepare(&mut self, _dir: &Path) -> std::io::Result<()> {
        Ok(())
    }
    /// Runs the parser on `input`.
    fn execute(&mut self, dir: &Path, input: &[u8]) -> Result<(), String>;
}

/// A constructor of a target (targets are built inside the campaign, once per worker).
pub type MakeTarget = fn() -> Box<dyn Target>;

/// Every target: `(name, constructor)`.
pub const TARGETS: [(&str, MakeTarget); 11] = [
    ("idx", || Box::new(data::Idx)),
    ("png-depth", || Box::new(data::PngDepth)),
    ("png-labels", || Box::new(data::PngLabels)),
    ("png-image", || Box::new(data::PngImage)),
    ("pth", || Box::new(models::Pth)),
    ("model-checkpoint", || Box::new(models::ModelCheckpoint)),
    ("cache-manifest", || {
        Box::new(models::CacheManifest::default())
    }),
    ("cache-shard", || Box::new(models::CacheShard::default())),
    ("train-checkpoint", || Box::new(train::TrainCheckpoint)),
    ("toml-config", || Box::new(train::TomlConfig)),
    ("metrics-jsonl", || Box::new(train::MetricsJsonl)),
];

/// Writes `bytes` to `dir/name` and returns the path (scratch files are rewritten per run).
pub(crate) fn put(dir: &Path, name: &str, bytes: &[u8]) -> Result<std::path::PathBuf, String> {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("scratch: {e}"))?;
    }
    std::fs::write(&path, bytes).map_err(|e| format!("scratch: {e}"))?;
    Ok(path)
}

/// Any displayable error as the refusal message.
pub(crate) fn refused(e: impl std::fmt::Display) -> String {
    e.to_string()
}
