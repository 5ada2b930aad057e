//! Embeds the repository's `tasks/` folder and the `configs/` subfolders, so the binary knows every shipped task,
//! suite, model recipe and published number wherever it runs.

use std::path::{Path, PathBuf};

/// (constant name, folder relative to the repository)
const FOLDERS: [(&str, &str); 4] = [
    ("TASKS", "tasks"),
    ("SUITES", "configs/suites"),
    ("MODELS", "configs/models"),
    ("PUBLISHED", "configs/published"),
];

fn main() {
    // Read at run time: a build script binary can be reused for another checkout of the same source.
    let repository = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("../..");
    let mut generated = String::new();
    for (constant, folder) in FOLDERS {
        let root = repository.join(folder);
        println!("cargo:rerun-if-changed={}", root.display());
        let mut files = Vec::new();
        // Task folders ship lm-eval's YAML; the configs folders TOML.
        let extension = if folder == "tasks" { "yaml" } else { "toml" };
        collect(&root, extension, &mut files);
        files.sort();
        let entries: String = files
            .iter()
            .map(|path| {
                println!("cargo:rerun-if-changed={}", path.display());
                let relative = path.strip_prefix(&repository).unwrap();
                format!("    ({:?}, include_str!({:?})),\n", relative.display().to_string(), path.display().to_string())
            })
            .collect();
        generated
            .push_str(&format!("/// Every `*.{extension}` under `{folder}/`: (repository-relative path, content).\n"));
        generated.push_str(&format!("pub const {constant}: &[(&str, &str)] = &[\n{entries}];\n"));
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("assets.rs");
    std::fs::write(out, generated).unwrap();
}

fn collect(dir: &Path, extension: &str, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(&path, extension, files);
        } else if path.extension().is_some_and(|e| e == extension) {
            files.push(path);
        }
    }
}
