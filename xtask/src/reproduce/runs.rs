//! Runs one grid cell, or reuses it: each cell lives in `OUT/runs/<config hash>`, so an
//! interrupted reproduction picks up where it stopped (finished cells are read back, a cell cut
//! off mid-training resumes from its last checkpoint). A cell trained by other code than the
//! current one (see [`super::provenance`]) is moved aside and retrained.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use crosskd_train::{run_training, Config, RunSummary, StopReason};

use super::provenance::{cell_source, record_cell, retire_cell, Source};

/// Where a cell's run folder is: keyed by the hash of its fully resolved config.
pub fn cell_dir(out: &Path, config: &Config) -> PathBuf {
    out.join("runs").join(config.hash())
}

/// How a cell was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Trained now from scratch.
    Trained,
    /// Continued from a checkpoint left by an interrupted reproduction.
    Resumed,
    /// Read back from a finished run.
    Reused,
    /// Trained anew because the cell on disk came from other code (moved to `OUT/stale/`).
    Retrained,
}

/// The finished summary in `dir`, if the run there completed.
pub fn finished_summary(dir: &Path) -> anyhow::Result<Option<RunSummary>> {
    let path = dir.join("summary.json");
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let summary: RunSummary = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a run summary", path.display()))?;
    Ok((summary.stop == StopReason::Finished && !summary.test.is_empty()).then_some(summary))
}

/// Resolves `config` (task defaults, validation), then trains it in its cell folder or reuses it.
/// With `source`, a cell recorded under other code (or recording none) is retired and retrained,
/// and a trained cell records `source`.
pub fn run_cell(
    out: &Path,
    config: &Config,
    source: Option<&Source>,
) -> anyhow::Result<(RunSummary, Provenance, f64)> {
    let config = config
        .with_overrides(&[])
        .context("resolving a grid config")?;
    let dir = cell_dir(out, &config);
    let mut retired = false;
    if let Some(source) = source {
        let recorded = cell_source(&dir);
        let current = recorded.as_ref().is_some_and(|r| r.code == source.code);
        if dir.exists() && !current {
            retire_cell(out, &dir, recorded.as_ref())?;
            retired = true;
        }
    }
    if let Some(summary) = finished_summary(&dir)? {
        return Ok((summary, Provenance::Reused, 0.0));
    }
    let resume = dir.join("checkpoints").join("last.safetensors").exists();
    if let Some(source) = source {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        record_cell(&dir, source)?;
    }
    let started = Instant::now();
    let summary = run_training(&config, &dir, resume)
        .with_context(|| format!("training {}", dir.display()))?;
    if summary.stop != StopReason::Finished {
        anyhow::bail!("{}: run stopped early ({:?})", dir.display(), summary.stop);
    }
    let provenance = if retired {
        Provenance::Retrained
    } else if resume {
        Provenance::Resumed
    } else {
        Provenance::Trained
    };
    Ok((summary, provenance, started.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crosskd_train::{run_training_with, RunOptions};

    fn tiny_config() -> Config {
        let mut config = Config::for_task(crosskd_train::Task::Depth);
        config.threads = 1;
        config.data.image_size = 16;
        config.data.train_samples = 16;
        config.data.val_samples = 8;
        config.data.test_samples = 8;
        config.train.batch_size = 8;
        config.train.epochs = Some(2);
        config.train.log_interval = 1;
        config
    }

    #[test]
    fn a_finished_cell_is_reused_not_retrained() -> anyhow::Result<()> {
        let out = tempfile::tempdir()?;
        let config = tiny_config();
        let (first, provenance, _) = run_cell(out.path(), &config, None)?;
        assert_eq!(provenance, Provenance::Trained);
        let (again, provenance, _) = run_cell(out.path(), &config, None)?;
        assert_eq!(provenance, Provenance::Reused);
        // Read back from summary.json: equal up to JSON's float parsing (last ulp).
        assert_eq!(
            first.test.keys().collect::<Vec<_>>(),
            again.test.keys().collect::<Vec<_>>()
        );
        for (key, value) in &first.test {
            let read = again.test[key];
            assert!(
                (value - read).abs() <= 1e-12 * value.abs().max(1.0),
                "{key}: {value} vs {read}"
            );
        }
        assert_eq!(first.run_dir, again.run_dir);
        // A different config is a different cell.
        let mut other = config.clone();
        other.seed = 9;
        let (third, provenance, _) = run_cell(out.path(), &other, None)?;
        assert_eq!(provenance, Provenance::Trained);
        assert_ne!(third.run_dir, first.run_dir);
        Ok(())
    }

    #[test]
    fn an_interrupted_cell_resumes_to_the_uninterrupted_result() -> anyhow::Result<()> {
        let config = tiny_config().with_overrides(&[])?;
        let reference = tempfile::tempdir()?;
        let (expected, _, _) = run_cell(reference.path(), &config, None)?;

        let out = tempfile::tempdir()?;
        let dir = cell_dir(out.path(), &config);
        let cut = run_training_with(
            &config,
            &dir,
            &RunOptions {
                stop_after_step: Some(1),
                ..RunOptions::default()
            },
        )?;
        assert_eq!(cut.stop, StopReason::StoppedEarly);
        assert!(finished_summary(&dir)?.is_none());
        let (resumed, provenance, _) = run_cell(out.path(), &config, None)?;
        assert_eq!(provenance, Provenance::Resumed);
        assert_eq!(resumed.test, expected.test);
        Ok(())
    }

    #[test]
    fn a_cell_from_other_code_is_retrained_and_kept_aside() -> anyhow::Result<()> {
        let out = tempfile::tempdir()?;
        let config = tiny_config();
        let old = Source {
            commit: "1111111111111111".into(),
            dirty: false,
            code: "aaaa".into(),
        };
        let new = Source {
            commit: "2222222222222222".into(),
            dirty: true,
            code: "bbbb".into(),
        };
        let (first, provenance, _) = run_cell(out.path(), &config, Some(&old))?;
        assert_eq!(provenance, Provenance::Trained);
        assert_eq!(cell_source(&first.run_dir), Some(old.clone()));
        let (_, provenance, _) = run_cell(out.path(), &config, Some(&old))?;
        assert_eq!(provenance, Provenance::Reused);
        let (again, provenance, _) = run_cell(out.path(), &config, Some(&new))?;
        assert_eq!(provenance, Provenance::Retrained);
        assert_eq!(cell_source(&again.run_dir), Some(new));
        assert!(out
            .path()
            .join("stale")
            .join(format!(
                "{}-111111111111",
                config.with_overrides(&[])?.hash()
            ))
            .join("summary.json")
            .exists());
        Ok(())
    }
}
