//! ResNet-18/34/50 in the torchvision layout (`torchvision.models.resnet{18,34,50}`, v1.5: the
//! bottleneck's stride sits on its 3×3 convolution).
//!
//! `conv1` (7×7, stride 2) – `bn1` – ReLU – 3×3 stride-2 max pool (tap `stem`, 64 channels at
//! 1/4), `layer1` … `layer4` (taps of the same names; 64/128/256/512 channels, ×4 for ResNet-50,
//! at 1/4, 1/8, 1/16, 1/32), global average pool (`pool`), `fc` (`logits`, the output). Blocks are
//! `layerL.B.conv1/bn1/conv2/bn2[/conv3/bn3]` with shortcut `layerL.0.downsample.0` (1×1 conv)
//! and `.1` (BN).

use candle_core::Tensor;
use candle_nn::{Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::layers::{batch_norm, conv2d, conv_cfg, conv_out, relu, Conv2d, Norm};
use crate::network::{TapRecorder, TapShapes, TappedNetwork};

fn default_classes() -> usize {
    1000
}

/// Configuration of [`ResNet`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ResNetConfig {
    /// 18, 34 or 50.
    pub depth: usize,
    /// Outputs of `fc` (default 1000).
    #[serde(default = "default_classes")]
    pub num_classes: usize,
}

/// One residual block (basic for 18/34, bottleneck for 50).
#[derive(Debug, Clone)]
struct Block {
    convs: Vec<(Conv2d, Norm)>,
    downsample: Option<(Conv2d, Norm)>,
}

impl Block {
    fn new(
        in_c: usize,
        planes: usize,
        stride: usize,
        bottleneck: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let out_c = if bottleneck { planes * 4 } else { planes };
        let pair =
            |i: usize, cin: usize, cout: usize, k: usize, s: usize| -> Result<(Conv2d, Norm)> {
                Ok((
                    conv2d(
                        cin,
                        cout,
                        k,
                        conv_cfg(s, k / 2),
                        false,
                        vb.pp(format!("conv{i}")),
                    )?,
                    batch_norm(cout, vb.pp(format!("bn{i}")))?,
                ))
            };
        let convs = if bottleneck {
            vec![
                pair(1, in_c, planes, 1, 1)?,
                pair(2, planes, planes, 3, stride)?,
                pair(3, planes, out_c, 1, 1)?,
            ]
        } else {
            vec![
                pair(1, in_c, planes, 3, stride)?,
                pair(2, planes, planes, 3, 1)?,
            ]
        };
        let downsample = if stride != 1 || in_c != out_c {
            let vbd = vb.pp("downsample");
            Some((
                conv2d(in_c, out_c, 1, conv_cfg(stride, 0), false, vbd.pp(0))?,
                batch_norm(out_c, vbd.pp(1))?,
            ))
        } else {
            None
        };
        Ok(Self { convs, downsample })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = x.clone();
        let last = self.convs.len() - 1;
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            h = if i != last {
                bn.forward_conv_relu(conv, &h, train)?
            } else {
                bn.forward(&conv.forward(&h)?, train)?
            };
        }
        let identity = match &self.downsample {
            Some((conv, bn)) => bn.forward(&conv.forward(x)?, train)?,
            None => x.clone(),
        };
        relu(&(h + identity)?)
    }
}

/// torchvision's ResNet (see the module docs for layout and taps).
#[derive(Debug, Clone)]
pub struct ResNet {
    cfg: ResNetConfig,
    conv1: Conv2d,
    bn1: Norm,
    layers: Vec<Vec<Block>>,
    fc: Linear,
    expansion: usize,
}

impl ResNet {
    /// Builds the network with torchvision's parameter names at `vb`.
    pub fn new(cfg: &ResNetConfig, vb: VarBuilder) -> Result<Self> {
        let (counts, bottleneck): ([usize; 4], bool) = match cfg.depth {
            18 => ([2, 2, 2, 2], false),
            34 => ([3, 4, 6, 3], false),
            50 => ([3, 4, 6, 3], true),
            d => {
                return Err(ModelError::config(
                    "resnet",
                    format!("depth must be 18, 34 or 50, got {d}"),
                ))
            }
        };
        if cfg.num_classes == 0 {
            return Err(ModelError::config("resnet", "num-classes must be positive"));
        }
        let expansion = if bottleneck { 4 } else { 1 };
        let conv1 = conv2d(3, 64, 7, conv_cfg(2, 3), false, vb.pp("conv1"))?;
        let bn1 = batch_norm(64, vb.pp("bn1"))?;
        let mut in_c = 64;
        let mut layers = Vec::with_capacity(4);
        for (l, &count) in counts.iter().enumerate() {
            let planes = 64 << l;
            let vbl = vb.pp(format!("layer{}", l + 1));
            let mut blocks = Vec::with_capacity(count);
            for b in 0..count {
                let stride = if l > 0 && b == 0 { 2 } else { 1 };
                blocks.push(Block::new(in_c, planes, stride, bottleneck, vbl.pp(b))?);
                in_c = planes * expansion;
            }
            layers.push(blocks);
        }
        let fc = candle_nn::linear(512 * expansion, cfg.num_classes, vb.pp("fc"))?;
        Ok(Self {
            cfg: cfg.clone(),
            conv1,
            bn1,
            layers,
            fc,
            expansion,
        })
    }
}

impl TappedNetwork for ResNet {
    fn arch_name(&self) -> String {
        format!("resnet{}", self.cfg.depth)
    }

    fn pass(&self, x: &Tensor, train: bool, rec: &mut TapRecorder<'_>) -> Result<Option<Tensor>> {
        let h = self.bn1.forward_conv_relu(&self.conv1, x, train)?;
        let mut h = crosskd_ops::pool::max_pool2d(&h, (3, 3), (2, 2), (1, 1))?;
        if rec.offer("stem", &h) {
            return Ok(None);
        }
        for (l, blocks) in self.layers.iter().enumerate() {
            for block in blocks {
                h = block.forward(&h, train)?;
            }
            if rec.offer(&format!("layer{}", l + 1), &h) {
                return Ok(None);
            }
        }
        let pooled = crosskd_ops::pool::global_avg_pool2d(&h)?;
        if rec.offer("pool", &pooled) {
            return Ok(None);
        }
        let logits = self.fc.forward(&pooled)?;
        if rec.offer("logits", &logits) {
            return Ok(None);
        }
        Ok(Some(logits))
    }

    fn tap_shapes(&self, (height, width): (usize, usize)) -> Result<TapShapes> {
        let too_small = || ModelError::InputSize {
            arch: self.arch_name(),
            height,
            width,
            message: "a feature map shrank to zero size".into(),
        };
        let side = |n: usize| -> Option<usize> { conv_out(conv_out(n, 7, 2, 3, 1)?, 3, 2, 1, 1) };
        let (mut h, mut w) = (
            side(height).ok_or_else(too_small)?,
            side(width).ok_or_else(too_small)?,
        );
        let mut taps = vec![("stem".to_string(), vec![64, h, w])];
        for l in 0..4 {
            if l > 0 {
                h = conv_out(h, 3, 2, 1, 1).ok_or_else(too_small)?;
                w = conv_out(w, 3, 2, 1, 1).ok_or_else(too_small)?;
            }
            taps.push((
                format!("layer{}", l + 1),
                vec![(64 << l) * self.expansion, h, w],
            ));
        }
        taps.push(("pool".into(), vec![512 * self.expansion]));
        taps.push(("logits".into(), vec![self.cfg.num_classes]));
        Ok(taps)
    }

    fn output_tap(&self) -> String {
        "logits".into()
    }
}
