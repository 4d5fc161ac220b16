//! `hf:ORG/REPO[/FILE.gguf][@REVISION]`: what `--model` names on the Hub.

use super::HubError;

/// The prefix that marks a `--model` value as a Hub model rather than a path.
pub const PREFIX: &str = "hf:";

/// A model on the Hub: a repository, optionally one GGUF file in it, at a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// "ORG/REPO"
    pub repo: String,
    /// a GGUF file's path inside the repository; None: the safetensors model directory
    pub file: Option<String>,
    /// a branch, tag or commit ("main" unless `@REVISION` says otherwise)
    pub revision: String,
}

impl ModelSpec {
    /// Whether `s` names a Hub model (starts with `hf:`), as opposed to a local path.
    pub fn is_spec(s: &str) -> bool {
        s.starts_with(PREFIX)
    }

    /// Parses `hf:ORG/REPO`, `hf:ORG/REPO/FILE.gguf` (the file may sit in folders), each
    /// optionally followed by `@REVISION` (a branch, tag or commit; it may hold `/`, as
    /// `refs/pr/1` does).
    pub fn parse(s: &str) -> Result<ModelSpec, HubError> {
        let bad = |why: &str| HubError::BadSpec {
            spec: s.to_string(),
            why: why.to_string(),
        };
        let rest = s
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("a Hub model starts with hf:"))?;
        let (path, revision) = match rest.split_once('@') {
            Some((path, rev)) => (path, rev),
            None => (rest, "main"),
        };
        if revision.is_empty() {
            return Err(bad("nothing after @ (a branch, tag or commit)"));
        }
        if revision.to_ascii_lowercase().ends_with(".gguf") {
            return Err(bad("@REVISION comes last: hf:ORG/REPO/FILE.gguf@REVISION"));
        }
        if revision.split('/').any(|p| p.is_empty() || p == "..") || revision.contains('\\') {
            return Err(bad("the revision is not a branch, tag or commit name"));
        }
        let parts: Vec<&str> = path.split('/').collect();
        if parts.len() < 2 || parts[..2].iter().any(|p| p.is_empty()) {
            return Err(bad("expected hf:ORG/REPO or hf:ORG/REPO/FILE.gguf"));
        }
        for name in &parts[..2] {
            let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
            if !name.chars().all(allowed) || name.starts_with('.') {
                return Err(bad(&format!(
                    "'{name}' is not an organisation or repository name (letters, digits, - _ .)"
                )));
            }
        }
        let file = match &parts[2..] {
            [] => None,
            path => {
                if path.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
                    return Err(bad("the file's path has an empty, . or .. part"));
                }
                let file = path.join("/");
                if !file.to_ascii_lowercase().ends_with(".gguf") {
                    return Err(bad(
                        "only a .gguf file is named after the repository; hf:ORG/REPO fetches \
                         the safetensors model",
                    ));
                }
                Some(file)
            }
        };
        Ok(ModelSpec {
            repo: format!("{}/{}", parts[0], parts[1]),
            file,
            revision: revision.to_string(),
        })
    }
}

impl std::fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}{}", self.repo)?;
        if let Some(file) = &self.file {
            write!(f, "/{file}")?;
        }
        if self.revision != "main" {
            write!(f, "@{}", self.revision)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(repo: &str, file: Option<&str>, revision: &str) -> ModelSpec {
        ModelSpec {
            repo: repo.into(),
            file: file.map(Into::into),
            revision: revision.into(),
        }
    }

    #[test]
    fn the_three_forms_parse_and_print_back() {
        for (text, want) in [
            ("hf:org/repo", spec("org/repo", None, "main")),
            ("hf:org/repo@v1.0", spec("org/repo", None, "v1.0")),
            (
                "hf:Org-1/Re_po.x/q/Model-Q4_K_M.GGUF",
                spec("Org-1/Re_po.x", Some("q/Model-Q4_K_M.GGUF"), "main"),
            ),
            (
                "hf:org/repo/m.gguf@refs/pr/1",
                spec("org/repo", Some("m.gguf"), "refs/pr/1"),
            ),
        ] {
            let got = ModelSpec::parse(text).unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), text, "{text}");
        }
        assert!(ModelSpec::is_spec("hf:a/b"));
        assert!(!ModelSpec::is_spec("./hf:a/b"));
    }

    #[test]
    fn malformed_specs_say_what_is_wrong() {
        for (text, why) in [
            ("org/repo", "starts with hf:"),
            ("hf:repo", "expected hf:ORG/REPO"),
            ("hf:/repo", "expected hf:ORG/REPO"),
            ("hf:org/", "expected hf:ORG/REPO"),
            ("hf:org/repo@", "nothing after @"),
            ("hf:org/repo@main/m.gguf", "@REVISION comes last"),
            ("hf:org/repo@a/../b", "not a branch"),
            ("hf:or g/repo", "'or g' is not"),
            ("hf:../repo/m.gguf", "'..' is not"),
            ("hf:org/repo/config.json", "only a .gguf file"),
            ("hf:org/repo/../x.gguf", "empty, . or .."),
            ("hf:org/repo//x.gguf", "empty, . or .."),
        ] {
            let e = ModelSpec::parse(text).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(text), "{text}: {e}");
        }
    }
}
