//! crosskd-ops: the tensor-ops layer of crosskd.
//!
//! Differentiable operations whose forward *and* backward passes are verified against finite
//! differences (candle 0.11.1 gets several of them silently wrong, see `docs/ops.md`), fast
//! gemm-based convolution, normalisation layers with checkpointable running statistics, and small
//! dense linear algebra (symmetric eigendecomposition, SVD, power iteration) for spectral analysis.
//!
//! Every model, projector and loss in the workspace goes through this crate rather than calling
//! the affected candle ops directly (`clippy.toml` forbids them).
//!
//! Allowed dependencies: candle-core, candle-nn, thiserror, rand, rand_chacha, and for the CPU
//! kernels rayon and gemm. Nothing from the workspace.

pub mod activation;
pub mod conv;
pub mod error;
pub mod fused;
pub mod gradcheck;
mod kernel;
pub mod linalg;
pub mod norm;
pub mod pool;
pub mod resize;
pub mod softmax;

pub use error::{Error, Result};
