//! DINOv2 ViT through `candle_transformers::models::dinov2` (frozen use only: candle's fused layer
//! norm and softmax inside it record no gradient, which a frozen teacher does not need).
//!
//! Parameter names are candle's (`patch_embed.proj.weight`, `cls_token`, `pos_embed`,
//! `blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}`, `norm`,
//! `head`), as in the safetensors file of candle's DINOv2 example: it includes a linear ImageNet
//! `head` (2·dim → 1000) that the original facebookresearch checkpoints lack, and no `mask_token`.
//! Taps `blocks.N` (N = 0 … depth−1) are the patch tokens after block N as maps
//! `(dim, H/14, W/14)`; the output is the last one. Inputs must be square with a side divisible
//! by 14. At 518×518 the position embedding is used as trained; at other sizes candle resizes it
//! with nearest-neighbour interpolation where the original uses bicubic, so features differ
//! slightly from PyTorch's.

use candle_core::{IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::dinov2::DinoVisionTransformer;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::network::{TapRecorder, TapShapes, TappedNetwork};

/// Which DINOv2 ViT (patch size 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dinov2Size {
    /// ViT-S/14: 12 blocks, dim 384, 6 heads.
    Small,
    /// ViT-B/14: 12 blocks, dim 768, 12 heads.
    Base,
    /// ViT-L/14: 24 blocks, dim 1024, 16 heads.
    Large,
}

/// Configuration of [`Dinov2`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Dinov2Config {
    /// Model size.
    pub size: Dinov2Size,
}

impl Dinov2Config {
    /// `(depth, dim, heads)`.
    pub fn dims(&self) -> (usize, usize, usize) {
        match self.size {
            Dinov2Size::Small => (12, 384, 6),
            Dinov2Size::Base => (12, 768, 12),
            Dinov2Size::Large => (24, 1024, 16),
        }
    }

    /// The tensors a random initialisation must not leave at candle's default zero (zero layer
    /// scales would make every block the identity): `(name, shape, init)` following DINOv2's own
    /// initialisation (position embedding N(0, 0.02²), class token N(0, 10⁻¹²), layer scale 10⁻⁵).
    pub fn random_init_overrides(&self) -> Vec<(String, Vec<usize>, candle_nn::Init)> {
        let (depth, dim, _) = self.dims();
        let patches = (518 / 14) * (518 / 14);
        let mut v = vec![
            (
                "pos_embed".to_string(),
                vec![1, patches + 1, dim],
                candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            ),
            (
                "cls_token".to_string(),
                vec![1, 1, dim],
                candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: 1e-6,
                },
            ),
        ];
        for b in 0..depth {
            for ls in ["ls1", "ls2"] {
                v.push((
                    format!("blocks.{b}.{ls}.gamma"),
                    vec![dim],
                    candle_nn::Init::Const(1e-5),
                ));
            }
        }
        v
    }
}

/// A DINOv2 ViT with block taps (see the module docs).
pub struct Dinov2 {
    cfg: Dinov2Config,
    vit: DinoVisionTransformer,
}

impl std::fmt::Debug for Dinov2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dinov2")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Dinov2 {
    /// Builds the network with candle's parameter names at `vb`.
    pub fn new(cfg: &Dinov2Config, vb: VarBuilder) -> Result<Self> {
        let (depth, dim, heads) = cfg.dims();
        Ok(Self {
            cfg: cfg.clone(),
            vit: DinoVisionTransformer::new(vb, depth, dim, heads)?,
        })
    }
}

impl TappedNetwork for Dinov2 {
    fn arch_name(&self) -> String {
        "dinov2".into()
    }

    fn pass(&self, x: &Tensor, _train: bool, rec: &mut TapRecorder<'_>) -> Result<Option<Tensor>> {
        let depth = self.cfg.dims().0;
        let (_, _, h, w) = x.dims4()?;
        self.tap_shapes((h, w))?;
        let blocks: Vec<usize> = (0..depth).collect();
        // candle-transformers 0.11.1 concatenates its class token without expanding it to the
        // batch, so its DINOv2 only accepts one image at a time: run the images one by one.
        let per_image = (0..x.dim(0)?)
            .map(|i| {
                self.vit
                    .get_intermediate_layers(&x.narrow(0, i, 1)?, &blocks, true, false, false)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let maps = Tensor::cat(&per_image, 1)?;
        // One call computes every block, so there is nothing to save by ending at a tap.
        for b in 0..depth {
            rec.offer(&format!("blocks.{b}"), &maps.i(b)?);
        }
        Ok(Some(maps.i(depth - 1)?))
    }

    fn tap_shapes(&self, (height, width): (usize, usize)) -> Result<TapShapes> {
        if height != width || height % 14 != 0 || height == 0 {
            return Err(ModelError::InputSize {
                arch: self.arch_name(),
                height,
                width,
                message: "inputs must be square with a side divisible by 14".into(),
            });
        }
        let (depth, dim, _) = self.cfg.dims();
        Ok((0..depth)
            .map(|b| (format!("blocks.{b}"), vec![dim, height / 14, width / 14]))
            .collect())
    }

    fn output_tap(&self) -> String {
        format!("blocks.{}", self.cfg.dims().0 - 1)
    }
}
