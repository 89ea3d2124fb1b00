//! Optimisers whose state can be checkpointed: AdamW and SGD with (Nesterov) momentum.
//!
//! candle's `AdamW` hides its moments and its `SGD` has neither momentum nor weight decay, so a
//! resumed run could not continue bit-identically with them. Here the state lives in a map keyed
//! by variable *name*, variables are visited in name order (a `VarMap` iterates in `HashMap`
//! order, which differs between processes), and normalisation buffers (`running_mean`, …, see
//! [`crosskd_ops::norm::is_buffer`]) are never updated.

use std::collections::{BTreeMap, HashMap};

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;

use crate::config::{OptimiserConfig, OptimiserKind};
use crate::error::{Result, TrainError};

/// Trainable variables of one or more `VarMap`s, sorted by name, buffers removed.
///
/// `prefix` is prepended to each name (`student.`), so variables of several maps stay distinct.
pub fn trainable_vars(maps: &[(&str, &VarMap)]) -> Vec<(String, Var)> {
    let mut vars = Vec::new();
    for (prefix, map) in maps {
        let data = map
            .data()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (name, var) in data.iter() {
            if !crosskd_ops::norm::is_buffer(name) {
                vars.push((format!("{prefix}{name}"), var.clone()));
            }
        }
    }
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// `Some(sum)` when `t` holds a NaN or an infinity. Summing in f64 cannot overflow for finite
/// f32 entries, so a non-finite sum means a non-finite entry; non-float tensors are finite.
pub fn non_finite_sum(t: &Tensor) -> Result<Option<f64>> {
    if !t.dtype().is_float() {
        return Ok(None);
    }
    let s = t.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
    Ok((!s.is_finite()).then_some(s))
}

/// Per-variable optimiser state.
#[derive(Debug, Clone)]
struct Slot {
    /// AdamW first moment, or the SGD momentum buffer.
    first: Option<Tensor>,
    /// AdamW second moment.
    second: Option<Tensor>,
}

/// AdamW or SGD over a fixed, name-sorted list of variables.
///
/// AdamW (decoupled decay): `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
/// `θ ← θ(1 − η·wd) − η · m̂ / (√v̂ + ε)` with `m̂ = m/(1−β₁ᵗ)`, `v̂ = v/(1−β₂ᵗ)`.
/// SGD (PyTorch semantics): `g ← g + wd·θ`, `b ← μb + g` (`b = g` at the first step),
/// `g ← g + μb` (Nesterov) or `g ← b`, `θ ← θ − η g`.
/// Weight decay applies to tensors of rank ≥ 2 only (weights, not biases or norm scales).
pub struct Optimiser {
    config: OptimiserConfig,
    vars: Vec<(String, Var)>,
    slots: BTreeMap<String, Slot>,
    steps_taken: u64,
}

impl Optimiser {
    /// An optimiser over `vars` (see [`trainable_vars`]); they are re-sorted by name.
    pub fn new(config: &OptimiserConfig, mut vars: Vec<(String, Var)>) -> Self {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        Optimiser {
            config: config.clone(),
            vars,
            slots: BTreeMap::new(),
            steps_taken: 0,
        }
    }

    /// Number of updates applied so far.
    pub fn steps_taken(&self) -> u64 {
        self.steps_taken
    }

    /// The variables updated, in name order.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Returns the name of the first variable (in name order) whose gradient holds a NaN or an
    /// infinity, with the offending sum.
    pub fn first_non_finite_gradient(&self, grads: &GradStore) -> Result<Option<(String, f64)>> {
        for (name, var) in &self.vars {
            if let Some(g) = grads.get(var.as_tensor()) {
                if let Some(s) = non_finite_sum(g)? {
                    return Ok(Some((name.clone(), s)));
                }
            }
        }
        Ok(None)
    }

    /// Applies one update with learning rate `lr`. Variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.steps_taken += 1;
        let t = self.steps_taken as i32;
        let c = self.config.clone();
        for (name, var) in &self.vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            // candle's gradients carry the autograd history of their step; state built from them
            // without a detach keeps every past step's graph (activations included) alive through
            // the chain m_t → m_(t−1) → …, so memory would grow without bound.
            let g = &g.detach();
            let theta = &var.as_tensor().detach();
            let decay = if theta.rank() >= 2 {
                c.weight_decay
            } else {
                0.0
            };
            let slot = self.slots.entry(name.clone()).or_insert(Slot {
                first: None,
                second: None,
            });
            let updated = match c.kind {
                OptimiserKind::Adamw => {
                    let m = match &slot.first {
                        Some(m) => ((m * c.beta1)? + (g * (1.0 - c.beta1))?)?,
                        None => (g * (1.0 - c.beta1))?,
                    };
                    let g2 = g.sqr()?;
                    let v = match &slot.second {
                        Some(v) => ((v * c.beta2)? + (g2 * (1.0 - c.beta2))?)?,
                        None => (g2 * (1.0 - c.beta2))?,
                    };
                    let m_hat = (&m * (1.0 / (1.0 - c.beta1.powi(t))))?;
                    let v_hat = (&v * (1.0 / (1.0 - c.beta2.powi(t))))?;
                    let step = m_hat.div(&(v_hat.sqrt()? + c.eps)?)?;
                    slot.first = Some(m.detach());
                    slot.second = Some(v.detach());
                    ((theta * (1.0 - lr * decay))? - (step * lr)?)?
                }
                OptimiserKind::Sgd => {
                    let mut d = g.clone();
                    if decay > 0.0 {
                        d = (d + (theta * decay)?)?;
                    }
                    if c.momentum > 0.0 {
                        let b = match &slot.first {
                            Some(b) => ((b * c.momentum)? + &d)?,
                            None => d.clone(),
                        };
                        d = if c.nesterov {
                            (d + (&b * c.momentum)?)?
                        } else {
                            b.clone()
                        };
                        slot.first = Some(b.detach());
                    }
                    (theta - (d * lr)?)?
                }
            };
            var.set(&updated)?;
        }
        Ok(())
    }

    /// The state as named tensors: `optim.first.NAME`, `optim.second.NAME`, plus the number of
    /// steps taken as `optim.steps_taken` (a one-element u32 pair: low and high 32 bits).
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (name, slot) in &self.slots {
            if let Some(t) = &slot.first {
                out.push((format!("optim.first.{name}"), t.clone()));
            }
            if let Some(t) = &slot.second {
                out.push((format!("optim.second.{name}"), t.clone()));
            }
        }
        let dev = self
            .vars
            .first()
            .map(|(_, v)| v.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let steps = self.steps_taken;
        let pair = Tensor::new(&[(steps & 0xffff_ffff) as u32, (steps >> 32) as u32], &dev)?;
        out.push(("optim.steps_taken".to_string(), pair));
        Ok(out)
    }

    /// Restores the state written by [`Optimiser::state_tensors`] (other keys are ignored).
    /// Errors name the tensor when a moment's shape does not match its variable.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let bad = |message: String| TrainError::Checkpoint {
            path: "optimiser state".into(),
            message,
        };
        let steps = tensors
            .get("optim.steps_taken")
            .ok_or_else(|| bad("missing tensor optim.steps_taken".into()))?;
        let pair = steps.to_vec1::<u32>()?;
        if pair.len() != 2 {
            return Err(bad(format!(
                "optim.steps_taken: expected 2 elements, found {}",
                pair.len()
            )));
        }
        self.steps_taken = pair[0] as u64 | ((pair[1] as u64) << 32);
        self.slots.clear();
        for (name, var) in &self.vars {
            let mut slot = Slot {
                first: None,
                second: None,
            };
            for (kind, target) in [("first", &mut slot.first), ("second", &mut slot.second)] {
                let key = format!("optim.{kind}.{name}");
                if let Some(t) = tensors.get(&key) {
                    if t.dims() != var.dims() {
                        return Err(bad(format!(
                            "{key}: expected shape {:?} (the variable's), found {:?}",
                            var.dims(),
                            t.dims()
                        )));
                    }
                    *target = Some(t.to_device(var.device())?.to_dtype(var.dtype())?);
                }
            }
            if slot.first.is_some() || slot.second.is_some() {
                self.slots.insert(name.clone(), slot);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn quadratic_grads(var: &Var, target: &Tensor) -> GradStore {
        let loss = (var.as_tensor() - target)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        loss.backward().unwrap()
    }

    #[test]
    fn sgd_momentum_matches_hand_computation() {
        let dev = Device::Cpu;
        let var = Var::new(&[1.0f32, -2.0], &dev).unwrap();
        let target = Tensor::new(&[0.0f32, 0.0], &dev).unwrap();
        let cfg = OptimiserConfig {
            kind: OptimiserKind::Sgd,
            momentum: 0.5,
            weight_decay: 0.0,
            ..OptimiserConfig::default()
        };
        let mut opt = Optimiser::new(&cfg, vec![("w".into(), var.clone())]);
        // g = 2θ. Step 1: b = g = (2, −4), θ = (1, −2) − 0.1·b = (0.8, −1.6).
        opt.step(&quadratic_grads(&var, &target), 0.1).unwrap();
        let v = var.as_tensor().to_vec1::<f32>().unwrap();
        assert!(
            (v[0] - 0.8).abs() < 1e-6 && (v[1] + 1.6).abs() < 1e-6,
            "{v:?}"
        );
        // Step 2: g = (1.6, −3.2), b = 0.5·(2, −4) + g = (2.6, −5.2), θ = (0.8, −1.6) − 0.1·b.
        opt.step(&quadratic_grads(&var, &target), 0.1).unwrap();
        let v = var.as_tensor().to_vec1::<f32>().unwrap();
        assert!(
            (v[0] - 0.54).abs() < 1e-6 && (v[1] + 1.08).abs() < 1e-6,
            "{v:?}"
        );
    }

    #[test]
    fn adamw_first_step_moves_by_lr_times_sign() {
        // At t = 1, m̂ = g and v̂ = g², so the step is lr·g/(|g|+ε) ≈ lr·sign(g).
        let dev = Device::Cpu;
        let var = Var::new(&[[3.0f32, -1.0]], &dev).unwrap();
        let target = Tensor::new(&[[0.0f32, 0.0]], &dev).unwrap();
        let cfg = OptimiserConfig {
            weight_decay: 0.0,
            ..OptimiserConfig::default()
        };
        let mut opt = Optimiser::new(&cfg, vec![("w".into(), var.clone())]);
        opt.step(&quadratic_grads(&var, &target), 0.01).unwrap();
        let v = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(
            (v[0] - 2.99).abs() < 1e-5 && (v[1] + 0.99).abs() < 1e-5,
            "{v:?}"
        );
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let dev = Device::Cpu;
        let target = Tensor::new(&[[0.5f32, -0.25], [1.0, 2.0]], &dev).unwrap();
        for kind in [OptimiserKind::Adamw, OptimiserKind::Sgd] {
            let cfg = OptimiserConfig {
                kind,
                nesterov: kind == OptimiserKind::Sgd,
                ..OptimiserConfig::default()
            };
            let a = Var::new(&[[1.0f32, 2.0], [3.0, 4.0]], &dev).unwrap();
            let mut opt_a = Optimiser::new(&cfg, vec![("w".into(), a.clone())]);
            for _ in 0..3 {
                opt_a.step(&quadratic_grads(&a, &target), 0.05).unwrap();
            }
            let state: HashMap<String, Tensor> =
                opt_a.state_tensors().unwrap().into_iter().collect();
            let b = Var::from_tensor(a.as_tensor()).unwrap();
            let b = Var::new(b.as_tensor().to_vec2::<f32>().unwrap(), &dev).unwrap();
            let mut opt_b = Optimiser::new(&cfg, vec![("w".into(), b.clone())]);
            opt_b.load_state(&state).unwrap();
            assert_eq!(opt_b.steps_taken(), 3);
            for _ in 0..2 {
                opt_a.step(&quadratic_grads(&a, &target), 0.05).unwrap();
                opt_b.step(&quadratic_grads(&b, &target), 0.05).unwrap();
            }
            assert_eq!(
                a.as_tensor().to_vec2::<f32>().unwrap(),
                b.as_tensor().to_vec2::<f32>().unwrap()
            );
        }
    }

    #[test]
    fn buffers_are_not_trainable_and_order_is_by_name() {
        let map = VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        for name in [
            "z.weight",
            "a.weight",
            "bn.running_mean",
            "bn.running_var",
            "bn.num_batches_tracked",
        ] {
            vb.get(2, name).unwrap();
        }
        let names: Vec<String> = trainable_vars(&[("s.", &map)])
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            vec!["s.a.weight".to_string(), "s.z.weight".to_string()]
        );
    }

    #[test]
    fn non_finite_gradient_is_named() {
        let dev = Device::Cpu;
        let a = Var::new(&[1.0f32], &dev).unwrap();
        let b = Var::new(&[0.0f32], &dev).unwrap();
        let loss = (a.as_tensor() + b.as_tensor().sqrt().unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let opt = Optimiser::new(
            &OptimiserConfig::default(),
            vec![("a".into(), a), ("b".into(), b)],
        );
        let (name, value) = opt.first_non_finite_gradient(&grads).unwrap().unwrap();
        assert_eq!(name, "b");
        assert!(!value.is_finite());
    }
}
