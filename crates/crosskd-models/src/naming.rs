//! Weight naming schemes: published checkpoints name the same parameters differently, and our
//! networks use torchvision's names. [`to_torchvision_names`] renames (and reshapes, where the
//! layouts differ) a timm state dict so that the torchvision-layout networks load it.
//!
//! | architecture  | timm                                  | torchvision                    |
//! |---------------|---------------------------------------|--------------------------------|
//! | ResNet-18/34/50 | the same names                      | `conv1`, `bn1`, `layerL.B.*`, `fc` |
//! | MobileNetV2   | `conv_stem`, `bn1`                    | `features.0.{0,1}`             |
//! |               | `blocks.0.0.{conv_dw,bn1,conv_pw,bn2}` | `features.1.conv.{0.0,0.1,1,2}` |
//! |               | `blocks.S.B.{conv_pw,bn1,conv_dw,bn2,conv_pwl,bn3}` | `features.I.conv.{0.0,0.1,1.0,1.1,2,3}` (I counts blocks from 1) |
//! |               | `conv_head`, `bn2`, `classifier`      | `features.18.{0,1}`, `classifier.1` |
//! | VGG16         | `pre_logits.fc1` (4096, 512, 7, 7)    | `classifier.0` (4096, 25088)   |
//! |               | `pre_logits.fc2` (4096, 4096, 1, 1)   | `classifier.3` (4096, 4096)    |
//! |               | `head.fc`                             | `classifier.6`                 |
//!
//! timm's VGG16 stores its first two fully connected layers as 7×7 and 1×1 convolutions. A 7×7
//! convolution over the 7×7 map equals torchvision's linear layer over the flattened map, and
//! flattening `(C, 7, 7)` is row-major like reshaping `(O, C, 7, 7)` to `(O, C·49)`, so the
//! weights reshape without reordering.
//!
//! The maps are tested against the state dicts of the real libraries: the manifests in
//! `models/manifests/` were written by `models/manifests/generate.py` (names and shapes of
//! `timm.create_model(name, pretrained=False)` and `torchvision.models.NAME(weights=None)`).

use std::collections::HashMap;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::arch::ArchitectureConfig;
use crate::error::{ModelError, Result};

/// How the tensors of a weight file are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WeightNaming {
    /// Decide from the file: timm when it holds a name only timm uses (`conv_stem.weight`,
    /// `head.fc.weight`, `pre_logits.fc1.weight`), torchvision otherwise.
    #[default]
    Auto,
    /// torchvision's names (also those of `crosskd import-weights` and of our checkpoints).
    Torchvision,
    /// timm's names (`timm.create_model(...).state_dict()`, the Hugging Face `timm/` repos).
    Timm,
}

impl WeightNaming {
    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Torchvision => "torchvision",
            Self::Timm => "timm",
        }
    }

    /// Whether this is the default ([`WeightNaming::Auto`]); configs leave it out then.
    pub fn is_auto(&self) -> bool {
        *self == Self::Auto
    }

    /// The concrete scheme of a file with these tensor names (resolves `Auto`).
    pub fn detect<'a>(self, mut names: impl Iterator<Item = &'a str>) -> WeightNaming {
        const TIMM_ONLY: [&str; 3] = [
            "conv_stem.weight",
            "head.fc.weight",
            "pre_logits.fc1.weight",
        ];
        match self {
            Self::Auto if names.any(|n| TIMM_ONLY.contains(&n)) => Self::Timm,
            Self::Auto => Self::Torchvision,
            other => other,
        }
    }
}

/// The torchvision name and shape of the tensor a `scheme` file stores as `(name, shape)`, for
/// the network `arch`. Names the scheme does not know are returned unchanged, so the strict
/// loader reports them as unexpected with their original names.
pub fn torchvision_name(
    arch: &ArchitectureConfig,
    scheme: WeightNaming,
    name: &str,
    shape: &[usize],
) -> (String, Vec<usize>) {
    let mapped = match (scheme, arch) {
        (WeightNaming::Timm, ArchitectureConfig::MobilenetV2(_)) => {
            timm_mobilenet_v2(name).map(|n| (n, shape.to_vec()))
        }
        (WeightNaming::Timm, ArchitectureConfig::Vgg16(_)) => timm_vgg16(name, shape),
        _ => None,
    };
    mapped.unwrap_or_else(|| (name.to_string(), shape.to_vec()))
}

/// Renames (and reshapes) the tensors of a `naming` file to torchvision's names for `arch`.
/// Two tensors mapping to one name is an error naming both.
pub fn to_torchvision_names(
    arch: &ArchitectureConfig,
    naming: WeightNaming,
    tensors: HashMap<String, Tensor>,
) -> Result<HashMap<String, Tensor>> {
    let scheme = naming.detect(tensors.keys().map(String::as_str));
    if scheme == WeightNaming::Torchvision {
        return Ok(tensors);
    }
    let mut sources: HashMap<String, String> = HashMap::with_capacity(tensors.len());
    let mut out = HashMap::with_capacity(tensors.len());
    let mut names: Vec<String> = tensors.keys().cloned().collect();
    names.sort();
    let mut tensors = tensors;
    for name in names {
        let Some(t) = tensors.remove(&name) else {
            continue;
        };
        let (new_name, shape) = torchvision_name(arch, scheme, &name, t.dims());
        let t = if shape.as_slice() == t.dims() {
            t
        } else {
            t.reshape(shape)?
        };
        if let Some(first) = sources.insert(new_name.clone(), name.clone()) {
            return Err(ModelError::config(
                arch.name(),
                format!(
                    "{} names: `{first}` and `{name}` both map to `{new_name}`",
                    scheme.name()
                ),
            ));
        }
        out.insert(new_name, t);
    }
    Ok(out)
}

/// Blocks per inverted-residual stage of MobileNetV2 (timm's `blocks.S`), in order.
const MOBILENET_V2_STAGE_BLOCKS: [usize; 7] = [1, 2, 3, 4, 3, 3, 1];

fn timm_mobilenet_v2(name: &str) -> Option<String> {
    let (module, leaf) = name.rsplit_once('.')?;
    let renamed = match module {
        "conv_stem" => "features.0.0".to_string(),
        "bn1" => "features.0.1".to_string(),
        "conv_head" => "features.18.0".to_string(),
        "bn2" => "features.18.1".to_string(),
        "classifier" => "classifier.1".to_string(),
        _ => {
            let rest = module.strip_prefix("blocks.")?;
            let mut parts = rest.splitn(3, '.');
            let stage: usize = parts.next()?.parse().ok()?;
            let block: usize = parts.next()?.parse().ok()?;
            let layer = parts.next()?;
            if stage >= MOBILENET_V2_STAGE_BLOCKS.len() || block >= MOBILENET_V2_STAGE_BLOCKS[stage]
            {
                return None;
            }
            let index = 1 + MOBILENET_V2_STAGE_BLOCKS[..stage].iter().sum::<usize>() + block;
            // The first block has no expansion: depthwise, then the projection.
            let inner = match (stage, layer) {
                (0, "conv_dw") => "0.0",
                (0, "bn1") => "0.1",
                (0, "conv_pw") => "1",
                (0, "bn2") => "2",
                (_, "conv_pw") => "0.0",
                (_, "bn1") => "0.1",
                (_, "conv_dw") => "1.0",
                (_, "bn2") => "1.1",
                (_, "conv_pwl") => "2",
                (_, "bn3") => "3",
                _ => return None,
            };
            format!("features.{index}.conv.{inner}")
        }
    };
    Some(format!("{renamed}.{leaf}"))
}

fn timm_vgg16(name: &str, shape: &[usize]) -> Option<(String, Vec<usize>)> {
    let (module, leaf) = name.rsplit_once('.')?;
    let renamed = match module {
        "pre_logits.fc1" => "classifier.0",
        "pre_logits.fc2" => "classifier.3",
        "head.fc" => "classifier.6",
        _ => return None,
    };
    // Convolution weights (O, C, kh, kw) become linear weights (O, C·kh·kw).
    let shape = match shape {
        [o, rest @ ..] if leaf == "weight" && rest.len() == 3 => {
            vec![*o, rest.iter().product()]
        }
        other => other.to_vec(),
    };
    Some((format!("{renamed}.{leaf}"), shape))
}

#[cfg(test)]
mod tests;
