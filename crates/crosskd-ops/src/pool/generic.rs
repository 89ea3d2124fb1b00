//! Pooling written as compositions of candle primitives (`index_select`, `argmax`, `gather`,
//! sums), whose backward passes candle gets right on every device. Used wherever the CPU kernels
//! do not apply (GPU devices, half-precision dtypes); public so the tests can check it on CPU.

use candle_core::Tensor;

use super::PoolGeometry;
use crate::Result;

/// [`super::max_pool2d`] built from candle primitives only.
pub fn max_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let geo = PoolGeometry::new("max_pool2d", x, kernel, stride, padding)?;
    max_pool2d_impl(x, &geo)
}

/// [`super::avg_pool2d`] built from candle primitives only.
pub fn avg_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    count_include_pad: bool,
) -> Result<Tensor> {
    let geo = PoolGeometry::new("avg_pool2d", x, kernel, stride, padding)?;
    avg_pool2d_impl(x, &geo, count_include_pad)
}

/// For every output position and kernel offset (row-major, kernel offsets innermost), the flat
/// input index `ih * w + iw`, or `h * w` (a sentinel column) in the padding.
fn window_indices(geo: &PoolGeometry) -> Vec<u32> {
    let (kh, kw) = geo.kernel;
    let sentinel = (geo.h * geo.w) as u32;
    let mut idx = Vec::with_capacity(geo.out_h * geo.out_w * kh * kw);
    for oh in 0..geo.out_h {
        for ow in 0..geo.out_w {
            for ki in 0..kh {
                let ih = PoolGeometry::source(oh, ki, geo.stride.0, geo.padding.0, geo.h);
                for kj in 0..kw {
                    let iw = PoolGeometry::source(ow, kj, geo.stride.1, geo.padding.1, geo.w);
                    idx.push(match (ih, iw) {
                        (Some(ih), Some(iw)) => (ih * geo.w + iw) as u32,
                        _ => sentinel,
                    });
                }
            }
        }
    }
    idx
}

/// Gathers every window into `(N, C, OH·OW, kH·kW)`, with `fill` in the padding.
fn windows(geo: &PoolGeometry, x: &Tensor, fill: f64) -> Result<Tensor> {
    let (n, c) = (geo.n, geo.c);
    let flat = x.reshape((n, c, geo.h * geo.w))?;
    let sentinel = Tensor::new(&[fill], x.device())?
        .to_dtype(x.dtype())?
        .broadcast_as((n, c, 1))?;
    let padded = Tensor::cat(&[&flat, &sentinel], 2)?;
    let window = geo.kernel.0 * geo.kernel.1;
    let idx = Tensor::from_vec(
        window_indices(geo),
        geo.out_h * geo.out_w * window,
        x.device(),
    )?;
    Ok(padded
        .index_select(&idx, 2)?
        .reshape((n, c, geo.out_h * geo.out_w, window))?)
}

pub(super) fn max_pool2d_impl(x: &Tensor, geo: &PoolGeometry) -> Result<Tensor> {
    let windows = windows(geo, x, f64::NEG_INFINITY)?;
    // argmax returns the first maximum, and gather routes the gradient to exactly that element;
    // candle's `max` reduction would instead copy it to every tied element.
    let first_max = windows.argmax_keepdim(3)?;
    Ok(windows
        .gather(&first_max, 3)?
        .reshape((geo.n, geo.c, geo.out_h, geo.out_w))?)
}

pub(super) fn avg_pool2d_impl(
    x: &Tensor,
    geo: &PoolGeometry,
    count_include_pad: bool,
) -> Result<Tensor> {
    let sums = windows(geo, x, 0.0)?.sum(3)?;
    let inv: Vec<f64> = geo
        .divisors(count_include_pad)
        .into_iter()
        .map(|d| 1.0 / d as f64)
        .collect();
    let inv = Tensor::from_vec(inv, geo.out_h * geo.out_w, x.device())?.to_dtype(x.dtype())?;
    Ok(sums
        .broadcast_mul(&inv)?
        .reshape((geo.n, geo.c, geo.out_h, geo.out_w))?)
}
