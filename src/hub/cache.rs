//! What the cache holds: a model's complete snapshot (used without asking the hub), and
//! the inventory `headroom list` prints.

use super::{human_bytes, HubError, ModelSpec, SINGLE_WEIGHTS, WEIGHTS_INDEX};
use crate::formats::safetensors::read_index;
use hf_hub::Repo;
use std::path::{Path, PathBuf};

/// One cached repository.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedRepo {
    /// "ORG/REPO"
    pub repo: String,
    pub snapshots: Vec<CachedSnapshot>,
    /// bytes of its finished files (each stored once, however many snapshots link to it)
    pub bytes: u64,
    /// bytes of downloads in progress, which the next fetch resumes
    pub partial_bytes: u64,
}

/// The files of one commit.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedSnapshot {
    pub commit: String,
    /// the branches and tags that pointed at this commit when it was fetched
    pub revisions: Vec<String>,
    pub files: Vec<CachedFile>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CachedFile {
    /// its path in the repository
    pub name: String,
    pub bytes: u64,
}

impl CachedSnapshot {
    /// The `--model` values that load this snapshot: `hf:ORG/REPO` for a safetensors
    /// model, `hf:ORG/REPO/FILE.gguf` for each GGUF file; `@REVISION` unless on main.
    pub fn specs(&self, repo: &str) -> Vec<String> {
        let revision = match self.revisions.iter().any(|r| r == "main") {
            true => "main".to_string(),
            false => self.revisions.first().unwrap_or(&self.commit).clone(),
        };
        let spec = |file: Option<&str>| {
            ModelSpec {
                repo: repo.to_string(),
                file: file.map(Into::into),
                revision: revision.clone(),
            }
            .to_string()
        };
        let mut specs = Vec::new();
        if self.files.iter().any(|f| f.name == "config.json") {
            specs.push(spec(None));
        }
        for f in &self.files {
            if f.name.to_ascii_lowercase().ends_with(".gguf") {
                specs.push(spec(Some(&f.name)));
            }
        }
        specs
    }
}

/// Whether `s` is a full commit hash (40 hex digits).
pub(super) fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `spec`'s model if the cache holds all of it: its snapshot's GGUF file, or a snapshot
/// directory with config.json, tokenizer.json and every weights file (fetched last).
pub(super) fn cached_model(cache_dir: &Path, spec: &ModelSpec) -> Option<PathBuf> {
    let repo_dir = cache_dir.join(Repo::model(spec.repo.clone()).folder_name());
    let commit = match is_commit(&spec.revision) {
        true => spec.revision.clone(),
        false => std::fs::read_to_string(repo_dir.join("refs").join(&spec.revision))
            .ok()?
            .trim()
            .to_string(),
    };
    if !is_commit(&commit) {
        return None;
    }
    let snapshot = repo_dir.join("snapshots").join(commit);
    match &spec.file {
        Some(file) => Some(snapshot.join(file)).filter(|p| p.is_file()),
        None => weights_complete(&snapshot).then_some(snapshot),
    }
}

fn weights_complete(dir: &Path) -> bool {
    let has = |name: &str| dir.join(name).is_file();
    if !has("config.json") || !has("tokenizer.json") {
        return false;
    }
    if has(SINGLE_WEIGHTS) {
        return true;
    }
    let Ok(bytes) = std::fs::read(dir.join(WEIGHTS_INDEX)) else {
        return false;
    };
    read_index(WEIGHTS_INDEX, &bytes).is_ok_and(|(shards, _)| shards.iter().all(|s| has(s)))
}

/// The files under `dir` (recursively) as paths relative to `base` with their sizes
/// (links followed; broken ones left out).
fn files_under(base: &Path, dir: &Path, out: &mut Vec<CachedFile>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            files_under(base, &path, out);
        } else if let Ok(rel) = path.strip_prefix(base) {
            let name = rel.components().map(|c| c.as_os_str().to_string_lossy());
            out.push(CachedFile {
                name: name.collect::<Vec<_>>().join("/"),
                bytes: meta.len(),
            });
        }
    }
}

/// The cached repositories under `cache_dir`, by name (none if it does not exist).
pub fn list(cache_dir: &Path) -> Result<Vec<CachedRepo>, HubError> {
    let entries = match std::fs::read_dir(cache_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(HubError::io(cache_dir, e)),
    };
    let mut repos = Vec::new();
    for entry in entries.flatten() {
        let folder = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = folder.strip_prefix("models--") else {
            continue;
        };
        let dir = entry.path();
        let mut refs = Vec::new();
        files_under(&dir.join("refs"), &dir.join("refs"), &mut refs);
        let mut snapshots = Vec::new();
        for snap in std::fs::read_dir(dir.join("snapshots"))
            .into_iter()
            .flatten()
        {
            let Ok(snap) = snap else { continue };
            let commit = snap.file_name().to_string_lossy().into_owned();
            let mut files = Vec::new();
            files_under(&snap.path(), &snap.path(), &mut files);
            files.sort_by(|a, b| a.name.cmp(&b.name));
            let revisions = refs
                .iter()
                .filter(|r| r.name != commit)
                .filter(|r| {
                    std::fs::read_to_string(dir.join("refs").join(&r.name))
                        .is_ok_and(|c| c.trim() == commit)
                })
                .map(|r| r.name.clone())
                .collect();
            snapshots.push(CachedSnapshot {
                commit,
                revisions,
                files,
            });
        }
        snapshots.sort_by(|a, b| a.commit.cmp(&b.commit));
        let mut blobs = Vec::new();
        files_under(&dir.join("blobs"), &dir.join("blobs"), &mut blobs);
        let sum = |part: bool| -> u64 {
            let blob =
                |f: &&CachedFile| !f.name.ends_with(".lock") && f.name.ends_with(".part") == part;
            blobs.iter().filter(blob).map(|f| f.bytes).sum()
        };
        repos.push(CachedRepo {
            repo: name.replacen("--", "/", 1),
            snapshots,
            bytes: sum(false),
            partial_bytes: sum(true),
        });
    }
    repos.sort_by(|a, b| a.repo.cmp(&b.repo));
    Ok(repos)
}

/// `headroom list`: where the cache is, each repository with its size, each snapshot
/// with its revisions, the `--model` values that load it and its files; then anything
/// else kept in the cache root (such as the default model).
pub fn describe_cache(cache_dir: &Path) -> Result<String, HubError> {
    use std::fmt::Write;
    let repos = list(cache_dir)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cache: {} (HEADROOM_CACHE sets it)",
        cache_dir.display()
    );
    if repos.is_empty() {
        let _ = writeln!(
            out,
            "no Hub models yet: --model hf:ORG/REPO or hf:ORG/REPO/FILE.gguf fetches one"
        );
    }
    let mut total = 0;
    for r in &repos {
        total += r.bytes;
        let _ = writeln!(out, "\n{}  {}", r.repo, human_bytes(r.bytes));
        for s in &r.snapshots {
            let revisions = match s.revisions.is_empty() {
                true => String::new(),
                false => format!(" ({})", s.revisions.join(", ")),
            };
            let specs = s.specs(&r.repo);
            let _ = writeln!(
                out,
                "  commit {}{revisions}: {}",
                &s.commit[..s.commit.len().min(12)],
                match specs.is_empty() {
                    true => "nothing to load yet".to_string(),
                    false => format!("--model {}", specs.join(" | ")),
                }
            );
            for f in &s.files {
                let _ = writeln!(out, "    {:<48} {:>10}", f.name, human_bytes(f.bytes));
            }
        }
        if r.partial_bytes > 0 {
            let _ = writeln!(
                out,
                "  partly downloaded: {} (the next fetch resumes it)",
                human_bytes(r.partial_bytes)
            );
        }
    }
    let mut others = Vec::new();
    for entry in std::fs::read_dir(cache_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        match entry.metadata() {
            Ok(m) if m.is_file() && !name.starts_with('.') => others.push((name, m.len())),
            _ => {}
        }
    }
    others.sort();
    if !others.is_empty() {
        let _ = writeln!(out, "\nother files:");
        for (name, bytes) in &others {
            total += bytes;
            let _ = writeln!(out, "  {name:<50} {:>10}", human_bytes(*bytes));
        }
    }
    if !repos.is_empty() || !others.is_empty() {
        let _ = writeln!(
            out,
            "\n{} repositor{}, {} in all",
            repos.len(),
            if repos.len() == 1 { "y" } else { "ies" },
            human_bytes(total)
        );
    }
    Ok(out)
}
