//! Run settings every layer names but no layer computes: the numeric type, the device and the batch size, parsed once
//! from the user's words (`--dtype`, `--device`, `--batch-size`, lm-eval's `dtype=` and `device=`) into types the
//! backend then maps to its own.

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;

/// lm-eval's default `--max_batch_size`, the first size `auto` tries.
pub const DEFAULT_MAX_BATCH_SIZE: usize = 64;

/// Requests per forward pass: a fixed number, or lm-eval's `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchSize {
    /// Always this many (the last batch of a kind may be smaller).
    Fixed(NonZeroUsize),
    /// The largest size up to `max` that fits (lm-eval's `--batch_size auto` with `--max_batch_size`): tried on the
    /// longest requests first and halved whenever the device runs out of memory, the failed batch retried.
    Auto {
        /// The first size tried.
        max: NonZeroUsize,
    },
}

impl FromStr for BatchSize {
    type Err = String;

    /// `auto` or a positive integer.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "auto" {
            let max = NonZeroUsize::new(DEFAULT_MAX_BATCH_SIZE).expect("the default is positive");
            return Ok(BatchSize::Auto { max });
        }
        match text.parse::<NonZeroUsize>() {
            Ok(size) => Ok(BatchSize::Fixed(size)),
            Err(_) => Err(format!("`{text}` is not a batch size; use a positive integer or auto")),
        }
    }
}

impl fmt::Display for BatchSize {
    /// `8`, or `auto` as lm-eval records it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchSize::Fixed(size) => write!(f, "{size}"),
            BatchSize::Auto { .. } => f.write_str("auto"),
        }
    }
}

/// The numeric type weights and activations are held in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit float: the reference precision of every parity test.
    #[serde(alias = "float32")]
    F32,
    /// bfloat16: the dtype BSC's checkpoints are published and evaluated in.
    #[serde(alias = "bfloat16")]
    Bf16,
    /// IEEE half precision (CUDA only).
    #[serde(alias = "float16", alias = "half")]
    F16,
}

impl FromStr for Dtype {
    type Err = String;

    /// `f32`, `bf16`, `f16`, and lm-eval's spellings `float32`, `bfloat16`, `float16`, `half`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "f32" | "float32" => Ok(Dtype::F32),
            "bf16" | "bfloat16" => Ok(Dtype::Bf16),
            "f16" | "float16" | "half" => Ok(Dtype::F16),
            other => Err(format!("unknown dtype `{other}`; use f32, bf16 or f16")),
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
        })
    }
}

/// One device handle: the CPU or one CUDA GPU. A run may name a device more than once (`cpu,cpu`, `cuda:0,cuda:0`):
/// each handle is a place to put layers, and handles of one device share its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceSpec {
    /// The CPU.
    Cpu,
    /// CUDA GPU `N` (`cuda:N`).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    /// `cpu` or `cuda:N`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.trim() {
            "cpu" => Ok(DeviceSpec::Cpu),
            other => other.strip_prefix("cuda:").and_then(|n| n.parse().ok()).map(DeviceSpec::Cuda).ok_or_else(|| {
                format!("unknown device `{other}`; use cpu, cuda, cuda:N, a comma-separated list or auto")
            }),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The devices a run may use, as `--device` names them. The backend lays the model over them: one copy over the
/// fewest handles that hold it, and as many such replicas as the handles allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Devices {
    /// `auto`: every visible CUDA GPU when the build has CUDA and one answers, else the CPU.
    Auto,
    /// `cuda`: every visible CUDA GPU.
    AllCuda,
    /// The handles named, in order: `cpu`, `cuda:1`, `cuda:0,cuda:1`, `cpu,cpu`.
    List(Vec<DeviceSpec>),
}

impl Devices {
    /// The handles named, when the user named them (not `auto` or `cuda`).
    pub fn named(&self) -> Option<&[DeviceSpec]> {
        match self {
            Devices::List(handles) => Some(handles),
            Devices::Auto | Devices::AllCuda => None,
        }
    }
}

impl FromStr for Devices {
    type Err = String;

    /// `auto`, `cuda`, or a comma-separated list of `cpu` and `cuda:N`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "auto" => Ok(Devices::Auto),
            "cuda" => Ok(Devices::AllCuda),
            list => list
                .split(',')
                .map(|entry| match entry.trim() {
                    "" => Err(format!("`{list}` has an empty entry; separate devices with single commas")),
                    "cuda" | "auto" => Err(format!(
                        "`{entry}` cannot be part of a list; name each GPU as cuda:N (`cuda` alone is every GPU)"
                    )),
                    handle => handle.parse(),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Devices::List),
        }
    }
}

impl fmt::Display for Devices {
    /// As parsed: `auto`, `cuda`, `cuda:0,cuda:1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Devices::Auto => f.write_str("auto"),
            Devices::AllCuda => f.write_str("cuda"),
            Devices::List(handles) => {
                f.write_str(&handles.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
            }
        }
    }
}

/// `--max-memory`: how much memory ibex may use on each device handle (weights, plus the reserve kept for
/// activations), replacing what the device reports free. accelerate's `max_memory`, in its spellings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MaxMemory {
    /// What each device reports free.
    #[default]
    Free,
    /// One size for every handle (`40GiB`; two handles of one device get it each).
    Each(u64),
    /// One size per handle, in `--device` order (`30GiB,30GiB`).
    Positional(Vec<u64>),
    /// A size per device (`cuda:0=60GiB,cuda:1=60GiB`, or accelerate's `0=60GiB`), shared by that device's
    /// handles; a device left out is measured.
    PerDevice(Vec<(DeviceSpec, u64)>),
}

impl FromStr for MaxMemory {
    type Err = String;

    /// `SIZE`, `SIZE,SIZE,…` or `DEVICE=SIZE,…`, a size as [`parse_bytes`] reads it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        if parts.iter().all(|p| p.contains('=')) {
            let pairs = parts
                .iter()
                .map(|p| {
                    let (device, size) = p.split_once('=').expect("checked");
                    // accelerate's keys: a GPU's ordinal (`0`), or `cpu`.
                    let device = match device.trim().parse::<usize>() {
                        Ok(ordinal) => DeviceSpec::Cuda(ordinal),
                        Err(_) => device.parse()?,
                    };
                    Ok((device, parse_bytes(size)?))
                })
                .collect::<Result<Vec<_>, String>>()?;
            return Ok(MaxMemory::PerDevice(pairs));
        }
        if parts.iter().any(|p| p.contains('=')) {
            return Err(format!(
                "`{text}` mixes DEVICE=SIZE with plain sizes; give every entry as DEVICE=SIZE, or sizes in --device order"
            ));
        }
        let sizes = parts.iter().map(|p| parse_bytes(p)).collect::<Result<Vec<_>, _>>()?;
        Ok(match sizes.as_slice() {
            [one] => MaxMemory::Each(*one),
            _ => MaxMemory::Positional(sizes),
        })
    }
}

/// A memory size as accelerate and transformers write it: a number of bytes, or a number with `KB`, `MB`, `GB`,
/// `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024), in any case (`60GiB`, `64GB`, `1.5 GiB`).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(format!("`{text}` is not a memory size; write it as 60GiB, 64GB or 512MiB")),
    };
    match number.parse::<f64>() {
        Ok(value) if value > 0.0 && value.is_finite() => Ok((value * scale as f64).round() as u64),
        _ => Err(format!("`{text}` is not a memory size; write it as 60GiB, 64GB or 512MiB")),
    }
}

/// A size for people, in binary units as `nvidia-smi` and the dry run print them: `1.50 GiB`, `3.2 MiB`, `930 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    let bytes = bytes as f64;
    match bytes {
        b if b >= f64::from(1u32 << 30) => format!("{:.2} GiB", b / f64::from(1u32 << 30)),
        b if b >= f64::from(1u32 << 20) => format!("{:.1} MiB", b / f64::from(1u32 << 20)),
        b => format!("{:.0} KiB", (b / 1024.0).ceil()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtypes_and_devices_parse_in_lm_evals_spellings_too() {
        assert_eq!("bfloat16".parse::<Dtype>(), Ok(Dtype::Bf16));
        assert_eq!("half".parse::<Dtype>(), Ok(Dtype::F16));
        assert_eq!("f8".parse::<Dtype>().unwrap_err(), "unknown dtype `f8`; use f32, bf16 or f16");
        assert_eq!("cuda".parse::<Devices>(), Ok(Devices::AllCuda));
        assert_eq!("cuda:3".parse::<Devices>(), Ok(Devices::List(vec![DeviceSpec::Cuda(3)])));
        assert_eq!("cpu,cpu".parse::<Devices>(), Ok(Devices::List(vec![DeviceSpec::Cpu, DeviceSpec::Cpu])));
        assert_eq!(
            "gpu".parse::<Devices>().unwrap_err(),
            "unknown device `gpu`; use cpu, cuda, cuda:N, a comma-separated list or auto"
        );
        assert_eq!(DeviceSpec::Cuda(1).to_string(), "cuda:1");
        assert_eq!("cuda:0,cuda:1".parse::<Devices>().unwrap().to_string(), "cuda:0,cuda:1");
        assert!("cuda,cpu".parse::<Devices>().unwrap_err().contains("name each GPU as cuda:N"));
        assert!("cpu,".parse::<Devices>().unwrap_err().contains("has an empty entry"));
    }

    #[test]
    fn memory_sizes_parse_in_accelerates_spellings() {
        assert_eq!(parse_bytes("64GB"), Ok(64_000_000_000));
        assert_eq!(parse_bytes("60GiB"), Ok(60 << 30));
        assert_eq!(parse_bytes("1.5 gib"), Ok(3 << 29));
        assert_eq!(parse_bytes("600KiB"), Ok(600 << 10));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").unwrap_err().contains("60GiB"));
        assert!(parse_bytes("0GB").is_err());
        assert_eq!("40GiB".parse::<MaxMemory>(), Ok(MaxMemory::Each(40 << 30)));
        assert_eq!("1GB,2GB".parse::<MaxMemory>(), Ok(MaxMemory::Positional(vec![1_000_000_000, 2_000_000_000])));
        assert_eq!(
            "cuda:1=2GB,cpu=1GB".parse::<MaxMemory>(),
            Ok(MaxMemory::PerDevice(vec![(DeviceSpec::Cuda(1), 2_000_000_000), (DeviceSpec::Cpu, 1_000_000_000)]))
        );
        assert!("cuda:0=1GB,2GB".parse::<MaxMemory>().unwrap_err().contains("mixes"));
        assert_eq!("0=2GB".parse::<MaxMemory>(), Ok(MaxMemory::PerDevice(vec![(DeviceSpec::Cuda(0), 2_000_000_000)])));
        assert_eq!(human_bytes(3 << 29), "1.50 GiB");
        assert_eq!(human_bytes(512), "1 KiB");
    }
}
