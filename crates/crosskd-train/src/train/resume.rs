//! The start phase of a resumed run: which checkpoint it continues from.
//!
//! A crash can leave a run folder in several states, and each must be continued, not refused: no
//! checkpoint yet (start over from step 0), an intact `last` (the usual case), or a damaged
//! `last` with the checkpoint before it kept as `previous` (continue from that one and say so).
//! Records past the chosen checkpoint's step are dropped from `metrics.jsonl` by the caller, so
//! the finished run's files equal an uninterrupted run's.

use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::checkpoint::{checkpoint_path, Checkpoint};
use crate::error::{Result, TrainError};

/// Name of the checkpoint kept from before the latest `last` was written.
pub(super) const PREVIOUS: &str = "previous";

/// Where a resumed run continues from.
pub(super) enum ResumePoint {
    /// No checkpoint was written before the run stopped: train from step 0.
    FromScratch,
    /// An intact checkpoint.
    From {
        /// The checkpoint.
        checkpoint: Box<Checkpoint>,
        /// Its file.
        path: PathBuf,
    },
}

/// Picks the checkpoint to resume from in `run_dir`: `last` when intact, else `previous` when
/// intact (a warning names what was wrong with `last`), else an error naming the damaged file.
/// Checkpoints of another config (`hash` differs) are refused.
pub(super) fn find_resume_point(
    run_dir: &Path,
    device: &Device,
    hash: &str,
) -> Result<ResumePoint> {
    let last = checkpoint_path(run_dir, "last");
    let previous = checkpoint_path(run_dir, PREVIOUS);
    if !last.exists() && !previous.exists() {
        tracing::info!(
            "no checkpoint in {} yet (the run stopped before its first one): starting from step 0",
            run_dir.display()
        );
        return Ok(ResumePoint::FromScratch);
    }
    let chosen = match Checkpoint::load(&last, device) {
        Ok(ck) => (ck, last),
        Err(last_error) => match Checkpoint::load(&previous, device) {
            Ok(ck) => {
                tracing::warn!(
                    "{last_error}; resuming from {} (step {}) instead",
                    previous.display(),
                    ck.position.step
                );
                (ck, previous)
            }
            Err(_) if !previous.exists() => return Err(last_error),
            Err(previous_error) => {
                return Err(TrainError::Checkpoint {
                    path: last,
                    message: format!(
                        "no intact checkpoint to resume from: {last_error}; and {previous_error}"
                    ),
                })
            }
        },
    };
    let (checkpoint, path) = chosen;
    if checkpoint.config_hash != hash {
        return Err(TrainError::Checkpoint {
            path,
            message: format!(
                "written by a run with config hash {}, but this config hashes to {hash}: resume with the run's own config.toml",
                checkpoint.config_hash
            ),
        });
    }
    Ok(ResumePoint::From {
        checkpoint: Box::new(checkpoint),
        path,
    })
}
