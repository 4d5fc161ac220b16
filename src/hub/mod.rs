//! Models from the Hugging Face Hub: `--model hf:ORG/REPO` (a safetensors model directory)
//! and `--model hf:ORG/REPO/FILE.gguf` (one GGUF file), optionally `@REVISION`.
//!
//! The `hf-hub` crate's blocking client does the transfers and keeps its cache layout
//! under the cache root (`HEADROOM_CACHE`, else `~/.cache/headroom/models`):
//!
//! ```text
//! models--ORG--REPO/
//!   blobs/ETAG              file contents, named by the Hub's ETag (an LFS file's sha256)
//!   blobs/ETAG.part         a download in progress; the next attempt resumes it (HTTP Range)
//!   snapshots/COMMIT/FILE   links to blobs: what the model loads from
//!   refs/REVISION           the commit a branch or tag pointed to when it was fetched
//! ```
//!
//! Around it, this module lists the repository (`/api/models/ORG/REPO/revision/REV?blobs=true`:
//! the commit, each file's size and checksum), picks the files a model needs, shows
//! progress, verifies every finished file (an LFS file's sha256, another file's git blob
//! sha1) and deletes one that does not match, and turns the Hub's answers into errors
//! that name the repository, file and hub. A model already complete in the cache is used
//! without asking the hub.
//!
//! The library takes its settings as a [`HubConfig`]; only [`HubConfig::from_env`] reads
//! `HF_ENDPOINT`, `HF_TOKEN` and `HEADROOM_CACHE`.

mod cache;
mod fetch;
mod progress;
mod spec;

pub use cache::{describe_cache, list, CachedFile, CachedRepo, CachedSnapshot};
pub use progress::ProgressStyle;
pub use spec::ModelSpec;

use std::path::PathBuf;

/// A safetensors model's weights: one file, or an index naming its shards.
const SINGLE_WEIGHTS: &str = "model.safetensors";
const WEIGHTS_INDEX: &str = "model.safetensors.index.json";

/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where models are fetched from and kept.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// the hub's base URL, e.g. `https://huggingface.co`
    pub endpoint: String,
    /// the cache root: `models--ORG--REPO/` folders in hf-hub's layout
    pub cache_dir: PathBuf,
    /// sent as `Authorization: Bearer TOKEN` (private and gated repositories)
    pub token: Option<String>,
    pub progress: ProgressStyle,
    /// further attempts after a transfer breaks off, each resuming where the last stopped
    pub retries: usize,
}

impl HubConfig {
    /// The command line's settings: `HF_ENDPOINT` (else the public Hub), `HF_TOKEN` (else
    /// the token `hf auth login` saved in `$HF_HOME/token` or `~/.cache/huggingface/token`),
    /// the cache root from [`default_cache_dir`], a progress bar where stderr is a terminal,
    /// and 3 retries.
    pub fn from_env() -> HubConfig {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let saved_token = || {
            let home = var("HF_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface")))?;
            let token = std::fs::read_to_string(home.join("token")).ok()?;
            Some(token.trim().to_string()).filter(|t| !t.is_empty())
        };
        HubConfig {
            endpoint: var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.into()),
            cache_dir: default_cache_dir(),
            token: var("HF_TOKEN").or_else(saved_token),
            progress: ProgressStyle::for_stderr(),
            retries: 3,
        }
    }
}

/// `HEADROOM_CACHE`, else `$XDG_CACHE_HOME/headroom/models`, else `~/.cache/headroom/models`.
pub fn default_cache_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("HEADROOM_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("headroom/models");
    }
    let home = var("HOME").map(PathBuf::from).unwrap_or_else(|| ".".into());
    home.join(".cache/headroom/models")
}

/// The local path of `spec`'s model: its snapshot directory (safetensors) or file (GGUF),
/// fetched first unless the cache already holds all of it.
pub fn resolve(spec: &ModelSpec, config: &HubConfig) -> Result<PathBuf, HubError> {
    if let Some(path) = cache::cached_model(&config.cache_dir, spec) {
        return Ok(path);
    }
    fetch::download(spec, config)
}

/// What went wrong fetching a model; each names the repository or file and the hub.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{spec}: {why}")]
    BadSpec { spec: String, why: String },
    #[error(
        "{repo}: no such model repository at {endpoint} (a private or gated one needs HF_TOKEN)"
    )]
    RepoNotFound { repo: String, endpoint: String },
    #[error("{repo}: no revision '{revision}' at {endpoint}")]
    RevisionNotFound {
        repo: String,
        revision: String,
        endpoint: String,
    },
    #[error("{repo}@{revision} has no file {file}{}", list_others(others))]
    FileNotFound {
        repo: String,
        revision: String,
        file: String,
        /// the repository's GGUF files, to pick from
        others: Vec<String>,
    },
    #[error("{repo}@{revision}: {why}")]
    NotAModel {
        repo: String,
        revision: String,
        why: String,
    },
    #[error(
        "{what} at {endpoint}: access refused (HTTP {status}{detail}); set HF_TOKEN to a token \
         that may read it (a gated model's terms are accepted on its page)"
    )]
    Auth {
        what: String,
        endpoint: String,
        status: u16,
        detail: String,
    },
    #[error(
        "cannot reach the hub at {endpoint} for {what}: {message} (HF_ENDPOINT sets its address)"
    )]
    Network {
        what: String,
        endpoint: String,
        message: String,
    },
    #[error("{what}: the hub at {endpoint} answered HTTP {status}{detail}")]
    Http {
        what: String,
        endpoint: String,
        status: u16,
        detail: String,
    },
    #[error(
        "{what}: the transfer stopped at {done} of {total} bytes ({message}); run again to resume \
         from there"
    )]
    Interrupted {
        what: String,
        done: u64,
        total: u64,
        message: String,
    },
    #[error("{what}: refused, expected {expected} but found {found}; the download was deleted")]
    Checksum {
        what: String,
        expected: String,
        found: String,
    },
    #[error("{what}: {message}")]
    Protocol { what: String, message: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

fn list_others(others: &[String]) -> String {
    match others {
        [] => String::new(),
        files => format!("; its GGUF files: {}", files.join(", ")),
    }
}

impl HubError {
    fn io(path: &std::path::Path, e: std::io::Error) -> HubError {
        HubError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

/// Bytes in binary units: "512 B", "1.5 KiB", "270.9 MiB", "4.4 GiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{v:.1} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn bytes_read_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(284_000_000), "270.8 MiB");
        assert_eq!(human_bytes(5 << 40), "5.0 TiB");
    }
}
