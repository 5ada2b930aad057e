//! Embeds the repository's `tasks/` folder, so the binary knows every shipped task wherever it runs.

use std::path::{Path, PathBuf};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tasks");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    let entries: String = files
        .iter()
        .map(|path| {
            println!("cargo:rerun-if-changed={}", path.display());
            let relative = path.strip_prefix(root.parent().unwrap()).unwrap();
            format!("    ({:?}, include_str!({:?})),\n", relative.display().to_string(), path.display().to_string())
        })
        .collect();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("builtin_tasks.rs");
    std::fs::write(out, format!("&[\n{entries}]")).unwrap();
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
}
