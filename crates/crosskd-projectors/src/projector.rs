//! The projector: one learnable matrix, applied to the student (standard) or the teacher
//! (inverted), and the distillation loss it defines.

use candle_core::{Tensor, Var};
use candle_nn::{Init, VarBuilder};
use crosskd_ops::resize::resize_bilinear;

use crate::init::{placed, seeded_normal, seeded_uniform};
use crate::norm::normalise_rows;
use crate::orthogonal::{orthogonality_error, polar_factor};
use crate::rows::feature_rows;
use crate::split::projected_energy;
use crate::{Direction, Error, FeatureNorm, ProjectorConfig, ProjectorForm, Result};

/// A distance between the two compared row matrices, as the projector needs it.
///
/// Implemented by `crosskd_losses::Distance`; kept as a trait here so that the projector does not
/// depend on the loss crate.
pub trait FeatureDistance {
    /// `D(a, b)` for row matrices of equal shape `(n, d)`, a scalar tensor.
    fn distance(&self, a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor>;

    /// `Some(c)` when `D(a, b) = c·‖a − b‖²_F` for `(rows, cols)` inputs (squared-L2 distances,
    /// for which the transfer/spectral split exists), `None` otherwise.
    fn squared_l2_scale(&self, _rows: usize, _cols: usize) -> Option<f64> {
        None
    }
}

/// The result of [`Projector::distill`].
#[derive(Debug, Clone)]
pub struct DistillTerms {
    /// The distillation loss `D(·, ·)`, differentiable w.r.t. the student and the projector.
    pub total: Tensor,
    /// Knowledge-transfer term `c·‖Π_X (A − B)‖²` (no gradient; squared-L2 distances only).
    pub transfer: Option<Tensor>,
    /// Spectral term `c·‖(I − Π_X)(A − B)‖²` (no gradient; squared-L2 distances only). For the
    /// inverted direction with no norm on the teacher side this is `c·‖(I − Π_t) Z_s‖²`, for the
    /// standard direction with no norm on the student side `c·‖(I − Π_s) Z_t‖²`.
    pub spectral: Option<Tensor>,
}

/// The two sides as they enter the distance, plus what the split needs.
#[derive(Debug, Clone)]
pub struct ComparedFeatures {
    /// Student side: `norm_s(Z_s P + b)` (standard) or `norm_s(Z_s)` (inverted), rows `(n, d)`.
    pub student: Tensor,
    /// Teacher side: `norm_t(Z_t)` (standard) or `norm_t(Z_t P + b)` (inverted), detached input.
    pub teacher: Tensor,
    /// Rows of the projected side before projection (detached), with a column of ones appended
    /// when a bias or batch norm makes the projected side affine in them: the span `Π_X`.
    pub projected_input: Tensor,
}

/// A standard or inverted projector (see [`Direction`]).
///
/// Parameters (names under the given `VarBuilder`): `weight` of shape `(out, in)` (linear,
/// orthogonal) or `(out, in, 1, 1)` (1×1 convolution), and `bias` `(out)` when configured, with
/// `(in, out) = (d_s, d_t)` for standard and `(d_t, d_s)` for inverted. Initialisation (seeded by
/// `ProjectorConfig::seed`): PyTorch's `U(−1/√in, 1/√in)` for linear and conv weights and biases;
/// the orthogonal weight starts as the polar factor of a Gaussian matrix.
#[derive(Debug, Clone)]
pub struct Projector {
    direction: Direction,
    form: ProjectorForm,
    config: ProjectorConfig,
    d_teacher: usize,
    d_student: usize,
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Projector {
    /// Builds a projector for teacher width `d_teacher` and student width `d_student`.
    pub fn new(
        direction: Direction,
        form: ProjectorForm,
        d_teacher: usize,
        d_student: usize,
        config: ProjectorConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        if d_teacher == 0 || d_student == 0 {
            return Err(Error::Config(format!(
                "feature widths must be positive, got d_teacher = {d_teacher}, d_student = {d_student}"
            )));
        }
        let (d_in, d_out) = direction.projector_shape(d_teacher, d_student);
        let bound = 1.0 / (d_in as f64).sqrt();
        // Created as zeros, then filled from the seeded RNG (candle's own init is unseeded). Only a
        // freshly created (all-zero) variable is filled: tensors handed in by the VarBuilder (a
        // checkpoint, a test's inputs) are kept. A checkpoint loaded into the VarMap afterwards
        // overwrites the initial values as usual.
        let zeros = Init::Const(0.0);
        let weight_shape: Vec<usize> = if form == ProjectorForm::Conv1x1 {
            vec![d_out, d_in, 1, 1]
        } else {
            vec![d_out, d_in]
        };
        let weight = vb.get_with_hints(weight_shape.as_slice(), "weight", zeros)?;
        if fresh_variable(&weight)? {
            let init = match form {
                ProjectorForm::Orthogonal => {
                    polar_factor(&seeded_normal(&weight_shape, bound, config.seed)?)?
                }
                _ => seeded_uniform(&weight_shape, bound, config.seed)?,
            };
            Var::from_tensor(&weight)?.set(&placed(init, weight.dtype(), weight.device())?)?;
        }
        let bias = if config.bias {
            let b = vb.get_with_hints(d_out, "bias", zeros)?;
            if fresh_variable(&b)? {
                let init = seeded_uniform(&[d_out], bound, config.seed.wrapping_add(1))?;
                Var::from_tensor(&b)?.set(&placed(init, b.dtype(), b.device())?)?;
            }
            Some(b)
        } else {
            None
        };
        Ok(Self {
            direction,
            form,
            config,
            d_teacher,
            d_student,
            weight,
            bias,
        })
    }

    /// The direction.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The form.
    pub fn form(&self) -> ProjectorForm {
        self.form
    }

    /// The options.
    pub fn config(&self) -> ProjectorConfig {
        self.config
    }

    /// Teacher feature width `d_t`.
    pub fn d_teacher(&self) -> usize {
        self.d_teacher
    }

    /// Student feature width `d_s`.
    pub fn d_student(&self) -> usize {
        self.d_student
    }

    /// The stored weight, `(out, in)` or `(out, in, 1, 1)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `(out)`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The projector as the matrix of `docs/method.md`, acting on row features from the right:
    /// `P_st ∈ R^{d_s×d_t}` (standard) or `P_ts ∈ R^{d_t×d_s}` (inverted), i.e. `weightᵀ`.
    /// Differentiable; detach it for diagnostics.
    pub fn weight_matrix(&self) -> Result<Tensor> {
        let (d_in, d_out) = self
            .direction
            .projector_shape(self.d_teacher, self.d_student);
        Ok(self.weight.reshape((d_out, d_in))?.t()?)
    }

    /// `rows·P + b` for rows `(n, in)`.
    pub fn project_rows(&self, rows: &Tensor) -> Result<Tensor> {
        let (d_in, d_out) = self
            .direction
            .projector_shape(self.d_teacher, self.d_student);
        let w = self.weight.reshape((d_out, d_in))?;
        let y = rows.matmul(&w.t()?)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, d_out))?)?,
            None => y,
        })
    }

    /// Puts an orthogonal projector back on the set of (semi-)orthogonal matrices with the polar
    /// retraction ([`crate::orthogonal`]). Call it after every optimiser step; it is a no-op for
    /// the other forms. Errors if the weight is not a trainable variable.
    pub fn retract(&self) -> Result<()> {
        if self.form != ProjectorForm::Orthogonal {
            return Ok(());
        }
        if !self.weight.is_variable() {
            return Err(Error::NotTrainable(
                "retract() needs the orthogonal weight to be a variable (build the projector from a VarMap)".into(),
            ));
        }
        // A copy: for an already orthogonal f64 weight the polar factor shares its storage, which
        // `Var::set` refuses.
        let q = polar_factor(&self.weight)?.copy()?;
        Var::from_tensor(&self.weight)?.set(&q)?;
        Ok(())
    }

    /// `max |G − I|` of the weight's short-side Gram matrix (0 for an exactly orthogonal weight).
    pub fn orthogonality_error(&self) -> Result<f64> {
        let (d_in, d_out) = self
            .direction
            .projector_shape(self.d_teacher, self.d_student);
        orthogonality_error(&self.weight.reshape((d_out, d_in))?)
    }

    fn check_input(&self, x: &Tensor, width: usize, who: &str) -> Result<()> {
        let rank_ok = match self.form {
            ProjectorForm::Linear => x.rank() == 2,
            ProjectorForm::Conv1x1 => x.rank() == 4,
            ProjectorForm::Orthogonal => x.rank() == 2 || x.rank() == 4,
        };
        let expected = match self.form {
            ProjectorForm::Linear => format!("pooled features (N, {width})"),
            ProjectorForm::Conv1x1 => format!("dense features (N, {width}, H, W)"),
            ProjectorForm::Orthogonal => format!("features (N, {width}) or (N, {width}, H, W)"),
        };
        if !rank_ok || x.dim(1)? != width {
            return Err(Error::Shape {
                context: format!("{who} of a {} {:?} projector", self.direction, self.form),
                expected,
                got: x.dims().to_vec(),
            });
        }
        Ok(())
    }

    /// Validates shapes, detaches the teacher, resizes it to the student's spatial size and
    /// returns both sides as they enter the distance.
    ///
    /// `z_s`: `(N, d_s)` or `(N, d_s, H_s, W_s)`; `z_t`: `(N, d_t)` or `(N, d_t, H_t, W_t)`.
    pub fn compare(&self, z_s: &Tensor, z_t: &Tensor) -> Result<ComparedFeatures> {
        self.check_input(z_s, self.d_student, "student feature")?;
        self.check_input(z_t, self.d_teacher, "teacher feature")?;
        let batch_ok = z_s.rank() == z_t.rank() && z_s.dim(0)? == z_t.dim(0)?;
        if !batch_ok {
            return Err(Error::Shape {
                context: format!("teacher feature of a {} projector", self.direction),
                expected: format!(
                    "the student's rank and batch size (student shape {:?})",
                    z_s.dims()
                ),
                got: z_t.dims().to_vec(),
            });
        }
        // The teacher is frozen: nothing upstream of it may receive gradients from this loss.
        let mut z_t = z_t.detach();
        if z_t.rank() == 4 {
            let (_, _, h_s, w_s) = z_s.dims4()?;
            let (_, _, h_t, w_t) = z_t.dims4()?;
            if (h_t, w_t) != (h_s, w_s) {
                z_t = resize_bilinear(&z_t, h_s, w_s)?;
            }
        }
        let s_rows = feature_rows(z_s, "student feature")?;
        let t_rows = feature_rows(&z_t, "teacher feature")?;
        let cfg = self.config;
        let (student, teacher, input, input_norm) = match self.direction {
            Direction::Standard => (
                normalise_rows(&self.project_rows(&s_rows)?, cfg.student_norm)?,
                normalise_rows(&t_rows, cfg.teacher_norm)?,
                s_rows.detach(),
                cfg.student_norm,
            ),
            Direction::Inverted => (
                normalise_rows(&s_rows, cfg.student_norm)?,
                normalise_rows(&self.project_rows(&t_rows)?, cfg.teacher_norm)?,
                t_rows,
                cfg.teacher_norm,
            ),
        };
        let affine = cfg.bias || input_norm == FeatureNorm::BatchNorm;
        let projected_input = if affine {
            let ones = Tensor::ones((input.dim(0)?, 1), input.dtype(), input.device())?;
            Tensor::cat(&[&input, &ones], 1)?
        } else {
            input
        };
        Ok(ComparedFeatures {
            student,
            teacher,
            projected_input,
        })
    }

    /// The distillation loss only (no split): `D(student side, teacher side)`.
    pub fn distill_loss(
        &self,
        z_s: &Tensor,
        z_t: &Tensor,
        distance: &dyn FeatureDistance,
    ) -> Result<Tensor> {
        let c = self.compare(z_s, z_t)?;
        Ok(distance.distance(&c.student, &c.teacher)?)
    }

    /// The distillation loss and, for squared-L2 distances, its transfer/spectral split
    /// (computed without gradient, in f64, by [`crate::split`]).
    pub fn distill(
        &self,
        z_s: &Tensor,
        z_t: &Tensor,
        distance: &dyn FeatureDistance,
    ) -> Result<DistillTerms> {
        let c = self.compare(z_s, z_t)?;
        let total = distance.distance(&c.student, &c.teacher)?;
        let (rows, cols) = c.student.dims2()?;
        let (transfer, spectral) = match distance.squared_l2_scale(rows, cols) {
            Some(scale) => {
                let delta = (c.student.detach() - &c.teacher)?;
                let (inside, all) = projected_energy(&c.projected_input, &delta)?;
                let as_scalar = |v: f64| -> Result<Tensor> {
                    Ok(Tensor::new(v, total.device())?.to_dtype(total.dtype())?)
                };
                (
                    Some(as_scalar(scale * inside)?),
                    Some(as_scalar(scale * (all - inside).max(0.0))?),
                )
            }
            None => (None, None),
        };
        Ok(DistillTerms {
            total,
            transfer,
            spectral,
        })
    }
}

/// A variable that still holds the all-zero placeholder of `Init::Const(0.0)`.
fn fresh_variable(t: &Tensor) -> Result<bool> {
    Ok(t.is_variable()
        && t.abs()?
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?
            == 0.0)
}

/// `‖a − b‖²_F / rows`, the distance of `docs/method.md`; used by this crate's tests and usable as
/// a minimal [`FeatureDistance`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SquaredL2PerRow;

impl FeatureDistance for SquaredL2PerRow {
    fn distance(&self, a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
        let rows = a.dim(0)?;
        (a - b)?.sqr()?.sum_all()?.affine(1.0 / rows as f64, 0.0)
    }

    fn squared_l2_scale(&self, rows: usize, _cols: usize) -> Option<f64> {
        Some(1.0 / rows as f64)
    }
}
