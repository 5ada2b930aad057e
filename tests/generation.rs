//! Extractive QA by greedy generation against lm-eval 0.4.13's `generate_until` on the fixture model: identical
//! prompts, generated strings (stop strings, end of text, byte-fallback pieces), targets, exact match and F1.

use crate::common::{
    fixtures, ibex_path_arg, read_json, read_jsonl, read_results, read_samples, run_ok, samples_path, short_variant,
    HUB_MODEL,
};
use serde_json::Value;

#[test]
fn xquad_generations_and_scores_match_lm_eval() {
    let dir = tempfile::tempdir().unwrap();
    short_variant(dir.path(), "xquad_en", "xquad_en_short");
    short_variant(dir.path(), "xquad_ca", "xquad_ca_short");
    let data = |name: &str| fixtures().join("data").join(name).display().to_string();
    let cases = [
        ("xquad_en", "xquad_en_short", format!("xquad_en_short={}", data("qa_en.validation.jsonl"))),
        ("xquad_ca", "xquad_ca_short", format!("xquad_ca_short={}", data("qa_ca.test.jsonl"))),
    ];
    // Batch size 1, and batches of left-padded prompts of different lengths (3 and 8).
    let runs = [("0", "1"), ("0", "3"), ("0", "8"), ("3", "8")];
    for (reference_name, task, data_arg) in &cases {
        for (shots, batch_size) in runs {
            let dir_arg = ibex_path_arg(dir.path());
            let out = run_ok(&[
                "--model",
                HUB_MODEL,
                "--tasks",
                task,
                "--tasks-dir",
                dir_arg,
                "--data",
                data_arg,
                "--num-fewshot",
                shots,
                "--batch-size",
                batch_size,
            ]);
            let ours = read_samples(&samples_path(out.path(), task));
            let reference = read_jsonl(&fixtures().join(format!("lm_eval/samples_{reference_name}_{shots}shot.jsonl")));
            assert_eq!(ours.len(), reference.len());
            for (o, r) in ours.iter().zip(&reference) {
                let id = &r["doc_id"];
                for key in [
                    "doc",
                    "target",
                    "arguments",
                    "filtered_resps",
                    "doc_hash",
                    "prompt_hash",
                    "target_hash",
                    "metrics",
                ] {
                    assert_eq!(o[key], r[key], "{task} {shots}-shot batch {batch_size} doc {id}: `{key}` differs");
                }
                for metric in ["f1", "exact_match"] {
                    assert_eq!(o[metric].as_f64(), r[metric].as_f64(), "{task} doc {id}: {metric}");
                }
            }
            let results = read_results(out.path());
            let summary = read_json(&fixtures().join(format!("lm_eval/results_{reference_name}_{shots}shot.json")));
            for key in ["f1,none", "exact_match,none"] {
                assert_eq!(results["results"][task][key].as_f64(), summary[key].as_f64(), "{task} {key}");
            }
            assert_eq!(results["results"][task]["sample_len"], Value::from(reference.len()));
        }
    }
}

/// The issue's own command: SQuAD v1.1 from its nested JSON and XQuAD from JSON Lines, offline, in one run.
#[test]
fn squad_from_nested_json_and_xquad_run_together_offline() {
    let data = |name: &str| fixtures().join("data").join(name).display().to_string();
    let squad = format!("squad_en={}", data("squad_v1.1.dev.json"));
    let xquad = format!("xquad_es={}", data("qa_en.validation.jsonl"));
    let out = run_ok(&[
        "--model",
        HUB_MODEL,
        "--tasks",
        "squad_en,xquad_es",
        "--data",
        &squad,
        "--data",
        &xquad,
        "--max-gen-toks",
        "16",
    ]);
    let results = read_results(out.path());
    assert_eq!(results["results"]["squad_en"]["sample_len"], 3);
    assert_eq!(results["results"]["xquad_es"]["sample_len"], 8);
    assert_eq!(results["ibex"]["model"]["max_gen_toks"], 16);
    let samples = read_samples(&samples_path(out.path(), "squad_en"));
    assert_eq!(samples[0]["doc"]["question"], "What colours was the boat?");
    assert_eq!(samples[0]["target"], "blue and white");
    assert_eq!(samples[0]["arguments"][0][1]["until"], serde_json::json!(["\n"]));
    let xquad_prompt = read_samples(&samples_path(out.path(), "xquad_es"))[0]["arguments"][0][0].clone();
    assert!(xquad_prompt.as_str().unwrap().starts_with("Contexto: The library opens"), "{xquad_prompt}");
}
