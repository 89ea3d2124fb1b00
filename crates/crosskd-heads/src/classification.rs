//! Image classification: global average pooling and a linear layer, and top-k accuracy.

use std::collections::BTreeMap;

use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::metrics::{to_f64_vec, PrimaryMetric, TaskMetrics};
use crate::{HeadsError, Result};

/// Settings of a [`ClassificationHead`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassificationHeadConfig {
    /// Channels of the feature the head reads.
    pub in_channels: usize,
    /// Number of classes `C`.
    pub num_classes: usize,
}

/// `(N, C_in, H, W)` feature (or an already pooled `(N, C_in)`) → `(N, C)` logits:
/// `y = W · mean_{h,w} x + b` (parameters `fc.weight: (C, C_in)`, `fc.bias: (C)`).
#[derive(Debug, Clone)]
pub struct ClassificationHead {
    fc: Linear,
    num_classes: usize,
}

/// Builds a [`ClassificationHead`] (PyTorch `nn.Linear` initialisation: uniform `±1/√C_in`).
pub fn classification_head(
    config: &ClassificationHeadConfig,
    vb: VarBuilder,
) -> Result<ClassificationHead> {
    if config.in_channels == 0 || config.num_classes < 2 {
        return Err(HeadsError::Config(format!(
            "classification head needs positive channels and ≥ 2 classes, got {config:?}"
        )));
    }
    let bound = 1.0 / (config.in_channels as f64).sqrt();
    let init = candle_nn::Init::Uniform {
        lo: -bound,
        up: bound,
    };
    let vb = vb.pp("fc");
    let weight = vb.get_with_hints((config.num_classes, config.in_channels), "weight", init)?;
    let bias = vb.get_with_hints(config.num_classes, "bias", init)?;
    Ok(ClassificationHead {
        fc: Linear::new(weight, Some(bias)),
        num_classes: config.num_classes,
    })
}

impl ClassificationHead {
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Top-k metrics over this head's classes.
    pub fn metrics(&self) -> ClassificationMetrics {
        ClassificationMetrics {
            num_classes: self.num_classes,
            samples: 0,
            top1: 0,
            top5: 0,
        }
    }
}

impl Module for ClassificationHead {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        // Global average pooling is a plain mean over the spatial axes (a reduction, not one of
        // candle's pooling kernels).
        let pooled = match xs.rank() {
            4 => xs.mean((2, 3))?,
            2 => xs.clone(),
            _ => {
                return Err(candle_core::Error::Msg(format!(
                    "classification head: expected (N, C, H, W) or (N, C), got {:?}",
                    xs.dims()
                )))
            }
        };
        self.fc.forward(&pooled)
    }
}

/// Top-k accuracy over every sample seen: `top1`, and `top5` when `C ≥ 5`.
///
/// A sample with true class `t` and scores `s` is correct at `k` when its rank
/// `#{j : s_j > s_t} + #{j < t : s_j = s_t}` is below `k` (ties broken towards the lower class
/// index, so a constant prediction is not counted correct for every class).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassificationMetrics {
    num_classes: usize,
    samples: u64,
    top1: u64,
    top5: u64,
}

impl ClassificationMetrics {
    /// Metrics over `num_classes` classes.
    pub fn new(num_classes: usize) -> Result<Self> {
        if num_classes < 2 {
            return Err(HeadsError::Config(format!(
                "classification metrics need ≥ 2 classes, got {num_classes}"
            )));
        }
        Ok(Self {
            num_classes,
            samples: 0,
            top1: 0,
            top5: 0,
        })
    }

    /// Number of samples accumulated.
    pub fn samples(&self) -> u64 {
        self.samples
    }
}

impl TaskMetrics for ClassificationMetrics {
    /// `prediction`: scores `(N, C)`; `target`: class indices `(N)`, any dtype; `valid` (optional,
    /// `(N)`) drops samples.
    fn update(
        &mut self,
        prediction: &Tensor,
        target: &Tensor,
        valid: Option<&Tensor>,
    ) -> Result<()> {
        let c = self.num_classes;
        let n = target.elem_count();
        if prediction.dims() != [n, c] || target.rank() != 1 {
            return Err(HeadsError::Shape {
                what: "classification metrics: prediction".into(),
                expected: format!(
                    "(N, {c}) scores for a target of shape (N), target is {:?}",
                    target.dims()
                ),
                got: prediction.dims().to_vec(),
            });
        }
        let scores = to_f64_vec(prediction)?;
        let labels = to_f64_vec(target)?;
        let mask = crate::metrics::mask_vec("classification metrics", valid, n)?;
        let mut ranks = Vec::with_capacity(n);
        for (i, &label) in labels.iter().enumerate() {
            if mask.as_ref().is_some_and(|m| !m[i]) {
                continue;
            }
            if label.fract() != 0.0 || label < 0.0 || label >= c as f64 {
                return Err(HeadsError::InvalidValue {
                    what: "classification metrics: target".into(),
                    message: format!("value {label} at sample {i}, expected a class in 0..{c}"),
                });
            }
            let t = label as usize;
            let row = &scores[i * c..(i + 1) * c];
            if row.iter().any(|v| v.is_nan()) {
                return Err(HeadsError::InvalidValue {
                    what: "classification metrics: prediction".into(),
                    message: format!("NaN score in sample {i}"),
                });
            }
            let rank = row
                .iter()
                .enumerate()
                .filter(|&(j, &s)| s > row[t] || (s == row[t] && j < t))
                .count();
            ranks.push(rank);
        }
        for rank in ranks {
            self.samples += 1;
            self.top1 += u64::from(rank < 1);
            self.top5 += u64::from(rank < 5);
        }
        Ok(())
    }

    fn compute(&self) -> BTreeMap<String, f64> {
        if self.samples == 0 {
            return BTreeMap::new();
        }
        let n = self.samples as f64;
        let mut out = BTreeMap::from([("top1".to_owned(), self.top1 as f64 / n)]);
        if self.num_classes >= 5 {
            out.insert("top5".into(), self.top5 as f64 / n);
        }
        out
    }

    fn reset(&mut self) {
        self.samples = 0;
        self.top1 = 0;
        self.top5 = 0;
    }

    /// `top1`, higher is better.
    fn primary(&self) -> PrimaryMetric {
        PrimaryMetric {
            name: "top1",
            higher_is_better: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use crosskd_ops::gradcheck::{assert_gradients, random_f64};

    use super::*;

    fn scores(values: &[f32], n: usize, c: usize) -> Tensor {
        Tensor::from_vec(values.to_vec(), (n, c), &Device::Cpu).unwrap()
    }

    fn targets(values: &[u32]) -> Tensor {
        Tensor::from_vec(values.to_vec(), values.len(), &Device::Cpu).unwrap()
    }

    #[test]
    fn head_pools_then_projects() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
        let head = classification_head(
            &ClassificationHeadConfig {
                in_channels: 3,
                num_classes: 4,
            },
            vb,
        )
        .unwrap();
        let x = random_f64(&[2, 3, 4, 5], 3).unwrap();
        // Pooling first by hand gives the same logits as the head on the map.
        let pooled = x.mean((2, 3)).unwrap();
        let a = head
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let b = head
            .forward(&pooled)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert_eq!(a.len(), 8);
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() < 1e-14);
        }
        assert_gradients(
            "classification head wrt input",
            |t| head.forward(&t[0]),
            &[x],
            1e-6,
            1e-8,
        );
    }

    #[test]
    fn topk_matches_hand_computation() {
        // C = 6, four samples:
        //   s0 = [0, 5, 1, 2, 3, 4], t = 1: rank 0 → top1 ✓ top5 ✓
        //   s1 = [5, 4, 3, 2, 1, 0], t = 4: four greater → rank 4 → top5 ✓ only
        //   s2 = [5, 4, 3, 2, 1, 0], t = 5: rank 5 → neither
        //   s3 = [1, 1, 1, 1, 1, 1], t = 2: ties with lower index 0, 1 → rank 2 → top5 ✓
        // top1 = 1/4, top5 = 3/4.
        let s = scores(
            &[
                0., 5., 1., 2., 3., 4., 5., 4., 3., 2., 1., 0., 5., 4., 3., 2., 1., 0., 1., 1., 1.,
                1., 1., 1.,
            ],
            4,
            6,
        );
        let mut m = ClassificationMetrics::new(6).unwrap();
        m.update(&s, &targets(&[1, 4, 5, 2]), None).unwrap();
        let r = m.compute();
        assert_eq!(r["top1"], 0.25);
        assert_eq!(r["top5"], 0.75);
    }

    #[test]
    fn top5_is_omitted_below_five_classes() {
        let mut m = ClassificationMetrics::new(3).unwrap();
        m.update(&scores(&[0., 1., 2.], 1, 3), &targets(&[2]), None)
            .unwrap();
        let r = m.compute();
        assert_eq!(r["top1"], 1.0);
        assert!(!r.contains_key("top5"));
    }

    #[test]
    fn two_batches_equal_one_batch() {
        let s = random_f64(&[7, 10], 8).unwrap();
        let t = targets(&[0, 3, 9, 2, 2, 5, 7]);
        let mut whole = ClassificationMetrics::new(10).unwrap();
        whole.update(&s, &t, None).unwrap();
        let mut split = ClassificationMetrics::new(10).unwrap();
        split
            .update(
                &s.narrow(0, 0, 3).unwrap(),
                &t.narrow(0, 0, 3).unwrap(),
                None,
            )
            .unwrap();
        split
            .update(
                &s.narrow(0, 3, 4).unwrap(),
                &t.narrow(0, 3, 4).unwrap(),
                None,
            )
            .unwrap();
        assert_eq!(whole, split);
        assert_eq!(whole.samples(), 7);
    }

    #[test]
    fn rejects_bad_labels_and_shapes() {
        let mut m = ClassificationMetrics::new(3).unwrap();
        assert!(m
            .update(&scores(&[0., 1., 2.], 1, 3), &targets(&[3]), None)
            .is_err());
        assert!(m
            .update(&scores(&[0., 1., 2., 3.], 1, 4), &targets(&[0]), None)
            .is_err());
        assert_eq!(m.samples(), 0);
    }
}
