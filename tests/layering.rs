//! The import graph of `src/`: no part imports a part above it (the order of `src/lib.rs`'s
//! table), and no files of one folder import each other around a circle. Read from the
//! source text, test modules left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The parts, top to bottom (as `src/lib.rs` lists them).
const PARTS: [&str; 12] = [
    "viewer",
    "bench",
    "serve",
    "engine",
    "metrics",
    "tokenizer",
    "model",
    "ops",
    "kv",
    "gpu",
    "hub",
    "formats",
];

/// A source file: its module path (a folder's `mod.rs` is the folder) and its code.
type Module = (Vec<String>, String);

/// Every `.rs` file under `dir`, without its test module.
fn read_modules(dir: &Path, prefix: &[String], out: &mut Vec<Module>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            let mut p = prefix.to_vec();
            p.push(name);
            read_modules(&path, &p, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut module = prefix.to_vec();
            if name != "mod" && name != "lib" {
                module.push(name);
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = match text.find("#[cfg(test)]\nmod tests") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            out.push((module, code));
        }
    }
}

/// The paths a module names through `crate::` and `super::`, as crate-absolute module
/// paths (lower-case segments only: the item's own name is dropped).
fn references(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut refs = Vec::new();
    for anchor in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(i) = rest.find(anchor) {
            let before = rest[..i].chars().last();
            rest = &rest[i + anchor.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut path: Vec<String> = match anchor {
                "crate::" => Vec::new(),
                _ => module[..module.len().saturating_sub(1)].to_vec(),
            };
            for seg in rest.split("::") {
                let ident: String = seg
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if ident.is_empty() || ident == "self" {
                    break;
                }
                let whole = ident.len() == seg.len();
                path.push(ident);
                if !whole {
                    break;
                }
            }
            refs.push(path);
        }
    }
    refs
}

/// Upward imports and circles among the files of one folder, as messages.
fn problems(files: &[Module]) -> Vec<String> {
    let known: BTreeSet<&Vec<String>> = files.iter().map(|(m, _)| m).collect();
    let is_folder = |m: &Vec<String>| known.iter().any(|k| k.len() > m.len() && k.starts_with(m));
    let rank = |part: &str| PARTS.iter().position(|p| *p == part);
    let mut out = Vec::new();
    // per folder: file -> the files of the same folder it uses
    let mut siblings: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (module, code) in files {
        let Some(part) = module.first() else { continue };
        for mut target in references(module, code) {
            // the longest prefix that is a module of the crate
            while !target.is_empty() && !known.contains(&target) {
                target.pop();
            }
            let Some(dep) = target.first() else { continue };
            if let (Some(a), Some(b)) = (rank(part), rank(dep)) {
                if b < a {
                    out.push(format!("{} uses {}", module.join("::"), target.join("::")));
                }
            }
            let (parent, name) = module.split_at(module.len() - 1);
            if !is_folder(module)
                && target.len() > parent.len()
                && target.starts_with(parent)
                && target[parent.len()] != name[0]
            {
                siblings
                    .entry(parent.to_vec())
                    .or_default()
                    .entry(name[0].clone())
                    .or_default()
                    .insert(target[parent.len()].clone());
            }
        }
    }
    for (folder, edges) in &siblings {
        let mut done = BTreeSet::new();
        for n in edges.keys() {
            if let Some(circle) = find_circle(n, edges, &mut Vec::new(), &mut done) {
                out.push(format!(
                    "a circle in src/{}: {}",
                    folder.join("/"),
                    circle.join(" -> ")
                ));
                break;
            }
        }
    }
    out
}

/// A path back to a node already on `path`, depth first.
fn find_circle(
    n: &str,
    edges: &BTreeMap<String, BTreeSet<String>>,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(i) = path.iter().position(|p| p == n) {
        let mut circle = path[i..].to_vec();
        circle.push(n.to_string());
        return Some(circle);
    }
    if !done.insert(n.to_string()) {
        return None;
    }
    path.push(n.to_string());
    for m in edges.get(n).into_iter().flatten() {
        if let Some(c) = find_circle(m, edges, path, done) {
            return Some(c);
        }
    }
    path.pop();
    None
}

fn module(path: &str, code: &str) -> Module {
    (path.split("::").map(String::from).collect(), code.into())
}

#[test]
fn no_part_imports_a_part_above_it_and_no_folder_has_a_circle() {
    let mut files = Vec::new();
    read_modules(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut files,
    );
    assert!(files.len() > 50, "read {} files", files.len());
    let found = problems(&files);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn a_planted_upward_import_and_circle_are_found() {
    let files = vec![
        module("ops", "pub mod matmul; pub mod rmsnorm;"),
        module(
            "ops::matmul",
            "use super::rmsnorm::RmsNorm; let x = a::crate::b;",
        ),
        module("ops::rmsnorm", "use crate::ops::matmul::Matmul;"),
        module("engine", "pub struct Engine;"),
        module("gpu", "use crate::engine::Engine;"),
    ];
    let found = problems(&files);
    assert_eq!(
        found,
        vec![
            "gpu uses engine".to_string(),
            "a circle in src/ops: matmul -> rmsnorm -> matmul".to_string()
        ]
    );
}
