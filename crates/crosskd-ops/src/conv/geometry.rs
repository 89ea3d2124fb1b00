//! Shapes of a 2-D convolution, shared by its forward pass and both gradients.

use crate::{Error, Result};

/// Every size of one convolution `y = conv(x, w)`: `x: (n, c_in, h, w)`,
/// `w: (c_out, c_in/groups, kh, kw)`, `y: (n, c_out, ho, wo)`.
///
/// A transposed convolution is described by the geometry of the convolution whose input gradient
/// it is, so the same struct serves both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Geometry {
    /// The geometry of a convolution of an input `(n, c_in, h, w)` with a weight
    /// `(c_out, c_in/groups, kh, kw)`, validated.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        op: &'static str,
        x: &[usize],
        weight: &[usize],
        stride: usize,
        padding: usize,
        dilation: usize,
        groups: usize,
    ) -> Result<Self> {
        let &[n, c_in, h, w] = x else {
            return Err(Error::Shape {
                op,
                expected: "input (N, C, H, W)".into(),
                got: x.to_vec(),
            });
        };
        let &[c_out, cg, kh, kw] = weight else {
            return Err(Error::Shape {
                op,
                expected: "weight (C_out, C_in/groups, kH, kW)".into(),
                got: weight.to_vec(),
            });
        };
        if stride == 0 || dilation == 0 || groups == 0 {
            return Err(Error::InvalidArgument {
                op,
                message: format!("stride ({stride}), dilation ({dilation}) and groups ({groups}) must be positive"),
            });
        }
        if c_in % groups != 0 || c_out % groups != 0 || cg * groups != c_in {
            return Err(Error::Shape {
                op,
                expected: format!(
                    "weight (C_out divisible by groups = {groups}, C_in/groups = {}, kH, kW) for an input with C_in = {c_in}",
                    c_in / groups
                ),
                got: weight.to_vec(),
            });
        }
        let span_h = dilation * (kh.max(1) - 1) + 1;
        let span_w = dilation * (kw.max(1) - 1) + 1;
        if kh == 0 || kw == 0 || h + 2 * padding < span_h || w + 2 * padding < span_w {
            return Err(Error::Shape {
                op,
                expected: format!(
                    "input of at least {span_h}x{span_w} after padding {padding} for a {kh}x{kw} kernel with dilation {dilation}"
                ),
                got: x.to_vec(),
            });
        }
        let ho = (h + 2 * padding - span_h) / stride + 1;
        let wo = (w + 2 * padding - span_w) / stride + 1;
        Ok(Self {
            n,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride,
            padding,
            dilation,
            groups,
            ho,
            wo,
        })
    }

    /// Input channels per group.
    pub fn cg(&self) -> usize {
        self.c_in / self.groups
    }

    /// Output channels per group.
    pub fn og(&self) -> usize {
        self.c_out / self.groups
    }

    /// Length of one im2col column: `c_in/groups · kh · kw`.
    pub fn k_len(&self) -> usize {
        self.cg() * self.kh * self.kw
    }

    /// Output pixels per channel: `ho · wo`.
    pub fn p_len(&self) -> usize {
        self.ho * self.wo
    }

    /// Input pixels per channel.
    pub fn hw(&self) -> usize {
        self.h * self.w
    }

    /// A 1×1 convolution with stride 1 and no padding: the input itself is the im2col matrix.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.padding == 0
    }

    pub fn x_dims(&self) -> [usize; 4] {
        [self.n, self.c_in, self.h, self.w]
    }

    pub fn w_dims(&self) -> [usize; 4] {
        [self.c_out, self.cg(), self.kh, self.kw]
    }

    pub fn y_dims(&self) -> [usize; 4] {
        [self.n, self.c_out, self.ho, self.wo]
    }
}
