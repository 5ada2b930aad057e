//! Instruct models: prompts built through the tokenizer's chat template exactly as lm-eval 0.4.13's
//! `--apply_chat_template`, `--system_instruction` and `--fewshot_as_multiturn` build them, on an instruct variant
//! of the fixture model (ChatML tokens, a template that writes BOS itself and a default system turn), compared per
//! sample with lm-eval's own output (tests/fixtures/make_fixtures.py `chat`).

use crate::common::{
    assert_samples_match, fixtures, ibex, ibex_path_arg, read_json, read_jsonl, read_results, read_samples, run_ok,
    samples_path, short_variant,
};

const SYSTEM: &str = "Answer with the words of the text.";

/// (reference name, shots, ibex flags after `--apply-chat-template`).
const CASES: [(&str, &str, &[&str]); 5] = [
    ("chat_0shot", "0", &[]),
    ("chat_system_0shot", "0", &["--system-instruction", SYSTEM]),
    ("chat_multiturn_3shot", "3", &[]),
    ("chat_system_multiturn_3shot", "3", &["--system-instruction", SYSTEM, "--fewshot-as-multiturn", "true"]),
    ("chat_system_singleturn_3shot", "3", &["--system-instruction", SYSTEM, "--fewshot-as-multiturn", "false"]),
];

fn instruct() -> std::path::PathBuf {
    fixtures().join("variants/instruct_chatml")
}

fn reference(task: &str, case: &str) -> std::path::PathBuf {
    fixtures().join(format!("lm_eval/chat/samples_{task}_{case}.jsonl"))
}

#[test]
fn chat_template_multiple_choice_matches_lm_eval() {
    let model = instruct();
    for (case, shots, flags) in CASES {
        let mut args = vec!["--model", ibex_path_arg(&model), "--tasks", "xnli_en", "--num-fewshot", shots];
        args.push("--apply-chat-template");
        args.extend_from_slice(flags);
        let out = run_ok(&args);
        let delta = assert_samples_match(&samples_path(out.path(), "xnli_en"), &reference("xnli_en", case));
        assert!(delta <= 1e-3, "{case}: {delta}");
        let record = &read_results(out.path())["ibex"]["model"];
        assert_eq!(record["chat_template_name"], "default", "{case}");
        assert_eq!(record["fewshot_as_multiturn"], !flags.contains(&"false"), "{case}");
    }
}

#[test]
fn chat_template_generations_match_lm_eval() {
    let dir = tempfile::tempdir().unwrap();
    short_variant(dir.path(), "xquad_en", "xquad_en_short");
    let data = format!("xquad_en_short={}", fixtures().join("data/qa_en.validation.jsonl").display());
    let model = instruct();
    for (case, shots, flags) in CASES {
        let mut args = vec!["--model", ibex_path_arg(&model), "--tasks", "xquad_en_short"];
        args.extend_from_slice(&["--tasks-dir", ibex_path_arg(dir.path()), "--data", &data, "--num-fewshot", shots]);
        args.push("--apply-chat-template");
        args.extend_from_slice(flags);
        let out = run_ok(&args);
        let ours = read_samples(&samples_path(out.path(), "xquad_en_short"));
        let theirs = read_jsonl(&reference("xquad_en", case));
        assert_eq!(ours.len(), theirs.len());
        for (o, r) in ours.iter().zip(&theirs) {
            for key in ["arguments", "filtered_resps", "prompt_hash", "target"] {
                assert_eq!(o[key], r[key], "{case} doc {}: `{key}` differs", r["doc_id"]);
            }
            for metric in ["f1", "exact_match"] {
                assert_eq!(o[metric].as_f64(), r[metric].as_f64(), "{case} doc {}: {metric}", r["doc_id"]);
            }
        }
    }
}

/// The fixture template writes `<s>` itself and the tokenizer adds BOS too: lm-eval encodes a string that starts
/// with BOS without special tokens (`has_bos_prefix`), so the context holds one BOS, not two.
#[test]
fn a_chat_template_that_writes_bos_gets_no_second_bos() {
    let out = run_ok(&["--model", ibex_path_arg(&instruct()), "--tasks", "xnli_en", "--apply-chat-template"]);
    let ours = read_samples(&samples_path(out.path(), "xnli_en"));
    let context = ours[0]["arguments"][0][0].as_str().unwrap();
    assert!(context.starts_with("<s><|im_start|>system\n"), "{context}");
    assert_samples_match(&samples_path(out.path(), "xnli_en"), &reference("xnli_en", "chat_0shot"));
}

/// A template that refuses a system turn renders without it, as lm-eval's fallback does, and ibex says so.
#[test]
fn a_template_refusing_the_system_turn_drops_it_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(instruct()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let config_path = dir.path().join("tokenizer_config.json");
    let mut config = read_json(&config_path);
    config["chat_template"] = serde_json::json!(
        "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system turns') }}{% endif %}\
         <|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n"
    );
    std::fs::write(&config_path, config.to_string()).unwrap();
    let model = ibex_path_arg(dir.path());
    let args = ["run", "--model", model, "--tasks", "xnli_en", "--apply-chat-template", "--system-instruction", "Hi"];
    let output = ibex(&[&args[..], &["--dry-run"]].concat());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.contains("refuses a system turn"), "{stderr}");
}

#[test]
fn chat_flags_without_a_template_are_refused_in_one_line() {
    let base = crate::common::model_folder();
    let cases = [
        (vec!["--apply-chat-template"], "no chat template"),
        (vec!["--fewshot-as-multiturn", "true"], "needs a chat template"),
        (vec!["--apply-chat-template", "tool_use"], "drop the name"),
    ];
    for (flags, expected) in cases {
        let model = if flags.contains(&"tool_use") { instruct() } else { base.clone() };
        let mut args = vec!["run", "--model", ibex_path_arg(&model), "--tasks", "xnli_en", "--dry-run"];
        args.extend_from_slice(&flags);
        let output = ibex(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{flags:?}: {stderr}");
    }
}
