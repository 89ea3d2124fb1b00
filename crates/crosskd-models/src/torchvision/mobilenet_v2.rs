//! MobileNetV2 in the torchvision layout (`torchvision.models.mobilenet_v2`, width 1.0), so that
//! torchvision's ImageNet state dict loads by name.
//!
//! `features.0`: 3×3 stride-2 conv–BN–ReLU6 to 32 channels; `features.1` … `features.17`:
//! inverted residual blocks with settings `(t, c, n, s)` = (1,16,1,1), (6,24,2,2), (6,32,3,2),
//! (6,64,4,2), (6,96,3,1), (6,160,3,2), (6,320,1,1); `features.18`: 1×1 conv–BN–ReLU6 to 1280;
//! global average pool (`pool`); `classifier.1`: linear 1280 → classes (`logits`, the output).
//! Every `features.N` is a tap; the stage ends are `features.1, 3, 6, 10, 13, 16, 17, 18`.

use candle_core::Tensor;
use candle_nn::{Linear, Module, VarBuilder};
use crosskd_ops::conv::Conv2dConfig;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::layers::{batch_norm, conv2d, conv_out, relu6, Conv2d, Norm};
use crate::network::{TapRecorder, TapShapes, TappedNetwork};

fn default_classes() -> usize {
    1000
}

/// Configuration of [`MobileNetV2`] (default: 1000 ImageNet classes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MobileNetV2Config {
    /// Outputs of `classifier.1`.
    #[serde(default = "default_classes")]
    pub num_classes: usize,
}

impl Default for MobileNetV2Config {
    fn default() -> Self {
        Self {
            num_classes: default_classes(),
        }
    }
}

/// The inverted-residual settings `(expansion t, channels c, repeats n, first stride s)`.
const SETTINGS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// Conv–BN with optional ReLU6 (torchvision `Conv2dNormActivation`: `.0` conv, `.1` BN).
#[derive(Debug, Clone)]
struct ConvBn {
    conv: Conv2d,
    bn: Norm,
    relu6: bool,
}

impl ConvBn {
    fn new(
        in_c: usize,
        out_c: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let cfg = Conv2dConfig {
            stride,
            padding: (kernel - 1) / 2,
            dilation: 1,
            groups,
        };
        Ok(Self {
            conv: conv2d(in_c, out_c, kernel, cfg, false, vb.pp(0))?,
            bn: batch_norm(out_c, vb.pp(1))?,
            relu6: true,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.bn.forward(&self.conv.forward(x)?, train)?;
        if self.relu6 {
            relu6(&y)
        } else {
            Ok(y)
        }
    }
}

/// An inverted residual block: optional 1×1 expansion, 3×3 depthwise, 1×1 linear projection.
#[derive(Debug, Clone)]
struct InvertedResidual {
    layers: Vec<ConvBn>,
    residual: bool,
}

impl InvertedResidual {
    fn new(
        in_c: usize,
        out_c: usize,
        stride: usize,
        expand: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let vb = vb.pp("conv");
        let hidden = in_c * expand;
        let mut layers = Vec::with_capacity(3);
        let mut idx = 0;
        if expand != 1 {
            layers.push(ConvBn::new(in_c, hidden, 1, 1, 1, vb.pp(idx))?);
            idx += 1;
        }
        layers.push(ConvBn::new(hidden, hidden, 3, stride, hidden, vb.pp(idx))?);
        // The projection is a bare conv at `conv.{idx+1}` and its BN at `conv.{idx+2}`.
        let project = ConvBn {
            conv: conv2d(
                hidden,
                out_c,
                1,
                Conv2dConfig::default(),
                false,
                vb.pp(idx + 1),
            )?,
            bn: batch_norm(out_c, vb.pp(idx + 2))?,
            relu6: false,
        };
        layers.push(project);
        Ok(Self {
            layers,
            residual: stride == 1 && in_c == out_c,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.layers {
            h = layer.forward(&h, train)?;
        }
        Ok(if self.residual { (h + x)? } else { h })
    }
}

#[derive(Debug, Clone)]
enum Feature {
    Conv(ConvBn),
    Block(InvertedResidual),
}

/// torchvision's MobileNetV2 (see the module docs for layout and taps).
#[derive(Debug, Clone)]
pub struct MobileNetV2 {
    cfg: MobileNetV2Config,
    features: Vec<Feature>,
    /// Per feature: (output channels, stride).
    geometry: Vec<(usize, usize)>,
    classifier: Linear,
}

impl MobileNetV2 {
    /// Builds the network with torchvision's parameter names at `vb`.
    pub fn new(cfg: &MobileNetV2Config, vb: VarBuilder) -> Result<Self> {
        if cfg.num_classes == 0 {
            return Err(ModelError::config(
                "mobilenet-v2",
                "num-classes must be positive",
            ));
        }
        let vbf = vb.pp("features");
        let mut features = vec![Feature::Conv(ConvBn::new(3, 32, 3, 2, 1, vbf.pp(0))?)];
        let mut geometry = vec![(32, 2)];
        let mut in_c = 32;
        for &(t, c, n, s) in &SETTINGS {
            for i in 0..n {
                let stride = if i == 0 { s } else { 1 };
                features.push(Feature::Block(InvertedResidual::new(
                    in_c,
                    c,
                    stride,
                    t,
                    vbf.pp(features.len()),
                )?));
                geometry.push((c, stride));
                in_c = c;
            }
        }
        features.push(Feature::Conv(ConvBn::new(
            in_c,
            1280,
            1,
            1,
            1,
            vbf.pp(features.len()),
        )?));
        geometry.push((1280, 1));
        let classifier = candle_nn::linear(1280, cfg.num_classes, vb.pp("classifier").pp(1))?;
        Ok(Self {
            cfg: cfg.clone(),
            features,
            geometry,
            classifier,
        })
    }
}

impl TappedNetwork for MobileNetV2 {
    fn arch_name(&self) -> String {
        "mobilenet-v2".into()
    }

    fn pass(&self, x: &Tensor, train: bool, rec: &mut TapRecorder<'_>) -> Result<Option<Tensor>> {
        let mut h = x.clone();
        for (i, f) in self.features.iter().enumerate() {
            h = match f {
                Feature::Conv(c) => c.forward(&h, train)?,
                Feature::Block(b) => b.forward(&h, train)?,
            };
            if rec.offer(&format!("features.{i}"), &h) {
                return Ok(None);
            }
        }
        let pooled = crosskd_ops::pool::global_avg_pool2d(&h)?;
        if rec.offer("pool", &pooled) {
            return Ok(None);
        }
        let logits = self.classifier.forward(&pooled)?;
        if rec.offer("logits", &logits) {
            return Ok(None);
        }
        Ok(Some(logits))
    }

    fn tap_shapes(&self, (height, width): (usize, usize)) -> Result<TapShapes> {
        let (mut h, mut w) = (height, width);
        let mut taps = Vec::with_capacity(self.geometry.len() + 2);
        for (i, &(c, s)) in self.geometry.iter().enumerate() {
            if s == 2 {
                h = conv_out(h, 3, 2, 1, 1).unwrap_or(0);
                w = conv_out(w, 3, 2, 1, 1).unwrap_or(0);
            }
            taps.push((format!("features.{i}"), vec![c, h, w]));
        }
        taps.push(("pool".into(), vec![1280]));
        taps.push(("logits".into(), vec![self.cfg.num_classes]));
        Ok(taps)
    }

    fn output_tap(&self) -> String {
        "logits".into()
    }
}
