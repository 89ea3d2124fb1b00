//! crosskd-projectors: learnable feature projectors for cross-task knowledge distillation.
//!
//! The standard (student → teacher) and the inverted (teacher → student) projector of
//! "Learning to Project for Cross-Task Knowledge Distillation", as one drop-in switch
//! ([`Direction`]). A [`Projector`] is a linear map on pooled features or a 1×1 convolution on
//! dense features (or an orthogonal map kept orthogonal by a polar retraction), with optional
//! per-side normalisation; [`Projector::distill`] compares the two sides with any
//! [`FeatureDistance`] and, for squared-L2 distances, splits the loss into its knowledge-transfer
//! and spectral terms (`docs/method.md`). The teacher side is always detached.
//!
//! Features are handled as row matrices (one row per sample, or per sample × position for dense
//! maps; [`rows::feature_rows`]), the view in which the method's algebra is written.
//!
//! Allowed dependencies: crosskd-ops, candle-core, candle-nn, serde, thiserror, rand and
//! rand_chacha (seeded initialisation).

pub mod config;
pub mod error;
pub mod init;
pub mod norm;
pub mod orthogonal;
pub mod projector;
pub mod rows;
pub mod split;

pub use config::{Direction, FeatureNorm, ProjectorConfig, ProjectorForm};
pub use error::{Error, Result};
pub use projector::{ComparedFeatures, DistillTerms, FeatureDistance, Projector, SquaredL2PerRow};
