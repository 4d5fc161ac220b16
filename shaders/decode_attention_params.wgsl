// Parameters of decode attention and its split merge (mirrors `Params` in
// src/ops/decode_attention.rs).
struct Params {
    table_base: u32,     // u32 offset of the block tables in `step_meta`
    chunk: u32,          // positions per split, a multiple of P
    n_splits: u32,       // 1: write normalised outputs directly
    q_stride4: u32,      // vec4s between query rows
    out_stride4: u32,    // vec4s between output rows
    ml_base4: u32,       // vec4 offset of the (max, sum) pairs in `partials`
    merge_always: u32,   // 1: partials even from one split (the merge stores 8-bit blocks)
    scale: f32,
}

// Sliding-window attention: a query whose context is ctx positions sees the last WINDOW of
// them, positions window_start(ctx)..ctx (WINDOW 0: all of them).
const WINDOW: u32 = {{WINDOW}}u;
fn window_start(ctx: u32) -> u32 {
    return select(0u, ctx - WINDOW, WINDOW != 0u && ctx > WINDOW);
}

// Soft-capped scores (gemma2): cap * tanh(score / cap), applied after the scale (SOFTCAP 0:
// none).
const SOFTCAP: f32 = {{SOFTCAP}};
fn capped(s: f32) -> f32 {
    if (SOFTCAP > 0.0) {
        return softcap(s, SOFTCAP);
    }
    return s;
}
