//! Parity with lm-eval 0.4.13: per-sample log-likelihoods within 1e-4, identical accuracy, identical requests.

use crate::common::{
    assert_samples_match, cpu_placement, fixtures, ibex_path_arg, model_folder, read_json, read_jsonl, read_results,
    read_samples, run_ok, samples_path, tolerance, HUB_MODEL,
};
use ibex_candle::CandleModel;
use ibex_core::{BosPolicy, Encoder, LoglikelihoodRequest, TokenModel, TokenizerFiles};
use serde_json::Value;
use std::path::Path;

fn assert_results_match(results: &Value, task: &str, reference: &Path) {
    let reference = read_json(reference);
    let ours = &results["results"][task];
    assert_eq!(ours["acc,none"], reference["acc,none"]);
    let stderr = ours["acc_stderr,none"].as_f64().unwrap();
    assert!((stderr - reference["acc_stderr,none"].as_f64().unwrap()).abs() < 1e-12);
    assert_eq!(ours["sample_len"], reference["sample_len"]);
}

#[test]
fn xnli_en_from_the_hub_cache_matches_lm_eval_at_batch_sizes_1_3_8() {
    let reference = fixtures().join("lm_eval");
    let mut accuracies = Vec::new();
    for batch_size in ["1", "3", "8"] {
        let out = run_ok(&["--model", HUB_MODEL, "--tasks", "xnli_en", "--batch-size", batch_size]);
        let max_delta =
            assert_samples_match(&samples_path(out.path(), "xnli_en"), &reference.join("samples_xnli_en_0shot.jsonl"));
        eprintln!("batch size {batch_size}: max |Δ loglik| = {max_delta:.2e} over 24 docs × 3 choices");
        let results = read_results(out.path());
        assert_results_match(&results, "xnli_en", &reference.join("results_xnli_en_0shot.json"));
        let model = &results["ibex"]["model"];
        let commit =
            std::fs::read_to_string(fixtures().join("hf-home/hub/models--ibex-fixtures--tiny-salamandra/refs/main"))
                .unwrap();
        assert_eq!(model["revision"], commit.trim());
        assert_eq!(results["ibex"]["tasks"]["xnli_en"]["task_file"], "tasks/xnli/xnli_en.yaml");
        // lm-eval's `versions`: the task file's metadata.version.
        assert_eq!(results["versions"]["xnli_en"], 1.0);
        assert!(results["ibex"]["tasks"]["xnli_en"]["dataset"].as_str().unwrap().starts_with("facebook/xnli@"));
        accuracies.push(results["results"]["xnli_en"]["acc,none"].clone());
    }
    assert!(accuracies.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn xnli_en_three_shot_from_the_hub_cache_matches_lm_eval() {
    let out = run_ok(&["--model", HUB_MODEL, "--tasks", "xnli_en", "--num-fewshot", "3"]);
    let reference = fixtures().join("lm_eval");
    assert_samples_match(&samples_path(out.path(), "xnli_en"), &reference.join("samples_xnli_en_3shot.jsonl"));
    let results = read_results(out.path());
    assert_results_match(&results, "xnli_en", &reference.join("results_xnli_en_3shot.json"));
    assert_eq!(results["ibex"]["model"]["num_fewshot"], 3);
}

/// Each distinct NLI recipe (delimiter, preprocessing, field and label mapping, few-shot split and exclusion rule),
/// from local files through `--data`, at 0 and 3 shots.
#[test]
fn every_nli_recipe_matches_lm_eval_at_zero_and_three_shots() {
    let data = |name: &str| fixtures().join("data").join(name).display().to_string();
    let recipes: [(&str, Vec<String>); 5] = [
        (
            "xnli_en",
            vec![
                format!("xnli_en={}", data("xnli_en.validation.jsonl")),
                format!("xnli_en:train={}", data("xnli_en.train.jsonl")),
            ],
        ),
        ("xnli_es_spanish_bench", vec![format!("xnli_es_spanish_bench={}", data("xnli_es.validation.jsonl"))]),
        ("xnli_ca", vec![format!("xnli_ca:validation={}", data("xnli_ca.validation.jsonl"))]),
        (
            "xnli_eu",
            vec![
                format!("xnli_eu={}", data("xnli_eu.test.jsonl")),
                format!("xnli_eu:train={}", data("xnli_eu.train.jsonl")),
            ],
        ),
        ("xnli_gl", vec![format!("xnli_gl={}", data("xnli_gl.test.jsonl"))]),
    ];
    let reference = fixtures().join("lm_eval");
    for (task, overrides) in &recipes {
        for shots in ["0", "3"] {
            let mut args = vec!["--model", HUB_MODEL, "--tasks", task, "--num-fewshot", shots, "--batch-size", "4"];
            for o in overrides {
                args.extend(["--data", o.as_str()]);
            }
            let out = run_ok(&args);
            let max_delta = assert_samples_match(
                &samples_path(out.path(), task),
                &reference.join(format!("samples_{task}_{shots}shot.jsonl")),
            );
            let results = read_results(out.path());
            assert_results_match(&results, task, &reference.join(format!("results_{task}_{shots}shot.json")));
            eprintln!(
                "{task} {shots}-shot: {} docs, max |Δ loglik| = {max_delta:.2e}",
                results["results"][task]["sample_len"]
            );
        }
    }
}

/// A size-weighted group (24 + 9 documents) against lm-eval's group aggregate, from a group file given by --tasks-dir.
#[test]
fn weighted_group_matches_lm_evals_aggregate() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::group_file(dir.path(), "nli_group", &["xnli_en", "xnli_ca"]);
    let data = |name: &str| fixtures().join("data").join(name).display().to_string();
    let en = format!("xnli_en={}", data("xnli_en.validation.jsonl"));
    let en_train = format!("xnli_en:train={}", data("xnli_en.train.jsonl"));
    let ca = format!("xnli_ca={}", data("xnli_ca.validation.jsonl"));
    for shots in ["0", "3"] {
        let out = run_ok(&[
            "--model",
            HUB_MODEL,
            "--tasks",
            "nli_group",
            "--tasks-dir",
            ibex_path_arg(dir.path()),
            "--num-fewshot",
            shots,
            "--data",
            &en,
            "--data",
            &en_train,
            "--data",
            &ca,
        ]);
        let results = read_results(out.path());
        let reference = read_json(&fixtures().join(format!("lm_eval/results_nli_group_{shots}shot.json")));
        let group = &results["results"]["nli_group"];
        assert_eq!(group["sample_len"], 33);
        assert_eq!(group["sample_count"]["acc,none"], 33);
        assert!((group["acc,none"].as_f64().unwrap() - reference["acc,none"].as_f64().unwrap()).abs() < 1e-12);
        let stderr = group["acc_stderr,none"].as_f64().unwrap();
        assert!(
            (stderr - reference["acc_stderr,none"].as_f64().unwrap()).abs() < 1e-12,
            "{shots}-shot stderr {stderr}"
        );
        assert_eq!(results["group_subtasks"]["nli_group"], serde_json::json!(["xnli_en", "xnli_ca"]));
        assert_eq!(results["groups"]["nli_group"], *group);
    }
}

#[test]
fn local_folder_with_data_override_matches_lm_eval() {
    let data = fixtures().join("data/xnli_en.validation.jsonl");
    let folder = model_folder();
    let out = run_ok(&[
        "--model",
        ibex_path_arg(&folder),
        "--tasks",
        "xnli_en",
        "--data",
        &format!("xnli_en:validation={}", data.display()),
    ]);
    let reference = fixtures().join("lm_eval");
    assert_samples_match(&samples_path(out.path(), "xnli_en"), &reference.join("samples_xnli_en_0shot.jsonl"));
    let results = read_results(out.path());
    assert_results_match(&results, "xnli_en", &reference.join("results_xnli_en_0shot.json"));
    assert_eq!(results["ibex"]["model"]["revision"], Value::Null);
}

#[test]
fn sharded_checkpoint_scores_like_the_single_file() {
    let sharded = fixtures().join("models/tiny-salamandra-sharded");
    assert!(sharded.join("model.safetensors.index.json").is_file());
    let out = run_ok(&["--model", ibex_path_arg(&sharded), "--tasks", "xnli_en"]);
    assert_samples_match(&samples_path(out.path(), "xnli_en"), &fixtures().join("lm_eval/samples_xnli_en_0shot.jsonl"));
}

#[test]
fn tied_embeddings_checkpoint_matches_lm_eval() {
    let tied = fixtures().join("models/tiny-salamandra-tied");
    let out = run_ok(&["--model", ibex_path_arg(&tied), "--tasks", "xnli_en", "--limit", "12"]);
    let ours = read_samples(&samples_path(out.path(), "xnli_en"));
    let reference = read_jsonl(&fixtures().join("lm_eval/tied/samples_xnli_en_0shot.jsonl"));
    assert_eq!(ours.len(), 12);
    for (o, r) in ours.iter().zip(&reference) {
        for (a, b) in o["filtered_resps"].as_array().unwrap().iter().zip(r["filtered_resps"].as_array().unwrap()) {
            let expected = b[0].as_f64().unwrap();
            assert!((a[0].as_f64().unwrap() - expected).abs() <= tolerance(expected));
        }
    }
    assert_eq!(read_results(out.path())["results"]["xnli_en"]["sample_len"], 12);
}

/// lm-eval's `_encode_pair` and scoring of hand-picked pairs (leading space, trailing whitespace, a token
/// straddling the join, byte fallback, a BOS-string prefix, left truncation), in every BOS era.
#[test]
fn tokenization_contract_and_scores_match_lm_eval_pair_by_pair() {
    let folder = model_folder();
    let mut model = CandleModel::load(
        &folder.join("config.json"),
        &[folder.join("model.safetensors")],
        candle_core::DType::F32,
        &cpu_placement(&folder),
    )
    .unwrap();
    let reference = read_json(&fixtures().join("lm_eval/encode_pairs.json"));
    let mut checked = 0;
    for (flag, policy) in
        [(Value::Null, BosPolicy::Auto), (Value::Bool(false), BosPolicy::Never), (Value::Bool(true), BosPolicy::Always)]
    {
        let files = TokenizerFiles {
            tokenizer_json: folder.join("tokenizer.json"),
            settings: vec![folder.join("tokenizer_config.json")],
            ..TokenizerFiles::default()
        };
        let encoder = Encoder::from_files(&files, policy).unwrap();
        for case in reference.as_array().unwrap().iter().filter(|c| c["add_bos_token"] == flag) {
            let request = LoglikelihoodRequest {
                context: case["context"].as_str().unwrap().to_owned(),
                continuation: case["continuation"].as_str().unwrap().to_owned(),
            };
            let tokens = encoder.encode(&request).unwrap();
            let ids = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
            let name = &case["name"];
            assert_eq!(tokens.context, ids(&case["context_ids"]), "{name} ({flag}): context tokens");
            assert_eq!(tokens.continuation, ids(&case["continuation_ids"]), "{name} ({flag}): continuation tokens");
            let score = model.score(&[vec![tokens.clone()]]).unwrap()[0][0];
            let expected = case["loglikelihood"].as_f64().unwrap();
            assert!(
                (score.logprob - expected).abs() <= tolerance(expected),
                "{name} ({flag}): {} vs {expected}",
                score.logprob
            );
            assert_eq!(Value::Bool(score.is_greedy), case["is_greedy"], "{name} ({flag}): is_greedy");
            checked += 1;
        }
    }
    assert_eq!(checked, 39);
}

/// Special tokens may live in special_tokens_map.json (older checkpoints): as in transformers' `from_pretrained`, the
/// map overrides tokenizer_config.json's special tokens, unless tokenizer_config.json has `added_tokens_decoder`, when
/// the map is not read at all.
#[test]
fn special_tokens_map_overrides_tokenizer_config_unless_it_has_added_tokens_decoder() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tokenizer_config.json");
    let map = dir.path().join("special_tokens_map.json");
    std::fs::write(&config, r#"{"add_bos_token": false, "eos_token": "</s>"}"#).unwrap();
    std::fs::write(&map, r#"{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "<unk>"}"#).unwrap();
    let files = |settings: Vec<std::path::PathBuf>| TokenizerFiles {
        tokenizer_json: model_folder().join("tokenizer.json"),
        settings,
        ..TokenizerFiles::default()
    };
    let encoder = Encoder::from_files(&files(vec![config.clone(), map]), BosPolicy::Auto).unwrap();
    assert_eq!(encoder.prefix_token_id(), 1);
    let eos_only = Encoder::from_files(&files(vec![config.clone()]), BosPolicy::Auto).unwrap();
    assert_eq!(eos_only.prefix_token_id(), 2);
    assert!(Encoder::from_files(&files(vec![]), BosPolicy::Auto).is_err());
    // No BOS anywhere: the prefix token is the EOS, the map's `<unk>` (0) over tokenizer_config's `</s>` (2)...
    let eos_map = dir.path().join("eos_map").join("special_tokens_map.json");
    std::fs::create_dir_all(eos_map.parent().unwrap()).unwrap();
    std::fs::write(&eos_map, r#"{"eos_token": "<unk>"}"#).unwrap();
    let overridden = Encoder::from_files(&files(vec![config.clone(), eos_map.clone()]), BosPolicy::Auto).unwrap();
    assert_eq!(overridden.prefix_token_id(), 0);
    // ...unless tokenizer_config.json was saved with added_tokens_decoder.
    std::fs::write(&config, r#"{"eos_token": "</s>", "added_tokens_decoder": {}}"#).unwrap();
    let kept = Encoder::from_files(&files(vec![config, eos_map]), BosPolicy::Auto).unwrap();
    assert_eq!(kept.prefix_token_id(), 2);
}

/// HiTZ/xnli-eu ships TSV (header, labels as text, quoting off): the same rows read from TSV score as lm-eval's.
#[test]
fn xnli_eu_from_tsv_matches_lm_eval() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("xnli.test.eu.tsv");
    let mut text = String::from("premise\thypothesis\tlabel\n");
    for row in read_jsonl(&fixtures().join("data/xnli_eu.test.jsonl")) {
        text.push_str(&format!(
            "{}\t{}\t{}\n",
            row["premise"].as_str().unwrap(),
            row["hypothesis"].as_str().unwrap(),
            row["label"]
        ));
    }
    std::fs::write(&tsv, text).unwrap();
    let data = format!("xnli_eu={}", tsv.display());
    let out = run_ok(&["--model", HUB_MODEL, "--tasks", "xnli_eu", "--data", &data]);
    assert_samples_match(&samples_path(out.path(), "xnli_eu"), &fixtures().join("lm_eval/samples_xnli_eu_0shot.jsonl"));
}

/// The results file records each task's time and the tokens the model processed: for xnli_en, the model inputs of its
/// 72 requests, exactly as lm-eval builds them (context + continuation, last token dropped).
#[test]
fn task_records_count_every_model_input_token() {
    let out = run_ok(&["--model", HUB_MODEL, "--tasks", "xnli_en"]);
    let results = read_results(out.path());
    let record = &results["ibex"]["tasks"]["xnli_en"];
    let folder = model_folder();
    let files = TokenizerFiles {
        tokenizer_json: folder.join("tokenizer.json"),
        settings: vec![folder.join("tokenizer_config.json")],
        model_config: Some(folder.join("config.json")),
        ..TokenizerFiles::default()
    };
    let encoder = Encoder::from_files(&files, BosPolicy::Auto).unwrap();
    let mut expected = 0;
    for sample in read_samples(&samples_path(out.path(), "xnli_en")) {
        for argument in sample["arguments"].as_array().unwrap() {
            let request = LoglikelihoodRequest {
                context: argument[0].as_str().unwrap().to_owned(),
                continuation: argument[1].as_str().unwrap().to_owned(),
            };
            expected += encoder.encode(&request).unwrap().model_input(96).0.len() as u64;
        }
    }
    assert_eq!(record["tokens"].as_u64(), Some(expected));
    let seconds = record["seconds"].as_f64().unwrap();
    assert!(seconds > 0.0 && seconds <= results["ibex"]["seconds"].as_f64().unwrap());
    let lm_eval_string: f64 = results["total_evaluation_time_seconds"].as_str().unwrap().parse().unwrap();
    assert_eq!(lm_eval_string, results["ibex"]["seconds"].as_f64().unwrap());
}
