//! Every kernel the engine builds, through naga's Metal, DX12 (HLSL) and GLSL back ends:
//! the WGSL of each pipeline variant that a real adapter can select (subgroup and portable
//! matvecs, f16 and f32 storage, every quantized block type, attention for several group
//! sizes and head dims, MLA, the probes) is validated under the capabilities each back end
//! supports and translated. Only lavapipe runs here; this is how a Mac or Windows user's
//! shader compiler failure is caught on Linux.

mod common;

use headroom::gpu::quant_layout::QuantType;
use headroom::gpu::{GpuContext, GpuOptions, StorageFormat};
use headroom::metrics::attention::Variant;
use headroom::metrics::attention_lab::{measure, Shape};
use headroom::metrics::presets::tiny_config;
use headroom::model::gpu_model::{GpuModel, GpuModelOptions};
use headroom::model::ModelConfig;
use naga::valid::{Capabilities, ValidationFlags, Validator};
use std::collections::BTreeSet;
use std::sync::Arc;

/// `cfg` with every gemma departure on: GeGLU, post-norms, scaled embeddings, soft-capped
/// scores and logits, q/k norms, a window on every other layer with its own RoPE base.
fn gemma_like(cfg: &ModelConfig) -> ModelConfig {
    use headroom::model::{Activation, Arch};
    let mut c = cfg.clone();
    c.arch = Arch::Gemma2;
    c.qk_norm = true;
    c.sliding_window = Some(8);
    let v = &mut c.variant;
    v.activation = Activation::GeluTanh;
    v.post_norms = true;
    v.embedding_scale = Some(2.0);
    v.attn_softcap = Some(50.0);
    v.final_softcap = Some(30.0);
    v.global_layer_period = Some(2);
    v.rope_theta_local = Some(1e4);
    c
}

/// Builds every kernel variant the engine can select on `g`.
fn build_every_variant(g: &Arc<GpuContext>) {
    // the model's ops for several attention shapes, storage formats and block types
    let shapes: [(usize, usize, usize); 4] = [(4, 4, 16), (8, 2, 32), (32, 1, 64), (4, 1, 128)];
    for (i, &(heads, kv_heads, head_dim)) in shapes.iter().enumerate() {
        let cfg = ModelConfig {
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim,
            hidden_size: heads * head_dim,
            intermediate_size: 256,
            ..tiny_config(kv_heads)
        };
        // gemma's kernels (GeGLU, soft-capped attention and logits, post-norms) on one shape
        let mut configs = vec![cfg.clone()];
        if i == 1 {
            configs.push(gemma_like(&cfg));
        }
        for (cfg, format) in configs
            .iter()
            .flat_map(|c| [(c, StorageFormat::F16), (c, StorageFormat::F32)])
        {
            let quant = std::iter::once(None).chain(QuantType::ALL.map(Some));
            // every block type once, on the first shape whose widths hold its blocks
            let first_fit = |q: QuantType| {
                shapes
                    .iter()
                    .position(|&(h, _, d)| (h * d).is_multiple_of(q.block_values()))
            };
            for q in quant.filter(|q| q.is_none_or(|q| first_fit(q) == Some(i))) {
                let options = GpuModelOptions {
                    weights: format,
                    quantized: q.is_some(),
                    quantize: None,
                    kv: format,
                    context: 64,
                    // T = 1..8 decode kernels and the tiled one are all built
                    max_chunk: 16,
                    kv_block_size: 16,
                };
                GpuModel::synthetic_blocks(g.clone(), cfg.clone(), options, 2, 1, q).unwrap();
            }
        }
    }
    // MLA's absorbed attention and split-K merges, through the benchmark's own measurement
    let timer = headroom::gpu::timing::GpuTimer::new(g, 4);
    for v in [
        Variant {
            name: "mha",
            heads: 8,
            kv_heads: 8,
            head_dim: 64,
            mla: None,
        },
        Variant {
            name: "mla",
            heads: 16,
            kv_heads: 1,
            head_dim: 128,
            mla: Some((128, 32)),
        },
    ] {
        let shape = Shape {
            variant: &v,
            batch: 2,
            context: 300,
            block_size: 16,
        };
        measure(g, &timer, &shape, 1, 1.0).unwrap();
    }
    // the bandwidth probes (copy, read and fill kernels)
    headroom::metrics::probe::probe_copy_bandwidth(g, 1 << 16).unwrap();
    headroom::metrics::probe::probe_read_bandwidth(g, 1 << 16).unwrap();
    let once = headroom::metrics::probe::ProbeOptions {
        warmup: 0,
        runs: 1,
        ..Default::default()
    };
    headroom::metrics::probe::probe_fma_rate(g, &once).unwrap();
}

/// The WGSL of every pipeline the engine builds on lavapipe, with subgroups (and unpacked
/// integer dot products, with the matmuls' RMSNorm and SiLU·mul prologues as on GPUs) and
/// without (one and 32 lanes in the portable matvec).
fn every_kernel() -> Vec<String> {
    let mut sources = BTreeSet::new();
    let contexts = [
        GpuOptions::default(),
        GpuOptions {
            q8_packed_dot: Some(false),
            fused_prologue: Some(true),
            // the tiled f32 GEMM, which GPUs pick for large matmuls
            gemm_tiles: Some(true),
            ..Default::default()
        },
        GpuOptions {
            no_subgroups: true,
            matvec_lanes: Some(1),
            ..Default::default()
        },
        GpuOptions {
            no_subgroups: true,
            matvec_lanes: Some(32),
            ..Default::default()
        },
    ];
    for options in contexts {
        let g = GpuContext::new_blocking(&options).unwrap();
        build_every_variant(&g);
        sources.extend(g.pipelines.sources());
    }
    sources.into_iter().collect()
}

/// The kernel's label in messages: its first comment line.
fn label(wgsl: &str) -> &str {
    wgsl.lines().next().unwrap_or("").trim_start_matches("// ")
}

#[test]
fn every_kernel_translates_to_metal_hlsl_and_glsl() {
    let sources = every_kernel();
    assert!(
        sources.len() > 40,
        "built {} kernel variants",
        sources.len()
    );
    let mut failures = Vec::new();
    let (mut msl, mut hlsl, mut glsl, mut gl_skipped) = (0, 0, 0, 0);
    for wgsl in &sources {
        let module = match naga::front::wgsl::parse_str(wgsl) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{}: WGSL: {}", label(wgsl), e.emit_to_string(wgsl)));
                continue;
            }
        };
        let uses_subgroups = wgsl.contains("subgroup");
        // the module's info under a back end's capabilities (its error boxed: it is large)
        let validate = |caps: Capabilities| {
            Validator::new(ValidationFlags::all(), caps)
                .validate(&module)
                .map_err(Box::new)
        };
        // Metal (MSL 2.4: Apple GPUs and recent Intel/AMD Macs)
        match validate(naga::back::msl::supported_capabilities()) {
            Ok(info) => {
                let options = naga::back::msl::Options {
                    lang_version: (2, 4),
                    fake_missing_bindings: true,
                    ..Default::default()
                };
                let pipeline = naga::back::msl::PipelineOptions::default();
                match naga::back::msl::write_string(&module, &info, &options, &pipeline) {
                    Ok(_) => msl += 1,
                    Err(e) => failures.push(format!("{}: MSL: {e}", label(wgsl))),
                }
            }
            Err(e) => failures.push(format!("{}: MSL validation: {e:?}", label(wgsl))),
        }
        // DX12 (HLSL, shader model 6.2: wave intrinsics)
        match validate(naga::back::hlsl::supported_capabilities()) {
            Ok(info) => {
                let options = naga::back::hlsl::Options {
                    shader_model: naga::back::hlsl::ShaderModel::V6_2,
                    fake_missing_bindings: true,
                    ..Default::default()
                };
                let pipeline = naga::back::hlsl::PipelineOptions { entry_point: None };
                let mut out = String::new();
                let mut w = naga::back::hlsl::Writer::new(&mut out, &options, &pipeline);
                match w.write(&module, &info, None) {
                    Ok(_) => hlsl += 1,
                    Err(e) => failures.push(format!("{}: HLSL: {e}", label(wgsl))),
                }
            }
            Err(e) => failures.push(format!("{}: HLSL validation: {e:?}", label(wgsl))),
        }
        // GL (GLSL ES 3.10 compute): wgpu's GL backend offers no subgroups, so the engine
        // never selects the subgroup kernels there
        if uses_subgroups {
            gl_skipped += 1;
            continue;
        }
        match validate(naga::back::glsl::supported_capabilities()) {
            Ok(info) => {
                let options = naga::back::glsl::Options {
                    version: naga::back::glsl::Version::new_gles(310),
                    ..Default::default()
                };
                let pipeline = naga::back::glsl::PipelineOptions {
                    shader_stage: naga::ShaderStage::Compute,
                    entry_point: "main".into(),
                    multiview: None,
                };
                let mut out = String::new();
                let policies = naga::proc::BoundsCheckPolicies::default();
                match naga::back::glsl::Writer::new(
                    &mut out, &module, &info, &options, &pipeline, policies,
                )
                .and_then(|mut w| w.write())
                {
                    Ok(_) => glsl += 1,
                    Err(e) => failures.push(format!("{}: GLSL: {e}", label(wgsl))),
                }
            }
            Err(e) => failures.push(format!("{}: GLSL validation: {e:?}", label(wgsl))),
        }
    }
    eprintln!(
        "{} kernel variants: {msl} to MSL, {hlsl} to HLSL, {glsl} to GLSL ES 3.10 \
         ({gl_skipped} subgroup variants not for GL)",
        sources.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The check can fail: a kernel that needs subgroups does not validate for a back end
/// without them, and WGSL that naga cannot parse is reported.
#[test]
fn a_kernel_a_back_end_cannot_take_is_reported() {
    let needs_subgroups = "\
        @group(0) @binding(0) var<storage, read_write> y: array<f32>;\n\
        @compute @workgroup_size(32) fn main(@builtin(subgroup_invocation_id) l: u32) {\n\
            y[l] = subgroupAdd(y[l]);\n\
        }\n";
    let module = naga::front::wgsl::parse_str(needs_subgroups).unwrap();
    let without = Capabilities::all() - Capabilities::SUBGROUP;
    assert!(Validator::new(ValidationFlags::all(), without)
        .validate(&module)
        .is_err());
    assert!(naga::front::wgsl::parse_str("fn main( {").is_err());
}

/// The cooperative-matrix GEMMs (and the cast of x to f16 before the one that reads f16
/// weights as stored) exist only where an adapter offers 16x16x16 matrices
/// (Vulkan's `VK_KHR_cooperative_matrix`; lavapipe has none, and Metal's simdgroup
/// matrices are 8x8, so the engine never selects it there): naga's SPIR-V back end must
/// take it for every weight format and the subgroup sizes such adapters have. This is
/// where a naga bug in writing coop loads (an index written inline) shows up without a GPU.
#[test]
fn the_matrix_unit_gemm_translates_to_spirv_for_every_weight_format() {
    use headroom::gpu::WeightFormat;
    let formats = [StorageFormat::F16, StorageFormat::F32]
        .map(WeightFormat::Float)
        .into_iter()
        .chain(QuantType::ALL.map(WeightFormat::Quant));
    use headroom::ops::matmul::{
        dequant_f16_source, gemm_coop_f16_few_source, gemm_coop_f16_source, gemm_coop_source,
        x_to_f16_source, CoopF16Form,
    };
    let mut sources = vec![(
        "x_to_f16, f16 weights as stored".to_string(),
        x_to_f16_source(),
    )];
    for subgroup_size in [32, 64] {
        for wide in [false, true] {
            for form in CoopF16Form::ALL {
                let src = gemm_coop_f16_source(subgroup_size, wide, form);
                sources.push((
                    format!("f16 weights as stored, {form:?}, subgroups of {subgroup_size}, wide {wide}"),
                    src,
                ));
            }
        }
    }
    let few_tiles = [(1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (4, 1)];
    for subgroup_size in [16, 32, 64] {
        for (tiles, rows) in few_tiles {
            sources.push((
                format!(
                    "f16 weights, few rows, {tiles} x {rows} tiles, subgroups of {subgroup_size}"
                ),
                gemm_coop_f16_few_source(subgroup_size, tiles, rows),
            ));
        }
    }
    for q in QuantType::ALL {
        sources.push((format!("dequant_f16, {q:?}"), dequant_f16_source(q)));
    }
    for format in formats {
        for subgroup_size in [32, 64] {
            let src = gemm_coop_source(format, subgroup_size);
            sources.push((format!("{format:?}, subgroups of {subgroup_size}"), src));
        }
    }
    let mut translated = 0;
    for (what, src) in &sources {
        {
            let wgsl = src.assemble();
            let module = naga::front::wgsl::parse_str(&wgsl)
                .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(&wgsl)));
            let info = Validator::new(ValidationFlags::all(), Capabilities::all())
                .validate(&module)
                .unwrap_or_else(|e| panic!("{what}: {e:?}"));
            naga::back::spv::write_vec(&module, &info, &Default::default(), None)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            translated += 1;
        }
    }
    assert_eq!(
        translated,
        1 + 18 + QuantType::ALL.len() + 2 * (2 * 2 + 2 + QuantType::ALL.len())
    );
}
