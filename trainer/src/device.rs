//! Choosing where tensors live: `cpu` by default, `cuda:N` when built with the `cuda`
//! feature; a node may train on several GPUs (`cuda` for all of them, or a list).

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

/// Which devices a node trains on, as `node.device` names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU.
    Cpu,
    /// `cuda`: every GPU of the machine.
    AllGpus,
    /// `cuda:N`, or a list `cuda:0,cuda:2`: these GPUs.
    Gpus(Vec<usize>),
}

/// Parses `cpu`, `cuda` (every GPU), `cuda:N` or a comma-separated list of `cuda:N`.
pub fn parse_spec(name: &str) -> Result<DeviceSpec, DeviceError> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("cpu") {
        return Ok(DeviceSpec::Cpu);
    }
    if name == "cuda" {
        return Ok(DeviceSpec::AllGpus);
    }
    let mut ordinals = Vec::new();
    for part in name.split(',') {
        let n = part
            .trim()
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| DeviceError::Unknown(name.to_string()))?;
        if !ordinals.contains(&n) {
            ordinals.push(n);
        }
    }
    Ok(DeviceSpec::Gpus(ordinals))
}

/// How many GPUs `nvidia-smi -L` lists (0 if it cannot tell).
fn gpu_count() -> usize {
    std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or(0, |o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("GPU "))
                .count()
        })
}

/// Opens every device `name` names: the CPU, each GPU of a list, or for `cuda` every GPU
/// the machine has (at least the first).
pub fn open_all(name: &str) -> Result<Vec<Device>, DeviceError> {
    let ordinals = match parse_spec(name)? {
        DeviceSpec::Cpu => return Ok(vec![Device::Cpu]),
        DeviceSpec::AllGpus => (0..gpu_count().max(1)).collect(),
        DeviceSpec::Gpus(list) => list,
    };
    ordinals
        .into_iter()
        .map(|n| open(&format!("cuda:{n}")))
        .collect()
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
    fn parses_device_lists() {
        assert_eq!(parse_spec("cpu").unwrap(), DeviceSpec::Cpu);
        assert_eq!(parse_spec(" CPU ").unwrap(), DeviceSpec::Cpu);
        assert_eq!(parse_spec("cuda").unwrap(), DeviceSpec::AllGpus);
        assert_eq!(parse_spec("cuda:1").unwrap(), DeviceSpec::Gpus(vec![1]));
        assert_eq!(
            parse_spec("cuda:0, cuda:2,cuda:0").unwrap(),
            DeviceSpec::Gpus(vec![0, 2])
        );
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:0,cpu", "cuda:0,", ""] {
            assert!(parse_spec(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(open_all("cpu").unwrap()[..], [Device::Cpu]));
        #[cfg(not(feature = "cuda"))]
        assert!(matches!(
            open_all("cuda:0,cuda:1"),
            Err(DeviceError::NoCuda(_))
        ));
    }

    #[test]
    fn parses_names() {
        assert!(matches!(open("cpu"), Ok(Device::Cpu)));
        assert!(matches!(open("tpu"), Err(DeviceError::Unknown(_))));
        assert!(matches!(open("cuda:x"), Err(DeviceError::Unknown(_))));
        #[cfg(not(feature = "cuda"))]
        assert!(matches!(open("cuda:0"), Err(DeviceError::NoCuda(_))));
    }
}
