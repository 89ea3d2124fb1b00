//! Pooling: hand-computed forward cases (PyTorch definitions), finite-difference gradient checks
//! of the CPU kernels and of the primitive-composition versions used on other devices, and a
//! regression test that documents candle's own wrong max-pool gradient.

use candle_core::{DType, Device, Tensor, Var};
use crosskd_ops::gradcheck::{assert_gradients, random_f64, values};
use crosskd_ops::pool::{self, avg_pool2d, global_avg_pool2d, max_pool2d};

const EPS: f64 = 1e-6;
const TOL: f64 = 1e-6;

fn t4(data: &[f64], shape: (usize, usize, usize, usize)) -> Tensor {
    Tensor::from_slice(data, shape, &Device::Cpu).unwrap()
}

type MaxPool =
    fn(&Tensor, (usize, usize), (usize, usize), (usize, usize)) -> crosskd_ops::Result<Tensor>;
type AvgPool = fn(
    &Tensor,
    (usize, usize),
    (usize, usize),
    (usize, usize),
    bool,
) -> crosskd_ops::Result<Tensor>;

const MAX_IMPLS: [(&str, MaxPool); 2] =
    [("cpu", max_pool2d), ("generic", pool::generic::max_pool2d)];
const AVG_IMPLS: [(&str, AvgPool); 2] =
    [("cpu", avg_pool2d), ("generic", pool::generic::avg_pool2d)];

#[test]
fn max_pool_4x4_by_hand() {
    // Windows of the 2x2/stride-2 pool are the four 2x2 quadrants; the max of each is read off.
    let x = t4(
        &[
            1., 5., 2., 0., //
            3., 4., 8., 7., //
            -1., -2., 6., 6., //
            -3., -0.5, 6., 9.,
        ],
        (1, 1, 4, 4),
    );
    for (name, f) in MAX_IMPLS {
        let y = f(&x, (2, 2), (2, 2), (0, 0)).unwrap();
        assert_eq!(y.dims(), &[1, 1, 2, 2], "{name}");
        assert_eq!(values(&y), vec![5., 8., -0.5, 9.], "{name}");
        // 3x3 stride 1 padding 1 (padding is -inf): each output is the max of its 3x3
        // neighbourhood clipped to the image.
        let y = f(&x, (3, 3), (1, 1), (1, 1)).unwrap();
        #[rustfmt::skip]
        let expected = vec![
            5., 8., 8., 8.,
            5., 8., 8., 8.,
            4., 8., 9., 9.,
            -0.5, 6., 9., 9.,
        ];
        assert_eq!(values(&y), expected, "{name}");
    }
}

#[test]
fn max_pool_gradient_goes_to_the_first_maximum_on_ties() {
    // PyTorch routes the gradient of a window to its first maximal element in row-major order.
    let x = t4(&[2., 2., 2., 2., 1., 2.], (1, 1, 2, 3));
    for (name, f) in MAX_IMPLS {
        let v = Var::from_tensor(&x).unwrap();
        // Windows (2x2, stride 1) cover columns {0,1} and {1,2}: both have ties.
        let y = f(v.as_tensor(), (2, 2), (1, 1), (0, 0)).unwrap();
        assert_eq!(values(&y), vec![2., 2.], "{name}");
        let g = y.sum_all().unwrap().backward().unwrap();
        let dx = values(g.get(v.as_tensor()).unwrap());
        assert_eq!(dx, vec![1., 1., 0., 0., 0., 0.], "{name}");
    }
}

#[test]
fn avg_pool_by_hand_with_and_without_padding_in_the_count() {
    // 3x3 window, stride 1, padding 1 on a 3x3 image of ones: the corner window holds 4 real
    // elements, the edge window 6, the centre 9.
    let x = Tensor::ones((1, 1, 3, 3), DType::F64, &Device::Cpu).unwrap();
    for (name, f) in AVG_IMPLS {
        let incl = values(&f(&x, (3, 3), (1, 1), (1, 1), true).unwrap());
        let expected: Vec<f64> = [4., 6., 4., 6., 9., 6., 4., 6., 4.]
            .iter()
            .map(|c| c / 9.)
            .collect();
        for (a, b) in incl.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-15, "{name}: {incl:?} vs {expected:?}");
        }
        let excl = values(&f(&x, (3, 3), (1, 1), (1, 1), false).unwrap());
        assert!(
            excl.iter().all(|v| (v - 1.0).abs() < 1e-15),
            "{name}: {excl:?}"
        );
    }
    // Kernel 2x3, stride (2, 1) on a 2x4 ramp: means of [0 1 2; 4 5 6] and [1 2 3; 5 6 7].
    let x = t4(&[0., 1., 2., 3., 4., 5., 6., 7.], (1, 1, 2, 4));
    for (name, f) in AVG_IMPLS {
        let y = f(&x, (2, 3), (2, 1), (0, 0), true).unwrap();
        assert_eq!(y.dims(), &[1, 1, 1, 2], "{name}");
        assert_eq!(values(&y), vec![3., 4.], "{name}");
    }
}

#[test]
fn global_avg_pool_by_hand() {
    let x = t4(&[1., 2., 3., 4., 10., 20., 30., 40.], (1, 2, 2, 2));
    let y = global_avg_pool2d(&x).unwrap();
    assert_eq!(y.dims(), &[1, 2]);
    assert_eq!(values(&y), vec![2.5, 25.]);
}

type Pair = (usize, usize);
/// `(kernel, stride, padding, (H, W))`.
type PoolCase = (Pair, Pair, Pair, Pair);
/// Kernel, stride, padding and input sizes: 3x3 stride 1 with padding (overlapping windows),
/// kernel != stride, non-square everything and odd sizes.
const CASES: [PoolCase; 5] = [
    ((3, 3), (1, 1), (1, 1), (5, 7)),
    ((2, 2), (2, 2), (0, 0), (4, 6)),
    ((3, 2), (2, 1), (1, 0), (7, 5)),
    ((3, 3), (2, 2), (1, 1), (5, 5)),
    ((2, 3), (1, 2), (1, 1), (3, 6)),
];

#[test]
fn max_pool_gradients_match_finite_differences() {
    for (i, (k, s, p, (h, w))) in CASES.into_iter().enumerate() {
        let x = random_f64(&[2, 2, h, w], 10 + i as u64).unwrap();
        for (name, f) in MAX_IMPLS {
            assert_gradients(
                &format!("max_pool2d[{name}] k={k:?} s={s:?} p={p:?} {h}x{w}"),
                |a| Ok(f(&a[0], k, s, p)?),
                std::slice::from_ref(&x),
                EPS,
                TOL,
            );
        }
    }
}

#[test]
fn avg_pool_gradients_match_finite_differences() {
    for (i, (k, s, p, (h, w))) in CASES.into_iter().enumerate() {
        let x = random_f64(&[2, 2, h, w], 20 + i as u64).unwrap();
        for (name, f) in AVG_IMPLS {
            for include in [true, false] {
                assert_gradients(
                    &format!(
                        "avg_pool2d[{name}] k={k:?} s={s:?} p={p:?} {h}x{w} include_pad={include}"
                    ),
                    |a| Ok(f(&a[0], k, s, p, include)?),
                    std::slice::from_ref(&x),
                    EPS,
                    TOL,
                );
            }
        }
    }
}

#[test]
fn global_avg_pool_gradient_matches_finite_differences() {
    let x = random_f64(&[2, 3, 3, 5], 30).unwrap();
    assert_gradients(
        "global_avg_pool2d",
        |a| Ok(global_avg_pool2d(&a[0])?),
        &[x],
        EPS,
        TOL,
    );
}

#[test]
fn pooled_input_with_a_second_consumer_accumulates_gradients() {
    // x feeds max pooling, average pooling and a product with itself.
    let x = random_f64(&[1, 2, 6, 5], 31).unwrap();
    for ((mname, maxf), (aname, avgf)) in MAX_IMPLS.into_iter().zip(AVG_IMPLS) {
        assert_gradients(
            &format!("max[{mname}] + avg[{aname}] + x^2"),
            |a| {
                let m = maxf(&a[0], (3, 3), (1, 1), (1, 1))?;
                let v = avgf(&a[0], (3, 3), (1, 1), (1, 1), false)?;
                (m * v)? + a[0].sqr()?
            },
            std::slice::from_ref(&x),
            EPS,
            TOL,
        );
    }
}

#[test]
fn f32_matches_f64() {
    let x64 = random_f64(&[2, 3, 7, 6], 32).unwrap();
    let x32 = x64.to_dtype(DType::F32).unwrap();
    for (name, f) in MAX_IMPLS {
        let a = values(&f(&x64, (3, 3), (2, 1), (1, 1)).unwrap());
        let b = values(&f(&x32, (3, 3), (2, 1), (1, 1)).unwrap());
        assert!(
            a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-6),
            "{name}"
        );
    }
    for (name, f) in AVG_IMPLS {
        let a = values(&f(&x64, (3, 3), (2, 1), (1, 1), false).unwrap());
        let b = values(&f(&x32, (3, 3), (2, 1), (1, 1), false).unwrap());
        assert!(
            a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-6),
            "{name}"
        );
    }
    // Gradients in f32 against f64.
    let grad_of = |x: &Tensor| {
        let v = Var::from_tensor(x).unwrap();
        let y = max_pool2d(v.as_tensor(), (3, 3), (1, 1), (1, 1)).unwrap();
        let z = avg_pool2d(v.as_tensor(), (2, 3), (1, 2), (1, 1), true).unwrap();
        let loss =
            (y.sqr().unwrap().sum_all().unwrap() + z.sqr().unwrap().sum_all().unwrap()).unwrap();
        values(loss.backward().unwrap().get(v.as_tensor()).unwrap())
    };
    let (g64, g32) = (grad_of(&x64), grad_of(&x32));
    assert!(g64.iter().zip(&g32).all(|(a, b)| (a - b).abs() < 1e-5));
}

#[test]
fn rejects_bad_arguments() {
    let x = random_f64(&[1, 1, 4, 4], 33).unwrap();
    assert!(
        max_pool2d(&x, (3, 3), (1, 1), (2, 2)).is_err(),
        "padding above half the kernel"
    );
    assert!(
        max_pool2d(&x, (0, 3), (1, 1), (0, 0)).is_err(),
        "zero kernel"
    );
    assert!(
        avg_pool2d(&x, (2, 2), (0, 1), (0, 0), true).is_err(),
        "zero stride"
    );
    assert!(
        avg_pool2d(&x, (5, 5), (1, 1), (0, 0), true).is_err(),
        "kernel larger than input"
    );
    let x3 = random_f64(&[1, 4, 4], 34).unwrap();
    assert!(
        max_pool2d(&x3, (2, 2), (2, 2), (0, 0)).is_err(),
        "3-D input"
    );
    assert!(global_avg_pool2d(&x3).is_err(), "3-D input");
}

/// candle 0.11.1's `Tensor::max_pool2d` backward multiplies the gradient by (number of maxima in
/// the window)/(k·k), i.e. 1/4 for a 2x2 pool with a unique maximum. This test exists so that a
/// future candle fix is noticed (it will then fail): re-check `docs/ops.md` and the clippy ban.
#[test]
#[allow(clippy::disallowed_methods)]
fn candle_max_pool_gradient_differs_from_ours() {
    let x = random_f64(&[1, 1, 4, 4], 35).unwrap();
    let v = Var::from_tensor(&x).unwrap();
    let ours = max_pool2d(v.as_tensor(), (2, 2), (2, 2), (0, 0)).unwrap();
    let theirs = v.as_tensor().max_pool2d(2).unwrap();
    // Same forward...
    assert_eq!(values(&ours), values(&theirs));
    let g_ours = values(
        ours.sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(v.as_tensor())
            .unwrap(),
    );
    let g_theirs = values(
        theirs
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(v.as_tensor())
            .unwrap(),
    );
    // ...ours puts 1 on each window's maximum (checked by finite differences above)...
    assert_eq!(g_ours.iter().sum::<f64>(), 4.0);
    assert!(g_ours.iter().all(|&g| g == 0.0 || g == 1.0));
    // ...candle puts 1/4 there.
    assert_eq!(
        g_theirs.iter().sum::<f64>(),
        1.0,
        "candle's max_pool2d gradient changed: {g_theirs:?}"
    );
    assert_ne!(g_ours, g_theirs);
}

#[test]
fn max_pool_2x2_tiling_follows_the_tie_and_nan_rules() {
    // 2x2 windows, stride 2, on a 3x5 image: two windows, the last row and column in none.
    // Window 0 ties (1, 1, 1, 0): the first maximum takes the gradient. Window 1's maximum, in
    // its last position, takes the gradient; for the CPU kernel it is a NaN, which counts as the
    // maximum as in PyTorch (the generic path is built on candle's max, which skips NaN).
    for (name, f) in MAX_IMPLS {
        let top = if name == "cpu" { f64::NAN } else { 10.0 };
        #[rustfmt::skip]
        let x = t4(&[
            1., 1., 3., 2., 9.,
            1., 0., 3., top, 9.,
            7., 7., 7., 7., 7.,
        ], (1, 1, 3, 5));
        let v = Var::from_tensor(&x).unwrap();
        let y = f(v.as_tensor(), (2, 2), (2, 2), (0, 0)).unwrap();
        let out = values(&y);
        assert_eq!(out.len(), 2, "{name}");
        assert_eq!(out[0], 1.0, "{name}");
        assert!(
            out[1].is_nan() == top.is_nan() && (top.is_nan() || out[1] == top),
            "{name}: {out:?}"
        );
        let g = y.sum_all().unwrap().backward().unwrap();
        let dx = values(g.get(v.as_tensor()).unwrap());
        #[rustfmt::skip]
        let expected = vec![
            1., 0., 0., 0., 0.,
            0., 0., 0., 1., 0.,
            0., 0., 0., 0., 0.,
        ];
        assert_eq!(dx, expected, "{name}");
    }
}
