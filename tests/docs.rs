//! The documentation ships with the project and tells the truth about it: every relative link
//! in the repository's Markdown points at a file inside the repository, nothing points at
//! notes outside it, and the operations guide lists every environment variable walleti reads.

use std::path::{Path, PathBuf};
use walleti::config::KNOWN_WALLETI_VARIABLES;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's Markdown files, without vendored packages and build output.
fn markdown_files(directory: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(directory).expect("read directory") {
        let path = entry.expect("directory entry").path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        if path.is_dir() {
            if !matches!(name, "target" | ".git" | "vendor" | "node_modules") {
                markdown_files(&path, found);
            }
        } else if name.ends_with(".md") {
            found.push(path);
        }
    }
}

/// The targets of `[text](target)` links.
fn link_targets(text: &str) -> Vec<String> {
    text.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            rest.find(')').map(|end| rest[..end].trim().to_owned())
        })
        .collect()
}

#[test]
fn every_link_in_the_repository_stays_inside_it() {
    let mut files = Vec::new();
    markdown_files(root(), &mut files);
    assert!(
        files
            .iter()
            .any(|file| file.ends_with("docs/operations.md"))
    );
    let repository = root().canonicalize().expect("repository root");
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read markdown");
        for forbidden in ["../shared", "issue notes"] {
            if text.contains(forbidden) {
                broken.push(format!("{}: mentions {forbidden:?}", file.display()));
            }
        }
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let path = target.split('#').next().unwrap_or_default();
            let resolved = file.parent().expect("parent").join(path);
            match resolved.canonicalize() {
                Ok(resolved) if resolved.starts_with(&repository) => {}
                Ok(resolved) => broken.push(format!(
                    "{}: {target} leaves the repository ({})",
                    file.display(),
                    resolved.display()
                )),
                Err(_) => broken.push(format!("{}: {target} does not exist", file.display())),
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn the_readme_links_the_docs() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    for document in ["docs/api.md", "docs/design.md", "docs/operations.md"] {
        assert!(
            readme.contains(&format!("]({document}")),
            "README.md does not link {document}"
        );
    }
}

#[test]
fn the_operations_guide_lists_every_variable_walleti_reads() {
    let guide = std::fs::read_to_string(root().join("docs/operations.md")).expect("operations");
    let config = std::fs::read_to_string(root().join("src/config.rs")).expect("config.rs");
    // Every string literal in config.rs that is an upper-case name with an underscore is a
    // variable it reads (`"DATABASE_URL"`, `"WALLETI_BIND"`, …).
    let quotes: Vec<usize> = config.match_indices('"').map(|(at, _)| at).collect();
    let mut variables: Vec<String> = quotes
        .windows(2)
        .map(|pair| &config[pair[0] + 1..pair[1]])
        .filter(|word| {
            word.contains('_')
                && word.len() > 3
                && word
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
        })
        .map(str::to_owned)
        .collect();
    variables.extend(
        KNOWN_WALLETI_VARIABLES
            .iter()
            .map(|name| (*name).to_owned()),
    );
    variables.sort();
    variables.dedup();
    assert!(variables.len() > 25, "{variables:?}");
    let missing: Vec<_> = variables
        .iter()
        .filter(|variable| !guide.contains(&format!("`{variable}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/operations.md does not list {missing:?}"
    );
}
