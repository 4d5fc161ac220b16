// Shared by every kernel: the per-step parameters, written once per forward pass.
struct Step {
    n_tokens: u32,      // tokens in this forward pass (rows of the activations)
    pos0: u32,          // position of the first of them (single-sequence steps)
    n_out_rows: u32,    // rows that get logits (see OutRow)
    _pad: u32,
}

// One row that gets logits: which activation row it comes from and how to sample the
// token after it (each sequence of a batch has its own settings).
struct OutRow {
    src_row: u32,
    temperature: f32,   // 0 = greedy
    top_k: u32,         // 0 = off
    top_p: f32,         // 1 = off
    seed: u32,
    counter: u32,       // advances every sampled token of the sequence
    draft: u32,         // a speculative draft's token to verify (0xffffffff: none)
    _pad1: u32,
}
