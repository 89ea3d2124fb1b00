//! Layer-level compositions of the kernels: the conv-BN-ReLU block as methods of
//! [`BatchNorm2d`], which pick the fused training op ([`crate::fused`]) or the separate ops.
//!
//! They live here, not in `norm`, so that the kernels' modules stay a DAG: `norm` knows nothing
//! of convolutions, and only this module (the top of the crate) depends on `conv`, `norm`,
//! `fused` and `resize` together. The methods are inherent methods of [`BatchNorm2d`], so callers
//! use them as before.

use candle_core::Tensor;

use crate::activation::relu;
use crate::conv::{conv2d, Conv2dConfig};
use crate::fused;
use crate::norm::BatchNorm2d;
use crate::resize::upsample_nearest2d;
use crate::Result;

impl BatchNorm2d {
    /// `relu(self.forward_t(conv2d(x, conv_weight) + conv_bias, train))`; in training with affine
    /// parameters, the convolution, normalisation and ReLU run as one op
    /// ([`fused::conv2d_batch_norm_relu_train`]).
    pub fn forward_conv_relu(
        &self,
        x: &Tensor,
        conv_weight: &Tensor,
        conv_bias: Option<&Tensor>,
        conv_cfg: Conv2dConfig,
        train: bool,
    ) -> Result<Tensor> {
        self.forward_cat_conv_relu(&[x], conv_weight, conv_bias, conv_cfg, train)
    }

    /// [`Self::forward_conv_relu`] of the channel concatenation `cat(inputs, 1)`, which the fused
    /// training op does not build ([`fused::cat_conv2d_batch_norm_relu_train`]).
    pub fn forward_cat_conv_relu(
        &self,
        inputs: &[&Tensor],
        conv_weight: &Tensor,
        conv_bias: Option<&Tensor>,
        conv_cfg: Conv2dConfig,
        train: bool,
    ) -> Result<Tensor> {
        match self.affine_params() {
            Some((w, b)) if train => {
                let stats = fused::cat_conv2d_batch_norm_relu_train(
                    inputs,
                    conv_weight,
                    (conv_bias, w, b),
                    conv_cfg,
                    self.config().eps,
                )?;
                self.update_running(stats)
            }
            _ => {
                let x = match inputs {
                    [x] => (*x).clone(),
                    _ => Tensor::cat(inputs, 1)?,
                };
                if train {
                    let z = conv2d(&x, conv_weight, conv_bias, conv_cfg)?;
                    self.forward_relu(&z, train)
                } else {
                    relu(&self.folded_conv_eval(&x, conv_weight, conv_bias, conv_cfg)?)
                }
            }
        }
    }

    /// `self.forward_eval(conv2d(x, w) + b)` as one convolution. With fixed statistics the norm
    /// is `z·s + t` per output channel ([`BatchNorm2d::eval_scale_shift`]), so it folds into the
    /// convolution: `conv2d(x, w·s) + (b·s + t)`, computed on `C_out`-sized vectors and the weight
    /// instead of on the activations — a frozen teacher's forward pass is all this. The folding
    /// is made of differentiable ops, so gradients still reach `x`, the weights and the affine
    /// parameters.
    pub fn folded_conv_eval(
        &self,
        x: &Tensor,
        conv_weight: &Tensor,
        conv_bias: Option<&Tensor>,
        conv_cfg: Conv2dConfig,
    ) -> Result<Tensor> {
        let (scale, shift) = self.eval_scale_shift(conv_weight.dtype())?;
        let c = scale.dim(0)?;
        let weight = conv_weight.broadcast_mul(&scale.reshape((c, 1, 1, 1))?)?;
        let bias = match conv_bias {
            Some(b) => ((b * &scale)? + shift)?,
            None => shift,
        };
        conv2d(x, &weight, Some(&bias), conv_cfg)
    }

    /// [`Self::forward_conv_relu`] of `upsample_nearest2d(x, scale, scale)`, which the fused
    /// training op does not build ([`fused::upsample_conv2d_batch_norm_relu_train`]).
    pub fn forward_upsample_conv_relu(
        &self,
        x: &Tensor,
        scale: usize,
        conv_weight: &Tensor,
        conv_bias: Option<&Tensor>,
        conv_cfg: Conv2dConfig,
        train: bool,
    ) -> Result<Tensor> {
        match self.affine_params() {
            Some((w, b)) if train => {
                let stats = fused::upsample_conv2d_batch_norm_relu_train(
                    x,
                    scale,
                    conv_weight,
                    (conv_bias, w, b),
                    conv_cfg,
                    self.config().eps,
                )?;
                self.update_running(stats)
            }
            _ => {
                let up = upsample_nearest2d(x, scale, scale)?;
                self.forward_conv_relu(&up, conv_weight, conv_bias, conv_cfg, train)
            }
        }
    }
}
