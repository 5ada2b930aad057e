//! Devices and dtype: `--device` expanded into handles, each handle's memory measured (or taken from
//! `--max-memory`), the model's placement over them computed, and the handles opened as Candle's devices, all
//! checked before any weight is read.

use crate::llama::Config;
use candle_core::{DType, Device};
use ibex_core::placement::{budgets, place, Placement, PlacementError};
use ibex_core::{DeviceSpec, Devices, Dtype, MaxMemory};

/// The requested devices or dtype cannot be used.
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
    /// The model does not fit the devices, or `--max-memory` does not match `--device`.
    #[error(transparent)]
    Placement(#[from] PlacementError),
}

/// Candle's dtype for ibex's.
pub fn candle_dtype(dtype: Dtype) -> DType {
    match dtype {
        Dtype::F32 => DType::F32,
        Dtype::Bf16 => DType::BF16,
        Dtype::F16 => DType::F16,
    }
}

/// The handles `devices` means: the list as named; `cuda`, every visible GPU; `auto`, every visible GPU when the
/// build has CUDA and GPU 0 opens, else the CPU. Named CUDA handles are checked when opened or measured, so a dry
/// run with `--max-memory` can plan a GPU run on a machine without one.
pub fn device_handles(devices: &Devices) -> Result<Vec<DeviceSpec>, DeviceError> {
    match devices {
        Devices::List(handles) => Ok(handles.clone()),
        Devices::AllCuda => match gpu_count()? {
            0 => Err(DeviceError::NoGpu { ordinal: 0, message: "the driver sees no GPU".into() }),
            n => Ok((0..n).map(DeviceSpec::Cuda).collect()),
        },
        // Opened, not just counted: a GPU the driver lists but cannot open leaves `auto` on the CPU.
        Devices::Auto => match gpu_count() {
            Ok(n) if n > 0 && open_device(DeviceSpec::Cuda(0)).is_ok() => Ok((0..n).map(DeviceSpec::Cuda).collect()),
            _ => Ok(vec![DeviceSpec::Cpu]),
        },
    }
}

/// The model of `config` in `dtype` laid over `handles`, each with `--max-memory`'s budget or, where that gives
/// none, the memory its device has free (the CPU's available memory; a GPU's free memory, the GPU opened to ask),
/// shared by the handles of one device.
pub fn placement(
    config: &Config,
    dtype: Dtype,
    handles: &[DeviceSpec],
    max_memory: &MaxMemory,
) -> Result<Placement, DeviceError> {
    if dtype == Dtype::F16 && handles.contains(&DeviceSpec::Cpu) {
        return Err(DeviceError::DtypeOnDevice { dtype: dtype.to_string() });
    }
    let budgets = budgets(handles, max_memory, free_memory)?;
    Ok(place(&config.shape(candle_dtype(dtype).size_in_bytes() as u64), handles, &budgets)?)
}

/// The device as results record it: `cpu`, `cuda:0`.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Opens one handle. Each call on a CUDA ordinal opens a handle of its own on that GPU.
pub fn open_device(spec: DeviceSpec) -> Result<Device, DeviceError> {
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(ordinal) => {
            if !cfg!(feature = "cuda") {
                return Err(DeviceError::NoCudaBuild);
            }
            Device::new_cuda(ordinal).map_err(|e| DeviceError::NoGpu { ordinal, message: crate::describe(&e) })
        }
    }
}

/// Bytes the device has free: the kernel's `MemAvailable` for the CPU (unbounded where the system does not say), the
/// driver's free memory for a GPU.
fn free_memory(spec: DeviceSpec) -> Result<u64, DeviceError> {
    match spec {
        DeviceSpec::Cpu => Ok(std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|info| {
                let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map_or(u64::MAX / 4, |kib| kib * 1024)),
        DeviceSpec::Cuda(ordinal) => {
            gpu_free_memory(&open_device(spec)?).map_err(|message| DeviceError::NoGpu { ordinal, message })
        }
    }
}

#[cfg(feature = "cuda")]
fn gpu_free_memory(device: &Device) -> Result<u64, String> {
    let cuda = device.as_cuda_device().map_err(|e| crate::describe(&e))?;
    let (free, _total) = cuda.cuda_stream().context().mem_get_info().map_err(|e| e.to_string())?;
    Ok(free as u64)
}

#[cfg(not(feature = "cuda"))]
fn gpu_free_memory(_device: &Device) -> Result<u64, String> {
    Err("this ibex was built without CUDA".into())
}

/// GPUs the driver sees (`CUDA_VISIBLE_DEVICES` applied).
#[cfg(feature = "cuda")]
fn gpu_count() -> Result<usize, DeviceError> {
    candle_core::cuda_backend::cudarc::driver::CudaContext::device_count()
        .map(|n| usize::try_from(n).unwrap_or(0))
        .map_err(|e| DeviceError::NoGpu { ordinal: 0, message: e.to_string() })
}

#[cfg(not(feature = "cuda"))]
fn gpu_count() -> Result<usize, DeviceError> {
    Err(DeviceError::NoCudaBuild)
}
