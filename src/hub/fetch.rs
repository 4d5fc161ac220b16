//! Fetching a model: list the repository at a revision, pick the files the model needs,
//! download each through hf-hub (which resumes a partial file with an HTTP Range request),
//! and verify it against the checksum the listing gives.

use super::cache::is_commit;
use super::progress::FileProgress;
use super::{human_bytes, HubConfig, HubError, ModelSpec, ProgressStyle};
use super::{SINGLE_WEIGHTS, WEIGHTS_INDEX};
use crate::formats::safetensors::read_index;
use hf_hub::api::sync::{Api, ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};
use serde::Deserialize;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The tokenizer's and generation's files a safetensors model brings along when the
/// repository has them (config.json and tokenizer.json are required).
const OPTIONAL_FILES: [&str; 4] = [
    "tokenizer_config.json",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
];

/// A repository at one commit, as `/api/models/ORG/REPO/revision/REV?blobs=true` lists it.
#[derive(Deserialize)]
struct Listing {
    sha: String,
    siblings: Vec<Sibling>,
}

/// One file of the listing.
#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    size: Option<u64>,
    /// the git blob's sha1 (the ETag of a file kept in git)
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    /// set for files kept in LFS (weights): their sha256 and size
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    sha256: String,
    size: u64,
}

/// What a finished file must hash to.
#[derive(Clone, Debug, PartialEq)]
enum Checksum {
    /// an LFS file's sha256 (its `X-Linked-Etag`)
    Sha256(String),
    /// a git file's blob id: sha1 of `blob {size}\0` and the contents (its `ETag`)
    GitSha1(String),
}

impl Checksum {
    /// The listing's checksum, else the one the blob's name (the file's ETag) spells.
    fn of(sibling: &Sibling, etag: &str) -> Option<Checksum> {
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        match (&sibling.lfs, &sibling.blob_id) {
            (Some(lfs), _) => Some(Checksum::Sha256(lfs.sha256.to_ascii_lowercase())),
            (None, Some(id)) => Some(Checksum::GitSha1(id.to_ascii_lowercase())),
            (None, None) if hex(etag, 64) => Some(Checksum::Sha256(etag.to_ascii_lowercase())),
            (None, None) if hex(etag, 40) => Some(Checksum::GitSha1(etag.to_ascii_lowercase())),
            _ => None,
        }
    }

    /// The hex digest the file must have.
    fn expected(&self) -> &str {
        match self {
            Checksum::Sha256(h) | Checksum::GitSha1(h) => h,
        }
    }

    fn describe(&self, hex: &str) -> String {
        match self {
            Checksum::Sha256(_) => format!("sha256 {hex}"),
            Checksum::GitSha1(_) => format!("git blob sha1 {hex}"),
        }
    }

    /// The checksum of the file at `path` in this checksum's kind.
    fn compute(&self, path: &Path) -> std::io::Result<String> {
        use ring::digest::{Context, SHA1_FOR_LEGACY_USE_ONLY, SHA256};
        let mut file = std::fs::File::open(path)?;
        let mut ctx = match self {
            Checksum::Sha256(_) => Context::new(&SHA256),
            Checksum::GitSha1(_) => {
                let mut ctx = Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
                ctx.update(format!("blob {}\0", file.metadata()?.len()).as_bytes());
                ctx
            }
        };
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
        Ok(ctx
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }
}

/// One fetch of `spec` with `config`: the client, the listing and where files land.
struct Fetch<'a> {
    spec: &'a ModelSpec,
    config: &'a HubConfig,
    repo: ApiRepo,
    listing: Listing,
    /// `models--ORG--REPO` under the cache root
    repo_dir: PathBuf,
}

/// Fetches `spec`'s files into the cache: the local path of its snapshot directory
/// (safetensors) or GGUF file.
pub(super) fn download(spec: &ModelSpec, config: &HubConfig) -> Result<PathBuf, HubError> {
    let api = client(config)?;
    let hub_repo = Repo::with_revision(spec.repo.clone(), RepoType::Model, spec.revision.clone());
    let repo_dir = config.cache_dir.join(hub_repo.folder_name());
    let repo = api.repo(hub_repo);
    let listing = list_repo(&repo, spec, config)?;
    // the commit names the snapshot's folder
    if !is_commit(&listing.sha) {
        return Err(HubError::Protocol {
            what: format!("{}@{}", spec.repo, spec.revision),
            message: format!(
                "the listing's commit '{}' is not a commit hash",
                listing.sha
            ),
        });
    }
    let fetch = Fetch {
        spec,
        config,
        repo,
        listing,
        repo_dir,
    };
    match &spec.file {
        Some(file) => fetch.gguf(file),
        None => fetch.safetensors_dir(),
    }
}

fn client(config: &HubConfig) -> Result<Api, HubError> {
    ApiBuilder::from_cache(Cache::new(config.cache_dir.clone()))
        .with_endpoint(config.endpoint.trim_end_matches('/').to_string())
        // always set, so that hf-hub does not look for a token file beside the cache root
        .with_token(config.token.clone())
        .with_progress(false)
        .with_retries(config.retries)
        .with_user_agent("headroom", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|e| HubError::Protocol {
            what: "the Hub client".into(),
            message: e.to_string(),
        })
}

/// The repository's commit and files at the spec's revision.
fn list_repo(repo: &ApiRepo, spec: &ModelSpec, config: &HubConfig) -> Result<Listing, HubError> {
    let what = format!("{}@{}", spec.repo, spec.revision);
    let response = repo
        .info_request()
        .query("blobs", "true")
        .call()
        .map_err(|e| http_error(e, spec, None, config))?;
    response.into_json().map_err(|e| HubError::Protocol {
        what: format!("{what} (its file listing)"),
        message: format!("{e} (is HF_ENDPOINT a Hugging Face hub?)"),
    })
}

/// A failed request as an error naming what was asked (the repository, or `file` of it).
fn http_error(
    e: ureq::Error,
    spec: &ModelSpec,
    file: Option<&str>,
    config: &HubConfig,
) -> HubError {
    let endpoint = config.endpoint.clone();
    let what = match file {
        Some(f) => format!("{}/{f}", spec.repo),
        None => spec.repo.clone(),
    };
    let response = match e {
        ureq::Error::Status(_, response) => response,
        ureq::Error::Transport(t) => {
            return HubError::Network {
                what,
                endpoint,
                message: t.to_string(),
            }
        }
    };
    let status = response.status();
    // the Hub says which thing is missing or refused in X-Error-Code, with a message
    let code = response.header("x-error-code").unwrap_or("").to_string();
    let message = response.header("x-error-message").unwrap_or("").to_string();
    let detail = match message.is_empty() {
        true => String::new(),
        false => format!(": {message}"),
    };
    if code == "RevisionNotFound" {
        HubError::RevisionNotFound {
            repo: spec.repo.clone(),
            revision: spec.revision.clone(),
            endpoint,
        }
    } else if code == "RepoNotFound" || (status == 404 && file.is_none()) {
        // without a token the Hub answers 401 RepoNotFound for a repository that does not
        // exist (or that the caller may not see)
        HubError::RepoNotFound {
            repo: spec.repo.clone(),
            endpoint,
        }
    } else if status == 404 || code == "EntryNotFound" {
        HubError::FileNotFound {
            repo: spec.repo.clone(),
            revision: spec.revision.clone(),
            file: file.unwrap_or_default().to_string(),
            others: Vec::new(),
        }
    } else if status == 401 || status == 403 {
        HubError::Auth {
            what,
            endpoint,
            status,
            detail,
        }
    } else {
        HubError::Http {
            what,
            endpoint,
            status,
            detail,
        }
    }
}

impl Fetch<'_> {
    /// The listing's entry for `name` (a path in the repository), if it has one.
    fn sibling(&self, name: &str) -> Option<&Sibling> {
        self.listing.siblings.iter().find(|s| s.rfilename == name)
    }

    fn gguf_files(&self) -> Vec<String> {
        let mut files: Vec<String> = self
            .listing
            .siblings
            .iter()
            .map(|s| s.rfilename.clone())
            .filter(|f| f.to_ascii_lowercase().ends_with(".gguf"))
            .collect();
        files.sort();
        files
    }

    fn snapshot_dir(&self) -> PathBuf {
        self.repo_dir.join("snapshots").join(&self.listing.sha)
    }

    fn not_a_model(&self, why: String) -> HubError {
        HubError::NotAModel {
            repo: self.spec.repo.clone(),
            revision: self.spec.revision.clone(),
            why,
        }
    }

    /// `hf:ORG/REPO/FILE.gguf`: that one file.
    fn gguf(&self, file: &str) -> Result<PathBuf, HubError> {
        let Some(sibling) = self.sibling(file) else {
            return Err(HubError::FileNotFound {
                repo: self.spec.repo.clone(),
                revision: self.spec.revision.clone(),
                file: file.to_string(),
                others: self.gguf_files(),
            });
        };
        self.announce(&[sibling]);
        self.fetch_file(sibling)
    }

    /// `hf:ORG/REPO`: config, tokenizer and generation files, then the weights (one
    /// model.safetensors, or the index and its shards), so that a snapshot whose weights
    /// are all there is complete.
    fn safetensors_dir(&self) -> Result<PathBuf, HubError> {
        for required in ["config.json", "tokenizer.json"] {
            if self.sibling(required).is_none() {
                return Err(self.not_a_model(format!(
                    "no {required}, so not a model headroom loads from safetensors{}",
                    gguf_hint(self.spec, &self.gguf_files())
                )));
            }
        }
        let mut small: Vec<&Sibling> = ["config.json", "tokenizer.json"]
            .into_iter()
            .chain(OPTIONAL_FILES)
            .filter_map(|f| self.sibling(f))
            .collect();
        let weights: Vec<&Sibling> = if let Some(single) = self.sibling(SINGLE_WEIGHTS) {
            vec![single]
        } else if let Some(index) = self.sibling(WEIGHTS_INDEX) {
            small.push(index);
            let path = self.fetch_file(index)?;
            let bytes = std::fs::read(&path).map_err(|e| HubError::io(&path, e))?;
            let label = format!("{}/{WEIGHTS_INDEX}", self.spec.repo);
            let (shards, _) = read_index(&label, &bytes).map_err(|e| HubError::Protocol {
                what: e.path,
                message: e.message,
            })?;
            let mut found = Vec::new();
            for shard in &shards {
                match self.sibling(shard) {
                    Some(s) => found.push(s),
                    None => {
                        return Err(self.not_a_model(format!(
                            "{WEIGHTS_INDEX} names the shard {shard}, which the repository lacks"
                        )))
                    }
                }
            }
            found
        } else {
            return Err(self.not_a_model(format!(
                "no {SINGLE_WEIGHTS} or {WEIGHTS_INDEX}{}",
                gguf_hint(self.spec, &self.gguf_files())
            )));
        };
        let all: Vec<&Sibling> = small.iter().chain(&weights).copied().collect();
        self.announce(&all);
        for sibling in all {
            self.fetch_file(sibling)?;
        }
        Ok(self.snapshot_dir())
    }

    /// One line saying what is fetched, how much and where to.
    fn announce(&self, files: &[&Sibling]) {
        if self.config.progress == ProgressStyle::Quiet {
            return;
        }
        let bytes: u64 = files.iter().filter_map(|s| size_of(s)).sum();
        let commit = &self.listing.sha[..self.listing.sha.len().min(7)];
        eprintln!(
            "fetching {} (commit {commit}): {} file{}, {} from {} into {}",
            self.spec,
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            human_bytes(bytes),
            self.config.endpoint,
            self.config.cache_dir.display()
        );
    }

    /// One file into the snapshot (unless it is there already), verified.
    fn fetch_file(&self, sibling: &Sibling) -> Result<PathBuf, HubError> {
        let name = &sibling.rfilename;
        let what = format!("{}/{name}", self.spec.repo);
        let in_snapshot = self.snapshot_dir().join(name);
        if in_snapshot.is_file() {
            return Ok(in_snapshot);
        }
        let size = size_of(sibling).unwrap_or(0);
        let partial = self.partial_files(sibling).iter().map(|p| p.1).max();
        let mut progress =
            FileProgress::new(self.config.progress, name, size, partial.unwrap_or(0));
        let path = match self.repo.download_with_progress(name, &mut progress) {
            Ok(path) => path,
            Err(e) => {
                progress.abandon();
                return Err(self.download_error(e, sibling, progress.done(), size));
            }
        };
        if path != in_snapshot {
            // unverified (the listing was of another commit): not kept as part of a model
            let _ = std::fs::remove_file(&path);
            return Err(HubError::Protocol {
                what,
                message: format!(
                    "{} moved to another commit while it was fetched (the listing said {}, the \
                     file came from {}); run again",
                    self.spec.revision,
                    self.listing.sha,
                    path.parent()
                        .map_or(String::new(), |p| p.display().to_string())
                ),
            });
        }
        self.verify(&path, sibling, &what)?;
        Ok(path)
    }

    /// The partial files of `sibling`'s interrupted downloads, which hf-hub resumes, with
    /// their sizes: hf-hub names a blob by the ETag the Hub sends, an LFS file's sha256
    /// (or its git blob id where a hub sends no `X-Linked-Etag`).
    fn partial_files(&self, sibling: &Sibling) -> Vec<(PathBuf, u64)> {
        let names = sibling
            .lfs
            .iter()
            .map(|l| &l.sha256)
            .chain(&sibling.blob_id);
        names
            .map(|n| self.repo_dir.join("blobs").join(format!("{n}.part")))
            .filter_map(|p| std::fs::metadata(&p).ok().map(|m| (p, m.len())))
            .collect()
    }

    /// Checks a finished file's size and checksum; a file that fails is deleted (its blob
    /// and its snapshot link), so the cache never holds it as valid.
    fn verify(&self, path: &Path, sibling: &Sibling, what: &str) -> Result<(), HubError> {
        let blob = std::fs::canonicalize(path).map_err(|e| HubError::io(path, e))?;
        let etag = blob
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into());
        let refuse = |expected: String, found: String| {
            let _ = std::fs::remove_file(&blob);
            let _ = std::fs::remove_file(path);
            Err(HubError::Checksum {
                what: what.to_string(),
                expected,
                found,
            })
        };
        let len = std::fs::metadata(&blob)
            .map_err(|e| HubError::io(&blob, e))?
            .len();
        if let Some(size) = size_of(sibling).filter(|&s| s != len) {
            return refuse(format!("{size} bytes"), format!("{len} bytes"));
        }
        let Some(checksum) = Checksum::of(sibling, &etag) else {
            return Ok(());
        };
        let found = checksum
            .compute(&blob)
            .map_err(|e| HubError::io(&blob, e))?;
        if found != checksum.expected() {
            return refuse(
                checksum.describe(checksum.expected()),
                checksum.describe(&found),
            );
        }
        Ok(())
    }

    /// hf-hub's error for `sibling` as one that says what to do.
    fn download_error(&self, e: ApiError, sibling: &Sibling, done: u64, total: u64) -> HubError {
        let name = sibling.rfilename.as_str();
        let what = format!("{}/{name}", self.spec.repo);
        match e {
            ApiError::RequestError(e) => http_error(*e, self.spec, Some(name), self.config),
            ApiError::TooManyRetries(e) => self.download_error(*e, sibling, done, total),
            // the body broke off: what arrived stays in the .part file
            ApiError::IoError(e) if done < total => HubError::Interrupted {
                what,
                done,
                total,
                message: e.to_string(),
            },
            ApiError::IoError(e) => HubError::Io {
                path: self.repo_dir.display().to_string(),
                message: e.to_string(),
            },
            ApiError::InvalidResume => {
                // longer than the file: it cannot be resumed, so it goes
                for (path, _) in self.partial_files(sibling) {
                    let _ = std::fs::remove_file(path);
                }
                HubError::Protocol {
                    what,
                    message: "the partial download was longer than the file; deleted it, run \
                              again"
                        .into(),
                }
            }
            ApiError::LockAcquisition(lock) => HubError::Io {
                path: lock.display().to_string(),
                message: "another download of this file holds its lock".into(),
            },
            other => HubError::Protocol {
                what,
                message: format!("{other} (is HF_ENDPOINT a Hugging Face hub?)"),
            },
        }
    }
}

/// A file's size as the listing gives it (an LFS file's real size, not its pointer's).
fn size_of(sibling: &Sibling) -> Option<u64> {
    sibling.lfs.as_ref().map(|l| l.size).or(sibling.size)
}

/// "; its GGUF files: a.gguf, b.gguf (hf:ORG/REPO/a.gguf fetches one)", or nothing.
fn gguf_hint(spec: &ModelSpec, ggufs: &[String]) -> String {
    match ggufs.first() {
        None => String::new(),
        Some(first) => {
            let one = ModelSpec {
                file: Some(first.clone()),
                ..spec.clone()
            };
            format!("; its GGUF files: {} ({one} fetches one)", ggufs.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, bytes: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("headroom-hub-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn checksums_match_git_and_sha256_of_known_contents() {
        let path = write("hello", b"hello\n");
        // `git hash-object` and `sha256sum` of "hello\n"
        let git = Checksum::GitSha1(String::new());
        assert_eq!(
            git.compute(&path).unwrap(),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        let sha = Checksum::Sha256(String::new());
        assert_eq!(
            sha.compute(&path).unwrap(),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn the_listing_checksum_comes_first_then_the_etag() {
        let sibling = |lfs: bool, blob: bool| Sibling {
            rfilename: "f".into(),
            size: Some(1),
            blob_id: blob.then(|| "AB".repeat(20)),
            lfs: lfs.then(|| Lfs {
                sha256: "CD".repeat(32),
                size: 2,
            }),
        };
        let etag64 = "ef".repeat(32);
        assert_eq!(
            Checksum::of(&sibling(true, true), &etag64),
            Some(Checksum::Sha256("cd".repeat(32)))
        );
        assert_eq!(
            Checksum::of(&sibling(false, true), &etag64),
            Some(Checksum::GitSha1("ab".repeat(20)))
        );
        assert_eq!(
            Checksum::of(&sibling(false, false), &etag64),
            Some(Checksum::Sha256(etag64.clone()))
        );
        assert_eq!(Checksum::of(&sibling(false, false), "W/\"x\""), None);
        assert_eq!(size_of(&sibling(true, true)), Some(2));
    }
}
