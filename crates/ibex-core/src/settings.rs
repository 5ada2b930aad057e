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

/// Where the model runs, as the user asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU.
    Cpu,
    /// A CUDA GPU when the build has CUDA and one answers, else the CPU.
    Auto,
    /// CUDA GPU `N` (`cuda:N`); `cuda` alone is GPU 0.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    /// `cpu`, `auto`, `cuda` or `cuda:N`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "cpu" => Ok(DeviceSpec::Cpu),
            "auto" => Ok(DeviceSpec::Auto),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("unknown device `{other}`; use cpu, cuda, cuda:N or auto")),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
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
        assert_eq!("cuda".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(3)));
        assert_eq!("gpu".parse::<DeviceSpec>().unwrap_err(), "unknown device `gpu`; use cpu, cuda, cuda:N or auto");
        assert_eq!(DeviceSpec::Cuda(1).to_string(), "cuda:1");
    }
}
