//! `--model hf:...` against a hub on this machine: a small HTTP server that serves
//! directories in the Hugging Face Hub's URL layout (the repository listing, `resolve`
//! URLs, LFS files redirected to a "CDN" route, Range requests, the Hub's error headers),
//! with `HubConfig::endpoint` pointed at it and the cache in a temporary directory.
//! Nothing here reaches a real hub.

use headroom::hub::{self, HubConfig, HubError, ModelSpec, ProgressStyle};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const TOKEN: &str = "hf_test_token";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/families/llama3")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// The git blob id the Hub gives a file kept in git.
fn git_sha1(bytes: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(format!("blob {}\0", bytes.len()).as_bytes());
    ctx.update(bytes);
    hex(ctx.finish().as_ref())
}

/// Weights go through LFS on the Hub; everything else stays in git.
fn is_lfs(name: &str) -> bool {
    name.ends_with(".safetensors") || name.ends_with(".gguf")
}

/// A repository the hub serves: a directory, and the token it wants (a gated model).
struct ServedRepo {
    dir: PathBuf,
    token: Option<String>,
}

/// One request the hub saw.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    range: Option<String>,
}

#[derive(Default)]
struct HubState {
    repos: HashMap<String, ServedRepo>,
    seen: Vec<Seen>,
    /// "ORG/REPO/FILE" and a byte count: the next transfer of that file from its start
    /// sends this many bytes of the body and drops the connection
    cut_next: Option<(String, usize)>,
    /// "ORG/REPO/FILE" -> bytes sent in place of the file (the listing still advertises
    /// the real file's checksum)
    corrupt: HashMap<String, Vec<u8>>,
}

/// The hub: an address and what it serves and saw.
struct FakeHub {
    url: String,
    state: Arc<Mutex<HubState>>,
}

impl FakeHub {
    fn start() -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(HubState::default()));
        let (s, u) = (state.clone(), url.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (s, u) = (s.clone(), u.clone());
                std::thread::spawn(move || serve(stream, &s, &u));
            }
        });
        FakeHub { url, state }
    }

    fn add_repo(&self, repo: &str, dir: &Path, token: Option<&str>) {
        self.state.lock().unwrap().repos.insert(
            repo.to_string(),
            ServedRepo {
                dir: dir.to_path_buf(),
                token: token.map(Into::into),
            },
        );
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// A config that fetches from this hub into `cache`, quietly, without retries.
    fn config(&self, cache: &Path) -> HubConfig {
        HubConfig {
            endpoint: self.url.clone(),
            cache_dir: cache.to_path_buf(),
            token: None,
            progress: ProgressStyle::Quiet,
            retries: 0,
        }
    }
}

/// The request line's target and the headers (names lowercased) of one request.
fn read_request(stream: &TcpStream) -> Option<(String, HashMap<String, String>)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let target = line.split_whitespace().nth(1)?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    Some((target, headers))
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    head += &format!("Content-Length: {}\r\n\r\n", body.len());
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// The Hub's way of saying what is missing or refused.
fn hub_error(stream: &mut TcpStream, status: &str, code: &str, message: &str) {
    let headers = [
        ("X-Error-Code", code.to_string()),
        ("X-Error-Message", message.to_string()),
        ("Content-Type", "application/json".to_string()),
    ];
    let body = format!("{{\"error\":\"{message}\"}}");
    respond(stream, status, &headers, body.as_bytes());
}

fn serve(mut stream: TcpStream, state: &Mutex<HubState>, url: &str) {
    let Some((target, headers)) = read_request(&stream) else {
        return;
    };
    let path = target.split('?').next().unwrap_or("").to_string();
    let range = headers.get("range").cloned();
    state.lock().unwrap().seen.push(Seen {
        path: path.clone(),
        range: range.clone(),
    });
    let authorized = |repo: &ServedRepo| match &repo.token {
        None => true,
        Some(t) => headers.get("authorization") == Some(&format!("Bearer {t}")),
    };

    // GET /api/models/ORG/REPO/revision/REV: the commit and the files with their checksums
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let parts: Vec<&str> = rest.splitn(4, '/').collect();
        let repo = format!("{}/{}", parts[0], parts.get(1).unwrap_or(&""));
        let st = state.lock().unwrap();
        let Some(served) = st.repos.get(&repo) else {
            return hub_error(
                &mut stream,
                "404 Not Found",
                "RepoNotFound",
                "Repository not found",
            );
        };
        if !matches!(parts.get(3), Some(&"main") | Some(&COMMIT)) {
            return hub_error(
                &mut stream,
                "404 Not Found",
                "RevisionNotFound",
                "Invalid rev id",
            );
        }
        let mut siblings = Vec::new();
        let mut names: Vec<String> = std::fs::read_dir(&served.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let bytes = std::fs::read(served.dir.join(&name)).unwrap();
            let mut entry = serde_json::json!({
                "rfilename": name,
                "size": bytes.len(),
                "blobId": git_sha1(&bytes),
            });
            if is_lfs(&name) {
                entry["lfs"] = serde_json::json!({
                    "sha256": sha256(&bytes), "size": bytes.len(), "pointerSize": 134
                });
            }
            siblings.push(entry);
        }
        let body = serde_json::json!({ "id": repo, "sha": COMMIT, "siblings": siblings });
        let json = ("Content-Type", "application/json".to_string());
        return respond(&mut stream, "200 OK", &[json], body.to_string().as_bytes());
    }

    // GET /cdn/SHA256: where LFS files are redirected to, as the Hub's CDN
    if let Some(sha) = path.strip_prefix("/cdn/") {
        let found = {
            let st = state.lock().unwrap();
            st.repos.iter().find_map(|(repo, served)| {
                std::fs::read_dir(&served.dir).unwrap().find_map(|e| {
                    let e = e.unwrap();
                    let bytes = std::fs::read(e.path()).unwrap();
                    let name = e.file_name().to_string_lossy().into_owned();
                    (sha256(&bytes) == sha).then(|| format!("{repo}/{name}"))
                })
            })
        };
        return match found {
            Some(key) => send_file(&mut stream, state, &key, range.as_deref(), &[]),
            None => respond(&mut stream, "404 Not Found", &[], b""),
        };
    }

    // GET /ORG/REPO/resolve/REV/FILE
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if parts.len() != 5 || parts[2] != "resolve" {
        return respond(&mut stream, "404 Not Found", &[], b"");
    }
    let repo = format!("{}/{}", parts[0], parts[1]);
    let (rev, file) = (parts[3], parts[4]);
    let (dir, allowed) = {
        let st = state.lock().unwrap();
        match st.repos.get(&repo) {
            Some(served) => (served.dir.clone(), authorized(served)),
            None => {
                drop(st);
                return hub_error(
                    &mut stream,
                    "404 Not Found",
                    "RepoNotFound",
                    "Repository not found",
                );
            }
        }
    };
    if rev != "main" && rev != COMMIT {
        return hub_error(
            &mut stream,
            "404 Not Found",
            "RevisionNotFound",
            "Invalid rev id",
        );
    }
    if !allowed {
        let message = format!("Access to model {repo} is restricted. You must have access to it and be authenticated to access it. Please log in.");
        return hub_error(&mut stream, "401 Unauthorized", "GatedRepo", &message);
    }
    let Ok(bytes) = std::fs::read(dir.join(file)) else {
        return hub_error(
            &mut stream,
            "404 Not Found",
            "EntryNotFound",
            "Entry not found",
        );
    };
    let commit = ("X-Repo-Commit", COMMIT.to_string());
    if is_lfs(file) {
        let sha = sha256(&bytes);
        let headers = [
            ("Location", format!("{url}/cdn/{sha}")),
            ("X-Linked-Etag", format!("\"{sha}\"")),
            ("X-Linked-Size", bytes.len().to_string()),
            ("ETag", format!("\"{}\"", git_sha1(b"an LFS pointer"))),
            commit,
        ];
        return respond(&mut stream, "302 Found", &headers, b"");
    }
    let etag = ("ETag", format!("\"{}\"", git_sha1(&bytes)));
    send_file(
        &mut stream,
        state,
        &format!("{repo}/{file}"),
        range.as_deref(),
        &[etag, commit],
    );
}

/// The file `key` ("ORG/REPO/FILE"), whole or the range asked for; cut short when
/// `cut_next` says so.
fn send_file(
    stream: &mut TcpStream,
    state: &Mutex<HubState>,
    key: &str,
    range: Option<&str>,
    extra: &[(&str, String)],
) {
    let (bytes, cut) = {
        let mut st = state.lock().unwrap();
        let (repo, file) = key.rsplit_once('/').unwrap();
        let real = std::fs::read(st.repos[repo].dir.join(file)).unwrap();
        let bytes = st.corrupt.get(key).cloned().unwrap_or(real);
        let whole_transfer = range.is_none_or(|r| r == "bytes=0-");
        let cut = match &st.cut_next {
            Some((k, n)) if k == key && whole_transfer => Some(*n),
            _ => None,
        };
        if cut.is_some() {
            st.cut_next = None;
        }
        (bytes, cut)
    };
    let total = bytes.len();
    let (start, end) = match range.and_then(|r| r.strip_prefix("bytes=")) {
        Some(r) => {
            let (s, e) = r.split_once('-').unwrap();
            let s: usize = s.parse().unwrap();
            let e: usize = if e.is_empty() {
                total - 1
            } else {
                e.parse().unwrap()
            };
            (s, e.min(total - 1))
        }
        None => (0, total - 1),
    };
    if start >= total {
        let headers = [("Content-Range", format!("bytes */{total}"))];
        return respond(stream, "416 Range Not Satisfiable", &headers, b"");
    }
    let mut headers = extra.to_vec();
    headers.push(("Accept-Ranges", "bytes".into()));
    let status = match range {
        Some(_) => {
            headers.push(("Content-Range", format!("bytes {start}-{end}/{total}")));
            "206 Partial Content"
        }
        None => "200 OK",
    };
    let body = &bytes[start..=end];
    match cut {
        None => respond(stream, status, &headers, body),
        Some(n) => {
            // the whole length announced, part of it sent, the connection dropped
            let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
            for (name, value) in &headers {
                head += &format!("{name}: {value}\r\n");
            }
            head += &format!("Content-Length: {}\r\n\r\n", body.len());
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body[..n]);
            let _ = stream.flush();
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// A fresh temporary directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("headroom-hf-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn spec(s: &str) -> ModelSpec {
    ModelSpec::parse(s).unwrap()
}

fn same_bytes(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(x == y, "{} differs from {}", a.display(), b.display());
}

/// The files a safetensors model is fetched with, of the llama3 fixture.
const MODEL_FILES: [&str; 5] = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
];

#[test]
fn a_gguf_file_and_a_safetensors_directory_arrive_byte_identical_and_load() {
    let hub = FakeHub::start();
    hub.add_repo("org/llama3", &fixture(), None);
    let cache = temp_dir("full");
    let config = hub.config(&cache);

    let gguf = hub::resolve(&spec("hf:org/llama3/model.gguf"), &config).unwrap();
    assert_eq!(
        gguf,
        cache.join(format!("models--org--llama3/snapshots/{COMMIT}/model.gguf"))
    );
    same_bytes(&gguf, &fixture().join("model.gguf"));

    let dir = hub::resolve(&spec("hf:org/llama3@main"), &config).unwrap();
    assert_eq!(dir, gguf.parent().unwrap());
    for f in MODEL_FILES {
        same_bytes(&dir.join(f), &fixture().join(f));
    }
    // only what the model needs: not the fixture's logits and reference files
    for f in ["reference.json", "short.logits.f32", "long.logits.f32"] {
        assert!(!dir.join(f).exists(), "{f} was fetched");
    }
    assert_eq!(
        std::fs::read_to_string(cache.join("models--org--llama3/refs/main")).unwrap(),
        COMMIT
    );

    // both load as the fixture itself does (files only: no GPU)
    let local = headroom::engine::open(&fixture()).unwrap();
    for path in [&dir, &gguf] {
        let fetched = headroom::engine::open(path).unwrap();
        assert_eq!(
            fetched.weights.config(),
            local.weights.config(),
            "{}",
            path.display()
        );
        assert_eq!(fetched.tokenizer.vocab_size(), local.tokenizer.vocab_size());
    }

    // once complete, the cache answers without asking the hub
    let asked = hub.seen().len();
    assert_eq!(hub::resolve(&spec("hf:org/llama3"), &config).unwrap(), dir);
    assert_eq!(
        hub::resolve(&spec("hf:org/llama3/model.gguf"), &config).unwrap(),
        gguf
    );
    assert_eq!(hub.seen().len(), asked, "a cached model asked the hub");
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn a_sharded_model_arrives_with_its_index_and_every_shard() {
    let repo = temp_dir("sharded-repo");
    let local = headroom::engine::open(&fixture()).unwrap();
    headroom::model::synthetic::write_hf_dir(
        &repo,
        local.weights.as_ref(),
        headroom::model::synthetic::HfDtype::F32,
        2,
    )
    .unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture().join(f), repo.join(f)).unwrap();
    }
    let hub = FakeHub::start();
    hub.add_repo("org/sharded", &repo, None);
    let cache = temp_dir("sharded");

    let dir = hub::resolve(&spec("hf:org/sharded"), &hub.config(&cache)).unwrap();
    let shards = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    for f in shards
        .iter()
        .chain(&["model.safetensors.index.json", "config.json"])
    {
        same_bytes(&dir.join(f), &repo.join(f));
    }
    let fetched = headroom::engine::open(&dir).unwrap();
    assert_eq!(fetched.weights.config(), local.weights.config());
    std::fs::remove_dir_all(&cache).unwrap();
    std::fs::remove_dir_all(&repo).unwrap();
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let hub = FakeHub::start();
    hub.add_repo("org/llama3", &fixture(), None);
    let cache = temp_dir("resume");
    let config = hub.config(&cache);
    let gguf_bytes = std::fs::read(fixture().join("model.gguf")).unwrap();
    let sha = sha256(&gguf_bytes);
    let cut_at = 100_000;
    hub.state.lock().unwrap().cut_next = Some(("org/llama3/model.gguf".into(), cut_at));

    // the first attempt breaks off and says so; what arrived stays as the partial file
    let e = hub::resolve(&spec("hf:org/llama3/model.gguf"), &config).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, HubError::Interrupted { .. }), "{text}");
    assert!(
        text.contains("org/llama3/model.gguf")
            && text.contains(&format!("stopped at {cut_at} of {}", gguf_bytes.len()))
            && text.contains("run again to resume"),
        "{text}"
    );
    let part = cache.join(format!("models--org--llama3/blobs/{sha}.part"));
    assert_eq!(std::fs::metadata(&part).unwrap().len(), cut_at as u64);

    // the second continues from there: a Range request from the byte it stopped at
    let gguf = hub::resolve(&spec("hf:org/llama3/model.gguf"), &config).unwrap();
    same_bytes(&gguf, &fixture().join("model.gguf"));
    assert!(!part.exists());
    let transfers: Vec<String> = hub
        .seen()
        .into_iter()
        .filter(|s| s.path == format!("/cdn/{sha}"))
        .filter_map(|s| s.range)
        .filter(|r| r != "bytes=0-0")
        .collect();
    assert_eq!(
        transfers,
        ["bytes=0-".to_string(), format!("bytes={cut_at}-")]
    );

    // with retries, one call resumes by itself
    let config = HubConfig {
        retries: 1,
        ..config
    };
    hub.state.lock().unwrap().cut_next = Some(("org/llama3/model.safetensors".into(), 200_000));
    let dir = hub::resolve(&spec("hf:org/llama3"), &config).unwrap();
    same_bytes(
        &dir.join("model.safetensors"),
        &fixture().join("model.safetensors"),
    );
    assert!(hub
        .seen()
        .iter()
        .any(|s| s.range.as_deref() == Some("bytes=200000-")));
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn a_corrupted_file_is_refused_and_not_kept() {
    let hub = FakeHub::start();
    hub.add_repo("org/llama3", &fixture(), None);
    let cache = temp_dir("corrupt");
    let config = hub.config(&cache);
    let real = std::fs::read(fixture().join("model.gguf")).unwrap();
    let sha = sha256(&real);
    let mut bad = real.clone();
    bad[real.len() / 2] ^= 0xff;
    let bad_sha = sha256(&bad);
    hub.state
        .lock()
        .unwrap()
        .corrupt
        .insert("org/llama3/model.gguf".into(), bad);

    let e = hub::resolve(&spec("hf:org/llama3/model.gguf"), &config).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, HubError::Checksum { .. }), "{text}");
    assert!(
        text.contains("org/llama3/model.gguf")
            && text.contains(&format!("expected sha256 {sha}"))
            && text.contains(&format!("found sha256 {bad_sha}")),
        "{text}"
    );
    let repo_dir = cache.join("models--org--llama3");
    assert!(!repo_dir
        .join(format!("snapshots/{COMMIT}/model.gguf"))
        .exists());
    let blobs: Vec<String> = std::fs::read_dir(repo_dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(blobs.is_empty(), "left in the cache: {blobs:?}");

    // a non-LFS file is checked against its git blob id the same way
    let mut config_json = std::fs::read(fixture().join("config.json")).unwrap();
    config_json[10] ^= 0x01;
    hub.state
        .lock()
        .unwrap()
        .corrupt
        .insert("org/llama3/config.json".into(), config_json);
    let text = hub::resolve(&spec("hf:org/llama3"), &config)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("org/llama3/config.json") && text.contains("expected git blob sha1"),
        "{text}"
    );

    // once the hub serves the right bytes, the same call succeeds
    hub.state.lock().unwrap().corrupt.clear();
    let gguf = hub::resolve(&spec("hf:org/llama3/model.gguf"), &config).unwrap();
    same_bytes(&gguf, &fixture().join("model.gguf"));
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn missing_repos_files_and_revisions_are_named() {
    let hub = FakeHub::start();
    hub.add_repo("org/llama3", &fixture(), None);
    let gguf_only = temp_dir("gguf-only-repo");
    std::fs::copy(
        fixture().join("model.gguf"),
        gguf_only.join("tiny-Q8_0.gguf"),
    )
    .unwrap();
    hub.add_repo("org/ggufs", &gguf_only, None);
    let cache = temp_dir("missing");
    let config = hub.config(&cache);
    let err = |s: &str| hub::resolve(&spec(s), &config).unwrap_err();

    let e = err("hf:org/nope");
    assert!(matches!(e, HubError::RepoNotFound { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("org/nope")
            && text.contains("no such model repository")
            && text.contains(&hub.url),
        "{text}"
    );

    let text = err("hf:org/llama3/nope.gguf").to_string();
    assert!(
        text.contains("org/llama3@main has no file nope.gguf") && text.contains("model.gguf"),
        "{text}"
    );

    let text = err("hf:org/llama3@v9").to_string();
    assert!(text.contains("org/llama3: no revision 'v9'"), "{text}");

    let text = err("hf:org/ggufs").to_string();
    assert!(
        text.contains("org/ggufs@main: no config.json")
            && text.contains("hf:org/ggufs/tiny-Q8_0.gguf fetches one"),
        "{text}"
    );
    let text = ModelSpec::parse("hf:org").unwrap_err().to_string();
    assert!(text.contains("expected hf:ORG/REPO"), "{text}");
    std::fs::remove_dir_all(&cache).unwrap();
    std::fs::remove_dir_all(&gguf_only).unwrap();
}

#[test]
fn a_refused_token_and_an_unreachable_hub_say_what_to_do() {
    let hub = FakeHub::start();
    hub.add_repo("org/gated", &fixture(), Some(TOKEN));
    let cache = temp_dir("auth");
    let config = hub.config(&cache);

    let e = hub::resolve(&spec("hf:org/gated/model.gguf"), &config).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, HubError::Auth { status: 401, .. }), "{text}");
    assert!(
        text.contains("org/gated/model.gguf")
            && text.contains("HF_TOKEN")
            && text.contains("restricted"),
        "{text}"
    );
    let with_token = HubConfig {
        token: Some(TOKEN.into()),
        ..hub.config(&cache)
    };
    let gguf = hub::resolve(&spec("hf:org/gated/model.gguf"), &with_token).unwrap();
    same_bytes(&gguf, &fixture().join("model.gguf"));

    // a port nobody listens on
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let nowhere = HubConfig {
        endpoint: endpoint.clone(),
        ..hub.config(&cache)
    };
    let e = hub::resolve(&spec("hf:org/other"), &nowhere).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, HubError::Network { .. }), "{text}");
    assert!(
        text.contains(&format!("cannot reach the hub at {endpoint} for org/other"))
            && text.contains("HF_ENDPOINT"),
        "{text}"
    );
    std::fs::remove_dir_all(&cache).unwrap();
}

/// The binary with the hub's and the cache's variables set for it alone.
fn headroom(args: &[&str], hub: &FakeHub, cache: &Path) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(args)
        .env("HF_ENDPOINT", &hub.url)
        .env("HEADROOM_CACHE", cache)
        .env("HF_HOME", cache.join("no-hf-home"))
        .env_remove("HF_TOKEN")
        .env_remove("HEADROOM_MODEL")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn headroom_list_shows_what_is_cached_with_sizes() {
    let hub = FakeHub::start();
    hub.add_repo("org/llama3", &fixture(), None);
    let cache = temp_dir("list");

    let (ok, _, stderr) = headroom(&["list"], &hub, &cache);
    assert!(ok, "{stderr}");

    // the command line fetches through the same path: inspect needs no GPU
    let (ok, stdout, stderr) = headroom(&["inspect", "hf:org/llama3/model.gguf"], &hub, &cache);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("fetching hf:org/llama3/model.gguf"),
        "{stderr}"
    );
    assert!(stderr.contains("  model.gguf: 436.7 KiB in"), "{stderr}");
    assert!(stdout.contains("tensors,"), "{stdout}");
    let (ok, _, stderr) = headroom(&["inspect", "hf:org/llama3"], &hub, &cache);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = headroom(&["inspect", "hf:org/nope"], &hub, &cache);
    assert!(
        !ok && stderr.contains("error: org/nope: no such model repository"),
        "{stderr}"
    );

    let repos = hub::list(&cache).unwrap();
    assert_eq!(repos.len(), 1);
    let r = &repos[0];
    assert_eq!(r.repo, "org/llama3");
    assert_eq!(r.snapshots.len(), 1);
    assert_eq!(r.snapshots[0].commit, COMMIT);
    assert_eq!(r.snapshots[0].revisions, ["main"]);
    let mut names: Vec<&str> = r.snapshots[0]
        .files
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    names.sort();
    let mut want: Vec<&str> = MODEL_FILES.iter().copied().chain(["model.gguf"]).collect();
    want.sort();
    assert_eq!(names, want);
    let size = |f: &str| std::fs::metadata(fixture().join(f)).unwrap().len();
    assert_eq!(r.bytes, want.iter().map(|f| size(f)).sum::<u64>());
    assert_eq!(r.partial_bytes, 0);
    assert_eq!(
        r.snapshots[0].specs(&r.repo),
        ["hf:org/llama3", "hf:org/llama3/model.gguf"]
    );

    std::fs::write(cache.join("loose.gguf"), b"GGUF").unwrap();
    let (ok, stdout, stderr) = headroom(&["list"], &hub, &cache);
    assert!(ok, "{stderr}");
    for want in [
        format!("cache: {}", cache.display()),
        format!("org/llama3  {}", hub::human_bytes(r.bytes)),
        format!(
            "commit {} (main): --model hf:org/llama3 | hf:org/llama3/model.gguf",
            &COMMIT[..12]
        ),
        "model.safetensors".to_string(),
        "421.0 KiB".to_string(),
        "loose.gguf".to_string(),
        "1 repository,".to_string(),
    ] {
        assert!(stdout.contains(&want), "no {want:?} in:\n{stdout}");
    }
    std::fs::remove_dir_all(&cache).unwrap();
}
