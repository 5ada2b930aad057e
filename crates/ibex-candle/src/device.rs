//! Device and dtype choice, checked together before any weight is read.

use candle_core::{DType, Device};

/// The requested device or dtype cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The device string is not one ibex knows.
    #[error("unknown device `{0}`; use cpu, cuda, cuda:N or auto")]
    Unknown(String),
    /// CUDA was asked for, but this binary was built without it.
    #[error(
        "this ibex was built without CUDA; rebuild with `cargo build --release --features cuda`, or use --device cpu"
    )]
    NoCudaBuild,
    /// CUDA is built in, but no GPU answered.
    #[error(
        "no CUDA GPU {ordinal} answered ({message}); check nvidia-smi and CUDA_VISIBLE_DEVICES, or use --device cpu"
    )]
    NoGpu {
        /// The ordinal asked for.
        ordinal: usize,
        /// The driver's message.
        message: String,
    },
    /// The dtype string is not one ibex knows.
    #[error("unknown dtype `{0}`; use f32, bf16 or f16")]
    UnknownDtype(String),
    /// The device cannot compute in the dtype.
    #[error("{dtype} is not supported on the CPU; use --dtype f32 or bf16 there, or f16 on a CUDA GPU")]
    DtypeOnDevice {
        /// The dtype asked for.
        dtype: String,
    },
}

/// Parses `f32`, `bf16` or `f16` (also `float32`, `bfloat16`, `float16`, as lm-eval's `dtype=` takes them).
pub fn parse_dtype(name: &str) -> Result<DType, DeviceError> {
    match name {
        "f32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" | "half" => Ok(DType::F16),
        other => Err(DeviceError::UnknownDtype(other.to_owned())),
    }
}

/// Opens `cpu`, `cuda`, `cuda:N` or `auto` (a CUDA GPU when the build has CUDA and one answers, else the CPU), and
/// checks that it computes in `dtype`. Candle's `cuda_is_available` only says how ibex was built, so `auto` tries to
/// open the device.
pub fn select_device(name: &str, dtype: DType) -> Result<Device, DeviceError> {
    let device = match name {
        "cpu" => Device::Cpu,
        "auto" => open_cuda(0).unwrap_or(Device::Cpu),
        "cuda" => open_cuda(0)?,
        other => {
            let ordinal = other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| DeviceError::Unknown(other.to_owned()))?;
            open_cuda(ordinal)?
        }
    };
    if device.is_cpu() && dtype == DType::F16 {
        return Err(DeviceError::DtypeOnDevice { dtype: "f16".into() });
    }
    Ok(device)
}

/// The device as results record it: `cpu`, `cuda:0`.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

fn open_cuda(ordinal: usize) -> Result<Device, DeviceError> {
    if !cfg!(feature = "cuda") {
        return Err(DeviceError::NoCudaBuild);
    }
    Device::new_cuda(ordinal).map_err(|e| DeviceError::NoGpu { ordinal, message: crate::describe(&e) })
}
