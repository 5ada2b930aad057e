//! The parts of lm-eval's results file that describe the run rather than its scores: the `config` block, each
//! task's `configs` entry, `task_hashes`, the tokenizer and chat fields (`EvaluationTracker` and `simple_evaluate` in
//! lm-eval 0.4.13), filled from the plan.

use crate::journal::RunDate;
use crate::{Plan, PlannedTask};
use ibex_core::prompt::Output;
use ibex_core::results::{
    sanitize_model_name, ModelRecord, Provenance, RunConfig, RunResults, LM_EVAL_VERSION, SCHEMA_VERSION,
};
use ibex_core::{Dtype, Request};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// SHA-256 of `text`, hex.
pub(crate) fn sha256_hex(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// Now, as lm-eval dates a run: the id its files are named with (`datetime.now().isoformat()` with `:` as `-`) and
/// the Unix time.
pub(crate) fn now() -> RunDate {
    let now = chrono::Local::now();
    let unix = now.timestamp() as f64 + f64::from(now.timestamp_subsec_micros()) / 1e6;
    RunDate { id: now.format("%Y-%m-%dT%H-%M-%S%.6f").to_string(), unix }
}

/// A results file with everything but scores filled in.
pub(crate) fn empty_results(plan: &Plan, record: ModelRecord, date: f64) -> RunResults {
    let torch_dtype = match plan.dtype {
        Dtype::Bf16 => "torch.bfloat16",
        Dtype::F16 => "torch.float16",
        Dtype::F32 => "torch.float32",
    };
    let config = RunConfig {
        model: "ibex-candle".into(),
        model_args: [
            ("pretrained", Some(plan.model.as_str())),
            ("dtype", Some(torch_dtype.trim_start_matches("torch."))),
            ("revision", plan.revision.as_deref()),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key.to_owned(), Value::from(value?))))
        // lm-eval's model argument `max_gen_toks` (the budget of generations whose task sets none), when not its default.
        .chain(
            (plan.max_gen_toks != ibex_core::DEFAULT_MAX_GEN_TOKS)
                .then(|| ("max_gen_toks".to_owned(), Value::from(plan.max_gen_toks))),
        )
        .collect(),
        model_num_parameters: record.parameters,
        model_dtype: torch_dtype.into(),
        model_revision: plan.revision.clone().unwrap_or_else(|| "main".into()),
        model_sha: record.revision.clone().unwrap_or_default(),
        batch_size: record.batch_size.clone(),
        batch_sizes: Vec::new(),
        device: record.device.clone(),
        use_cache: None,
        limit: record.limit,
        // lm-eval's default, which ibex's bootstrap standard errors (mcc, f1) use.
        bootstrap_iters: 100_000,
        gen_kwargs: Map::new(),
        fewshot_seed: record.fewshot_seed,
    };
    let chat = plan.chat_template.as_ref();
    RunResults {
        results: BTreeMap::new(),
        groups: BTreeMap::new(),
        group_subtasks: BTreeMap::new(),
        configs: BTreeMap::new(),
        versions: BTreeMap::new(),
        n_shot: BTreeMap::new(),
        higher_is_better: BTreeMap::new(),
        n_samples: BTreeMap::new(),
        config,
        date,
        pretty_env_info: format!(
            "ibex {} (Candle backend, mirroring lm-eval {LM_EVAL_VERSION}) on {} {}, device {}",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            record.device
        ),
        upper_git_hash: None,
        tokenizer_pad_token: plan.tokenizer.pad.clone(),
        tokenizer_eos_token: plan.tokenizer.eos.clone(),
        tokenizer_bos_token: plan.tokenizer.bos.clone(),
        eot_token_id: plan.tokenizer.eot_token_id,
        max_length: plan.tokenizer.max_length,
        task_hashes: BTreeMap::new(),
        model_source: "ibex".into(),
        model_name: plan.model.clone(),
        model_name_sanitized: sanitize_model_name(&plan.model),
        system_instruction: plan.prompt.system_instruction.clone(),
        system_instruction_sha: plan.prompt.system_instruction.as_deref().filter(|s| !s.is_empty()).map(sha256_hex),
        fewshot_as_multiturn: plan.prompt.chat.as_ref().map(|c| c.fewshot_as_multiturn),
        chat_template: chat.map(|t| t.source().to_owned()),
        chat_template_sha: chat.map(|t| t.sha256()),
        total_evaluation_time_seconds: "0".into(),
        ibex: Provenance {
            schema_version: SCHEMA_VERSION,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            lm_eval_version: LM_EVAL_VERSION.to_owned(),
            model: record,
            tasks: BTreeMap::new(),
            seconds: 0.0,
            complete: false,
        },
    }
}

/// A task's `configs` entry: the lm-eval `TaskConfig` keys an ibex task has a value for.
pub(crate) fn task_config(task: &PlannedTask, num_fewshot: usize) -> Value {
    let header = task.entry.task.header();
    let spec = &header.data;
    let mut config = Map::new();
    config.insert("task".into(), Value::from(header.name.as_str()));
    config.insert("dataset_path".into(), Value::from(spec.dataset.as_str()));
    let mut data_files = Map::new();
    data_files.insert(task.eval.split.clone(), task.eval.to_value());
    if let Some(fewshot) = &task.fewshot {
        data_files.insert(fewshot.split.clone(), fewshot.to_value());
    }
    config.insert("dataset_kwargs".into(), json!({ "data_files": data_files }));
    for (key, split) in [
        ("training_split", &spec.training_split),
        ("validation_split", &spec.validation_split),
        ("test_split", &spec.test_split),
    ] {
        if let Some(split) = split {
            config.insert(key.into(), Value::from(split.as_str()));
        }
    }
    config.insert("unsafe_code".into(), Value::from(false));
    config.insert("description".into(), Value::from(""));
    config.insert("target_delimiter".into(), Value::from(header.target_delimiter.as_str()));
    config.insert("fewshot_delimiter".into(), Value::from(header.fewshot_delimiter.as_str()));
    config.insert(
        "fewshot_config".into(),
        json!({
            "sampler": spec.fewshot_sampler,
            "split": spec.fewshot_split,
            "fewshot_delimiter": header.shots.fewshot_delimiter,
            "target_delimiter": header.shots.target_delimiter,
        }),
    );
    config.insert("num_fewshot".into(), Value::from(num_fewshot));
    let metric_list: Vec<Value> = task
        .entry
        .task
        .metrics()
        .iter()
        .map(|m| json!({"metric": m.name, "aggregation": m.aggregation_name(), "higher_is_better": m.higher_is_better}))
        .collect();
    config.insert("metric_list".into(), Value::from(metric_list));
    let output = task.docs.first().map(|doc| task.entry.task.output(doc));
    match output {
        Some(Output::GenerateUntil { .. }) => {
            config.insert("output_type".into(), Value::from("generate_until"));
            let kwargs = task.requests.iter().flatten().find_map(|request| match request {
                Request::Generate(r) => Some(crate::samples::generation_kwargs(r)),
                Request::Loglikelihood(_) => None,
            });
            config.insert("generation_kwargs".into(), kwargs.unwrap_or_else(|| json!({})));
        }
        Some(Output::Loglikelihood(_)) => {
            config.insert("output_type".into(), Value::from("loglikelihood"));
        }
        _ => {
            config.insert("output_type".into(), Value::from("multiple_choice"));
        }
    }
    config.insert("repeats".into(), Value::from(1));
    config.insert("should_decontaminate".into(), Value::from(false));
    config.insert("metadata".into(), json!({ "task_file": task.entry.source, "benchmark": task.entry.benchmark }));
    Value::Object(config)
}
