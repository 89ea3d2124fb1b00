//! Times the gemm crate on the matrix shapes of the convolution kernels in every orientation
//! (`cargo run --release -p crosskd-ops --example gemm_shapes`), single-threaded. This is how the
//! pixel-major im2col layout of `conv/patches.rs` was chosen, and (last section) how the implicit
//! im2col of `conv/implicit.rs` compares with a gemm over a ready im2col matrix; rerun it when
//! changing those layouts or the gemm crate.

use std::time::Instant;
/// Best-of-20 time of `dst (m×n) = lhs (m×k) · rhs (k×n)`, each given by its (row, column)
/// strides, printed with its GFLOP/s.
#[allow(clippy::too_many_arguments)]
fn run(
    name: &str,
    m: usize,
    n: usize,
    k: usize,
    d: (isize, isize),
    l: (isize, isize),
    r: (isize, isize),
    acc: bool,
) {
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0f32; m * n];
    let mut best = f64::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                d.1,
                d.0,
                acc,
                a.as_ptr(),
                l.1,
                l.0,
                b.as_ptr(),
                r.1,
                r.0,
                if acc { 1.0 } else { 0.0 },
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    let gf = 2.0 * (m * n * k) as f64 / best / 1e9;
    println!(
        "{name:40} m={m:5} n={n:6} k={k:5}: {:.3} ms  {gf:.1} GFLOP/s",
        best * 1e3
    );
}
fn main() {
    for (og, k, p) in [
        (32usize, 288usize, 4096usize),
        (32, 576, 4096),
        (64, 1152, 1024),
        (128, 1152, 256),
    ] {
        let (og_, k_, p_) = (og as isize, k as isize, p as isize);
        println!("-- og {og} K {k} P {p}");
        // forward Y(og×P) = W(og×K)·cols(K×P)
        run(
            "fwd A  rowmajor",
            og,
            p,
            k,
            (p_, 1),
            (k_, 1),
            (p_, 1),
            false,
        );
        run(
            "fwd B  transposed problem",
            p,
            og,
            k,
            (1, p_),
            (1, p_),
            (1, k_),
            false,
        );
        run(
            "fwd C  cols P×K",
            og,
            p,
            k,
            (p_, 1),
            (k_, 1),
            (1, k_),
            false,
        );
        run(
            "fwd E  rows cols, NCHW dst",
            p,
            og,
            k,
            (1, p_),
            (k_, 1),
            (1, k_),
            false,
        );
        run(
            "fwd D  NHWC Y(P×og)=cols(P×K)W^T",
            p,
            og,
            k,
            (og_, 1),
            (k_, 1),
            (1, k_),
            false,
        );
        // input grad cols(K×P) = W^T(K×og)·dY(og×P)
        run("igrad A", k, p, og, (p_, 1), (1, k_), (p_, 1), false);
        run(
            "igrad B transposed problem",
            p,
            k,
            og,
            (1, p_),
            (1, p_),
            (k_, 1),
            false,
        );
        run(
            "igrad C cols P×K",
            p,
            k,
            og,
            (k_, 1),
            (1, p_),
            (k_, 1),
            false,
        );
        // weight grad dW(og×K) += dY(og×P)·cols^T(P×K)
        run("wgrad A", og, k, p, (k_, 1), (p_, 1), (1, p_), true);
        run("wgrad B dW^T", k, og, p, (1, k_), (p_, 1), (1, p_), true);
        run(
            "wgrad C cols P×K",
            og,
            k,
            p,
            (k_, 1),
            (p_, 1),
            (k_, 1),
            true,
        );
        run(
            "wgrad D cols P×K, dW^T",
            k,
            og,
            p,
            (1, k_),
            (1, k_),
            (1, p_),
            true,
        );
    }
    println!(
        "-- implicit im2col (3×3, padding 1): gemms reading a padded channels-last image in place"
    );
    for (c, og, size) in [
        (32, 32, 64),
        (64, 32, 64),
        (64, 64, 32),
        (128, 64, 32),
        (128, 128, 16),
    ] {
        implicit(c, og, size);
    }
}

/// Best-of-20 milliseconds of `f`.
fn best_ms(mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best * 1e3
}

/// `dst (m×n) [+]= lhs (m×k) · rhs (k×n)`, every operand given by its (row, column) strides.
#[allow(clippy::too_many_arguments)]
fn gemm_raw(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    d: (isize, isize),
    lhs: &[f32],
    l: (isize, isize),
    rhs: &[f32],
    r: (isize, isize),
    accumulate: bool,
) {
    // SAFETY: the callers size every buffer for the views they pass (checked by hand: each view's
    // last element lies inside its slice).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            d.1,
            d.0,
            accumulate,
            lhs.as_ptr(),
            l.1,
            l.0,
            rhs.as_ptr(),
            r.1,
            r.0,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// One image of a 3×3 convolution `c → og` on `size × size`: forward and weight gradient as one
/// gemm over a ready im2col matrix, and as three gemms (one per kernel row) reading the padded
/// channels-last image in place (its rows overlap, `c` apart).
fn implicit(c: usize, og: usize, size: usize) {
    let (wp, hp, k, p) = (size + 2, size + 2, 9 * c, size * size);
    let pv = size * wp;
    let (image, cols) = (vec![0.5f32; (hp * wp + 2) * c], vec![0.5f32; p * k]);
    let (w, dy) = (vec![0.25f32; og * k], vec![0.1f32; og * pv]);
    let (mut out, mut dw) = (vec![0f32; pv * og], vec![0f32; og * k]);
    let (ki, og_i, c_i, p_i, pv_i) = (k as isize, og as isize, c as isize, p as isize, pv as isize);
    let fwd_cols = best_ms(|| {
        gemm_raw(
            (p, og, k),
            &mut out,
            (og_i, 1),
            &cols,
            (ki, 1),
            &w,
            (1, ki),
            false,
        )
    });
    let fwd_implicit = best_ms(|| {
        for row in 0..3 {
            let lhs = &image[row * wp * c..];
            let rhs = &w[row * 3 * c..];
            gemm_raw(
                (pv, og, 3 * c),
                &mut out,
                (og_i, 1),
                lhs,
                (c_i, 1),
                rhs,
                (1, ki),
                row > 0,
            );
        }
    });
    let wgrad_cols = best_ms(|| {
        gemm_raw(
            (og, k, p),
            &mut dw,
            (ki, 1),
            &dy,
            (p_i, 1),
            &cols,
            (ki, 1),
            true,
        )
    });
    let wgrad_implicit = best_ms(|| {
        for row in 0..3 {
            let (dst, rhs) = (&mut dw[row * 3 * c..], &image[row * wp * c..]);
            gemm_raw(
                (og, 3 * c, pv),
                dst,
                (ki, 1),
                &dy,
                (pv_i, 1),
                rhs,
                (c_i, 1),
                true,
            );
        }
    });
    let gflop = 2.0 * (p * k * og) as f64 / 1e6;
    println!(
        "c {c:3} og {og:3} {size:2}x{size:2}: forward im2col {fwd_cols:.3} ms ({:.0} GFLOP/s), implicit {fwd_implicit:.3} ms ({:.0}); weight grad im2col {wgrad_cols:.3} ms ({:.0}), implicit {wgrad_implicit:.3} ms ({:.0})",
        gflop / fwd_cols,
        gflop / fwd_implicit,
        gflop / wgrad_cols,
        gflop / wgrad_implicit,
    );
}
