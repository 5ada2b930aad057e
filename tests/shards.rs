//! `--shard I/N` and `ibex merge`: a run split into shards, as a Slurm array runs it, merges into the unsharded
//! run's results and sample logs, bit for bit, few-shot tasks, a generation task and a group included.

use crate::common::{group_and_generation_run, ibex, ibex_path_arg, read_results, run_ok, samples_path};

#[test]
fn shards_merge_into_the_unsharded_run_bit_for_bit() {
    let tasks = tempfile::tempdir().unwrap();
    let args = group_and_generation_run(tasks.path());
    let common: Vec<&str> = args.iter().map(String::as_str).collect();
    let whole = run_ok(&common);
    // Shards may run at other batch sizes than each other and than the whole run.
    let shards: Vec<tempfile::TempDir> = ["3", "1", "auto"]
        .iter()
        .enumerate()
        .map(|(i, batch_size)| {
            let shard = format!("{i}/3");
            run_ok(&[&common[..], &["--shard", shard.as_str(), "--batch-size", batch_size]].concat())
        })
        .collect();
    let merged = tempfile::tempdir().unwrap();
    let mut args = vec!["merge", ibex_path_arg(merged.path())];
    // Given out of order: the merge sorts documents, not folders.
    for shard in shards.iter().rev() {
        args.push(ibex_path_arg(shard.path()));
    }
    args.extend(["--tasks-dir", ibex_path_arg(tasks.path())]);
    let output = ibex(&args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let expected = read_results(whole.path());
    let got = read_results(merged.path());
    assert_eq!(got["results"], expected["results"]);
    assert_eq!(got["groups"], expected["groups"]);
    assert_eq!(got["higher_is_better"], expected["higher_is_better"]);
    assert_eq!(got["group_subtasks"], expected["group_subtasks"]);
    assert_eq!(got["n-samples"], expected["n-samples"]);
    assert_eq!(got["task_hashes"], expected["task_hashes"]);
    assert!(got["ibex"]["model"]["shard"].is_null());
    for task in ["xnli_en", "xnli_es_spanish_bench", "xquad_en_short"] {
        let expected = std::fs::read_to_string(samples_path(whole.path(), task)).unwrap();
        let got = std::fs::read_to_string(samples_path(merged.path(), task)).unwrap();
        assert!(got == expected, "{task}'s sample log differs after merging");
        assert_eq!(got.lines().count(), read_results(whole.path())["results"][task]["sample_len"]);
    }
    for shard in &shards {
        let shard_results = read_results(shard.path());
        assert_eq!(shard_results["results"]["xnli_es_spanish_bench"]["sample_len"], 3);
    }

    // The merge's output cannot be one of the shards' folders.
    let into_a_shard = ibex(&["merge", ibex_path_arg(shards[0].path()), ibex_path_arg(shards[0].path())]);
    let stderr = String::from_utf8_lossy(&into_a_shard.stderr);
    assert!(stderr.contains("is one of the shards' folders"), "{stderr}");
    // Two shards of three: refused, naming the missing one.
    let output =
        ibex(&["merge", "/tmp/never-written", ibex_path_arg(shards[0].path()), ibex_path_arg(shards[1].path())]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("shard 2/3 is missing"), "{stderr}");
    // A shard made with other settings: refused, naming the setting.
    let other = run_ok(&[&common[..], &["--shard", "2/3", "--batch-size", "3", "--seed", "7"]].concat());
    let output = ibex(&[
        "merge",
        "/tmp/never-written",
        ibex_path_arg(shards[0].path()),
        ibex_path_arg(shards[1].path()),
        ibex_path_arg(other.path()),
        "--tasks-dir",
        ibex_path_arg(tasks.path()),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ran with other settings: `fewshot_seed`"), "{stderr}");
}
