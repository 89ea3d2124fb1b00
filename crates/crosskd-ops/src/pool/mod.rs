//! 2-D max and average pooling with any kernel, stride and padding (PyTorch `nn.MaxPool2d` /
//! `nn.AvgPool2d` semantics, `ceil_mode = false`, `dilation = 1`).
//!
//! candle 0.11.1's own pooling scales the max-pool gradient by `1/(k·k)` and has no backward at all
//! when kernel ≠ stride; these replacements are checked against finite differences
//! (`tests/ops_pool.rs`).
//!
//! On the CPU (f32, f64) the ops are hand-written kernels (`cpu.rs`) with hand-written backward
//! passes; on other devices and dtypes they are compositions of candle primitives ([`generic`]).

use candle_core::{DType, Tensor};

use crate::{Error, Result};

mod cpu;
pub mod generic;

/// Whether the hand-written CPU kernels apply (f32/f64 on the CPU); elsewhere the primitive
/// compositions of [`generic`] run.
fn use_cpu_kernel(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// Output size and validated arguments of a pooling call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolGeometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
}

impl PoolGeometry {
    /// Checks the arguments the way PyTorch does: positive kernel and stride, padding at most half
    /// the kernel, and at least one output position.
    pub(crate) fn new(
        op: &'static str,
        x: &Tensor,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Self> {
        let (n, c, h, w) = match x.dims() {
            &[n, c, h, w] => (n, c, h, w),
            other => {
                return Err(Error::Shape {
                    op,
                    expected: "a 4-D input (N, C, H, W)".into(),
                    got: other.to_vec(),
                })
            }
        };
        if h == 0 || w == 0 {
            return Err(Error::Shape {
                op,
                expected: "a non-empty spatial size".into(),
                got: x.dims().to_vec(),
            });
        }
        if kernel.0 == 0 || kernel.1 == 0 || stride.0 == 0 || stride.1 == 0 {
            return Err(Error::InvalidArgument {
                op,
                message: format!("kernel {kernel:?} and stride {stride:?} must be positive"),
            });
        }
        if 2 * padding.0 > kernel.0 || 2 * padding.1 > kernel.1 {
            return Err(Error::InvalidArgument {
                op,
                message: format!("padding {padding:?} must be at most half the kernel {kernel:?}"),
            });
        }
        let padded = (h + 2 * padding.0, w + 2 * padding.1);
        if padded.0 < kernel.0 || padded.1 < kernel.1 {
            return Err(Error::InvalidArgument {
                op,
                message: format!(
                    "kernel {kernel:?} is larger than the padded input {padded:?} (input {h}x{w}, padding {padding:?})"
                ),
            });
        }
        Ok(Self {
            n,
            c,
            h,
            w,
            out_h: (padded.0 - kernel.0) / stride.0 + 1,
            out_w: (padded.1 - kernel.1) / stride.1 + 1,
            kernel,
            stride,
            padding,
        })
    }

    /// Input row (or column) read by output position `o` at kernel offset `k`, or `None` in the
    /// padding.
    #[inline]
    pub(crate) fn source(
        o: usize,
        k: usize,
        stride: usize,
        pad: usize,
        len: usize,
    ) -> Option<usize> {
        let i = (o * stride + k).checked_sub(pad)?;
        (i < len).then_some(i)
    }

    /// The divisor of each output window, row-major: `kH·kW` when the padding counts, else the
    /// number of non-padding input elements in the window.
    pub(crate) fn divisors(&self, count_include_pad: bool) -> Vec<usize> {
        if count_include_pad {
            return vec![self.kernel.0 * self.kernel.1; self.out_h * self.out_w];
        }
        let valid = |o: usize, k: usize, s: usize, p: usize, len: usize| {
            (0..k)
                .filter(|&i| Self::source(o, i, s, p, len).is_some())
                .count()
        };
        let mut counts = Vec::with_capacity(self.out_h * self.out_w);
        for oh in 0..self.out_h {
            let rows = valid(oh, self.kernel.0, self.stride.0, self.padding.0, self.h);
            for ow in 0..self.out_w {
                counts.push(rows * valid(ow, self.kernel.1, self.stride.1, self.padding.1, self.w));
            }
        }
        counts
    }
}

/// 2-D max pooling: `y[n,c,i,j] = max_{a<kH, b<kW} x[n,c, i·sH − pH + a, j·sW − pW + b]`, where
/// positions in the padding count as −∞ (PyTorch `max_pool2d`, `ceil_mode = false`).
///
/// The gradient of each output goes to the *first* maximal element of its window in row-major
/// window order (PyTorch's choice on ties), and gradients of overlapping windows add up.
pub fn max_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let geo = PoolGeometry::new("max_pool2d", x, kernel, stride, padding)?;
    if use_cpu_kernel(x) {
        Ok(x.contiguous()?.apply_op1(cpu::MaxPool { geo })?)
    } else {
        generic::max_pool2d_impl(x, &geo)
    }
}

/// 2-D average pooling: `y[n,c,i,j] = Σ_window x / d`, with zeros in the padding and
/// `d = kH·kW` if `count_include_pad`, else the number of non-padding elements of the window
/// (PyTorch `avg_pool2d`, `ceil_mode = false`, no `divisor_override`).
pub fn avg_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    count_include_pad: bool,
) -> Result<Tensor> {
    let geo = PoolGeometry::new("avg_pool2d", x, kernel, stride, padding)?;
    if use_cpu_kernel(x) {
        Ok(x.contiguous()?.apply_op1(cpu::AvgPool {
            geo,
            count_include_pad,
        })?)
    } else {
        generic::avg_pool2d_impl(x, &geo, count_include_pad)
    }
}

/// Global average pooling `(N, C, H, W) → (N, C)`: `y[n,c] = mean_{h,w} x[n,c,h,w]`.
pub fn global_avg_pool2d(x: &Tensor) -> Result<Tensor> {
    if x.rank() != 4 {
        return Err(Error::Shape {
            op: "global_avg_pool2d",
            expected: "a 4-D input (N, C, H, W)".into(),
            got: x.dims().to_vec(),
        });
    }
    Ok(x.flatten_from(2)?.mean(2)?)
}
