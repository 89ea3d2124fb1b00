//! Distilling into a model of your own with only `crosskd-projectors` and `crosskd-losses` — no
//! trainer, no crosskd models or data.
//!
//! The student is a plain candle MLP regressing a smooth function of its input; the "teacher" is
//! a frozen random feature map of the same input (the random-teacher setting of the paper). An
//! inverted projector maps teacher features to the student's hidden layer, the distillation loss
//! is split into its knowledge-transfer and spectral terms, and the teacher-free `tail`
//! regulariser is shown alongside.
//!
//! Run: `cargo run -p crosskd-train --example standalone_distill`

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{linear, AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use crosskd_losses::regularisers::{tail_spectral_energy, TailRank};
use crosskd_losses::Distance;
use crosskd_projectors::{Direction, Projector, ProjectorConfig, ProjectorForm};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// Plain candle on purpose: this example shows the two distillation crates on their own (candle's
// relu is correct, only slower than crosskd-ops').
#[allow(clippy::disallowed_methods)]
fn main() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let (n, d_in, d_hidden, d_teacher) = (256usize, 16usize, 32usize, 24usize);

    // Everything is drawn from one seeded generator, so the run is reproducible.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut uniform = |shape: (usize, usize), bound: f32| -> candle_core::Result<Tensor> {
        let v: Vec<f32> = (0..shape.0 * shape.1)
            .map(|_| rng.gen_range(-bound..bound))
            .collect();
        Tensor::from_vec(v, shape, &dev)
    };

    // Data: y = sin(x·w) for a fixed w.
    let x = uniform((n, d_in), 1.7)?;
    let w_true = uniform((d_in, 1), 0.8)?;
    let y = x.matmul(&w_true)?.sin()?;

    // The frozen teacher: a random map followed by tanh. It never gets gradients.
    let w_teacher = uniform((d_in, d_teacher), 1.7 / (d_in as f32).sqrt())?;
    let z_t = x.matmul(&w_teacher)?.tanh()?.detach();

    // Your own model: a two-layer MLP whose hidden layer is the distilled feature. Its variables
    // are created from the seeded generator first; `VarBuilder` then finds them by name.
    let vars = VarMap::new();
    {
        let mut data = vars
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("VarMap lock poisoned"))?;
        let b_in = 1.0 / (d_in as f32).sqrt();
        let b_hid = 1.0 / (d_hidden as f32).sqrt();
        let b_t = 1.0 / (d_teacher as f32).sqrt();
        data.insert(
            "hidden.weight".into(),
            Var::from_tensor(&uniform((d_hidden, d_in), b_in)?)?,
        );
        data.insert(
            "hidden.bias".into(),
            Var::from_tensor(&uniform((1, d_hidden), b_in)?.flatten_all()?)?,
        );
        data.insert(
            "out.weight".into(),
            Var::from_tensor(&uniform((1, d_hidden), b_hid)?)?,
        );
        data.insert(
            "out.bias".into(),
            Var::from_tensor(&uniform((1, 1), b_hid)?.flatten_all()?)?,
        );
        data.insert(
            "projector.weight".into(),
            Var::from_tensor(&uniform((d_hidden, d_teacher), b_t)?)?,
        );
    }
    let vb = VarBuilder::from_varmap(&vars, DType::F32, &dev);
    let hidden = linear(d_in, d_hidden, vb.pp("hidden"))?;
    let out = linear(d_hidden, 1, vb.pp("out"))?;
    // The inverted projector (teacher → student), trained with the student.
    let projector = Projector::new(
        Direction::Inverted,
        ProjectorForm::Linear,
        d_teacher,
        d_hidden,
        ProjectorConfig::default(),
        vb.pp("projector"),
    )?;
    let distance = Distance::SquaredL2;
    let (alpha, lambda) = (0.5, 0.01);

    // Sorted by name: `VarMap::all_vars` comes in HashMap order.
    let mut named: Vec<(String, Var)> = vars
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .clone()
        .into_iter()
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let params = named.into_iter().map(|(_, v)| v).collect();
    let mut opt = AdamW::new(
        params,
        ParamsAdamW {
            lr: 1e-2,
            ..ParamsAdamW::default()
        },
    )?;
    for step in 1..=300 {
        let z_s = hidden.forward(&x)?.relu()?;
        let pred = out.forward(&z_s)?;
        let task = (&pred - &y)?.sqr()?.mean_all()?;
        let terms = projector.distill(&z_s, &z_t, &distance)?;
        let tail = tail_spectral_energy(&z_s, TailRank::Fixed(8))?;
        let total = (&task + (terms.total.affine(alpha, 0.0)? + tail.affine(lambda, 0.0)?)?)?;
        opt.backward_step(&total)?;
        if step % 50 == 0 {
            let v = |t: &Tensor| -> anyhow::Result<f32> {
                Ok(t.to_dtype(DType::F32)?.to_scalar::<f32>()?)
            };
            let transfer = terms
                .transfer
                .as_ref()
                .map(v)
                .transpose()?
                .unwrap_or(f32::NAN);
            let spectral = terms
                .spectral
                .as_ref()
                .map(v)
                .transpose()?
                .unwrap_or(f32::NAN);
            println!(
                "step {step:>3}: task {:.4}  distill {:.4} (transfer {:.4} + spectral {:.4})  tail {:.4}",
                v(&task)?,
                v(&terms.total)?,
                transfer,
                spectral,
                v(&tail)?
            );
        }
    }
    // The learned inverted projector tends to low rank: print its singular values.
    let spectrum = crosskd_losses::projector_spectrum(&projector)?;
    let top: Vec<String> = spectrum
        .singular_values
        .iter()
        .take(8)
        .map(|s| format!("{s:.3}"))
        .collect();
    println!(
        "projector singular values: {} (effective rank {:.2})",
        top.join(", "),
        spectrum.effective_rank
    );
    Ok(())
}
