//! The paper's mechanism on a planted problem (issue 4, item 3).
//!
//! Inputs `X = [S | Q]`: `S` (r = 2 columns) is shared, `Q` (4 columns) is task-specific to the
//! teacher. The teacher's feature is `Z_t = [S A | Q B]`, with the task-specific block carrying
//! more energy (1.5× per direction, as a teacher trained for another task would). The student's target `Y = S C`
//! depends on the shared part only. A linear student `Z_s = X W` (d_s = 4) with a linear head is
//! trained jointly with a projector on `task + α·distill`, by plain SGD with weight decay (as in
//! any real training run), once with the inverted and once with the standard projector.
//!
//! Expected (docs/method.md): the inverted projector maps the teacher's task-specific directions
//! to zero and ends with rank r, and the student's weights on `Q` vanish; the standard projector
//! must reproduce every teacher direction from the student, so its loss keeps a spectral residual
//! (teacher energy outside the student's span) whose gradient pulls the student's features onto
//! `Q`, and the student ends up spending capacity on the task-specific inputs.

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use crosskd_losses::{projector_spectrum, Distance};
use crosskd_projectors::orthogonal::polar_factor;
use crosskd_projectors::{Direction, Projector, ProjectorConfig, ProjectorForm};
use rand::SeedableRng;
use rand_distr_free::gaussian;

const N: usize = 64;
const SHARED: usize = 2;
const SPECIFIC: usize = 4;
const D_S: usize = 4;
const D_T: usize = SHARED + SPECIFIC;
const ALPHA: f64 = 1.0;
const LR: f64 = 0.1;
const WEIGHT_DECAY: f64 = 0.05;
const STEPS: usize = 1000;

mod rand_distr_free {
    use candle_core::{Device, Tensor};
    use rand::Rng;

    /// A Gaussian matrix from a seeded ChaCha8 (Box–Muller), scaled by `scale`.
    pub fn gaussian(
        rng: &mut rand_chacha::ChaCha8Rng,
        rows: usize,
        cols: usize,
        scale: f64,
    ) -> Tensor {
        let data: Vec<f64> = (0..rows * cols)
            .map(|_| {
                let u1: f64 = 1.0 - rng.gen::<f64>();
                let u2: f64 = rng.gen::<f64>();
                scale * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
            })
            .collect();
        Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap()
    }
}

struct Problem {
    x: Tensor,
    z_t: Tensor,
    y: Tensor,
}

fn problem() -> Problem {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2024);
    let s = gaussian(&mut rng, N, SHARED, 1.0);
    let q = gaussian(&mut rng, N, SPECIFIC, 1.0);
    // Orthogonal mixing matrices keep every block well conditioned (and plain SGD stable).
    let orthogonal = |rng: &mut rand_chacha::ChaCha8Rng, k: usize| {
        polar_factor(&gaussian(rng, k, k, 1.0)).unwrap()
    };
    let a = orthogonal(&mut rng, SHARED);
    let b = orthogonal(&mut rng, SPECIFIC).affine(1.5, 0.0).unwrap();
    let c = orthogonal(&mut rng, SHARED);
    let x = Tensor::cat(&[&s, &q], 1).unwrap();
    let z_t = Tensor::cat(&[&s.matmul(&a).unwrap(), &q.matmul(&b).unwrap()], 1).unwrap();
    let y = s.matmul(&c).unwrap();
    Problem { x, z_t, y }
}

struct Outcome {
    projector: Projector,
    w: Tensor,
    task_loss: f64,
    distill_grad_on_q: f64,
    distill_grad_on_s: f64,
    spectral: f64,
    transfer: f64,
    distill: f64,
}

fn sq(t: &Tensor) -> f64 {
    t.sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn train(direction: Direction) -> Outcome {
    let p = problem();
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
    let projector = Projector::new(
        direction,
        ProjectorForm::Linear,
        D_T,
        D_S,
        ProjectorConfig::default(),
        vb.pp("proj"),
    )
    .unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let w = Var::from_tensor(&gaussian(&mut rng, D_T, D_S, 0.4)).unwrap();
    let h = Var::from_tensor(&gaussian(&mut rng, D_S, SHARED, 0.4)).unwrap();
    let mut vars: Vec<Var> = map.all_vars();
    vars.push(w.clone());
    vars.push(h.clone());
    let distance = Distance::SquaredL2;
    let task = |z_s: &Tensor| -> Tensor {
        let pred = z_s.matmul(h.as_tensor()).unwrap();
        (pred - &p.y)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .affine(1.0 / N as f64, 0.0)
            .unwrap()
    };
    for _ in 0..STEPS {
        let z_s = p.x.matmul(w.as_tensor()).unwrap();
        let loss = (task(&z_s)
            + projector
                .distill_loss(&z_s, &p.z_t, &distance)
                .unwrap()
                .affine(ALPHA, 0.0)
                .unwrap())
        .unwrap();
        let grads = loss.backward().unwrap();
        for v in &vars {
            let g = grads.get(v.as_tensor()).unwrap();
            let step = (g + v.as_tensor().affine(WEIGHT_DECAY, 0.0).unwrap())
                .unwrap()
                .affine(LR, 0.0)
                .unwrap();
            v.set(&(v.as_tensor() - step).unwrap()).unwrap();
        }
    }
    // Where does the distillation loss alone push the student's weights at the end?
    let z_s = p.x.matmul(w.as_tensor()).unwrap();
    let terms = projector.distill(&z_s, &p.z_t, &distance).unwrap();
    let grads = terms.total.backward().unwrap();
    let gw = grads.get(w.as_tensor()).unwrap();
    let scalar = |t: &Tensor| t.to_scalar::<f64>().unwrap();
    Outcome {
        task_loss: scalar(&task(&z_s)),
        distill_grad_on_q: sq(&gw.i(SHARED..).unwrap()).sqrt(),
        distill_grad_on_s: sq(&gw.i(..SHARED).unwrap()).sqrt(),
        spectral: scalar(terms.spectral.as_ref().unwrap()),
        transfer: scalar(terms.transfer.as_ref().unwrap()),
        distill: scalar(&terms.total),
        projector,
        w: w.as_tensor().copy().unwrap(),
    }
}

fn q_fraction(w: &Tensor) -> f64 {
    sq(&w.i(SHARED..).unwrap()) / sq(w)
}

#[test]
fn inverted_projector_discards_task_specific_directions_standard_pulls_the_student_to_them() {
    let inv = train(Direction::Inverted);
    let std = train(Direction::Standard);
    let inv_spec = projector_spectrum(&inv.projector).unwrap();
    let std_spec = projector_spectrum(&std.projector).unwrap();
    let show = |name: &str, o: &Outcome, s: &crosskd_losses::Spectrum| {
        println!(
            "{name:>8}: P singular values {:?}\n          stable rank {:.3}, effective rank {:.3}; task loss {:.2e}; \
             distill {:.3e} = transfer {:.3e} + spectral {:.3e}\n          student weight energy on task-specific inputs \
             {:.4}; |∂distill/∂W| on shared rows {:.2e}, on task-specific rows {:.2e}",
            s.singular_values.iter().map(|v| format!("{v:.2e}")).collect::<Vec<_>>(),
            s.stable_rank,
            s.effective_rank,
            o.task_loss,
            o.distill,
            o.transfer,
            o.spectral,
            q_fraction(&o.w),
            o.distill_grad_on_s,
            o.distill_grad_on_q,
        );
    };
    show("inverted", &inv, &inv_spec);
    show("standard", &std, &std_spec);

    // Inverted: low rank, singular values beyond the shared rank ≤ 1% of the largest.
    let s = &inv_spec.singular_values;
    for (i, v) in s.iter().enumerate().skip(SHARED) {
        assert!(
            *v <= 0.01 * s[0],
            "inverted σ_{} = {v:e} > 1% of σ_1 = {:e}",
            i + 1,
            s[0]
        );
    }
    // ... and the student has dropped the task-specific inputs while solving its task.
    assert!(
        q_fraction(&inv.w) < 0.01,
        "inverted student keeps {:.3} of its weight energy on Q",
        q_fraction(&inv.w)
    );
    assert!(inv.task_loss < 0.05);

    // Standard: the teacher's task-specific energy stays outside the student's span, and the
    // distillation gradient keeps pulling the student's Q weights.
    assert!(
        std.spectral > 0.1 * std.distill.max(1e-12) && std.spectral > 0.05,
        "standard residual {:e}",
        std.spectral
    );
    assert!(
        q_fraction(&std.w) > 0.2,
        "standard student has only {:.3} of its weights on Q",
        q_fraction(&std.w)
    );
    assert!(
        std.distill_grad_on_q > 20.0 * inv.distill_grad_on_q.max(1e-12),
        "standard pull on Q {:e} vs inverted {:e}",
        std.distill_grad_on_q,
        inv.distill_grad_on_q
    );
    // The standard projector stays high-rank: it needs every teacher direction.
    assert!(std_spec.singular_values[SHARED] > 0.1 * std_spec.singular_values[0]);
}
