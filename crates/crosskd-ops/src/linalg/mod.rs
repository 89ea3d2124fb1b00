//! Small dense linear algebra for spectral analysis: symmetric eigendecomposition, thin SVD,
//! power iteration, orthonormal bases and projections onto them, and rank summaries of spectra.
//!
//! candle 0.11.1 has no linear algebra, and LAPACK is not an option for a pure-Rust build, so the
//! routines here run on the host in f64 whatever the input: tensors (f32 or f64, any device) are
//! copied to the CPU, decomposed, and the results returned in the input's dtype on the input's
//! device. The decompositions are constants: no gradient flows through them (they are meant for
//! analysis and for projections computed "without gradient", see `docs/method.md`). The
//! projections [`project_onto_span`] and [`project_onto_complement`] are ordinary candle matmuls
//! and do pass gradients to the projected tensor.
//!
//! Algorithms (see the submodules for the reasoning):
//! - [`sym_eig`]: Householder tridiagonalisation + implicit QR with Wilkinson shifts, `O(d³)`;
//!   d = 1024 takes a few seconds in an optimised build.
//! - [`svd`]: Householder QR + one-sided Jacobi on the triangular factor: small singular values
//!   keep their relative accuracy (no Gram matrix is formed).
//! - [`power_iteration`]: the largest singular value only, from a fixed pseudo-random start.
//!
//! Every routine has a host-side twin on row-major `&[f64]` data (`*_host`) for crates that work
//! without tensors.

mod matrix;
mod spectrum;
mod svd;
mod sym_eig;

use candle_core::{DType, Device, Tensor};

pub use matrix::Matrix;
pub use spectrum::{effective_rank, stable_rank};
pub use svd::{
    orthonormal_basis_host, power_iteration_host, singular_values_host, svd_host, SvdHost,
};
pub use sym_eig::{sym_eig_host, SymEigHost, SYMMETRY_TOLERANCE};

use crate::{Error, Result};

/// Symmetry tolerance for f32 inputs (relative to `max |a_ij|`): a Gram matrix computed in f32
/// may be asymmetric by a few ulps of its largest entry.
const SYMMETRY_TOLERANCE_F32: f64 = 1e-4;

/// Eigendecomposition of a symmetric matrix as tensors: `A = V diag(values) Vᵀ`.
#[derive(Debug, Clone)]
pub struct SymEig {
    /// Eigenvalues, shape `(d)`, descending.
    pub values: Tensor,
    /// Eigenvectors, shape `(d, d)`; column `i` belongs to `values[i]`; orthonormal.
    pub vectors: Tensor,
}

/// Thin SVD as tensors: `X = U diag(s) Vᵀ`.
#[derive(Debug, Clone)]
pub struct Svd {
    /// Left singular vectors, shape `(n, r)`, orthonormal columns, `r = min(n, d)`.
    pub u: Tensor,
    /// Singular values, shape `(r)`, descending, ≥ 0.
    pub s: Tensor,
    /// Transposed right singular vectors, shape `(r, d)`, orthonormal rows.
    pub vt: Tensor,
}

/// Eigendecomposition `A = V diag(λ) Vᵀ` of a symmetric `(d, d)` tensor, eigenvalues descending.
///
/// Asymmetry up to [`SYMMETRY_TOLERANCE`] (f64) or `1e-4` (f32) relative to `max |a_ij|` is
/// treated as rounding and removed by symmetrising; more is an error.
pub fn sym_eig(a: &Tensor) -> Result<SymEig> {
    let m = matrix_from_tensor(a, "sym_eig")?;
    if m.rows != m.cols {
        return Err(Error::Shape {
            op: "sym_eig",
            expected: "a square (d, d) matrix".into(),
            got: a.dims().to_vec(),
        });
    }
    let tolerance = if a.dtype() == DType::F32 {
        SYMMETRY_TOLERANCE_F32
    } else {
        SYMMETRY_TOLERANCE
    };
    let eig = sym_eig::sym_eig_with_tolerance(&m.data, m.rows, tolerance)?;
    let d = m.rows;
    Ok(SymEig {
        values: host_to_tensor(eig.values, &[d], a)?,
        vectors: matrix_to_tensor(&eig.vectors, a.dtype(), a.device())?,
    })
}

/// Thin SVD `X = U diag(s) Vᵀ` of an `(n, d)` tensor (see [`svd_host`]).
pub fn svd(x: &Tensor) -> Result<Svd> {
    let m = matrix_from_tensor(x, "svd")?;
    let out = svd_host(&m.data, m.rows, m.cols)?;
    let r = out.s.len();
    Ok(Svd {
        u: matrix_to_tensor(&out.u, x.dtype(), x.device())?,
        s: host_to_tensor(out.s, &[r], x)?,
        vt: matrix_to_tensor(&out.vt, x.dtype(), x.device())?,
    })
}

/// Singular values of an `(n, d)` tensor, shape `(min(n, d))`, descending.
pub fn singular_values(x: &Tensor) -> Result<Tensor> {
    let m = matrix_from_tensor(x, "singular_values")?;
    let s = singular_values_host(&m.data, m.rows, m.cols)?;
    let r = s.len();
    host_to_tensor(s, &[r], x)
}

/// The largest singular value of an `(n, d)` tensor by power iteration (see
/// [`power_iteration_host`]); computed in f64 whatever the input dtype.
pub fn power_iteration(x: &Tensor, max_iters: usize, tol: f64) -> Result<f64> {
    let m = matrix_from_tensor(x, "power_iteration")?;
    power_iteration_host(&m.data, m.rows, m.cols, max_iters, tol)
}

/// An orthonormal basis of the column span of an `(n, d)` tensor, shape `(n, k)`: the left
/// singular vectors with `σ_i > rel_tol · σ_max` (see [`orthonormal_basis_host`]).
pub fn orthonormal_basis(x: &Tensor, rel_tol: f64) -> Result<Tensor> {
    let m = matrix_from_tensor(x, "orthonormal_basis")?;
    let basis = orthonormal_basis_host(&m.data, m.rows, m.cols, rel_tol)?;
    matrix_to_tensor(&basis, x.dtype(), x.device())
}

/// `Π Z = B (Bᵀ Z)`: the projection of the columns of `z` `(n, m)` onto the span of the
/// orthonormal columns of `basis` `(n, k)` (e.g. from [`orthonormal_basis`] or [`Svd::u`]).
///
/// The basis is treated as a constant (detached, cast to `z`'s dtype); the gradient with respect
/// to `z` is `Π` applied to the upstream gradient. The basis is not checked for orthonormality.
pub fn project_onto_span(basis: &Tensor, z: &Tensor) -> Result<Tensor> {
    let basis = projection_basis(basis, z, "project_onto_span")?;
    if basis.dim(1)? == 0 {
        return Ok(z.zeros_like()?);
    }
    Ok(basis.matmul(&basis.t()?.matmul(z)?)?)
}

/// `(I − Π) Z = Z − B (Bᵀ Z)`: the part of the columns of `z` `(n, m)` orthogonal to the span of
/// the orthonormal columns of `basis` `(n, k)`. Differentiable in `z`, like [`project_onto_span`].
pub fn project_onto_complement(basis: &Tensor, z: &Tensor) -> Result<Tensor> {
    let inside = project_onto_span(basis, z)?;
    Ok((z - inside)?)
}

fn projection_basis(basis: &Tensor, z: &Tensor, op: &'static str) -> Result<Tensor> {
    let (b_dims, z_dims) = (basis.dims(), z.dims());
    if b_dims.len() != 2 || z_dims.len() != 2 || b_dims[0] != z_dims[0] {
        return Err(Error::Shape {
            op,
            expected: format!(
                "basis (n, k) and z (n, m) with the same n; z has shape {z_dims:?}, basis"
            ),
            got: b_dims.to_vec(),
        });
    }
    Ok(basis.detach().to_dtype(z.dtype())?.to_device(z.device())?)
}

/// Copies a 2-D f32 or f64 tensor (any device, any layout) into a host [`Matrix`] of f64.
pub fn matrix_from_tensor(x: &Tensor, op: &'static str) -> Result<Matrix> {
    let dims = x.dims();
    if dims.len() != 2 {
        return Err(Error::Shape {
            op,
            expected: "a 2-D (rows, cols) matrix".into(),
            got: dims.to_vec(),
        });
    }
    if !matches!(x.dtype(), DType::F32 | DType::F64) {
        return Err(Error::InvalidArgument {
            op,
            message: format!("expected an f32 or f64 tensor, got {:?}", x.dtype()),
        });
    }
    let data = x
        .detach()
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    Matrix::from_row_major(data, dims[0], dims[1])
}

/// Builds a `(rows, cols)` tensor of `dtype` on `device` from a host [`Matrix`].
pub fn matrix_to_tensor(m: &Matrix, dtype: DType, device: &Device) -> Result<Tensor> {
    Ok(
        Tensor::from_vec(m.data.clone(), (m.rows, m.cols), &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)?,
    )
}

fn host_to_tensor(data: Vec<f64>, shape: &[usize], like: &Tensor) -> Result<Tensor> {
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?
        .to_dtype(like.dtype())?
        .to_device(like.device())?)
}
