//! VGG16 (without batch norm) in the torchvision layout (`torchvision.models.vgg16`).
//!
//! `features.N`: 13 3×3 convolutions with bias (indices 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24,
//! 26, 28; ReLU after each) and 2×2 max pools at 4, 9, 16, 23, 30. Taps `block1` … `block5` are
//! the outputs of those max pools (64, 128, 256, 512, 512 channels at 1/2 … 1/32 of the input).
//! With `classifier = true`: adaptive average pool to 7×7, `classifier.0` (25088 → 4096), ReLU,
//! `classifier.3` (4096 → 4096), ReLU, `classifier.6` (4096 → classes) — tap `logits`, the output.
//! Without it (a 14.7 M instead of 138 M parameter teacher) the output is `block5`.

use candle_core::Tensor;
use candle_nn::{Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::layers::{adaptive_avg_pool2d, conv2d, conv_cfg, relu, Conv2d};
use crate::network::{TapRecorder, TapShapes, TappedNetwork};

fn default_classes() -> usize {
    1000
}
fn default_true() -> bool {
    true
}

/// Configuration of [`Vgg16`] (defaults: with the classifier, 1000 classes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Vgg16Config {
    /// Build the three fully connected layers (`classifier.0/3/6`).
    #[serde(default = "default_true")]
    pub classifier: bool,
    /// Outputs of `classifier.6`.
    #[serde(default = "default_classes")]
    pub num_classes: usize,
}

impl Default for Vgg16Config {
    fn default() -> Self {
        Self {
            classifier: true,
            num_classes: default_classes(),
        }
    }
}

/// Channels of the convolutions of each block.
const BLOCKS: [&[usize]; 5] = [
    &[64, 64],
    &[128, 128],
    &[256, 256, 256],
    &[512, 512, 512],
    &[512, 512, 512],
];

/// torchvision's VGG16 (see the module docs for layout and taps).
#[derive(Debug, Clone)]
pub struct Vgg16 {
    cfg: Vgg16Config,
    blocks: Vec<Vec<Conv2d>>,
    classifier: Option<[Linear; 3]>,
}

impl Vgg16 {
    /// Builds the network with torchvision's parameter names at `vb`.
    pub fn new(cfg: &Vgg16Config, vb: VarBuilder) -> Result<Self> {
        if cfg.num_classes == 0 {
            return Err(ModelError::config("vgg16", "num-classes must be positive"));
        }
        let vbf = vb.pp("features");
        let mut index = 0;
        let mut in_c = 3;
        let mut blocks = Vec::with_capacity(5);
        for widths in BLOCKS {
            let mut convs = Vec::with_capacity(widths.len());
            for &c in widths {
                convs.push(conv2d(in_c, c, 3, conv_cfg(1, 1), true, vbf.pp(index))?);
                in_c = c;
                index += 2; // conv, ReLU
            }
            blocks.push(convs);
            index += 1; // max pool
        }
        let classifier = if cfg.classifier {
            let vbc = vb.pp("classifier");
            Some([
                candle_nn::linear(512 * 7 * 7, 4096, vbc.pp(0))?,
                candle_nn::linear(4096, 4096, vbc.pp(3))?,
                candle_nn::linear(4096, cfg.num_classes, vbc.pp(6))?,
            ])
        } else {
            None
        };
        Ok(Self {
            cfg: cfg.clone(),
            blocks,
            classifier,
        })
    }
}

impl TappedNetwork for Vgg16 {
    fn arch_name(&self) -> String {
        "vgg16".into()
    }

    fn pass(&self, x: &Tensor, train: bool, rec: &mut TapRecorder<'_>) -> Result<Option<Tensor>> {
        // Dropout in the classifier is the only train/eval difference; we never apply it.
        let _ = train;
        let mut h = x.clone();
        for (b, convs) in self.blocks.iter().enumerate() {
            for conv in convs {
                h = relu(&conv.forward(&h)?)?;
            }
            h = crosskd_ops::pool::max_pool2d(&h, (2, 2), (2, 2), (0, 0))?;
            if rec.offer(&format!("block{}", b + 1), &h) {
                return Ok(None);
            }
        }
        let out = match &self.classifier {
            Some([fc0, fc3, fc6]) => {
                let flat = adaptive_avg_pool2d(&h, 7, 7)?.flatten_from(1)?;
                let hidden = relu(&fc0.forward(&flat)?)?;
                let logits = fc6.forward(&relu(&fc3.forward(&hidden)?)?)?;
                rec.offer("logits", &logits);
                logits
            }
            None => h,
        };
        Ok(Some(out))
    }

    fn tap_shapes(&self, (height, width): (usize, usize)) -> Result<TapShapes> {
        if height < 32 || width < 32 {
            return Err(ModelError::InputSize {
                arch: self.arch_name(),
                height,
                width,
                message: "five 2×2 max pools need at least 32×32".into(),
            });
        }
        let (mut h, mut w) = (height, width);
        let mut taps = Vec::with_capacity(6);
        for (b, widths) in BLOCKS.iter().enumerate() {
            h /= 2;
            w /= 2;
            taps.push((
                format!("block{}", b + 1),
                vec![widths[widths.len() - 1], h, w],
            ));
        }
        if self.cfg.classifier {
            taps.push(("logits".into(), vec![self.cfg.num_classes]));
        }
        Ok(taps)
    }

    fn output_tap(&self) -> String {
        if self.cfg.classifier {
            "logits".into()
        } else {
            "block5".into()
        }
    }
}
