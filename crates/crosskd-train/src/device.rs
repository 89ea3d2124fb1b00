//! The device a run's tensors live on: `cpu`, `cuda` or `cuda:N`.
//!
//! Every tensor of a session (weights, batches, teacher, projector, optimiser state) is created on
//! the chosen device. The small dense linear algebra of the spectra (SVD, eigenvalues) runs on the
//! CPU in f64 whatever the device: `crosskd_ops::linalg` copies its input to the host explicitly.

use candle_core::Device;

use crate::error::{Result, TrainError};

/// A parsed `device` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The CPU (default).
    Cpu,
    /// The CUDA GPU with this ordinal.
    Cuda(usize),
}

impl DeviceChoice {
    /// Parses `cpu`, `cuda` (GPU 0) or `cuda:N`; the error says what was expected.
    pub fn parse(text: &str) -> std::result::Result<DeviceChoice, String> {
        let expected = || format!("expected \"cpu\", \"cuda\" or \"cuda:N\", found \"{text}\"");
        match text.trim() {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(expected),
        }
    }

    /// How PyTorch and reports name it: `cpu` or `cuda:N`.
    pub fn label(self) -> String {
        match self {
            DeviceChoice::Cpu => "cpu".to_string(),
            DeviceChoice::Cuda(n) => format!("cuda:{n}"),
        }
    }

    /// Opens the device. Asking for CUDA from a build without the `cuda` feature, or on a machine
    /// without a usable GPU, is one error that says which.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(ordinal) => open_cuda(ordinal),
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| {
        TrainError::config(
            "device",
            format!("expected a usable CUDA GPU {ordinal}, but it could not be opened: {e}"),
        )
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Err(TrainError::config(
        "device",
        format!(
            "\"cuda:{ordinal}\" needs a crosskd built with the `cuda` feature (cargo build --release --features cuda); this build is CPU-only"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms_and_names_bad_input() {
        assert_eq!(DeviceChoice::parse("cpu"), Ok(DeviceChoice::Cpu));
        assert_eq!(DeviceChoice::parse("cuda"), Ok(DeviceChoice::Cuda(0)));
        assert_eq!(DeviceChoice::parse("cuda:3"), Ok(DeviceChoice::Cuda(3)));
        let e = DeviceChoice::parse("gpu").unwrap_err();
        assert!(e.contains("\"cuda:N\"") && e.contains("\"gpu\""), "{e}");
        assert!(DeviceChoice::parse("cuda:x").is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_one_clear_error() {
        let e = DeviceChoice::Cuda(0).open().unwrap_err().to_string();
        assert!(e.contains("`cuda` feature"), "{e}");
    }
}
