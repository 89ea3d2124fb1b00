//! Frozen teachers: one [`Teacher`] trait for random-init, in-house (our own checkpoints) and
//! pretrained (torchvision-layout safetensors) networks.
//!
//! A teacher takes RGB images in `[0, 1]`, `(N, 3, H, W)`, applies its own input normalisation
//! (ImageNet mean/std for torchvision weights), runs in eval mode and returns detached features.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::arch::{build_from_tensors, build_seeded, ArchitectureConfig};
use crate::checkpoint::load_checkpoint_network;
use crate::error::Result;
use crate::naming::{to_torchvision_names, WeightNaming};
use crate::network::{validate_taps, TapShapes, TappedNetwork};
use crate::params::sorted_vars;
use crate::storage::read_safetensors;

/// ImageNet per-channel mean of RGB in `[0, 1]` (torchvision's constants).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet per-channel standard deviation of RGB in `[0, 1]` (torchvision's constants).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Per-channel input normalisation `x' = (x − mean_c) / std_c`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InputNormalization {
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
}

impl InputNormalization {
    /// torchvision's ImageNet normalisation.
    pub fn imagenet() -> Self {
        Self {
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
        }
    }

    /// Applies the normalisation to `(N, C, H, W)` images.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.mean.len();
        let mean =
            Tensor::from_vec(self.mean.clone(), (1, c, 1, 1), x.device())?.to_dtype(x.dtype())?;
        let inv_std: Vec<f32> = self.std.iter().map(|s| 1.0 / s).collect();
        let inv_std = Tensor::from_vec(inv_std, (1, c, 1, 1), x.device())?.to_dtype(x.dtype())?;
        Ok(x.broadcast_sub(&mean)?.broadcast_mul(&inv_std)?)
    }

    /// A stable text form for identities: `mean=[..],std=[..]`.
    pub fn describe(&self) -> String {
        format!("mean={:?},std={:?}", self.mean, self.std)
    }
}

/// A frozen network that returns its features at named taps.
pub trait Teacher: Send + Sync {
    /// Features at `taps` for images `x` (RGB in `[0, 1]`, `(N, 3, H, W)`), in eval mode and
    /// detached from any graph. Unknown taps are an error listing the available ones.
    fn features(&self, x: &Tensor, taps: &[&str]) -> Result<BTreeMap<String, Tensor>>;

    /// Every tap with its per-sample shape for an input of `input_hw = (H, W)`.
    fn available_taps(&self, input_hw: (usize, usize)) -> Result<TapShapes>;

    /// A stable string naming the weights (kind, architecture, seed or file hash) and the input
    /// normalisation; the feature cache keys on it.
    fn identity(&self) -> String;

    /// Checks `taps` at `input_hw` and returns their shapes (call before training starts).
    fn validate_taps(&self, input_hw: (usize, usize), taps: &[&str]) -> Result<TapShapes>;
}

/// A [`Teacher`] wrapping any [`TappedNetwork`].
pub struct FrozenTeacher {
    net: Box<dyn TappedNetwork>,
    identity: String,
    input_normalization: Option<InputNormalization>,
}

fn norm_text(n: &Option<InputNormalization>) -> String {
    n.as_ref()
        .map_or_else(|| "none".to_string(), InputNormalization::describe)
}

impl FrozenTeacher {
    /// Wraps `net` under a caller-chosen identity (the normalisation is appended to it).
    pub fn new(
        net: Box<dyn TappedNetwork>,
        identity: &str,
        input_normalization: Option<InputNormalization>,
    ) -> Self {
        let identity = format!("{identity};input={}", norm_text(&input_normalization));
        Self {
            net,
            identity,
            input_normalization,
        }
    }

    /// A randomly initialised `arch` at `seed` (deterministic: same seed, same weights).
    pub fn random(
        arch: &ArchitectureConfig,
        seed: u64,
        input_normalization: Option<InputNormalization>,
        dev: &Device,
    ) -> Result<Self> {
        let (_, varmap) = build_seeded(arch, seed, DType::F32, dev)?;
        // Rebuild from detached copies so that the frozen forward records no autograd graph.
        let tensors = sorted_vars(&varmap)
            .into_iter()
            .map(|(n, t)| (n, t.detach()))
            .collect();
        let net = build_from_tensors(
            arch,
            tensors,
            &format!("random init, seed {seed}"),
            DType::F32,
            dev,
        )?;
        Ok(Self::new(
            net,
            &format!("random;arch={};seed={seed}", arch.to_json()),
            input_normalization,
        ))
    }

    /// An in-house teacher: a checkpoint written by our trainer (see [`crate::checkpoint`]).
    pub fn from_checkpoint(
        path: &Path,
        input_normalization: Option<InputNormalization>,
        dev: &Device,
    ) -> Result<Self> {
        let (net, ckpt) = load_checkpoint_network(path, DType::F32, dev)?;
        let identity = format!(
            "checkpoint;arch={};sha256={}",
            ckpt.arch.to_json(),
            ckpt.sha256
        );
        Ok(Self::new(net, &identity, input_normalization))
    }

    /// A pretrained `arch` from a plain safetensors file whose tensor names are the
    /// architecture's (e.g. a converted torchvision state dict), validated name by name.
    pub fn pretrained(
        arch: &ArchitectureConfig,
        weights: &Path,
        input_normalization: Option<InputNormalization>,
        dev: &Device,
    ) -> Result<Self> {
        Self::pretrained_named(
            arch,
            weights,
            WeightNaming::Torchvision,
            input_normalization,
            dev,
        )
    }

    /// [`FrozenTeacher::pretrained`] from a file named in `naming`'s scheme (see
    /// [`crate::naming`]), renamed to the architecture's names before the name-by-name check.
    /// The identity holds the file's SHA-256, whatever its path.
    pub fn pretrained_named(
        arch: &ArchitectureConfig,
        weights: &Path,
        naming: WeightNaming,
        input_normalization: Option<InputNormalization>,
        dev: &Device,
    ) -> Result<Self> {
        let file = read_safetensors(weights, dev)?;
        let tensors = to_torchvision_names(arch, naming, file.tensors)?;
        let net = build_from_tensors(
            arch,
            tensors,
            &weights.display().to_string(),
            DType::F32,
            dev,
        )?;
        let identity = format!("pretrained;arch={};sha256={}", arch.to_json(), file.sha256);
        Ok(Self::new(net, &identity, input_normalization))
    }

    /// The wrapped network.
    pub fn network(&self) -> &dyn TappedNetwork {
        self.net.as_ref()
    }

    /// Runs the whole network in eval mode (after the input normalisation); returns its output.
    pub fn output(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.prepare(x)?;
        Ok(self.net.forward(&x, false)?.detach())
    }

    fn prepare(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.detach();
        match &self.input_normalization {
            Some(n) => n.apply(&x),
            None => Ok(x),
        }
    }
}

impl Teacher for FrozenTeacher {
    fn features(&self, x: &Tensor, taps: &[&str]) -> Result<BTreeMap<String, Tensor>> {
        let x = self.prepare(x)?;
        let feats = self.net.tap_features(&x, false, taps)?;
        Ok(feats.into_iter().map(|(k, v)| (k, v.detach())).collect())
    }

    fn available_taps(&self, input_hw: (usize, usize)) -> Result<TapShapes> {
        self.net.tap_shapes(input_hw)
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }

    fn validate_taps(&self, input_hw: (usize, usize), taps: &[&str]) -> Result<TapShapes> {
        validate_taps(self.net.as_ref(), input_hw, taps)
    }
}

/// Which input normalisation a configured teacher applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NormalizationChoice {
    /// Images go in as they are.
    #[default]
    None,
    /// ImageNet mean/std ([`IMAGENET_MEAN`], [`IMAGENET_STD`]).
    Imagenet,
    /// Given mean/std.
    Custom(InputNormalization),
}

impl NormalizationChoice {
    /// The normalisation, if any.
    pub fn resolve(&self) -> Option<InputNormalization> {
        match self {
            Self::None => None,
            Self::Imagenet => Some(InputNormalization::imagenet()),
            Self::Custom(n) => Some(n.clone()),
        }
    }
}

fn imagenet_choice() -> NormalizationChoice {
    NormalizationChoice::Imagenet
}

/// A teacher as written in an experiment config (`kind = "random" | "checkpoint" | "pretrained"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TeacherConfig {
    /// A random-init `architecture` at `seed`; input normalisation defaults to none.
    Random {
        /// The architecture.
        architecture: ArchitectureConfig,
        /// Seed of the weights.
        seed: u64,
        /// Input normalisation (default none).
        #[serde(default, rename = "input-normalization")]
        input_normalization: NormalizationChoice,
    },
    /// A checkpoint of our trainer; input normalisation defaults to none (what our students see).
    Checkpoint {
        /// The `.safetensors` checkpoint.
        path: PathBuf,
        /// Input normalisation (default none).
        #[serde(default, rename = "input-normalization")]
        input_normalization: NormalizationChoice,
    },
    /// Pretrained weights by parameter name; input normalisation defaults to ImageNet's.
    Pretrained {
        /// The architecture.
        architecture: ArchitectureConfig,
        /// The `.safetensors` weights.
        weights: PathBuf,
        /// How the file names its tensors (default: detected from the names).
        #[serde(default, skip_serializing_if = "WeightNaming::is_auto")]
        naming: WeightNaming,
        /// Input normalisation (default imagenet).
        #[serde(default = "imagenet_choice", rename = "input-normalization")]
        input_normalization: NormalizationChoice,
    },
}

/// Builds the teacher a config describes.
pub fn build_teacher(cfg: &TeacherConfig, dev: &Device) -> Result<FrozenTeacher> {
    match cfg {
        TeacherConfig::Random {
            architecture,
            seed,
            input_normalization,
        } => FrozenTeacher::random(architecture, *seed, input_normalization.resolve(), dev),
        TeacherConfig::Checkpoint {
            path,
            input_normalization,
        } => FrozenTeacher::from_checkpoint(path, input_normalization.resolve(), dev),
        TeacherConfig::Pretrained {
            architecture,
            weights,
            naming,
            input_normalization,
        } => FrozenTeacher::pretrained_named(
            architecture,
            weights,
            *naming,
            input_normalization.resolve(),
            dev,
        ),
    }
}
