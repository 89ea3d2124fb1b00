//! Normalisation: hand-computed forward cases and running-statistics updates (PyTorch
//! definitions), finite-difference gradient checks through inputs and affine parameters, and the
//! layers' parameter names, checkpointable buffers and train/eval behaviour.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Module, ModuleT, VarBuilder, VarMap};
use crosskd_ops::gradcheck::{assert_gradients, random_f64, values};
use crosskd_ops::norm::{
    self, batch_norm2d, batch_norm_eval, batch_norm_train, group_norm, group_norm_layer, is_buffer,
    layer_norm, layer_norm_layer, BatchNormConfig,
};

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

type BnTrain = fn(
    &Tensor,
    Option<&Tensor>,
    Option<&Tensor>,
    f64,
) -> crosskd_ops::Result<(Tensor, Tensor, Tensor)>;
type Gn = fn(&Tensor, usize, Option<&Tensor>, Option<&Tensor>, f64) -> crosskd_ops::Result<Tensor>;
type Ln = fn(&Tensor, Option<&Tensor>, Option<&Tensor>, f64) -> crosskd_ops::Result<Tensor>;
const BN_IMPLS: [(&str, BnTrain); 2] = [
    ("cpu", batch_norm_train),
    ("generic", norm::generic::batch_norm_train),
];
const BN_RELU_IMPLS: [(&str, BnTrain); 2] = [
    ("cpu", norm::batch_norm_relu_train),
    ("generic", norm::generic::batch_norm_relu_train),
];
const GN_IMPLS: [(&str, Gn); 2] = [("cpu", group_norm), ("generic", norm::generic::group_norm)];
const LN_IMPLS: [(&str, Ln); 2] = [("cpu", layer_norm), ("generic", norm::generic::layer_norm)];

#[test]
fn batch_norm_train_by_hand() {
    // Channel 0: [1, 2, 3, 4]: mean 2.5, biased variance 1.25, unbiased 5/3.
    // Channel 1: [0, 0, 2, 2]: mean 1, biased variance 1, unbiased 4/3.
    let x = Tensor::from_slice(&[1f64, 0., 2., 0., 3., 2., 4., 2.], (4, 2), &Device::Cpu).unwrap();
    let w = Tensor::from_slice(&[2f64, 1.], 2, &Device::Cpu).unwrap();
    let b = Tensor::from_slice(&[0f64, -1.], 2, &Device::Cpu).unwrap();
    let eps = 1e-5;
    for (name, f) in BN_IMPLS {
        let (y, mean, var) = f(&x, Some(&w), Some(&b), eps).unwrap();
        assert_close(&values(&mean), &[2.5, 1.0], 1e-15, name);
        assert_close(&values(&var), &[5.0 / 3.0, 4.0 / 3.0], 1e-15, name);
        let s0 = (1.25f64 + eps).sqrt();
        let s1 = (1.0f64 + eps).sqrt();
        let expected = [
            2.0 * (1.0 - 2.5) / s0,
            -1.0 / s1 - 1.0,
            2.0 * (2.0 - 2.5) / s0,
            -1.0 / s1 - 1.0,
            2.0 * (3.0 - 2.5) / s0,
            1.0 / s1 - 1.0,
            2.0 * (4.0 - 2.5) / s0,
            1.0 / s1 - 1.0,
        ];
        assert_close(&values(&y), &expected, 1e-14, name);
    }
    // (N, C, H, W): statistics over N, H and W.
    let x = Tensor::from_slice(
        &[1f64, 2., 10., 20., 3., 4., 30., 40.],
        (2, 2, 1, 2),
        &Device::Cpu,
    )
    .unwrap();
    for (name, f) in BN_IMPLS {
        let (_, mean, var) = f(&x, None, None, eps).unwrap();
        // Channel 0: [1, 2, 3, 4]; channel 1: [10, 20, 30, 40] (mean 25, unbiased var 500/3).
        assert_close(&values(&mean), &[2.5, 25.0], 1e-13, name);
        assert_close(&values(&var), &[5.0 / 3.0, 500.0 / 3.0], 1e-12, name);
    }
}

#[test]
fn group_and_layer_norm_by_hand() {
    // One sample, 4 channels of one pixel, 2 groups: [1, 3 | 2, 6]: means 2 and 4, biased
    // variances 1 and 4.
    let x = Tensor::from_slice(&[1f64, 3., 2., 6.], (1, 4, 1, 1), &Device::Cpu).unwrap();
    let eps = 1e-5;
    let (a, b) = (1.0 / (1.0f64 + eps).sqrt(), 2.0 / (4.0f64 + eps).sqrt());
    for (name, f) in GN_IMPLS {
        let y = f(&x, 2, None, None, eps).unwrap();
        assert_close(&values(&y), &[-a, a, -b, b], 1e-15, name);
    }
    // Layer norm of [1, 2, 3] (mean 2, biased variance 2/3), weight [1, 2, 3], bias [0, 0, 1].
    let x = Tensor::from_slice(&[1f64, 2., 3.], (1, 3), &Device::Cpu).unwrap();
    let w = Tensor::from_slice(&[1f64, 2., 3.], 3, &Device::Cpu).unwrap();
    let bias = Tensor::from_slice(&[0f64, 0., 1.], 3, &Device::Cpu).unwrap();
    let s = 1.0 / (2.0f64 / 3.0 + eps).sqrt();
    for (name, f) in LN_IMPLS {
        let y = f(&x, Some(&w), Some(&bias), eps).unwrap();
        assert_close(&values(&y), &[-s, 0.0, 3.0 * s + 1.0], 1e-14, name);
    }
}

#[test]
fn batch_norm_eval_by_hand() {
    let x = Tensor::from_slice(&[1f64, 5.], (1, 2), &Device::Cpu).unwrap();
    let rm = Tensor::from_slice(&[0f64, 1.], 2, &Device::Cpu).unwrap();
    let rv = Tensor::from_slice(&[4f64, 16.], 2, &Device::Cpu).unwrap();
    let w = Tensor::from_slice(&[2f64, 1.], 2, &Device::Cpu).unwrap();
    let b = Tensor::from_slice(&[1f64, 0.], 2, &Device::Cpu).unwrap();
    let y = batch_norm_eval(&x, &rm, &rv, Some(&w), Some(&b), 0.0).unwrap();
    assert_close(&values(&y), &[2.0 * 0.5 + 1.0, 1.0], 1e-15, "eval");
}

#[test]
fn batch_norm_gradients_match_finite_differences() {
    for (name, f) in BN_IMPLS {
        for shape in [vec![2usize, 3, 3, 4], vec![5, 3]] {
            let x = random_f64(&shape, 50).unwrap();
            let w = random_f64(&[3], 51).unwrap();
            let b = random_f64(&[3], 52).unwrap();
            assert_gradients(
                &format!("batch_norm_train[{name}] {shape:?}"),
                |a| Ok(f(&a[0], Some(&a[1]), Some(&a[2]), 1e-5)?.0),
                &[x.clone(), w, b],
                EPS,
                TOL,
            );
            assert_gradients(
                &format!("batch_norm_train[{name}] {shape:?} no affine"),
                |a| Ok(f(&a[0], None, None, 1e-5)?.0),
                std::slice::from_ref(&x),
                EPS,
                TOL,
            );
        }
    }
    let x = random_f64(&[2, 3, 2, 3], 53).unwrap();
    let rm = random_f64(&[3], 54).unwrap();
    let rv = (random_f64(&[3], 55).unwrap().abs().unwrap() + 0.5).unwrap();
    let w = random_f64(&[3], 56).unwrap();
    let b = random_f64(&[3], 57).unwrap();
    assert_gradients(
        "batch_norm_eval",
        |a| {
            Ok(batch_norm_eval(
                &a[0],
                &a[1],
                &a[2],
                Some(&a[3]),
                Some(&a[4]),
                1e-5,
            )?)
        },
        &[x, rm, rv, w, b],
        EPS,
        TOL,
    );
}

#[test]
fn group_and_layer_norm_gradients_match_finite_differences() {
    let x = random_f64(&[2, 6, 2, 3], 60).unwrap();
    let w = random_f64(&[6], 61).unwrap();
    let b = random_f64(&[6], 62).unwrap();
    for (name, f) in GN_IMPLS {
        for groups in [1, 2, 6] {
            assert_gradients(
                &format!("group_norm[{name}] groups={groups}"),
                |a| Ok(f(&a[0], groups, Some(&a[1]), Some(&a[2]), 1e-5)?),
                &[x.clone(), w.clone(), b.clone()],
                EPS,
                TOL,
            );
        }
    }
    let x = random_f64(&[2, 3, 5], 63).unwrap();
    let w = random_f64(&[5], 64).unwrap();
    let b = random_f64(&[5], 65).unwrap();
    for (name, f) in LN_IMPLS {
        assert_gradients(
            &format!("layer_norm[{name}]"),
            |a| Ok(f(&a[0], Some(&a[1]), Some(&a[2]), 1e-5)?),
            &[x.clone(), w.clone(), b.clone()],
            EPS,
            TOL,
        );
        assert_gradients(
            &format!("layer_norm[{name}] no affine"),
            |a| Ok(f(&a[0], None, None, 1e-5)?),
            std::slice::from_ref(&x),
            EPS,
            TOL,
        );
    }
}

#[test]
fn normalised_input_with_a_second_consumer_accumulates_gradients() {
    let x = random_f64(&[2, 4, 2, 2], 66).unwrap();
    assert_gradients(
        "batch_norm(x) * group_norm(x) + layer_norm(x)",
        |a| {
            let bn = batch_norm_train(&a[0], None, None, 1e-5)?.0;
            let gn = group_norm(&a[0], 2, None, None, 1e-5)?;
            let ln = layer_norm(&a[0], None, None, 1e-5)?;
            ((bn * gn)? + ln)? + a[0].sqr()?
        },
        &[x],
        EPS,
        TOL,
    );
}

/// A VarBuilder over plain tensors, so the layers' parameters can be gradient-checked as inputs.
fn builder(tensors: &[(&str, &Tensor)]) -> VarBuilder<'static> {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| (k.to_string(), (*v).clone()))
        .collect();
    VarBuilder::from_tensors(map, DType::F64, &Device::Cpu)
}

#[test]
fn layer_gradients_match_finite_differences_through_parameters() {
    let x = random_f64(&[3, 4, 2, 3], 70).unwrap();
    let w = random_f64(&[4], 71).unwrap();
    let b = random_f64(&[4], 72).unwrap();
    let rm = random_f64(&[4], 73).unwrap();
    let rv = (random_f64(&[4], 74).unwrap().abs().unwrap() + 0.5).unwrap();
    for train in [true, false] {
        assert_gradients(
            &format!("BatchNorm2d train={train}"),
            |a| {
                let vb = builder(&[
                    ("bn.weight", &a[1]),
                    ("bn.bias", &a[2]),
                    ("bn.running_mean", &rm),
                    ("bn.running_var", &rv),
                ]);
                let bn = batch_norm2d(4, BatchNormConfig::default(), vb.pp("bn"))?;
                bn.forward_t(&a[0], train)
            },
            &[x.clone(), w.clone(), b.clone()],
            EPS,
            TOL,
        );
    }
    assert_gradients(
        "GroupNorm layer",
        |a| {
            let vb = builder(&[("gn.weight", &a[1]), ("gn.bias", &a[2])]);
            group_norm_layer(2, 4, 1e-5, vb.pp("gn"))?.forward(&a[0])
        },
        &[x.clone(), w.clone(), b.clone()],
        EPS,
        TOL,
    );
    let xl = random_f64(&[2, 3, 4], 75).unwrap();
    assert_gradients(
        "LayerNorm layer",
        |a| {
            let vb = builder(&[("ln.weight", &a[1]), ("ln.bias", &a[2])]);
            layer_norm_layer(4, 1e-5, true, vb.pp("ln"))?.forward(&a[0])
        },
        &[xl, w, b],
        EPS,
        TOL,
    );
}

#[test]
fn batch_norm_layer_updates_running_statistics_in_the_varmap() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    let bn = batch_norm2d(2, BatchNormConfig::default(), vb.pp("bn1")).unwrap();
    let mut names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "bn1.bias",
            "bn1.num_batches_tracked",
            "bn1.running_mean",
            "bn1.running_var",
            "bn1.weight"
        ]
    );
    let buffers: Vec<bool> = names.iter().map(|n| is_buffer(n)).collect();
    assert_eq!(buffers, [false, true, true, true, false]);

    // Channel 0 sees [1, 2, 3, 4] (mean 2.5, unbiased var 5/3); channel 1 sees [0, 0, 2, 2]
    // (mean 1, unbiased var 4/3). PyTorch, momentum 0.1, from (0, 1):
    // running_mean = 0.1·mean, running_var = 0.9 + 0.1·var.
    let x = Tensor::from_slice(
        &[1f64, 0., 2., 0., 3., 2., 4., 2.],
        (4, 2, 1, 1),
        &Device::Cpu,
    )
    .unwrap();
    bn.forward_t(&x, true).unwrap();
    let stored = |name: &str| values(varmap.data().lock().unwrap()[name].as_tensor());
    assert_close(
        &stored("bn1.running_mean"),
        &[0.25, 0.1],
        1e-15,
        "running_mean",
    );
    assert_close(
        &stored("bn1.running_var"),
        &[0.9 + 0.5 / 3.0, 0.9 + 0.4 / 3.0],
        1e-15,
        "running_var",
    );
    assert_eq!(stored("bn1.num_batches_tracked"), vec![1.0]);
    // A second step: running = 0.9·running + 0.1·batch.
    bn.forward_t(&x, true).unwrap();
    assert_close(
        &stored("bn1.running_mean"),
        &[0.9 * 0.25 + 0.25, 0.9 * 0.1 + 0.1],
        1e-15,
        "running_mean 2",
    );
    assert_eq!(stored("bn1.num_batches_tracked"), vec![2.0]);

    // Eval mode uses the running statistics and changes nothing.
    let before = stored("bn1.running_mean");
    let y = bn.forward_t(&x, false).unwrap();
    assert_eq!(stored("bn1.running_mean"), before);
    let rm = stored("bn1.running_mean");
    let rv = stored("bn1.running_var");
    let expected: Vec<f64> = [1f64, 0., 2., 0., 3., 2., 4., 2.]
        .iter()
        .enumerate()
        .map(|(i, v)| (v - rm[i % 2]) / (rv[i % 2] + 1e-5).sqrt())
        .collect();
    assert_close(&values(&y), &expected, 1e-14, "eval output");

    // The same statistics load into a fresh layer from the saved VarMap (a checkpoint round trip).
    let dir = std::env::temp_dir().join(format!("crosskd-ops-bn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bn.safetensors");
    varmap.save(&path).unwrap();
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F64, &Device::Cpu) }.unwrap();
    let restored = batch_norm2d(2, BatchNormConfig::default(), vb.pp("bn1")).unwrap();
    assert_eq!(values(restored.running_mean()), rm);
    assert_eq!(values(restored.running_var()), rv);
    assert_eq!(values(&restored.forward_t(&x, false).unwrap()), values(&y));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn batch_norm_layer_without_num_batches_tracked_still_loads() {
    // Old PyTorch checkpoints have no `num_batches_tracked`.
    let rm = Tensor::from_slice(&[1f64, 2.], 2, &Device::Cpu).unwrap();
    let rv = Tensor::from_slice(&[4f64, 9.], 2, &Device::Cpu).unwrap();
    let w = Tensor::ones(2, DType::F64, &Device::Cpu).unwrap();
    let b = Tensor::zeros(2, DType::F64, &Device::Cpu).unwrap();
    let vb = builder(&[
        ("weight", &w),
        ("bias", &b),
        ("running_mean", &rm),
        ("running_var", &rv),
    ]);
    let bn = batch_norm2d(2, BatchNormConfig::default(), vb).unwrap();
    assert_eq!(values(bn.num_batches_tracked()), vec![0.0]);
    // A missing running_mean is an error.
    let vb = builder(&[("weight", &w), ("bias", &b), ("running_var", &rv)]);
    assert!(batch_norm2d(2, BatchNormConfig::default(), vb).is_err());
}

#[test]
fn batch_norm_gradient_does_not_reach_the_running_statistics() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    let bn = batch_norm2d(3, BatchNormConfig::default(), vb).unwrap();
    let x = Var::from_tensor(&random_f64(&[2, 3, 2, 2], 76).unwrap()).unwrap();
    for train in [true, false] {
        let loss = bn
            .forward_t(x.as_tensor(), train)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let data = varmap.data().lock().unwrap();
        for name in ["running_mean", "running_var", "num_batches_tracked"] {
            assert!(
                grads.get(data[name].as_tensor()).is_none(),
                "{name} got a gradient (train={train})"
            );
        }
        assert!(grads.get(data["weight"].as_tensor()).is_some());
        assert!(grads.get(x.as_tensor()).is_some());
    }
}

#[test]
fn f32_matches_f64() {
    let x64 = random_f64(&[3, 4, 5, 3], 80).unwrap();
    let x32 = x64.to_dtype(DType::F32).unwrap();
    for (name, f) in BN_IMPLS {
        let a = values(&f(&x64, None, None, 1e-5).unwrap().0);
        let b = values(&f(&x32, None, None, 1e-5).unwrap().0);
        assert_close(&b, &a, 1e-5, name);
    }
    let grad_of = |x: &Tensor| {
        let v = Var::from_tensor(x).unwrap();
        let y = batch_norm_train(v.as_tensor(), None, None, 1e-5).unwrap().0;
        let z = group_norm(v.as_tensor(), 2, None, None, 1e-5).unwrap();
        let l = layer_norm(v.as_tensor(), None, None, 1e-5).unwrap();
        // Cubes: the sum of squares of a standardised tensor is constant, so its gradient is 0.
        let cube = |t: &Tensor| t.sqr().unwrap().mul(t).unwrap().sum_all().unwrap();
        let loss = ((cube(&y) + cube(&z)).unwrap() + cube(&l)).unwrap();
        values(loss.backward().unwrap().get(v.as_tensor()).unwrap())
    };
    assert_close(&grad_of(&x32), &grad_of(&x64), 1e-3, "gradients");
}

#[test]
fn rejects_bad_arguments() {
    let x = random_f64(&[2, 6, 2, 2], 81).unwrap();
    assert!(
        group_norm(&x, 4, None, None, 1e-5).is_err(),
        "6 channels in 4 groups"
    );
    let w = random_f64(&[5], 82).unwrap();
    assert!(
        batch_norm_train(&x, Some(&w), None, 1e-5).is_err(),
        "weight of the wrong size"
    );
    assert!(
        layer_norm(&x, Some(&w), None, 1e-5).is_err(),
        "weight of the wrong size"
    );
    let single = random_f64(&[1, 3], 83).unwrap();
    assert!(
        batch_norm_train(&single, None, None, 1e-5).is_err(),
        "one value per channel"
    );
    let vb = VarBuilder::zeros(DType::F64, &Device::Cpu);
    assert!(group_norm_layer(3, 4, 1e-5, vb).is_err());
}

#[test]
fn channel_bias_matches_broadcast_add_and_finite_differences() {
    for shape in [vec![2usize, 3, 4, 5], vec![4, 3]] {
        let x = random_f64(&shape, 70).unwrap();
        let b = random_f64(&[3], 71).unwrap();
        let mut bshape = vec![1usize; shape.len()];
        bshape[1] = 3;
        let expected = x
            .broadcast_add(&b.reshape(bshape.as_slice()).unwrap())
            .unwrap();
        let got = norm::add_channel_bias(&x, &b).unwrap();
        assert_close(
            &values(&got),
            &values(&expected),
            1e-12,
            "channel bias forward",
        );
        assert_gradients(
            &format!("add_channel_bias {shape:?}"),
            |a| Ok(norm::add_channel_bias(&a[0], &a[1])?),
            &[x.clone(), b.clone()],
            EPS,
            TOL,
        );
    }
    let x = random_f64(&[2, 3, 2], 74).unwrap();
    let wrong = random_f64(&[4], 75).unwrap();
    let err = norm::add_channel_bias(&x, &wrong).unwrap_err().to_string();
    assert!(err.contains("bias of shape (3)"), "{err}");
}

#[test]
fn batch_norm_relu_is_relu_of_batch_norm_with_matching_gradients() {
    let x = random_f64(&[2, 3, 3, 4], 80).unwrap();
    let w = random_f64(&[3], 81).unwrap();
    let b = random_f64(&[3], 82).unwrap();
    let (plain, mean, var) = batch_norm_train(&x, Some(&w), Some(&b), 1e-5).unwrap();
    let expected: Vec<f64> = values(&plain).iter().map(|v| v.max(0.0)).collect();
    assert!(
        expected.iter().all(|v| *v == 0.0 || *v > 1e-4),
        "test input too close to the ReLU kink"
    );
    for (name, f) in BN_RELU_IMPLS {
        let (y, m, v) = f(&x, Some(&w), Some(&b), 1e-5).unwrap();
        assert_close(&values(&y), &expected, 1e-12, &format!("{name} forward"));
        assert_close(&values(&m), &values(&mean), 1e-12, &format!("{name} mean"));
        assert_close(
            &values(&v),
            &values(&var),
            1e-12,
            &format!("{name} variance"),
        );
        assert_gradients(
            &format!("batch_norm_relu_train[{name}]"),
            |a| Ok(f(&a[0], Some(&a[1]), Some(&a[2]), 1e-5)?.0),
            &[x.clone(), w.clone(), b.clone()],
            EPS,
            TOL,
        );
    }
}

#[test]
fn batch_norm_layer_forward_relu_matches_forward_then_relu() {
    for train in [true, false] {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
        let bn = batch_norm2d(3, BatchNormConfig::default(), vb).unwrap();
        let x = random_f64(&[2, 3, 2, 2], 83).unwrap();
        let fused = bn.forward_relu(&x, train).unwrap();
        let stats_after_fused = values(bn.running_mean());
        let map2 = VarMap::new();
        let vb2 = VarBuilder::from_varmap(&map2, DType::F64, &Device::Cpu);
        let bn2 = batch_norm2d(3, BatchNormConfig::default(), vb2).unwrap();
        let plain = bn2.forward_t(&x, train).unwrap();
        let expected: Vec<f64> = values(&plain).iter().map(|v| v.max(0.0)).collect();
        assert_close(&values(&fused), &expected, 1e-12, &format!("train={train}"));
        assert_close(
            &stats_after_fused,
            &values(bn2.running_mean()),
            1e-12,
            "running mean",
        );
    }
}

/// The one-pass statistics stay exact for data far from zero (a large mean and a small spread is
/// where naive sum-of-squares variance loses its digits).
#[test]
fn batch_statistics_hold_for_data_far_from_zero() {
    let (n, c, hw) = (3, 2, 20);
    let noise = values(&random_f64(&[n, c, hw], 90).unwrap());
    let data: Vec<f64> = noise.iter().map(|v| 1.0e4 + 0.01 * v).collect();
    let x = Tensor::from_vec(data.clone(), (n, c, 4, 5), &Device::Cpu).unwrap();
    let (_, mean, var) = batch_norm_train(&x, None, None, 1e-5).unwrap();
    for ch in 0..c {
        let vals: Vec<f64> = (0..n)
            .flat_map(|i| data[(i * c + ch) * hw..(i * c + ch + 1) * hw].to_vec())
            .collect();
        let m = vals.iter().sum::<f64>() / vals.len() as f64;
        let unbiased =
            vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (vals.len() - 1) as f64;
        let (got_m, got_v) = (values(&mean)[ch], values(&var)[ch]);
        assert!((got_m - m).abs() < 1e-9, "mean {got_m} vs {m}");
        assert!(
            (got_v - unbiased).abs() < 1e-9 * unbiased,
            "variance {got_v} vs {unbiased}"
        );
    }
}
