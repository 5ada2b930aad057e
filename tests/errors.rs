//! A user's mistake ends with one clear line on stderr and exit code 2, never a panic.

use crate::common::{fixtures, ibex, ibex_path_arg, model_folder, HUB_MODEL};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Runs `ibex ARGS`, expects failure, returns stderr.
fn fails(args: &[&str]) -> String {
    let output = ibex(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "ibex {args:?} should fail with 2:\n{stderr}");
    assert!(!stderr.contains("panicked"), "ibex {args:?} panicked:\n{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line expected:\n{stderr}");
    stderr
}

fn data_file(lines: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".jsonl").tempfile().unwrap();
    file.write_all(lines.as_bytes()).unwrap();
    file
}

#[test]
fn unknown_task_suggests_the_closest_name() {
    let stderr = fails(&["run", "--model", HUB_MODEL, "--tasks", "xnli_enn"]);
    assert!(stderr.contains("unknown task `xnli_enn`; did you mean `xnli_en`?"), "{stderr}");
}

#[test]
fn missing_model_folder_is_named() {
    let stderr = fails(&["run", "--model", "./no/such/checkpoint", "--tasks", "xnli_en"]);
    assert!(stderr.contains("no model folder at ./no/such/checkpoint"), "{stderr}");
}

#[test]
fn model_not_in_the_offline_cache_says_how_to_get_it() {
    let stderr = fails(&["run", "--model", "BSC-LT/salamandra-2b", "--tasks", "xnli_en"]);
    assert!(stderr.contains("HF_HUB_OFFLINE=1 forbids downloading"), "{stderr}");
}

#[test]
fn malformed_config_and_missing_weights_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["tokenizer.json", "tokenizer_config.json", "model.safetensors"] {
        std::fs::copy(model_folder().join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(dir.path().join("config.json"), "{\"hidden_size\": 64,").unwrap();
    let stderr = fails(&["run", "--model", ibex_path_arg(dir.path()), "--tasks", "xnli_en"]);
    assert!(stderr.contains("config.json") && stderr.contains("EOF while parsing"), "{stderr}");

    std::fs::copy(model_folder().join("config.json"), dir.path().join("config.json")).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"not safetensors").unwrap();
    let stderr = fails(&["run", "--model", ibex_path_arg(dir.path()), "--tasks", "xnli_en"]);
    assert!(stderr.contains("cannot load weights from"), "{stderr}");

    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let stderr = fails(&["run", "--model", ibex_path_arg(dir.path()), "--tasks", "xnli_en"]);
    assert!(stderr.contains("model.safetensors or model.safetensors.index.json not found"), "{stderr}");
}

#[test]
fn data_row_missing_a_field_names_file_row_and_field() {
    let data =
        data_file("{\"premise\": \"A.\", \"hypothesis\": \"B.\", \"label\": 0}\n{\"premise\": \"A.\", \"label\": 1}\n");
    let arg = format!("xnli_en={}", data.path().display());
    let stderr = fails(&["run", "--model", HUB_MODEL, "--tasks", "xnli_en", "--data", &arg]);
    assert!(stderr.contains(&data.path().display().to_string()), "{stderr}");
    assert!(stderr.contains("row 1, field `hypothesis`: missing (`doc_to_choice` reads it)"), "{stderr}");
}

#[test]
fn label_outside_the_choices_is_rejected() {
    let data = data_file("{\"premise\": \"A.\", \"hypothesis\": \"B.\", \"label\": 5}\n");
    let arg = format!("xnli_en={}", data.path().display());
    let stderr = fails(&["run", "--model", HUB_MODEL, "--tasks", "xnli_en", "--data", &arg]);
    assert!(stderr.contains("row 0, field `doc_to_target`: index 5 is outside the 3 choices"), "{stderr}");
}

#[test]
fn missing_data_path_is_named() {
    let stderr = fails(&["run", "--model", HUB_MODEL, "--tasks", "xnli_en", "--data", "xnli_en=/no/such/file.jsonl"]);
    assert!(stderr.contains("--data file /no/such/file.jsonl does not exist"), "{stderr}");
}

#[test]
fn cuda_on_a_cpu_build_says_how_to_rebuild() {
    if cfg!(feature = "cuda") {
        return;
    }
    let stderr = fails(&["run", "--model", HUB_MODEL, "--tasks", "xnli_en", "--device", "cuda"]);
    assert!(stderr.contains("built without CUDA"), "{stderr}");
}

#[test]
fn f16_on_the_cpu_is_refused() {
    let stderr = fails(&["run", "--model", HUB_MODEL, "--tasks", "xnli_en", "--dtype", "f16"]);
    assert!(stderr.contains("f16 is not supported on the CPU"), "{stderr}");
}

#[test]
fn tasks_lists_the_shipped_task() {
    let output = ibex(&["tasks"]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("xnli_en") && stdout.contains("facebook/xnli") && stdout.contains("tasks/xnli/xnli_en.yaml")
    );
    assert!(fixtures().is_dir());
}

#[test]
fn limit_zero_is_refused_rather_than_reporting_nan() {
    let stderr = fails(&["run", "--model", HUB_MODEL, "--tasks", "xnli_en", "--limit", "0"]);
    assert!(
        stderr.contains("task xnli_en has no documents to evaluate") && stderr.contains("with --limit 0"),
        "{stderr}"
    );
}

#[test]
fn data_for_a_split_the_task_never_reads_is_refused() {
    let stderr = fails(&["run", "--model", HUB_MODEL, "--tasks", "xnli_gl", "--data", "xnli_gl:train=/tmp/x.jsonl"]);
    assert!(stderr.contains("names split `train` of `xnli_gl`, which it does not read; it reads test"), "{stderr}");
}

#[test]
fn a_generation_budget_larger_than_the_window_is_refused() {
    let data = format!("xquad_en={}", crate::common::fixtures().join("data/qa_en.validation.jsonl").display());
    let stderr = fails(&["run", "--model", HUB_MODEL, "--tasks", "xquad_en", "--data", &data]);
    assert!(
        stderr.contains("max_gen_toks 256 leaves no room for a prompt in the model's context window of 96"),
        "{stderr}"
    );
}

/// A checkpoint folder whose weights are not safetensors: a run that reached the weights would fail on them.
fn folder_with_unreadable_weights() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(model_folder().join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(dir.path().join("model.safetensors"), b"weights that would fail to load").unwrap();
    dir
}

#[test]
fn a_mistake_in_the_last_of_three_tasks_is_reported_before_the_model_loads() {
    let model = folder_with_unreadable_weights();
    let out = tempfile::tempdir().unwrap();
    let output_dir = out.path().join("results");
    let data = |name: &str| fixtures().join("data").join(name).display().to_string();
    let xquad = format!("xquad_en={}", data("qa_en.validation.jsonl"));
    let common =
        ["run", "--model", ibex_path_arg(model.path()), "--output", ibex_path_arg(&output_dir), "--data", &xquad];
    // The third task's dataset is not in the offline hub cache.
    let mut args = common.to_vec();
    args.extend(["--tasks", "xnli_en,xquad_en,xnli_gl", "--max-gen-toks", "16"]);
    let stderr = fails(&args);
    assert!(stderr.contains("proxectonos/xnli_gl") && stderr.contains("HF_HUB_OFFLINE"), "{stderr}");
    // The third task's data has a bad row.
    let bad =
        data_file("{\"premise\": \"A.\", \"hypothesis\": \"B.\", \"label\": 0}\n{\"premise\": \"C.\", \"label\": 1}\n");
    let bad_arg = format!("xnli_eu={}", bad.path().display());
    let mut args = common.to_vec();
    args.extend(["--tasks", "xnli_en,xquad_en,xnli_eu", "--data", &bad_arg, "--max-gen-toks", "16"]);
    let stderr = fails(&args);
    assert!(stderr.contains("task xnli_eu") && stderr.contains("row 1, field `hypothesis`: missing"), "{stderr}");
    // The generation budget of the last task does not fit the checkpoint's window of 96.
    let mut args = common.to_vec();
    args.extend(["--tasks", "xnli_en,xquad_en", "--max-gen-toks", "96"]);
    let stderr = fails(&args);
    assert!(stderr.contains("task xquad_en, document 0: max_gen_toks 96 leaves no room"), "{stderr}");
    // None of these runs read the weights, nor wrote anything.
    assert!(!stderr.contains("cannot load weights"));
    assert!(!output_dir.exists());
    // With every task's data in order, the same run does reach the weights.
    let mut args = common.to_vec();
    args.extend(["--tasks", "xnli_en,xquad_en", "--max-gen-toks", "16"]);
    assert!(fails(&args).contains("cannot load weights from"));
}

#[test]
fn dry_run_prints_the_plan_and_loads_nothing() {
    let model = folder_with_unreadable_weights();
    let out = tempfile::tempdir().unwrap();
    let output_dir = out.path().join("results");
    let output = ibex(&[
        "run",
        "--model",
        ibex_path_arg(model.path()),
        "--tasks",
        "xnli_en",
        "--num-fewshot",
        "3",
        "--output",
        ibex_path_arg(&output_dir),
        "--dry-run",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let row = stdout.lines().find(|l| l.contains("xnli_en") && l.contains("validation")).expect("a row for xnli_en");
    assert!(row.contains("facebook/xnli@") && row.contains(" 24 ") && row.contains(" 72 "), "{stdout}");
    assert!(stdout.contains("few-shot train") && stdout.contains("1 task(s), 24 documents, 72 requests"), "{stdout}");
    assert!(stdout.contains("1 file(s), 1 KiB") && stdout.contains("3 (seed 1234; a task file"), "{stdout}");
    assert!(!output_dir.exists());
}

/// A hub cache in `home` holding `files` as model `repo`'s snapshot at `commit` (beside nothing else: data comes
/// through --data).
fn hub_cache(home: &Path, repo: &str, commit: &str, files: impl IntoIterator<Item = PathBuf>) {
    let repo = home.join("hub").join(format!("models--{}", repo.replace('/', "--")));
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    for file in files {
        std::fs::copy(&file, snapshot.join(file.file_name().unwrap())).unwrap();
    }
}

/// `ibex run ARGS --dry-run` on xnli_en from the fixture data, offline against the hub cache in `home`; its stdout.
fn dry_run_in(home: &Path, args: &[&str]) -> String {
    let data = format!("xnli_en={}", fixtures().join("data/xnli_en.validation.jsonl").display());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ibex"))
        .args(["run", "--tasks", "xnli_en", "--data", &data, "--dry-run"])
        .args(args)
        .env("HF_HOME", home)
        .env_remove("HF_HUB_CACHE")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A setting's value in a dry run's settings table.
fn setting(stdout: &str, name: &str) -> String {
    let line = stdout.lines().find(|l| l.contains(&format!(" {name} "))).unwrap_or_else(|| panic!("{stdout}"));
    line.split('┆').nth(1).unwrap().trim_end_matches('│').trim().to_owned()
}

/// A hub id with a shipped recipe (configs/models) gets the recipe's dtype and BOS era unless a flag says otherwise.
#[test]
fn a_model_recipe_fills_the_settings_the_flags_leave_open() {
    let home = tempfile::tempdir().unwrap();
    let files = ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"];
    let commit = "0123456789abcdef0123456789abcdef01234567";
    hub_cache(home.path(), "BSC-LT/salamandra-2b", commit, files.map(|f| model_folder().join(f)));
    let dry_run = |extra: &[&str]| dry_run_in(home.path(), &[&["--model", "BSC-LT/salamandra-2b"], extra].concat());
    let stdout = dry_run(&[]);
    assert_eq!(setting(&stdout, "dtype"), "bf16 (from configs/models/salamandra-2b.toml)");
    assert_eq!(setting(&stdout, "add_bos_token"), "false (from configs/models/salamandra-2b.toml)");
    let stdout = dry_run(&["--dtype", "f32", "--add-bos-token", "auto"]);
    assert_eq!(setting(&stdout, "dtype"), "f32");
    assert_eq!(setting(&stdout, "add_bos_token"), "auto");
    assert_eq!(setting(&stdout, "chat template"), "none (plain-text prompts)");
}

#[test]
fn an_instruct_models_recipe_applies_its_chat_template() {
    let home = tempfile::tempdir().unwrap();
    let instruct = std::fs::read_dir(fixtures().join("variants/instruct_chatml")).unwrap().map(|e| e.unwrap().path());
    hub_cache(home.path(), "BSC-LT/salamandra-2b-instruct", "89abcdef0123456789abcdef0123456789abcdef", instruct);
    let run = |extra: &[&str]| {
        let args = [&["--model", "BSC-LT/salamandra-2b-instruct", "--dtype", "f32"], extra].concat();
        setting(&dry_run_in(home.path(), &args), "chat template")
    };
    let applied = run(&[]);
    assert!(applied.starts_with("default (sha256 "), "{applied}");
    assert!(
        applied.ends_with("few-shot examples as turns (from configs/models/salamandra-2b-instruct.toml)"),
        "{applied}"
    );
    assert!(run(&["--fewshot-as-multiturn", "false"]).contains("as one user turn"));
    assert_eq!(run(&["--no-chat-template"]), "none (plain-text prompts)");
}

#[test]
fn data_given_twice_a_folder_as_data_a_file_as_output_and_a_zero_budget_are_refused() {
    let data = format!("xnli_en={}", fixtures().join("data/xnli_en.validation.jsonl").display());
    let other = format!("xnli_en:validation={}", fixtures().join("data/xnli_es.validation.jsonl").display());
    let stderr = fails(&["run", "--model", HUB_MODEL, "--tasks", "xnli_en", "--data", &data, "--data", &other]);
    assert!(stderr.contains("gives split `validation` of `xnli_en` twice"), "{stderr}");
    let folder = format!("xnli_en={}", fixtures().join("data").display());
    let stderr = fails(&["run", "--model", HUB_MODEL, "--tasks", "xnli_en", "--data", &folder]);
    assert!(stderr.contains("is a folder; name a data file"), "{stderr}");
    let file = data_file("{}\n");
    let output = ibex_path_arg(file.path());
    let stderr = fails(&["run", "--model", HUB_MODEL, "--tasks", "xnli_en", "--output", output, "--dry-run"]);
    assert!(stderr.contains("is a file; name a folder"), "{stderr}");
    // clap's own message, with its usage hint.
    let output = ibex(&["run", "--model", HUB_MODEL, "--tasks", "xquad_en", "--max-gen-toks", "0"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("invalid value '0' for '--max-gen-toks"), "{stderr}");
}

#[test]
fn dry_run_refuses_a_device_this_build_cannot_open() {
    if cfg!(feature = "cuda") {
        return;
    }
    let stderr = fails(&["run", "--model", HUB_MODEL, "--tasks", "xnli_en", "--device", "cuda:1", "--dry-run"]);
    assert!(stderr.contains("built without CUDA"), "{stderr}");
}

/// `ibex tasks | head` closes the pipe before ibex has written: ibex ends quietly, as Unix tools do, instead of
/// panicking with a backtrace.
#[test]
fn listing_into_a_closed_pipe_ends_quietly() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ibex"))
        .arg("tasks")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
