//! Device and dtype: ibex's parsed settings opened as Candle's, checked together before any weight is read.

use candle_core::{DType, Device};
use ibex_core::{DeviceSpec, Dtype};

/// The requested device or dtype cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
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
    /// The device cannot compute in the dtype.
    #[error("{dtype} is not supported on the CPU; use --dtype f32 or bf16 there, or f16 on a CUDA GPU")]
    DtypeOnDevice {
        /// The dtype asked for.
        dtype: String,
    },
}

/// Candle's dtype for ibex's.
pub fn candle_dtype(dtype: Dtype) -> DType {
    match dtype {
        Dtype::F32 => DType::F32,
        Dtype::Bf16 => DType::BF16,
        Dtype::F16 => DType::F16,
    }
}

/// Opens the device (`auto`: a CUDA GPU when the build has CUDA and one answers, else the CPU) and checks that it
/// computes in `dtype`. Candle's `cuda_is_available` only says how ibex was built, so `auto` tries to open the device.
pub fn select_device(spec: DeviceSpec, dtype: Dtype) -> Result<Device, DeviceError> {
    let device = match spec {
        DeviceSpec::Cpu => Device::Cpu,
        DeviceSpec::Auto => open_cuda(0).unwrap_or(Device::Cpu),
        DeviceSpec::Cuda(ordinal) => open_cuda(ordinal)?,
    };
    if device.is_cpu() && dtype == Dtype::F16 {
        return Err(DeviceError::DtypeOnDevice { dtype: dtype.to_string() });
    }
    Ok(device)
}

/// Whether this build can open `spec` at all (a CUDA device needs the `cuda` feature), without opening it.
pub fn check_build_supports(spec: DeviceSpec) -> Result<(), DeviceError> {
    match spec {
        DeviceSpec::Cuda(_) if !cfg!(feature = "cuda") => Err(DeviceError::NoCudaBuild),
        _ => Ok(()),
    }
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
    check_build_supports(DeviceSpec::Cuda(ordinal))?;
    Device::new_cuda(ordinal).map_err(|e| DeviceError::NoGpu { ordinal, message: crate::describe(&e) })
}
