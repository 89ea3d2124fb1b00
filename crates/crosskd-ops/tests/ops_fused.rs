//! The fused convolution + batch norm + ReLU op: finite-difference gradients, and agreement (values,
//! statistics, gradients, running averages) with the separate ops it replaces.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use crosskd_ops::conv::{conv2d, conv2d_layer, Conv2dConfig};
use crosskd_ops::fused::{
    cat_conv2d_batch_norm_relu_train, conv2d_batch_norm_relu_train,
    upsample_conv2d_batch_norm_relu_train,
};
use crosskd_ops::gradcheck::{assert_gradients, max_abs_diff, random_f64, values};
use crosskd_ops::norm::{batch_norm2d, batch_norm_relu_train, BatchNormConfig};

const EPS: f64 = 1e-6;
const TOL: f64 = 1e-6;
const NORM_EPS: f64 = 1e-5;

fn cfg(stride: usize, padding: usize, groups: usize) -> Conv2dConfig {
    Conv2dConfig {
        stride,
        padding,
        groups,
        ..Default::default()
    }
}

/// `(y, μ, s²)` of the fused op and of the separate ops agree, and so do the gradients of every
/// named variable for the loss `Σ (y·r)²`.
fn assert_same_results(
    what: &str,
    fused: &(Tensor, Tensor, Tensor),
    separate: &(Tensor, Tensor, Tensor),
    r: &Tensor,
    vars: &[(&str, &Var)],
) {
    for (got, want, name) in [
        (&fused.0, &separate.0, "output"),
        (&fused.1, &separate.1, "mean"),
        (&fused.2, &separate.2, "variance"),
    ] {
        assert!(
            max_abs_diff(&values(got), &values(want)) < 1e-12,
            "{what}: {name}"
        );
    }
    let loss = |y: &Tensor| {
        y.broadcast_mul(r)
            .and_then(|t| t.sqr())
            .and_then(|t| t.sum_all())
    };
    let g_fused = loss(&fused.0).unwrap().backward().unwrap();
    let g_separate = loss(&separate.0).unwrap().backward().unwrap();
    for (name, v) in vars {
        let got = g_fused.get(v).expect("fused gradient");
        let want = g_separate.get(v).expect("separate gradient");
        let diff = max_abs_diff(&values(got), &values(want));
        assert!(
            diff < 1e-10,
            "{what}: gradient of {name} differs by {diff:e}"
        );
    }
}

/// (input, weight, config): the implicit-gemm geometry, a strided and a grouped one.
fn cases() -> Vec<([usize; 4], [usize; 4], Conv2dConfig)> {
    vec![
        ([2, 3, 5, 6], [4, 3, 3, 3], cfg(1, 1, 1)),
        ([2, 4, 6, 5], [6, 4, 3, 3], cfg(2, 1, 1)),
        ([3, 4, 4, 4], [4, 2, 3, 3], cfg(1, 1, 2)),
    ]
}

#[test]
fn fused_gradients_match_finite_differences() {
    for (i, (xs, ws, cfg)) in cases().into_iter().enumerate() {
        let seed = 10 * i as u64;
        let c = ws[0];
        let inputs = [
            random_f64(&xs, seed).unwrap(),
            random_f64(&ws, seed + 1).unwrap(),
            random_f64(&[c], seed + 2).unwrap(),
            random_f64(&[c], seed + 3).unwrap(),
            random_f64(&[c], seed + 4).unwrap(),
        ];
        assert_gradients(
            &format!("conv2d_batch_norm_relu_train case {i}"),
            |a| {
                Ok(conv2d_batch_norm_relu_train(
                    &a[0],
                    &a[1],
                    Some(&a[2]),
                    &a[3],
                    &a[4],
                    cfg,
                    NORM_EPS,
                )?
                .0)
            },
            &inputs,
            EPS,
            TOL,
        );
    }
}

/// Output, statistics and every gradient equal those of `batch_norm_relu_train(conv2d(..))`, with
/// and without a convolution bias.
#[test]
fn fused_matches_the_separate_ops() {
    for (i, (xs, ws, cfg)) in cases().into_iter().enumerate() {
        for with_bias in [true, false] {
            let seed = 100 + 10 * i as u64;
            let c = ws[0];
            let var = |shape: &[usize], s: u64| Var::from_tensor(&random_f64(shape, s).unwrap());
            let (x, w, b) = (
                var(&xs, seed).unwrap(),
                var(&ws, seed + 1).unwrap(),
                var(&[c], seed + 2).unwrap(),
            );
            let (nw, nb) = (var(&[c], seed + 3).unwrap(), var(&[c], seed + 4).unwrap());
            let r = random_f64(&[xs[0], c, 1, 1], seed + 5).unwrap();
            let bias = with_bias.then(|| b.as_tensor());
            let fused =
                conv2d_batch_norm_relu_train(&x, &w, bias, &nw, &nb, cfg, NORM_EPS).unwrap();
            let z = conv2d(&x, &w, bias, cfg).unwrap();
            let separate = batch_norm_relu_train(&z, Some(&nw), Some(&nb), NORM_EPS).unwrap();
            let mut vars = vec![
                ("x", &x),
                ("w", &w),
                ("norm weight", &nw),
                ("norm bias", &nb),
            ];
            if with_bias {
                vars.push(("conv bias", &b));
            }
            let what = format!("case {i}, bias {with_bias}");
            assert_same_results(&what, &fused, &separate, &r, &vars);
        }
    }
}

/// The layer path updates the running statistics exactly like the separate ops do, and falls back
/// to them in evaluation mode.
#[test]
fn batch_norm_layer_conv_relu_matches_the_separate_layers() {
    let build = || {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
        let conv = conv2d_layer(3, 4, 3, cfg(1, 1, 1), true, vb.pp("conv")).unwrap();
        let bn = batch_norm2d(4, BatchNormConfig::default(), vb.pp("bn")).unwrap();
        (map, conv, bn)
    };
    // Same seeded initialisation: both maps are filled with the same values below.
    let (map_a, conv_a, bn_a) = build();
    let (map_b, conv_b, bn_b) = build();
    for (name, var) in map_a.data().lock().unwrap().iter() {
        let other = &map_b.data().lock().unwrap()[name];
        other.set(var.as_tensor()).unwrap();
    }
    let x = random_f64(&[2, 3, 5, 5], 7).unwrap();
    for train in [true, true, false] {
        let fused = bn_a
            .forward_conv_relu(&x, conv_a.weight(), conv_a.bias(), conv_a.config(), train)
            .unwrap();
        let z = candle_core::Module::forward(&conv_b, &x).unwrap();
        let separate = bn_b.forward_relu(&z, train).unwrap();
        assert!(
            max_abs_diff(&values(&fused), &values(&separate)) < 1e-12,
            "train={train}"
        );
        for (a, b) in [
            (bn_a.running_mean(), bn_b.running_mean()),
            (bn_a.running_var(), bn_b.running_var()),
            (bn_a.num_batches_tracked(), bn_b.num_batches_tracked()),
        ] {
            assert!(
                max_abs_diff(&values(a), &values(b)) < 1e-12,
                "running statistics, train={train}"
            );
        }
    }
}

#[test]
fn wrong_parameter_shapes_are_named() {
    let x = random_f64(&[1, 2, 4, 4], 1).unwrap();
    let w = random_f64(&[3, 2, 3, 3], 2).unwrap();
    let good = random_f64(&[3], 3).unwrap();
    let bad = random_f64(&[2], 4).unwrap();
    let err = conv2d_batch_norm_relu_train(&x, &w, None, &good, &bad, cfg(1, 1, 1), NORM_EPS)
        .unwrap_err()
        .to_string();
    assert!(err.contains("norm bias of shape (3)"), "{err}");
    let err =
        conv2d_batch_norm_relu_train(&x, &w, Some(&bad), &good, &good, cfg(1, 1, 1), NORM_EPS)
            .unwrap_err()
            .to_string();
    assert!(err.contains("conv bias of shape (3)"), "{err}");
}

/// Two inputs whose concatenation is never built: the same values, statistics and gradients as
/// concatenating first, on the fused pair path (dense, stride 1) and the fallback (strided).
#[test]
fn concatenated_inputs_match_concatenating_first() {
    for (stride, with_bias) in [(1, true), (1, false), (2, true)] {
        let (n, ca, cb, c, hw) = (2, 3, 2, 4, [5, 6]);
        let var =
            |shape: &[usize], s: u64| Var::from_tensor(&random_f64(shape, s).unwrap()).unwrap();
        let (a, b) = (
            var(&[n, ca, hw[0], hw[1]], 1),
            var(&[n, cb, hw[0], hw[1]], 2),
        );
        let (w, cbias) = (var(&[c, ca + cb, 3, 3], 3), var(&[c], 4));
        let (nw, nb) = (var(&[c], 5), var(&[c], 6));
        let r = random_f64(&[n, c, 1, 1], 7).unwrap();
        let bias = with_bias.then(|| cbias.as_tensor());
        let cfg = cfg(stride, 1, 1);
        let parts = (bias, nw.as_tensor(), nb.as_tensor());
        let inputs = [a.as_tensor(), b.as_tensor()];
        let fused = cat_conv2d_batch_norm_relu_train(&inputs, &w, parts, cfg, NORM_EPS).unwrap();
        let joined = Tensor::cat(&inputs, 1).unwrap();
        let z = conv2d(&joined, &w, bias, cfg).unwrap();
        let separate = batch_norm_relu_train(&z, Some(&nw), Some(&nb), NORM_EPS).unwrap();
        let mut vars = vec![
            ("a", &a),
            ("b", &b),
            ("w", &w),
            ("norm weight", &nw),
            ("norm bias", &nb),
        ];
        if with_bias {
            vars.push(("conv bias", &cbias));
        }
        let what = format!("stride {stride}, bias {with_bias}");
        assert_same_results(&what, &fused, &separate, &r, &vars);
    }
}

#[test]
fn concatenated_inputs_gradients_match_finite_differences() {
    let inputs = [
        random_f64(&[2, 2, 4, 5], 20).unwrap(),
        random_f64(&[2, 3, 4, 5], 21).unwrap(),
        random_f64(&[3, 5, 3, 3], 22).unwrap(),
        random_f64(&[3], 23).unwrap(),
        random_f64(&[3], 24).unwrap(),
        random_f64(&[3], 25).unwrap(),
    ];
    assert_gradients(
        "cat_conv2d_batch_norm_relu_train",
        |t| {
            let params = (Some(&t[3]), &t[4], &t[5]);
            let y = cat_conv2d_batch_norm_relu_train(
                &[&t[0], &t[1]],
                &t[2],
                params,
                cfg(1, 1, 1),
                NORM_EPS,
            );
            Ok(y?.0)
        },
        &inputs,
        EPS,
        TOL,
    );
}

#[test]
fn concatenated_inputs_must_agree_in_size() {
    let a = random_f64(&[2, 2, 4, 5], 1).unwrap();
    let b = random_f64(&[2, 3, 4, 6], 2).unwrap();
    let w = random_f64(&[3, 5, 3, 3], 3).unwrap();
    let p = random_f64(&[3], 4).unwrap();
    let err =
        cat_conv2d_batch_norm_relu_train(&[&a, &b], &w, (None, &p, &p), cfg(1, 1, 1), NORM_EPS)
            .unwrap_err()
            .to_string();
    assert!(err.contains("same N, H and W"), "{err}");
}

/// An input read nearest-upsampled inside the op: the same values, statistics and gradients as
/// up-sampling first, on the fused path (dense, stride 1) and the fallback (strided).
#[test]
fn upsampled_input_matches_upsampling_first() {
    for (stride, with_bias) in [(1, true), (1, false), (2, true)] {
        let (n, c_in, c, hs, ws) = (2, 3, 4, 3, 4);
        let var =
            |shape: &[usize], s: u64| Var::from_tensor(&random_f64(shape, s).unwrap()).unwrap();
        let x = var(&[n, c_in, hs, ws], 31);
        let (w, cbias) = (var(&[c, c_in, 3, 3], 32), var(&[c], 33));
        let (nw, nb) = (var(&[c], 34), var(&[c], 35));
        let r = random_f64(&[n, c, 1, 1], 36).unwrap();
        let bias = with_bias.then(|| cbias.as_tensor());
        let cfg = cfg(stride, 1, 1);
        let params = (bias, nw.as_tensor(), nb.as_tensor());
        let fused =
            upsample_conv2d_batch_norm_relu_train(&x, 2, &w, params, cfg, NORM_EPS).unwrap();
        let up = crosskd_ops::resize::upsample_nearest2d(&x, 2, 2).unwrap();
        let z = conv2d(&up, &w, bias, cfg).unwrap();
        let separate = batch_norm_relu_train(&z, Some(&nw), Some(&nb), NORM_EPS).unwrap();
        let mut vars = vec![
            ("x", &x),
            ("w", &w),
            ("norm weight", &nw),
            ("norm bias", &nb),
        ];
        if with_bias {
            vars.push(("conv bias", &cbias));
        }
        let what = format!("stride {stride}, bias {with_bias}");
        assert_same_results(&what, &fused, &separate, &r, &vars);
    }
}

#[test]
fn upsampled_input_gradients_match_finite_differences() {
    let inputs = [
        random_f64(&[2, 2, 3, 3], 40).unwrap(),
        random_f64(&[3, 2, 3, 3], 41).unwrap(),
        random_f64(&[3], 42).unwrap(),
        random_f64(&[3], 43).unwrap(),
        random_f64(&[3], 44).unwrap(),
    ];
    assert_gradients(
        "upsample_conv2d_batch_norm_relu_train",
        |t| {
            let params = (Some(&t[2]), &t[3], &t[4]);
            let y = upsample_conv2d_batch_norm_relu_train(
                &t[0],
                2,
                &t[1],
                params,
                cfg(1, 1, 1),
                NORM_EPS,
            );
            Ok(y?.0)
        },
        &inputs,
        EPS,
        TOL,
    );
}

/// Evaluation mode folds the norm into the convolution: with non-trivial running statistics and
/// affine parameters it matches conv → batch_norm_eval → relu, and its gradients in the input, the
/// convolution's weight and bias match finite differences.
#[test]
fn folded_evaluation_matches_the_separate_ops_and_finite_differences() {
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
    let bn = batch_norm2d(4, BatchNormConfig::default(), vb.pp("bn")).unwrap();
    {
        let data = map.data().lock().unwrap();
        for (name, seed, offset) in [
            ("bn.running_mean", 90, 0.0),
            ("bn.running_var", 91, 0.5),
            ("bn.weight", 92, 0.0),
            ("bn.bias", 93, 0.0),
        ] {
            let v = random_f64(&[4], seed).unwrap();
            let v = if offset > 0.0 {
                (v.abs().unwrap() + offset).unwrap()
            } else {
                v
            };
            data[name].set(&v).unwrap();
        }
    }
    let x = random_f64(&[2, 3, 5, 5], 94).unwrap();
    let w = random_f64(&[4, 3, 3, 3], 95).unwrap();
    let b = random_f64(&[4], 96).unwrap();
    let c = cfg(1, 1, 1);
    let folded = bn.forward_conv_relu(&x, &w, Some(&b), c, false).unwrap();
    let z = conv2d(&x, &w, Some(&b), c).unwrap();
    let separate = bn.forward_relu(&z, false).unwrap();
    assert!(max_abs_diff(&values(&folded), &values(&separate)) < 1e-12);
    assert_gradients(
        "folded_conv_eval",
        |a| Ok(bn.folded_conv_eval(&a[0], &a[1], Some(&a[2]), c)?),
        &[x, w, b],
        EPS,
        TOL,
    );
}
