//! The only code that differs between CPU and CUDA builds: which device the model
//! runs on and how many generations run at once by default.

use mistralrs::GgufModelBuilder;

/// Default `LlmSettings::max_concurrent`: on the CPU batching gains little (mistral.rs batches
/// only sequences of equal length; 8 at once measured ~54 vs ~47 tokens/s, BENCHMARKS.md),
/// on a GPU it is the point.
#[cfg(not(feature = "cuda"))]
pub(crate) const DEFAULT_MAX_CONCURRENT: usize = 1;
#[cfg(feature = "cuda")]
pub(crate) const DEFAULT_MAX_CONCURRENT: usize = 8;

/// Human-readable device name for logs.
#[cfg(not(feature = "cuda"))]
pub(crate) const DEVICE_NAME: &str = "cpu";
#[cfg(feature = "cuda")]
pub(crate) const DEVICE_NAME: &str = "cuda:0";

/// Puts the model on the CPU.
#[cfg(not(feature = "cuda"))]
pub(crate) fn select_device(builder: GgufModelBuilder) -> Result<GgufModelBuilder, String> {
    Ok(builder.with_force_cpu())
}

/// Puts the model on CUDA device 0. mistral.rs would silently fall back to the CPU
/// when no GPU is usable (`Device::cuda_if_available`); a CUDA build fails instead.
#[cfg(feature = "cuda")]
pub(crate) fn select_device(builder: GgufModelBuilder) -> Result<GgufModelBuilder, String> {
    let device = mistralrs::Device::new_cuda(0).map_err(|e| format!("CUDA device 0: {e}"))?;
    Ok(builder.with_device(device))
}
