//! A run killed with SIGKILL at any point resumes from its journal: the final results and sample logs equal an
//! uninterrupted run's, and no request is scored twice.

use crate::common::{fixtures, ibex_path_arg, read_results, run_ok, samples_path, HUB_MODEL};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// 1000 documents (3000 requests) built from hand-written sentence halves.
fn large_data(dir: &Path) -> std::path::PathBuf {
    let subjects = [
        "The baker",
        "A fisherman",
        "My neighbour",
        "The old teacher",
        "A small child",
        "The mayor",
        "Her brother",
        "The night guard",
        "A tired nurse",
        "The new driver",
    ];
    let actions = [
        "walked to the harbour",
        "sold warm bread",
        "painted the fence",
        "read the letter twice",
        "fixed the old radio",
        "waited for the bus",
        "planted three trees",
        "closed the shop early",
        "wrote a long song",
        "lost the house keys",
    ];
    let endings = [
        "someone moved.",
        "nobody spoke.",
        "it rained.",
        "the bell rang.",
        "they smiled.",
        "a dog barked.",
        "the lights went out.",
        "the train left.",
        "the soup cooled.",
        "birds sang.",
    ];
    let mut lines = String::new();
    for i in 0..1000 {
        let (s, a, e) = (subjects[i % 10], actions[(i / 10) % 10], endings[(i / 100) % 10]);
        let premise = format!("{s} {a} while {e}");
        let hypothesis = format!("{s} {}", actions[(i * 7 + 3) % 10]);
        lines
            .push_str(&format!("{{\"premise\": {premise:?}, \"hypothesis\": {hypothesis:?}, \"label\": {}}}\n", i % 3));
    }
    let path = dir.join("large.jsonl");
    std::fs::write(&path, lines).unwrap();
    path
}

fn start(output: &Path, data: &Path) -> Child {
    let data = format!("xnli_en={}", data.display());
    Command::new(env!("CARGO_BIN_EXE_ibex"))
        .args(["run", "--model", HUB_MODEL, "--tasks", "xnli_en", "--data", &data, "--log-samples", "--output"])
        .arg(output)
        .env("HF_HOME", fixtures().join("hf-home"))
        .env("HF_HUB_OFFLINE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the ibex binary runs")
}

/// The journal of the one run of the fixture model written to `output`, if it has begun.
fn journal(output: &Path) -> Option<std::path::PathBuf> {
    let folder = output.join(ibex_core::results::sanitize_model_name(HUB_MODEL));
    std::fs::read_dir(folder).ok()?.map(|e| e.unwrap().path()).find(|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("journal_") && n.ends_with(".jsonl"))
    })
}

/// Answers recorded in the journal (its lines but the header).
fn journal_answers(output: &Path) -> usize {
    journal(output).and_then(|p| std::fs::read_to_string(p).ok()).map_or(0, |t| t.lines().count().saturating_sub(1))
}

#[test]
fn a_run_killed_five_times_resumes_to_the_uninterrupted_results() {
    let dir = tempfile::tempdir().unwrap();
    let data = large_data(dir.path());
    let whole = dir.path().join("whole");
    assert!(start(&whole, &data).wait().unwrap().success());

    // Kill points: after these many answers, spread over the run by a fixed pseudo-random draw.
    let mut state: u64 = 20261130;
    let mut points: Vec<usize> = (0..5)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            200 + (state >> 33) as usize % 2600
        })
        .collect();
    points.sort_unstable();
    let killed = dir.path().join("killed");
    let mut at_kill = Vec::new();
    for point in points {
        let mut child = start(&killed, &data);
        let deadline = Instant::now() + Duration::from_secs(120);
        while journal_answers(&killed) < point && child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        at_kill.push(journal_answers(&killed));
    }
    assert!(start(&killed, &data).wait().unwrap().success());
    eprintln!("answers in the journal at each kill: {at_kill:?} of 3000");
    assert!(at_kill.iter().filter(|&&n| n > 0 && n < 3000).count() >= 4, "kills should land mid-run: {at_kill:?}");

    let expected = std::fs::read_to_string(samples_path(&whole, "xnli_en")).unwrap();
    let got = std::fs::read_to_string(samples_path(&killed, "xnli_en")).unwrap();
    assert!(got == expected, "the resumed sample log differs");
    assert_eq!(read_results(&killed)["results"], read_results(&whole)["results"]);
    let files = std::fs::read_dir(killed.join(ibex_core::results::sanitize_model_name(HUB_MODEL))).unwrap().count();
    assert_eq!(files, 3, "six attempts write one results file, one sample log and the journal");

    let journal = std::fs::read_to_string(journal(&killed).unwrap()).unwrap();
    let mut seen: HashMap<(u64, u64), usize> = HashMap::new();
    for line in journal.lines().skip(1) {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        *seen.entry((entry["doc"].as_u64().unwrap(), entry["request"].as_u64().unwrap())).or_default() += 1;
    }
    assert_eq!(seen.len(), 3000);
    assert!(seen.values().all(|&n| n == 1), "a request was scored twice");
}

#[test]
fn runs_with_other_settings_share_an_output_folder_and_each_resumes_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--model", HUB_MODEL, "--tasks", "xnli_en", "--output", ibex_path_arg(&output)];
        args.extend_from_slice(extra);
        crate::common::ibex(&args)
    };
    assert!(run(&["--limit", "4"]).status.success());
    std::thread::sleep(Duration::from_millis(5));
    assert!(run(&["--limit", "5"]).status.success());
    assert_eq!(read_results(&output)["results"]["xnli_en"]["sample_len"], 5, "the newest run's results");
    let folder = output.join(ibex_core::results::sanitize_model_name(HUB_MODEL));
    let names: Vec<String> =
        std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.iter().filter(|n| n.starts_with("journal_")).count(), 2, "{names:?}");
    assert_eq!(names.iter().filter(|n| n.starts_with("results_")).count(), 2, "{names:?}");
    // Each run resumes from its own journal; --overwrite recomputes.
    let again = run(&["--limit", "4"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("resuming, 12 of 12 requests answered"));
    let fresh = run(&["--limit", "5", "--overwrite"]);
    assert!(fresh.status.success() && !String::from_utf8_lossy(&fresh.stderr).contains("resuming"));
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 5, "two journals, two results files, a third dated one");
}

#[test]
fn a_cached_answer_is_never_computed_twice_across_runs_and_tasks() {
    let cache = tempfile::tempdir().unwrap();
    let data = |name: &str| fixtures().join("data").join(name).display().to_string();
    let en = format!("xnli_en={}", data("xnli_en.validation.jsonl"));
    let cache_arg = ibex_path_arg(cache.path());
    let first = run_ok(&["--model", HUB_MODEL, "--tasks", "xnli_en", "--data", &en, "--cache", cache_arg]);
    let file = std::fs::read_dir(cache.path()).unwrap().next().unwrap().unwrap().path();
    let answers = || std::fs::read_to_string(&file).unwrap().lines().count() - 1;
    assert_eq!(answers(), 72);
    // The same task in another output folder, at another batch size: every answer from the cache, none added.
    let second =
        run_ok(&["--model", HUB_MODEL, "--tasks", "xnli_en", "--data", &en, "--cache", cache_arg, "--batch-size", "5"]);
    assert_eq!(answers(), 72);
    assert_eq!(read_results(second.path())["results"], read_results(first.path())["results"]);
    let expected = std::fs::read_to_string(samples_path(first.path(), "xnli_en")).unwrap();
    assert!(std::fs::read_to_string(samples_path(second.path(), "xnli_en")).unwrap() == expected);
    // A kill can leave half a line: it is skipped (its answer would be computed again).
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("{\"key\": \"4f1");
    std::fs::write(&file, text).unwrap();
    // Another task adds only its own answers; another dtype is another model and another file.
    let ca = format!("xnli_ca={}", data("xnli_ca.validation.jsonl"));
    run_ok(&["--model", HUB_MODEL, "--tasks", "xnli_ca", "--data", &ca, "--cache", cache_arg]);
    let lines = std::fs::read_to_string(&file).unwrap();
    assert_eq!(lines.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()).count(), 1 + 72 + 27);
    run_ok(&["--model", HUB_MODEL, "--tasks", "xnli_en", "--data", &en, "--cache", cache_arg, "--dtype", "bf16"]);
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 2);
}
