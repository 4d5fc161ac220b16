// Shared math, inserted with shaders/common.wgsl and with the attention parameters.

// tanh without the overflow of a driver's tanh computed as a quotient of exponentials
// (tanh(15) is 1 in f32)
fn tanh_safe(x: f32) -> f32 {
    let e = exp(2.0 * clamp(x, -15.0, 15.0));
    return (e - 1.0) / (e + 1.0);
}

fn tanh_safe4(x: vec4<f32>) -> vec4<f32> {
    let e = exp(2.0 * clamp(x, vec4<f32>(-15.0), vec4<f32>(15.0)));
    return (e - 1.0) / (e + 1.0);
}

// cap * tanh(x / cap): gemma's soft-capping of attention scores and logits
fn softcap(x: f32, cap: f32) -> f32 {
    return cap * tanh_safe(x / cap);
}

// GELU, tanh approximation (PyTorch's gelu(approximate="tanh"), gemma's GeGLU)
fn gelu_tanh4(x: vec4<f32>) -> vec4<f32> {
    let inner = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + tanh_safe4(inner));
}

// The gated MLP's activation of the gate: GeGLU's GELU, or SwiGLU's SiLU
fn gate_activation4(g: vec4<f32>, gelu: bool) -> vec4<f32> {
    if (gelu) {
        return gelu_tanh4(g);
    }
    return g / (1.0 + exp(-g));
}
