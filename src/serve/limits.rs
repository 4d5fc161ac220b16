//! Bounds on what one request may ask of the server (each a `serve` flag).

/// axum's own default, now stated and settable.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 << 20;

/// Bounds on one request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// largest request body; a larger one is a 413 before it is read in full
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}
