//! WGSL source assembly (shared header, storage-format accessors, constants) and a cache
//! of compiled compute pipelines.

use super::{StorageFormat, WeightFormat};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const COMMON: &str = include_str!("../../shaders/common.wgsl");
const MATMUL: &str = include_str!("../../shaders/matmul_bindings.wgsl");
const ATTENTION_PARAMS: &str = include_str!("../../shaders/decode_attention_params.wgsl");
const MATH: &str = include_str!("../../shaders/math.wgsl");

/// A kernel's WGSL plus how to specialise it. Directives in the source:
/// `//!COMMON` inserts shaders/common.wgsl; `//!MATMUL` shaders/matmul_bindings.wgsl;
/// `//!ATTENTION_PARAMS` shaders/decode_attention_params.wgsl (each of those two with
/// shaders/math.wgsl, so a kernel takes one of them); `//!W4 NAME BINDING` declares
/// a read-only weight buffer NAME with `NAME_load4(i)` (values 4i..4i+4) and
/// `NAME_load_chunk(c)` (the c-th chunk of `WeightFormat::chunk4` vec4s: 2 for floats, a
/// whole 32-value block for quantized weights) in the weights' format; `//!WQ8 NAME
/// BINDING` quantized weights read by blocks for integer dot products
/// (`QuantType::block_dot_accessor`); the legacy form
/// declares a read-only
/// float buffer NAME with `NAME_load4(i)`; `//!KV4 NAME BINDING read|read_write` the same
/// with `NAME_store4(i, v)` when writable; `//!PAGED NAME B0 B1 read|read_write` a paged
/// KV pool split over two bindings (see `paged_accessor`); `{{KEY}}` is replaced by a
/// constant, and a placeholder left without one is a bug that `assemble` reports.
#[derive(Clone, Debug)]
pub struct KernelSource {
    pub name: &'static str,
    pub wgsl: &'static str,
    pub weights: WeightFormat,
    pub kv: StorageFormat,
    pub constants: Vec<(&'static str, String)>,
}

impl KernelSource {
    pub fn new(name: &'static str, wgsl: &'static str) -> Self {
        KernelSource {
            name,
            wgsl,
            weights: WeightFormat::Float(StorageFormat::F32),
            kv: StorageFormat::F32,
            constants: Vec::new(),
        }
    }

    pub fn weights(mut self, f: impl Into<WeightFormat>) -> Self {
        self.weights = f.into();
        self
    }

    pub fn kv(mut self, f: StorageFormat) -> Self {
        self.kv = f;
        self
    }

    pub fn constant(mut self, key: &'static str, value: impl ToString) -> Self {
        self.constants.push((key, value.to_string()));
        self
    }

    /// The final WGSL text.
    pub fn assemble(&self) -> String {
        let wgsl = self.wgsl.replace("//!MATMUL", MATMUL);
        let mut out = String::new();
        for line in wgsl.lines() {
            let t = line.trim();
            if t == "//!COMMON" {
                out.push_str(COMMON);
                out.push_str(MATH);
            } else if t == "//!ATTENTION_PARAMS" {
                out.push_str(ATTENTION_PARAMS);
                out.push_str(MATH);
            } else if let Some(rest) = t.strip_prefix("//!W4 ") {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                out.push_str(&match self.weights {
                    WeightFormat::Float(StorageFormat::F16) => f16_weights(parts[0], parts[1]),
                    WeightFormat::Float(f) => {
                        let name = parts[0];
                        accessor(name, parts[1], f, false)
                            + &format!(
                                "fn {name}_load_chunk(c: u32) -> array<vec4<f32>, 2> {{ \
                                 return array<vec4<f32>, 2>({name}_load4(2u * c), \
                                 {name}_load4(2u * c + 1u)); }}\n"
                            )
                    }
                    WeightFormat::Quant(q) => q.accessor(parts[0], parts[1]),
                });
            } else if let Some(rest) = t.strip_prefix("//!WQ8 ") {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                match self.weights {
                    WeightFormat::Quant(q) => {
                        out.push_str(&q.block_dot_accessor(parts[0], parts[1]))
                    }
                    WeightFormat::Float(f) => panic!(
                        "kernel {}: //!WQ8 needs quantized weights, not {}",
                        self.name,
                        f.name()
                    ),
                }
            } else if let Some(rest) = t.strip_prefix("//!KV4 ") {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                let writable = parts.get(2) == Some(&"read_write");
                out.push_str(&accessor(parts[0], parts[1], self.kv, writable));
            } else if let Some(rest) = t.strip_prefix("//!PAGED ") {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                let writable = parts.get(3) == Some(&"read_write");
                out.push_str(&paged_accessor(
                    parts[0], parts[1], parts[2], self.kv, writable,
                ));
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        for (k, v) in &self.constants {
            out = out.replace(&format!("{{{{{k}}}}}"), v);
        }
        if let Some(at) = out.find("{{") {
            let key: String = out[at..].chars().take_while(|&c| c != '\n').collect();
            panic!(
                "kernel {}: placeholder {key} has no constant (add .constant(..) for it)",
                self.name
            );
        }
        unroll(&out)
    }
}

/// Expands `//!UNROLL NAME COUNT` ... `//!END` blocks (COUNT a number, after constant
/// substitution) into COUNT braced copies with `%NAME%` replaced by 0, 1, ...: registers
/// indexed by a loop variable may otherwise live in local memory, since not every driver
/// unrolls the loop before it allocates registers.
fn unroll(src: &str) -> String {
    let mut out = String::new();
    let mut lines = src.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix("//!UNROLL ") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let mut parts = rest.split_whitespace();
        let name = parts.next().unwrap_or_default();
        let count: usize = parts
            .next()
            .and_then(|c| c.trim_end_matches('u').parse().ok())
            .unwrap_or_else(|| panic!("//!UNROLL needs a name and a count: {line}"));
        let mut body = Vec::new();
        let mut depth = 0;
        for l in lines.by_ref() {
            let t = l.trim();
            if t == "//!END" {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            } else if t.starts_with("//!UNROLL ") {
                depth += 1;
            }
            body.push(l);
        }
        let block = unroll(&body.join("\n"));
        let pattern = format!("%{name}%");
        for i in 0..count {
            out.push_str("{\n");
            out.push_str(&block.replace(&pattern, &i.to_string()));
            out.push_str("}\n");
        }
    }
    out
}

/// WGSL for read-only f16 weights held as 16-byte words, so that a chunk of 8 values is
/// one 16-byte load (the widest a lane issues; two 8-byte loads reach less of the
/// memory bandwidth).
fn f16_weights(name: &str, binding: &str) -> String {
    format!(
        "@group(0) @binding({binding}) var<storage, read> {name}: array<vec4<u32>>;\n\
         fn {name}_load4(i: u32) -> vec4<f32> {{ let p = {name}[i / 2u]; \
         let h = select(p.xy, p.zw, (i & 1u) == 1u); \
         return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y)); }}\n\
         fn {name}_load_chunk(c: u32) -> array<vec4<f32>, 2> {{ let p = {name}[c]; \
         return array<vec4<f32>, 2>(vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y)), \
         vec4<f32>(unpack2x16float(p.z), unpack2x16float(p.w))); }}\n"
    )
}

/// WGSL for a float buffer stored as `format`, read (and written) four values at a time.
fn accessor(name: &str, binding: &str, format: StorageFormat, writable: bool) -> String {
    let access = if writable { "read_write" } else { "read" };
    match format {
        StorageFormat::F32 => {
            let mut s = format!(
                "@group(0) @binding({binding}) var<storage, {access}> {name}: array<vec4<f32>>;\n\
                 fn {name}_load4(i: u32) -> vec4<f32> {{ return {name}[i]; }}\n"
            );
            if writable {
                s += &format!("fn {name}_store4(i: u32, v: vec4<f32>) {{ {name}[i] = v; }}\n");
            }
            s
        }
        StorageFormat::F16 => {
            let mut s = format!(
                "@group(0) @binding({binding}) var<storage, {access}> {name}: array<vec2<u32>>;\n\
                 fn {name}_load4(i: u32) -> vec4<f32> {{ let p = {name}[i]; \
                 return vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y)); }}\n"
            );
            if writable {
                s += &format!(
                    "fn {name}_store4(i: u32, v: vec4<f32>) {{ \
                     {name}[i] = vec2<u32>(pack2x16float(v.xy), pack2x16float(v.zw)); }}\n"
                );
            }
            s
        }
    }
}

/// WGSL for a paged KV pool of `format` values held in two bindings: blocks
/// `0..BLOCKS_PER_BINDING` in `NAME0`, the rest in `NAME1` (the same buffer when one binding
/// holds the pool). Each block is `BLOCK_ELEMS` values; the kernel defines both constants.
/// Read-only pools get `NAME_fetch8(block, i8)`, the values `8 * i8 .. 8 * i8 + 8` of the
/// block as stored (`NAME_raw`; one 16-byte load for f16), and `NAME_unpack8(raw)`, the
/// same as two f32 vec4; writable pools get
/// `NAME_store4(block, i4, v)`, the values `4 * i4 ..` of the block.
fn paged_accessor(name: &str, b0: &str, b1: &str, format: StorageFormat, writable: bool) -> String {
    let access = if writable { "read_write" } else { "read" };
    let elem = match (format, writable) {
        (StorageFormat::F32, _) => "vec4<f32>",
        (StorageFormat::F16, false) => "vec4<u32>",
        (StorageFormat::F16, true) => "vec2<u32>",
    };
    let mut s = format!(
        "@group(0) @binding({b0}) var<storage, {access}> {name}0: array<{elem}>;\n\
         @group(0) @binding({b1}) var<storage, {access}> {name}1: array<{elem}>;\n"
    );
    // index of the block's first element, within the binding that holds the block
    let local = "let hi = blk >= BLOCKS_PER_BINDING; \
                 let first = select(blk, blk - BLOCKS_PER_BINDING, hi) * BLOCK_ELEMS;";
    if writable {
        let store = match format {
            StorageFormat::F32 => "let v4 = v;",
            StorageFormat::F16 => "let v4 = vec2<u32>(pack2x16float(v.xy), pack2x16float(v.zw));",
        };
        s += &format!(
            "fn {name}_store4(blk: u32, i4: u32, v: vec4<f32>) {{ {local} {store} \
             let i = first / 4u + i4; if (hi) {{ {name}1[i] = v4; }} else {{ {name}0[i] = v4; }} }}\n"
        );
    } else {
        // NAME_fetch8 reads the values 8 * i8 .. 8 * i8 + 8 as stored (NAME_raw: packed
        // halves or two vec4) and NAME_unpack8 makes them f32 later, so a batch of loads in
        // flight holds few registers
        s += &match format {
            StorageFormat::F16 => format!(
                "alias {name}_raw = vec4<u32>;\n\
                 fn {name}_fetch8(blk: u32, i8: u32) -> vec4<u32> {{ {local} let i = first / 8u + i8; \
                 if (hi) {{ return {name}1[i]; }} return {name}0[i]; }}\n\
                 fn {name}_unpack8(p: vec4<u32>) -> array<vec4<f32>, 2> {{ \
                 return array<vec4<f32>, 2>(\
                 vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y)), \
                 vec4<f32>(unpack2x16float(p.z), unpack2x16float(p.w))); }}\n"
            ),
            StorageFormat::F32 => format!(
                "alias {name}_raw = array<vec4<f32>, 2>;\n\
                 fn {name}_fetch8(blk: u32, i8: u32) -> array<vec4<f32>, 2> {{ {local} \
                 let i = first / 4u + 2u * i8; \
                 if (hi) {{ return array<vec4<f32>, 2>({name}1[i], {name}1[i + 1u]); }} \
                 return array<vec4<f32>, 2>({name}0[i], {name}0[i + 1u]); }}\n\
                 fn {name}_unpack8(p: array<vec4<f32>, 2>) -> array<vec4<f32>, 2> {{ return p; }}\n"
            ),
        };
    }
    s
}

/// Compiled pipelines keyed by their assembled source; layouts come from the shader.
pub struct PipelineCache {
    device: wgpu::Device,
    /// the guards naga writes into every kernel (`GpuFeatures::loop_bounding` and
    /// `index_clamping`)
    checks: wgpu::ShaderRuntimeChecks,
    /// both on: the module is created as WebGPU creates it
    all_checked: bool,
    cache: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
    layouts: Mutex<HashMap<&'static str, Arc<SharedLayout>>>,
}

/// A bind group layout and the pipeline layout made of it, shared by name.
pub struct SharedLayout {
    pub name: &'static str,
    pub bind_group: wgpu::BindGroupLayout,
    pub pipeline: wgpu::PipelineLayout,
}

impl PipelineCache {
    pub fn new(device: wgpu::Device, features: &super::GpuFeatures) -> Self {
        let checks = wgpu::ShaderRuntimeChecks {
            bounds_checks: features.index_clamping,
            force_loop_bounding: features.loop_bounding,
            ..wgpu::ShaderRuntimeChecks::checked()
        };
        PipelineCache {
            device,
            checks,
            all_checked: features.index_clamping && features.loop_bounding,
            cache: Mutex::new(HashMap::new()),
            layouts: Mutex::new(HashMap::new()),
        }
    }

    /// The WGSL of every pipeline built so far, as assembled (tests translate them for the
    /// other backends).
    pub fn sources(&self) -> Vec<String> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.keys().cloned().collect()
    }

    /// The layout called `name` with `kinds` at bindings 0.. (made once).
    pub fn layout(&self, name: &'static str, kinds: &[BindingKind]) -> Arc<SharedLayout> {
        let mut layouts = self.layouts.lock().unwrap_or_else(|e| e.into_inner());
        layouts
            .entry(name)
            .or_insert_with(|| {
                let (bind_group, pipeline) = compute_layout(&self.device, name, kinds);
                Arc::new(SharedLayout {
                    name,
                    bind_group,
                    pipeline,
                })
            })
            .clone()
    }

    /// The pipeline with its layout taken from the shader (bind groups then belong to it).
    pub fn get(&self, src: &KernelSource) -> Arc<wgpu::ComputePipeline> {
        self.get_with_layout(src, None)
    }

    /// The pipeline with a named explicit layout (see `layout`), so one bind group serves
    /// all variants of a kernel.
    pub fn get_with_layout(
        &self,
        src: &KernelSource,
        layout: Option<&SharedLayout>,
    ) -> Arc<wgpu::ComputePipeline> {
        let mut code = src.assemble();
        if let Some(l) = layout {
            // the cache key must tell layouts apart; a comment does not change the shader
            code.push_str(&format!("// layout {}\n", l.name));
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(&code) {
            return p.clone();
        }
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(src.name),
            source: wgpu::ShaderSource::Wgsl(code.clone().into()),
        };
        let module = match self.all_checked {
            true => self.device.create_shader_module(desc),
            // SAFETY: the kernels are ours: every loop of them ends (bounded by constants
            // or by the dims they are dispatched with), and every index into their own
            // arrays stays inside by construction (the kernel tests check each against the
            // CPU on the adapters it runs on); storage buffers keep the driver's robust
            // access
            false => unsafe { self.device.create_shader_module_trusted(desc, self.checks) },
        };
        let pipeline = Arc::new(self.device.create_compute_pipeline(
            &wgpu::ComputePipelineDescriptor {
                label: Some(src.name),
                layout: layout.map(|l| &l.pipeline),
                module: &module,
                entry_point: Some("main"),
                // Every kernel writes the workgroup memory it reads (out-of-range tile
                // elements as explicit zeros), so the zero fill WebGPU requires is skipped
                // where the backend allows (browsers always do it): it costs a barrier
                // per workgroup, and through GL naga writes it as one constructor listing
                // every element, which Mesa took minutes to compile for the attention
                // kernels with large score tiles.
                compilation_options: wgpu::PipelineCompilationOptions {
                    zero_initialize_workgroup_memory: false,
                    ..Default::default()
                },
                cache: None,
            },
        ));
        cache.insert(code, pipeline.clone());
        pipeline
    }
}

/// A bind group layout of `kinds` at bindings 0.., for compute.
fn compute_layout(
    device: &wgpu::Device,
    label: &str,
    kinds: &[BindingKind],
) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: match k {
                BindingKind::Uniform => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                BindingKind::Read => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: true },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                BindingKind::ReadWrite => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: false },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
            },
            count: None,
        })
        .collect();
    let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries: &entries,
    });
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(label),
        bind_group_layouts: &[Some(&bgl)],
        immediate_size: 0,
    });
    (bgl, pl)
}

/// What a binding is, for explicit layouts.
#[derive(Clone, Copy, Debug)]
pub enum BindingKind {
    Uniform,
    Read,
    ReadWrite,
}

#[cfg(test)]
mod tests {
    use super::unroll;

    #[test]
    fn unroll_repeats_nested_blocks_with_their_indices() {
        let src =
            "a;\n//!UNROLL i 2\nx[%i%] = 1;\n//!UNROLL j 2\ny[%i%][%j%] = 2;\n//!END\n//!END\nb;";
        let got = unroll(src);
        let want = "a;\n{\nx[0] = 1;\n{\ny[0][0] = 2;\n}\n{\ny[0][1] = 2;\n}\n}\n\
                    {\nx[1] = 1;\n{\ny[1][0] = 2;\n}\n{\ny[1][1] = 2;\n}\n}\nb;\n";
        assert_eq!(got, want);
    }
}
