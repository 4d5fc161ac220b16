//! Bind groups of whole buffers, in binding order.

use super::{GpuContext, SharedLayout};

/// A bind group that binds `buffers[i]` (whole) at binding i of group 0, against the
/// layout the pipeline derived from its shader.
pub fn bind(
    gpu: &GpuContext,
    pipeline: &wgpu::ComputePipeline,
    label: &str,
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    bind_to(gpu, &pipeline.get_bind_group_layout(0), label, buffers)
}

/// The same against a shared layout (one bind group for all variants of a kernel).
pub fn bind_layout(
    gpu: &GpuContext,
    layout: &SharedLayout,
    label: &str,
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    bind_to(gpu, &layout.bind_group, label, buffers)
}

fn bind_to(
    gpu: &GpuContext,
    layout: &wgpu::BindGroupLayout,
    label: &str,
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: b.as_entire_binding(),
        })
        .collect();
    gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout,
        entries: &entries,
    })
}
