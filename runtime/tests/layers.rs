//! The runtime reads bottom-up (DESIGN §1, issue 14): no module below the
//! collection core imports the core or anything above it. This reads the sources
//! and fails naming the file and the import that breaks the rule.

use std::path::{Path, PathBuf};

/// Modules below the collection core: files, formats, durability and indices.
const LOWER: &[&str] = &[
    "backend",
    "fs",
    "batch.rs",
    "encode.rs",
    "storage",
    "wal",
    "index.rs",
    "index_file.rs",
    "key.rs",
    "error.rs",
    "recover.rs",
    "meta.rs",
    "relation.rs",
    "stats.rs",
    "priority.rs",
    "feed_file.rs",
    "import_file.rs",
    "jsonl_file.rs",
];

/// The core and the layers above it.
const UPPER: &[&str] = &["collection", "handle", "commit", "flush", "store", "tx", "query", "watch", "migrate"];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

#[test]
fn no_lower_module_imports_the_core_or_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for lower in LOWER {
        rust_files(&src.join(lower), &mut files);
    }
    assert!(files.len() >= LOWER.len(), "the lower modules were not found under {}", src.display());
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for upper in UPPER {
                if line.contains(&format!("crate::{upper}::")) || line.contains(&format!("crate::{upper};")) {
                    broken.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "lower modules import upper ones:\n{}", broken.join("\n"));
}

/// The collection core and the commit and flush paths go through the backend seam
/// (`backend::Backend`): they never name a file, the file layouts, the batch writer
/// or the WAL.
#[test]
fn the_core_and_the_commit_path_never_name_a_file() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join("collection.rs"), src.join("commit.rs"), src.join("flush.rs")];
    rust_files(&src.join("collection"), &mut files);
    assert!(files.len() > 3, "the collection core was not found under {}", src.display());
    let forbidden = ["crate::storage", "crate::batch", "crate::wal", "crate::fs", "PathBuf", "std::path"];
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for name in forbidden {
                if line.contains(name) {
                    broken.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "the core names files instead of going through the backend:\n{}", broken.join("\n"));
}
