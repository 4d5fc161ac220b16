//! The paged KV cache on the GPU: its layout, the per-layer pools of blocks, and the
//! per-step metadata (each query row's context length and block table) that the
//! attention and KV-append kernels read.
//!
//! Layout of one layer's pools, block `b` of `block_size` positions:
//! - K: `[b][kv_head][key_dim / 8][block_size][8]`, interleaved by 8 values so that
//!   neighbouring positions (neighbouring threads of the score phase) are neighbouring
//!   16-byte words;
//! - V: `[b][kv_head][block_size][value_dim]`, row-major for the value phase.
//!
//! For MLA (`latent`) there is no V pool: the key is the latent vector followed by the
//! shared RoPE key, and the value is the latent (the first `value_dim` values of the key).
//!
//! Which blocks belong to which sequence, and which full blocks are kept for later
//! requests with the same prefix, is the host-side [`prefix_cache`].

mod pool;
pub mod prefix_cache;

pub use pool::*;
pub use prefix_cache::{block_hash, BlockPool};
