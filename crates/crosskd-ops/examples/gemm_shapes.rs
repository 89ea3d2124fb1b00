//! Times the gemm crate on the matrix shapes of the convolution kernels in every orientation
//! (`cargo run --release -p crosskd-ops --example gemm_shapes`), single-threaded. This is how the
//! pixel-major im2col layout of `conv/cpu.rs` was chosen; rerun it when changing that layout or
//! the gemm crate.

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
}
