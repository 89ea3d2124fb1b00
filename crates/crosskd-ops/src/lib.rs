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
//!
//! # Module layering
//! The modules form a DAG; each imports only modules on the lines above its own (`error` and, in
//! tests, `gradcheck` are usable everywhere):
//!
//! 1. `error`, `kernel` (f32/f64 dispatch of the CPU kernels), `reduce` (f64 lane sums);
//!    `gradcheck` (finite differences, on `error` only).
//! 2. `channel` (per-channel bias, sums, affine), `activation`, `softmax`, `pool`, `resize`,
//!    `linalg`.
//! 3. `conv` (uses `channel`) and `norm` (uses `channel`, `reduce`, `activation`); neither imports
//!    the other.
//! 4. `fused`: the conv-BN-ReLU training op, built from `conv`'s and `norm`'s kernels (and
//!    `pool`/`resize` for the up-sampled input's gradient and fallback).
//! 5. `layers`: layer ergonomics over the kernels, `BatchNorm2d::forward_*conv_relu`, choosing
//!    between `fused` and the separate `conv` and `norm` ops.

pub mod activation;
pub mod channel;
pub mod conv;
pub mod error;
pub mod fused;
pub mod gradcheck;
mod kernel;
mod layers;
pub mod linalg;
pub mod norm;
pub mod pool;
mod reduce;
pub mod resize;
pub mod softmax;

pub use error::{Error, Result};
