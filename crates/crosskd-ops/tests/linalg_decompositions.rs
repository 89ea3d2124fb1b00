//! Tests of the linear algebra in `crosskd_ops::linalg`: SVD, symmetric eigendecomposition, power
//! iteration, orthonormal bases and projections.
//!
//! Expected values come from hand computation (stated next to each case) or from an independent
//! identity (trace = Σλ, σ² = eigenvalues of AᵀA, reconstruction, orthonormality).

use candle_core::{DType, Device, Tensor};
use crosskd_ops::gradcheck::{assert_gradients, random_f64};
use crosskd_ops::linalg::{
    orthonormal_basis, orthonormal_basis_host, power_iteration, power_iteration_host,
    project_onto_complement, project_onto_span, singular_values, singular_values_host, svd,
    svd_host, sym_eig, sym_eig_host, Matrix,
};
use crosskd_ops::Error;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------- helpers

fn random_matrix(rows: usize, cols: usize, seed: u64) -> Matrix {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let data = (0..rows * cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
    Matrix::from_row_major(data, rows, cols).unwrap()
}

/// `n × k` matrix with orthonormal columns by twice-applied modified Gram–Schmidt (independent of
/// the code under test).
fn random_orthonormal(n: usize, k: usize, seed: u64) -> Matrix {
    let a = random_matrix(k, n, seed); // rows are the vectors to orthonormalise
    let mut vecs: Vec<Vec<f64>> = (0..k).map(|i| a.row(i).to_vec()).collect();
    for i in 0..k {
        for _ in 0..2 {
            for j in 0..i {
                let p: f64 = vecs[i].iter().zip(&vecs[j]).map(|(x, y)| x * y).sum();
                let vj = vecs[j].clone();
                vecs[i].iter_mut().zip(&vj).for_each(|(x, y)| *x -= p * y);
            }
        }
        let norm = vecs[i].iter().map(|x| x * x).sum::<f64>().sqrt();
        vecs[i].iter_mut().for_each(|x| *x /= norm);
    }
    Matrix::from_row_major(vecs.concat(), k, n)
        .unwrap()
        .transpose()
}

fn diag(values: &[f64]) -> Matrix {
    let n = values.len();
    let mut m = Matrix::zeros(n, n);
    for (i, v) in values.iter().enumerate() {
        m.data[i * n + i] = *v;
    }
    m
}

fn sub(a: &Matrix, b: &Matrix) -> Matrix {
    assert_eq!((a.rows, a.cols), (b.rows, b.cols));
    let data = a.data.iter().zip(&b.data).map(|(x, y)| x - y).collect();
    Matrix::from_row_major(data, a.rows, a.cols).unwrap()
}

/// `max |MᵀM − I|` for a matrix whose columns should be orthonormal.
fn orthonormality_error(m: &Matrix) -> f64 {
    let gram = m.transpose().matmul(m).unwrap();
    sub(&gram, &Matrix::identity(m.cols))
        .data
        .iter()
        .fold(0.0, |acc, x| acc.max(x.abs()))
}

fn reconstruct_svd(u: &Matrix, s: &[f64], vt: &Matrix) -> Matrix {
    u.matmul(&diag(s)).unwrap().matmul(vt).unwrap()
}

fn relative_error(approx: &Matrix, exact: &Matrix) -> f64 {
    let scale = exact.frobenius_norm();
    let err = sub(approx, exact).frobenius_norm();
    if scale == 0.0 {
        err
    } else {
        err / scale
    }
}

fn assert_descending(values: &[f64]) {
    for w in values.windows(2) {
        assert!(w[0] >= w[1], "not descending: {values:?}");
    }
}

/// Full check of an SVD of `a`: shapes, ordering, non-negativity, orthonormality, reconstruction.
fn check_svd(a: &Matrix, recon_tol: f64, ortho_tol: f64) -> Vec<f64> {
    let out = svd_host(&a.data, a.rows, a.cols).unwrap();
    let r = a.rows.min(a.cols);
    assert_eq!((out.u.rows, out.u.cols), (a.rows, r));
    assert_eq!((out.vt.rows, out.vt.cols), (r, a.cols));
    assert_eq!(out.s.len(), r);
    assert_descending(&out.s);
    assert!(out.s.iter().all(|&s| s >= 0.0));
    let u_err = orthonormality_error(&out.u);
    let v_err = orthonormality_error(&out.vt.transpose());
    assert!(u_err <= ortho_tol, "UᵀU − I = {u_err:e}");
    assert!(v_err <= ortho_tol, "VᵀV − I = {v_err:e}");
    let rec = relative_error(&reconstruct_svd(&out.u, &out.s, &out.vt), a);
    assert!(rec <= recon_tol, "reconstruction error {rec:e}");
    out.s
}

fn tensor(m: &Matrix, dtype: DType) -> Tensor {
    Tensor::from_vec(m.data.clone(), (m.rows, m.cols), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn to_matrix(t: &Tensor) -> Matrix {
    let (r, c) = t.dims2().unwrap();
    let data = t
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    Matrix::from_row_major(data, r, c).unwrap()
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()
}

// ---------------------------------------------------------------- SVD

#[test]
fn svd_random_tall_wide_square_f64() {
    for (seed, (n, d)) in [(40, 7), (7, 40), (30, 30), (65, 64), (1, 5), (5, 1)]
        .into_iter()
        .enumerate()
    {
        let a = random_matrix(n, d, seed as u64);
        check_svd(&a, 1e-12, 1e-12);
    }
}

#[test]
fn svd_hand_computed_2x2() {
    // A = [[3, 0], [4, 5]]: AᵀA = [[25, 20], [20, 25]] has eigenvalues 45 and 5,
    // so σ = (3√5, √5).
    let a = Matrix::from_row_major(vec![3.0, 0.0, 4.0, 5.0], 2, 2).unwrap();
    let s = check_svd(&a, 1e-14, 1e-14);
    assert!((s[0] - 3.0 * 5f64.sqrt()).abs() < 1e-13, "{s:?}");
    assert!((s[1] - 5f64.sqrt()).abs() < 1e-13, "{s:?}");
}

#[test]
fn svd_diagonal_matrix_gives_sorted_absolute_diagonal() {
    // Singular values of a diagonal matrix are the absolute diagonal entries, sorted.
    let a = diag(&[3.0, -5.0, 1.0, 0.5]);
    let s = check_svd(&a, 1e-14, 1e-14);
    for (got, want) in s.iter().zip([5.0, 3.0, 1.0, 0.5]) {
        assert!((got - want).abs() < 1e-14, "{s:?}");
    }
}

#[test]
fn svd_one_by_one() {
    let a = Matrix::from_row_major(vec![-2.0], 1, 1).unwrap();
    let out = svd_host(&a.data, 1, 1).unwrap();
    assert_eq!(out.s, vec![2.0]);
    assert!((out.u.data[0] * out.vt.data[0] + 1.0).abs() < 1e-15);
}

#[test]
fn svd_zero_matrix_has_zero_values_and_orthonormal_vectors() {
    for (n, d) in [(4, 3), (3, 4)] {
        let a = Matrix::zeros(n, d);
        let s = check_svd(&a, 0.0, 1e-15);
        assert!(s.iter().all(|&x| x == 0.0), "{s:?}");
    }
}

#[test]
fn svd_rank_deficient_rank_3_in_10x8() {
    let a = random_matrix(10, 3, 11)
        .matmul(&random_matrix(3, 8, 12))
        .unwrap();
    let s = check_svd(&a, 1e-12, 1e-12);
    assert!(s[2] > 1e-3 * s[0], "{s:?}");
    assert!(s[3..].iter().all(|&x| x <= 1e-13 * s[0]), "{s:?}");
    // The same through the transpose (wide path).
    let s_t = check_svd(&a.transpose(), 1e-12, 1e-12);
    assert!(s_t[3..].iter().all(|&x| x <= 1e-13 * s[0]), "{s_t:?}");
}

#[test]
fn svd_repeated_singular_values() {
    // Q diag(2, 2, 2, 1) Wᵀ with orthonormal Q (7×4) and W (5×4): σ = (2, 2, 2, 1).
    let q = random_orthonormal(7, 4, 21);
    let w = random_orthonormal(5, 4, 22);
    let a = q
        .matmul(&diag(&[2.0, 2.0, 2.0, 1.0]))
        .unwrap()
        .matmul(&w.transpose())
        .unwrap();
    let s = check_svd(&a, 1e-13, 1e-13);
    for (got, want) in s.iter().zip([2.0, 2.0, 2.0, 1.0]) {
        assert!((got - want).abs() < 1e-13, "{s:?}");
    }
}

#[test]
fn svd_keeps_relative_accuracy_of_small_singular_values() {
    // σ = (1, 1e-5, 1e-10): through the Gram matrix the last one would have no correct digit
    // (1e-20 is below ε·1), the Jacobi route keeps it to many digits.
    let q = random_orthonormal(20, 3, 31);
    let w = random_orthonormal(6, 3, 32);
    let want = [1.0, 1e-5, 1e-10];
    let a = q
        .matmul(&diag(&want))
        .unwrap()
        .matmul(&w.transpose())
        .unwrap();
    let s = svd_host(&a.data, 20, 6).unwrap().s;
    for (got, want) in s.iter().zip(want) {
        assert!(((got - want) / want).abs() < 1e-5, "{s:?}");
    }
}

#[test]
fn singular_values_agree_with_full_svd_and_with_eigenvalues_of_gram() {
    let a = random_matrix(25, 9, 41);
    let full = svd_host(&a.data, 25, 9).unwrap().s;
    let only = singular_values_host(&a.data, 25, 9).unwrap();
    let gram = a.transpose().matmul(&a).unwrap();
    let eig = sym_eig_host(&gram.data, 9).unwrap().values;
    for i in 0..9 {
        assert!((full[i] - only[i]).abs() <= 1e-13 * full[0]);
        // Well conditioned, so the Gram route is accurate here: σ_i² = λ_i(AᵀA).
        assert!(
            (full[i] * full[i] - eig[i]).abs() <= 1e-12 * eig[0],
            "{full:?} {eig:?}"
        );
    }
}

#[test]
fn svd_tensor_f64_and_f32_keep_dtype_and_reconstruct() {
    let a = random_matrix(12, 5, 51);
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        let out = svd(&tensor(&a, dtype)).unwrap();
        assert_eq!(out.u.dtype(), dtype);
        assert_eq!(out.s.dtype(), dtype);
        assert_eq!(out.vt.dtype(), dtype);
        assert_eq!(out.u.dims(), &[12, 5]);
        assert_eq!(out.s.dims(), &[5]);
        assert_eq!(out.vt.dims(), &[5, 5]);
        let (u, s, vt) = (to_matrix(&out.u), to_vec(&out.s), to_matrix(&out.vt));
        // The f32 input is itself a rounding of `a`: compare with what the tensor holds.
        let held = to_matrix(&tensor(&a, dtype));
        let rec = relative_error(&reconstruct_svd(&u, &s, &vt), &held);
        assert!(rec <= tol, "{dtype:?}: reconstruction error {rec:e}");
        assert!(orthonormality_error(&u) <= tol);
        assert!(orthonormality_error(&vt.transpose()) <= tol);
        let only = to_vec(&singular_values(&tensor(&a, dtype)).unwrap());
        assert_eq!(only.len(), 5);
        for (x, y) in only.iter().zip(&s) {
            assert!((x - y).abs() <= tol * s[0]);
        }
    }
}

#[test]
fn svd_accepts_non_contiguous_tensors() {
    let a = random_matrix(6, 9, 61);
    let t = tensor(&a, DType::F64).t().unwrap(); // a (9, 6) view of Aᵀ
    let out = svd(&t).unwrap();
    let rec = reconstruct_svd(&to_matrix(&out.u), &to_vec(&out.s), &to_matrix(&out.vt));
    assert!(relative_error(&rec, &a.transpose()) <= 1e-12);
}

#[test]
fn svd_outputs_carry_no_gradient_graph() {
    let var = candle_core::Var::from_tensor(&tensor(&random_matrix(4, 3, 71), DType::F64)).unwrap();
    let out = svd(var.as_tensor()).unwrap();
    let loss = out.s.sum_all().unwrap();
    let grads = loss.backward().unwrap();
    assert!(grads.get(var.as_tensor()).is_none());
}

#[test]
fn svd_rejects_bad_input() {
    let nan = Matrix::from_row_major(vec![1.0, f64::NAN, 0.0, 1.0], 2, 2).unwrap();
    assert!(matches!(
        svd_host(&nan.data, 2, 2),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        svd_host(&[1.0; 5], 2, 3),
        Err(Error::InvalidArgument { .. })
    ));
    let cube = Tensor::zeros((2, 2, 2), DType::F64, &Device::Cpu).unwrap();
    assert!(matches!(svd(&cube), Err(Error::Shape { .. })));
    let ints = Tensor::zeros((2, 2), DType::U32, &Device::Cpu).unwrap();
    assert!(matches!(svd(&ints), Err(Error::InvalidArgument { .. })));
}

#[test]
fn svd_of_256_square_feature_matrix() {
    let a = random_matrix(300, 256, 81);
    check_svd(&a, 1e-12, 1e-12);
}

// ---------------------------------------------------------------- symmetric eigendecomposition

/// Checks `A = V Λ Vᵀ`, orthonormal V, descending λ, `A v_i = λ_i v_i`, and trace = Σλ.
fn check_sym_eig(a: &Matrix, tol: f64) -> Vec<f64> {
    let d = a.rows;
    let eig = sym_eig_host(&a.data, d).unwrap();
    assert_eq!(eig.values.len(), d);
    assert_descending(&eig.values);
    let v = &eig.vectors;
    let ortho = orthonormality_error(v);
    assert!(ortho <= tol, "VᵀV − I = {ortho:e}");
    let rec = v
        .matmul(&diag(&eig.values))
        .unwrap()
        .matmul(&v.transpose())
        .unwrap();
    let scale = a.frobenius_norm().max(1.0);
    let rec_err = sub(&rec, a).frobenius_norm() / scale;
    assert!(rec_err <= tol, "reconstruction error {rec_err:e}");
    let av = a.matmul(v).unwrap();
    for i in 0..d {
        for row in 0..d {
            let residual = av.get(row, i) - eig.values[i] * v.get(row, i);
            assert!(residual.abs() <= tol * scale, "A v − λ v = {residual:e}");
        }
    }
    let trace: f64 = (0..d).map(|i| a.get(i, i)).sum();
    let sum: f64 = eig.values.iter().sum();
    assert!((trace - sum).abs() <= tol * scale * d as f64);
    eig.values
}

#[test]
fn sym_eig_hand_computed_2x2() {
    // [[2, 1], [1, 2]]: eigenvalues 3 (vector (1, 1)/√2) and 1 (vector (1, −1)/√2).
    let a = Matrix::from_row_major(vec![2.0, 1.0, 1.0, 2.0], 2, 2).unwrap();
    let values = check_sym_eig(&a, 1e-14);
    assert!((values[0] - 3.0).abs() < 1e-14 && (values[1] - 1.0).abs() < 1e-14);
    let v = sym_eig_host(&a.data, 2).unwrap().vectors;
    let h = 0.5f64.sqrt();
    assert!((v.get(0, 0).abs() - h).abs() < 1e-14);
    assert!((v.get(0, 0) - v.get(1, 0)).abs() < 1e-14);
    assert!((v.get(0, 1) + v.get(1, 1)).abs() < 1e-14);
}

#[test]
fn sym_eig_repeated_eigenvalues() {
    let identity = check_sym_eig(&Matrix::identity(5), 1e-14);
    assert!(identity.iter().all(|&x| (x - 1.0).abs() < 1e-15));

    let d = check_sym_eig(&diag(&[1.0, 2.0, 2.0]), 1e-14);
    assert_eq!(d, vec![2.0, 2.0, 1.0]);

    // Q diag(2, 2, 1, −3, −3) Qᵀ for a random orthogonal Q.
    let q = random_orthonormal(5, 5, 91);
    let want = [2.0, 2.0, 1.0, -3.0, -3.0];
    let a = q
        .matmul(&diag(&want))
        .unwrap()
        .matmul(&q.transpose())
        .unwrap();
    let values = check_sym_eig(&a, 1e-13);
    for (got, want) in values.iter().zip(want) {
        assert!((got - want).abs() < 1e-13, "{values:?}");
    }
}

#[test]
fn sym_eig_random_symmetric_and_small_sizes() {
    for (seed, d) in [1usize, 2, 3, 10, 50].into_iter().enumerate() {
        let b = random_matrix(d, d, 100 + seed as u64);
        let a = Matrix::from_row_major(
            b.data
                .iter()
                .zip(&b.transpose().data)
                .map(|(x, y)| x + y)
                .collect(),
            d,
            d,
        )
        .unwrap();
        check_sym_eig(&a, 1e-12);
    }
}

#[test]
fn sym_eig_zero_and_rank_deficient_gram() {
    let zero = check_sym_eig(&Matrix::zeros(4, 4), 0.0);
    assert!(zero.iter().all(|&x| x == 0.0));
    // A Gram matrix XᵀX of a 3×6 X has rank 3: three zero eigenvalues.
    let x = random_matrix(3, 6, 111);
    let gram = x.transpose().matmul(&x).unwrap();
    let values = check_sym_eig(&gram, 1e-12);
    assert!(values[2] > 1e-3 * values[0]);
    assert!(
        values[3..].iter().all(|v| v.abs() <= 1e-13 * values[0]),
        "{values:?}"
    );
}

#[test]
fn sym_eig_gram_256() {
    let x = random_matrix(200, 256, 121);
    let gram = x.transpose().matmul(&x).unwrap();
    check_sym_eig(&gram, 1e-11);
}

#[test]
#[ignore = "d = 1024 takes tens of seconds in the unoptimised test profile; run with --ignored --release"]
fn sym_eig_gram_1024() {
    let x = random_matrix(1100, 1024, 131);
    let gram = x.transpose().matmul(&x).unwrap();
    let eig = sym_eig_host(&gram.data, 1024).unwrap();
    assert_descending(&eig.values);
    assert!(orthonormality_error(&eig.vectors) <= 1e-11);
    let rec = eig
        .vectors
        .matmul(&diag(&eig.values))
        .unwrap()
        .matmul(&eig.vectors.transpose())
        .unwrap();
    assert!(relative_error(&rec, &gram) <= 1e-11);
}

#[test]
fn sym_eig_tensor_keeps_dtype_and_checks_input() {
    let b = random_matrix(6, 6, 141);
    let a = b.transpose().matmul(&b).unwrap();
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        let out = sym_eig(&tensor(&a, dtype)).unwrap();
        assert_eq!(out.values.dtype(), dtype);
        assert_eq!(out.vectors.dims(), &[6, 6]);
        let (values, v) = (to_vec(&out.values), to_matrix(&out.vectors));
        assert_descending(&values);
        assert!(orthonormality_error(&v) <= tol);
        let rec = v
            .matmul(&diag(&values))
            .unwrap()
            .matmul(&v.transpose())
            .unwrap();
        assert!(relative_error(&rec, &to_matrix(&tensor(&a, dtype))) <= tol);
    }
    let rect = Tensor::zeros((3, 4), DType::F64, &Device::Cpu).unwrap();
    assert!(matches!(sym_eig(&rect), Err(Error::Shape { .. })));
    let asym = Matrix::from_row_major(vec![1.0, 2.0, 0.0, 1.0], 2, 2).unwrap();
    assert!(matches!(
        sym_eig(&tensor(&asym, DType::F64)),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        sym_eig_host(&[1.0, f64::INFINITY, f64::INFINITY, 1.0], 2),
        Err(Error::InvalidArgument { .. })
    ));
}

// ---------------------------------------------------------------- power iteration

#[test]
fn power_iteration_agrees_with_top_singular_value() {
    for (n, d, seed) in [(30, 10, 151), (10, 30, 152), (1, 1, 153)] {
        let a = random_matrix(n, d, seed);
        let top = svd_host(&a.data, n, d).unwrap().s[0];
        let est = power_iteration_host(&a.data, n, d, 10_000, 1e-13).unwrap();
        assert!((est - top).abs() <= 1e-8 * top, "{est} vs {top}");
        let est_t = power_iteration(&tensor(&a, DType::F64), 10_000, 1e-13).unwrap();
        assert_eq!(est, est_t);
    }
    // Hand case: σ_max of [[3, 0], [4, 5]] is 3√5.
    let est = power_iteration_host(&[3.0, 0.0, 4.0, 5.0], 2, 2, 1000, 1e-14).unwrap();
    assert!((est - 3.0 * 5f64.sqrt()).abs() < 1e-10);
}

#[test]
fn power_iteration_zero_matrix_and_errors() {
    assert_eq!(
        power_iteration_host(&[0.0; 6], 2, 3, 10, 1e-8).unwrap(),
        0.0
    );
    let a = random_matrix(30, 10, 161);
    assert!(matches!(
        power_iteration_host(&a.data, 30, 10, 2, 1e-15),
        Err(Error::NoConvergence { .. })
    ));
    assert!(matches!(
        power_iteration_host(&a.data, 30, 10, 2, 0.0),
        Err(Error::InvalidArgument { .. })
    ));
}

// ---------------------------------------------------------------- bases and projections

#[test]
fn orthonormal_basis_has_the_rank_of_the_span() {
    let a = random_matrix(10, 3, 171)
        .matmul(&random_matrix(3, 8, 172))
        .unwrap();
    let basis = orthonormal_basis_host(&a.data, 10, 8, 1e-10).unwrap();
    assert_eq!((basis.rows, basis.cols), (10, 3));
    assert!(orthonormality_error(&basis) <= 1e-13);
    // Every column of A lies in the span: B Bᵀ A = A.
    let projected = basis
        .matmul(&basis.transpose())
        .unwrap()
        .matmul(&a)
        .unwrap();
    assert!(relative_error(&projected, &a) <= 1e-12);

    let zero = orthonormal_basis_host(&[0.0; 12], 4, 3, 1e-10).unwrap();
    assert_eq!((zero.rows, zero.cols), (4, 0));
    assert!(matches!(
        orthonormal_basis_host(&a.data, 10, 8, 1.0),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn projections_split_the_distillation_loss_as_in_the_method() {
    // docs/method.md: ‖Z_s − Z_t P‖² = ‖Uᵀ Z_s − S Vᵀ P‖² + ‖(I − Π_t) Z_s‖² for any P,
    // with Z_t = U S Vᵀ (thin SVD, full column rank here) and Π_t = U Uᵀ.
    let (n, dt, ds) = (12, 4, 5);
    let zt = tensor(&random_matrix(n, dt, 181), DType::F64);
    let zs = tensor(&random_matrix(n, ds, 182), DType::F64);
    let p = tensor(&random_matrix(dt, ds, 183), DType::F64);
    let out = svd(&zt).unwrap();
    let total = (&zs - zt.matmul(&p).unwrap())
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let svt_p = out
        .vt
        .broadcast_mul(&out.s.unsqueeze(1).unwrap())
        .unwrap()
        .matmul(&p)
        .unwrap();
    let inside = (out.u.t().unwrap().matmul(&zs).unwrap() - svt_p)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let outside = project_onto_complement(&out.u, &zs)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(
        (total - inside - outside).abs() <= 1e-12 * total,
        "{total} vs {inside} + {outside}"
    );

    // Π Z + (I − Π) Z = Z, and the basis from orthonormal_basis spans the same space as U.
    let basis = orthonormal_basis(&zt, 1e-10).unwrap();
    let sum = (project_onto_span(&basis, &zs).unwrap()
        + project_onto_complement(&basis, &zs).unwrap())
    .unwrap();
    let diff = (sum - &zs)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(diff <= 1e-14);
    let via_u = project_onto_span(&out.u, &zs).unwrap();
    let via_basis = project_onto_span(&basis, &zs).unwrap();
    let diff = (via_u - via_basis)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(diff <= 1e-12);
}

#[test]
fn projection_gradients_match_finite_differences() {
    let basis = orthonormal_basis(&random_f64(&[7, 3], 191).unwrap(), 1e-10).unwrap();
    let z = random_f64(&[7, 4], 192).unwrap();
    let b = basis.clone();
    assert_gradients(
        "project_onto_span",
        move |x| project_onto_span(&b, &x[0]).map_err(Into::into),
        std::slice::from_ref(&z),
        1e-6,
        1e-6,
    );
    assert_gradients(
        "project_onto_complement squared norm",
        move |x| {
            project_onto_complement(&basis, &x[0])
                .map_err(candle_core::Error::from)?
                .sqr()?
                .sum_all()
        },
        &[z],
        1e-6,
        1e-6,
    );
}

#[test]
fn projection_checks_shapes_and_handles_empty_basis() {
    let z = random_f64(&[5, 2], 201).unwrap();
    let wrong = random_f64(&[4, 2], 202).unwrap();
    assert!(matches!(
        project_onto_span(&wrong, &z),
        Err(Error::Shape { .. })
    ));
    let empty = orthonormal_basis(
        &Tensor::zeros((5, 3), DType::F64, &Device::Cpu).unwrap(),
        1e-10,
    )
    .unwrap();
    assert_eq!(empty.dims(), &[5, 0]);
    let inside = project_onto_span(&empty, &z).unwrap();
    assert_eq!(
        inside
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap(),
        0.0
    );
    let outside = project_onto_complement(&empty, &z).unwrap();
    let diff = (outside - &z)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert_eq!(diff, 0.0);
}
