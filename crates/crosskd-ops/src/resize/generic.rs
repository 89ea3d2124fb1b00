//! Resizing built from candle primitives (`index_select`, whose backward is an accumulating
//! `index_add`, and broadcast multiplications), for devices and dtypes without a hand-written
//! kernel; public so the tests can check it on CPU.

use candle_core::Tensor;

use super::{bilinear_source, check_positive, dims4, nearest_source_index};
use crate::Result;

/// `x[:, :, rows, :][:, :, :, cols]`.
pub(crate) fn gather_rows_cols(x: &Tensor, rows: &[usize], cols: &[usize]) -> Result<Tensor> {
    let dev = x.device();
    let rows = Tensor::from_vec(
        rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
        rows.len(),
        dev,
    )?;
    let cols = Tensor::from_vec(
        cols.iter().map(|&c| c as u32).collect::<Vec<_>>(),
        cols.len(),
        dev,
    )?;
    Ok(x.index_select(&rows, 2)?.index_select(&cols, 3)?)
}

/// Linear interpolation of dimension `dim` (2 or 3) from `in_size` to `out_size`.
fn lerp_along(x: &Tensor, dim: usize, in_size: usize, out_size: usize) -> Result<Tensor> {
    if in_size == out_size {
        return Ok(x.clone());
    }
    let src: Vec<(usize, usize, f64)> = (0..out_size)
        .map(|o| bilinear_source(o, in_size, out_size))
        .collect();
    let dev = x.device();
    let i0 = Tensor::from_vec(
        src.iter().map(|s| s.0 as u32).collect::<Vec<_>>(),
        out_size,
        dev,
    )?;
    let i1 = Tensor::from_vec(
        src.iter().map(|s| s.1 as u32).collect::<Vec<_>>(),
        out_size,
        dev,
    )?;
    let mut wshape = vec![1usize; 4];
    wshape[dim] = out_size;
    let l1 = Tensor::from_vec(
        src.iter().map(|s| s.2).collect::<Vec<_>>(),
        wshape.as_slice(),
        dev,
    )?
    .to_dtype(x.dtype())?;
    let l0 = Tensor::from_vec(
        src.iter().map(|s| 1.0 - s.2).collect::<Vec<_>>(),
        wshape.as_slice(),
        dev,
    )?
    .to_dtype(x.dtype())?;
    let a = x.index_select(&i0, dim)?.broadcast_mul(&l0)?;
    let b = x.index_select(&i1, dim)?.broadcast_mul(&l1)?;
    Ok((a + b)?)
}

pub(super) fn resize_bilinear_impl(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let rows = lerp_along(x, 2, h, out_h)?;
    lerp_along(&rows, 3, w, out_w)
}

/// [`super::upsample_nearest2d`] built from candle primitives only.
pub fn upsample_nearest2d(x: &Tensor, scale_h: usize, scale_w: usize) -> Result<Tensor> {
    let (_, _, h, w) = dims4("upsample_nearest2d", x)?;
    check_positive("upsample_nearest2d", "scale factors", scale_h, scale_w)?;
    let rows: Vec<usize> = (0..h * scale_h).map(|i| i / scale_h).collect();
    let cols: Vec<usize> = (0..w * scale_w).map(|j| j / scale_w).collect();
    gather_rows_cols(x, &rows, &cols)
}

/// [`super::resize_nearest`] built from candle primitives only.
pub fn resize_nearest(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (_, _, h, w) = dims4("resize_nearest", x)?;
    check_positive("resize_nearest", "output size", out_h, out_w)?;
    let rows: Vec<usize> = (0..out_h)
        .map(|i| nearest_source_index(i, h, out_h))
        .collect();
    let cols: Vec<usize> = (0..out_w)
        .map(|j| nearest_source_index(j, w, out_w))
        .collect();
    gather_rows_cols(x, &rows, &cols)
}

/// [`super::resize_bilinear`] built from candle primitives only.
pub fn resize_bilinear(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    dims4("resize_bilinear", x)?;
    check_positive("resize_bilinear", "output size", out_h, out_w)?;
    resize_bilinear_impl(x, out_h, out_w)
}
