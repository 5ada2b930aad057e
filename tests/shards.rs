//! `--shard I/N` and `ibex merge`: a run split into shards, as a Slurm array runs it, merges into the unsharded
//! run's results and sample logs, bit for bit, few-shot tasks, a generation task and a group included.

use crate::common::{fixtures, ibex, ibex_path_arg, read_json, run_ok, short_variant, HUB_MODEL};

#[test]
fn shards_merge_into_the_unsharded_run_bit_for_bit() {
    let tasks = tempfile::tempdir().unwrap();
    short_variant(tasks.path(), "xquad_en", "xquad_en_short");
    std::fs::write(
        tasks.path().join("pair.toml"),
        "group = \"pair\"\ntasks = [\"xnli_en\", \"xnli_es_spanish_bench\"]\n",
    )
    .unwrap();
    let data = |name: &str| fixtures().join("data").join(name).display().to_string();
    let data_args = [
        format!("xnli_en={}", data("xnli_en.validation.jsonl")),
        format!("xnli_en:train={}", data("xnli_en.train.jsonl")),
        format!("xnli_es_spanish_bench={}", data("xnli_es.validation.jsonl")),
        format!("xquad_en_short={}", data("qa_en.validation.jsonl")),
    ];
    let mut common =
        vec!["--model", HUB_MODEL, "--tasks", "pair,xquad_en_short", "--tasks-dir", ibex_path_arg(tasks.path())];
    for arg in &data_args {
        common.extend(["--data", arg.as_str()]);
    }
    common.extend(["--num-fewshot", "3"]);
    let whole = run_ok(&common);
    let shards: Vec<tempfile::TempDir> = (0..3)
        .map(|i| {
            let shard = format!("{i}/3");
            run_ok(&[&common[..], &["--shard", shard.as_str(), "--batch-size", "3"]].concat())
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

    let expected = read_json(&whole.path().join("results.json"));
    let got = read_json(&merged.path().join("results.json"));
    assert_eq!(got["results"], expected["results"]);
    assert_eq!(got["groups"], expected["groups"]);
    assert_eq!(got["higher_is_better"], expected["higher_is_better"]);
    assert!(got["model"]["shard"].is_null());
    for task in ["xnli_en", "xnli_es_spanish_bench", "xquad_en_short"] {
        let name = format!("samples_{task}.jsonl");
        let expected = std::fs::read_to_string(whole.path().join(&name)).unwrap();
        let got = std::fs::read_to_string(merged.path().join(&name)).unwrap();
        assert!(got == expected, "{name} differs after merging");
        assert_eq!(got.lines().count(), read_json(&whole.path().join("results.json"))["results"][task]["n"]);
    }
    for shard in &shards {
        let shard_results = read_json(&shard.path().join("results.json"));
        assert_eq!(shard_results["results"]["xnli_es_spanish_bench"]["n"], 3);
    }

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
