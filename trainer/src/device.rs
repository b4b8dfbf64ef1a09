//! Choosing where tensors live: `cpu` by default, `cuda:N` when built with the `cuda`
//! feature.

use candle_core::Device;
use thiserror::Error;

/// A device name that cannot be used.
#[derive(Debug, Error)]
pub enum DeviceError {
    /// Not `cpu`, `cuda` or `cuda:N`.
    #[error("unknown device {0:?} (expected cpu, cuda or cuda:N)")]
    Unknown(String),
    /// CUDA was asked for, but this binary was built without the `cuda` feature.
    #[error("device {0:?} needs a build with the `cuda` feature")]
    NoCuda(String),
    /// The CUDA device could not be opened.
    #[error("cannot open {name}: {source}")]
    Open {
        /// The device name.
        name: String,
        /// Why.
        source: candle_core::Error,
    },
}

/// Opens the device called `name`: `cpu`, `cuda` (the first GPU) or `cuda:N`.
pub fn open(name: &str) -> Result<Device, DeviceError> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("cpu") {
        return Ok(Device::Cpu);
    }
    let ordinal = match name.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| DeviceError::Unknown(name.to_string()))?,
        None => return Err(DeviceError::Unknown(name.to_string())),
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(DeviceError::NoCuda(name.to_string()));
    }
    Device::new_cuda(ordinal).map_err(|source| DeviceError::Open {
        name: name.to_string(),
        source,
    })
}

/// A short name of a device for reports: `cpu` or `cuda:N`.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(_) => match device.location() {
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            _ => "cuda".to_string(),
        },
        Device::Metal(_) => "metal".to_string(),
    }
}

/// The memory of a GPU in GiB, as `nvidia-smi` reports it; `None` for the CPU or when
/// `nvidia-smi` cannot tell.
pub fn memory_gib(device: &Device) -> Option<f64> {
    let candle_core::DeviceLocation::Cuda { gpu_id } = device.location() else {
        return None;
    };
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=memory.total",
            "--format=csv,noheader,nounits",
            &format!("--id={gpu_id}"),
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_mib(&String::from_utf8_lossy(&out.stdout)).map(|mib| mib / 1024.0)
}

/// The first line of `nvidia-smi`'s memory query, in MiB.
fn parse_mib(text: &str) -> Option<f64> {
    let mib: f64 = text.lines().next()?.trim().parse().ok()?;
    (mib.is_finite() && mib > 0.0).then_some(mib)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_nvidia_smi_memory() {
        assert_eq!(parse_mib("81559\n"), Some(81559.0));
        assert_eq!(parse_mib(" 143771 \n143771\n"), Some(143771.0));
        assert_eq!(parse_mib("[N/A]\n"), None);
        assert_eq!(parse_mib(""), None);
        assert_eq!(memory_gib(&Device::Cpu), None);
    }

    use super::*;

    #[test]
    fn parses_names() {
        assert!(matches!(open("cpu"), Ok(Device::Cpu)));
        assert!(matches!(open("tpu"), Err(DeviceError::Unknown(_))));
        assert!(matches!(open("cuda:x"), Err(DeviceError::Unknown(_))));
        #[cfg(not(feature = "cuda"))]
        assert!(matches!(open("cuda:0"), Err(DeviceError::NoCuda(_))));
    }
}
