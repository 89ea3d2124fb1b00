//! A small ResNet-style classifier backbone (CIFAR-style stem, basic blocks).
//!
//! `stem`: 3×3 conv (stride `stem_stride`)–norm–ReLU to `widths[0]` channels; `stage i` (1-based):
//! `blocks[i−1]` basic blocks at `widths[i−1]` channels, the first one with stride 2 for `i > 1`
//! (1×1 conv–norm shortcut when the shape changes); `pooled`: global average pool, the output
//! `(N, widths.last())` fed to a classification head.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::layers::{conv2d, conv_cfg, conv_out, norm, relu, Conv2d, Norm, NormKind};
use crate::network::{TapRecorder, TapShapes, TappedNetwork};

fn default_in_channels() -> usize {
    3
}
fn default_widths() -> Vec<usize> {
    vec![32, 64, 128, 256]
}
fn default_blocks() -> Vec<usize> {
    vec![2, 2, 2, 2]
}
fn default_groups() -> usize {
    8
}
fn default_stem_stride() -> usize {
    1
}

/// Configuration of [`SmallResnet`]. Defaults: 3 input channels, widths `[32, 64, 128, 256]`,
/// blocks `[2, 2, 2, 2]` (a ResNet-18 layout at a quarter of the width), batch norm, stem stride 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SmallResnetConfig {
    /// Channels of the input image.
    #[serde(default = "default_in_channels")]
    pub in_channels: usize,
    /// Channels of each stage.
    #[serde(default = "default_widths")]
    pub widths: Vec<usize>,
    /// Basic blocks in each stage (same length as `widths`).
    #[serde(default = "default_blocks")]
    pub blocks: Vec<usize>,
    /// Normalisation after each convolution.
    #[serde(default)]
    pub norm: NormKind,
    /// Groups of group normalisation (must divide every width).
    #[serde(default = "default_groups")]
    pub group_norm_groups: usize,
    /// Stride of the stem convolution (1 for 28–32 px inputs, 2 for larger ones).
    #[serde(default = "default_stem_stride")]
    pub stem_stride: usize,
}

impl Default for SmallResnetConfig {
    fn default() -> Self {
        Self {
            in_channels: default_in_channels(),
            widths: default_widths(),
            blocks: default_blocks(),
            norm: NormKind::Batch,
            group_norm_groups: default_groups(),
            stem_stride: default_stem_stride(),
        }
    }
}

impl SmallResnetConfig {
    fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(ModelError::config("small-resnet", m));
        if self.widths.is_empty() || self.widths.len() != self.blocks.len() {
            return fail(format!(
                "widths ({:?}) and blocks ({:?}) must be non-empty and of equal length",
                self.widths, self.blocks
            ));
        }
        if self.widths.contains(&0) || self.blocks.contains(&0) || self.in_channels == 0 {
            return fail("widths, blocks and in-channels must be positive".into());
        }
        if !(1..=4).contains(&self.stem_stride) {
            return fail(format!(
                "stem-stride must be in 1..=4, got {}",
                self.stem_stride
            ));
        }
        if self.norm == NormKind::Group {
            let g = self.group_norm_groups;
            if g == 0 || self.widths.iter().any(|w| w % g != 0) {
                return fail(format!(
                    "group-norm-groups = {g} must divide every width {:?}",
                    self.widths
                ));
            }
        }
        Ok(())
    }
}

/// A basic residual block: `relu(norm2(conv2(relu(norm1(conv1(x))))) + shortcut(x))`.
#[derive(Debug, Clone)]
struct BasicBlock {
    conv1: Conv2d,
    norm1: Norm,
    conv2: Conv2d,
    norm2: Norm,
    shortcut: Option<(Conv2d, Norm)>,
}

impl BasicBlock {
    fn new(
        cfg: &SmallResnetConfig,
        in_c: usize,
        out_c: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let g = cfg.group_norm_groups;
        let shortcut = if stride != 1 || in_c != out_c {
            let vbs = vb.pp("downsample");
            Some((
                conv2d(in_c, out_c, 1, conv_cfg(stride, 0), false, vbs.pp("conv"))?,
                norm(cfg.norm, out_c, g, vbs.pp("norm"))?,
            ))
        } else {
            None
        };
        Ok(Self {
            conv1: conv2d(in_c, out_c, 3, conv_cfg(stride, 1), false, vb.pp("conv1"))?,
            norm1: norm(cfg.norm, out_c, g, vb.pp("norm1"))?,
            conv2: conv2d(out_c, out_c, 3, conv_cfg(1, 1), false, vb.pp("conv2"))?,
            norm2: norm(cfg.norm, out_c, g, vb.pp("norm2"))?,
            shortcut,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.norm1.forward_conv_relu(&self.conv1, x, train)?;
        let h = self.norm2.forward(&self.conv2.forward(&h)?, train)?;
        let identity = match &self.shortcut {
            Some((conv, norm)) => norm.forward(&conv.forward(x)?, train)?,
            None => x.clone(),
        };
        relu(&(h + identity)?)
    }
}

/// The small ResNet classifier backbone (see the module docs for stages and taps).
#[derive(Debug, Clone)]
pub struct SmallResnet {
    cfg: SmallResnetConfig,
    stem_conv: Conv2d,
    stem_norm: Norm,
    stages: Vec<Vec<BasicBlock>>,
}

impl SmallResnet {
    /// Builds the network with parameters at `vb` (`stem.conv.weight`, `stem.norm.*`,
    /// `stage1.0.conv1.weight`, …, `stage2.0.downsample.conv.weight`, …).
    pub fn new(cfg: &SmallResnetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let w0 = cfg.widths[0];
        let stem_conv = conv2d(
            cfg.in_channels,
            w0,
            3,
            conv_cfg(cfg.stem_stride, 1),
            false,
            vb.pp("stem").pp("conv"),
        )?;
        let stem_norm = norm(
            cfg.norm,
            w0,
            cfg.group_norm_groups,
            vb.pp("stem").pp("norm"),
        )?;
        let mut stages = Vec::with_capacity(cfg.widths.len());
        let mut in_c = w0;
        for (s, (&width, &count)) in cfg.widths.iter().zip(&cfg.blocks).enumerate() {
            let vbs = vb.pp(format!("stage{}", s + 1));
            let mut blocks = Vec::with_capacity(count);
            for b in 0..count {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(cfg, in_c, width, stride, vbs.pp(b))?);
                in_c = width;
            }
            stages.push(blocks);
        }
        Ok(Self {
            cfg: cfg.clone(),
            stem_conv,
            stem_norm,
            stages,
        })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &SmallResnetConfig {
        &self.cfg
    }
}

impl TappedNetwork for SmallResnet {
    fn arch_name(&self) -> String {
        "small-resnet".into()
    }

    fn pass(&self, x: &Tensor, train: bool, rec: &mut TapRecorder<'_>) -> Result<Option<Tensor>> {
        let mut h = self
            .stem_norm
            .forward_conv_relu(&self.stem_conv, x, train)?;
        if rec.offer("stem", &h) {
            return Ok(None);
        }
        for (s, blocks) in self.stages.iter().enumerate() {
            for block in blocks {
                h = block.forward(&h, train)?;
            }
            if rec.offer(&format!("stage{}", s + 1), &h) {
                return Ok(None);
            }
        }
        let pooled = crosskd_ops::pool::global_avg_pool2d(&h)?;
        if rec.offer("pooled", &pooled) {
            return Ok(None);
        }
        Ok(Some(pooled))
    }

    fn tap_shapes(&self, (height, width): (usize, usize)) -> Result<TapShapes> {
        let too_small = || ModelError::InputSize {
            arch: self.arch_name(),
            height,
            width,
            message: "a feature map shrank to zero size".into(),
        };
        let s = self.cfg.stem_stride;
        let mut h = conv_out(height, 3, s, 1, 1).ok_or_else(too_small)?;
        let mut w = conv_out(width, 3, s, 1, 1).ok_or_else(too_small)?;
        let mut taps = vec![("stem".to_string(), vec![self.cfg.widths[0], h, w])];
        for (i, &c) in self.cfg.widths.iter().enumerate() {
            if i > 0 {
                h = conv_out(h, 3, 2, 1, 1).ok_or_else(too_small)?;
                w = conv_out(w, 3, 2, 1, 1).ok_or_else(too_small)?;
            }
            taps.push((format!("stage{}", i + 1), vec![c, h, w]));
        }
        taps.push(("pooled".into(), vec![*self.cfg.widths.last().unwrap_or(&0)]));
        Ok(taps)
    }

    fn output_tap(&self) -> String {
        "pooled".into()
    }
}
