//! Classification cross-entropy.

use candle_core::Tensor;
use crosskd_ops::softmax::{cross_entropy, CrossEntropyOptions};

use crate::Result;

/// Mean cross-entropy of `logits: (N, K)` against u32 `labels: (N)` with label smoothing `ε`:
/// `(1/N) Σ_n [(1 − ε)(−log p_{n,y_n}) + (ε/K) Σ_k (−log p_{n,k})]`.
pub fn classification_cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    label_smoothing: f64,
) -> Result<Tensor> {
    let opts = CrossEntropyOptions {
        class_weights: None,
        ignore_index: None,
        label_smoothing,
    };
    Ok(cross_entropy(logits, labels, &opts)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use crosskd_ops::gradcheck::{assert_gradients, random_f64};

    #[test]
    fn matches_the_smoothed_formula() {
        let logits = random_f64(&[2, 3], 1).unwrap();
        let labels = Tensor::new(&[2u32, 0], &Device::Cpu).unwrap();
        let got = classification_cross_entropy(&logits, &labels, 0.1)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let l = logits.to_vec2::<f64>().unwrap();
        let mut expect = 0.0;
        for (n, y) in [(0usize, 2usize), (1, 0)] {
            let lse = l[n].iter().map(|v| v.exp()).sum::<f64>().ln();
            let nll = |k: usize| lse - l[n][k];
            expect += 0.9 * nll(y) + 0.1 / 3.0 * (0..3).map(nll).sum::<f64>();
        }
        expect /= 2.0;
        assert!((got - expect).abs() < 1e-12, "{got} vs {expect}");
    }

    #[test]
    fn has_exact_gradients() {
        let logits = random_f64(&[3, 4], 2).unwrap();
        let labels = Tensor::new(&[1u32, 3, 0], &Device::Cpu).unwrap();
        assert_gradients(
            "classification CE",
            |a| Ok(classification_cross_entropy(&a[0], &labels, 0.1)?),
            &[logits],
            1e-6,
            1e-6,
        );
    }
}
