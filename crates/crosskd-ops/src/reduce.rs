//! Sums in f64 over eight independent lanes, shared by the per-channel kernels (`channel::cpu`)
//! and the normalisation kernels (`norm::cpu`). Depends on nothing in the crate.

use candle_core::WithDType;

/// Partial sums per reduction: one f64 accumulator is a serial chain of dependent adds that
/// cannot vectorise (it showed in the profile of `cargo xtask bench train-step`); eight lanes can.
pub(crate) const LANES: usize = 8;

/// `Σ f(v)` over `xs`, in f64.
pub(crate) fn lane_sum<T: WithDType>(xs: &[T], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += f(v.to_f64());
        }
    }
    let rest: f64 = chunks.remainder().iter().map(|v| f(v.to_f64())).sum();
    acc.iter().sum::<f64>() + rest
}

/// `(Σ (v − shift), Σ (v − shift)²)` over `xs`, in f64.
pub(crate) fn lane_sums_shifted<T: WithDType>(xs: &[T], shift: f64) -> (f64, f64) {
    let (mut sum, mut sq) = ([0.0f64; LANES], [0.0f64; LANES]);
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for i in 0..LANES {
            let d = chunk[i].to_f64() - shift;
            sum[i] += d;
            sq[i] += d * d;
        }
    }
    let (mut s, mut q): (f64, f64) = (sum.iter().sum(), sq.iter().sum());
    for v in chunks.remainder() {
        let d = v.to_f64() - shift;
        s += d;
        q += d * d;
    }
    (s, q)
}

/// `(Σ g·h(x), Σ g)` over paired slices, in f64.
pub(crate) fn lane_dot_and_sum<T: WithDType>(
    g: &[T],
    x: &[T],
    h: impl Fn(f64) -> f64,
) -> (f64, f64) {
    let (mut dot, mut sum) = ([0.0f64; LANES], [0.0f64; LANES]);
    let (mut gc, mut xc) = (g.chunks_exact(LANES), x.chunks_exact(LANES));
    for (gs, xs) in (&mut gc).zip(&mut xc) {
        for i in 0..LANES {
            let gv = gs[i].to_f64();
            dot[i] += gv * h(xs[i].to_f64());
            sum[i] += gv;
        }
    }
    let (mut d, mut s): (f64, f64) = (dot.iter().sum(), sum.iter().sum());
    for (gv, xv) in gc.remainder().iter().zip(xc.remainder()) {
        d += gv.to_f64() * h(xv.to_f64());
        s += gv.to_f64();
    }
    (d, s)
}
