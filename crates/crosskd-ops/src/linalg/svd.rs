//! Thin singular value decomposition on the host: Householder QR followed by one-sided
//! (Hestenes) Jacobi on the triangular factor.
//!
//! Why this route: one-sided Jacobi orthogonalises the columns of the matrix itself and never
//! forms the Gram matrix `AᵀA`, so small singular values keep their relative accuracy (the Gram
//! route squares the condition number: singular values below about `sqrt(ε)·σ_max` lose all their
//! digits). Applying Jacobi to the `k × k` factor `R` of `A = QR` (k = min(n, d)) instead of to the
//! `n × k` matrix makes each sweep cost `O(k³)` instead of `O(n k²)`, which matters for tall
//! feature matrices (n = batch × positions ≫ d). Cost: `2nk²` for QR, about `3k³` per Jacobi sweep
//! (typically 6–10 sweeps), `4nk²` to form `U`. A wide matrix is decomposed through its transpose.

use rand::{Rng, SeedableRng};

use super::matrix::{check_finite_matrix, dot, Matrix};
use crate::{Error, Result};

/// Largest number of Jacobi sweeps before giving up; convergence is quadratic once the columns
/// are nearly orthogonal, so well-behaved inputs need fewer than 15.
const MAX_SWEEPS: usize = 80;

/// Thin SVD `A = U diag(s) Vᵀ` of an `n × d` matrix, on the host.
#[derive(Debug, Clone)]
pub struct SvdHost {
    /// `n × r` left singular vectors, orthonormal columns (`r = min(n, d)`).
    pub u: Matrix,
    /// The `r` singular values, descending, all ≥ 0.
    pub s: Vec<f64>,
    /// `r × d` transposed right singular vectors, orthonormal rows.
    pub vt: Matrix,
}

/// Thin SVD of the `n × d` row-major matrix `data`: `A = U diag(s) Vᵀ` with `U` `n × r`,
/// `Vᵀ` `r × d`, `r = min(n, d)`, singular values descending.
///
/// `U` and `V` have orthonormal columns even when `A` is rank-deficient: the left singular
/// vectors of (numerically) zero singular values — those at most `r·ε·σ_max` — are an
/// orthonormal completion of the others inside the span of the QR factor `Q`.
pub fn svd_host(data: &[f64], n: usize, d: usize) -> Result<SvdHost> {
    check_finite_matrix("svd", data, n, d)?;
    let r = n.min(d);
    if r == 0 {
        return Ok(SvdHost {
            u: Matrix::zeros(n, 0),
            s: Vec::new(),
            vt: Matrix::zeros(0, d),
        });
    }
    let transposed = n < d;
    let tall = TallSvd::compute(&tall_columns(data, n, d), n.max(d), r, true)?;
    let (left, right) = (tall.u_columns, tall.v_columns);
    // For a wide matrix we decomposed Aᵀ = U' S V'ᵀ, so A = V' S U'ᵀ.
    let (u_cols, v_cols) = if transposed {
        (right, left)
    } else {
        (left, right)
    };
    let mut u = Matrix::zeros(n, r);
    for (j, col) in u_cols.iter().enumerate() {
        for (i, x) in col.iter().enumerate() {
            u.data[i * r + j] = *x;
        }
    }
    let vt = Matrix::from_row_major(v_cols.concat(), r, d)?;
    Ok(SvdHost { u, s: tall.s, vt })
}

/// The singular values of the `n × d` row-major matrix `data`, descending (`min(n, d)` of them).
/// Cheaper than [`svd_host`]: no singular vectors are accumulated.
pub fn singular_values_host(data: &[f64], n: usize, d: usize) -> Result<Vec<f64>> {
    check_finite_matrix("singular_values", data, n, d)?;
    let r = n.min(d);
    if r == 0 {
        return Ok(Vec::new());
    }
    Ok(TallSvd::compute(&tall_columns(data, n, d), n.max(d), r, false)?.s)
}

/// An orthonormal basis (`n × k`, as columns) of the column span of the `n × d` row-major matrix
/// `data`: the left singular vectors whose singular value exceeds `rel_tol · σ_max`.
///
/// `rel_tol` must lie in `[0, 1)`. The zero matrix gives `k = 0`. With `rel_tol = 0` every nonzero
/// singular value counts, rounding noise included; `1e-10` is a reasonable choice for f64 data and
/// `1e-5` for data that went through f32.
pub fn orthonormal_basis_host(data: &[f64], n: usize, d: usize, rel_tol: f64) -> Result<Matrix> {
    if !(0.0..1.0).contains(&rel_tol) {
        return Err(Error::InvalidArgument {
            op: "orthonormal_basis",
            message: format!("rel_tol must lie in [0, 1), got {rel_tol}"),
        });
    }
    let svd = svd_host(data, n, d)?;
    let sigma_max = svd.s.first().copied().unwrap_or(0.0);
    let rank = svd
        .s
        .iter()
        .take_while(|&&s| s > rel_tol * sigma_max && s > 0.0)
        .count();
    let r = svd.s.len();
    let mut basis = Matrix::zeros(n, rank);
    for i in 0..n {
        basis.data[i * rank..(i + 1) * rank].copy_from_slice(&svd.u.data[i * r..i * r + rank]);
    }
    Ok(basis)
}

/// The largest singular value of the `n × d` row-major matrix `data` by power iteration on
/// `AᵀA`: `v ← AᵀA v / ‖AᵀA v‖`, estimate `σ = ‖A v‖`, stopping when two successive estimates
/// differ by at most `tol · σ`.
///
/// The start vector is a fixed pseudo-random unit vector (ChaCha8, seed 0), so results are
/// reproducible and the start is almost surely not orthogonal to the top singular vector. The
/// zero matrix gives 0. Not converging within `max_iters` is an error.
pub fn power_iteration_host(
    data: &[f64],
    n: usize,
    d: usize,
    max_iters: usize,
    tol: f64,
) -> Result<f64> {
    const OP: &str = "power_iteration";
    check_finite_matrix(OP, data, n, d)?;
    if !(tol.is_finite() && tol > 0.0) {
        return Err(Error::InvalidArgument {
            op: OP,
            message: format!("tol must be finite and > 0, got {tol}"),
        });
    }
    if n == 0 || d == 0 {
        return Ok(0.0);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut v: Vec<f64> = (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let norm = dot(&v, &v).sqrt();
    v.iter_mut().for_each(|x| *x /= norm);

    let mut previous = f64::NAN;
    let mut av = vec![0.0; n];
    for iteration in 1..=max_iters {
        for (i, out) in av.iter_mut().enumerate() {
            *out = dot(&data[i * d..(i + 1) * d], &v);
        }
        let sigma = dot(&av, &av).sqrt();
        if sigma == 0.0 {
            return Ok(0.0);
        }
        if (sigma - previous).abs() <= tol * sigma {
            return Ok(sigma);
        }
        if iteration == max_iters {
            return Err(Error::NoConvergence {
                op: OP,
                iterations: iteration,
                residual: (sigma - previous).abs() / sigma,
            });
        }
        previous = sigma;
        v.iter_mut().for_each(|x| *x = 0.0);
        for (i, &a) in av.iter().enumerate() {
            for (vj, xij) in v.iter_mut().zip(&data[i * d..(i + 1) * d]) {
                *vj += a * xij;
            }
        }
        let norm = dot(&v, &v).sqrt();
        if norm == 0.0 {
            return Ok(0.0);
        }
        v.iter_mut().for_each(|x| *x /= norm);
    }
    Err(Error::NoConvergence {
        op: OP,
        iterations: max_iters,
        residual: f64::NAN,
    })
}

/// The columns of the tall orientation of `A` (`A` itself when `n ≥ d`, else `Aᵀ`), each of length
/// `max(n, d)`, concatenated.
fn tall_columns(data: &[f64], n: usize, d: usize) -> Vec<f64> {
    if n < d {
        // Columns of Aᵀ are the rows of A.
        return data.to_vec();
    }
    let mut cols = vec![0.0; n * d];
    for i in 0..n {
        for j in 0..d {
            cols[j * n + i] = data[i * d + j];
        }
    }
    cols
}

/// SVD of a tall `m × k` matrix (m ≥ k) given by its columns.
struct TallSvd {
    /// `k` left singular vectors of length `m` (empty when not requested).
    u_columns: Vec<Vec<f64>>,
    s: Vec<f64>,
    /// `k` right singular vectors of length `k` (empty when not requested).
    v_columns: Vec<Vec<f64>>,
}

impl TallSvd {
    fn compute(columns: &[f64], m: usize, k: usize, want_vectors: bool) -> Result<Self> {
        let mut cols: Vec<Vec<f64>> = columns.chunks(m).map(<[f64]>::to_vec).collect();
        let reflectors = householder_qr(&mut cols, m, k);
        // R's columns: the first k entries of each reduced column (zeros below the diagonal).
        let mut r_cols: Vec<Vec<f64>> = cols.iter().map(|c| c[..k].to_vec()).collect();
        let mut v_cols: Vec<Vec<f64>> = if want_vectors {
            (0..k)
                .map(|j| {
                    let mut e = vec![0.0; k];
                    e[j] = 1.0;
                    e
                })
                .collect()
        } else {
            Vec::new()
        };
        one_sided_jacobi(&mut r_cols, &mut v_cols)?;

        let norms: Vec<f64> = r_cols.iter().map(|c| dot(c, c).sqrt()).collect();
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&i, &j| norms[j].total_cmp(&norms[i]));
        let s: Vec<f64> = order.iter().map(|&i| norms[i]).collect();
        if !want_vectors {
            return Ok(Self {
                u_columns: Vec::new(),
                s,
                v_columns: Vec::new(),
            });
        }
        let v_columns = order.iter().map(|&i| v_cols[i].clone()).collect();

        // Left singular vectors of R: normalised columns, except for numerically zero singular
        // values, whose direction is noise; those are replaced by an orthonormal completion.
        let zero_threshold = s[0] * k as f64 * f64::EPSILON;
        let mut u_small: Vec<Vec<f64>> = Vec::with_capacity(k);
        for (&i, &sigma) in order.iter().zip(&s) {
            if sigma > zero_threshold && sigma > 0.0 {
                u_small.push(r_cols[i].iter().map(|x| x / sigma).collect());
            }
        }
        let completion = orthonormal_complement(&u_small, k);
        u_small.extend(completion);

        // U = Q [U_R; 0] = H_0 H_1 ⋯ H_{k−1} [U_R; 0].
        let u_columns = u_small
            .into_iter()
            .map(|small| {
                let mut u = small;
                u.resize(m, 0.0);
                for refl in reflectors.iter().rev().flatten() {
                    refl.apply(&mut u);
                }
                u
            })
            .collect();
        Ok(Self {
            u_columns,
            s,
            v_columns,
        })
    }
}

/// `H = I − τ v vᵀ` acting on entries `offset..`.
struct Reflector {
    offset: usize,
    v: Vec<f64>,
    tau: f64,
}

impl Reflector {
    /// Builds the reflector that maps `x` onto a multiple of `e_0` and returns it with that
    /// multiple, or `None` when `x` is already zero.
    fn annihilating(x: &[f64], offset: usize) -> Option<(Self, f64)> {
        let alpha = dot(x, x).sqrt();
        if alpha == 0.0 {
            return None;
        }
        let signed_alpha = if x[0] >= 0.0 { alpha } else { -alpha };
        let mut v = x.to_vec();
        v[0] += signed_alpha;
        let tau = 2.0 / dot(&v, &v);
        Some((Self { offset, v, tau }, -signed_alpha))
    }

    fn apply(&self, x: &mut [f64]) {
        let tail = &mut x[self.offset..];
        let scale = self.tau * dot(tail, &self.v);
        if scale != 0.0 {
            for (t, vi) in tail.iter_mut().zip(&self.v) {
                *t -= scale * vi;
            }
        }
    }
}

/// Householder QR of the `m × k` matrix given by `cols` (m ≥ k), in place: afterwards the
/// columns hold `R` in their first `k` rows and zeros below. Returns `H_0 … H_{k−1}` (`None` where
/// a column was already reduced), with `Q = H_0 H_1 ⋯ H_{k−1}`.
fn householder_qr(cols: &mut [Vec<f64>], m: usize, k: usize) -> Vec<Option<Reflector>> {
    let mut reflectors = Vec::with_capacity(k);
    for j in 0..k {
        let (head, rest) = cols.split_at_mut(j + 1);
        let col = &mut head[j];
        let Some((refl, diagonal)) = Reflector::annihilating(&col[j..m], j) else {
            reflectors.push(None);
            continue;
        };
        col[j] = diagonal;
        col[j + 1..].iter_mut().for_each(|x| *x = 0.0);
        for other in rest.iter_mut() {
            refl.apply(other);
        }
        reflectors.push(Some(refl));
    }
    reflectors
}

/// One-sided Jacobi: rotates pairs of columns of `a` until every pair is orthogonal to within
/// `sqrt(rows)·ε` relative to the product of their norms; the same rotations are applied to
/// `v` (skipped when `v` is empty), so that `A_in · V = A_out`.
fn one_sided_jacobi(a: &mut [Vec<f64>], v: &mut [Vec<f64>]) -> Result<()> {
    let k = a.len();
    let rows = a.first().map_or(0, Vec::len);
    let tol = (rows as f64).sqrt().max(1.0) * f64::EPSILON;
    let mut worst = 0.0;
    for _ in 0..MAX_SWEEPS {
        let mut norms: Vec<f64> = a.iter().map(|c| dot(c, c)).collect();
        let mut rotated = false;
        worst = 0.0_f64;
        for i in 0..k {
            for j in i + 1..k {
                let (alpha, beta) = (norms[i], norms[j]);
                if alpha == 0.0 || beta == 0.0 {
                    continue;
                }
                let gamma = dot(&a[i], &a[j]);
                let off = gamma.abs() / (alpha.sqrt() * beta.sqrt());
                worst = worst.max(off);
                if off <= tol {
                    continue;
                }
                rotated = true;
                // The rotation that diagonalises [[α, γ], [γ, β]]: t = tan θ is the smaller root
                // of t² + 2ζt − 1 = 0, which keeps |θ| ≤ π/4 (needed for convergence).
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + zeta.hypot(1.0));
                let c = 1.0 / t.hypot(1.0);
                let s = c * t;
                rotate_pair(a, i, j, c, s);
                if !v.is_empty() {
                    rotate_pair(v, i, j, c, s);
                }
                norms[i] = alpha - t * gamma;
                norms[j] = beta + t * gamma;
            }
        }
        if !rotated {
            return Ok(());
        }
    }
    Err(Error::NoConvergence {
        op: "svd",
        iterations: MAX_SWEEPS,
        residual: worst,
    })
}

/// `(x_i, x_j) ← (c x_i − s x_j, s x_i + c x_j)` for columns `i < j`.
fn rotate_pair(cols: &mut [Vec<f64>], i: usize, j: usize, c: f64, s: f64) {
    let (head, tail) = cols.split_at_mut(j);
    for (p, q) in head[i].iter_mut().zip(tail[0].iter_mut()) {
        let (xp, xq) = (*p, *q);
        *p = c * xp - s * xq;
        *q = s * xp + c * xq;
    }
}

/// Orthonormal vectors completing the orthonormal `basis` (vectors of length `k`) to a basis of
/// `R^k`: the last `k − p` columns of the Householder `Q` of the `k × p` matrix `[basis]`.
fn orthonormal_complement(basis: &[Vec<f64>], k: usize) -> Vec<Vec<f64>> {
    let p = basis.len();
    let mut cols: Vec<Vec<f64>> = basis.to_vec();
    let reflectors = householder_qr(&mut cols, k, p);
    (p..k)
        .map(|j| {
            let mut e = vec![0.0; k];
            e[j] = 1.0;
            for refl in reflectors.iter().rev().flatten() {
                refl.apply(&mut e);
            }
            e
        })
        .collect()
}
