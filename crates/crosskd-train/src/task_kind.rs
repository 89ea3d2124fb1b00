//! The four tasks a student can learn: a leaf module that the data sources, the config and the
//! task glue all name without importing each other.

use serde::{Deserialize, Serialize};

/// The task the student is trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Monocular depth regression (dense).
    Depth,
    /// Semantic segmentation (dense, per-pixel classes).
    Segmentation,
    /// Image-to-image translation: label map → photo (dense, RGB output).
    Translation,
    /// Image classification.
    Classification,
}

impl Task {
    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Task::Depth => "depth",
            Task::Segmentation => "segmentation",
            Task::Translation => "translation",
            Task::Classification => "classification",
        }
    }

    /// All tasks, in the order the docs list them.
    pub const ALL: [Task; 4] = [
        Task::Depth,
        Task::Segmentation,
        Task::Translation,
        Task::Classification,
    ];

    /// Whether the student predicts a map the size of its input.
    pub fn is_dense(self) -> bool {
        !matches!(self, Task::Classification)
    }
}
