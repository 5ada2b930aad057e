//! Files that transformers or `datasets` transform before lm-eval sees tokens, each replayed on a variant of the
//! fixture checkpoint or data (tests/fixtures/make_fixtures.py `variants`) against lm-eval 0.4.13's own output on it.
//! Each test is named after the fault it pins.

use crate::common::{
    assert_samples_match, fixtures, ibex, ibex_path_arg, read_json, read_jsonl, read_results, read_samples, run_ok,
    samples_path, short_variant, HUB_MODEL,
};

fn variant(name: &str) -> std::path::PathBuf {
    fixtures().join("variants").join(name)
}

fn reference(name: &str) -> std::path::PathBuf {
    fixtures().join("lm_eval/variants").join(format!("samples_{name}.jsonl"))
}

/// HiTZ/xnli-eu's TSVs go through `datasets`' csv builder (pandas' quoting): a field opening with `"` loses its
/// quotes, `""` is one quote, a quote inside a field stays.
#[test]
fn tsv_fields_opening_with_a_quote_are_read_as_pandas_reads_them() {
    let data = format!("xnli_eu={}", fixtures().join("data/xnli_eu_quoted.test.tsv").display());
    let out = run_ok(&["--model", HUB_MODEL, "--tasks", "xnli_eu", "--data", &data]);
    let samples = samples_path(out.path(), "xnli_eu");
    assert_samples_match(&samples, &reference("xnli_eu_quoted"));
    let ours = read_jsonl(&samples);
    assert_eq!(ours[0]["doc"]["premise"], "Bai, esan zuen arrantzaleak.");
    assert_eq!(ours[3]["doc"]["premise"], "Etxe \"zaharra\" saldu zuten.");
}

/// transformers' tokenizer class, not tokenizer.json alone, decides which special tokens `encode` adds:
/// LlamaTokenizerFast rebuilds the post-processor from add_bos_token/add_eos_token; PreTrainedTokenizerFast keeps
/// tokenizer.json's and ignores add_bos_token.
#[test]
fn the_tokenizer_class_decides_which_special_tokens_are_added() {
    for (name, class, first, last) in [
        ("fast_class_ignores_add_bos_token", "PreTrainedTokenizerFast", [1], &[][..]),
        ("llama_class_rebuilds_a_bos_eos_template", "LlamaTokenizerFast", [1], &[]),
        ("llama_class_adds_bos_without_a_post_processor", "LlamaTokenizerFast", [1], &[]),
        ("llama_class_adds_eos_when_asked", "LlamaTokenizerFast", [1], &[2]),
    ] {
        let out = run_ok(&["--model", ibex_path_arg(&variant(name)), "--tasks", "xnli_en", "--num-fewshot", "1"]);
        assert_samples_match(&samples_path(out.path(), "xnli_en"), &reference(name));
        let record = &read_results(out.path())["ibex"]["model"]["special_tokens"];
        assert_eq!(record["class"], class, "{name}");
        assert_eq!(
            (&record["first"], &record["last"]),
            (&serde_json::json!(first), &serde_json::json!(last)),
            "{name}"
        );
    }
}

/// transformers' `generate` (which lm-eval calls without `eos_token_id`) stops on generation_config.json's
/// `eos_token_id`, a list here, not only on the tokenizer's end-of-text token.
#[test]
fn generation_stops_on_the_generation_configs_eos_ids() {
    let dir = tempfile::tempdir().unwrap();
    short_variant(dir.path(), "xquad_en", "xquad_en_short");
    let data = format!("xquad_en_short={}", fixtures().join("data/qa_en.validation.jsonl").display());
    let model = variant("generation_config_eos_ids");
    let out = run_ok(&[
        "--model",
        ibex_path_arg(&model),
        "--tasks",
        "xquad_en_short",
        "--tasks-dir",
        ibex_path_arg(dir.path()),
        "--data",
        &data,
    ]);
    let ours = read_samples(&samples_path(out.path(), "xquad_en_short"));
    let theirs = read_jsonl(&reference("generation_config_eos_ids"));
    for (o, r) in ours.iter().zip(&theirs) {
        assert_eq!(o["filtered_resps"], r["filtered_resps"], "doc {}", r["doc_id"]);
    }
    let stop_ids = &read_results(out.path())["ibex"]["model"]["generation"]["eos_token_ids"];
    let configured = &read_json(&model.join("generation_config.json"))["eos_token_id"];
    assert_eq!(stop_ids, configured);
}

/// A generation_config.json setting that changes greedy decoding (here `repetition_penalty`) is refused by name
/// before the model loads, rather than generating something lm-eval would not.
#[test]
fn a_generation_setting_that_changes_greedy_decoding_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(variant("generation_config_eos_ids").join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(dir.path().join("model.safetensors"), b"not read").unwrap();
    std::fs::write(dir.path().join("generation_config.json"), r#"{"eos_token_id": 2, "repetition_penalty": 1.3}"#)
        .unwrap();
    let data = format!("xquad_en={}", fixtures().join("data/qa_en.validation.jsonl").display());
    let output = ibex(&[
        "run",
        "--model",
        ibex_path_arg(dir.path()),
        "--tasks",
        "xquad_en",
        "--data",
        &data,
        "--max-gen-toks",
        "16",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("sets `repetition_penalty` to 1.3, which changes greedy decoding"), "{stderr}");
}

/// tokenizer_config.json's add_prefix_space makes LlamaTokenizerFast rebuild itself from tokenizer.model; without
/// that file transformers cannot load the tokenizer, and ibex says so instead of scoring with other tokens.
#[test]
fn add_prefix_space_without_a_sentencepiece_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(variant("llama_class_adds_eos_when_asked").join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"tokenizer_class": "LlamaTokenizer", "add_prefix_space": false, "bos_token": "<s>", "eos_token": "</s>"}"#,
    )
    .unwrap();
    let output = ibex(&["run", "--model", ibex_path_arg(dir.path()), "--tasks", "xnli_en", "--dry-run"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("sets add_prefix_space, so transformers rebuilds LlamaTokenizerFast from tokenizer.model"));
}

/// tokenizer_config.json's add_prefix_space makes LlamaTokenizerFast rebuild itself from tokenizer.model with a
/// Metaspace whose prepend scheme follows the setting (`never` for false: a continuation that starts without a space
/// gets no `▁`). catalan_bench's empty target delimiter shows it.
#[test]
fn add_prefix_space_rebuilds_the_tokenizer_from_sentencepiece() {
    let data = format!("xnli_ca={}", fixtures().join("data/xnli_ca.validation.jsonl").display());
    for name in
        ["add_prefix_space_false_rebuilds_from_sentencepiece", "add_prefix_space_true_rebuilds_from_sentencepiece"]
    {
        let out = run_ok(&["--model", ibex_path_arg(&variant(name)), "--tasks", "xnli_ca", "--data", &data]);
        assert_samples_match(&samples_path(out.path(), "xnli_ca"), &reference(name));
    }
}

/// A checkpoint whose tokenizer was made as BSC made Salamandra's (SentencePiece BPE with byte fallback →
/// LlamaTokenizer(legacy=False) → LlamaTokenizerFast, a Metaspace pre-tokenizer; bf16 weights) scores and
/// generates as lm-eval does: NLI at 0 and 3 shots, QA at 0 and 3 shots.
#[test]
fn salamandra_style_tokenizer_matches_lm_eval_on_nli_and_qa() {
    let model = variant("salamandra_style");
    let model = ibex_path_arg(&model);
    let data = |name: &str| fixtures().join("data").join(name).display().to_string();
    let nli = [
        format!("xnli_en={}", data("xnli_en.validation.jsonl")),
        format!("xnli_en:train={}", data("xnli_en.train.jsonl")),
    ];
    let dir = tempfile::tempdir().unwrap();
    short_variant(dir.path(), "xquad_en", "xquad_en_short");
    let qa = format!("xquad_en_short={}", data("qa_en.validation.jsonl"));
    for shots in ["0", "3"] {
        let out = run_ok(&[
            "--model",
            model,
            "--tasks",
            "xnli_en",
            "--data",
            &nli[0],
            "--data",
            &nli[1],
            "--num-fewshot",
            shots,
        ]);
        let name = format!("salamandra_style_xnli_en_{shots}shot");
        assert_samples_match(&samples_path(out.path(), "xnli_en"), &reference(&name));
        let out = run_ok(&[
            "--model",
            model,
            "--tasks",
            "xquad_en_short",
            "--tasks-dir",
            ibex_path_arg(dir.path()),
            "--data",
            &qa,
            "--num-fewshot",
            shots,
        ]);
        let ours = read_samples(&samples_path(out.path(), "xquad_en_short"));
        let theirs = read_jsonl(&reference(&format!("salamandra_style_xquad_en_{shots}shot")));
        assert_eq!(ours.len(), theirs.len());
        for (o, r) in ours.iter().zip(&theirs) {
            for key in ["arguments", "filtered_resps", "target"] {
                assert_eq!(o[key], r[key], "{shots}-shot doc {}: `{key}` differs", r["doc_id"]);
            }
            for metric in ["f1", "exact_match"] {
                assert_eq!(o[metric].as_f64(), r[metric].as_f64(), "{shots}-shot doc {}: `{metric}`", r["doc_id"]);
            }
        }
    }
}

/// lm-eval's `build_qa_turn` treats an empty answer as none: that few-shot example is its prompt alone, without the
/// target delimiter, the answer or the few-shot delimiter (a whitespace answer counts as an answer).
#[test]
fn an_empty_answer_leaves_a_fewshot_example_without_delimiters() {
    let dir = tempfile::tempdir().unwrap();
    short_variant(dir.path(), "xquad_en", "xquad_en_short");
    let data = format!("xquad_en_short={}", fixtures().join("data/qa_en_edges.validation.jsonl").display());
    let out = run_ok(&[
        "--model",
        HUB_MODEL,
        "--tasks",
        "xquad_en_short",
        "--tasks-dir",
        ibex_path_arg(dir.path()),
        "--data",
        &data,
        "--num-fewshot",
        "3",
    ]);
    let ours = read_samples(&samples_path(out.path(), "xquad_en_short"));
    let theirs = read_jsonl(&reference("qa_edges_3shot"));
    assert_eq!(ours.len(), theirs.len());
    let mut empty_shots = 0;
    for (o, r) in ours.iter().zip(&theirs) {
        for key in ["arguments", "filtered_resps", "target", "prompt_hash"] {
            assert_eq!(o[key], r[key], "doc {}: `{key}` differs", r["doc_id"]);
        }
        let context = r["arguments"][0][0].as_str().unwrap();
        empty_shots += usize::from(context.contains("What was the ship called?\n\nAnswer:Context:"));
    }
    assert!(empty_shots > 0, "no document drew the example with an empty answer");
}

/// transformers switches off tokenizer.json's truncation (and padding) on every encode; the Rust tokenizers crate
/// would apply it. The same checkpoint with a 4-token truncation in tokenizer.json scores as lm-eval's base run.
#[test]
fn truncation_saved_in_tokenizer_json_is_ignored_as_transformers_ignores_it() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer_config.json", "model.safetensors"] {
        std::fs::copy(crate::common::model_folder().join(file), dir.path().join(file)).unwrap();
    }
    let mut tokenizer = read_json(&crate::common::model_folder().join("tokenizer.json"));
    tokenizer["truncation"] =
        serde_json::json!({"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0});
    std::fs::write(dir.path().join("tokenizer.json"), tokenizer.to_string()).unwrap();
    let out = run_ok(&["--model", ibex_path_arg(dir.path()), "--tasks", "xnli_en", "--limit", "6"]);
    let ours = read_samples(&samples_path(out.path(), "xnli_en"));
    let theirs = read_jsonl(&fixtures().join("lm_eval/samples_xnli_en_0shot.jsonl"));
    for (o, r) in ours.iter().zip(&theirs) {
        for (a, b) in o["filtered_resps"].as_array().unwrap().iter().zip(r["filtered_resps"].as_array().unwrap()) {
            let expected = b[0].as_f64().unwrap();
            assert!(
                (a[0].as_f64().unwrap() - expected).abs() <= crate::common::tolerance(expected),
                "doc {}",
                r["doc_id"]
            );
        }
    }
}
