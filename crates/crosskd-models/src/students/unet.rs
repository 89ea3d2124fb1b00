//! UNet-style encoder–decoder student for the dense tasks.
//!
//! `depth = K` down stages. With base width `w` and input `H×W`:
//! - `enc1` … `encK`: two 3×3 conv–norm–ReLU at `w·2^(i−1)` channels; `enc(i+1)` starts with a
//!   2×2 max pool, so `enc i` has size `H_i = ⌊H / 2^(i−1)⌋` (floor at each halving);
//! - `bottleneck`: 2×2 max pool, then two conv–norm–ReLU at `w·2^K` channels, size `H_(K+1)`;
//! - `decK` … `dec1`: resize to the size of `enc i` (nearest or bilinear), a 3×3 conv–norm–ReLU
//!   to `w·2^(i−1)` channels (`dec{i}.up`), concatenation with `enc i` when skip connections are
//!   on, and two conv–norm–ReLU. `dec1` has `out_channels` channels at the input resolution and is
//!   the network's output, which a task head consumes.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::layers::{conv2d, conv_cfg, norm, Conv2d, Norm, NormKind};
use crate::network::{TapRecorder, TapShapes, TappedNetwork};

/// How the decoder brings a feature map up to the size of its skip connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UpsampleMode {
    /// Nearest neighbour.
    #[default]
    Nearest,
    /// Bilinear (`align_corners = false`).
    Bilinear,
}

fn default_in_channels() -> usize {
    3
}
fn default_base_width() -> usize {
    32
}
fn default_depth() -> usize {
    4
}
fn default_groups() -> usize {
    8
}
fn default_true() -> bool {
    true
}

/// Configuration of [`Unet`]. Defaults: 3 input channels, base width 32, depth 4, batch norm,
/// 8 groups when group norm is chosen, skip connections on, 32 output channels, nearest upsampling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct UnetConfig {
    /// Channels of the input image.
    #[serde(default = "default_in_channels")]
    pub in_channels: usize,
    /// Channels of `enc1`; each deeper stage doubles it.
    #[serde(default = "default_base_width")]
    pub base_width: usize,
    /// Number of 2× down-sampling stages (≥ 1).
    #[serde(default = "default_depth")]
    pub depth: usize,
    /// Normalisation after each convolution.
    #[serde(default)]
    pub norm: NormKind,
    /// Groups of group normalisation (must divide `base_width` and `out_channels`).
    #[serde(default = "default_groups")]
    pub group_norm_groups: usize,
    /// Concatenate encoder features into the decoder.
    #[serde(default = "default_true")]
    pub skip_connections: bool,
    /// Channels of the output feature map (`dec1`).
    #[serde(default = "default_base_width")]
    pub out_channels: usize,
    /// Decoder upsampling.
    #[serde(default)]
    pub upsample: UpsampleMode,
}

impl Default for UnetConfig {
    fn default() -> Self {
        Self {
            in_channels: default_in_channels(),
            base_width: default_base_width(),
            depth: default_depth(),
            norm: NormKind::Batch,
            group_norm_groups: default_groups(),
            skip_connections: true,
            out_channels: default_base_width(),
            upsample: UpsampleMode::Nearest,
        }
    }
}

impl UnetConfig {
    fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(ModelError::config("unet", m));
        if self.depth == 0 || self.depth > 8 {
            return fail(format!("depth must be in 1..=8, got {}", self.depth));
        }
        if self.base_width == 0 || self.out_channels == 0 || self.in_channels == 0 {
            return fail("in-channels, base-width and out-channels must be positive".into());
        }
        if self.norm == NormKind::Group {
            let g = self.group_norm_groups;
            if g == 0 || !self.base_width.is_multiple_of(g) || !self.out_channels.is_multiple_of(g)
            {
                return fail(format!(
                    "group-norm-groups = {g} must divide base-width = {} and out-channels = {}",
                    self.base_width, self.out_channels
                ));
            }
        }
        Ok(())
    }

    /// Channels of stage `i` (1-based) of the encoder.
    fn width(&self, i: usize) -> usize {
        self.base_width << (i - 1)
    }
}

/// Two 3×3 conv–norm–ReLU layers (`conv1`, `norm1`, `conv2`, `norm2`).
#[derive(Debug, Clone)]
struct DoubleConv {
    conv1: Conv2d,
    norm1: Norm,
    conv2: Conv2d,
    norm2: Norm,
}

impl DoubleConv {
    fn new(cfg: &UnetConfig, in_c: usize, out_c: usize, vb: VarBuilder) -> Result<Self> {
        let g = cfg.group_norm_groups;
        Ok(Self {
            conv1: conv2d(in_c, out_c, 3, conv_cfg(1, 1), false, vb.pp("conv1"))?,
            norm1: norm(cfg.norm, out_c, g, vb.pp("norm1"))?,
            conv2: conv2d(out_c, out_c, 3, conv_cfg(1, 1), false, vb.pp("conv2"))?,
            norm2: norm(cfg.norm, out_c, g, vb.pp("norm2"))?,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_cat(&[x], train)
    }

    /// [`Self::forward`] of the channel concatenation of `inputs` (a skip connection), which
    /// batch norm in training never builds.
    fn forward_cat(&self, inputs: &[&Tensor], train: bool) -> Result<Tensor> {
        let x = self
            .norm1
            .forward_cat_conv_relu(&self.conv1, inputs, train)?;
        self.norm2.forward_conv_relu(&self.conv2, &x, train)
    }
}

/// One decoder stage: resize, `up` conv–norm–ReLU, optional skip concatenation, [`DoubleConv`].
#[derive(Debug, Clone)]
struct DecoderStage {
    up_conv: Conv2d,
    up_norm: Norm,
    block: DoubleConv,
}

/// The UNet student (see the module docs for its stages and taps).
#[derive(Debug, Clone)]
pub struct Unet {
    cfg: UnetConfig,
    encoders: Vec<DoubleConv>,
    bottleneck: DoubleConv,
    /// `decoders[i - 1]` is `dec i`.
    decoders: Vec<DecoderStage>,
}

impl Unet {
    /// Builds the network with parameters at `vb` (`enc1.conv1.weight`, …, `bottleneck.*`,
    /// `dec1.up.conv.weight`, `dec1.conv1.weight`, …).
    pub fn new(cfg: &UnetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let k = cfg.depth;
        let mut encoders = Vec::with_capacity(k);
        for i in 1..=k {
            let in_c = if i == 1 {
                cfg.in_channels
            } else {
                cfg.width(i - 1)
            };
            encoders.push(DoubleConv::new(
                cfg,
                in_c,
                cfg.width(i),
                vb.pp(format!("enc{i}")),
            )?);
        }
        let bottleneck = DoubleConv::new(cfg, cfg.width(k), cfg.width(k + 1), vb.pp("bottleneck"))?;
        let mut decoders = Vec::with_capacity(k);
        for i in 1..=k {
            let vbd = vb.pp(format!("dec{i}"));
            let (below, here) = (cfg.width(i + 1), cfg.width(i));
            let out_c = if i == 1 { cfg.out_channels } else { here };
            let block_in = if cfg.skip_connections { 2 * here } else { here };
            decoders.push(DecoderStage {
                up_conv: conv2d(
                    below,
                    here,
                    3,
                    conv_cfg(1, 1),
                    false,
                    vbd.pp("up").pp("conv"),
                )?,
                up_norm: norm(
                    cfg.norm,
                    here,
                    cfg.group_norm_groups,
                    vbd.pp("up").pp("norm"),
                )?,
                block: DoubleConv::new(cfg, block_in, out_c, vbd)?,
            });
        }
        Ok(Self {
            cfg: cfg.clone(),
            encoders,
            bottleneck,
            decoders,
        })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &UnetConfig {
        &self.cfg
    }

    /// Any resize but the exact 2× nearest one, which the decoder folds into its convolution.
    fn resize(&self, x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        Ok(match self.cfg.upsample {
            UpsampleMode::Nearest => crosskd_ops::resize::resize_nearest(x, h, w)?,
            UpsampleMode::Bilinear => crosskd_ops::resize::resize_bilinear(x, h, w)?,
        })
    }
}

fn halve(x: &Tensor) -> Result<Tensor> {
    Ok(crosskd_ops::pool::max_pool2d(x, (2, 2), (2, 2), (0, 0))?)
}

impl TappedNetwork for Unet {
    fn arch_name(&self) -> String {
        "unet".into()
    }

    fn pass(&self, x: &Tensor, train: bool, rec: &mut TapRecorder<'_>) -> Result<Option<Tensor>> {
        let mut skips = Vec::with_capacity(self.cfg.depth);
        let mut h = x.clone();
        for (i, enc) in self.encoders.iter().enumerate() {
            if i > 0 {
                h = halve(&h)?;
            }
            h = enc.forward(&h, train)?;
            if rec.offer(&format!("enc{}", i + 1), &h) {
                return Ok(None);
            }
            skips.push(h.clone());
        }
        h = self.bottleneck.forward(&halve(&h)?, train)?;
        if rec.offer("bottleneck", &h) {
            return Ok(None);
        }
        for (i, dec) in self.decoders.iter().enumerate().rev() {
            let skip = &skips[i];
            let (_, _, sh, sw) = skip.dims4()?;
            let (_, _, hh, hw) = h.dims4()?;
            let up = if self.cfg.upsample == UpsampleMode::Nearest && (sh, sw) == (2 * hh, 2 * hw) {
                // The exact 2× nearest up-sampling is folded into the block's convolution.
                dec.up_norm
                    .forward_upsample_conv_relu(&dec.up_conv, &h, 2, train)?
            } else {
                let up = self.resize(&h, sh, sw)?;
                dec.up_norm.forward_conv_relu(&dec.up_conv, &up, train)?
            };
            h = if self.cfg.skip_connections {
                dec.block.forward_cat(&[skip, &up], train)?
            } else {
                dec.block.forward(&up, train)?
            };
            if rec.offer(&format!("dec{}", i + 1), &h) {
                return Ok(None);
            }
        }
        Ok(Some(h))
    }

    fn tap_shapes(&self, (height, width): (usize, usize)) -> Result<TapShapes> {
        let k = self.cfg.depth;
        let (mut h, mut w) = (height, width);
        let mut sizes = Vec::with_capacity(k + 1);
        for _ in 0..=k {
            if h == 0 || w == 0 {
                return Err(ModelError::InputSize {
                    arch: self.arch_name(),
                    height,
                    width,
                    message: format!(
                        "depth {k} needs both sides to be at least 2^{k} = {}",
                        1usize << k
                    ),
                });
            }
            sizes.push((h, w));
            h /= 2;
            w /= 2;
        }
        let mut taps = Vec::with_capacity(2 * k + 1);
        for i in 1..=k {
            taps.push((
                format!("enc{i}"),
                vec![self.cfg.width(i), sizes[i - 1].0, sizes[i - 1].1],
            ));
        }
        taps.push((
            "bottleneck".into(),
            vec![self.cfg.width(k + 1), sizes[k].0, sizes[k].1],
        ));
        for i in (1..=k).rev() {
            let c = if i == 1 {
                self.cfg.out_channels
            } else {
                self.cfg.width(i)
            };
            taps.push((format!("dec{i}"), vec![c, sizes[i - 1].0, sizes[i - 1].1]));
        }
        Ok(taps)
    }

    fn output_tap(&self) -> String {
        "dec1".into()
    }
}
