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

/// The newest `results_<date>.json` a run wrote under `output` (`<output>/<model>/`), and its date id.
pub fn results_path(output: &Path) -> (PathBuf, String) {
    ibex_core::results::find_results(output).unwrap_or_else(|e| panic!("{e}"))
}

/// The run's results file under `output`, as JSON.
pub fn read_results(output: &Path) -> Value {
    read_json(&results_path(output).0)
}

/// The sample log of `task` beside the newest results file under `output`.
pub fn samples_path(output: &Path, task: &str) -> PathBuf {
    let (results, date) = results_path(output);
    results.with_file_name(ibex_core::results::samples_file_name(task, &date))
}

/// A sample log, each line in the shape lm-eval keeps in memory (the shape of the reference logs): `arguments` as
/// lists, log-likelihoods as numbers, greedy flags as booleans; the target as the string lm-eval writes to disk.
pub fn read_samples(path: &Path) -> Vec<Value> {
    read_jsonl(path).into_iter().map(in_memory_shape).collect()
}

/// See [`read_samples`]; lines already in that shape are left as they are (targets become strings).
pub fn in_memory_shape(mut sample: Value) -> Value {
    if let Some(arguments) = sample["arguments"].as_object() {
        let lists: Vec<Value> = (0..arguments.len())
            .map(|i| {
                let arg = &arguments[&format!("gen_args_{i}")];
                serde_json::json!([arg["arg_0"], arg["arg_1"]])
            })
            .collect();
        sample["arguments"] = Value::Array(lists);
    }
    let pair = |v: &Value| match v.as_array().map(Vec::as_slice) {
        Some([Value::String(ll), Value::String(greedy)]) => {
            serde_json::json!([ll.parse::<f64>().unwrap(), greedy == "True"])
        }
        _ => v.clone(),
    };
    if let Some(resps) = sample["filtered_resps"].as_array() {
        sample["filtered_resps"] = resps.iter().map(pair).collect();
    }
    if let Some(resps) = sample["resps"].as_array() {
        sample["resps"] =
            resps.iter().map(|r| r.as_array().map_or(r.clone(), |a| a.iter().map(pair).collect())).collect();
    }
    let target = match &sample["target"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    sample["target"] = Value::String(target);
    sample
}

/// A path as a `--model` argument.
pub fn ibex_path_arg(path: &Path) -> &str {
    path.to_str().expect("fixture paths are UTF-8")
}

/// Log-likelihoods agree within 1e-4, or within one part per million where they exceed 100 nats: lm-eval sums a
/// continuation's token log-probabilities in f32 (ibex sums in f64), and at −350 one f32 ulp is already 3e-5, so
/// long few-shot continuations differ by torch's summation rounding alone.
pub fn tolerance(reference: f64) -> f64 {
    1e-4_f64.max(1e-6 * reference.abs())
}

/// Compares ibex's sample log with lm-eval's, doc by doc; returns the largest log-likelihood difference.
pub fn assert_samples_match(ours: &Path, reference: &Path) -> f64 {
    let ours = read_samples(ours);
    let reference = read_samples(reference);
    assert_eq!(ours.len(), reference.len());
    let mut max_delta: f64 = 0.0;
    for (o, r) in ours.iter().zip(&reference) {
        let id = &r["doc_id"];
        assert_eq!(o["doc_id"], *id);
        for key in ["doc", "target", "arguments", "doc_hash", "prompt_hash", "target_hash", "acc", "filter", "metrics"]
        {
            assert_eq!(o[key], r[key], "doc {id}: `{key}` differs");
        }
        let (o_resps, r_resps) = (o["filtered_resps"].as_array().unwrap(), r["filtered_resps"].as_array().unwrap());
        assert_eq!(o_resps.len(), r_resps.len());
        for (a, b) in o_resps.iter().zip(r_resps) {
            let expected = b[0].as_f64().unwrap();
            let delta = (a[0].as_f64().unwrap() - expected).abs();
            assert!(delta <= tolerance(expected), "doc {id}: loglikelihood {} vs lm-eval {}", a[0], b[0]);
            assert_eq!(a[1], b[1], "doc {id}: is_greedy differs");
            max_delta = max_delta.max(delta);
        }
    }
    max_delta
}

/// A shipped QA task (`xquad_en`, `xquad_ca`) with a 24-token budget, as the fixture's lm-eval run had (the tiny
/// model's window is 96): a task file in `dir` that includes the shipped one.
pub fn short_variant(dir: &std::path::Path, shipped: &str, name: &str) {
    let benchmark = if shipped == "xquad_ca" { "catalan_bench" } else { "xquad" };
    let file = fixtures().join("../../tasks").join(benchmark).join(format!("{shipped}.yaml"));
    let text = format!(
        "include: {}\ntask: {name}\ngeneration_kwargs:\n  until: [\"\\n\"]\n  do_sample: false\n  temperature: 0.0\n  \
         max_gen_toks: 24\n",
        serde_json::to_string(&file.canonicalize().unwrap().display().to_string()).unwrap()
    );
    std::fs::write(dir.join(format!("{name}.yaml")), text).unwrap();
}

/// A group file in `dir` aggregating `tasks`' accuracy, weighted by size.
pub fn group_file(dir: &Path, group: &str, tasks: &[&str]) {
    let list: String = tasks.iter().map(|t| format!("  - {t}\n")).collect();
    let text = format!(
        "group: {group}\ntask:\n{list}aggregate_metric_list:\n  - metric: acc\n    aggregation: mean\n    \
         weight_by_size: true\nmetadata:\n  version: 1.0\n"
    );
    std::fs::write(dir.join(format!("{group}.yaml")), text).unwrap();
}

/// The fixture model's placement on the CPU, as a run computes it.
pub fn cpu_placement(folder: &Path) -> ibex_core::placement::Placement {
    let config = ibex_candle::read_config(&folder.join("config.json")).unwrap();
    let cpu = [ibex_core::DeviceSpec::Cpu];
    ibex_candle::placement(&config, ibex_core::Dtype::F32, &cpu, &ibex_core::MaxMemory::Free).unwrap()
}

/// A task folder for runs that cover a few-shot size-weighted group (`pair`: xnli_en, with shots from its train split,
/// and xnli_es_spanish_bench) and a generation task (`xquad_en_short`), with the `ibex run` flags that select them on
/// the fixture data at 3 shots.
pub fn group_and_generation_run(tasks: &Path) -> Vec<String> {
    short_variant(tasks, "xquad_en", "xquad_en_short");
    group_file(tasks, "pair", &["xnli_en", "xnli_es_spanish_bench"]);
    let data = |name: &str| fixtures().join("data").join(name).display().to_string();
    let mut args: Vec<String> =
        ["--model", HUB_MODEL, "--tasks", "pair,xquad_en_short", "--tasks-dir", ibex_path_arg(tasks)]
            .map(str::to_owned)
            .to_vec();
    for data_arg in [
        format!("xnli_en={}", data("xnli_en.validation.jsonl")),
        format!("xnli_en:train={}", data("xnli_en.train.jsonl")),
        format!("xnli_es_spanish_bench={}", data("xnli_es.validation.jsonl")),
        format!("xquad_en_short={}", data("qa_en.validation.jsonl")),
    ] {
        args.extend(["--data".to_owned(), data_arg]);
    }
    args.extend(["--num-fewshot", "3"].map(str::to_owned));
    args
}

/// The cells of a line of a printed table, trimmed (empty for border lines).
pub fn table_cells(line: &str) -> Vec<String> {
    line.split(['│', '┆']).map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect()
}
