//! The configuration vocabulary of a projector: direction, form and normalisation.
//!
//! Every enum here (de)serialises as the kebab-case word the trainer's TOML uses, e.g.
//! `direction = "inverted"`, `form = "conv1x1"`, `teacher_norm = "layer-norm"`.

use serde::{Deserialize, Serialize};

/// Which side the projector maps.
///
/// With features as row matrices `Z_s ∈ R^{n×d_s}`, `Z_t ∈ R^{n×d_t}`:
/// - `Standard` (FitNets, student → teacher) compares `Z_s·P` with `Z_t`, `P ∈ R^{d_s×d_t}`;
/// - `Inverted` (teacher → student) compares `Z_s` with `Z_t·P`, `P ∈ R^{d_t×d_s}`.
///
/// Both have `d_s·d_t` weights, so switching costs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Student → teacher: `D(Z_s P, Z_t)`.
    Standard,
    /// Teacher → student: `D(Z_s, Z_t P)`.
    Inverted,
}

impl Direction {
    /// The other direction (for logging the split the other direction would have produced).
    pub fn other(self) -> Self {
        match self {
            Direction::Standard => Direction::Inverted,
            Direction::Inverted => Direction::Standard,
        }
    }

    /// `(input, output)` widths of the projector matrix for these feature widths.
    pub fn projector_shape(self, d_teacher: usize, d_student: usize) -> (usize, usize) {
        match self {
            Direction::Standard => (d_student, d_teacher),
            Direction::Inverted => (d_teacher, d_student),
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Standard => "standard",
            Direction::Inverted => "inverted",
        })
    }
}

/// How the projector is applied and parametrised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProjectorForm {
    /// A linear map on pooled features `(N, C)`; weight `(out, in)` as in `nn.Linear`.
    Linear,
    /// A 1×1 convolution on dense features `(N, C, H, W)`; weight `(out, in, 1, 1)` as in
    /// `nn.Conv2d`. Every position `(n, h, w)` is one row of the feature matrix.
    Conv1x1,
    /// A (semi-)orthogonal linear map (VkD-style), on pooled or dense features; weight `(out, in)`.
    /// Kept orthogonal by [`crate::Projector::retract`], the polar retraction, after every
    /// optimiser step.
    Orthogonal,
}

/// Normalisation of one side of the comparison.
///
/// It acts on the representation that enters the distance: for the projected side that is the
/// *projected* feature (`norm(Z P)`, as in SRD's `BN(P(z_s))`), for the other side the raw
/// feature. All statistics are per batch: the projector exists only during training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeatureNorm {
    /// Identity.
    #[default]
    None,
    /// Batch normalisation without affine parameters: each column of the row matrix is
    /// standardised over the rows, `(z_j − μ_j)/sqrt(σ²_j + ε)` (BatchNorm1d/2d statistics).
    BatchNorm,
    /// Layer normalisation without affine parameters: each row standardised over its channels.
    LayerNorm,
    /// Each row divided by its Euclidean norm, `z / sqrt(‖z‖² + ε²)`.
    L2,
}

/// Options of a projector besides direction and form.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ProjectorConfig {
    /// Whether the projector has a bias (default `false`: the decomposition is then exactly the
    /// one of `docs/method.md`; with a bias the constant column is added to the projected side's
    /// span).
    pub bias: bool,
    /// Normalisation of the student side of the comparison (default none).
    pub student_norm: FeatureNorm,
    /// Normalisation of the teacher side of the comparison (default none).
    pub teacher_norm: FeatureNorm,
    /// Seed of the weight initialisation (ChaCha8; default 0). The trainer derives it from the
    /// run seed so that runs are reproducible.
    pub seed: u64,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            bias: false,
            student_norm: FeatureNorm::None,
            teacher_norm: FeatureNorm::None,
            seed: 0,
        }
    }
}
