//! A minimal HTTP/1.1 client for the server tests: one request per connection, the
//! answer parsed (status, headers, body; chunked bodies joined, SSE events split).

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct HttpResponse {
    pub status: u16,
    /// header lines, names lowercased
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// The `data:` payloads of an SSE body, in order (keep-alive comments skipped).
    pub fn sse_data(&self) -> Vec<String> {
        assert!(
            self.body.ends_with("\n\n"),
            "SSE events end with a blank line: {:?}",
            self.body
        );
        self.body
            .split("\n\n")
            .filter(|event| !event.is_empty() && !event.starts_with(':'))
            .map(|event| {
                event
                    .strip_prefix("data: ")
                    .unwrap_or_else(|| panic!("not a data event: {event:?}"))
                    .to_string()
            })
            .collect()
    }

    /// The error object of an OpenAI error body, checked for its four fields.
    pub fn error(&self) -> Value {
        let body = self.json();
        let error = body["error"].clone();
        for field in ["message", "type", "param", "code"] {
            assert!(error.get(field).is_some(), "error without {field}: {body}");
        }
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        error
    }
}

pub fn send_request(stream: &mut TcpStream, method: &str, path: &str, body: &str) {
    send_request_with(stream, method, path, body, &[]);
}

/// `send_request` with extra header lines (`name`, `value`).
pub fn send_request_with(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) {
    let extra: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
}

pub fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> HttpResponse {
    http_with(addr, method, path, body, &[])
}

/// `http` with extra header lines.
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    send_request_with(&mut stream, method, path, body, headers);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse_response(&String::from_utf8(raw).expect("UTF-8 response"))
}

pub fn parse_response(raw: &str) -> HttpResponse {
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// Joins the chunks of a chunked transfer encoding.
pub fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// The HTTP server for `backend` on a free loopback port, on a runtime of its own; it
/// stops when the runtime is dropped.
pub fn serve_on_loopback(
    backend: std::sync::Arc<dyn headroom::engine::Backend>,
) -> (SocketAddr, tokio::runtime::Runtime) {
    serve_on_loopback_with(backend, headroom::serve::Access::open(), Default::default())
}

/// `serve_on_loopback` admitting only what `access` admits, within `limits`.
pub fn serve_on_loopback_with(
    backend: std::sync::Arc<dyn headroom::engine::Backend>,
    access: headroom::serve::Access,
    limits: headroom::serve::Limits,
) -> (SocketAddr, tokio::runtime::Runtime) {
    let (runtime, listener, addr) = loopback_listener();
    runtime.spawn(headroom::serve::serve_with(
        backend, listener, access, limits,
    ));
    (addr, runtime)
}

/// `serve_on_loopback_with` that starts draining when `shutdown` fires; also returns the
/// server's task, which ends when the server has stopped.
pub fn serve_on_loopback_until(
    backend: std::sync::Arc<dyn headroom::engine::Backend>,
    limits: headroom::serve::Limits,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) -> (
    SocketAddr,
    tokio::runtime::Runtime,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let (runtime, listener, addr) = loopback_listener();
    let task = runtime.spawn(headroom::serve::serve_until(
        backend,
        listener,
        headroom::serve::Access::open(),
        limits,
        async {
            let _ = shutdown.await;
        },
    ));
    (addr, runtime, task)
}

/// A runtime of two workers and a listener on a free loopback port.
fn loopback_listener() -> (tokio::runtime::Runtime, tokio::net::TcpListener, SocketAddr) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    (runtime, listener, addr)
}
