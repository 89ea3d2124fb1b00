//! Resizing: hand-computed forward cases (PyTorch `nearest` and `bilinear, align_corners=False`),
//! finite-difference gradient checks (including inputs with several consumers) and a regression
//! test documenting candle's overwriting `upsample_nearest2d` backward.

use candle_core::{DType, Device, Tensor, Var};
use crosskd_ops::gradcheck::{assert_gradients, random_f64, values};
use crosskd_ops::resize::{self, resize_bilinear, resize_nearest, upsample_nearest2d};

const EPS: f64 = 1e-6;
const TOL: f64 = 1e-6;

fn assert_close(got: &[f64], expected: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(
            (g - e).abs() <= tol,
            "{what}: element {i} is {g}, expected {e}\n got {got:?}"
        );
    }
}

type Resize = fn(&Tensor, usize, usize) -> crosskd_ops::Result<Tensor>;
const BILINEAR_IMPLS: [(&str, Resize); 2] = [
    ("cpu", resize_bilinear),
    ("generic", resize::generic::resize_bilinear),
];
const NEAREST_IMPLS: [(&str, Resize); 2] = [
    ("cpu", resize_nearest),
    ("generic", resize::generic::resize_nearest),
];
const UPSAMPLE_IMPLS: [(&str, Resize); 2] = [
    ("cpu", upsample_nearest2d),
    ("generic", resize::generic::upsample_nearest2d),
];

#[test]
fn upsample_nearest_by_hand() {
    let x = Tensor::from_slice(&[1f64, 2., 3., 4.], (1, 1, 2, 2), &Device::Cpu).unwrap();
    for (name, f) in UPSAMPLE_IMPLS {
        let y = f(&x, 2, 3).unwrap();
        assert_eq!(y.dims(), &[1, 1, 4, 6], "{name}");
        #[rustfmt::skip]
        let expected = [
            1., 1., 1., 2., 2., 2.,
            1., 1., 1., 2., 2., 2.,
            3., 3., 3., 4., 4., 4.,
            3., 3., 3., 4., 4., 4.,
        ];
        assert_close(&values(&y), &expected, 0.0, name);
    }
}

#[test]
fn nearest_source_indices_follow_pytorch() {
    // PyTorch: src = min(floor(dst * in/out), in - 1) in f32.
    // 3 -> 5: scale 0.6: 0, 0.6, 1.2, 1.8, 2.4 -> 0, 0, 1, 1, 2.
    let up: Vec<usize> = (0..5)
        .map(|d| resize::nearest_source_index(d, 3, 5))
        .collect();
    assert_eq!(up, vec![0, 0, 1, 1, 2]);
    // 5 -> 3: scale 5/3: 0, 1.67, 3.33 -> 0, 1, 3.
    let down: Vec<usize> = (0..3)
        .map(|d| resize::nearest_source_index(d, 5, 3))
        .collect();
    assert_eq!(down, vec![0, 1, 3]);
    // 2 -> 4 (exact factor 2) -> 0, 0, 1, 1.
    let two: Vec<usize> = (0..4)
        .map(|d| resize::nearest_source_index(d, 2, 4))
        .collect();
    assert_eq!(two, vec![0, 0, 1, 1]);

    let x = Tensor::arange(0f64, 15., &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 3, 5))
        .unwrap();
    for (name, f) in NEAREST_IMPLS {
        // rows 3 -> 5 pick [0, 0, 1, 1, 2]; columns 5 -> 3 pick [0, 1, 3].
        let y = f(&x, 5, 3).unwrap();
        #[rustfmt::skip]
        let expected = [
            0., 1., 3.,
            0., 1., 3.,
            5., 6., 8.,
            5., 6., 8.,
            10., 11., 13.,
        ];
        assert_close(&values(&y), &expected, 0.0, name);
    }
}

#[test]
fn bilinear_2x2_to_4x4_by_hand() {
    // align_corners=False, 2 -> 4: src = (dst + 0.5)/2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75,
    // 1.25 (i0 = 1 is the last row, so i1 = 1): a row [a, b] becomes [a, .75a+.25b, .25a+.75b, b].
    let x = Tensor::from_slice(&[1f64, 2., 3., 4.], (1, 1, 2, 2), &Device::Cpu).unwrap();
    #[rustfmt::skip]
    let expected = [
        1.0, 1.25, 1.75, 2.0,
        1.5, 1.75, 2.25, 2.5,
        2.5, 2.75, 3.25, 3.5,
        3.0, 3.25, 3.75, 4.0,
    ];
    for (name, f) in BILINEAR_IMPLS {
        assert_close(&values(&f(&x, 4, 4).unwrap()), &expected, 1e-15, name);
    }
}

#[test]
fn bilinear_downsizing_by_hand() {
    // 4 -> 2: src = (dst + 0.5)*2 - 0.5 = 0.5, 2.5: each output is the mean of a 2x2 block.
    let x = Tensor::arange(0f64, 16., &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 4, 4))
        .unwrap();
    let expected = [2.5, 4.5, 10.5, 12.5];
    // 4 -> 3 along columns: scale 4/3, src = 1/6, 1.5, 17/6 -> weights (5/6, 1/6) on (0, 1),
    // (1/2, 1/2) on (1, 2), (1/6, 5/6) on (2, 3); the first row 0..3 gives 1/6, 1.5, 17/6.
    let row0 = [1.0 / 6.0, 1.5, 17.0 / 6.0];
    for (name, f) in BILINEAR_IMPLS {
        assert_close(&values(&f(&x, 2, 2).unwrap()), &expected, 1e-15, name);
        let y = f(&x, 4, 3).unwrap();
        assert_close(&values(&y)[..3], &row0, 1e-14, name);
    }
}

#[test]
fn resize_gradients_match_finite_differences() {
    let x = random_f64(&[2, 2, 3, 5], 40).unwrap();
    for (name, f) in UPSAMPLE_IMPLS {
        for (sh, sw) in [(2, 2), (3, 1), (2, 3)] {
            assert_gradients(
                &format!("upsample_nearest2d[{name}] x{sh}x{sw}"),
                |a| Ok(f(&a[0], sh, sw)?),
                std::slice::from_ref(&x),
                EPS,
                TOL,
            );
        }
    }
    // Odd sizes, up and down, and unchanged.
    for (name, f) in NEAREST_IMPLS.into_iter().chain(BILINEAR_IMPLS) {
        for (oh, ow) in [(7, 9), (2, 3), (5, 2), (3, 5), (1, 1)] {
            assert_gradients(
                &format!("{name} resize 3x5 -> {oh}x{ow}"),
                |a| Ok(f(&a[0], oh, ow)?),
                std::slice::from_ref(&x),
                EPS,
                TOL,
            );
        }
    }
}

#[test]
fn bilinear_gradient_matches_finite_differences_on_larger_odd_sizes() {
    let x = random_f64(&[1, 2, 7, 5], 41).unwrap();
    for (name, f) in BILINEAR_IMPLS {
        for (oh, ow) in [(13, 11), (3, 4), (4, 13)] {
            assert_gradients(
                &format!("resize_bilinear[{name}] 7x5 -> {oh}x{ow}"),
                |a| Ok(f(&a[0], oh, ow)?),
                std::slice::from_ref(&x),
                EPS,
                TOL,
            );
        }
    }
}

#[test]
fn input_with_several_consumers_accumulates_gradients() {
    // The UNet pattern: x is upsampled *and* used directly (and resized bilinearly).
    let x = random_f64(&[1, 2, 3, 4], 42).unwrap();
    let skip = random_f64(&[1, 2, 6, 8], 43).unwrap();
    for i in 0..2 {
        assert_gradients(
            &format!("upsample(x) * bilinear(x) + nearest(x) + skip (impl {i})"),
            |a| {
                let (up, bil, near) =
                    (UPSAMPLE_IMPLS[i].1, BILINEAR_IMPLS[i].1, NEAREST_IMPLS[i].1);
                let u = up(&a[0], 2, 2)?;
                let b = bil(&a[0], 6, 8)?;
                let n = near(&a[0], 6, 8)?;
                ((u * b)? + n)? + &a[1]
            },
            &[x.clone(), skip.clone()],
            EPS,
            TOL,
        );
        assert_gradients(
            &format!("upsample(x) then x^2 (impl {i})"),
            |a| {
                let u = UPSAMPLE_IMPLS[i].1(&a[0], 2, 1)?.sum_all()?;
                a[0].sqr()?.sum_all()? + u
            },
            std::slice::from_ref(&x),
            EPS,
            TOL,
        );
    }
}

#[test]
fn f32_matches_f64() {
    let x64 = random_f64(&[2, 3, 5, 7], 44).unwrap();
    let x32 = x64.to_dtype(DType::F32).unwrap();
    for (name, f) in UPSAMPLE_IMPLS
        .into_iter()
        .chain(NEAREST_IMPLS)
        .chain(BILINEAR_IMPLS)
    {
        let a = values(&f(&x64, 3, 2).unwrap());
        let b = values(&f(&x32, 3, 2).unwrap());
        assert_close(&b, &a, 1e-6, name);
    }
    let grad_of = |x: &Tensor| {
        let v = Var::from_tensor(x).unwrap();
        let y = resize_bilinear(v.as_tensor(), 9, 4).unwrap();
        let z = upsample_nearest2d(v.as_tensor(), 2, 2).unwrap();
        let loss =
            (y.sqr().unwrap().sum_all().unwrap() + z.sqr().unwrap().sum_all().unwrap()).unwrap();
        values(loss.backward().unwrap().get(v.as_tensor()).unwrap())
    };
    assert_close(&grad_of(&x32), &grad_of(&x64), 1e-5, "gradients");
}

#[test]
fn rejects_bad_arguments() {
    let x = random_f64(&[1, 1, 4, 4], 45).unwrap();
    assert!(upsample_nearest2d(&x, 0, 2).is_err());
    assert!(resize_bilinear(&x, 0, 3).is_err());
    assert!(resize_nearest(&x, 3, 0).is_err());
    let x3 = random_f64(&[1, 4, 4], 46).unwrap();
    assert!(upsample_nearest2d(&x3, 2, 2).is_err());
    assert!(resize_bilinear(&x3, 2, 2).is_err());
}

/// candle 0.11.1's `upsample_nearest2d` backward *assigns* its result to the input's gradient
/// instead of adding it, dropping every other consumer's contribution. This test exists so that a
/// future candle fix is noticed (it will then fail): re-check `docs/ops.md` and the clippy ban.
#[test]
#[allow(clippy::disallowed_methods)]
fn candle_upsample_nearest_overwrites_accumulated_gradients() {
    let x = random_f64(&[1, 1, 2, 2], 47).unwrap();
    let v = Var::from_tensor(&x).unwrap();
    // loss = sum(upsample(x)) + sum(3·x): d/dx = 4 + 3 = 7 everywhere.
    let grad = |up: &Tensor| {
        let loss = (up.sum_all().unwrap()
            + v.as_tensor().affine(3.0, 0.0).unwrap().sum_all().unwrap())
        .unwrap();
        values(loss.backward().unwrap().get(v.as_tensor()).unwrap())
    };
    let ours = grad(&upsample_nearest2d(v.as_tensor(), 2, 2).unwrap());
    assert_eq!(ours, vec![7.0; 4]);
    let theirs = grad(&v.as_tensor().upsample_nearest2d(4, 4).unwrap());
    assert_ne!(
        theirs,
        vec![7.0; 4],
        "candle's upsample_nearest2d gradient now accumulates"
    );
}
