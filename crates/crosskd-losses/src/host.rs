//! Host-side (f64, no gradient) helpers shared by the decomposition, the regularisers and the
//! diagnostics: matrices from tensors, thin SVDs truncated to the numerical rank, projections.

use candle_core::{DType, Device, Tensor};
use crosskd_ops::linalg::{matrix_from_tensor, svd_host, sym_eig_host, Matrix};

use crate::Result;

/// Singular values below this fraction of the largest count as zero when a span is needed.
pub const RANK_REL_TOL: f64 = 1e-10;

/// `rows × cols` f64 host copy of a 2-D tensor (detached).
pub fn host_matrix(x: &Tensor, op: &'static str) -> Result<Matrix> {
    Ok(matrix_from_tensor(x, op)?)
}

/// A thin SVD truncated to the numerical rank: `X ≈ U diag(s) Vᵀ` with `s_i > RANK_REL_TOL·s_0`.
#[derive(Debug, Clone)]
pub struct RankSvd {
    /// `n × r`, orthonormal columns spanning the column space of `X`.
    pub u: Matrix,
    /// `r` singular values, descending.
    pub s: Vec<f64>,
    /// `r × d`, orthonormal rows.
    pub vt: Matrix,
}

/// Thin SVD of `x` truncated to its numerical rank.
pub fn rank_svd(x: &Matrix) -> Result<RankSvd> {
    let full = svd_host(&x.data, x.rows, x.cols)?;
    let s_max = full.s.first().copied().unwrap_or(0.0);
    let r = full
        .s
        .iter()
        .take_while(|&&s| s > RANK_REL_TOL * s_max && s > 0.0)
        .count();
    let k = full.s.len();
    let mut u = Matrix::zeros(x.rows, r);
    for i in 0..x.rows {
        u.data[i * r..(i + 1) * r].copy_from_slice(&full.u.data[i * k..i * k + r]);
    }
    let vt = Matrix::from_row_major(full.vt.data[..r * x.cols].to_vec(), r, x.cols)?;
    Ok(RankSvd {
        u,
        s: full.s[..r].to_vec(),
        vt,
    })
}

/// `‖A‖²_F`.
pub fn sq_norm(a: &Matrix) -> f64 {
    a.data.iter().map(|v| v * v).sum()
}

/// `A − B` (same shape).
pub fn sub(a: &Matrix, b: &Matrix) -> Matrix {
    let data = a.data.iter().zip(&b.data).map(|(x, y)| x - y).collect();
    Matrix {
        rows: a.rows,
        cols: a.cols,
        data,
    }
}

/// `‖(I − U Uᵀ) Z‖²_F` for orthonormal columns `U` (n × r) and `Z` (n × m).
pub fn outside_energy(u: &Matrix, z: &Matrix) -> Result<f64> {
    let coeff = u.transpose().matmul(z)?;
    let inside = u.matmul(&coeff)?;
    Ok(sq_norm(&sub(z, &inside)))
}

/// Singular values (descending, `min(n, d)` of them) and right singular vectors (as the rows of
/// an `min(n, d) × d` matrix) of the rows of `x` `(n, d)`.
///
/// Cost-driven route: for `n ≤ 2d` the SVD of `x` itself; for taller matrices (dense features,
/// `n = N·H·W ≫ d`) the eigendecomposition of the `d × d` Gram matrix `xᵀx`, formed by a candle
/// matmul in f64 on the tensor's device (accurate for the leading singular vectors, which is all
/// the regularisers and diagnostics use).
pub fn right_singular(x: &Tensor) -> Result<(Vec<f64>, Matrix)> {
    let (n, d) = x.dims2()?;
    if n <= 2 * d {
        let m = host_matrix(x, "right_singular")?;
        let svd = svd_host(&m.data, m.rows, m.cols)?;
        return Ok((svd.s, svd.vt));
    }
    let x64 = x.detach().to_dtype(DType::F64)?;
    let gram = x64
        .t()?
        .matmul(&x64)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let eig = sym_eig_host(&gram, d)?;
    let s = eig.values.iter().map(|l| l.max(0.0).sqrt()).collect();
    Ok((s, eig.vectors.transpose()))
}

/// A host matrix as a constant tensor of `dtype` on `device`.
pub fn to_tensor(m: &Matrix, dtype: DType, device: &Device) -> Result<Tensor> {
    Ok(crosskd_ops::linalg::matrix_to_tensor(m, dtype, device)?)
}
