//! A Hugging Face model as a [`WeightSource`]: `config.json` plus `model.safetensors` or
//! sharded safetensors with `model.safetensors.index.json`, from a directory (memory-mapped)
//! or from files held in memory (the browser). Tensors are F32, F16 or BF16, in HF layout.

use super::config::{Arch, Llama3RopeScaling, LongRope, ModelConfig, Variant};
use super::source::{check_layer_count, check_shape, expected_shape, tensor_names};
use super::source::{rows_of, stored_as};
use super::source::{HostTensor, LayerTensor, LoadError, TensorName, TensorSummary, WeightSource};
use crate::formats::safetensors::{self, TensorEntry};
use crate::formats::FileBytes;
use serde_json::Value;
use std::collections::HashMap;
#[cfg(not(target_arch = "wasm32"))]
use {crate::formats::map_file, std::path::Path};

/// The HF (transformers) name of a tensor of an `arch` model, e.g.
/// `model.layers.3.self_attn.q_proj.weight`.
pub fn hf_tensor_name(arch: Arch, name: TensorName) -> String {
    match name {
        TensorName::TokenEmbedding => "model.embed_tokens.weight".into(),
        TensorName::FinalNorm => "model.norm.weight".into(),
        TensorName::LmHead => "lm_head.weight".into(),
        TensorName::Layer(i, t) => {
            let s = match t {
                LayerTensor::AttnNorm => "input_layernorm.weight",
                LayerTensor::Wq => "self_attn.q_proj.weight",
                LayerTensor::Wk => "self_attn.k_proj.weight",
                LayerTensor::Wv => "self_attn.v_proj.weight",
                LayerTensor::Bq => "self_attn.q_proj.bias",
                LayerTensor::Bk => "self_attn.k_proj.bias",
                LayerTensor::Bv => "self_attn.v_proj.bias",
                LayerTensor::QNorm => "self_attn.q_norm.weight",
                LayerTensor::KNorm => "self_attn.k_norm.weight",
                LayerTensor::Wqkv => "self_attn.qkv_proj.weight",
                LayerTensor::WGateUp => "mlp.gate_up_proj.weight",
                LayerTensor::Wo => "self_attn.o_proj.weight",
                // gemma names its four norms by where they sit; llama's second one sits
                // after attention, before the MLP
                LayerTensor::FfnNorm if arch.is_gemma() => "pre_feedforward_layernorm.weight",
                LayerTensor::FfnNorm | LayerTensor::PostAttnNorm => {
                    "post_attention_layernorm.weight"
                }
                LayerTensor::PostFfnNorm => "post_feedforward_layernorm.weight",
                LayerTensor::WGate => "mlp.gate_proj.weight",
                LayerTensor::WUp => "mlp.up_proj.weight",
                LayerTensor::WDown => "mlp.down_proj.weight",
            };
            format!("model.layers.{i}.{s}")
        }
    }
}

/// Parses an HF `config.json` (text `json`, named `label` in messages).
pub fn parse_hf_config(label: &str, json: &str) -> Result<ModelConfig, LoadError> {
    let err = |m: String| LoadError::new(label, m);
    let v: Value = serde_json::from_str(json).map_err(|e| err(format!("invalid JSON: {e}")))?;
    if !v.is_object() {
        return Err(err("expected a JSON object".into()));
    }
    let present = |k: &str| v.get(k).filter(|x| !x.is_null());
    let uint = |k: &str| -> Result<Option<usize>, LoadError> {
        match present(k) {
            None => Ok(None),
            Some(x) => x
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| err(format!("'{k}' should be a non-negative integer, found {x}"))),
        }
    };
    let req = |k: &str| uint(k)?.ok_or_else(|| err(format!("missing '{k}'")));
    let float = |k: &str, x: &Value| -> Result<f32, LoadError> {
        x.as_f64()
            .map(|f| f as f32)
            .ok_or_else(|| err(format!("'{k}' should be a number, found {x}")))
    };
    let boolean = |k: &str| -> Result<Option<bool>, LoadError> {
        match present(k) {
            None => Ok(None),
            Some(x) => x
                .as_bool()
                .map(Some)
                .ok_or_else(|| err(format!("'{k}' should be true or false, found {x}"))),
        }
    };

    let model_type = present("model_type")
        .and_then(Value::as_str)
        .ok_or_else(|| err("missing 'model_type'".into()))?;
    if model_type == "gemma3" && present("text_config").is_some() {
        return Err(err(
            "a Gemma 3 vision-language checkpoint (model_type 'gemma3' with a text_config): \
             headroom runs the text-only model (model_type 'gemma3_text'), or its GGUF"
                .into(),
        ));
    }
    let arch = Arch::from_name(model_type).ok_or_else(|| {
        err(format!(
            "unknown model_type '{model_type}' (supported: {})",
            Arch::SUPPORTED
        ))
    })?;
    let hidden_size = req("hidden_size")?;
    let num_heads = req("num_attention_heads")?;
    if num_heads == 0 {
        return Err(err("'num_attention_heads' is 0".into()));
    }
    let num_kv_heads = uint("num_key_value_heads")?.unwrap_or(num_heads);
    let head_dim = match uint("head_dim")? {
        Some(d) => d,
        None if hidden_size % num_heads == 0 => hidden_size / num_heads,
        None => {
            return Err(err(format!(
                "hidden_size {hidden_size} is not a multiple of num_attention_heads {num_heads}"
            )))
        }
    };
    let max_pos = req("max_position_embeddings")?;

    // rope: transformers <= 4.x keeps rope_theta / rope_scaling at the top level; newer
    // versions nest them in rope_parameters, gemma3's once per layer type
    let rope_params = present("rope_parameters");
    let per_type = |t: &str| rope_params.and_then(|p| p.get(t)).filter(|x| x.is_object());
    let global_rope = per_type("full_attention").or(rope_params);
    let rope_theta = match present("rope_theta").or_else(|| global_rope?.get("rope_theta")) {
        Some(x) => float("rope_theta", x)?,
        None => 10000.0,
    };
    let top_original = uint("original_max_position_embeddings")?;
    let (mut rope_scaling, mut longrope, mut rope_linear_factor) = (None, None, None);
    if let Some(s) = present("rope_scaling").or(global_rope) {
        match parse_rope_scaling(s, max_pos, top_original).map_err(err)? {
            ParsedRope::Plain => {}
            ParsedRope::Llama3(l) => rope_scaling = Some(l),
            ParsedRope::LongRope(l) => longrope = Some(l),
            ParsedRope::Linear(f) => rope_linear_factor = Some(f),
        }
    }
    // gemma3's windowed layers: their own base, unscaled
    let rope_theta_local = match per_type("sliding_attention") {
        Some(local) => {
            if let ParsedRope::Linear(_) | ParsedRope::Llama3(_) | ParsedRope::LongRope(_) =
                parse_rope_scaling(local, max_pos, None).map_err(err)?
            {
                return Err(err(
                    "RoPE scaling on the sliding-attention layers is not supported".into(),
                ));
            }
            match local.get("rope_theta") {
                Some(x) => Some(float("rope_parameters.sliding_attention.rope_theta", x)?),
                None => Some(10000.0),
            }
        }
        None => match present("rope_local_base_freq") {
            Some(x) => Some(float("rope_local_base_freq", x)?),
            None if arch == Arch::Gemma3 => Some(10000.0),
            None => None,
        },
    };

    let rms_norm_eps = match present("rms_norm_eps") {
        Some(x) => float("rms_norm_eps", x)?,
        None => return Err(err("missing 'rms_norm_eps'".into())),
    };

    // the layers with a sliding window: `layer_types` where the config lists them
    // (transformers 5), else where the family's class puts them: mistral's every layer
    // when the window is set, qwen2/qwen3's from max_window_layers on with
    // use_sliding_window, gemma's all but every 2nd (gemma2) or 6th (gemma3)
    // (transformers' Gemma2Config and Gemma3TextConfig default to 4096)
    let window = match uint("sliding_window")? {
        None if arch.is_gemma() => Some(4096),
        w => w,
    };
    let layers = req("num_hidden_layers")?;
    let pattern = match present("layer_types").and_then(Value::as_array) {
        Some(types) if types.len() != layers => {
            return Err(err(format!(
                "'layer_types' lists {} layers, 'num_hidden_layers' is {layers}",
                types.len()
            )))
        }
        Some(types) => window_pattern(types).map_err(err)?,
        None => match model_type {
            "mistral" | "phi3" if window.is_some() => WindowPattern::Every,
            "qwen2" | "qwen3" if boolean("use_sliding_window")?.unwrap_or(false) => {
                match uint("max_window_layers")?.unwrap_or(0) {
                    0 => WindowPattern::Every,
                    n if n >= layers => WindowPattern::None,
                    n => {
                        return Err(err(format!(
                            "a sliding window from layer {n} of {layers} on is not supported \
                             (only on every layer, or on all but every n-th)"
                        )))
                    }
                }
            }
            "gemma2" => WindowPattern::GlobalEvery(2),
            "gemma3" | "gemma3_text" => {
                let n = match uint("sliding_window_pattern")? {
                    Some(n) => Some(n),
                    None => uint("_sliding_window_pattern")?,
                };
                WindowPattern::GlobalEvery(n.unwrap_or(6))
            }
            _ => WindowPattern::None,
        },
    };
    let (sliding_window, global_layer_period) = match (pattern, window) {
        (WindowPattern::None, _) | (WindowPattern::GlobalEvery(1), _) => (None, None),
        (_, None) => {
            return Err(err(
                "sliding-attention layers without 'sliding_window'".into()
            ))
        }
        (WindowPattern::Every, Some(w)) => (Some(w), None),
        (WindowPattern::GlobalEvery(n), Some(w)) => (Some(w), Some(n)),
    };

    let mut variant = Variant {
        rope_linear_factor,
        rope_theta_local: rope_theta_local.filter(|_| sliding_window.is_some()),
        ..Variant::of_arch(arch, hidden_size)
    };
    if sliding_window.is_some() {
        variant.global_layer_period = global_layer_period;
    }
    if arch.is_gemma() {
        let act = present("hidden_activation")
            .or_else(|| present("hidden_act"))
            .and_then(Value::as_str)
            .unwrap_or("gelu_pytorch_tanh");
        if !matches!(act, "gelu_pytorch_tanh" | "gelu_tanh") {
            return Err(err(format!(
                "hidden_activation '{act}' is not supported (gelu_pytorch_tanh)"
            )));
        }
        let number = |k: &str| present(k).map(|x| float(k, x)).transpose();
        if let Some(q) = number("query_pre_attn_scalar")? {
            variant.attention_scale = Some(1.0 / q.sqrt());
        }
        variant.attn_softcap = number("attn_logit_softcapping")?;
        variant.final_softcap = number("final_logit_softcapping")?;
    }

    let attention_bias = match arch {
        Arch::Qwen2 => true,
        _ => boolean("attention_bias")?.unwrap_or(false),
    };
    let cfg = ModelConfig {
        arch,
        vocab_size: req("vocab_size")?,
        hidden_size,
        intermediate_size: req("intermediate_size")?,
        num_layers: layers,
        num_heads,
        num_kv_heads,
        head_dim,
        rms_norm_eps,
        rope_theta,
        rope_scaling,
        longrope,
        max_position_embeddings: max_pos,
        tie_word_embeddings: boolean("tie_word_embeddings")?.unwrap_or(false),
        attention_bias,
        qk_norm: matches!(arch, Arch::Qwen3 | Arch::Gemma3),
        sliding_window,
        variant,
    };
    cfg.validate(label).map_err(|m| {
        let m = m
            .strip_prefix(&format!("{label}: "))
            .unwrap_or(&m)
            .to_string();
        err(m)
    })?;
    Ok(cfg)
}

/// Which layers a config's sliding window is on.
#[derive(Clone, Copy, Debug, PartialEq)]
enum WindowPattern {
    None,
    Every,
    /// all but each n-th layer (layers l with (l + 1) % n == 0 are global)
    GlobalEvery(usize),
}

/// The pattern of a `layer_types` list: every layer windowed, none, or all but each n-th
/// (the first full-attention layer gives n; every other layer must follow it).
fn window_pattern(types: &[Value]) -> Result<WindowPattern, String> {
    let sliding = |t: &Value| t.as_str() == Some("sliding_attention");
    let Some(first_full) = types.iter().position(|t| !sliding(t)) else {
        return Ok(WindowPattern::Every);
    };
    let n = first_full + 1;
    if types.iter().all(|t| !sliding(t)) {
        return Ok(WindowPattern::None);
    }
    match types
        .iter()
        .enumerate()
        .find(|(l, t)| sliding(t) == (l + 1).is_multiple_of(n))
    {
        None => Ok(WindowPattern::GlobalEvery(n)),
        Some((l, t)) => Err(format!(
            "'layer_types' has layer {l} {t}, out of the pattern its first global layer \
             sets (every {n}th layer global): only a window on every layer, or on all but \
             every n-th, is supported"
        )),
    }
}

/// The RoPE scalings headroom reads.
enum ParsedRope {
    Plain,
    /// positions divided by the factor
    Linear(f32),
    Llama3(Llama3RopeScaling),
    LongRope(LongRope),
}

/// A config's `rope_scaling` (or `rope_parameters`); `max_pos` and `top_original` (the
/// config's own `original_max_position_embeddings`, where phi3 keeps it) for LongRoPE.
fn parse_rope_scaling(
    s: &Value,
    max_pos: usize,
    top_original: Option<usize>,
) -> Result<ParsedRope, String> {
    let ty = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let factors = |k: &str| -> Result<Vec<f32>, String> {
        s.get(k)
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|x| x.as_f64().map(|f| f as f32)).collect())
            .ok_or_else(|| format!("rope_scaling (longrope) needs a list of numbers '{k}'"))
    };
    match ty {
        "default" => Ok(ParsedRope::Plain),
        "linear" => match s.get("factor").and_then(Value::as_f64) {
            Some(1.0) => Ok(ParsedRope::Plain),
            Some(f) => Ok(ParsedRope::Linear(f as f32)),
            None => Err("rope_scaling (linear) needs a number 'factor'".into()),
        },
        "longrope" | "su" => {
            let original = s
                .get("original_max_position_embeddings")
                .and_then(Value::as_u64)
                .map(|v| v as usize)
                .or(top_original)
                .ok_or("rope_scaling (longrope) needs 'original_max_position_embeddings'")?;
            let attention_factor = match s.get("attention_factor").and_then(Value::as_f64) {
                Some(f) => f as f32,
                None => LongRope::default_attention_factor(max_pos, original),
            };
            Ok(ParsedRope::LongRope(LongRope {
                short_factor: factors("short_factor")?,
                long_factor: factors("long_factor")?,
                original_max_position_embeddings: original,
                attention_factor,
            }))
        }
        "llama3" => {
            let num = |k: &str| {
                s.get(k)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| format!("rope_scaling (llama3) needs a number '{k}'"))
            };
            Ok(ParsedRope::Llama3(Llama3RopeScaling {
                factor: num("factor")? as f32,
                low_freq_factor: num("low_freq_factor")? as f32,
                high_freq_factor: num("high_freq_factor")? as f32,
                original_max_position_embeddings: num("original_max_position_embeddings")? as u32,
            }))
        }
        other => Err(format!(
            "rope_scaling type '{other}' is not supported (supported: linear, llama3, longrope)"
        )),
    }
}

struct Shard {
    path: String,
    bytes: FileBytes,
}

struct HfTensor {
    shard: usize,
    entry: TensorEntry,
}

/// A Hugging Face model directory.
pub struct HfModel {
    label: String,
    config: ModelConfig,
    shards: Vec<Shard>,
    tensors: HashMap<String, HfTensor>,
    /// tensor names in file order, for summaries
    order: Vec<String>,
}

impl std::fmt::Debug for HfModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfModel")
            .field("dir", &self.label)
            .field("shards", &self.shards.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// The files of an HF model: a directory, or files held in memory (the browser).
pub(crate) trait ModelFileSet {
    /// How messages name the file `name` of the set.
    fn label(&self, name: &str) -> String;
    /// The file's bytes; None when the set has no such file.
    fn read(&mut self, name: &str) -> Result<Option<FileBytes>, LoadError>;
}

/// A directory on disk; files are memory-mapped.
#[cfg(not(target_arch = "wasm32"))]
struct DirFiles<'a>(&'a Path);

#[cfg(not(target_arch = "wasm32"))]
impl ModelFileSet for DirFiles<'_> {
    fn label(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }

    fn read(&mut self, name: &str) -> Result<Option<FileBytes>, LoadError> {
        let path = self.0.join(name);
        if !path.is_file() {
            return Ok(None);
        }
        map_file(&path).map(Some)
    }
}

/// Files held in memory, by name (picked or dropped in the browser).
pub(crate) struct MemoryFiles(pub HashMap<String, Vec<u8>>);

impl ModelFileSet for MemoryFiles {
    fn label(&self, name: &str) -> String {
        name.to_string()
    }

    fn read(&mut self, name: &str) -> Result<Option<FileBytes>, LoadError> {
        Ok(self.0.remove(name).map(FileBytes::Owned))
    }
}

impl HfModel {
    /// Opens `dir`: parses config.json, maps and validates every safetensors shard, and
    /// checks that every tensor the config needs is present with a supported dtype and the
    /// right shape.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(dir: &Path) -> Result<HfModel, LoadError> {
        Self::open_files(&dir.display().to_string(), &mut DirFiles(dir))
    }

    /// As [`open`](Self::open), for the files of `set` (`label` names the model).
    pub(crate) fn open_files(
        label: &str,
        set: &mut dyn ModelFileSet,
    ) -> Result<HfModel, LoadError> {
        let label = label.to_string();
        let config_label = set.label("config.json");
        let json = match set.read("config.json")? {
            Some(b) => String::from_utf8(b.to_vec())
                .map_err(|_| LoadError::new(&config_label, "not UTF-8 text"))?,
            None => {
                return Err(LoadError::new(
                    &config_label,
                    "no such file (a Hugging Face model directory needs config.json)",
                ))
            }
        };
        let config = parse_hf_config(&config_label, &json)?;

        // which files, and which tensor each index entry promises
        let index_label = set.label("model.safetensors.index.json");
        let mut single = set.read("model.safetensors")?;
        let (files, promised): (Vec<String>, Vec<(String, String)>) = if single.is_some() {
            (vec!["model.safetensors".into()], Vec::new())
        } else if let Some(index) = set.read("model.safetensors.index.json")? {
            safetensors::read_index(&index_label, &index)?
        } else {
            return Err(LoadError::new(
                &label,
                "no model.safetensors or model.safetensors.index.json in this directory",
            ));
        };

        let mut shards = Vec::new();
        let mut tensors = HashMap::new();
        let mut order = Vec::new();
        for (si, file) in files.iter().enumerate() {
            let plabel = set.label(file);
            let found = match single.take() {
                Some(b) => Some(b),
                None => set.read(file)?,
            };
            let Some(bytes) = found else {
                return Err(LoadError::new(
                    &plabel,
                    format!("shard '{file}' does not exist (listed in {index_label})"),
                ));
            };
            let names: Vec<(String, HfTensor)> = safetensors::read_tensors(&plabel, &bytes)?
                .into_iter()
                .map(|(name, entry)| (name, HfTensor { shard: si, entry }))
                .collect();
            for (name, t) in names {
                if tensors.contains_key(&name) {
                    return Err(LoadError::new(
                        &plabel,
                        format!("tensor '{name}' is also in another shard"),
                    ));
                }
                order.push(name.clone());
                tensors.insert(name, t);
            }
            shards.push(Shard {
                path: plabel,
                bytes,
            });
        }
        for (name, file) in &promised {
            let found = tensors.get(name).map(|t: &HfTensor| &shards[t.shard].path);
            if found != Some(&set.label(file)) {
                return Err(LoadError::new(
                    &index_label,
                    format!("tensor '{name}' is listed in shard '{file}' but is not in it"),
                ));
            }
        }

        let layers = "config.json's num_hidden_layers";
        check_layer_count(&label, layers, &config, tensors.len())?;
        let model = HfModel {
            label,
            config,
            shards,
            tensors,
            order,
        };
        for name in tensor_names(&model.config) {
            let name = stored_as(&model.config, name).0;
            let (t, hname) = model.entry(name)?;
            let path = &model.shards[t.shard].path;
            if !safetensors::is_float(t.entry.dtype) {
                return Err(LoadError::new(
                    path,
                    format!(
                        "tensor '{hname}' has dtype {:?}, which headroom does not read \
                         (supported: F32, F16, BF16)",
                        t.entry.dtype
                    ),
                ));
            }
            check_shape(path, &hname, &model.config, name, &t.entry.shape)?;
        }
        Ok(model)
    }

    fn entry(&self, name: TensorName) -> Result<(&HfTensor, String), LoadError> {
        let hname = hf_tensor_name(self.config.arch, name);
        let t = self
            .tensors
            .get(&hname)
            .filter(|_| self.has(name))
            .ok_or_else(|| {
                LoadError::new(&self.label, format!("missing tensor '{hname}' ({name})"))
            })?;
        Ok((t, hname))
    }
}

impl WeightSource for HfModel {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn path(&self) -> &str {
        &self.label
    }

    fn has(&self, name: TensorName) -> bool {
        match name {
            TensorName::LmHead if self.config.tie_word_embeddings => false,
            TensorName::Layer(i, _) if i >= self.config.num_layers => false,
            TensorName::Layer(_, LayerTensor::Bq | LayerTensor::Bk | LayerTensor::Bv)
                if !self.config.attention_bias =>
            {
                false
            }
            _ => self.tensors.contains_key(&hf_tensor_name(
                self.config.arch,
                stored_as(&self.config, name).0,
            )),
        }
    }

    fn load(&self, name: TensorName) -> Result<HostTensor, LoadError> {
        let stored = stored_as(&self.config, name).0;
        if stored != name {
            return Ok(rows_of(&self.config, name, self.load(stored)?));
        }
        let (t, hname) = self.entry(name)?;
        let shard = &self.shards[t.shard];
        let t = &t.entry;
        check_shape(&shard.path, &hname, &self.config, name, &t.shape)?;
        let mut data =
            safetensors::to_f32(t.dtype, &shard.bytes[t.start..t.end]).ok_or_else(|| {
                LoadError::new(
                    &shard.path,
                    format!("tensor '{hname}' has unsupported dtype {:?}", t.dtype),
                )
            })?;
        // gemma's RMSNorm multiplies by 1 + w; the rest of headroom (and GGUF files) use
        // the multiplier itself
        if self.config.arch.is_gemma() && name.is_norm() {
            data.iter_mut().for_each(|w| *w += 1.0);
        }
        Ok(HostTensor {
            shape: expected_shape(&self.config, name),
            data,
        })
    }

    fn summaries(&self) -> Vec<TensorSummary> {
        self.order
            .iter()
            .map(|name| {
                let t = &self.tensors[name].entry;
                TensorSummary {
                    file_name: name.clone(),
                    dtype: format!("{:?}", t.dtype),
                    shape: t.shape.clone(),
                    bytes: (t.end - t.start) as u64,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::synthetic::SyntheticModel;
    use crate::model::synthetic::{hf_config_json, tiny_config, write_hf_dir, HfDtype};
    use std::path::PathBuf;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("headroom-hf-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn open_err(dir: &Path) -> String {
        HfModel::open(dir).expect_err("should fail").to_string()
    }

    #[test]
    fn round_trip_synthetic_through_hf_dir() {
        for (arch, heads, kv, tied) in [
            (Arch::Llama, 4, 4, false),
            (Arch::Llama, 4, 1, true),
            (Arch::Qwen2, 4, 2, true),
            (Arch::Qwen2, 4, 2, false),
        ] {
            let mut cfg = tiny_config(arch, heads, kv, tied);
            if arch == Arch::Llama && kv == 1 {
                cfg.rope_scaling = Some(Llama3RopeScaling {
                    factor: 8.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_max_position_embeddings: 64,
                });
            }
            let src = SyntheticModel::new(cfg, 4).unwrap();
            for (dtype, shards) in [(HfDtype::F32, 1), (HfDtype::F16, 3), (HfDtype::BF16, 2)] {
                let dir = tmp(&format!("rt-{arch:?}-{kv}-{tied}-{dtype:?}"));
                write_hf_dir(&dir, &src, dtype, shards).unwrap();
                assert_eq!(
                    dir.join("model.safetensors.index.json").exists(),
                    shards > 1
                );
                let m = HfModel::open(&dir).unwrap();
                assert_eq!(m.config(), src.config());
                // the same files held in memory (the browser's way in) read the same
                let files = std::fs::read_dir(&dir)
                    .unwrap()
                    .map(|e| {
                        let p = e.unwrap().path();
                        let name = p.file_name().unwrap().to_string_lossy().to_string();
                        (name, std::fs::read(&p).unwrap())
                    })
                    .collect();
                let mem = HfModel::open_files("mem", &mut MemoryFiles(files)).unwrap();
                assert_eq!(mem.config(), src.config());
                for name in tensor_names(src.config()) {
                    let a = src.load(name).unwrap();
                    let b = m.load(name).unwrap();
                    assert_eq!(b.data, mem.load(name).unwrap().data, "{name} from memory");
                    assert_eq!(a.shape, b.shape);
                    for (x, y) in a.data.iter().zip(&b.data) {
                        let tol = match dtype {
                            HfDtype::F32 => 0.0,
                            HfDtype::F16 => x.abs() * (1.0 / 2048.0) + 1e-7,
                            HfDtype::BF16 => x.abs() * (1.0 / 256.0),
                        };
                        assert!((x - y).abs() <= tol, "{name} {dtype:?}: {x} vs {y}");
                    }
                }
                assert_eq!(m.has(TensorName::LmHead), !tied);
                assert_eq!(m.summaries().len(), tensor_names(src.config()).len());
                std::fs::remove_dir_all(&dir).unwrap();
            }
        }
    }

    /// The real SmolLM2 GGUF -> HF directory (F32, 2 shards, ~540 MB in the temp dir) ->
    /// HfModel: identical tensors and CPU logits. Slow and big: `cargo test -- --ignored`.
    #[test]
    #[ignore]
    fn smollm2_gguf_to_hf_dir_round_trip() {
        use crate::model::cpu_reference::CpuModel;
        use crate::model::gguf_model::GgufModel;
        let Some(path) = crate::engine::default_model_for_tests() else {
            return;
        };
        let g = GgufModel::open(&path).unwrap();
        let dir = tmp("smollm2");
        write_hf_dir(&dir, &g, HfDtype::F32, 2).unwrap();
        let h = HfModel::open(&dir).unwrap();
        assert_eq!(h.config(), g.config());
        for name in [
            TensorName::TokenEmbedding,
            TensorName::Layer(0, LayerTensor::Wq),
            TensorName::Layer(29, LayerTensor::Wk),
        ] {
            assert_eq!(h.load(name).unwrap().data, g.load(name).unwrap().data);
        }
        let (mut a, mut b) = (CpuModel::new(&g).unwrap(), CpuModel::new(&h).unwrap());
        for (pos, tok) in [504u32, 3575, 282].into_iter().enumerate() {
            assert_eq!(a.forward(tok, pos), b.forward(tok, pos));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn base_json() -> Value {
        hf_config_json(&tiny_config(Arch::Llama, 4, 2, true), HfDtype::F32)
    }

    fn cfg_ok(v: &Value) -> ModelConfig {
        parse_hf_config("c", &v.to_string()).unwrap()
    }

    fn cfg_err(v: &Value) -> String {
        parse_hf_config("c/config.json", &v.to_string())
            .expect_err("should fail")
            .to_string()
    }

    #[test]
    fn config_parsing() {
        let c = parse_hf_config("c", &base_json().to_string()).unwrap();
        assert_eq!(c, tiny_config(Arch::Llama, 4, 2, true));
        // defaults
        let mut v = base_json();
        for k in [
            "num_key_value_heads",
            "head_dim",
            "rope_theta",
            "tie_word_embeddings",
        ] {
            v.as_object_mut().unwrap().remove(k);
        }
        let c = parse_hf_config("c", &v.to_string()).unwrap();
        assert_eq!((c.num_kv_heads, c.head_dim, c.rope_theta), (4, 16, 10000.0));
        assert!(!c.tie_word_embeddings);
        // mistral is llama; qwen2 has biases
        let mut v = base_json();
        v["model_type"] = "mistral".into();
        v["sliding_window"] = Value::Null;
        assert_eq!(
            parse_hf_config("c", &v.to_string()).unwrap().arch,
            Arch::Llama
        );
        let mut v = base_json();
        v["model_type"] = "qwen2".into();
        v["sliding_window"] = 4096.into();
        v["use_sliding_window"] = false.into();
        let c = parse_hf_config("c", &v.to_string()).unwrap();
        assert!(c.attention_bias && c.arch == Arch::Qwen2);
        assert_eq!(c.sliding_window, None);
        // mistral's window; qwen3's q/k norms
        let mut v = base_json();
        v["model_type"] = "mistral".into();
        v["sliding_window"] = 128.into();
        assert_eq!(
            parse_hf_config("c", &v.to_string()).unwrap().sliding_window,
            Some(128)
        );
        // phi3's LongRoPE: the original context at the top level, the attention factor
        // transformers derives from the stretch (128 / 32)
        let mut v = base_json();
        v["model_type"] = "phi3".into();
        v["max_position_embeddings"] = 128.into();
        v["original_max_position_embeddings"] = 32.into();
        v["rope_scaling"] = serde_json::json!({"rope_type": "longrope",
            "short_factor": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            "long_factor": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]});
        let r = cfg_ok(&v).longrope.unwrap();
        assert_eq!(r.original_max_position_embeddings, 32);
        assert!(
            (r.attention_factor - 1.183_216).abs() < 1e-5,
            "{}",
            r.attention_factor
        );
        v["rope_scaling"]["long_factor"] = serde_json::json!([1.0, 2.0]);
        assert!(cfg_err(&v).contains("8 factors each, found 8 short and 2 long"));
        let mut v = base_json();
        v["model_type"] = "qwen3".into();
        let c = parse_hf_config("c", &v.to_string()).unwrap();
        assert!(c.qk_norm && !c.attention_bias && c.arch == Arch::Qwen3);
        // llama3 scaling, old and new spellings
        let mut v = base_json();
        v["rope_scaling"] = serde_json::json!({"type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192});
        let c = parse_hf_config("c", &v.to_string()).unwrap();
        assert_eq!(c.rope_scaling.unwrap().factor, 8.0);
        let mut v = base_json();
        v.as_object_mut().unwrap().remove("rope_theta");
        v["rope_parameters"] = serde_json::json!({"rope_type": "default", "rope_theta": 5e5});
        assert_eq!(
            parse_hf_config("c", &v.to_string()).unwrap().rope_theta,
            5e5
        );
    }

    /// Gemma 2 and 3 as transformers 5 writes them (the family fixtures' configs) and Gemma
    /// 3 as transformers 4 did (its real 4B+ checkpoints: linear RoPE scaling on the global
    /// layers, the local base at the top level, a pattern instead of layer types).
    #[test]
    fn gemma_configs() {
        let fixture = |family: &str| -> Value {
            let path = format!(
                "{}/fixtures/families/{family}/config.json",
                env!("CARGO_MANIFEST_DIR")
            );
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
        };
        use crate::model::config::Activation;
        let c = cfg_ok(&fixture("gemma2"));
        let v = &c.variant;
        assert_eq!(c.arch, Arch::Gemma2);
        assert_eq!(v.activation, Activation::GeluTanh);
        assert!(v.post_norms && !c.qk_norm && c.tie_word_embeddings);
        assert_eq!(v.embedding_scale, Some(8.0));
        assert_eq!(v.attention_scale, Some(0.25));
        assert_eq!((v.attn_softcap, v.final_softcap), (Some(2.0), Some(15.0)));
        assert_eq!((c.layer_window(0), c.layer_window(1)), (Some(8), None));
        assert_eq!(v.rope_theta_local, None);

        let c = cfg_ok(&fixture("gemma3"));
        let v = &c.variant;
        assert_eq!(c.arch, Arch::Gemma3);
        assert!(c.qk_norm && v.post_norms);
        assert_eq!((v.attn_softcap, v.final_softcap), (None, None));
        let windows: Vec<_> = (0..6).map(|l| c.layer_window(l)).collect();
        assert_eq!(windows, [Some(8), Some(8), Some(8), Some(8), Some(8), None]);
        assert_eq!((c.rope_theta, v.rope_theta_local), (1e6, Some(1e4)));
        assert!(c.local_rope(0) && !c.local_rope(5));

        let mut old = fixture("gemma3");
        let o = old.as_object_mut().unwrap();
        for k in ["layer_types", "rope_parameters", "_sliding_window_pattern"] {
            o.remove(k);
        }
        o.insert("num_hidden_layers".into(), 12.into());
        o.insert("sliding_window_pattern".into(), 6.into());
        o.insert("rope_theta".into(), 1e6.into());
        o.insert("rope_local_base_freq".into(), 1e4.into());
        o.insert(
            "rope_scaling".into(),
            serde_json::json!({"rope_type": "linear", "factor": 8.0}),
        );
        let c = cfg_ok(&old);
        let globals: Vec<usize> = (0..12).filter(|&l| c.layer_window(l).is_none()).collect();
        assert_eq!(globals, [5, 11]);
        assert_eq!(c.variant.rope_linear_factor, Some(8.0));
        assert_eq!(c.variant.rope_theta_local, Some(1e4));
        let local = crate::model::config::layer_rope_inv_freq(&c, 4096, 0);
        let global = crate::model::config::layer_rope_inv_freq(&c, 4096, 5);
        // the local layers: base 1e4, unscaled; the global ones: base 1e6 over 8
        assert_eq!(local[0], 1.0);
        assert_eq!(global[0], 1.0 / 8.0);
        let d = c.head_dim as f64;
        assert!((local[1] as f64 - 1e4f64.powf(-2.0 / d)).abs() < 1e-7);
        assert!((global[1] as f64 - 1e6f64.powf(-2.0 / d) / 8.0).abs() < 1e-8);
    }

    #[test]
    fn config_errors() {
        let mut v = base_json();
        v["model_type"] = "gpt2".into();
        let e = cfg_err(&v);
        assert!(
            e.starts_with("c/config.json: unknown model_type 'gpt2'"),
            "{e}"
        );
        let mut v = base_json();
        v.as_object_mut().unwrap().remove("hidden_size");
        assert!(cfg_err(&v).contains("missing 'hidden_size'"));
        let mut v = base_json();
        v["num_hidden_layers"] = "2".into();
        assert!(cfg_err(&v).contains("'num_hidden_layers' should be a non-negative integer"));
        let mut v = base_json();
        v["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
        assert!(cfg_err(&v).contains("rope_scaling type 'yarn' is not supported"));
        let mut v = base_json();
        v["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 4.0});
        assert!(cfg_err(&v).contains("needs a number 'low_freq_factor'"));
        let mut v = base_json();
        v["model_type"] = "qwen2".into();
        v["sliding_window"] = 128.into();
        v["use_sliding_window"] = true.into();
        v["max_window_layers"] = 1.into();
        let e = cfg_err(&v);
        assert!(
            e.contains("a sliding window from layer 1 of 2 on is not supported"),
            "{e}"
        );
        // every layer windowed: transformers 5's layer_types, and qwen2 from layer 0
        v["max_window_layers"] = 0.into();
        assert_eq!(cfg_ok(&v).sliding_window, Some(128));
        let mut v = base_json();
        v["sliding_window"] = 64.into();
        v["layer_types"] = serde_json::json!(["sliding_attention", "sliding_attention"]);
        assert_eq!(cfg_ok(&v).sliding_window, Some(64));
        v["layer_types"] = serde_json::json!(["full_attention", "full_attention"]);
        assert_eq!(cfg_ok(&v).sliding_window, None);
        // a window pattern that is not "all but every n-th layer"
        let mut v = base_json();
        v["num_hidden_layers"] = 4.into();
        v["sliding_window"] = 64.into();
        v["layer_types"] = serde_json::json!([
            "sliding_attention",
            "full_attention",
            "full_attention",
            "sliding_attention"
        ]);
        let e = cfg_err(&v);
        assert!(
            e.contains("'layer_types' has layer 2 \"full_attention\", out of the pattern"),
            "{e}"
        );
        let mut v = base_json();
        v["model_type"] = "gemma3".into();
        v["text_config"] = serde_json::json!({});
        assert!(cfg_err(&v).contains("Gemma 3 vision-language checkpoint"));
        let mut v = base_json();
        v["model_type"] = "gemma2".into();
        v["hidden_activation"] = "gelu".into();
        assert!(cfg_err(&v).contains("hidden_activation 'gelu' is not supported"));
        let mut v = base_json();
        v["num_key_value_heads"] = 3.into();
        assert!(cfg_err(&v).contains("not a multiple of num_kv_heads 3"));
        assert!(parse_hf_config("c", "{not json")
            .unwrap_err()
            .to_string()
            .contains("invalid JSON"));
    }

    #[test]
    fn file_errors() {
        let src = SyntheticModel::new(tiny_config(Arch::Llama, 4, 2, false), 8).unwrap();

        // no config.json / no weights
        let dir = tmp("errs-empty");
        let e = open_err(&dir);
        assert!(e.contains("config.json: no such file"), "{e}");
        std::fs::write(dir.join("config.json"), base_json().to_string()).unwrap();
        let e = open_err(&dir);
        assert!(e.contains("no model.safetensors"), "{e}");

        // corrupt safetensors header
        let dir = tmp("errs-corrupt");
        write_hf_dir(&dir, &src, HfDtype::F32, 1).unwrap();
        let p = dir.join("model.safetensors");
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[8] = b'#';
        std::fs::write(&p, &bytes).unwrap();
        let e = open_err(&dir);
        assert!(
            e.contains("model.safetensors: invalid safetensors file"),
            "{e}"
        );
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        assert!(open_err(&dir).contains("invalid safetensors file"));
        std::fs::write(&p, b"\xff\xff\xff\xff\xff\xff\xff\x7f{}").unwrap();
        assert!(open_err(&dir).contains("invalid safetensors file"));

        // missing shard
        let dir = tmp("errs-shard");
        write_hf_dir(&dir, &src, HfDtype::F16, 2).unwrap();
        std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
        let e = open_err(&dir);
        assert!(
            e.contains("model-00002-of-00002.safetensors") && e.contains("does not exist"),
            "{e}"
        );

        // missing tensor (untied model without lm_head)
        let dir = tmp("errs-missing");
        let mut cfg = src.config().clone();
        cfg.tie_word_embeddings = true;
        let tied = SyntheticModel::new(cfg, 8).unwrap();
        write_hf_dir(&dir, &tied, HfDtype::F32, 1).unwrap();
        std::fs::write(
            dir.join("config.json"),
            hf_config_json(src.config(), HfDtype::F32).to_string(),
        )
        .unwrap();
        let e = open_err(&dir);
        assert!(
            e.contains("missing tensor 'lm_head.weight' (lm_head)"),
            "{e}"
        );

        // shape mismatch: config says more layers' width than the file has
        let dir = tmp("errs-shape");
        write_hf_dir(&dir, &src, HfDtype::F32, 1).unwrap();
        let mut v = hf_config_json(src.config(), HfDtype::F32);
        v["intermediate_size"] = 96.into();
        std::fs::write(dir.join("config.json"), v.to_string()).unwrap();
        let e = open_err(&dir);
        assert!(
            e.contains("model.safetensors: tensor 'model.layers.0.mlp.gate_proj.weight'"),
            "{e}"
        );
        assert!(
            e.contains("has shape [128, 64], the config needs [96, 64]"),
            "{e}"
        );

        // unsupported dtype
        let dir = tmp("errs-dtype");
        let mut tensors = Vec::new();
        let datas: Vec<(String, Vec<usize>, Vec<u8>)> = tensor_names(src.config())
            .into_iter()
            .map(|n| {
                let t = src.load(n).unwrap();
                let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
                (hf_tensor_name(src.config().arch, n), t.shape, bytes)
            })
            .collect();
        for (name, shape, bytes) in &datas {
            let dtype = if name.ends_with("0.self_attn.q_proj.weight") {
                ::safetensors::Dtype::I32
            } else {
                ::safetensors::Dtype::F32
            };
            let view = ::safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes).unwrap();
            tensors.push((name.clone(), view));
        }
        let bytes = ::safetensors::serialize(tensors, None).unwrap();
        std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
        std::fs::write(
            dir.join("config.json"),
            hf_config_json(src.config(), HfDtype::F32).to_string(),
        )
        .unwrap();
        let e = open_err(&dir);
        assert!(
            e.contains("'model.layers.0.self_attn.q_proj.weight' has dtype I32"),
            "{e}"
        );

        for d in ["empty", "corrupt", "shard", "missing", "shape", "dtype"] {
            std::fs::remove_dir_all(tmp(&format!("errs-{d}"))).unwrap();
        }
    }
}
