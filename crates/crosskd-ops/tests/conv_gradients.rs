//! Finite-difference gradient checks and forward agreement with candle for crosskd-ops convolutions.

use candle_core::{DType, Device, Tensor};
use crosskd_ops::conv::{conv2d, conv_transpose2d, Conv2dConfig, ConvTranspose2dConfig};
use crosskd_ops::gradcheck::{assert_gradients, random_f64, values};

const EPS: f64 = 1e-6;
const TOL: f64 = 1e-6;

fn check_conv(name: &str, x: &[usize], w: &[usize], cfg: Conv2dConfig, bias: bool, seed: u64) {
    let mut inputs = vec![
        random_f64(x, seed).unwrap(),
        random_f64(w, seed + 1).unwrap(),
    ];
    if bias {
        inputs.push(random_f64(&[w[0]], seed + 2).unwrap());
    }
    assert_gradients(
        name,
        |a| Ok(conv2d(&a[0], &a[1], a.get(2), cfg)?),
        &inputs,
        EPS,
        TOL,
    );
}

fn cfg(stride: usize, padding: usize, dilation: usize, groups: usize) -> Conv2dConfig {
    Conv2dConfig {
        stride,
        padding,
        dilation,
        groups,
    }
}

#[test]
fn conv2d_plain() {
    check_conv(
        "plain",
        &[2, 3, 5, 5],
        &[4, 3, 3, 3],
        cfg(1, 0, 1, 1),
        false,
        1,
    );
}

#[test]
fn conv2d_stride_2_with_padding() {
    check_conv(
        "stride 2",
        &[2, 2, 7, 6],
        &[3, 2, 3, 3],
        cfg(2, 1, 1, 1),
        false,
        2,
    );
}

#[test]
fn conv2d_padding_2() {
    check_conv(
        "padding",
        &[1, 2, 4, 5],
        &[3, 2, 3, 3],
        cfg(1, 2, 1, 1),
        false,
        3,
    );
}

#[test]
fn conv2d_dilation_2() {
    check_conv(
        "dilation 2",
        &[1, 2, 7, 7],
        &[2, 2, 3, 3],
        cfg(1, 1, 2, 1),
        false,
        4,
    );
}

#[test]
fn conv2d_groups_2() {
    check_conv(
        "groups 2",
        &[2, 4, 5, 5],
        &[6, 2, 3, 3],
        cfg(1, 1, 1, 2),
        false,
        5,
    );
}

#[test]
fn conv2d_depthwise() {
    check_conv(
        "depthwise",
        &[2, 3, 5, 6],
        &[6, 1, 3, 3],
        cfg(2, 1, 1, 3),
        true,
        6,
    );
}

#[test]
fn conv2d_pointwise() {
    check_conv(
        "1x1",
        &[2, 3, 4, 3],
        &[5, 3, 1, 1],
        cfg(1, 0, 1, 1),
        true,
        7,
    );
}

#[test]
fn conv2d_odd_sizes_and_bias() {
    check_conv(
        "odd sizes",
        &[3, 3, 7, 5],
        &[2, 3, 3, 2],
        cfg(2, 1, 1, 1),
        true,
        8,
    );
}

#[test]
fn conv2d_input_with_two_consumers() {
    let x = random_f64(&[2, 2, 5, 5], 9).unwrap();
    let w1 = random_f64(&[3, 2, 3, 3], 10).unwrap();
    let w2 = random_f64(&[3, 2, 1, 1], 11).unwrap();
    assert_gradients(
        "two consumers",
        |a| {
            let y1 = conv2d(&a[0], &a[1], None, cfg(1, 1, 1, 1))?;
            let y2 = conv2d(&a[0], &a[2], None, cfg(1, 0, 1, 1))?;
            (y1 + y2)? * &a[0].sum_keepdim(1)?.broadcast_as((2, 3, 5, 5))?
        },
        &[x, w1, w2],
        EPS,
        TOL,
    );
}

fn check_transpose(
    name: &str,
    x: &[usize],
    w: &[usize],
    cfg: ConvTranspose2dConfig,
    bias: bool,
    seed: u64,
) {
    let mut inputs = vec![
        random_f64(x, seed).unwrap(),
        random_f64(w, seed + 1).unwrap(),
    ];
    if bias {
        inputs.push(random_f64(&[w[1] * cfg.groups], seed + 2).unwrap());
    }
    assert_gradients(
        name,
        |a| Ok(conv_transpose2d(&a[0], &a[1], a.get(2), cfg)?),
        &inputs,
        EPS,
        TOL,
    );
}

#[test]
fn conv_transpose2d_stride_2() {
    let cfg = ConvTranspose2dConfig {
        stride: 2,
        ..Default::default()
    };
    check_transpose(
        "transpose stride 2",
        &[2, 3, 3, 4],
        &[3, 2, 2, 2],
        cfg,
        true,
        12,
    );
}

#[test]
fn conv_transpose2d_output_padding_and_padding() {
    let cfg = ConvTranspose2dConfig {
        stride: 2,
        padding: 1,
        output_padding: 1,
        ..Default::default()
    };
    check_transpose(
        "transpose output_padding",
        &[1, 2, 3, 3],
        &[2, 3, 3, 3],
        cfg,
        false,
        13,
    );
}

#[test]
fn conv_transpose2d_groups_and_dilation() {
    let cfg = ConvTranspose2dConfig {
        stride: 1,
        padding: 1,
        dilation: 2,
        groups: 2,
        ..Default::default()
    };
    check_transpose(
        "transpose groups",
        &[1, 4, 3, 3],
        &[4, 1, 3, 3],
        cfg,
        false,
        14,
    );
}

fn random_f32(shape: &[usize], seed: u64) -> Tensor {
    random_f64(shape, seed)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn forward_matches_candle_conv2d() {
    let cases = [
        ([2, 8, 13, 11], [16, 8, 3, 3], cfg(1, 1, 1, 1)),
        ([1, 6, 16, 16], [6, 2, 5, 5], cfg(2, 2, 1, 3)),
        ([3, 4, 9, 10], [4, 1, 3, 3], cfg(1, 2, 2, 4)),
        ([2, 5, 8, 8], [7, 5, 1, 1], cfg(1, 0, 1, 1)),
        ([2, 3, 12, 9], [5, 3, 3, 3], cfg(3, 0, 1, 1)),
    ];
    for (i, (xs, ws, c)) in cases.into_iter().enumerate() {
        let x = random_f32(&xs, 100 + i as u64);
        let w = random_f32(&ws, 200 + i as u64);
        let ours = conv2d(&x, &w, None, c).unwrap();
        let theirs = x
            .conv2d(&w, c.padding, c.stride, c.dilation, c.groups)
            .unwrap();
        assert_eq!(ours.dims(), theirs.dims(), "case {i}");
        let d = max_abs_diff(&ours, &theirs);
        assert!(d < 1e-4, "case {i}: max difference {d}");
    }
}

#[test]
fn transpose_forward_matches_candle() {
    let cases = [
        (2, 0, 0, 1, 2),
        (2, 1, 1, 1, 3),
        (1, 1, 0, 2, 3),
        (3, 0, 2, 1, 3),
    ];
    for (i, (stride, padding, output_padding, dilation, k)) in cases.into_iter().enumerate() {
        let x = random_f32(&[2, 4, 5, 6], 300 + i as u64);
        let w = random_f32(&[4, 3, k, k], 400 + i as u64);
        let c = ConvTranspose2dConfig {
            stride,
            padding,
            output_padding,
            dilation,
            groups: 1,
        };
        let ours = conv_transpose2d(&x, &w, None, c).unwrap();
        let theirs = x
            .conv_transpose2d(&w, padding, output_padding, stride, dilation)
            .unwrap();
        assert_eq!(ours.dims(), theirs.dims(), "case {i}");
        let d = max_abs_diff(&ours, &theirs);
        assert!(d < 1e-4, "case {i}: max difference {d}");
    }
}

#[test]
fn rejects_bad_shapes() {
    let x = Tensor::zeros((1, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((4, 2, 3, 3), DType::F32, &Device::Cpu).unwrap();
    assert!(conv2d(&x, &w, None, Conv2dConfig::default()).is_err());
    let w = Tensor::zeros((4, 3, 5, 5), DType::F32, &Device::Cpu).unwrap();
    assert!(conv2d(&x, &w, None, Conv2dConfig::default()).is_err());
}

#[test]
fn input_without_gradient_still_trains_the_weights() {
    let x = random_f64(&[2, 3, 5, 5], 90).unwrap();
    let w = candle_core::Var::from_tensor(&random_f64(&[4, 3, 3, 3], 91).unwrap()).unwrap();
    let b = candle_core::Var::from_tensor(&random_f64(&[4], 92).unwrap()).unwrap();
    let y = conv2d(&x, w.as_tensor(), Some(b.as_tensor()), cfg(1, 1, 1, 1)).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(
        grads.get(&x).is_none(),
        "a plain input tensor got a gradient"
    );
    // Same weight gradient as when the input is a variable.
    let xv = candle_core::Var::from_tensor(&x).unwrap();
    let y2 = conv2d(
        xv.as_tensor(),
        w.as_tensor(),
        Some(b.as_tensor()),
        cfg(1, 1, 1, 1),
    )
    .unwrap();
    let grads2 = y2.sum_all().unwrap().backward().unwrap();
    let dw = values(grads.get(w.as_tensor()).unwrap());
    let dw2 = values(grads2.get(w.as_tensor()).unwrap());
    assert_eq!(dw, dw2);
    assert!(grads2.get(xv.as_tensor()).is_some());
}
