//! `cargo xtask bench train-step`: one training step of the reference UNet of issue 3, timed with
//! raw candle ops, with crosskd-ops, and with PyTorch (`xtask/bench/train_step.py`) when `torch`
//! is importable, all on the same number of threads.
//!
//! `--device cuda[:N]` runs all three columns on that GPU instead (PyTorch when it is built with
//! CUDA) and writes its own section, `train-step-cuda`, leaving the CPU one alone. Every timed
//! interval on a GPU ends with a device synchronisation (candle's `Device::synchronize`, PyTorch's
//! `torch.cuda.synchronize`): kernels are queued asynchronously, and a clock read without it
//! measures the queueing, not the work.
//!
//! The network is written once against [`StepOps`]; the two Rust columns differ only in which
//! implementation of the ops they plug in, so the ratio measures the ops and nothing else. The raw
//! candle column calls candle's pooling and upsampling whose *gradients* are wrong (see
//! `docs/ops.md`): it is a speed baseline, not a usable trainer.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use crosskd_ops::conv::{conv2d, conv_transpose2d, Conv2dConfig, ConvTranspose2dConfig};

use crosskd_train::device::DeviceChoice;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Parameter count the issue fixes for the reference network; a mismatch means the network drifted.
const REFERENCE_PARAMETERS: usize = 431_811;
const BATCH: usize = 16;
const SIZE: usize = 64;
const WARMUP_STEPS: usize = 3;
const TIMED_STEPS: usize = 20;
const NORM_EPS: f64 = 1e-5;

/// The ops the reference network needs. Every method takes the inputs of one call.
trait StepOps {
    fn conv(&self, x: &Tensor, w: &Tensor, b: &Tensor, stride: usize, pad: usize)
        -> Result<Tensor>;
    fn conv_transpose_2x2(&self, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor>;
    fn batch_norm(&self, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor>;
    /// `relu(batch_norm(x))`, which an implementation may fuse.
    fn batch_norm_relu(&self, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.relu(&self.batch_norm(x, w, b)?)
    }
    /// `relu(batch_norm(conv3×3(cat(inputs, 1)) + b))` (stride 1, padding 1), which an
    /// implementation may fuse.
    fn conv_batch_norm_relu(
        &self,
        inputs: &[&Tensor],
        w: &Tensor,
        b: &Tensor,
        norm_w: &Tensor,
        norm_b: &Tensor,
    ) -> Result<Tensor> {
        let x = Tensor::cat(inputs, 1)?;
        self.batch_norm_relu(&self.conv(&x, w, b, 1, 1)?, norm_w, norm_b)
    }
    /// [`Self::conv_batch_norm_relu`] of `upsample_2x(x)`, which an implementation may fuse.
    fn upsample_conv_batch_norm_relu(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        norm_w: &Tensor,
        norm_b: &Tensor,
    ) -> Result<Tensor> {
        let up = self.upsample_2x(x)?;
        self.conv_batch_norm_relu(&[&up], w, b, norm_w, norm_b)
    }
    fn group_norm(&self, x: &Tensor, groups: usize, w: &Tensor, b: &Tensor) -> Result<Tensor>;
    fn max_pool_2x2(&self, x: &Tensor) -> Result<Tensor>;
    fn avg_pool_2x2(&self, x: &Tensor) -> Result<Tensor>;
    fn upsample_2x(&self, x: &Tensor) -> Result<Tensor>;
    fn relu(&self, x: &Tensor) -> Result<Tensor>;
}

type Result<T> = anyhow::Result<T>;

/// candle 0.11.1 as a user finds it: `Tensor` methods and `candle_nn` layers.
struct CandleOps;

/// The same network through crosskd-ops.
struct CrosskdOps;

#[allow(clippy::disallowed_methods)] // the point of this column is candle's own (broken) ops
impl StepOps for CandleOps {
    fn conv(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        stride: usize,
        pad: usize,
    ) -> Result<Tensor> {
        let y = x.conv2d(w, pad, stride, 1, 1)?;
        Ok(y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?)
    }
    fn conv_transpose_2x2(&self, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        let y = x.conv_transpose2d(w, 0, 0, 2, 1)?;
        Ok(y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?)
    }
    fn batch_norm(&self, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        // candle_nn::BatchNorm's training path, without the running-average bookkeeping (which
        // neither column times).
        let c = x.dim(1)?;
        let channels_first = x.transpose(0, 1)?.flatten_from(1)?;
        let mean = channels_first.mean_keepdim(1)?.reshape((1, c, 1, 1))?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred
            .transpose(0, 1)?
            .flatten_from(1)?
            .sqr()?
            .mean_keepdim(1)?
            .reshape((1, c, 1, 1))?;
        let xhat = centred.broadcast_div(&(var + NORM_EPS)?.sqrt()?)?;
        Ok(xhat
            .broadcast_mul(&w.reshape((1, c, 1, 1))?)?
            .broadcast_add(&b.reshape((1, c, 1, 1))?)?)
    }
    fn group_norm(&self, x: &Tensor, groups: usize, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        use candle_nn::Module;
        let norm = candle_nn::GroupNorm::new(w.clone(), b.clone(), x.dim(1)?, groups, NORM_EPS)?;
        Ok(norm.forward(x)?)
    }
    fn max_pool_2x2(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.max_pool2d(2)?)
    }
    fn avg_pool_2x2(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.avg_pool2d(2)?)
    }
    fn upsample_2x(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        Ok(x.upsample_nearest2d(2 * h, 2 * w)?)
    }
    fn relu(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.relu()?)
    }
}

impl StepOps for CrosskdOps {
    fn conv(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        stride: usize,
        pad: usize,
    ) -> Result<Tensor> {
        let cfg = Conv2dConfig {
            stride,
            padding: pad,
            ..Default::default()
        };
        Ok(conv2d(x, w, Some(b), cfg)?)
    }
    fn conv_transpose_2x2(&self, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        let cfg = ConvTranspose2dConfig {
            stride: 2,
            ..Default::default()
        };
        Ok(conv_transpose2d(x, w, Some(b), cfg)?)
    }
    fn batch_norm(&self, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        let (y, _, _) = crosskd_ops::norm::batch_norm_train(x, Some(w), Some(b), NORM_EPS)?;
        Ok(y)
    }
    fn batch_norm_relu(&self, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        let (y, _, _) = crosskd_ops::norm::batch_norm_relu_train(x, Some(w), Some(b), NORM_EPS)?;
        Ok(y)
    }
    fn conv_batch_norm_relu(
        &self,
        inputs: &[&Tensor],
        w: &Tensor,
        b: &Tensor,
        norm_w: &Tensor,
        norm_b: &Tensor,
    ) -> Result<Tensor> {
        let cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let params = (Some(b), norm_w, norm_b);
        let (y, _, _) =
            crosskd_ops::fused::cat_conv2d_batch_norm_relu_train(inputs, w, params, cfg, NORM_EPS)?;
        Ok(y)
    }
    fn upsample_conv_batch_norm_relu(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        norm_w: &Tensor,
        norm_b: &Tensor,
    ) -> Result<Tensor> {
        let cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let params = (Some(b), norm_w, norm_b);
        let (y, _, _) = crosskd_ops::fused::upsample_conv2d_batch_norm_relu_train(
            x, 2, w, params, cfg, NORM_EPS,
        )?;
        Ok(y)
    }
    fn group_norm(&self, x: &Tensor, groups: usize, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        Ok(crosskd_ops::norm::group_norm(
            x,
            groups,
            Some(w),
            Some(b),
            NORM_EPS,
        )?)
    }
    fn max_pool_2x2(&self, x: &Tensor) -> Result<Tensor> {
        Ok(crosskd_ops::pool::max_pool2d(x, (2, 2), (2, 2), (0, 0))?)
    }
    fn avg_pool_2x2(&self, x: &Tensor) -> Result<Tensor> {
        Ok(crosskd_ops::pool::avg_pool2d(
            x,
            (2, 2),
            (2, 2),
            (0, 0),
            true,
        )?)
    }
    fn upsample_2x(&self, x: &Tensor) -> Result<Tensor> {
        Ok(crosskd_ops::resize::upsample_nearest2d(x, 2, 2)?)
    }
    fn relu(&self, x: &Tensor) -> Result<Tensor> {
        Ok(crosskd_ops::activation::relu(x)?)
    }
}

/// One recorded op call: its kind and the shapes it ran on, so it can be replayed alone.
#[derive(Clone)]
enum OpCall {
    Conv {
        x: Vec<usize>,
        w: Vec<usize>,
        stride: usize,
        pad: usize,
    },
    ConvTranspose {
        x: Vec<usize>,
        w: Vec<usize>,
    },
    /// On the channel concatenation of inputs of shapes `x`.
    ConvBatchNormRelu {
        x: Vec<Vec<usize>>,
        w: Vec<usize>,
    },
    UpsampleConvBatchNormRelu {
        x: Vec<usize>,
        w: Vec<usize>,
    },
    GroupNorm {
        x: Vec<usize>,
        groups: usize,
    },
    MaxPool {
        x: Vec<usize>,
    },
    AvgPool {
        x: Vec<usize>,
    },
    Relu {
        x: Vec<usize>,
    },
}

impl OpCall {
    fn kind(&self) -> &'static str {
        match self {
            OpCall::Conv { w, .. } if w[2] == 1 => "conv2d 1×1",
            OpCall::Conv { .. } => "conv2d 3×3",
            OpCall::ConvTranspose { .. } => "conv_transpose2d",
            OpCall::ConvBatchNormRelu { .. } => "conv2d 3×3 + batch_norm + relu",
            OpCall::UpsampleConvBatchNormRelu { .. } => "upsample + conv2d 3×3 + batch_norm + relu",
            OpCall::GroupNorm { .. } => "group_norm",
            OpCall::MaxPool { .. } => "max_pool2d",
            OpCall::AvgPool { .. } => "avg_pool2d",
            OpCall::Relu { .. } => "relu",
        }
    }
}

/// Conv/norm parameters of one block.
struct Block {
    conv_w: Var,
    conv_b: Var,
    norm_w: Var,
    norm_b: Var,
    stride: usize,
    group_norm: bool,
}

/// The reference UNet's parameters.
struct Reference {
    blocks: Vec<Block>,
    up_w: Var,
    up_b: Var,
    head_w: Var,
    head_b: Var,
}

fn uniform(rng: &mut ChaCha8Rng, shape: &[usize], bound: f32, device: &Device) -> Result<Var> {
    let n = shape.iter().product::<usize>();
    let data: Vec<f32> = (0..n).map(|_| rng.gen_range(-bound..bound)).collect();
    Ok(Var::from_tensor(&Tensor::from_vec(data, shape, device)?)?)
}

fn constant(value: f32, len: usize, device: &Device) -> Result<Var> {
    Ok(Var::from_tensor(&Tensor::full(value, len, device)?)?)
}

impl Reference {
    /// PyTorch's default conv initialisation bound `1/sqrt(fan_in)`, from a fixed seed so both Rust
    /// columns start from identical weights, on `device`.
    fn new(seed: u64, device: &Device) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut block = |i: usize, o: usize, stride: usize, group_norm: bool| -> Result<Block> {
            let bound = 1.0 / ((i * 9) as f32).sqrt();
            Ok(Block {
                conv_w: uniform(&mut rng, &[o, i, 3, 3], bound, device)?,
                conv_b: uniform(&mut rng, &[o], bound, device)?,
                norm_w: constant(1.0, o, device)?,
                norm_b: constant(0.0, o, device)?,
                stride,
                group_norm,
            })
        };
        let blocks = vec![
            block(3, 32, 1, false)?,
            block(32, 32, 1, false)?,
            block(32, 64, 1, false)?,
            block(64, 64, 1, false)?,
            block(64, 128, 2, true)?,
            block(128, 128, 1, true)?,
            block(128, 64, 1, false)?,
            block(64, 32, 1, false)?,
            block(64, 32, 1, false)?,
        ];
        let up_bound = 1.0 / ((64 * 4) as f32).sqrt();
        let head_bound = 1.0 / (32f32).sqrt();
        Ok(Self {
            blocks,
            up_w: uniform(&mut rng, &[128, 64, 2, 2], up_bound, device)?,
            up_b: uniform(&mut rng, &[64], up_bound, device)?,
            head_w: uniform(&mut rng, &[3, 32, 1, 1], head_bound, device)?,
            head_b: uniform(&mut rng, &[3], head_bound, device)?,
        })
    }

    fn vars(&self) -> Vec<Var> {
        let mut vars: Vec<Var> = self
            .blocks
            .iter()
            .flat_map(|b| {
                [
                    b.conv_w.clone(),
                    b.conv_b.clone(),
                    b.norm_w.clone(),
                    b.norm_b.clone(),
                ]
            })
            .collect();
        vars.extend([
            self.up_w.clone(),
            self.up_b.clone(),
            self.head_w.clone(),
            self.head_b.clone(),
        ]);
        vars
    }

    /// Block `i` on the channel concatenation of `inputs`.
    fn block(&self, ops: &Recorder, i: usize, inputs: &[&Tensor]) -> Result<Tensor> {
        let b = &self.blocks[i];
        if b.group_norm {
            let y = ops.conv(inputs[0], &b.conv_w, &b.conv_b, b.stride, 1)?;
            let y = ops.group_norm(&y, 8, &b.norm_w, &b.norm_b)?;
            ops.relu(&y)
        } else {
            debug_assert_eq!(b.stride, 1);
            ops.conv_batch_norm_relu(inputs, &b.conv_w, &b.conv_b, &b.norm_w, &b.norm_b)
        }
    }

    /// The network and loss: L1(out, y) + L1(avg_pool(out), avg_pool(y)).
    fn loss(&self, ops: &Recorder, x: &Tensor, target: &Tensor) -> Result<Tensor> {
        let e1 = self.block(ops, 1, &[&self.block(ops, 0, &[x])?])?;
        let p1 = ops.max_pool_2x2(&e1)?;
        let e2 = self.block(ops, 3, &[&self.block(ops, 2, &[&p1])?])?;
        let b = self.block(ops, 5, &[&self.block(ops, 4, &[&e2])?])?;
        let u1 = ops.conv_transpose_2x2(&b, &self.up_w, &self.up_b)?;
        let d1 = self.block(ops, 6, &[&u1, &e2])?;
        let b7 = &self.blocks[7];
        let d2 =
            ops.upsample_conv_batch_norm_relu(&d1, &b7.conv_w, &b7.conv_b, &b7.norm_w, &b7.norm_b)?;
        let d2 = self.block(ops, 8, &[&d2, &e1])?;
        let out = ops.conv(&d2, &self.head_w, &self.head_b, 1, 0)?;
        let full = (&out - target)?.abs()?.mean_all()?;
        let pooled = (ops.avg_pool_2x2(&out)? - ops.avg_pool_2x2(target)?)?
            .abs()?
            .mean_all()?;
        Ok((full + pooled)?)
    }
}

/// Forwards to an implementation and, when recording, notes each call's shapes.
struct Recorder<'a> {
    ops: &'a dyn StepOps,
    calls: Option<std::cell::RefCell<Vec<OpCall>>>,
}

impl Recorder<'_> {
    fn note(&self, call: impl FnOnce() -> OpCall) {
        if let Some(calls) = &self.calls {
            calls.borrow_mut().push(call());
        }
    }
    fn conv(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        stride: usize,
        pad: usize,
    ) -> Result<Tensor> {
        self.note(|| OpCall::Conv {
            x: x.dims().to_vec(),
            w: w.dims().to_vec(),
            stride,
            pad,
        });
        self.ops.conv(x, w, b, stride, pad)
    }
    fn conv_transpose_2x2(&self, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.note(|| OpCall::ConvTranspose {
            x: x.dims().to_vec(),
            w: w.dims().to_vec(),
        });
        self.ops.conv_transpose_2x2(x, w, b)
    }
    fn conv_batch_norm_relu(
        &self,
        inputs: &[&Tensor],
        w: &Tensor,
        b: &Tensor,
        norm_w: &Tensor,
        norm_b: &Tensor,
    ) -> Result<Tensor> {
        self.note(|| OpCall::ConvBatchNormRelu {
            x: inputs.iter().map(|t| t.dims().to_vec()).collect(),
            w: w.dims().to_vec(),
        });
        self.ops.conv_batch_norm_relu(inputs, w, b, norm_w, norm_b)
    }
    fn upsample_conv_batch_norm_relu(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        norm_w: &Tensor,
        norm_b: &Tensor,
    ) -> Result<Tensor> {
        self.note(|| OpCall::UpsampleConvBatchNormRelu {
            x: x.dims().to_vec(),
            w: w.dims().to_vec(),
        });
        self.ops
            .upsample_conv_batch_norm_relu(x, w, b, norm_w, norm_b)
    }
    fn group_norm(&self, x: &Tensor, groups: usize, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.note(|| OpCall::GroupNorm {
            x: x.dims().to_vec(),
            groups,
        });
        self.ops.group_norm(x, groups, w, b)
    }
    fn max_pool_2x2(&self, x: &Tensor) -> Result<Tensor> {
        self.note(|| OpCall::MaxPool {
            x: x.dims().to_vec(),
        });
        self.ops.max_pool_2x2(x)
    }
    fn avg_pool_2x2(&self, x: &Tensor) -> Result<Tensor> {
        self.note(|| OpCall::AvgPool {
            x: x.dims().to_vec(),
        });
        self.ops.avg_pool_2x2(x)
    }
    fn relu(&self, x: &Tensor) -> Result<Tensor> {
        self.note(|| OpCall::Relu {
            x: x.dims().to_vec(),
        });
        self.ops.relu(x)
    }
}

fn random_tensor(rng: &mut ChaCha8Rng, shape: &[usize], device: &Device) -> Result<Tensor> {
    let n = shape.iter().product::<usize>();
    let data: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    Ok(Tensor::from_vec(data, shape, device)?)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    }
}

/// Median forward, backward and full-step times (ms) of the reference network with `ops`.
struct StepTiming {
    step_ms: f64,
    forward_ms: f64,
    backward_ms: f64,
    final_loss: f32,
}

/// Times training steps on the device of `inputs`.
fn time_steps(ops: &dyn StepOps, inputs: &(Tensor, Tensor)) -> Result<StepTiming> {
    let device = inputs.0.device();
    let net = Reference::new(7, device)?;
    let params = net.vars();
    let count: usize = params.iter().map(|v| v.elem_count()).sum();
    if count != REFERENCE_PARAMETERS {
        bail!("reference network has {count} parameters, the issue fixes {REFERENCE_PARAMETERS}");
    }
    let mut opt = AdamW::new(
        params,
        ParamsAdamW {
            lr: 1e-3,
            weight_decay: 1e-4,
            ..Default::default()
        },
    )?;
    let recorder = Recorder { ops, calls: None };
    let (mut steps, mut forwards, mut backwards) = (Vec::new(), Vec::new(), Vec::new());
    let mut final_loss = f32::NAN;
    for step in 0..WARMUP_STEPS + TIMED_STEPS {
        let start = Instant::now();
        let loss = net.loss(&recorder, &inputs.0, &inputs.1)?;
        // Reading the loss back also waits for a GPU to finish the forward pass.
        final_loss = loss.to_scalar::<f32>()?;
        let forward_done = Instant::now();
        let grads = loss.backward()?;
        device.synchronize()?;
        let backward_done = Instant::now();
        opt.step(&grads)?;
        device.synchronize()?;
        let end = Instant::now();
        if step >= WARMUP_STEPS {
            steps.push((end - start).as_secs_f64() * 1e3);
            forwards.push((forward_done - start).as_secs_f64() * 1e3);
            backwards.push((backward_done - forward_done).as_secs_f64() * 1e3);
        }
    }
    if !final_loss.is_finite() {
        bail!("the reference network's loss became {final_loss}");
    }
    Ok(StepTiming {
        step_ms: median(steps),
        forward_ms: median(forwards),
        backward_ms: median(backwards),
        final_loss,
    })
}

/// Runs one recorded call alone on random inputs of its shapes; returns (forward, backward) ms,
/// medians of a few repetitions. Backward is `loss.backward()` of `sum(y · r)` minus the same
/// backward into a plain variable of y's shape (the harness's own share). Runs on `device`.
fn replay(
    ops: &dyn StepOps,
    call: &OpCall,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<(f64, f64)> {
    let var = |rng: &mut ChaCha8Rng, shape: &[usize]| -> Result<Var> {
        Ok(Var::from_tensor(&random_tensor(rng, shape, device)?)?)
    };
    let ones = |n: usize| -> Result<Var> { constant(1.0, n, device) };
    let zeros = |n: usize| -> Result<Var> { constant(0.0, n, device) };
    let (mut fwd, mut bwd) = (Vec::new(), Vec::new());
    for rep in 0..4 {
        let (x, extra) = match call {
            OpCall::Conv { x, w, .. } | OpCall::ConvTranspose { x, w } => {
                let out_c = if matches!(call, OpCall::Conv { .. }) {
                    w[0]
                } else {
                    w[1]
                };
                (var(rng, x)?, vec![var(rng, w)?, var(rng, &[out_c])?])
            }
            OpCall::ConvBatchNormRelu { x, w } => {
                let c = w[0];
                // The parameters, then the inputs after the first.
                let mut extra = vec![var(rng, w)?, var(rng, &[c])?, ones(c)?, zeros(c)?];
                for shape in &x[1..] {
                    extra.push(var(rng, shape)?);
                }
                (var(rng, &x[0])?, extra)
            }
            OpCall::UpsampleConvBatchNormRelu { x, w } => {
                let c = w[0];
                let extra = vec![var(rng, w)?, var(rng, &[c])?, ones(c)?, zeros(c)?];
                (var(rng, x)?, extra)
            }
            OpCall::GroupNorm { x, .. } => (var(rng, x)?, vec![ones(x[1])?, zeros(x[1])?]),
            OpCall::MaxPool { x } | OpCall::AvgPool { x } | OpCall::Relu { x } => {
                (var(rng, x)?, Vec::new())
            }
        };
        let start = Instant::now();
        let y = match call {
            OpCall::Conv { stride, pad, .. } => {
                ops.conv(&x, &extra[0], &extra[1], *stride, *pad)?
            }
            OpCall::ConvTranspose { .. } => ops.conv_transpose_2x2(&x, &extra[0], &extra[1])?,
            OpCall::ConvBatchNormRelu { .. } => {
                let inputs: Vec<&Tensor> = std::iter::once(x.as_tensor())
                    .chain(extra[4..].iter().map(|v| v.as_tensor()))
                    .collect();
                ops.conv_batch_norm_relu(&inputs, &extra[0], &extra[1], &extra[2], &extra[3])?
            }
            OpCall::UpsampleConvBatchNormRelu { .. } => {
                ops.upsample_conv_batch_norm_relu(&x, &extra[0], &extra[1], &extra[2], &extra[3])?
            }
            OpCall::GroupNorm { groups, .. } => {
                ops.group_norm(&x, *groups, &extra[0], &extra[1])?
            }
            OpCall::MaxPool { .. } => ops.max_pool_2x2(&x)?,
            OpCall::AvgPool { .. } => ops.avg_pool_2x2(&x)?,
            OpCall::Relu { .. } => ops.relu(&x)?,
        };
        device.synchronize()?;
        let forward_done = Instant::now();
        let weights = random_tensor(rng, y.dims(), device)?;
        let loss = (&y * &weights)?.sum_all()?;
        let backward_start = Instant::now();
        let grads = loss.backward()?;
        device.synchronize()?;
        let backward_ms = backward_start.elapsed().as_secs_f64() * 1e3;
        if grads.get(&x).is_none() {
            bail!("{}: no gradient reached the input", call.kind());
        }
        // What back-propagating `sum(y·r)` into a tensor of y's shape costs by itself (a few
        // passes over y), so that the column shows the op's own backward.
        let alone = var(rng, y.dims())?;
        let harness = (alone.as_tensor() * &weights)?.sum_all()?;
        let harness_start = Instant::now();
        harness.backward()?;
        device.synchronize()?;
        let harness_ms = harness_start.elapsed().as_secs_f64() * 1e3;
        if rep > 0 {
            fwd.push((forward_done - start).as_secs_f64() * 1e3);
            bwd.push((backward_ms - harness_ms).max(0.0));
        }
    }
    Ok((median(fwd), median(bwd)))
}

/// Per-op-type totals `(calls, forward ms, backward ms)` of one step, each call replayed alone on
/// `device`.
fn breakdown(
    ops: &dyn StepOps,
    calls: &[OpCall],
    device: &Device,
) -> Result<BTreeMap<&'static str, (usize, f64, f64)>> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut table = BTreeMap::new();
    for call in calls {
        let (f, b) = replay(ops, call, &mut rng, device)?;
        let entry = table.entry(call.kind()).or_insert((0, 0.0, 0.0));
        entry.0 += 1;
        entry.1 += f;
        entry.2 += b;
    }
    Ok(table)
}

/// PyTorch's median ms/step from the reference script on `device`, and its version, or why it
/// could not run.
fn pytorch_step_ms(
    threads: usize,
    device: DeviceChoice,
) -> std::result::Result<(f64, String), String> {
    let python = std::env::var("CROSSKD_PYTHON").unwrap_or_else(|_| "python3".to_string());
    // Exit status 3: importable, but no GPU for it (a CPU-only wheel, or no driver).
    let probe_code = match device {
        DeviceChoice::Cpu => "import torch; print(torch.__version__)",
        DeviceChoice::Cuda(_) => {
            "import sys, torch; print(torch.__version__); sys.exit(0 if torch.cuda.is_available() else 3)"
        }
    };
    let probe = Command::new(&python).args(["-c", probe_code]).output();
    let version = match probe {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) if out.status.code() == Some(3) => {
            return Err(format!(
                "PyTorch {} in `{python}` cannot see a CUDA GPU (torch.cuda.is_available() is \
                 False: a CPU-only build, or no driver)",
                String::from_utf8_lossy(&out.stdout).trim()
            ))
        }
        Ok(_) => {
            return Err(format!(
                "`{python}` cannot import torch (`pip install torch` adds the PyTorch column)"
            ))
        }
        Err(e) => return Err(format!("cannot run `{python}`: {e}")),
    };
    let script = super::report::workspace_root().join("xtask/bench/train_step.py");
    let out = Command::new(&python)
        .arg(&script)
        .args(["--threads", &threads.to_string()])
        .args(["--device", &device.label()])
        .args([
            "--warmup",
            &WARMUP_STEPS.to_string(),
            "--steps",
            &TIMED_STEPS.to_string(),
        ])
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let parsed: serde_json::Value = serde_json::from_str(last)
        .map_err(|e| format!("{}: last line is not JSON ({e}): {last}", script.display()))?;
    let ms = parsed["step_ms"]
        .as_f64()
        .ok_or_else(|| format!("{}: no `step_ms` in {last}", script.display()))?;
    let params = parsed["parameters"].as_u64().unwrap_or(0) as usize;
    if params != REFERENCE_PARAMETERS {
        return Err(format!(
            "the PyTorch network has {params} parameters, expected {REFERENCE_PARAMETERS}"
        ));
    }
    Ok((ms, version))
}

/// The GPU's name from `nvidia-smi`, or why it is unknown. `ordinal` counts the GPUs CUDA sees,
/// which `CUDA_VISIBLE_DEVICES` may renumber, so it is mapped back through that list first.
fn gpu_name(ordinal: usize) -> String {
    let id = std::env::var("CUDA_VISIBLE_DEVICES")
        .ok()
        .and_then(|list| list.split(',').nth(ordinal).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| ordinal.to_string());
    let out = Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader", "-i", &id])
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if name.is_empty() {
                "unnamed GPU (nvidia-smi printed nothing)".to_string()
            } else {
                name
            }
        }
        Ok(out) => format!(
            "unknown GPU (nvidia-smi failed: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("unknown GPU (cannot run nvidia-smi: {e})"),
    }
}

fn reference_inputs(device: &Device) -> Result<(Tensor, Tensor)> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    Ok((
        random_tensor(&mut rng, &[BATCH, 3, SIZE, SIZE], device)?,
        random_tensor(&mut rng, &[BATCH, 3, SIZE, SIZE], device)?,
    ))
}

/// The op calls of one forward pass of the reference network.
fn recorded_calls(inputs: &(Tensor, Tensor)) -> Result<Vec<OpCall>> {
    let recorder = Recorder {
        ops: &CrosskdOps,
        calls: Some(std::cell::RefCell::new(Vec::new())),
    };
    Reference::new(7, inputs.0.device())?.loss(&recorder, &inputs.0, &inputs.1)?;
    Ok(recorder.calls.map(|c| c.into_inner()).unwrap_or_default())
}

/// Where the Rust columns run, for the first printed line: threads, and the GPU when there is one.
fn placement(threads: usize, choice: DeviceChoice) -> String {
    match choice {
        DeviceChoice::Cpu => format!("{threads} threads"),
        DeviceChoice::Cuda(n) => format!("cuda:{n} ({}), {threads} CPU threads", gpu_name(n)),
    }
}

/// `cargo xtask bench train-step --crosskd-only`: the crosskd column and its breakdown, printed.
pub fn run_crosskd_only(threads: usize, choice: DeviceChoice) -> Result<()> {
    let device = choice.open()?;
    let inputs = reference_inputs(&device)?;
    println!(
        "reference UNet, crosskd column only, {}",
        placement(threads, choice)
    );
    let t = time_steps(&CrosskdOps, &inputs)?;
    println!(
        "crosskd: {:.1} ms/step (forward {:.1}, backward {:.1}, optimiser {:.1}), final loss {:.4}",
        t.step_ms,
        t.forward_ms,
        t.backward_ms,
        t.step_ms - t.forward_ms - t.backward_ms,
        t.final_loss
    );
    for (kind, (calls, f, b)) in breakdown(&CrosskdOps, &recorded_calls(&inputs)?, &device)? {
        println!("{kind:20} {calls:2} calls  fwd {f:7.1} ms  bwd {b:7.1} ms");
    }
    Ok(())
}

/// `cargo xtask bench train-step [--device cpu|cuda|cuda:N]`.
pub fn run(threads: usize, choice: DeviceChoice) -> Result<()> {
    let device = choice.open()?;
    let inputs = reference_inputs(&device)?;
    println!(
        "reference UNet, batch {BATCH}×3×{SIZE}×{SIZE}, {}, median of {TIMED_STEPS} steps after {WARMUP_STEPS} warm-up",
        placement(threads, choice)
    );
    let candle = time_steps(&CandleOps, &inputs).context("raw candle column")?;
    println!("candle:  {:.1} ms/step", candle.step_ms);
    let crosskd = time_steps(&CrosskdOps, &inputs).context("crosskd column")?;
    println!("crosskd: {:.1} ms/step", crosskd.step_ms);
    // Same weights, data and forward maths: the first losses agree, later ones differ only where
    // candle's wrong pooling/upsampling gradients steer the optimiser elsewhere.
    let torch = pytorch_step_ms(threads, choice);

    let calls = recorded_calls(&inputs)?;
    let candle_ops = breakdown(&CandleOps, &calls, &device)?;
    let crosskd_ops = breakdown(&CrosskdOps, &calls, &device)?;

    let (section, command, placement_md, ratio_suffix) = match choice {
        DeviceChoice::Cpu => (
            "train-step".to_string(),
            format!("cargo xtask bench train-step --threads {threads}"),
            format!(
                "PyTorch: `xtask/bench/train_step.py`, always on the CPU).\n\nMachine: {}; Rust \
                 columns on the CPU.",
                super::report::machine_description(threads)
            ),
            "",
        ),
        DeviceChoice::Cuda(n) => (
            "train-step-cuda".to_string(),
            format!("cargo xtask bench train-step --device cuda:{n} --threads {threads}"),
            format!(
                "xtask built with `--features cuda`; PyTorch: `xtask/bench/train_step.py --device \
                 cuda:{n}`, TF32 off so that it computes in full f32 like candle). Every timed \
                 interval ends with a device synchronisation.\n\nMachine: GPU {} (cuda:{n}, all \
                 three columns); host {}.",
                gpu_name(n),
                super::report::machine_description(threads)
            ),
            " (cuda)",
        ),
    };
    let mut md = String::new();
    md.push_str(&format!(
        "Reference network of issue 3 (UNet, 431,811 parameters, batch {BATCH}×3×{SIZE}×{SIZE}, \
         L1 + pooled L1, AdamW), median of {TIMED_STEPS} steps after {WARMUP_STEPS} warm-up, \
         `{command}` (`xtask/src/bench/train_step.rs`, {placement_md}\n\n",
    ));
    md.push_str("| implementation | ms/step | forward ms | backward ms | optimiser ms |\n|---|---|---|---|---|\n");
    for (name, t) in [("candle 0.11.1 ops", &candle), ("crosskd-ops", &crosskd)] {
        md.push_str(&format!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
            t.step_ms,
            t.forward_ms,
            t.backward_ms,
            t.step_ms - t.forward_ms - t.backward_ms
        ));
    }
    let ratio_line = match &torch {
        Ok((ms, version)) => {
            md.push_str(&format!("| PyTorch {version} | {ms:.1} | | | |\n"));
            format!(
                "ratio crosskd/pytorch{ratio_suffix}: {:.2}",
                crosskd.step_ms / ms
            )
        }
        Err(why) => {
            md.push_str(&format!("\nPyTorch column skipped: {why}.\n"));
            format!(
                "ratio crosskd/candle{ratio_suffix}: {:.2}",
                crosskd.step_ms / candle.step_ms
            )
        }
    };
    md.push_str(&format!(
        "\nFinal training loss after {} steps: candle {:.4}, crosskd {:.4}.\n\n",
        WARMUP_STEPS + TIMED_STEPS,
        candle.final_loss,
        crosskd.final_loss
    ));
    md.push_str(
        "Per-op breakdown: every op call of one step replayed alone on its own shapes (median of 3 \
         after a warm-up); backward is `sum(y·r).backward()` minus the same backward into a plain \
         variable of y's shape. The remainder of the step is candle's gradient bookkeeping \
         (every graph node's gradient is allocated, zeroed and added to), concatenation, the \
         loss and the optimiser.\n\n\
         | op | calls | candle fwd ms | candle bwd ms | crosskd fwd ms | crosskd bwd ms |\n\
         |---|---|---|---|---|---|\n",
    );
    for (kind, (calls, cf, cb)) in &candle_ops {
        let (_, kf, kb) = crosskd_ops.get(kind).copied().unwrap_or_default();
        md.push_str(&format!(
            "| {kind} | {calls} | {cf:.1} | {cb:.1} | {kf:.1} | {kb:.1} |\n"
        ));
    }
    println!("\n{md}");
    super::report::write_section(&section, &md)?;
    if let Err(why) = &torch {
        println!("PyTorch column skipped: {why}");
    }
    println!("{ratio_line}");
    Ok(())
}
