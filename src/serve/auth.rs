//! Who may use the server: OpenAI-style bearer keys (`Authorization: Bearer KEY`) on the
//! API routes and, unless opened, on `/metrics`; `/health` stays open for load balancers.
//! No keys means no check (the default on loopback; `main` refuses other hosts without
//! keys unless told to).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The keys the server accepts, and whether `/metrics` needs one.
#[derive(Clone, Debug, Default)]
pub struct Access {
    keys: Vec<Vec<u8>>,
    /// `/metrics` without a key even where keys are set (`--metrics-open`)
    pub metrics_open: bool,
}

impl Access {
    /// Anyone may call every route.
    pub fn open() -> Access {
        Access::default()
    }

    /// Only callers presenting one of `keys`; an empty key is refused (it would let a
    /// bare `Bearer ` in).
    pub fn with_keys(keys: Vec<String>, metrics_open: bool) -> Result<Access, String> {
        if keys.iter().any(|k| k.trim().is_empty()) {
            return Err("an API key is empty".into());
        }
        Ok(Access {
            keys: keys.into_iter().map(String::into_bytes).collect(),
            metrics_open,
        })
    }

    /// Keys from a file, one a line; blank lines and lines starting with `#` are skipped.
    pub fn keys_from_file(path: &std::path::Path) -> Result<Vec<String>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--api-key-file {}: {e}", path.display()))?;
        let keys: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect();
        match keys.is_empty() {
            true => Err(format!("--api-key-file {}: no keys in it", path.display())),
            false => Ok(keys),
        }
    }

    pub fn requires_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Whether `headers` carry an accepted key (always, when there are none). Every key
    /// is compared in full whatever the others gave, so the time taken does not say how
    /// much of a guess matched.
    fn admits(&self, headers: &HeaderMap) -> bool {
        if self.keys.is_empty() {
            return true;
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|v| v.trim().as_bytes())
            .unwrap_or_default();
        self.keys
            .iter()
            .fold(false, |found, key| found | same_bytes(key, given))
    }
}

/// `a == b` in time that depends on their lengths only.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Middleware: the request goes on with an accepted key, else a 401 as OpenAI's API
/// answers it.
pub(super) async fn require_key(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Response {
    if access.admits(request.headers()) {
        return next.run(request).await;
    }
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        "Incorrect or missing API key: send `Authorization: Bearer KEY` with a key the \
         server was started with (--api-key).",
    )
    .code("invalid_api_key")
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn only_a_listed_key_is_admitted() {
        let access = Access::with_keys(vec!["sk-one".into(), "sk-two".into()], false).unwrap();
        assert!(access.admits(&bearer("Bearer sk-two")));
        assert!(access.admits(&bearer("Bearer sk-one")));
        assert!(!access.admits(&bearer("Bearer sk-on")));
        assert!(!access.admits(&bearer("Bearer sk-one2")));
        assert!(!access.admits(&bearer("Basic sk-one")));
        assert!(!access.admits(&bearer("Bearer ")));
        assert!(!access.admits(&HeaderMap::new()));
        assert!(Access::open().admits(&HeaderMap::new()));
        assert!(Access::with_keys(vec![" ".into()], false).is_err());
    }
}
