//! Times the forward pass, weight gradient and input gradient of each 3×3 convolution of the
//! issue-3 reference UNet (batch 16) through `crosskd_ops::conv::conv2d`, best of 10 runs each
//! (`cargo run --release -p crosskd-ops --example conv_layers`). Best-of timings are steadier than
//! the train-step median on a shared machine, so this is the loop for work on the conv kernels.
//! The gradients are the backward pass of `sum(y·r)` minus the same backward into a plain variable
//! (the harness column). Run it with the allocator settings of the project's binaries
//! (`MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824`), or every fresh 8 MB
//! tensor is page-faulted in and the harness dominates.

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use crosskd_ops::conv::{conv2d, Conv2dConfig};

fn best_ms(
    runs: usize,
    mut f: impl FnMut() -> candle_core::Result<()>,
) -> candle_core::Result<f64> {
    f()?;
    let mut best = f64::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(best)
}

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    // (c_in, c_out, size, stride) of the reference network's 3×3 convolutions.
    let layers = [
        (3, 32, 64, 1),
        (32, 32, 64, 1),
        (32, 64, 32, 1),
        (64, 64, 32, 1),
        (64, 128, 32, 2),
        (128, 128, 16, 1),
        (128, 64, 32, 1),
        (64, 32, 64, 1),
        (64, 32, 64, 1),
    ];
    let (mut total_f, mut total_w, mut total_i) = (0.0, 0.0, 0.0);
    println!("layer                      fwd ms   wgrad ms  igrad ms");
    for (c_in, c_out, size, stride) in layers {
        let x = Tensor::randn(0f32, 1.0, (16, c_in, size, size), &dev)?;
        let xv = Var::from_tensor(&x)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (c_out, c_in, 3, 3), &dev)?)?;
        let b = Var::from_tensor(&Tensor::zeros(c_out, candle_core::DType::F32, &dev)?)?;
        let cfg = Conv2dConfig {
            stride,
            padding: 1,
            ..Default::default()
        };
        let y = conv2d(&x, &w, Some(&b), cfg).map_err(candle_core::Error::wrap)?;
        let r = Tensor::randn(0f32, 1.0, y.dims(), &dev)?;
        let fwd = best_ms(10, || {
            conv2d(&x, &w, Some(&b), cfg)
                .map(|_| ())
                .map_err(candle_core::Error::wrap)
        })?;
        // The harness's own backward (through `y·r` and the sum) into a plain variable of y's shape.
        let yv = Var::from_tensor(&y)?;
        let harness = best_ms(10, || {
            (yv.as_tensor() * &r)?.sum_all()?.backward().map(|_| ())
        })?;
        let with_w = best_ms(10, || {
            let y = conv2d(&x, &w, Some(&b), cfg).map_err(candle_core::Error::wrap)?;
            (y * &r)?.sum_all()?.backward().map(|_| ())
        })?;
        let with_x = best_ms(10, || {
            let y = conv2d(xv.as_tensor(), &w, Some(&b), cfg).map_err(candle_core::Error::wrap)?;
            (y * &r)?.sum_all()?.backward().map(|_| ())
        })?;
        let (wgrad, igrad) = (with_w - fwd - harness, with_x - with_w);
        total_f += fwd;
        total_w += wgrad;
        total_i += igrad;
        println!("{c_in:3}->{c_out:3} {size:2}x{size:2} s{stride}          {fwd:8.2}  {wgrad:8.2}  {igrad:8.2}   (harness {harness:.2}, fwd+bwd w {with_w:.2}, x {with_x:.2})");
    }
    println!("total                      {total_f:8.2}  {total_w:8.2}  {total_i:8.2}");
    Ok(())
}
