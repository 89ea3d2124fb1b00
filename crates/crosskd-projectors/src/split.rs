//! The transfer/spectral split of a squared-L2 distillation loss, cheap enough to log every step.
//!
//! For a comparison `Δ = A − B`, where `B` is the projected side computed from the rows of `X`
//! (`B = X P`, possibly with a bias or batch norm, in which case `X` carries a column of ones),
//! Pythagoras in the row space splits
//!
//! `‖Δ‖² = ‖Π_X Δ‖² + ‖(I − Π_X) Δ‖²`,
//!
//! `Π_X` the orthogonal projection onto the column span of `X`. Since `B` lies in that span,
//! `(I − Π_X) Δ = (I − Π_X) A`: the second (spectral) term does not depend on the projector.
//!
//! Only `k×k` and `k×m` products of `X` are needed (`k` = columns of `X`, `m` = columns of `Δ`):
//! `‖Π_X Δ‖² = tr(Cᵀ G⁺ C)` with `G = XᵀX`, `C = XᵀΔ`, evaluated with a pivoted Cholesky
//! factorisation of `G` that drops directions whose pivot is below [`GRAM_RANK_TOL`] times the
//! largest diagonal entry (numerically rank-deficient features). The reference split of
//! `crosskd-losses` (thin SVD on the host) is the check of this one.

use candle_core::{DType, Tensor};

use crate::Result;

/// Relative pivot threshold of the Gram factorisation (`σ² ≤ 1e-12·max` counts as zero, i.e.
/// singular values below 1e-6 of the largest column norm).
pub const GRAM_RANK_TOL: f64 = 1e-12;

/// `(‖Π_X Δ‖², ‖Δ‖²)` in f64, for row matrices `x: (n, k)` and `delta: (n, m)` (both detached).
pub fn projected_energy(x: &Tensor, delta: &Tensor) -> Result<(f64, f64)> {
    let x = x.detach().to_dtype(DType::F64)?;
    let delta = delta.detach().to_dtype(DType::F64)?;
    let g = x.t()?.matmul(&x)?.to_vec2::<f64>()?;
    let c = x.t()?.matmul(&delta)?.to_vec2::<f64>()?;
    let total = delta.sqr()?.sum_all()?.to_scalar::<f64>()?;
    Ok((inside_energy(&g, &c), total))
}

/// `tr(Cᵀ G⁺ C)` for symmetric positive semi-definite `g` (k×k) and `c` (k×m), by pivoted Cholesky.
// Index arithmetic on small dense matrices reads more clearly than iterator chains here.
#[allow(clippy::needless_range_loop)]
pub fn inside_energy(g: &[Vec<f64>], c: &[Vec<f64>]) -> f64 {
    let k = g.len();
    let max_diag = (0..k).map(|i| g[i][i]).fold(0.0, f64::max);
    if k == 0 || max_diag <= 0.0 {
        return 0.0;
    }
    // Residual Gram after removing chosen pivots; `l_cols[j]` is column j of L over all k indices.
    let mut residual: Vec<Vec<f64>> = g.to_vec();
    let mut chosen: Vec<usize> = Vec::new();
    let mut l_cols: Vec<Vec<f64>> = Vec::new();
    let mut used = vec![false; k];
    loop {
        let pivot = (0..k)
            .filter(|&i| !used[i])
            .max_by(|&a, &b| residual[a][a].total_cmp(&residual[b][b]));
        let Some(p) = pivot else { break };
        let d = residual[p][p];
        if d <= GRAM_RANK_TOL * max_diag {
            break;
        }
        used[p] = true;
        let root = d.sqrt();
        let col: Vec<f64> = (0..k)
            .map(|i| {
                if used[i] && i != p {
                    0.0
                } else {
                    residual[i][p] / root
                }
            })
            .collect();
        // Rows and columns of chosen pivots are never read again (their `col` entries are 0), so
        // only the rest is updated: the same values, a fraction of the work.
        let open: Vec<usize> = (0..k).filter(|&i| !used[i]).collect();
        for &i in &open {
            let row = &mut residual[i];
            for &j in &open {
                row[j] -= col[i] * col[j];
            }
        }
        chosen.push(p);
        l_cols.push(col);
    }
    // G restricted to the chosen pivots is L_r L_rᵀ with L_r[a][b] = l_cols[b][chosen[a]]
    // (lower triangular in pivot order); solve L_r Y = C_chosen by forward substitution.
    let r = chosen.len();
    let l_r: Vec<Vec<f64>> = chosen
        .iter()
        .map(|&row| l_cols.iter().map(|col| col[row]).collect())
        .collect();
    // All m columns at once, row by row: each column sees the same operations in the same order
    // as alone, but the innermost loop runs across independent columns instead of down one
    // column's dependent chain of subtractions.
    let m = c.first().map_or(0, Vec::len);
    let mut y = vec![0.0; r * m];
    for a in 0..r {
        let (solved, rest) = y.split_at_mut(a * m);
        let row = &mut rest[..m];
        row.copy_from_slice(&c[chosen[a]]);
        for (b, l) in l_r[a].iter().enumerate().take(a) {
            for (s, yb) in row.iter_mut().zip(&solved[b * m..(b + 1) * m]) {
                *s -= l * yb;
            }
        }
        let pivot = l_r[a][a];
        for s in row.iter_mut() {
            *s /= pivot;
        }
    }
    let mut energy = 0.0;
    for col in 0..m {
        for a in 0..r {
            energy += y[a * m + col] * y[a * m + col];
        }
    }
    energy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orthogonal::gaussian;

    /// Least squares by normal equations on a full-rank X: ‖Π Δ‖² = ‖X (XᵀX)⁻¹ XᵀΔ‖², checked
    /// against an explicit Gram–Schmidt basis.
    #[allow(clippy::needless_range_loop)]
    fn gram_schmidt_energy(x: &Tensor, delta: &Tensor) -> f64 {
        let xv = x.to_vec2::<f64>().unwrap();
        let dv = delta.to_vec2::<f64>().unwrap();
        let (n, k) = (xv.len(), xv[0].len());
        let mut basis: Vec<Vec<f64>> = Vec::new();
        for j in 0..k {
            let mut v: Vec<f64> = (0..n).map(|i| xv[i][j]).collect();
            for _ in 0..2 {
                for q in &basis {
                    let dot: f64 = (0..n).map(|i| q[i] * v[i]).sum();
                    for i in 0..n {
                        v[i] -= dot * q[i];
                    }
                }
            }
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm > 1e-8 {
                basis.push(v.iter().map(|a| a / norm).collect());
            }
        }
        let m = dv[0].len();
        let mut e = 0.0;
        for q in &basis {
            for col in 0..m {
                let dot: f64 = (0..n).map(|i| q[i] * dv[i][col]).sum();
                e += dot * dot;
            }
        }
        e
    }

    #[test]
    fn matches_an_explicit_orthonormal_basis_full_and_rank_deficient() {
        let x_full = gaussian(20, 5, 1);
        // Rank 3 with 5 columns: the last two columns are combinations of the first three.
        let base = gaussian(20, 3, 2);
        let mix = gaussian(3, 2, 3);
        let x_deficient = Tensor::cat(&[&base, &base.matmul(&mix).unwrap()], 1).unwrap();
        let delta = gaussian(20, 4, 4);
        for x in [x_full, x_deficient] {
            let (inside, total) = projected_energy(&x, &delta).unwrap();
            let expect = gram_schmidt_energy(&x, &delta);
            assert!(
                (inside - expect).abs() <= 1e-9 * total,
                "{inside} vs {expect}"
            );
            assert!(inside < total);
        }
    }

    #[test]
    fn delta_inside_the_span_has_no_outside_energy() {
        let x = gaussian(15, 4, 5);
        let delta = x.matmul(&gaussian(4, 3, 6)).unwrap();
        let (inside, total) = projected_energy(&x, &delta).unwrap();
        assert!((inside - total).abs() <= 1e-9 * total);
    }
}
