//! `headroom bench write-model`: a random-weight GGUF of a model family's real shape
//! (`model::random_gguf`), the file headroom and llama.cpp are timed on side by side.

use super::decode_step::Quant;
use super::BenchError;
use crate::formats::gguf::GgufFile;
use crate::model::random_gguf::{family_shape, write_random_gguf, FAMILY_SHAPES};
use std::path::PathBuf;

#[derive(clap::Args, Clone, Debug)]
pub struct WriteModelArgs {
    /// the family's shape: llama2-7b, mistral-7b, qwen3-8b, gemma2-9b, gemma3-12b,
    /// phi3-mini
    #[arg(long)]
    pub shape: String,
    /// the matrices' block type
    #[arg(long, value_enum, default_value = "q4_0")]
    pub quant: Quant,
    /// a GGUF whose tokenizer the file takes (its vocabulary sets the embedding's rows)
    #[arg(long)]
    pub vocab: PathBuf,
    /// where to write the file
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: &WriteModelArgs) -> Result<(), BenchError> {
    let vocab = GgufFile::open(&a.vocab).map_err(|e| BenchError(e.to_string()))?;
    let tokens = vocab
        .array_len("tokenizer.ggml.tokens")
        .map_err(|e| BenchError(e.to_string()))?
        .ok_or_else(|| BenchError(format!("{}: no tokenizer.ggml.tokens", vocab.path())))?;
    let cfg = family_shape(&a.shape, tokens).ok_or_else(|| {
        let known: Vec<String> = FAMILY_SHAPES
            .iter()
            .map(|(n, what)| format!("  {n}: {what}"))
            .collect();
        BenchError(format!(
            "unknown shape '{}'; the shapes:\n{}",
            a.shape,
            known.join("\n")
        ))
    })?;
    let started = web_time::Instant::now();
    let bytes = write_random_gguf(&a.out, &cfg, a.quant.into(), &a.shape, &vocab)
        .map_err(|e| BenchError(e.to_string()))?;
    println!(
        "wrote {} ({}, {} layers, hidden {}, {:.2} GiB) in {:.1} s",
        a.out.display(),
        a.shape,
        cfg.num_layers,
        cfg.hidden_size,
        bytes as f64 / (1u64 << 30) as f64,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
