//! crosskd-losses: feature distances, knowledge-distillation methods, task losses, the
//! transfer/spectral loss decomposition and teacher-free spectral regularisers.
//!
//! - [`Distance`]: MSE, squared L2, L1, smooth L1, SRD's log loss; implements
//!   `crosskd_projectors::FeatureDistance` so a projector can use it.
//! - [`methods`]: the [`DistillMethod`] trait (named loss terms from student/teacher features and
//!   logits), FitNets, SRD, VkD, attention transfer and logit KD, built by [`build_method`] from a
//!   [`MethodConfig`].
//! - [`task`]: depth (L1, scale-invariant log, berHu, masked), segmentation and classification
//!   cross-entropy, translation L1 + SSIM.
//! - [`decomposition`]: the f64 reference decomposition of the squared-L2 loss into
//!   knowledge-transfer and spectral terms, both directions.
//! - [`regularisers`]: the teacher-free `tail`, `random-subspace` and `energy` regularisers.
//! - [`spectral`]: singular values, stable and effective rank of projectors and features.
//!
//! Every loss and regulariser has a finite-difference gradient test.
//!
//! Allowed dependencies: crosskd-ops, crosskd-projectors, candle-core, candle-nn, serde, thiserror,
//! rand and rand_chacha (the seeded map of `random-subspace`).

pub mod decomposition;
pub mod distance;
pub mod error;
pub mod host;
pub mod methods;
pub mod regularisers;
pub mod spectral;
pub mod task;
pub mod terms;

pub use decomposition::{decompose_squared_l2, Decomposition};
pub use distance::Distance;
pub use error::{Error, Result};
pub use methods::{build_method, DistillInputs, DistillMethod, FeaturePair, MethodConfig};
pub use regularisers::{Regulariser, RegulariserConfig, TailRank};
pub use spectral::{feature_spectrum, matrix_spectrum, projector_spectrum, Spectrum};
pub use terms::{LossTerm, LossTerms};
