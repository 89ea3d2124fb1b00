//! crosskd-heads: task heads (depth, segmentation, translation, classification) and the metrics
//! each task is judged by, accumulated exactly over batches.
//!
//! Each task module holds a head (a small layer stack on a decoder or pooled feature, built by a
//! plain function from a [`candle_nn::VarBuilder`] and implementing [`candle_core::Module`]) and
//! its metrics (implementing [`TaskMetrics`]). Metrics keep sums and counts, never averages of
//! batch averages, so one batch or many give the same numbers.
//!
//! Allowed dependencies: crosskd-ops, candle-core, candle-nn, serde, thiserror.

pub mod classification;
pub mod depth;
pub mod error;
pub mod layers;
pub mod metrics;
pub mod segmentation;
pub mod translation;

pub use classification::{
    classification_head, ClassificationHead, ClassificationHeadConfig, ClassificationMetrics,
};
pub use depth::{depth_head, DepthHead, DepthHeadConfig, DepthMetrics};
pub use error::{HeadsError, Result};
pub use metrics::{PrimaryMetric, TaskMetrics};
pub use segmentation::{
    segmentation_head, SegmentationHead, SegmentationHeadConfig, SegmentationMetrics,
};
pub use translation::{
    translation_head, TranslationHead, TranslationHeadConfig, TranslationMetrics,
};

/// The four tasks crosskd trains and distils between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Monocular depth estimation.
    Depth,
    /// Semantic segmentation.
    Segmentation,
    /// Image-to-image translation.
    Translation,
    /// Image classification.
    Classification,
}

/// A task head: maps a feature to the task's prediction and knows how it is evaluated.
pub trait TaskHead: candle_core::Module + Send + Sync {
    /// The task this head solves.
    fn task(&self) -> Task;
    /// Fresh metrics for this head's predictions.
    fn new_metrics(&self) -> Box<dyn TaskMetrics>;
}

impl TaskHead for DepthHead {
    fn task(&self) -> Task {
        Task::Depth
    }

    fn new_metrics(&self) -> Box<dyn TaskMetrics> {
        Box::new(self.metrics())
    }
}

impl TaskHead for TranslationHead {
    fn task(&self) -> Task {
        Task::Translation
    }

    fn new_metrics(&self) -> Box<dyn TaskMetrics> {
        Box::new(TranslationMetrics::new())
    }
}

impl TaskHead for SegmentationHead {
    fn task(&self) -> Task {
        Task::Segmentation
    }

    fn new_metrics(&self) -> Box<dyn TaskMetrics> {
        Box::new(self.metrics())
    }
}

impl TaskHead for ClassificationHead {
    fn task(&self) -> Task {
        Task::Classification
    }

    fn new_metrics(&self) -> Box<dyn TaskMetrics> {
        Box::new(self.metrics())
    }
}
