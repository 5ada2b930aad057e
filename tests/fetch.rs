//! `ibex fetch` against a local HTTP server that answers as the Hugging Face hub does (`HF_ENDPOINT`): it fills an
//! empty cache with the checkpoint and the tasks' data, then the run is made offline from that cache alone.

use crate::common::{assert_samples_match, fixtures, model_folder, read_results, samples_path, HUB_MODEL};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Serves `repos` (URL prefix as the hub spells it — `owner/name` for a model, `datasets/owner/name` for a dataset —
/// and the folder holding its files) on a local port: `HEAD`/`GET /{prefix}/resolve/{revision}/{file}` with the
/// headers hf-hub reads (`ETag`, `X-Repo-Commit`, `Content-Length`), 404 for anything else. Returns the endpoint and
/// every path asked for.
fn serve(repos: Vec<(String, PathBuf)>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).map_or(true, |n| n == 0) || header == "\r\n" {
                    break;
                }
            }
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("").to_owned());
            log.lock().unwrap().push(format!("{method} {path}"));
            let file = repos.iter().find_map(|(prefix, folder)| {
                let rest = path.strip_prefix(&format!("/{prefix}/resolve/"))?;
                let (_revision, name) = rest.split_once('/')?;
                let file = folder.join(name);
                file.is_file().then_some(file)
            });
            let response = match file {
                Some(file) => {
                    let body = std::fs::read(&file).unwrap();
                    let etag = format!("{:x}", Sha256::digest(&body));
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"{etag}\"\r\nX-Repo-Commit: \
                         0123456789abcdef0123456789abcdef01234567\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let mut response = head.into_bytes();
                    if method == "GET" {
                        response.extend(body);
                    }
                    response
                }
                None => b"HTTP/1.1 404 Not Found\r\nX-Error-Code: EntryNotFound\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = stream.write_all(&response);
        }
    });
    (endpoint, asked)
}

fn snapshot(hub_folder: &str) -> PathBuf {
    let repo = fixtures().join("hf-home/hub").join(hub_folder);
    let commit = std::fs::read_to_string(repo.join("refs/main")).unwrap();
    repo.join("snapshots").join(commit.trim())
}

fn ibex(home: &Path, endpoint: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ibex"));
    command.args(args).env("HF_HOME", home).env_remove("HF_HUB_CACHE").env_remove("HF_HUB_OFFLINE");
    match endpoint {
        Some(endpoint) => command.env("HF_ENDPOINT", endpoint),
        None => command.env("HF_HUB_OFFLINE", "1"),
    };
    command.output().unwrap()
}

#[test]
fn fetch_fills_the_cache_that_an_offline_run_then_reads() {
    let (endpoint, asked) = serve(vec![
        (HUB_MODEL.to_owned(), model_folder()),
        ("datasets/facebook/xnli".to_owned(), snapshot("datasets--facebook--xnli")),
    ]);
    let home = tempfile::tempdir().unwrap();
    let task = ["--model", HUB_MODEL, "--tasks", "xnli_en", "--num-fewshot", "3"];
    let fetched = ibex(home.path(), Some(&endpoint), &[&["fetch"], &task[..]].concat());
    let stdout = String::from_utf8_lossy(&fetched.stdout);
    assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));
    for file in ["model.safetensors", "tokenizer.json", "validation-00000-of-00001.parquet", "train-00000-of-00001"] {
        assert!(stdout.contains(file), "{file} not listed:\n{stdout}");
    }
    assert!(stdout.contains("of model and data files on disk"), "{stdout}");
    let asked = asked.lock().unwrap().clone();
    let weights =
        |a: &String| a.starts_with(&format!("GET /{HUB_MODEL}/resolve/")) && a.ends_with("/model.safetensors");
    assert!(asked.iter().any(weights), "{asked:?}");

    // Offline now, from the fetched cache alone: the run equals lm-eval's.
    let out = tempfile::tempdir().unwrap();
    let output = out.path().to_str().unwrap();
    let run = ibex(home.path(), None, &[&["run", "--output", output, "--log-samples"], &task[..]].concat());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_samples_match(&samples_path(out.path(), "xnli_en"), &fixtures().join("lm_eval/samples_xnli_en_3shot.jsonl"));
    let results = read_results(out.path());
    assert!(results["ibex"]["tasks"]["xnli_en"]["dataset"].as_str().unwrap().starts_with("facebook/xnli@0123456789"));
    // And fetch itself refuses to run offline.
    let refused = ibex(home.path(), None, &[&["fetch"], &task[..]].concat());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unset HF_HUB_OFFLINE"));
}
