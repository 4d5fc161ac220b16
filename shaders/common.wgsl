// Shared by every kernel: the per-step parameters, written once per forward pass.
struct Step {
    n_tokens: u32,      // tokens in this forward pass (rows of the activations)
    pos0: u32,          // position of the first of them in the sequence
    out_row0: u32,      // first activation row that gets logits
    n_out_rows: u32,    // rows that get logits (1 per sequence)
    temperature: f32,   // 0 = greedy
    top_k: u32,         // 0 = off
    top_p: f32,         // 1 = off
    seed: u32,
    counter: u32,       // advances every sampled token
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
