//! Softmax, log-softmax and cross-entropy: hand-computed cases, an independent plain-Rust
//! reference of PyTorch's `F.cross_entropy` formula, and finite-difference gradient checks.

use candle_core::{DType, Device, Tensor, Var};
use crosskd_ops::gradcheck::{assert_gradients, random_f64, values};
use crosskd_ops::softmax::{cross_entropy, log_softmax, softmax, CrossEntropyOptions};

const EPS: f64 = 1e-6;
const TOL: f64 = 1e-6;

fn assert_close(got: &[f64], expected: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(
            (g - e).abs() <= tol,
            "{what}: element {i} is {g}, expected {e}\n got {got:?}"
        );
    }
}

#[test]
fn softmax_by_hand() {
    // exp of [0, ln 2, ln 3] is [1, 2, 3], so softmax is [1, 2, 3]/6.
    let x = Tensor::from_slice(&[0f64, 2f64.ln(), 3f64.ln()], (1, 3), &Device::Cpu).unwrap();
    assert_close(
        &values(&softmax(&x, 1).unwrap()),
        &[1. / 6., 2. / 6., 3. / 6.],
        1e-15,
        "softmax",
    );
    let expected: Vec<f64> = [1f64, 2., 3.].iter().map(|v| (v / 6.0).ln()).collect();
    assert_close(
        &values(&log_softmax(&x, 1).unwrap()),
        &expected,
        1e-15,
        "log_softmax",
    );
    // Along dim 0 of a column, and with candle's D::Minus1.
    let col = x.t().unwrap();
    assert_close(
        &values(&softmax(&col, 0).unwrap()),
        &[1. / 6., 2. / 6., 3. / 6.],
        1e-15,
        "dim 0",
    );
    assert_close(
        &values(&softmax(&x, candle_core::D::Minus1).unwrap()),
        &[1. / 6., 2. / 6., 3. / 6.],
        1e-15,
        "D::Minus1",
    );
}

#[test]
fn softmax_is_stable_for_large_logits() {
    // Naive exp overflows to inf here; the shifted form gives exactly [1/2, 1/2] and [-ln 2, -ln 2].
    let x = Tensor::from_slice(&[1000f64, 1000., -1000., -1000.], (2, 2), &Device::Cpu).unwrap();
    assert_close(&values(&softmax(&x, 1).unwrap()), &[0.5; 4], 0.0, "softmax");
    assert_close(
        &values(&log_softmax(&x, 1).unwrap()),
        &[-(2f64.ln()); 4],
        1e-15,
        "log_softmax",
    );
    let x32 = Tensor::from_slice(&[100f32, 0.], (1, 2), &Device::Cpu).unwrap();
    let l = values(&log_softmax(&x32, 1).unwrap());
    assert!(l[0].abs() < 1e-6 && (l[1] + 100.0).abs() < 1e-4, "{l:?}");
}

#[test]
fn softmax_gradients_match_finite_differences() {
    let x = random_f64(&[3, 4, 5], 90)
        .unwrap()
        .affine(3.0, 0.0)
        .unwrap();
    for dim in 0..3 {
        assert_gradients(
            &format!("softmax dim {dim}"),
            |a| Ok(softmax(&a[0], dim)?),
            std::slice::from_ref(&x),
            EPS,
            TOL,
        );
        assert_gradients(
            &format!("log_softmax dim {dim}"),
            |a| Ok(log_softmax(&a[0], dim)?),
            std::slice::from_ref(&x),
            EPS,
            TOL,
        );
    }
}

/// PyTorch's `F.cross_entropy(reduction="mean")` written out in plain f64 loops, from its
/// documented formula (`(1 − ε)·nll + ε/C · smooth`, both normalised by the summed target
/// weights of non-ignored rows). Rows: `logits[i]` of length C.
fn reference_cross_entropy(
    logits: &[Vec<f64>],
    targets: &[u32],
    weights: Option<&[f64]>,
    ignore: Option<u32>,
    eps: f64,
) -> f64 {
    let c = logits[0].len();
    let w = |k: usize| weights.map_or(1.0, |w| w[k]);
    let (mut nll, mut smooth, mut denom) = (0.0, 0.0, 0.0);
    for (row, &t) in logits.iter().zip(targets) {
        if Some(t) == ignore {
            continue;
        }
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        let logp: Vec<f64> = row.iter().map(|v| v - lse).collect();
        nll += -w(t as usize) * logp[t as usize];
        smooth += -(0..c).map(|k| w(k) * logp[k]).sum::<f64>();
        denom += w(t as usize);
    }
    ((1.0 - eps) * nll + eps / c as f64 * smooth) / denom
}

fn rows_of(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_vec2().unwrap()
}

#[test]
fn cross_entropy_by_hand() {
    // Probabilities [1/6, 2/6, 3/6] and [1/2, 1/4, 1/4]; targets 2 and 0: loss = (ln 2 + ln 2)/2.
    let logits = Tensor::from_slice(
        &[
            0f64,
            2f64.ln(),
            3f64.ln(),
            1f64.ln(),
            0.5f64.ln(),
            0.5f64.ln(),
        ],
        (2, 3),
        &Device::Cpu,
    )
    .unwrap();
    let targets = Tensor::from_slice(&[2u32, 0], 2, &Device::Cpu).unwrap();
    let loss = cross_entropy(&logits, &targets, &CrossEntropyOptions::default()).unwrap();
    assert!((loss.to_scalar::<f64>().unwrap() - 2f64.ln()).abs() < 1e-15);
    // Class weights [1, 1, 3]: (3·ln 2 + 1·ln 2) / (3 + 1) = ln 2 still; with weights [1, 1, 2]
    // and target 0 ignored it is ln 2 as well, so use targets (2, 1): (2·ln 2 + ln 4)/(2 + 1).
    let weights = Tensor::from_slice(&[1f64, 1., 2.], 3, &Device::Cpu).unwrap();
    let targets = Tensor::from_slice(&[2u32, 1], 2, &Device::Cpu).unwrap();
    let opts = CrossEntropyOptions {
        class_weights: Some(weights),
        ..Default::default()
    };
    let loss = cross_entropy(&logits, &targets, &opts)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(
        (loss - (2.0 * 2f64.ln() + 4f64.ln()) / 3.0).abs() < 1e-15,
        "{loss}"
    );
    // Label smoothing ε = 0.3 on the first row alone (second ignored), no weights:
    // 0.7·ln 2 + 0.1·(ln 6 + ln 3 + ln 2).
    let targets = Tensor::from_slice(&[2u32, 7], 2, &Device::Cpu).unwrap();
    let opts = CrossEntropyOptions {
        ignore_index: Some(7),
        label_smoothing: 0.3,
        ..Default::default()
    };
    let loss = cross_entropy(&logits, &targets, &opts)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let expected = 0.7 * 2f64.ln() + 0.1 * (6f64.ln() + 3f64.ln() + 2f64.ln());
    assert!((loss - expected).abs() < 1e-15, "{loss} vs {expected}");
}

#[test]
fn cross_entropy_matches_the_reference_formula() {
    let logits = random_f64(&[6, 4], 91).unwrap().affine(2.0, 0.0).unwrap();
    let targets = Tensor::from_slice(&[0u32, 3, 255, 1, 2, 3], 6, &Device::Cpu).unwrap();
    let w = [0.5, 2.0, 1.0, 3.0];
    let weights = Tensor::from_slice(&w, 4, &Device::Cpu).unwrap();
    let t: Vec<u32> = targets.to_vec1().unwrap();
    for (weighted, ignore, eps) in [
        (false, None, 0.0),
        (true, Some(255), 0.0),
        (true, Some(255), 0.2),
        (false, Some(255), 0.1),
    ] {
        let targets = if ignore.is_none() {
            Tensor::from_slice(&[0u32, 3, 2, 1, 2, 3], 6, &Device::Cpu).unwrap()
        } else {
            targets.clone()
        };
        let t: Vec<u32> = if ignore.is_none() {
            targets.to_vec1().unwrap()
        } else {
            t.clone()
        };
        let opts = CrossEntropyOptions {
            class_weights: weighted.then(|| weights.clone()),
            ignore_index: ignore,
            label_smoothing: eps,
        };
        let got = cross_entropy(&logits, &targets, &opts)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let expected = reference_cross_entropy(
            &rows_of(&logits),
            &t,
            weighted.then_some(&w[..]),
            ignore,
            eps,
        );
        assert!(
            (got - expected).abs() < 1e-14,
            "{opts:?}: {got} vs {expected}"
        );
    }
}

#[test]
fn cross_entropy_over_pixels_matches_rows() {
    // (N, C, H, W) logits equal the (N·H·W, C) rows taken pixel by pixel.
    let logits = random_f64(&[2, 3, 2, 2], 92).unwrap();
    let targets =
        Tensor::from_slice(&[0u32, 1, 2, 9, 1, 1, 0, 2], (2, 2, 2), &Device::Cpu).unwrap();
    let opts = CrossEntropyOptions {
        ignore_index: Some(9),
        label_smoothing: 0.1,
        ..Default::default()
    };
    let got = cross_entropy(&logits, &targets, &opts)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let rows_t = logits
        .permute((0, 2, 3, 1))
        .unwrap()
        .reshape((8, 3))
        .unwrap();
    let t: Vec<u32> = targets.flatten_all().unwrap().to_vec1().unwrap();
    let expected = reference_cross_entropy(&rows_of(&rows_t), &t, None, Some(9), 0.1);
    assert!((got - expected).abs() < 1e-14, "{got} vs {expected}");
}

#[test]
fn all_ignored_batch_gives_zero_and_zero_gradient() {
    let logits = Var::from_tensor(&random_f64(&[3, 4], 93).unwrap()).unwrap();
    let targets = Tensor::from_slice(&[5u32, 5, 5], 3, &Device::Cpu).unwrap();
    let weights = Tensor::from_slice(&[1f64, 2., 3., 4.], 4, &Device::Cpu).unwrap();
    let opts = CrossEntropyOptions {
        class_weights: Some(weights),
        ignore_index: Some(5),
        label_smoothing: 0.1,
    };
    let loss = cross_entropy(logits.as_tensor(), &targets, &opts).unwrap();
    assert_eq!(loss.to_scalar::<f64>().unwrap(), 0.0);
    let g = values(loss.backward().unwrap().get(logits.as_tensor()).unwrap());
    assert!(g.iter().all(|v| *v == 0.0), "{g:?}");
}

#[test]
fn cross_entropy_gradients_match_finite_differences() {
    let logits = random_f64(&[5, 4], 94).unwrap().affine(2.0, 0.0).unwrap();
    let targets = Tensor::from_slice(&[0u32, 3, 255, 1, 3], 5, &Device::Cpu).unwrap();
    let weights = (random_f64(&[4], 95).unwrap().abs().unwrap() + 0.5).unwrap();
    for eps in [0.0, 0.25] {
        assert_gradients(
            &format!("cross_entropy weights+ignore smoothing={eps} (logits, weights)"),
            |a| {
                let opts = CrossEntropyOptions {
                    class_weights: Some(a[1].clone()),
                    ignore_index: Some(255),
                    label_smoothing: eps,
                };
                Ok(cross_entropy(&a[0], &targets, &opts)?)
            },
            &[logits.clone(), weights.clone()],
            EPS,
            TOL,
        );
    }
    let logits = random_f64(&[2, 3, 2, 3], 96).unwrap();
    let targets = Tensor::from_slice(
        &[0u32, 1, 2, 7, 1, 1, 0, 2, 2, 7, 0, 1],
        (2, 2, 3),
        &Device::Cpu,
    )
    .unwrap();
    assert_gradients(
        "cross_entropy (N, C, H, W) ignore + smoothing",
        |a| {
            let opts = CrossEntropyOptions {
                ignore_index: Some(7),
                label_smoothing: 0.1,
                ..Default::default()
            };
            Ok(cross_entropy(&a[0], &targets, &opts)?)
        },
        &[logits],
        EPS,
        TOL,
    );
}

#[test]
fn f32_matches_f64() {
    let logits = random_f64(&[4, 5], 97).unwrap();
    let targets = Tensor::from_slice(&[0u32, 4, 2, 1], 4, &Device::Cpu).unwrap();
    let opts = CrossEntropyOptions {
        label_smoothing: 0.1,
        ..Default::default()
    };
    let a = cross_entropy(&logits, &targets, &opts)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let b = cross_entropy(&logits.to_dtype(DType::F32).unwrap(), &targets, &opts)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((a - b as f64).abs() < 1e-6);
}

#[test]
fn rejects_bad_arguments() {
    let logits = random_f64(&[2, 3], 98).unwrap();
    let opts = CrossEntropyOptions::default();
    let out_of_range = Tensor::from_slice(&[0u32, 3], 2, &Device::Cpu).unwrap();
    assert!(
        cross_entropy(&logits, &out_of_range, &opts).is_err(),
        "target 3 of 3 classes"
    );
    let wrong_shape = Tensor::from_slice(&[0u32, 1, 2], 3, &Device::Cpu).unwrap();
    assert!(cross_entropy(&logits, &wrong_shape, &opts).is_err());
    let wrong_dtype = Tensor::from_slice(&[0i64, 1], 2, &Device::Cpu).unwrap();
    assert!(cross_entropy(&logits, &wrong_dtype, &opts).is_err());
    let targets = Tensor::from_slice(&[0u32, 1], 2, &Device::Cpu).unwrap();
    let bad_weights = CrossEntropyOptions {
        class_weights: Some(random_f64(&[2], 99).unwrap()),
        ..Default::default()
    };
    assert!(cross_entropy(&logits, &targets, &bad_weights).is_err());
    let bad_eps = CrossEntropyOptions {
        label_smoothing: 1.5,
        ..Default::default()
    };
    assert!(cross_entropy(&logits, &targets, &bad_eps).is_err());
}
