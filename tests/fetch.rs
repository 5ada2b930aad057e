//! `ibex fetch` against a local HTTP server that answers as the Hugging Face hub does (`HF_ENDPOINT`): it fills an
//! empty cache with the checkpoint and the tasks' data, then the run is made offline from that cache alone.

use crate::common::{
    assert_samples_match, fixtures, model_folder, read_results, read_samples, samples_path, HUB_MODEL,
};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Serves `repos` (URL prefix as the hub spells it — `owner/name` for a model, `datasets/owner/name` for a dataset —,
/// a revision, and the folder holding its files at that revision) on a local port, as the hub's API answers:
/// `HEAD`/`GET /{prefix}/resolve/{revision}/{file}` with the headers hf-hub reads (`ETag`, `X-Repo-Commit`,
/// `Content-Length`), `GET /api/{prefix}/tree/{revision}` with the folder's files, and 404 with the hub's error code
/// for anything else. Returns the endpoint and every path asked for.
fn serve(repos: Vec<(String, String, PathBuf)>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
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
            let route = path.split('?').next().unwrap_or_default().replace("%2F", "/");
            // A commit per revision, as the hub's: the branch's differs from main's.
            let commit = |revision: &str| format!("{:x}", Sha256::digest(revision.as_bytes()))[..40].to_owned();
            let mut found = None;
            let mut known_repo = false;
            for (prefix, revision, folder) in &repos {
                // hf-hub asks by the revision's name, then by the commit the hub answered with.
                let resolved = [revision.clone(), commit(revision)]
                    .iter()
                    .find_map(|r| route.strip_prefix(&format!("/{prefix}/resolve/{r}/")).map(str::to_owned));
                if let Some(rest) = resolved {
                    known_repo = true;
                    let file = folder.join(rest);
                    if file.is_file() {
                        found = Some(("file", file, commit(revision)));
                    }
                } else if route == format!("/api/{prefix}/tree/{revision}") {
                    found = Some(("tree", folder.clone(), commit(revision)));
                } else if route.starts_with(&format!("/{prefix}/")) || route.starts_with(&format!("/api/{prefix}/")) {
                    known_repo = true;
                }
            }
            let response = match found {
                Some(("file", file, commit)) => {
                    let body = std::fs::read(&file).unwrap();
                    let etag = format!("{:x}", Sha256::digest(&body));
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"{etag}\"\r\nX-Repo-Commit: {commit}\r\n\
                         Connection: close\r\n\r\n",
                        body.len()
                    );
                    let mut response = head.into_bytes();
                    if method == "GET" {
                        response.extend(body);
                    }
                    response
                }
                Some((_, folder, _)) => {
                    let mut files = Vec::new();
                    list(&folder, &folder, &mut files);
                    let entries: Vec<serde_json::Value> = files
                        .iter()
                        .map(|(path, size)| serde_json::json!({"type": "file", "oid": "0", "size": size, "path": path}))
                        .collect();
                    let body = serde_json::to_vec(&entries).unwrap();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: \
                         close\r\n\r\n",
                        body.len()
                    );
                    [head.into_bytes(), body].concat()
                }
                None => {
                    let code =
                        if known_repo && route.contains("/resolve/") { "EntryNotFound" } else { "RevisionNotFound" };
                    format!(
                        "HTTP/1.1 404 Not Found\r\nX-Error-Code: {code}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    .into_bytes()
                }
            };
            let _ = stream.write_all(&response);
        }
    });
    (endpoint, asked)
}

/// Every file under `dir`, relative to `root`, with its size.
fn list(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            list(root, &path, out);
        } else {
            let relative = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.push((relative, path.metadata().unwrap().len()));
        }
    }
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
        (HUB_MODEL.to_owned(), "main".to_owned(), model_folder()),
        ("datasets/facebook/xnli".to_owned(), "main".to_owned(), snapshot("datasets--facebook--xnli")),
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
    let main_commit = format!("{:x}", Sha256::digest(b"main"))[..40].to_owned();
    assert_eq!(results["ibex"]["tasks"]["xnli_en"]["dataset"], format!("facebook/xnli@{main_commit}"));
    // And fetch itself refuses to run offline.
    let refused = ibex(home.path(), None, &[&["fetch"], &task[..]].concat());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unset HF_HUB_OFFLINE"));
}

/// A task over a hub dataset whose files the task does not name: the split is found by the hub's own rules, as the
/// `datasets` library finds it: the card's `configs:` (a pattern per split, the config by `dataset_name`), else the
/// repository's files named after the split, else the parquet conversion on `refs/convert/parquet`. Fetched online
/// against a server that speaks the hub's API, then run offline from the cache.
#[test]
fn dataset_splits_are_found_by_the_hubs_own_rules() {
    let repos = tempfile::tempdir().unwrap();
    let rows = std::fs::read_to_string(fixtures().join("data/xnli_en.validation.jsonl")).unwrap();
    let lines: Vec<&str> = rows.lines().collect();
    // The card names the split's file by a pattern; the file's name says nothing of the split.
    let card = repos.path().join("card");
    std::fs::create_dir_all(card.join("pieces")).unwrap();
    std::fs::write(
        card.join("README.md"),
        "---\nconfigs:\n- config_name: other\n  data_files:\n  - split: test\n    path: wrong/*.jsonl\n\
         - config_name: en\n  data_files:\n  - split: test\n    path: pieces/part-*.jsonl\n---\n# A card\n",
    )
    .unwrap();
    // Two files match: the split is both, in path order (`datasets` concatenates them).
    std::fs::write(card.join("pieces/part-b.jsonl"), lines[6..10].join("\n") + "\n").unwrap();
    std::fs::write(card.join("pieces/part-a.jsonl"), lines[..6].join("\n") + "\n").unwrap();
    std::fs::write(card.join("test-00000-of-00001.jsonl"), lines[10..].join("\n") + "\n").unwrap();
    // No card configs and no data file on main: the hub's parquet conversion holds the split.
    let converted = repos.path().join("converted");
    std::fs::create_dir_all(converted.join("default/test")).unwrap();
    std::fs::copy(
        snapshot("datasets--facebook--xnli").join("en/validation-00000-of-00001.parquet"),
        converted.join("default/test/0000.parquet"),
    )
    .unwrap();
    let main = repos.path().join("converted-main");
    std::fs::create_dir_all(&main).unwrap();
    std::fs::write(main.join("README.md"), "# No configs here\n").unwrap();
    let (endpoint, asked) = serve(vec![
        (HUB_MODEL.to_owned(), "main".to_owned(), model_folder()),
        ("datasets/ibex-fixtures/card".to_owned(), "main".to_owned(), card),
        ("datasets/ibex-fixtures/converted".to_owned(), "main".to_owned(), main),
        ("datasets/ibex-fixtures/converted".to_owned(), "refs/convert/parquet".to_owned(), converted),
    ]);
    let tasks = tempfile::tempdir().unwrap();
    let task = |name: &str, dataset: &str, config: &str| {
        format!(
            "task: {name}\ndataset_path: {dataset}\n{config}output_type: multiple_choice\ntest_split: test\n\
             doc_to_text: \"\"\ndoc_to_target: label\ndoc_to_choice: '{{{{[premise+\", right? Yes, \"+hypothesis, \
             premise+\", right? Also, \"+hypothesis, premise+\", right? No, \"+hypothesis]}}}}'\nmetric_list:\n  - metric: acc\n"
        )
    };
    std::fs::write(tasks.path().join("by_card.yaml"), task("by_card", "ibex-fixtures/card", "dataset_name: en\n"))
        .unwrap();
    std::fs::write(tasks.path().join("again.yaml"), task("by_card_again", "ibex-fixtures/card", "dataset_name: en\n"))
        .unwrap();
    std::fs::write(tasks.path().join("converted.yaml"), task("by_conversion", "ibex-fixtures/converted", "")).unwrap();
    let home = tempfile::tempdir().unwrap();
    let args = [
        "--model",
        HUB_MODEL,
        "--tasks",
        "by_card,by_card_again,by_conversion",
        "--tasks-dir",
        tasks.path().to_str().unwrap(),
    ];
    let fetched = ibex(home.path(), Some(&endpoint), &[&["fetch"], &args[..]].concat());
    assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));
    let asked = asked.lock().unwrap().clone();
    // Two tasks read the repository: it is listed once.
    let listed = asked.iter().filter(|a| a.starts_with("GET /api/datasets/ibex-fixtures/card/tree/main")).count();
    assert_eq!(listed, 1, "{asked:?}");
    let branch = "GET /datasets/ibex-fixtures/converted/resolve/refs%2Fconvert%2Fparquet/default/test/0000.parquet";
    assert!(asked.iter().any(|a| a == branch), "{asked:?}");

    let out = tempfile::tempdir().unwrap();
    let output = out.path().to_str().unwrap();
    let run = ibex(home.path(), None, &[&["run", "--output", output, "--log-samples"], &args[..]].concat());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let results = read_results(out.path());
    let record = |task: &str| results["ibex"]["tasks"][task].clone();
    let files = record("by_card")["data_file"].as_str().unwrap().to_owned();
    let (first, second) = files.split_once(", ").unwrap();
    assert!(first.ends_with("pieces/part-a.jsonl") && second.ends_with("pieces/part-b.jsonl"), "{files}");
    assert_eq!(results["results"]["by_card"]["sample_len"], 10);
    // Documents run on across the files: document 6 is part-b's first row.
    let samples = read_samples(&samples_path(out.path(), "by_card"));
    let sixth: serde_json::Value = serde_json::from_str(lines[6]).unwrap();
    assert_eq!(samples[6]["doc"]["premise"], sixth["premise"]);
    assert!(record("by_conversion")["data_file"].as_str().unwrap().ends_with("default/test/0000.parquet"));
    let branch_commit = format!("{:x}", Sha256::digest(b"refs/convert/parquet"))[..40].to_owned();
    assert_eq!(record("by_conversion")["dataset"], format!("ibex-fixtures/converted@{branch_commit}"));
    assert_eq!(results["results"]["by_conversion"]["sample_len"], 24);
}
