//! The architecture registry: one serde enum naming every architecture with its configuration,
//! and the functions that build any of them with seeded random weights or from a weight file.
//!
//! In a TOML config: `arch = "unet"` followed by the fields of [`UnetConfig`], or
//! `arch = "resnet"`, `depth = 18`, and so on (unknown fields are refused).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::error::Result;
#[cfg(feature = "dinov2")]
use crate::foreign::dinov2::{Dinov2, Dinov2Config};
use crate::network::TappedNetwork;
#[cfg(feature = "dinov2")]
use crate::params::seeded_tensor;
use crate::params::{seeded_var_builder, CheckedWeights};
use crate::students::small_resnet::{SmallResnet, SmallResnetConfig};
use crate::students::unet::{Unet, UnetConfig};
use crate::torchvision::mobilenet_v2::{MobileNetV2, MobileNetV2Config};
use crate::torchvision::resnet::{ResNet, ResNetConfig};
use crate::torchvision::vgg16::{Vgg16, Vgg16Config};

/// Every architecture crosskd can build, with its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ArchitectureConfig {
    /// UNet-style encoder–decoder student (dense tasks).
    Unet(UnetConfig),
    /// Small ResNet-style classifier backbone student.
    SmallResnet(SmallResnetConfig),
    /// torchvision MobileNetV2.
    MobilenetV2(MobileNetV2Config),
    /// torchvision VGG16.
    Vgg16(Vgg16Config),
    /// torchvision ResNet-18/34/50.
    Resnet(ResNetConfig),
    /// DINOv2 ViT through candle-transformers (feature `dinov2`).
    #[cfg(feature = "dinov2")]
    Dinov2(Dinov2Config),
}

impl ArchitectureConfig {
    /// The configuration as compact JSON (what checkpoints store and identities hash).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"unserialisable\":\"{e}\"}}"))
    }

    /// The short architecture name used in messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Unet(_) => "unet",
            Self::SmallResnet(_) => "small-resnet",
            Self::MobilenetV2(_) => "mobilenet-v2",
            Self::Vgg16(_) => "vgg16",
            Self::Resnet(_) => "resnet",
            #[cfg(feature = "dinov2")]
            Self::Dinov2(_) => "dinov2",
        }
    }
}

/// Builds the network described by `cfg` with its parameters taken from `vb`.
pub fn build_network(cfg: &ArchitectureConfig, vb: VarBuilder) -> Result<Box<dyn TappedNetwork>> {
    Ok(match cfg {
        ArchitectureConfig::Unet(c) => Box::new(Unet::new(c, vb)?),
        ArchitectureConfig::SmallResnet(c) => Box::new(SmallResnet::new(c, vb)?),
        ArchitectureConfig::MobilenetV2(c) => Box::new(MobileNetV2::new(c, vb)?),
        ArchitectureConfig::Vgg16(c) => Box::new(Vgg16::new(c, vb)?),
        ArchitectureConfig::Resnet(c) => Box::new(ResNet::new(c, vb)?),
        #[cfg(feature = "dinov2")]
        ArchitectureConfig::Dinov2(c) => Box::new(Dinov2::new(c, vb)?),
    })
}

/// Builds `cfg` with fresh trainable variables in a new `VarMap`, each drawn deterministically
/// from `(seed, parameter name)`: the same seed gives identical weights on every run and device.
pub fn build_seeded(
    cfg: &ArchitectureConfig,
    seed: u64,
    dtype: DType,
    dev: &Device,
) -> Result<(Box<dyn TappedNetwork>, VarMap)> {
    let varmap = VarMap::new();
    #[cfg(feature = "dinov2")]
    if let ArchitectureConfig::Dinov2(c) = cfg {
        let mut data = varmap
            .data()
            .lock()
            .map_err(|_| crate::error::ModelError::config("dinov2", "VarMap lock poisoned"))?;
        for (name, shape, init) in c.random_init_overrides() {
            let value = seeded_tensor(seed, &name, &shape.into(), init, dtype, dev)?;
            data.insert(name, candle_core::Var::from_tensor(&value)?);
        }
    }
    let net = build_network(cfg, seeded_var_builder(&varmap, seed, dtype, dev))?;
    Ok((net, varmap))
}

/// Builds `cfg` from named tensors (already stripped of any prefix), refusing them unless they
/// are exactly the architecture's parameters and buffers with the right shapes; the error lists
/// every missing, unexpected and wrongly shaped tensor. `source_name` (a path) appears in it.
/// A missing `num_batches_tracked` is accepted (older PyTorch checkpoints lack it).
pub fn build_from_tensors(
    cfg: &ArchitectureConfig,
    tensors: HashMap<String, Tensor>,
    source_name: &str,
    dtype: DType,
    dev: &Device,
) -> Result<Box<dyn TappedNetwork>> {
    let weights = CheckedWeights::new(tensors, source_name);
    let built = build_network(cfg, weights.var_builder(dtype, dev));
    // Report the weight mismatch first: a build error is usually its consequence.
    weights.finish(cfg.name())?;
    built
}
