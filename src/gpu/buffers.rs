//! Buffer creation with limit checks, uploads and readback.

use super::quant_layout::QuantType;
use super::{GpuContext, GpuError};
use wgpu::util::DeviceExt;

/// How floats are stored in a GPU buffer. Arithmetic is always f32; f16 storage is read
/// with `unpack2x16float`, so it works on every adapter, shader-f16 or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum StorageFormat {
    F32,
    F16,
}

impl StorageFormat {
    pub fn bytes_per_element(self) -> usize {
        match self {
            StorageFormat::F32 => 4,
            StorageFormat::F16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StorageFormat::F32 => "f32",
            StorageFormat::F16 => "f16",
        }
    }

    /// Host f32 values in this format, as bytes.
    pub fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            StorageFormat::F32 => bytemuck::cast_slice(values).to_vec(),
            StorageFormat::F16 => {
                let h: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
                bytemuck::cast_slice(&h).to_vec()
            }
        }
    }

    /// Bytes in this format back to host f32 values.
    pub fn decode(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            StorageFormat::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            StorageFormat::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        }
    }
}

/// How a weight matrix is stored on the GPU: floats, or GGML quantization blocks as the
/// file stores them (repacked, never widened: see `gpu::quant_layout`). Kernels read
/// every form through the same `NAME_load4` accessor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum WeightFormat {
    Float(StorageFormat),
    Quant(QuantType),
}

impl WeightFormat {
    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::Float(f) => f.name(),
            WeightFormat::Quant(q) => q.name(),
        }
    }

    /// Bytes on the GPU of `values` values (for block formats a whole number of blocks).
    pub fn bytes_for(self, values: usize) -> u64 {
        match self {
            WeightFormat::Float(f) => (values * f.bytes_per_element()) as u64,
            WeightFormat::Quant(q) => q.bytes_for(values),
        }
    }

    /// vec4s per `load_chunk` of the weight accessor: a block for quantized weights (one
    /// scale and one aligned 16- or 32-byte load), 8 values for floats.
    pub fn chunk4(self) -> usize {
        match self {
            WeightFormat::Float(_) => 2,
            WeightFormat::Quant(_) => 8,
        }
    }

    /// Values per block: rows must hold whole blocks.
    pub fn block(self) -> usize {
        match self {
            WeightFormat::Float(_) => 1,
            WeightFormat::Quant(q) => q.block_values(),
        }
    }
}

impl From<StorageFormat> for WeightFormat {
    fn from(f: StorageFormat) -> Self {
        WeightFormat::Float(f)
    }
}

impl GpuContext {
    fn check_binding(&self, what: &str, bytes: u64) -> Result<(), GpuError> {
        let limit = self.max_binding();
        if bytes > limit {
            return Err(GpuError::OverLimit {
                what: what.to_string(),
                bytes,
                limit,
                limit_name: "max_storage_buffer_binding_size",
            });
        }
        Ok(())
    }

    /// A zeroed storage buffer of `bytes` (rounded up to 16), checked against the limits.
    pub fn storage(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        let bytes = bytes.max(16).div_ceil(16) * 16;
        self.check_binding(label, bytes)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        }))
    }

    /// A storage buffer holding `data` (padded to 16 bytes), checked against the limits.
    pub fn storage_init(&self, label: &str, data: &[u8]) -> Result<wgpu::Buffer, GpuError> {
        let padded = data.len().max(16).div_ceil(16) * 16;
        self.check_binding(label, padded as u64)?;
        let mut owned;
        let contents = if padded == data.len() {
            data
        } else {
            owned = data.to_vec();
            owned.resize(padded, 0);
            &owned[..]
        };
        Ok(self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
            }))
    }

    /// A small uniform buffer of parameters.
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(value),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// Copies `bytes` of `src` back to the host (blocking). For tests and one-off reads.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_bytes(&self, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>, GpuError> {
        self.read_bytes_at(src, 0, bytes)
    }

    /// Copies `bytes` of `src` from byte `offset` (both multiples of 4) to the host.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_bytes_at(
        &self,
        src: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Result<Vec<u8>, GpuError> {
        super::block_on(self.read_bytes_at_async(src, offset, bytes))
    }

    /// [`read_bytes_at`](Self::read_bytes_at), awaited.
    pub async fn read_bytes_at_async(
        &self,
        src: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Result<Vec<u8>, GpuError> {
        let rb = ReadbackBuffer::new(self, "read_bytes", bytes);
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, offset, rb.buffer(), 0, bytes.div_ceil(4) * 4);
        self.queue.submit([enc.finish()]);
        rb.read_async(self, bytes).await
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_f32(&self, src: &wgpu::Buffer, n: usize) -> Result<Vec<f32>, GpuError> {
        super::block_on(self.read_f32_async(src, n))
    }

    pub async fn read_f32_async(&self, src: &wgpu::Buffer, n: usize) -> Result<Vec<f32>, GpuError> {
        let b = self.read_bytes_at_async(src, 0, (n * 4) as u64).await?;
        Ok(bytemuck::cast_slice(&b).to_vec())
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_u32(&self, src: &wgpu::Buffer, n: usize) -> Result<Vec<u32>, GpuError> {
        let b = self.read_bytes(src, (n * 4) as u64)?;
        Ok(bytemuck::cast_slice(&b).to_vec())
    }
}

/// A MAP_READ buffer reused for small readbacks (the sampled token ids of each step).
pub struct ReadbackBuffer {
    buffer: wgpu::Buffer,
}

impl ReadbackBuffer {
    pub fn new(gpu: &GpuContext, label: &str, bytes: u64) -> Self {
        let size = bytes.max(4).div_ceil(4) * 4;
        ReadbackBuffer {
            buffer: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        }
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    pub fn copy_from(&self, enc: &mut wgpu::CommandEncoder, src: &wgpu::Buffer, bytes: u64) {
        let bytes = bytes.div_ceil(4) * 4;
        enc.copy_buffer_to_buffer(src, 0, &self.buffer, 0, bytes);
    }

    /// Maps, copies out and unmaps (blocking; the browser build uses `read_async`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self, gpu: &GpuContext, bytes: u64) -> Result<Vec<u8>, GpuError> {
        super::block_on(self.read_async(gpu, bytes))
    }

    /// As `read`, waiting only for the work up to `submission` (later submissions may still
    /// run): the copy into this buffer must be part of it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_after(
        &self,
        gpu: &GpuContext,
        bytes: u64,
        submission: wgpu::SubmissionIndex,
    ) -> Result<Vec<u8>, GpuError> {
        let out = super::block_on(self.map_and_copy(bytes, || {
            gpu.device
                .poll(wgpu::PollType::Wait {
                    submission_index: Some(submission),
                    timeout: None,
                })
                .map(drop)
                .map_err(|e| GpuError::Other(e.to_string()))
        }));
        gpu.check_faults()?;
        out
    }

    /// Maps, copies out and unmaps. Natively the device is polled until the map is done; on
    /// the web the browser maps it while the page goes on.
    /// Errors that the device recorded meanwhile come back instead of the bytes (after the
    /// buffer is unmapped again, so it can be read next time).
    pub async fn read_async(&self, gpu: &GpuContext, bytes: u64) -> Result<Vec<u8>, GpuError> {
        let out = self
            .map_and_copy(bytes, || {
                #[cfg(not(target_arch = "wasm32"))]
                gpu.poll_until_idle()?;
                Ok(())
            })
            .await;
        gpu.check_faults()?;
        out
    }

    /// Asks for the first `bytes` mapped, runs `wait` (which makes the GPU get there), then
    /// copies them out and unmaps.
    async fn map_and_copy(
        &self,
        bytes: u64,
        wait: impl FnOnce() -> Result<(), GpuError>,
    ) -> Result<Vec<u8>, GpuError> {
        let bytes = bytes.div_ceil(4) * 4;
        let slice = self.buffer.slice(0..bytes);
        let (tx, rx) = futures_channel::oneshot::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        wait()?;
        rx.await
            .map_err(|_| GpuError::Other("the GPU device went away during a readback".into()))?
            .map_err(|e| GpuError::Other(format!("mapping a readback buffer: {e}")))?;
        let out = slice
            .get_mapped_range()
            .map_err(|e| GpuError::Other(format!("{e:?}")))?
            .to_vec();
        self.buffer.unmap();
        Ok(out)
    }
}
