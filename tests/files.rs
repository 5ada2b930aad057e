//! The files ibex writes against the files lm-eval 0.4.13's own CLI wrote for the same run (make_fixtures.py
//! `files`: `lm_eval run --output_path … --log_samples` on the fixture model, a size-weighted group of xnli_en and
//! xnli_ca and a generation task): the folder layout, and every key, nesting and JSON type of the results file and of
//! each sample line, apart from the keys listed in `NOT_COMPARED` with the reason.

use crate::common::{
    fixtures, ibex_path_arg, read_json, read_jsonl, results_path, run_ok, samples_path, short_variant, HUB_MODEL,
};
use serde_json::Value;

/// Keys of lm-eval's results file that ibex does not write, or writes with another type, and why (`*`: any task).
const NOT_COMPARED: [(&str, &str); 14] = [
    (
        "configs.*.dataset_kwargs.data_files.*",
        "lm-eval lists every file its YAML names; ibex the files it read (a few-shot split only with shots)",
    ),
    ("git_hash", "the commit of lm-eval's own checkout; ibex records ibex.version"),
    ("transformers_version", "ibex runs no transformers; it reproduces 4.57.6's tokenizers (ibex.lm_eval_version)"),
    ("lm_eval_version", "ibex is not lm-eval; ibex.lm_eval_version names the version it reproduces"),
    ("config.random_seed", "ibex draws random numbers only for few-shot examples (config.fewshot_seed)"),
    ("config.numpy_seed", "as config.random_seed"),
    ("config.torch_seed", "as config.random_seed"),
    ("configs.*.doc_to_text", "ibex names the task file and its SHA-256 (metadata) instead of copying its templates"),
    ("configs.*.doc_to_target", "as doc_to_text"),
    ("configs.*.doc_to_choice", "as doc_to_text"),
    ("configs.*.process_docs", "lm-eval writes the Python source of the function; ibex runs no Python"),
    ("configs.*.process_results", "as process_docs"),
    ("configs.*.fewshot_config.*", "the few-shot settings of a YAML task; ibex writes its sampler and delimiters"),
    ("configs.*.metadata.*", "lm-eval copies its model arguments and YAML path; ibex names the task file"),
];

/// lm-eval's fixture task names → ibex's.
fn ibex_name(key: &str) -> String {
    match key.strip_prefix("fixture_") {
        Some("xquad_en") => "xquad_en_short".into(),
        Some(name) => name.into(),
        None => key.into(),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn listed(path: &str) -> bool {
    NOT_COMPARED.iter().any(|(pattern, _)| {
        let (pattern, path): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), path.split('.').collect());
        let prefix = pattern.last() == Some(&"*") && path.len() >= pattern.len() - 1;
        (pattern.len() == path.len() || prefix) && pattern.iter().zip(&path).all(|(p, s)| *p == "*" || p == s)
    })
}

/// Every difference of key or type between lm-eval's `theirs` and ibex's `ours` below `path`, not counting listed
/// keys nor ibex's own `ibex` block.
fn differences(theirs: &Value, ours: &Value, path: &str, found: &mut Vec<String>) {
    if listed(path) {
        return;
    }
    if kind(theirs) != kind(ours) {
        found.push(format!("{path}: lm-eval has {}, ibex {}", kind(theirs), kind(ours)));
        return;
    }
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match (theirs, ours) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let name = ibex_name(key);
                match b.get(&name) {
                    Some(other) => differences(value, other, &join(&name), found),
                    None if listed(&join(&name)) => {}
                    None => found.push(format!("{}: lm-eval has it, ibex not", join(&name))),
                }
            }
            let theirs_names: Vec<String> = a.keys().map(|k| ibex_name(k)).collect();
            for key in b.keys().filter(|k| !(theirs_names.contains(k) || path.is_empty() && *k == "ibex")) {
                found.push(format!("{}: ibex has it, lm-eval not", join(key)));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(x, y, &join(&i.to_string()), found);
            }
        }
        _ => {}
    }
}

#[test]
fn results_and_sample_files_have_lm_evals_keys_nesting_and_types() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::group_file(dir.path(), "nli_group", &["xnli_en", "xnli_ca"]);
    short_variant(dir.path(), "xquad_en", "xquad_en_short");
    let data = |task: &str, file: &str| format!("{task}={}", fixtures().join("data").join(file).display());
    let out = run_ok(&[
        "--model",
        HUB_MODEL,
        "--tasks",
        "nli_group,xquad_en_short",
        "--tasks-dir",
        ibex_path_arg(dir.path()),
        "--data",
        &data("xnli_en", "xnli_en.validation.jsonl"),
        "--data",
        &data("xnli_en:train", "xnli_en.train.jsonl"),
        "--data",
        &data("xnli_ca", "xnli_ca.validation.jsonl"),
        "--data",
        &data("xquad_en_short", "qa_en.validation.jsonl"),
    ]);
    // lm-eval's layout: <output>/<model_name_sanitized>/results_<date>.json, named as lm-eval names a hub id.
    let (ours_path, date) = results_path(out.path());
    let reference = fixtures().join("lm_eval/files/ibex-fixtures__tiny-salamandra");
    assert_eq!(ours_path.parent().unwrap().file_name(), reference.file_name());
    assert_eq!(date.len(), "2026-11-30T16-21-44.240137".len(), "{date}");

    let theirs_path = std::fs::read_dir(&reference)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("results_"))
        .unwrap();
    let (theirs, ours) = (read_json(&theirs_path), read_json(&ours_path));
    let mut found = Vec::new();
    differences(&theirs, &ours, "", &mut found);
    assert!(found.is_empty(), "results differ from lm-eval's:\n{}", found.join("\n"));
    assert_eq!(ours["results"]["nli_group"]["acc,none"], theirs["results"]["fixture_nli_group"]["acc,none"]);
    assert_eq!(ours["n-samples"]["xnli_ca"], theirs["n-samples"]["fixture_xnli_ca"]);
    assert_eq!(ours["tokenizer_bos_token"], theirs["tokenizer_bos_token"]);
    assert_eq!(ours["config"]["model_num_parameters"], theirs["config"]["model_num_parameters"]);
    assert_eq!(ours["tokenizer_pad_token"], theirs["tokenizer_pad_token"]);
    // lm-eval's task hash covers every document, prompt and target: equal hashes, equal requests.
    for (task, fixture) in [("xnli_en", "xnli_en"), ("xnli_ca", "xnli_ca"), ("xquad_en_short", "xquad_en")] {
        assert_eq!(ours["task_hashes"][task], theirs["task_hashes"][format!("fixture_{fixture}")], "{task}");
    }

    // Written as Python's json.dumps writes a line.
    let line = std::fs::read_to_string(samples_path(out.path(), "xnli_en")).unwrap();
    assert!(line.starts_with("{\"doc_id\": 0, \"doc\": {\"premise\": "), "{line}");
    for (task, fixture) in [("xnli_en", "xnli_en"), ("xnli_ca", "xnli_ca"), ("xquad_en_short", "xquad_en")] {
        let suffix = theirs_path.file_name().unwrap().to_str().unwrap().trim_start_matches("results_");
        let theirs = read_jsonl(&reference.join(format!("samples_fixture_{fixture}_{}l", suffix)));
        let ours = read_jsonl(&samples_path(out.path(), task));
        assert_eq!(ours.len(), theirs.len(), "{task}");
        for (o, t) in ours.iter().zip(&theirs) {
            let mut found = Vec::new();
            differences(t, o, "", &mut found);
            assert!(found.is_empty(), "{task} doc {}: {}", t["doc_id"], found.join("; "));
            for key in ["target", "doc_hash", "prompt_hash", "target_hash", "arguments"] {
                assert_eq!(o[key], t[key], "{task} doc {}: `{key}`", t["doc_id"]);
            }
        }
    }
}
