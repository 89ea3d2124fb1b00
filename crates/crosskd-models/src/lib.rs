//! crosskd-models: student networks and frozen teachers with named feature taps, PyTorch weight
//! import without Python, and the teacher-feature cache.
//!
//! - [`students`]: the UNet-style encoder–decoder and the small ResNet classifier backbone;
//! - [`torchvision`]: MobileNetV2, VGG16 and ResNet-18/34/50 with torchvision parameter names;
//! - [`foreign`]: DINOv2 through candle-transformers (cargo feature `dinov2`, off by default);
//! - [`arch`]: the serde registry of all architectures and the builders (seeded or from weights);
//! - [`network`]: the [`network::TappedNetwork`] interface and tap validation;
//! - [`teacher`]: the [`teacher::Teacher`] trait and its random / in-house / pretrained forms;
//! - [`checkpoint`]: the model checkpoint file contract shared with the trainer;
//! - [`cache`]: the teacher-feature cache;
//! - [`naming`]: timm and torchvision weight names, mapped onto our networks' (torchvision's);
//! - [`weights`]: PyTorch checkpoint import.
//!
//! Allowed dependencies: crosskd-ops, crosskd-heads, candle-core, candle-nn, candle-transformers
//! (optional),
//! safetensors, serde, thiserror, zip, sha2, hex, rand, rand_chacha.

pub mod arch;
pub mod cache;
pub mod checkpoint;
pub mod error;
pub mod foreign;
pub mod layers;
pub mod naming;
pub mod network;
pub mod params;
pub mod storage;
pub mod students;
pub mod teacher;
pub mod torchvision;
pub mod weights;

pub use arch::{build_from_tensors, build_network, build_seeded, ArchitectureConfig};
pub use error::{ModelError, Result};
pub use network::{validate_taps, TapShapes, TappedNetwork};
pub use teacher::{
    build_teacher, FrozenTeacher, Teacher, TeacherConfig, IMAGENET_MEAN, IMAGENET_STD,
};
