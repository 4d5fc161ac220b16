//! What the engine's work costs and how close it runs to the hardware: step records and
//! their rates (`steps`), the memory-bandwidth and FMA-rate probes kernels are compared
//! with (`probe`) and the roofline they make with a profiled step (`roofline`),
//! the attention cost model and its measurement of the real kernel (`attention`,
//! `attention_lab`), model presets (`presets`) and units (`units`). The viewer and the
//! benchmarks both read from here; ops declare each kernel's cost (`ops::Cost`).

pub mod attention;
pub mod attention_lab;
pub mod presets;
pub mod probe;
pub mod roofline;
pub mod steps;
pub mod units;

pub use steps::{bin_steps, contiguous_runs, Bin, StepRecord, Traffic, BIN_S};
