//! Bounds on what one request, one connection and the whole server may take (each a
//! `serve` flag).

use std::time::Duration;

/// axum's own default, now stated and settable.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 << 20;

/// Bounds on requests and connections.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// largest request body; a larger one is a 413 before it is read in full
    pub max_body_bytes: usize,
    /// longest a request may run, from its arrival to its last byte; a whole reply past it
    /// is a 504, a stream ends with an error event (None: no limit)
    pub request_timeout: Option<Duration>,
    /// longest a connection may take to send a request's headers, or sit idle between
    /// requests, before it is closed (a client sending one byte a second holds nothing;
    /// zero: no limit)
    pub header_timeout: Duration,
    /// most connections open at once; more wait in the listen backlog until one closes
    pub max_connections: usize,
    /// after SIGTERM or SIGINT, how long running requests may go on before the server
    /// exits and they are cancelled (new ones are refused meanwhile)
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: Some(Duration::from_secs(600)),
            header_timeout: Duration::from_secs(30),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}
