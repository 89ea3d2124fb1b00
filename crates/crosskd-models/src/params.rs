//! Where a network's parameters come from: a seeded deterministic initialiser backed by a
//! `VarMap` (students and random teachers), or a checked tensor map (loaded weights).
//!
//! candle's `Init` draws from the device RNG, so two builds with the "same seed" differ unless
//! the whole process runs in the same order. [`seeded_var_builder`] instead draws every tensor
//! from its own `ChaCha8Rng` seeded by `(seed, parameter name)`: the weights depend only on the
//! seed and the names, never on construction order or on the device.
//!
//! [`CheckedWeights`] serves tensors from a file and records every name the network asks for,
//! so that missing, unexpected and wrongly shaped tensors are reported together, in one error,
//! instead of failing on the first one (or, worse, being silently initialised at random).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};

/// The RNG of one parameter: ChaCha8 seeded with the first 8 bytes of `sha256(seed || name)`.
fn parameter_rng(seed: u64, name: &str) -> ChaCha8Rng {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(name.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    ChaCha8Rng::seed_from_u64(u64::from_le_bytes(bytes))
}

/// A standard normal sample by the Box–Muller transform (keeps us off `rand_distr`).
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    // 1 - u lies in (0, 1], so the logarithm is finite.
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Draws a tensor of `shape` following `init`, deterministically from `(seed, name)`.
///
/// Kaiming: `std = gain / sqrt(fan)`, uniform on `[-√3·std, √3·std]` or normal `N(0, std²)`,
/// exactly as candle's `Init::var` but from our own RNG.
pub fn seeded_tensor(
    seed: u64,
    name: &str,
    shape: &Shape,
    init: Init,
    dtype: DType,
    dev: &Device,
) -> Result<Tensor> {
    let n = shape.elem_count();
    let mut rng = parameter_rng(seed, name);
    let values: Vec<f32> = match init {
        Init::Const(c) => vec![c as f32; n],
        Init::Uniform { lo, up } => (0..n)
            .map(|_| (lo + (up - lo) * rng.gen::<f64>()) as f32)
            .collect(),
        Init::Randn { mean, stdev } => (0..n)
            .map(|_| (mean + stdev * standard_normal(&mut rng)) as f32)
            .collect(),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let fan = fan.for_shape(shape).max(1);
            let std = non_linearity.gain() / (fan as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    (0..n)
                        .map(|_| (bound * (2.0 * rng.gen::<f64>() - 1.0)) as f32)
                        .collect()
                }
                NormalOrUniform::Normal => (0..n)
                    .map(|_| (std * standard_normal(&mut rng)) as f32)
                    .collect(),
            }
        }
    };
    Ok(Tensor::from_vec(values, shape.clone(), &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(dev)?)
}

/// A `VarMap`-backed builder whose new variables are drawn by [`seeded_tensor`].
struct SeededVarMap {
    varmap: VarMap,
    seed: u64,
}

impl SimpleBackend for SeededVarMap {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("VarMap lock poisoned".into()))?;
        if let Some(var) = data.get(name) {
            if var.shape() != &s {
                candle_core::bail!(
                    "parameter {name}: requested shape {s:?} but it already exists with shape {:?}",
                    var.shape()
                );
            }
            return Ok(var.as_tensor().clone());
        }
        let value =
            seeded_tensor(self.seed, name, &s, h, dtype, dev).map_err(candle_core::Error::wrap)?;
        let var = Var::from_tensor(&value)?;
        let tensor = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(tensor)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("VarMap lock poisoned".into()))?;
        match data.get(name) {
            Some(var) => Ok(var.as_tensor().clone()),
            None => {
                candle_core::bail!("parameter {name} requested without a shape and not yet created")
            }
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .map(|d| d.contains_key(name))
            .unwrap_or(false)
    }
}

/// A `VarBuilder` that creates trainable variables in `varmap`, each drawn deterministically from
/// `(seed, full parameter name)` with the initialiser the layer asks for. Variables already in the
/// map are reused, so a second build over the same map shares the weights.
pub fn seeded_var_builder(
    varmap: &VarMap,
    seed: u64,
    dtype: DType,
    dev: &Device,
) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(SeededVarMap {
            varmap: varmap.clone(),
            seed,
        }),
        dtype,
        dev.clone(),
    )
}

/// What the network asked a [`CheckedWeights`] builder for.
#[derive(Debug, Default)]
struct Requests {
    /// Every name requested, with the shape requested.
    requested: BTreeMap<String, Vec<usize>>,
    /// Requested names absent from the weights.
    missing: BTreeSet<String>,
    /// Requested names present with another shape: (requested, found).
    wrong_shape: BTreeMap<String, (Vec<usize>, Vec<usize>)>,
}

/// A tensor map that serves weights by name and records what was missing or wrongly shaped.
///
/// Missing or mis-shaped tensors are answered with zeros so that the build can go on and find
/// *all* problems; [`CheckedWeights::finish`] then refuses the result if there was any.
#[derive(Clone)]
pub struct CheckedWeights {
    tensors: Arc<HashMap<String, Tensor>>,
    requests: Arc<Mutex<Requests>>,
    source_name: String,
}

struct CheckedBackend(CheckedWeights);

impl SimpleBackend for CheckedBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut req = self
            .0
            .requests
            .lock()
            .map_err(|_| candle_core::Error::Msg("lock poisoned".into()))?;
        if self.0.tensors.contains_key(name) || !name.ends_with("num_batches_tracked") {
            req.requested.insert(name.to_string(), s.dims().to_vec());
        }
        match self.0.tensors.get(name) {
            Some(t) if t.dims() == s.dims() => t.to_dtype(dtype)?.to_device(dev),
            Some(t) => {
                req.wrong_shape
                    .insert(name.to_string(), (s.dims().to_vec(), t.dims().to_vec()));
                Tensor::zeros(s, dtype, dev)
            }
            // Older PyTorch checkpoints lack it; batch norm falls back to zero when refused.
            None if name.ends_with("num_batches_tracked") => {
                candle_core::bail!("{}: optional buffer {name} absent", self.0.source_name)
            }
            None => {
                req.missing.insert(name.to_string());
                Tensor::zeros(s, dtype, dev)
            }
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.0.tensors.get(name) {
            Some(t) => {
                let mut req = self
                    .0
                    .requests
                    .lock()
                    .map_err(|_| candle_core::Error::Msg("lock poisoned".into()))?;
                req.requested.insert(name.to_string(), t.dims().to_vec());
                t.to_dtype(dtype)?.to_device(dev)
            }
            None => candle_core::bail!(
                "{}: tensor {name} is missing (requested without a shape)",
                self.0.source_name
            ),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.tensors.contains_key(name)
    }
}

impl CheckedWeights {
    /// Wraps `tensors` (already stripped of any prefix) read from `source_name`.
    pub fn new(tensors: HashMap<String, Tensor>, source_name: impl Into<String>) -> Self {
        Self {
            tensors: Arc::new(tensors),
            requests: Arc::new(Mutex::new(Requests::default())),
            source_name: source_name.into(),
        }
    }

    /// A `VarBuilder` serving these tensors (converted to `dtype`, moved to `dev`).
    pub fn var_builder(&self, dtype: DType, dev: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(CheckedBackend(self.clone())), dtype, dev.clone())
    }

    /// After building `arch` from [`CheckedWeights::var_builder`]: `Ok` when every requested tensor
    /// existed with the requested shape and no tensor was left unused, otherwise an error listing
    /// every missing, unexpected and wrongly shaped tensor.
    pub fn finish(&self, arch: &str) -> Result<()> {
        let req = self
            .requests
            .lock()
            .map_err(|_| ModelError::config(arch, "weight request log poisoned"))?;
        let mut extra: Vec<&String> = self
            .tensors
            .keys()
            .filter(|k| !req.requested.contains_key(*k))
            .collect();
        extra.sort();
        if req.missing.is_empty() && req.wrong_shape.is_empty() && extra.is_empty() {
            return Ok(());
        }
        let mut report = String::new();
        if !req.missing.is_empty() {
            report.push_str(&format!("  missing ({}):\n", req.missing.len()));
            for name in &req.missing {
                report.push_str(&format!(
                    "    {name}: expected shape {:?}\n",
                    req.requested[name]
                ));
            }
        }
        if !extra.is_empty() {
            report.push_str(&format!("  unexpected ({}):\n", extra.len()));
            for name in extra {
                report.push_str(&format!(
                    "    {name}: shape {:?}\n",
                    self.tensors[name].dims()
                ));
            }
        }
        if !req.wrong_shape.is_empty() {
            report.push_str(&format!("  wrong shape ({}):\n", req.wrong_shape.len()));
            for (name, (want, got)) in &req.wrong_shape {
                report.push_str(&format!("    {name}: expected {want:?}, found {got:?}\n"));
            }
        }
        Err(ModelError::WeightMismatch {
            source_name: self.source_name.clone(),
            arch: arch.to_string(),
            report: report.trim_end().to_string(),
        })
    }
}

/// The variables of `varmap` as `(name, tensor)` pairs sorted by name (`VarMap::all_vars` comes
/// in `HashMap` order).
pub fn sorted_vars(varmap: &VarMap) -> Vec<(String, Tensor)> {
    let data = match varmap.data().lock() {
        Ok(d) => d,
        Err(poisoned) => poisoned.into_inner(),
    };
    let mut vars: Vec<(String, Tensor)> = data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_tensors_depend_on_seed_and_name_only() -> Result<()> {
        let shape = Shape::from((4, 3, 3, 3));
        let init = candle_nn::init::DEFAULT_KAIMING_NORMAL;
        let a = seeded_tensor(7, "x.weight", &shape, init, DType::F32, &Device::Cpu)?;
        let b = seeded_tensor(7, "x.weight", &shape, init, DType::F32, &Device::Cpu)?;
        let c = seeded_tensor(8, "x.weight", &shape, init, DType::F32, &Device::Cpu)?;
        let d = seeded_tensor(7, "y.weight", &shape, init, DType::F32, &Device::Cpu)?;
        let diff = |p: &Tensor, q: &Tensor| -> Result<f32> {
            Ok((p - q)?.abs()?.sum_all()?.to_scalar::<f32>()?)
        };
        assert_eq!(diff(&a, &b)?, 0.0);
        assert!(diff(&a, &c)? > 0.0);
        assert!(diff(&a, &d)? > 0.0);
        Ok(())
    }

    #[test]
    fn kaiming_normal_has_the_kaiming_standard_deviation() -> Result<()> {
        // fan_in = 64 * 3 * 3 = 576, ReLU gain √2: std = sqrt(2 / 576).
        let shape = Shape::from((256, 64, 3, 3));
        let t = seeded_tensor(
            1,
            "w",
            &shape,
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
            DType::F32,
            &Device::Cpu,
        )?;
        let var = t.sqr()?.mean_all()?.to_scalar::<f32>()? as f64;
        let want = 2.0 / 576.0;
        assert!((var / want - 1.0).abs() < 0.02, "variance {var} vs {want}");
        Ok(())
    }

    #[test]
    fn checked_weights_report_every_problem() -> Result<()> {
        let dev = Device::Cpu;
        let mut tensors = HashMap::new();
        tensors.insert("a".to_string(), Tensor::zeros((2, 2), DType::F32, &dev)?);
        tensors.insert("b".to_string(), Tensor::zeros(3, DType::F32, &dev)?);
        tensors.insert("extra".to_string(), Tensor::zeros(1, DType::F32, &dev)?);
        let weights = CheckedWeights::new(tensors, "test.safetensors");
        let vb = weights.var_builder(DType::F32, &dev);
        vb.get((2, 2), "a")?;
        vb.get(4, "b")?;
        vb.get(5, "gone")?;
        let msg = weights.finish("toy").unwrap_err().to_string();
        assert!(msg.contains("gone: expected shape [5]"), "{msg}");
        assert!(msg.contains("extra: shape [1]"), "{msg}");
        assert!(msg.contains("b: expected [4], found [3]"), "{msg}");
        assert!(
            !msg.lines().any(|line| line.trim_start().starts_with("a:")),
            "{msg}"
        );
        Ok(())
    }
}
