// Fills a buffer with reproducible pseudo-random values, uniform in [-scale, scale), from
// a hash of (index, seed): synthetic weights and KV caches are made on the GPU, not
// uploaded. Each invocation writes one u32 word: one f32, or two f16 (FORMAT 1).
struct Params { words: u32, seed: u32, scale: f32, row_words: u32 }
@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;

const FORMAT: u32 = {{FORMAT}}u;

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

fn random_value(i: u32) -> f32 {
    let h = pcg(i ^ pcg(prm.seed));
    return (f32(h >> 8u) / 8388608.0 - 1.0) * prm.scale;
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    // 2-D grid: x covers row_words words, y the rows (more than 65535 x 256 words)
    let i = gid.y * prm.row_words + gid.x;
    if (gid.x >= prm.row_words || i >= prm.words) { return; }
    if (FORMAT == 1u) {
        dst[i] = pack2x16float(vec2<f32>(random_value(2u * i), random_value(2u * i + 1u)));
    } else {
        dst[i] = bitcast<u32>(random_value(i));
    }
}
