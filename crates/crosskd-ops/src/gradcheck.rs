//! Finite-difference gradient checking, shared by every crate's tests.
//!
//! Central differences in f64: for each element `x_i` of each input,
//! `(L(x + eps·e_i) − L(x − eps·e_i)) / (2 eps)` is compared with the gradient candle's backward pass
//! produced. A non-scalar output is reduced to a scalar with fixed pseudo-random weights rather
//! than a plain sum, because a plain sum hides errors that cancel across elements (for example a
//! gradient routed to the wrong output position).

use candle_core::{DType, Device, Tensor, Var};

use crate::{Error, Result};

/// Outcome of a gradient check: the largest absolute error per input.
#[derive(Debug, Clone)]
pub struct GradCheckReport {
    /// `max_i |analytic_i − numeric_i|` for each input, in input order.
    pub max_abs_error: Vec<f64>,
    /// `max_i |numeric_i|` for each input, to judge the scale of the errors.
    pub max_abs_numeric: Vec<f64>,
}

impl GradCheckReport {
    /// The largest absolute error over all inputs.
    pub fn worst(&self) -> f64 {
        self.max_abs_error.iter().cloned().fold(0.0, f64::max)
    }
}

/// Deterministic weights in [0.5, 1.5) so that no output element is ignored and errors cannot
/// cancel between elements.
fn reduction_weights(n: usize) -> Vec<f64> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            0.5 + ((state >> 11) as f64) / ((1u64 << 53) as f64)
        })
        .collect()
}

fn weighted_scalar(out: &Tensor) -> Result<Tensor> {
    let flat = out.flatten_all()?;
    let w = Tensor::from_vec(
        reduction_weights(flat.elem_count()),
        flat.elem_count(),
        out.device(),
    )?
    .to_dtype(out.dtype())?;
    Ok((flat * w)?.sum_all()?)
}

/// Computes analytic and numeric gradients of `f` at `inputs` and reports their differences.
///
/// `inputs` must be f64 tensors (they are copied; the originals are untouched). `f` receives the
/// inputs as tensors that track gradients and may return a tensor of any shape.
pub fn gradcheck<F>(f: F, inputs: &[Tensor], eps: f64) -> Result<GradCheckReport>
where
    F: Fn(&[Tensor]) -> candle_core::Result<Tensor>,
{
    for (i, t) in inputs.iter().enumerate() {
        if t.dtype() != DType::F64 {
            return Err(Error::InvalidArgument {
                op: "gradcheck",
                message: format!("input {i} must be f64, got {:?}", t.dtype()),
            });
        }
    }
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(&t.copy()?))
        .collect::<candle_core::Result<_>>()?;
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let loss = weighted_scalar(&f(&tensors)?)?;
    let grads = loss.backward()?;

    let mut max_abs_error = Vec::with_capacity(inputs.len());
    let mut max_abs_numeric = Vec::with_capacity(inputs.len());
    for (idx, input) in inputs.iter().enumerate() {
        let analytic: Vec<f64> = match grads.get(vars[idx].as_tensor()) {
            Some(g) => g.flatten_all()?.to_vec1()?,
            None => vec![0.0; input.elem_count()],
        };
        let base: Vec<f64> = input.flatten_all()?.to_vec1()?;
        let mut worst: f64 = 0.0;
        let mut scale: f64 = 0.0;
        for i in 0..base.len() {
            let eval_at = |delta: f64| -> Result<f64> {
                let mut moved = base.clone();
                moved[i] += delta;
                let moved = Tensor::from_vec(moved, input.shape(), input.device())?;
                let mut args = inputs.to_vec();
                args[idx] = moved;
                let value = weighted_scalar(&f(&args)?)?;
                Ok(value.to_dtype(DType::F64)?.to_scalar::<f64>()?)
            };
            let numeric = (eval_at(eps)? - eval_at(-eps)?) / (2.0 * eps);
            worst = worst.max((numeric - analytic[i]).abs());
            scale = scale.max(numeric.abs());
        }
        max_abs_error.push(worst);
        max_abs_numeric.push(scale);
    }
    Ok(GradCheckReport {
        max_abs_error,
        max_abs_numeric,
    })
}

/// Panics with a readable message unless every input's gradient is within `tol` (absolute) of
/// central differences with step `eps`. Intended for tests.
pub fn assert_gradients<F>(name: &str, f: F, inputs: &[Tensor], eps: f64, tol: f64)
where
    F: Fn(&[Tensor]) -> candle_core::Result<Tensor>,
{
    let report = gradcheck(f, inputs, eps)
        .unwrap_or_else(|e| panic!("{name}: gradcheck failed to run: {e}"));
    for (i, (err, scale)) in report
        .max_abs_error
        .iter()
        .zip(&report.max_abs_numeric)
        .enumerate()
    {
        assert!(
            *err <= tol,
            "{name}: gradient of input {i} is off by {err:e} (tolerance {tol:e}, gradient scale {scale:e})"
        );
    }
}

/// A seeded f64 tensor with entries uniform in [-1, 1), for gradient checks.
pub fn random_f64(shape: &[usize], seed: u64) -> Result<Tensor> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let data: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
}

/// Every value of `t` as f64, in row-major order. Panics on failure; intended for tests.
pub fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .unwrap_or_else(|e| panic!("values: cannot read the tensor: {e}"))
}

/// The largest `|a_i − b_i|`. Panics when the lengths differ; intended for tests.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "max_abs_diff: lengths differ");
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_correct_gradient() {
        let x = random_f64(&[3, 4], 1).unwrap();
        assert_gradients("x^3", |a| a[0].powf(3.0), &[x], 1e-5, 1e-7);
    }

    #[test]
    fn detects_a_wrong_gradient() {
        // Detaching one factor makes the analytic gradient miss a term the numeric one sees.
        let x = random_f64(&[5], 2).unwrap();
        let report = gradcheck(|a| a[0].detach().mul(&a[0]), &[x], 1e-5).unwrap();
        assert!(
            report.worst() > 1e-2,
            "gradcheck missed a broken gradient: {report:?}"
        );
    }
}
