//! Pseudo-random buffer contents made on the GPU (shaders/fill_random.wgsl): synthetic
//! weights and KV caches for benchmarks, without uploading gigabytes from the host.

use super::{GpuContext, GpuError, KernelSource, StorageFormat};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    words: u32,
    seed: u32,
    scale: f32,
    row_words: u32,
}

/// Words each row of the dispatch grid covers.
const ROW_WORDS: u32 = 256 * 1024;

/// Fills the first `values` values of `buffer` (stored as `format`) with values uniform in
/// [-scale, scale), the same for the same seed. Submits and returns without waiting.
pub fn fill_random(
    gpu: &GpuContext,
    buffer: &wgpu::Buffer,
    format: StorageFormat,
    values: u64,
    seed: u32,
    scale: f32,
) -> Result<(), GpuError> {
    let bytes = values * format.bytes_per_element() as u64;
    if bytes > buffer.size() || !bytes.is_multiple_of(4) {
        return Err(GpuError::Other(format!(
            "fill_random: {values} {} values do not fit a buffer of {} bytes",
            format.name(),
            buffer.size()
        )));
    }
    let words = bytes / 4;
    if words > u32::MAX as u64 {
        return Err(GpuError::Other(format!(
            "fill_random: {words} words is over the 2^32 a fill covers"
        )));
    }
    let fmt = match format {
        StorageFormat::F32 => 0,
        StorageFormat::F16 => 1,
    };
    let src = KernelSource::new(
        "fill_random",
        include_str!("../../shaders/fill_random.wgsl"),
    )
    .constant("FORMAT", fmt);
    let pipeline = gpu.pipelines.get(&src);
    let params = gpu.uniform(
        "fill_random.params",
        &Params {
            words: words as u32,
            seed,
            scale,
            row_words: ROW_WORDS,
        },
    );
    let group = super::bind(gpu, &pipeline, "fill_random", &[&params, buffer]);
    let rows = (words as u32).div_ceil(ROW_WORDS);
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(ROW_WORDS.min(words as u32).div_ceil(256), rows, 1);
    }
    gpu.queue.submit([enc.finish()]);
    Ok(())
}
