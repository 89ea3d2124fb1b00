//! The transfer/spectral decomposition of the squared-L2 distillation loss (`docs/method.md`),
//! computed on the host in f64 from thin SVDs — the reference that the projector's cheap per-step
//! split (`crosskd_projectors::split`) is tested against.
//!
//! Inverted (`Z_t = U S Vᵀ`, `Π_t = U Uᵀ`):
//! `‖Z_s − Z_t P‖²/n = ‖Uᵀ Z_s − S Vᵀ P‖²/n + ‖(I − Π_t) Z_s‖²/n`.
//!
//! Standard (`Z_s = U S Vᵀ`, `Π_s = U Uᵀ`):
//! `‖Z_s P − Z_t‖²/n = ‖S Vᵀ P − Uᵀ Z_t‖²/n + ‖(I − Π_s) Z_t‖²/n`.
//!
//! The first term is knowledge transfer inside the span of the projected side's batch features
//! and vanishes at the least-squares projector; the second does not depend on `P`. For the
//! inverted direction it acts on the student only (a spectral regulariser); for the standard
//! direction it is the teacher energy the student's features cannot reach, which only the
//! student changing its span can reduce.

use candle_core::Tensor;
use crosskd_projectors::rows::feature_rows;
use crosskd_projectors::Direction;

use crate::host::{host_matrix, outside_energy, rank_svd, sq_norm, sub};
use crate::{Error, Result};

/// The four numbers of the decomposition, each divided by the number of rows `n`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decomposition {
    /// The loss `‖Z_s − Z_t P‖²/n` (inverted) or `‖Z_s P − Z_t‖²/n` (standard).
    pub total: f64,
    /// The knowledge-transfer term (inside the projected side's span).
    pub transfer: f64,
    /// The spectral term of this direction: `‖(I − Π_t) Z_s‖²/n` (inverted) or
    /// `‖(I − Π_s) Z_t‖²/n` (standard).
    pub spectral: f64,
    /// The spectral term the other direction would have on the same features, for logging both.
    pub other_direction_spectral: f64,
}

/// Decomposes the squared-L2 loss of projector matrix `p` (`d_s × d_t` standard, `d_t × d_s`
/// inverted; see `Projector::weight_matrix`) on features `z_s`, `z_t` (`(n, d)` row matrices, or
/// dense maps of equal spatial size, which are turned into rows).
pub fn decompose_squared_l2(
    z_s: &Tensor,
    z_t: &Tensor,
    p: &Tensor,
    direction: Direction,
) -> Result<Decomposition> {
    let zs = host_matrix(
        &feature_rows(z_s, "student feature")?,
        "decompose_squared_l2",
    )?;
    let zt = host_matrix(
        &feature_rows(z_t, "teacher feature")?,
        "decompose_squared_l2",
    )?;
    let pm = host_matrix(p, "decompose_squared_l2")?;
    let (d_in, d_out) = direction.projector_shape(zt.cols, zs.cols);
    if zs.rows != zt.rows || (pm.rows, pm.cols) != (d_in, d_out) {
        return Err(Error::Shape {
            context: format!("decompose_squared_l2 ({direction}), projector matrix"),
            expected: format!(
                "({d_in}, {d_out}) for {} student rows × {} and {} teacher rows × {}",
                zs.rows, zs.cols, zt.rows, zt.cols
            ),
            got: p.dims().to_vec(),
        });
    }
    let n = zs.rows as f64;
    let svd_s = rank_svd(&zs)?;
    let svd_t = rank_svd(&zt)?;
    let teacher_outside_student = outside_energy(&svd_s.u, &zt)? / n;
    let student_outside_teacher = outside_energy(&svd_t.u, &zs)? / n;
    // S Vᵀ of the projected side, scaled row by row.
    let s_vt = |svd: &crate::host::RankSvd| {
        let mut m = svd.vt.clone();
        for (i, s) in svd.s.iter().enumerate() {
            for v in &mut m.data[i * m.cols..(i + 1) * m.cols] {
                *v *= s;
            }
        }
        m
    };
    Ok(match direction {
        Direction::Inverted => {
            let total = sq_norm(&sub(&zs, &zt.matmul(&pm)?)) / n;
            let coeff = svd_t.u.transpose().matmul(&zs)?;
            let transfer = sq_norm(&sub(&coeff, &s_vt(&svd_t).matmul(&pm)?)) / n;
            Decomposition {
                total,
                transfer,
                spectral: student_outside_teacher,
                other_direction_spectral: teacher_outside_student,
            }
        }
        Direction::Standard => {
            let total = sq_norm(&sub(&zs.matmul(&pm)?, &zt)) / n;
            let coeff = svd_s.u.transpose().matmul(&zt)?;
            let transfer = sq_norm(&sub(&s_vt(&svd_s).matmul(&pm)?, &coeff)) / n;
            Decomposition {
                total,
                transfer,
                spectral: teacher_outside_student,
                other_direction_spectral: student_outside_teacher,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crosskd_ops::gradcheck::random_f64;
    use crosskd_ops::linalg::orthonormal_basis;

    fn check_sum(d: &Decomposition) {
        let err = (d.transfer + d.spectral - d.total).abs();
        assert!(err <= 1e-9 * d.total, "{d:?}: off by {err:e}");
        assert!(d.transfer >= 0.0 && d.spectral >= 0.0);
    }

    /// ‖(I − Π_X) Z‖²/n with the basis computed from an independent full-column-rank factor.
    fn outside(factor: &Tensor, z: &Tensor) -> f64 {
        let q = orthonormal_basis(factor, 1e-12).unwrap();
        let r = (z - q.matmul(&q.t().unwrap().matmul(z).unwrap()).unwrap()).unwrap();
        r.sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
            / z.dim(0).unwrap() as f64
    }

    #[test]
    fn terms_add_up_on_random_features() {
        let (n, d_s, d_t) = (12, 3, 5);
        let z_s = random_f64(&[n, d_s], 1).unwrap();
        let z_t = random_f64(&[n, d_t], 2).unwrap();
        for (direction, shape) in [
            (Direction::Inverted, [d_t, d_s]),
            (Direction::Standard, [d_s, d_t]),
        ] {
            let p = random_f64(&shape, 3).unwrap();
            let d = decompose_squared_l2(&z_s, &z_t, &p, direction).unwrap();
            check_sum(&d);
            let (mine, other) = match direction {
                Direction::Inverted => (outside(&z_t, &z_s), outside(&z_s, &z_t)),
                Direction::Standard => (outside(&z_s, &z_t), outside(&z_t, &z_s)),
            };
            assert!((d.spectral - mine).abs() <= 1e-10 * mine, "{direction}");
            assert!(
                (d.other_direction_spectral - other).abs() <= 1e-10 * other,
                "{direction}"
            );
        }
    }

    #[test]
    fn terms_add_up_on_rank_deficient_features() {
        // Teacher of rank 2 in 6 columns, student of rank 1 in 3 columns, more columns than rank.
        let n = 10;
        let base_t = random_f64(&[n, 2], 4).unwrap();
        let z_t = base_t.matmul(&random_f64(&[2, 6], 5).unwrap()).unwrap();
        let base_s = random_f64(&[n, 1], 6).unwrap();
        let z_s = base_s.matmul(&random_f64(&[1, 3], 7).unwrap()).unwrap();
        for (direction, shape) in [(Direction::Inverted, [6, 3]), (Direction::Standard, [3, 6])] {
            let p = random_f64(&shape, 8).unwrap();
            let d = decompose_squared_l2(&z_s, &z_t, &p, direction).unwrap();
            check_sum(&d);
            let (mine, other) = match direction {
                Direction::Inverted => (outside(&base_t, &z_s), outside(&base_s, &z_t)),
                Direction::Standard => (outside(&base_s, &z_t), outside(&base_t, &z_s)),
            };
            assert!(
                (d.spectral - mine).abs() <= 1e-9 * mine,
                "{direction}: {} vs {mine}",
                d.spectral
            );
            assert!((d.other_direction_spectral - other).abs() <= 1e-9 * other);
        }
    }

    #[test]
    fn transfer_vanishes_at_the_least_squares_projector() {
        // Inverted: P* = Z_t⁺ Z_s, computed from the normal equations on a well-conditioned Z_t.
        let z_s = random_f64(&[15, 2], 9).unwrap();
        let z_t = random_f64(&[15, 4], 10).unwrap();
        let gram = z_t.t().unwrap().matmul(&z_t).unwrap();
        let eig = crosskd_ops::linalg::sym_eig(&gram).unwrap();
        let inv_vals = eig.values.recip().unwrap();
        let gram_inv = eig
            .vectors
            .broadcast_mul(&inv_vals.reshape((1, 4)).unwrap())
            .unwrap()
            .matmul(&eig.vectors.t().unwrap())
            .unwrap();
        let p_star = gram_inv
            .matmul(&z_t.t().unwrap().matmul(&z_s).unwrap())
            .unwrap();
        let d = decompose_squared_l2(&z_s, &z_t, &p_star, Direction::Inverted).unwrap();
        assert!(d.transfer <= 1e-20_f64.max(1e-12 * d.total), "{d:?}");
        assert!((d.total - d.spectral).abs() <= 1e-10 * d.total);
    }

    #[test]
    fn wrong_projector_shape_is_an_error() {
        let z_s = random_f64(&[4, 2], 1).unwrap();
        let z_t = random_f64(&[4, 3], 2).unwrap();
        let p = random_f64(&[2, 3], 3).unwrap(); // standard shape, used as inverted
        assert!(decompose_squared_l2(&z_s, &z_t, &p, Direction::Inverted).is_err());
    }
}
