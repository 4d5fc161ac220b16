//! The attention cost model: how big each attention variant's KV cache is, and how long
//! decode attention takes if it only has to read that cache once at the probed memory
//! bandwidth (the roofline prediction the measured kernels are set beside); and
//! [`Variant`], one layer of a variant as the kernel measurements build it.

use crate::gpu::StorageFormat;
use crate::kv::KvLayout;

/// Which attention a model uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKind {
    /// every query head has its own KV head
    Mha,
    /// `group` query heads share each KV head
    Gqa { group: usize },
    /// one KV head for all query heads
    Mqa,
    /// one compressed latent per position (DeepSeek): `rank` wide, plus a shared RoPE key
    Mla { rank: usize, rope: usize },
}

impl AttentionKind {
    pub fn label(&self) -> String {
        match self {
            AttentionKind::Mha => "MHA".into(),
            AttentionKind::Gqa { group } => format!("GQA (group {group})"),
            AttentionKind::Mqa => "MQA".into(),
            AttentionKind::Mla { rank, rope } => format!("MLA (rank {rank} + rope {rope})"),
        }
    }
}

/// A model's attention at one batch and context.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionShape {
    pub kind: AttentionKind,
    pub layers: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// sequences decoded together
    pub batch: usize,
    /// positions each sequence attends over
    pub context: usize,
}

/// Bytes of one cached K or V value (f16, as headroom stores the cache).
pub const KV_ELEMENT_BYTES: u64 = 2;

impl AttentionShape {
    /// KV heads the cache holds per layer (MLA: its one latent).
    pub fn kv_heads(&self) -> usize {
        match self.kind {
            AttentionKind::Mha => self.heads,
            AttentionKind::Gqa { group } => (self.heads / group.max(1)).max(1),
            AttentionKind::Mqa | AttentionKind::Mla { .. } => 1,
        }
    }

    /// Query heads that read each KV head.
    pub fn group(&self) -> usize {
        self.heads / self.kv_heads()
    }

    /// The same model with another attention kind.
    pub fn with_kind(&self, kind: AttentionKind) -> AttentionShape {
        AttentionShape { kind, ..*self }
    }

    /// KV cache bytes one position adds in one layer.
    pub fn kv_bytes_per_token_layer(&self) -> u64 {
        let values = match self.kind {
            AttentionKind::Mla { rank, rope } => rank + rope,
            _ => 2 * self.kv_heads() * self.head_dim,
        };
        values as u64 * KV_ELEMENT_BYTES
    }

    /// KV cache bytes one position adds over all layers.
    pub fn kv_bytes_per_token(&self) -> u64 {
        self.kv_bytes_per_token_layer() * self.layers as u64
    }

    /// KV cache of the whole batch at this context, all layers.
    pub fn kv_bytes_total(&self) -> u64 {
        self.kv_bytes_per_token() * (self.batch * self.context) as u64
    }

    /// Predicted decode-attention time of one step (all layers, the whole batch): every
    /// cached byte read once at `gbps` (decimal GB/s).
    pub fn predicted_step_s(&self, gbps: f64) -> f64 {
        self.kv_bytes_total() as f64 / (gbps * 1e9)
    }

    /// Predicted attention time per generated token (one step makes `batch` tokens).
    pub fn predicted_token_s(&self, gbps: f64) -> f64 {
        self.predicted_step_s(gbps) / self.batch as f64
    }

    /// The kernel benchmark's variant for one layer of this shape.
    pub fn variant(&self) -> Variant {
        let (name, mla) = match self.kind {
            AttentionKind::Mha => ("mha", None),
            AttentionKind::Gqa { .. } => ("gqa", None),
            AttentionKind::Mqa => ("mqa", None),
            AttentionKind::Mla { rank, rope } => ("mla", Some((rank, rope))),
        };
        Variant {
            name,
            heads: self.heads,
            kv_heads: self.kv_heads(),
            head_dim: self.head_dim,
            mla,
        }
    }

    /// Group sizes that split the heads evenly, between MHA (1) and MQA (heads).
    pub fn group_sizes(&self) -> Vec<usize> {
        (2..self.heads)
            .filter(|g| self.heads.is_multiple_of(*g))
            .collect()
    }
}

/// An attention variant and its shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Variant {
    pub name: &'static str,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// MLA: (latent rank, RoPE key dim); the cache is one latent head
    pub mla: Option<(usize, usize)>,
}

impl Variant {
    /// The KV layout of one layer of this variant.
    pub fn layout(&self, block_size: usize) -> KvLayout {
        match self.mla {
            Some((rank, rope)) => KvLayout {
                layers: 1,
                kv_heads: 1,
                key_dim: rank + rope,
                value_dim: rank,
                block_size,
                format: StorageFormat::F16,
                latent: true,
            },
            None => KvLayout {
                layers: 1,
                kv_heads: self.kv_heads,
                key_dim: self.head_dim,
                value_dim: self.head_dim,
                block_size,
                format: StorageFormat::F16,
                latent: false,
            },
        }
    }

    /// Query heads' key width (absorbed query for MLA).
    pub fn key_dim(&self) -> usize {
        self.mla.map_or(self.head_dim, |(r, p)| r + p)
    }

    pub fn value_dim(&self) -> usize {
        self.mla.map_or(self.head_dim, |(r, _)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::presets::PRESETS;

    #[test]
    fn kv_cache_sizes_follow_the_heads_they_keep() {
        let llama2 = PRESETS[1].shape(1, 4096);
        // 2 (K, V) x 32 heads x 128 x 2 bytes x 32 layers = 512 KiB per token
        assert_eq!(llama2.kv_bytes_per_token(), 512 * 1024);
        assert_eq!(llama2.kv_bytes_total(), 2 << 30);
        let gqa = llama2.with_kind(AttentionKind::Gqa { group: 4 });
        assert_eq!(gqa.kv_heads(), 8);
        assert_eq!(llama2.kv_bytes_per_token() / gqa.kv_bytes_per_token(), 4);
        let mqa = llama2.with_kind(AttentionKind::Mqa);
        assert_eq!(llama2.kv_bytes_per_token() / mqa.kv_bytes_per_token(), 32);
        // DeepSeek-V2-Lite: (512 + 64) x 2 bytes x 27 layers
        let mla = PRESETS[3].shape(1, 1);
        assert_eq!(mla.kv_bytes_per_token(), 576 * 2 * 27);
        // SmolLM2: 3 KV heads of 64, 30 layers
        assert_eq!(
            PRESETS[0].shape(1, 1).kv_bytes_per_token(),
            2 * 3 * 64 * 2 * 30
        );
    }

    #[test]
    fn prediction_is_bytes_over_bandwidth_per_token() {
        let s = PRESETS[1].shape(4, 1000);
        let gbps = 2000.0;
        let step = s.predicted_step_s(gbps);
        assert!((step - s.kv_bytes_total() as f64 / 2e12).abs() < 1e-15);
        assert!((s.predicted_token_s(gbps) * 4.0 - step).abs() < 1e-15);
        assert_eq!(s.group_sizes(), vec![2, 4, 8, 16]);
        assert_eq!(s.variant().kv_heads, 32);
    }
}
