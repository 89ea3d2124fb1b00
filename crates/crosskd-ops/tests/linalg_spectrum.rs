//! Tests of the spectrum summaries `stable_rank` and `effective_rank` on hand-computed spectra.

use crosskd_ops::linalg::{effective_rank, stable_rank};

#[test]
fn stable_rank_hand_computed() {
    // (9 + 16 + 0) / 16 = 25/16.
    assert!((stable_rank(&[3.0, 4.0, 0.0]) - 25.0 / 16.0).abs() < 1e-15);
    // k equal values: k.
    assert!((stable_rank(&[2.0; 7]) - 7.0).abs() < 1e-14);
    assert_eq!(stable_rank(&[5.0]), 1.0);
    assert_eq!(stable_rank(&[0.0, 0.0]), 0.0);
    assert_eq!(stable_rank(&[]), 0.0);
    // Huge values do not overflow: (1e300² + 1e300²) / 1e300² = 2.
    assert!((stable_rank(&[1e300, 1e300]) - 2.0).abs() < 1e-14);
}

#[test]
fn effective_rank_hand_computed() {
    // k equal values: p_i = 1/k, H = ln k, erank = k.
    assert!((effective_rank(&[3.0; 5]) - 5.0).abs() < 1e-13);
    // A single nonzero value: p = (1, 0, 0), H = 0, erank = 1.
    assert!((effective_rank(&[4.0, 0.0, 0.0]) - 1.0).abs() < 1e-15);
    // σ = (3, 1): p = (3/4, 1/4), H = −(3/4)ln(3/4) − (1/4)ln(1/4) = ln 4 − (3/4) ln 3,
    // erank = 4 · 3^(−3/4).
    let want = 4.0 * 3f64.powf(-0.75);
    assert!((effective_rank(&[3.0, 1.0]) - want).abs() < 1e-14);
    // Order and scale do not matter.
    assert!((effective_rank(&[1.0, 3.0]) - want).abs() < 1e-14);
    assert!((effective_rank(&[30.0, 10.0]) - want).abs() < 1e-14);
    assert_eq!(effective_rank(&[0.0, 0.0]), 0.0);
    assert_eq!(effective_rank(&[]), 0.0);
}

#[test]
fn ranks_are_bounded_by_the_number_of_values() {
    let spectrum = [10.0, 5.0, 2.0, 1.0, 0.5, 0.1];
    for r in [stable_rank(&spectrum), effective_rank(&spectrum)] {
        assert!((1.0..=6.0).contains(&r), "{r}");
    }
}
