//! Running the binary against the fixtures.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const HUB_MODEL: &str = "ibex-fixtures/tiny-salamandra";

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The hub-cache snapshot of the fixture model, used as a plain local folder.
pub fn model_folder() -> PathBuf {
    let repo = fixtures().join("hf-home/hub/models--ibex-fixtures--tiny-salamandra");
    let commit = std::fs::read_to_string(repo.join("refs/main")).unwrap();
    repo.join("snapshots").join(commit.trim())
}

/// `ibex ARGS` with the fixture hub cache as HF_HOME, offline.
pub fn ibex(args: &[&str]) -> Output {
    ibex_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// `ibex ARGS` run from the folder `cwd`, with the fixture hub cache as HF_HOME, offline.
pub fn ibex_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ibex"))
        .current_dir(cwd)
        .args(args)
        .env("HF_HOME", fixtures().join("hf-home"))
        .env_remove("HF_HUB_CACHE")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("the ibex binary runs")
}

/// Runs `ibex run` into a fresh folder and returns it; panics with stderr on failure.
pub fn run_ok(args: &[&str]) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let mut all = vec!["run", "--output", out.path().to_str().unwrap(), "--log-samples"];
    all.extend_from_slice(args);
    let output = ibex(&all);
    assert!(output.status.success(), "ibex {all:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    out
}

pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A path as a `--model` argument.
pub fn ibex_path_arg(path: &Path) -> &str {
    path.to_str().expect("fixture paths are UTF-8")
}
