//! `--device` of `cargo xtask bench`: `cpu` (default), `cuda` (GPU 0) or `cuda:N`.
//!
//! The same spelling and the same two failures as the trainer's `device` setting: a CUDA device
//! asked of a build without the `cuda` feature, or of a machine where the GPU cannot be opened, is
//! one error that says which — never a silent fall-back to the CPU, which would publish CPU
//! timings under a GPU heading.

use candle_core::Device;

/// A parsed `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchDevice {
    /// The CPU.
    Cpu,
    /// The CUDA GPU with this ordinal.
    Cuda(usize),
}

impl BenchDevice {
    /// Parses `cpu`, `cuda` (GPU 0) or `cuda:N`; the error says what was expected (clap shows it).
    pub fn parse(text: &str) -> Result<BenchDevice, String> {
        match text.trim() {
            "cpu" => Ok(BenchDevice::Cpu),
            "cuda" => Ok(BenchDevice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(BenchDevice::Cuda)
                .ok_or_else(|| format!("expected cpu, cuda or cuda:N, found `{text}`")),
        }
    }

    /// How PyTorch and the reports name it: `cpu` or `cuda:N`.
    pub fn label(self) -> String {
        match self {
            BenchDevice::Cpu => "cpu".to_string(),
            BenchDevice::Cuda(n) => format!("cuda:{n}"),
        }
    }

    /// Opens the device, or says why it cannot be.
    pub fn open(self) -> anyhow::Result<Device> {
        match self {
            BenchDevice::Cpu => Ok(Device::Cpu),
            BenchDevice::Cuda(ordinal) => open_cuda(ordinal),
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> anyhow::Result<Device> {
    use anyhow::Context;
    Device::new_cuda(ordinal).with_context(|| {
        format!(
            "--device cuda:{ordinal}: expected a usable CUDA GPU {ordinal} (driver loaded, \
             `nvidia-smi` lists it), but it could not be opened"
        )
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> anyhow::Result<Device> {
    // `Device::new_cuda` would also fail here; the point is to say how to get a build that works.
    anyhow::bail!(
        "--device cuda:{ordinal} needs xtask built with the `cuda` feature \
         (cargo build --release -p xtask --features cuda); this build is CPU-only"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms_and_names_bad_input() {
        assert_eq!(BenchDevice::parse("cpu"), Ok(BenchDevice::Cpu));
        assert_eq!(BenchDevice::parse("cuda"), Ok(BenchDevice::Cuda(0)));
        assert_eq!(BenchDevice::parse("cuda:2"), Ok(BenchDevice::Cuda(2)));
        let e = BenchDevice::parse("gpu").unwrap_err();
        assert!(e.contains("cuda:N") && e.contains("`gpu`"), "{e}");
        assert!(BenchDevice::parse("cuda:").is_err());
        assert_eq!(BenchDevice::Cuda(1).label(), "cuda:1");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_one_clear_error() {
        let e = format!("{:#}", BenchDevice::Cuda(0).open().unwrap_err());
        assert!(e.contains("`cuda` feature"), "{e}");
    }
}
