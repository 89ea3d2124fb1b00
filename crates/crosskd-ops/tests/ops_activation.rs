//! ReLU and ReLU6: forward against the definition (and candle away from the kinks), gradients
//! against finite differences, and PyTorch's zero derivative at the kinks.

use candle_core::{Device, Tensor, Var};
use crosskd_ops::activation::{relu, relu6};
use crosskd_ops::gradcheck::{assert_gradients, random_f64};

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
#[allow(clippy::disallowed_methods)] // compares against candle's relu
fn forward_matches_the_definition() {
    let x = (random_f64(&[3, 4, 5], 1).unwrap() * 8.0).unwrap();
    let xs = values(&x);
    for (name, f, max) in [
        ("relu", relu as fn(&Tensor) -> _, f64::INFINITY),
        ("relu6", relu6, 6.0),
    ] {
        let y = values(&f(&x).unwrap());
        for (a, b) in xs.iter().zip(&y) {
            assert_eq!(*b, a.max(0.0).min(max), "{name}({a})");
        }
    }
    let f32x = x.to_dtype(candle_core::DType::F32).unwrap();
    let ours: Vec<f32> = relu(&f32x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let candle: Vec<f32> = f32x
        .relu()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(ours, candle);
}

#[test]
fn gradients_match_finite_differences() {
    // Scaled so that no entry lies within the finite-difference step of a kink.
    let x = (random_f64(&[2, 3, 4, 4], 2).unwrap() * 8.0).unwrap();
    let near_kink = values(&x)
        .iter()
        .any(|v| v.abs() < 1e-3 || (v - 6.0).abs() < 1e-3);
    assert!(!near_kink, "test input too close to a kink");
    for (name, f) in [("relu", relu as fn(&Tensor) -> _), ("relu6", relu6)] {
        let check = |a: &[Tensor]| Ok(f(&a[0])?);
        assert_gradients(name, check, std::slice::from_ref(&x), 1e-6, 1e-6);
    }
    // A non-contiguous input goes through the same kernel.
    assert_gradients(
        "relu transposed",
        |a| Ok(relu(&a[0].t()?)?),
        &[x],
        1e-6,
        1e-6,
    );
}

#[test]
fn derivative_at_the_kinks_is_zero() {
    let x = Var::from_tensor(&Tensor::new(&[0f64, 6.0, 3.0, -1.0], &Device::Cpu).unwrap()).unwrap();
    let g = relu6(x.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        values(g.get(x.as_tensor()).unwrap()),
        vec![0.0, 0.0, 1.0, 0.0]
    );
    let g = relu(x.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        values(g.get(x.as_tensor()).unwrap()),
        vec![0.0, 1.0, 1.0, 0.0]
    );
}

#[test]
fn nan_passes_through_as_in_pytorch() {
    let x = Tensor::new(&[f32::NAN, -1.0, 7.0], &Device::Cpu).unwrap();
    for f in [relu, relu6] {
        let y: Vec<f32> = f(&x).unwrap().to_vec1().unwrap();
        assert!(y[0].is_nan(), "a NaN activation was hidden: {y:?}");
    }
    let (y, _, _) = crosskd_ops::norm::batch_norm_relu_train(
        &Tensor::new(&[[f32::NAN], [1.0]], &Device::Cpu).unwrap(),
        Some(&Tensor::new(&[1f32], &Device::Cpu).unwrap()),
        Some(&Tensor::new(&[0f32], &Device::Cpu).unwrap()),
        1e-5,
    )
    .unwrap();
    let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
    assert!(
        y.iter().all(|v| v.is_nan()),
        "batch norm + ReLU hid a NaN: {y:?}"
    );
}
