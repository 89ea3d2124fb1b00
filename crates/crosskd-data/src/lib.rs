//! crosskd-data: datasets and batching for crosskd — procedural scenes with exact depth and
//! labels, Fashion-MNIST, real-world loaders (NYUv2, pix2pix, ImageFolder, Cityscapes).
//!
//! - [`Dataset`]: length + sample by index, samples typed by task ([`Sample`], [`Target`]),
//!   composed by wrappers ([`Subset`], [`split`], [`Mapped`]).
//! - [`DataLoader`]: seeded per-epoch shuffle, paired augmentation ([`AugmentConfig`]),
//!   normalisation, stacking into candle tensors ([`Batch`]), background workers behind a
//!   bounded queue; batches are identical for any worker count.
//! - [`scenes`]: the procedural ray-cast renderer (RGB, z-depth, class ids) and its three tasks.
//! - [`sources`]: readers for data on disk.
//!
//! Allowed dependencies: candle-core, image, flate2, rand, rand_chacha, serde, thiserror,
//! crossbeam-channel, rayon. No other workspace crate (data sits below train and xtask only).

mod augment;
mod dataset;
mod error;
pub mod hash;
mod loader;
mod sample;
pub mod scenes;
pub mod sources;

pub use augment::{resize_image, AugmentConfig};
pub use dataset::{split, Dataset, Mapped, Subset};
pub use error::{DataError, Result};
pub use loader::{Batch, BatchTarget, DataLoader, EpochBatches, LoaderConfig, Normalization};
pub use sample::{Grid, Image, Sample, Target, IGNORE_CLASS};
pub use scenes::{SceneConfig, SceneDataset, SceneFrame, SceneRenderer, SceneTask};
pub use sources::cityscapes::Cityscapes;
pub use sources::fashion_mnist::{FashionMnist, FashionMnistOptions, Split};
pub use sources::image_folder::ImageFolder;
pub use sources::nyu::NyuDepth;
pub use sources::pix2pix::{Direction, PairedFolder};
