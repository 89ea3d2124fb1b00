//! The interface every architecture implements: a forward pass that also returns the features at
//! named taps, and the list of taps with their shapes for a given input size.

use std::collections::BTreeMap;

use candle_core::Tensor;

use crate::error::{ModelError, Result};

/// Tap names with their per-sample shapes (`[C, H, W]` for maps, `[D]` for vectors; the batch
/// dimension is left out), in network order.
pub type TapShapes = Vec<(String, Vec<usize>)>;

/// A network whose intermediate features can be read at named taps.
///
/// Inputs are `(N, C_in, H, W)`; every tap value has shape `(N, ..shape)` with the shape listed by
/// [`TappedNetwork::tap_shapes`] for that input size.
pub trait TappedNetwork: Send + Sync {
    /// A short name of the architecture, used in messages (e.g. `unet`, `mobilenet-v2`).
    fn arch_name(&self) -> String;

    /// The forward pass on `x`, offering the value of every tap to `rec` in network order
    /// ([`TapRecorder::offer`]); returns the output, or `None` when `rec` ended the pass at a tap.
    /// `train` selects batch-norm behaviour (batch statistics and running-average updates).
    /// Callers use [`TappedNetwork::forward_with_taps`] or [`TappedNetwork::tap_features`].
    fn pass(&self, x: &Tensor, train: bool, rec: &mut TapRecorder<'_>) -> Result<Option<Tensor>>;

    /// Runs the network on `x`; returns its output and the features at `taps`.
    /// Unknown tap names are an error listing the available ones.
    fn forward_with_taps(
        &self,
        x: &Tensor,
        train: bool,
        taps: &[&str],
    ) -> Result<(Tensor, BTreeMap<String, Tensor>)> {
        let mut rec = TapRecorder::new(self, x, taps)?;
        let out = self.pass(x, train, &mut rec)?.ok_or_else(|| {
            ModelError::config(
                &self.arch_name(),
                "the forward pass ended at a tap although its output was wanted",
            )
        })?;
        Ok((out, rec.finish()))
    }

    /// Every tap with its per-sample shape for an input of `input_hw = (H, W)`, or an error when
    /// the architecture cannot take that size.
    fn tap_shapes(&self, input_hw: (usize, usize)) -> Result<TapShapes>;

    /// The tap whose value equals the network's output.
    fn output_tap(&self) -> String;

    /// Runs the network and returns its output only.
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.forward_with_taps(x, train, &[])?.0)
    }

    /// The features at `taps` alone: what [`TappedNetwork::forward_with_taps`] returns beside the
    /// output, from a pass that ends at the last requested tap (a teacher distilled at its
    /// bottleneck runs no decoder). With `train`, only the layers that ran update statistics.
    fn tap_features(
        &self,
        x: &Tensor,
        train: bool,
        taps: &[&str],
    ) -> Result<BTreeMap<String, Tensor>> {
        let mut rec = TapRecorder::features_only(self, x, taps)?;
        self.pass(x, train, &mut rec)?;
        Ok(rec.finish())
    }
}

/// Checks that every name in `taps` exists for `net` at `input_hw`; returns the shapes of the
/// requested taps (in request order), or [`ModelError::UnknownTap`] listing all available taps
/// with their shapes. Call it before the first training step.
pub fn validate_taps(
    net: &dyn TappedNetwork,
    input_hw: (usize, usize),
    taps: &[&str],
) -> Result<TapShapes> {
    check_taps(net, input_hw, taps)
}

/// [`validate_taps`] for any network, sized or not.
fn check_taps<N: TappedNetwork + ?Sized>(
    net: &N,
    input_hw: (usize, usize),
    taps: &[&str],
) -> Result<TapShapes> {
    let all = net.tap_shapes(input_hw)?;
    let unknown: Vec<String> = taps
        .iter()
        .filter(|t| !all.iter().any(|(name, _)| name == *t))
        .map(|t| t.to_string())
        .collect();
    if !unknown.is_empty() {
        return Err(ModelError::UnknownTap {
            arch: net.arch_name(),
            unknown,
            height: input_hw.0,
            width: input_hw.1,
            available: format_tap_shapes(&all),
        });
    }
    Ok(taps
        .iter()
        .map(|t| {
            all.iter()
                .find(|(name, _)| name == t)
                .cloned()
                .unwrap_or_default()
        })
        .collect())
}

/// One line per tap: `  name: [C, H, W]`.
pub fn format_tap_shapes(shapes: &TapShapes) -> String {
    shapes
        .iter()
        .map(|(name, shape)| format!("  {name}: {shape:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Collects the features at the requested taps during a forward pass
/// ([`TappedNetwork::pass`]), and tells the pass when it may end.
pub struct TapRecorder<'a> {
    wanted: &'a [&'a str],
    taken: BTreeMap<String, Tensor>,
    /// Distinct requested taps when the pass may end once it has them all (features only).
    stop_after: Option<usize>,
}

impl<'a> TapRecorder<'a> {
    /// Checks the names against the network's taps at the input's size, then starts recording
    /// for a whole pass.
    fn new<N: TappedNetwork + ?Sized>(net: &N, x: &Tensor, wanted: &'a [&'a str]) -> Result<Self> {
        if !wanted.is_empty() {
            let (_, _, h, w) = x.dims4()?;
            check_taps(net, (h, w), wanted)?;
        }
        Ok(Self {
            wanted,
            taken: BTreeMap::new(),
            stop_after: None,
        })
    }

    /// [`TapRecorder::new`] for a pass that wants the features only and ends at the last one.
    fn features_only<N: TappedNetwork + ?Sized>(
        net: &N,
        x: &Tensor,
        wanted: &'a [&'a str],
    ) -> Result<Self> {
        let mut rec = Self::new(net, x, wanted)?;
        let distinct: std::collections::BTreeSet<&str> = wanted.iter().copied().collect();
        rec.stop_after = Some(distinct.len());
        Ok(rec)
    }

    /// Keeps `value` if the tap `name` was requested; true when the pass may end here (features
    /// only, and every requested tap is taken).
    pub fn offer(&mut self, name: &str, value: &Tensor) -> bool {
        if self.wanted.contains(&name) {
            self.taken.insert(name.to_string(), value.clone());
        }
        self.stop_after.is_some_and(|n| self.taken.len() >= n)
    }

    /// The recorded features.
    fn finish(self) -> BTreeMap<String, Tensor> {
        self.taken
    }
}
