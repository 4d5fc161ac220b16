//! `headroom bench attention`: decode attention alone, on synthetic paged KV caches made on
//! the GPU, swept over variant x batch x context x head dim. The same run first probes the
//! adapter's copy bandwidth; every time is set beside the roofline (KV bytes / probed
//! bandwidth) and the speedup over MHA at the same shape beside the KV-bytes ratio.

use super::{BenchError, OutputArgs};
use crate::gpu::timing::GpuTimer;
use crate::gpu::{GpuContext, GpuOptions};
use crate::metrics::attention::Variant;
use crate::metrics::attention_lab::{measure, timing_name, AttentionResult, Shape};
use crate::metrics::probe::{probe_copy_bandwidth, BandwidthProbe};

#[derive(clap::Args, Clone, Debug)]
pub struct BenchAttentionArgs {
    /// variants: mha, gqa2, gqa4, gqa8, mqa, mla (comma-separated); GQA-n has n KV heads
    /// (n groups, as in the GQA paper)
    #[arg(long, default_value = "mha,gqa2,gqa4,gqa8,mqa,mla")]
    pub variants: String,
    /// sequences per step
    #[arg(long, default_value = "1,4,16,64")]
    pub batches: String,
    /// context lengths in tokens (K = 1024 suffix allowed: 1K, 4K, 16K)
    #[arg(long, default_value = "1K,4K,16K,32K")]
    pub contexts: String,
    /// head dims of the MHA/GQA/MQA variants
    #[arg(long, default_value = "128")]
    pub head_dims: String,
    /// query heads of the MHA/GQA/MQA variants
    #[arg(long, default_value_t = 32)]
    pub heads: usize,
    /// MLA shape: heads, latent rank, RoPE key dim (DeepSeek-V2-Lite: 16, 512, 64)
    #[arg(long, default_value = "16,512,64")]
    pub mla: String,
    /// positions per KV block
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    /// skip shapes whose KV cache is larger than this
    #[arg(long, default_value_t = 16.0)]
    pub max_kv_gib: f64,
    /// bytes of the copy-bandwidth probe (MiB)
    #[arg(long, default_value_t = 1024)]
    pub probe_mib: u64,
    /// timed samples per shape (median reported), after warm-up
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// --csv, --json, and --plot: time and speedup against context for each variant
    #[command(flatten)]
    pub out: OutputArgs,
    /// the batch the plot shows
    #[arg(long, default_value_t = 16)]
    pub plot_batch: usize,
    /// adapter name substring (default: the high-performance adapter)
    #[arg(long, env = "HEADROOM_ADAPTER")]
    pub adapter: Option<String>,
}

/// The variants named in `list` for `heads` query heads of `head_dim`.
pub fn parse_variants(
    list: &str,
    heads: usize,
    head_dim: usize,
    mla: (usize, usize, usize),
) -> Result<Vec<Variant>, BenchError> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        // KV heads (None: MLA's latent); GQA-n has n KV heads (n groups)
        let kv_heads = match name {
            "mha" => Some(heads),
            "gqa2" => Some(2),
            "gqa4" => Some(4),
            "gqa8" => Some(8),
            "mqa" => Some(1),
            "mla" => None,
            _ => {
                return Err(BenchError(format!(
                    "unknown variant {name:?} (known: mha, gqa2, gqa4, gqa8, mqa, mla)"
                )))
            }
        };
        let v = if let Some(kv_heads) = kv_heads {
            if kv_heads > heads || !heads.is_multiple_of(kv_heads) {
                return Err(BenchError(format!(
                    "{name}: {heads} heads do not split over {kv_heads} KV heads"
                )));
            }
            Variant {
                name: match name {
                    "mha" => "mha",
                    "gqa2" => "gqa2",
                    "gqa4" => "gqa4",
                    "gqa8" => "gqa8",
                    _ => "mqa",
                },
                heads,
                kv_heads,
                head_dim,
                mla: None,
            }
        } else {
            Variant {
                name: "mla",
                heads: mla.0,
                kv_heads: 1,
                head_dim: mla.1,
                mla: Some((mla.1, mla.2)),
            }
        };
        out.push(v);
    }
    if out.is_empty() {
        return Err(BenchError("no variants given".into()));
    }
    Ok(out)
}

/// A comma-separated list of sizes; `K` multiplies by 1024.
pub fn parse_sizes(list: &str, what: &str) -> Result<Vec<usize>, BenchError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (num, mul) = match s.strip_suffix(['K', 'k']) {
                Some(n) => (n, 1024),
                None => (s, 1),
            };
            num.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .map(|n| n * mul)
                .ok_or_else(|| BenchError(format!("{what}: {s:?} is not a positive size")))
        })
        .collect()
}

/// Fills in the speedup over the MHA row of the same (head dim, batch, context).
pub fn add_speedups(results: &mut [AttentionResult]) {
    let mha: Vec<(usize, usize, usize, f64, u64)> = results
        .iter()
        .filter(|r| r.variant == "mha")
        .map(|r| (r.head_dim, r.batch, r.context, r.median_us, r.kv_bytes))
        .collect();
    for r in results.iter_mut() {
        let base = mha.iter().find(|m| {
            (m.1, m.2) == (r.batch, r.context) && (r.variant == "mla" || m.0 == r.head_dim)
        });
        if let Some(&(_, _, _, us, bytes)) = base {
            r.speedup_over_mha = Some(us / r.median_us);
            r.kv_bytes_ratio_vs_mha = Some(bytes as f64 / r.kv_bytes as f64);
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub fn run(a: &BenchAttentionArgs) -> Result<(), BenchError> {
    let gpu = GpuContext::new_blocking(&GpuOptions {
        adapter: a.adapter.clone(),
        ..Default::default()
    })?;
    let batches = parse_sizes(&a.batches, "--batches")?;
    let contexts = parse_sizes(&a.contexts, "--contexts")?;
    let head_dims = parse_sizes(&a.head_dims, "--head-dims")?;
    let mla = parse_sizes(&a.mla, "--mla")?;
    if mla.len() != 3 {
        return Err(BenchError("--mla takes heads,rank,rope".into()));
    }
    let mut variants = Vec::new();
    for &d in &head_dims {
        for v in parse_variants(&a.variants, a.heads, d, (mla[0], mla[1], mla[2]))? {
            // MLA's shape does not depend on the head dim: once
            if v.mla.is_none() || !variants.iter().any(|w: &Variant| w.mla.is_some()) {
                variants.push(v);
            }
        }
    }
    eprintln!("adapter: {}", gpu.adapter_name());
    let probe_bytes = (a.probe_mib << 20).min(gpu.max_binding());
    let probe: BandwidthProbe = probe_copy_bandwidth(&gpu, probe_bytes)?;
    let copy_gbps = probe.gbps_read_write;
    eprintln!(
        "copy bandwidth: {:.1} GB/s (read + write, {} MiB, {})",
        copy_gbps,
        probe.bytes_copied >> 20,
        timing_name(probe.source)
    );
    let timer = GpuTimer::new(&gpu, 256);
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    println!(
        "{:<5} {:>4} {:>5} {:>4} {:>6} {:>6} {:>10} {:>10} {:>10} {:>8} {:>6} {:>9} {:>8}",
        "var",
        "d",
        "B",
        "N",
        "splits",
        "KV MiB",
        "median us",
        "roof us",
        "GB/s",
        "% copy",
        "x MHA",
        "KV ratio",
        "roof/t"
    );
    for v in &variants {
        for &b in &batches {
            for &n in &contexts {
                let kv = v.layout(a.block_size).bytes_per_token() * (b * n) as u64;
                if kv as f64 > a.max_kv_gib * (1u64 << 30) as f64 {
                    skipped.push(format!(
                        "{} d{} B={b} N={n}: KV cache {:.1} GiB > --max-kv-gib {}",
                        v.name,
                        v.head_dim,
                        kv as f64 / (1u64 << 30) as f64,
                        a.max_kv_gib
                    ));
                    continue;
                }
                let shape = Shape {
                    variant: v,
                    batch: b,
                    context: n,
                    block_size: a.block_size,
                };
                match measure(&gpu, &timer, &shape, a.runs, copy_gbps) {
                    Ok(r) => {
                        // MHA rows compare with themselves (1.00); a variant
                        // without a measured MHA row shows a dash
                        let base = if r.variant == "mha" {
                            Some(&r)
                        } else {
                            results.iter().find(|m: &&AttentionResult| {
                                m.variant == "mha"
                                    && (m.batch, m.context) == (b, n)
                                    && (v.mla.is_some() || m.head_dim == v.head_dim)
                            })
                        };
                        let ratio_cell =
                            |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.2}"));
                        let x = ratio_cell(base.map(|m| m.median_us / r.median_us));
                        let ratio = ratio_cell(base.map(|m| m.kv_bytes as f64 / r.kv_bytes as f64));
                        println!(
                            "{:<5} {:>4} {:>5} {:>4} {:>6} {:>6.0} {:>10.1} {:>10.1} {:>10.1} {:>7.1}% {:>6} {:>9} {:>8.2}",
                            r.variant,
                            r.key_dim,
                            b,
                            short(n),
                            r.splits,
                            r.kv_bytes as f64 / (1u64 << 20) as f64,
                            r.median_us,
                            r.roofline_us,
                            r.effective_gbps,
                            r.pct_of_copy_bandwidth,
                            x,
                            ratio,
                            r.roofline_us / r.median_us
                        );
                        results.push(r);
                    }
                    Err(e) => skipped.push(format!("{} d{} B={b} N={n}: {e}", v.name, v.head_dim)),
                }
            }
        }
    }
    add_speedups(&mut results);
    for s in &skipped {
        println!("skipped: {s}");
    }
    if let Some(p) = &a.out.csv {
        write_csv(p, &results)?;
    }
    if let Some(p) = &a.out.json {
        let doc = serde_json::json!({
            "adapter": gpu.adapter_name(),
            "driver": format!("{} {}", gpu.adapter_info.driver, gpu.adapter_info.driver_info),
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "unix_time": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            "copy_bandwidth_gbps": copy_gbps,
            "copy_probe_bytes": probe.bytes_copied,
            "copy_probe_timing": timing_name(probe.source),
            "subgroups": gpu.features.subgroups,
            "results": results,
            "skipped": skipped,
        });
        std::fs::write(p, serde_json::to_string_pretty(&doc).unwrap_or_default())?;
    }
    if let Some(p) = &a.out.plot {
        plot(p, &results, a.plot_batch, &gpu.adapter_name(), copy_gbps)?;
    }
    Ok(())
}

fn short(n: usize) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}K", n / 1024)
    } else {
        n.to_string()
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn write_csv(path: &std::path::Path, results: &[AttentionResult]) -> Result<(), BenchError> {
    let mut s = String::from(
        "variant,heads,kv_heads,key_dim,value_dim,batch,context,group,splits,chunk,kv_bytes,\
         total_bytes,median_us,min_us,effective_gbps,pct_of_copy_bandwidth,roofline_us,\
         speedup_over_mha,kv_bytes_ratio_vs_mha,timing\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x:.4}"));
    for r in results {
        s += &format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{:.3},{:.3},{:.2},{:.2},{:.3},{},{},{}\n",
            r.variant,
            r.heads,
            r.kv_heads,
            r.key_dim,
            r.value_dim,
            r.batch,
            r.context,
            r.group,
            r.splits,
            r.chunk,
            r.kv_bytes,
            r.total_bytes,
            r.median_us,
            r.min_us,
            r.effective_gbps,
            r.pct_of_copy_bandwidth,
            r.roofline_us,
            opt(r.speedup_over_mha),
            opt(r.kv_bytes_ratio_vs_mha),
            r.timing
        );
    }
    std::fs::write(path, s).map_err(|e| BenchError(format!("writing {}: {e}", path.display())))
}

#[cfg(not(target_arch = "wasm32"))]
fn plot(
    path: &std::path::Path,
    results: &[AttentionResult],
    batch: usize,
    adapter: &str,
    copy_gbps: f64,
) -> Result<(), BenchError> {
    use crate::bench::plot::{write_png, Panel, Series};
    let mut time = Vec::new();
    let mut speed = Vec::new();
    let mut names: Vec<(String, usize)> = Vec::new();
    for r in results.iter().filter(|r| r.batch == batch) {
        let key = (r.variant.clone(), r.key_dim);
        if !names.contains(&key) {
            names.push(key);
        }
    }
    for (name, kd) in &names {
        let rows: Vec<&AttentionResult> = results
            .iter()
            .filter(|r| r.batch == batch && &r.variant == name && r.key_dim == *kd)
            .collect();
        let label = if names.iter().filter(|n| &n.0 == name).count() > 1 {
            format!("{name} d{kd}")
        } else {
            name.clone()
        };
        time.push(Series {
            name: label.clone(),
            points: rows
                .iter()
                .map(|r| (r.context as f64, r.median_us))
                .collect(),
            dashed: false,
        });
        time.push(Series {
            name: format!("{label} roofline"),
            points: rows
                .iter()
                .map(|r| (r.context as f64, r.roofline_us))
                .collect(),
            dashed: true,
        });
        if name == "mha" {
            // no points, but it keeps each variant's colour the same in both panels
            speed.push(Series {
                name: label.clone(),
                points: Vec::new(),
                dashed: false,
            });
            speed.push(Series {
                name: format!("{label} KV-bytes ratio"),
                points: Vec::new(),
                dashed: true,
            });
        } else {
            speed.push(Series {
                name: label.clone(),
                points: rows
                    .iter()
                    .filter_map(|r| r.speedup_over_mha.map(|s| (r.context as f64, s)))
                    .collect(),
                dashed: false,
            });
            speed.push(Series {
                name: format!("{label} KV-bytes ratio"),
                points: rows
                    .iter()
                    .filter_map(|r| r.kv_bytes_ratio_vs_mha.map(|s| (r.context as f64, s)))
                    .collect(),
                dashed: true,
            });
        }
    }
    let panels = [
        Panel {
            title: format!(
                "decode attention time, batch {batch} (dashed: KV bytes / copy bandwidth)"
            ),
            x_label: "context (tokens)".into(),
            y_label: "GPU time (us)".into(),
            log_x: true,
            log_y: true,
            series: time,
        },
        Panel {
            title: format!("speedup over MHA, batch {batch} (dashed: KV-bytes ratio)"),
            x_label: "context (tokens)".into(),
            y_label: "speedup (x)".into(),
            log_x: true,
            log_y: true,
            series: speed,
        },
    ];
    write_png(
        path,
        1600,
        700,
        &format!("headroom bench attention — {adapter}, copy bandwidth {copy_gbps:.0} GB/s"),
        &panels,
    )
    .map_err(|e| BenchError(e.to_string()))
}
