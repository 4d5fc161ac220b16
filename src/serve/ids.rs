//! Request ids, random seeds and the clock.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Numbers requests within this process.
static SERIAL: AtomicU64 = AtomicU64::new(0);

/// A unique id such as `chatcmpl-19a2b3c4d5e-7`: start time in ms (hex) and a serial.
pub(super) fn request_id(prefix: &str) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!(
        "{prefix}-{millis:x}-{}",
        SERIAL.fetch_add(1, Ordering::Relaxed)
    )
}

/// A seed for requests without one: std's randomly keyed hasher over a fresh serial.
pub(super) fn random_seed() -> u32 {
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    std::collections::hash_map::RandomState::new().hash_one(serial) as u32
}

pub(super) fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
