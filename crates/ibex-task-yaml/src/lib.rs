//! lm-eval's task YAML (0.4.x) as ibex's tasks: a file and its `include`s read as lm-eval's `load_yaml_config`
//! merges them, then the `multiple_choice` tasks and the groups they define built as lm-eval's `ConfigurableTask`
//! and `ConfigurableGroup` build them. Prompts are Jinja templates rendered by minijinja in lm-eval's environment;
//! ibex runs no Python, so a `!function` hook must name a Rust function ibex has ([`functions`]; other tasks are
//! refused with the function's name).

mod config;
pub mod functions;
mod literal;
mod task;

pub use config::Value;
pub use literal::literal_eval;
pub use task::YamlTask;

use ibex_core::metrics::Metric;
use ibex_core::{DataSpec, FewshotSampler, Task, TaskError, TaskHeader, DEFAULT_FEWSHOT_DELIMITER};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use task::{environment, Spec, TEMPLATES};

/// The `datasets` builders that read local files (`dataset_path: json` with `dataset_kwargs.data_files`).
pub const LOCAL_BUILDERS: [&str; 3] = ["json", "csv", "parquet"];

/// What a task YAML file defines.
pub enum Loaded {
    /// A task, and every file it was read from (the file first, then its includes).
    Task(Arc<dyn Task>, Vec<std::path::PathBuf>),
    /// A group of tasks (`group:` with a `task:` list), aggregated by size as its `aggregate_metric_list` asks.
    Group {
        /// The group's name.
        name: String,
        /// Its tasks, by name.
        tasks: Vec<String>,
        /// The metrics its `aggregate_metric_list` names (each a size-weighted mean).
        metrics: Vec<String>,
    },
    /// A task ibex cannot run yet (an output type, a hook or a metric it lacks), with the reason: selecting it is an
    /// error that says why, while the folder's other tasks load.
    Unsupported {
        /// The task's name.
        name: String,
        /// Why it cannot run.
        reason: String,
    },
    /// Neither: a file other files include.
    Fragment,
}

/// Reads the task YAML file `path` (and what it includes). Errors name the file and what to do.
pub fn load(path: &Path) -> Result<Loaded, TaskError> {
    let merged = config::load(path).map_err(TaskError::spec)?;
    let (keys, files) = (merged.keys, merged.files);
    let text = |key: &str| keys.get(key).and_then(Value::as_str).map(str::to_owned);
    if let Some(group) = text("group") {
        let tasks = match keys.get("task") {
            Some(Value::Plain(serde_json::Value::Array(items))) => {
                match items.iter().map(|t| t.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>() {
                    Some(tasks) => tasks,
                    None => {
                        let reason = format!("group `{group}` defines tasks inline, which ibex does not read yet");
                        return Ok(Loaded::Unsupported { name: group, reason });
                    }
                }
            }
            _ => return Err(TaskError::spec(format!("group `{group}` lists no tasks under `task:`"))),
        };
        if tasks.is_empty() {
            return Ok(Loaded::Unsupported { name: group.clone(), reason: format!("group `{group}` lists no tasks") });
        }
        return Ok(match group_metrics(&keys) {
            Ok(metrics) => Loaded::Group { name: group, tasks, metrics },
            Err(reason) => Loaded::Unsupported { name: group.clone(), reason: format!("group `{group}`: {reason}") },
        });
    }
    let Some(name) = text("task") else { return Ok(Loaded::Fragment) };
    match build(&name, &keys, path) {
        Ok(task) => Ok(Loaded::Task(Arc::new(task), files)),
        Err(reason) => Ok(Loaded::Unsupported { name, reason: reason.to_string() }),
    }
}

/// The metrics a group's `aggregate_metric_list` aggregates: each a mean weighted by size (lm-eval 0.4.13's
/// default); a group without the list gets no score in lm-eval, and an unweighted mean is not computed yet.
fn group_metrics(keys: &BTreeMap<String, Value>) -> Result<Vec<String>, String> {
    let Some(Value::Plain(serde_json::Value::Array(entries))) = keys.get("aggregate_metric_list") else {
        return Err("no aggregate_metric_list, so lm-eval reports no score for it; run its tasks by name".into());
    };
    entries
        .iter()
        .map(|entry| {
            let metric = entry.get("metric").and_then(serde_json::Value::as_str).ok_or("an entry names no metric")?;
            if entry.get("aggregation").and_then(serde_json::Value::as_str).is_some_and(|a| a != "mean") {
                return Err(format!("{metric}'s aggregation is not `mean`, the one ibex computes"));
            }
            if entry.get("weight_by_size") == Some(&serde_json::Value::Bool(false)) {
                return Err(format!("{metric} is not weighted by size, which ibex does not compute yet"));
            }
            Ok(metric.to_owned())
        })
        .collect()
}

fn build(name: &str, keys: &BTreeMap<String, Value>, path: &Path) -> Result<YamlTask, TaskError> {
    let plain = |key: &str| match keys.get(key) {
        Some(Value::Plain(serde_json::Value::Null)) | None => None,
        Some(value) => Some(value),
    };
    let text = |key: &str| plain(key).and_then(Value::as_str).map(str::to_owned);
    let output_type = text("output_type").unwrap_or_else(|| "generate_until".into());
    if output_type != "multiple_choice" {
        return Err(TaskError::spec(format!(
            "task {name}: output_type `{output_type}` is not run from YAML yet; ibex runs multiple_choice tasks"
        )));
    }
    // A hook's module sits beside the task file: `utils.f` in catalan_bench/ is `catalan_bench/utils.f`.
    let folder = path.parent().and_then(Path::file_name).map_or(String::new(), |f| f.to_string_lossy().into_owned());
    let process_docs = match plain("process_docs") {
        None => None,
        Some(Value::Function(function)) => {
            let qualified = format!("{folder}/{function}");
            match functions::process_docs(&qualified) {
                Some(hook) => Some(hook),
                None => {
                    let known: Vec<&str> = functions::PROCESS_DOCS.iter().map(|(n, _)| *n).collect();
                    return Err(TaskError::spec(format!(
                        "task {name}: `process_docs: !function {function}` ({qualified}) has no Rust implementation \
                         in ibex, which runs no Python; it has {}",
                        known.join(", ")
                    )));
                }
            }
        }
        Some(_) => return Err(TaskError::spec(format!("task {name}: `process_docs` names a function (!function)"))),
    };
    for key in ["process_results", "use_prompt", "gen_prefix", "filter_list"] {
        match plain(key) {
            Some(Value::Function(function)) => {
                return Err(TaskError::spec(format!(
                    "task {name}: `{key}: !function {function}` has no Rust implementation in ibex (it has none \
                     for `{key}` yet); ibex runs no Python"
                )))
            }
            Some(_) => return Err(TaskError::spec(format!("task {name}: `{key}` is not supported yet"))),
            None => {}
        }
    }
    if let Some(shots) = plain("num_fewshot").and_then(|v| match v {
        Value::Plain(serde_json::Value::Number(n)) => n.as_u64(),
        _ => None,
    }) {
        if shots > 0 {
            return Err(TaskError::spec(format!(
                "task {name}: num_fewshot {shots} in the task file; ibex takes shots from --num-fewshot: remove it \
                 and pass --num-fewshot {shots}"
            )));
        }
    }
    let mut sampler = FewshotSampler::Default;
    if let Some(Value::Plain(config)) = plain("fewshot_config") {
        if let Some(key) = config.as_object().and_then(|c| c.keys().find(|k| k.as_str() != "sampler")) {
            return Err(TaskError::spec(format!("task {name}: fewshot_config.{key} is not supported yet")));
        }
        match config.get("sampler").and_then(serde_json::Value::as_str) {
            None | Some("default") => {}
            Some("first_n") => sampler = FewshotSampler::FirstN,
            Some(other) => {
                return Err(TaskError::spec(format!("task {name}: fewshot sampler `{other}` is not supported yet")))
            }
        }
    }
    if plain("repeats").is_some_and(|v| *v != Value::Plain(serde_json::Value::from(1))) {
        return Err(TaskError::spec(format!("task {name}: repeats other than 1 are not supported")));
    }
    let spec = |key: &str| -> Result<Spec, TaskError> {
        match plain(key) {
            Some(value) => Spec::from_config(key, value),
            None => Err(TaskError::spec(format!("task {name}: a multiple_choice task needs `{key}`"))),
        }
    };
    let (doc_to_text, doc_to_target, doc_to_choice) =
        (spec("doc_to_text")?, spec("doc_to_target")?, spec("doc_to_choice")?);
    let mut env = environment();
    let description = text("description").filter(|d| !d.is_empty());
    for (key, template) in TEMPLATES
        .iter()
        .zip([&doc_to_text, &doc_to_target, &doc_to_choice])
        .map(|(k, s)| {
            (
                *k,
                match s {
                    Spec::Text(t) => Some(t.clone()),
                    _ => None,
                },
            )
        })
        .chain([("description", description.clone())])
    {
        if let Some(template) = template {
            env.add_template_owned(key, template).map_err(|e| {
                TaskError::spec(format!(
                    "task {name}: `{key}` is not a template ibex can render: {}",
                    task::describe(&e)
                ))
            })?;
        }
    }
    let mut metrics: Vec<Metric> = match plain("metric_list") {
        None => vec![Metric::ACC, Metric::ACC_NORM],
        Some(Value::Plain(serde_json::Value::Array(entries))) => entries
            .iter()
            .map(|entry| match entry.get("metric").and_then(serde_json::Value::as_str) {
                Some("acc") => Ok(Metric::ACC),
                Some("acc_norm") => Ok(Metric::ACC_NORM),
                Some("mcc") => Ok(Metric::MCC),
                Some("f1") => Ok(Metric::F1_CHOICE),
                Some("acc_bytes") => Ok(Metric::ACC_BYTES),
                Some(other) => Err(TaskError::spec(format!(
                    "task {name}: metric `{other}` is not computed for multiple_choice yet; ibex has acc, acc_norm, acc_bytes, mcc, f1"
                ))),
                None => match entry.get("metric").and_then(|m| m.get(config::FUNCTION_KEY)) {
                    Some(function) => Err(TaskError::spec(format!(
                        "task {name}: metric `!function {}` has no Rust implementation in ibex yet",
                        function.as_str().unwrap_or_default()
                    ))),
                    None => Err(TaskError::spec(format!("task {name}: a metric_list entry names no `metric`"))),
                },
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(TaskError::spec(format!("task {name}: metric_list is a list of {{metric: …}}"))),
    };
    // Sample logs list metrics in the order lm-eval's `process_results` builds its result for multiple_choice.
    metrics.sort_by_key(|m| ["acc", "f1", "mcc", "acc_norm", "acc_bytes"].iter().position(|n| *n == m.name));
    let header = TaskHeader {
        name: name.to_owned(),
        family: "yaml".into(),
        language: language(name),
        target_delimiter: text("target_delimiter").unwrap_or_else(|| " ".into()),
        fewshot_delimiter: text("fewshot_delimiter").unwrap_or_else(|| DEFAULT_FEWSHOT_DELIMITER.into()),
        data: DataSpec { fewshot_sampler: sampler, ..data_spec(name, keys)? },
    };
    if header.data.eval_split().is_none() {
        return Err(TaskError::spec(format!("task {name}: needs a test_split or a validation_split to evaluate")));
    }
    Ok(YamlTask {
        header,
        env,
        process_docs,
        doc_to_text,
        doc_to_target,
        doc_to_choice,
        has_description: description.is_some(),
        metrics,
    })
}

/// The language a task name ends with (`copa_ca` → `ca`), for listings; empty when the name does not say.
fn language(name: &str) -> String {
    match name.rsplit_once('_') {
        Some((_, code)) if (2..=3).contains(&code.len()) && code.chars().all(|c| c.is_ascii_lowercase()) => code.into(),
        _ => String::new(),
    }
}

/// Where the task's data lives: local files for `json`, `csv` and `parquet` with `dataset_kwargs.data_files`
/// (paths as the `datasets` library reads them, relative to the working folder; a single path or list is the `train`
/// split); for a hub dataset, its parquet files under the usual names (`<config>/<split>-00000-of-00001.parquet`,
/// `data/<split>-00000-of-00001.parquet`).
fn data_spec(name: &str, keys: &BTreeMap<String, Value>) -> Result<DataSpec, TaskError> {
    let text = |key: &str| keys.get(key).and_then(Value::as_str).map(str::to_owned);
    let dataset = text("dataset_path").ok_or_else(|| TaskError::spec(format!("task {name}: needs `dataset_path`")))?;
    let splits: Vec<String> =
        ["training_split", "validation_split", "test_split", "fewshot_split"].iter().filter_map(|k| text(k)).collect();
    let mut files = BTreeMap::new();
    if LOCAL_BUILDERS.contains(&dataset.as_str()) {
        let data_files = match keys.get("dataset_kwargs") {
            Some(Value::Plain(kwargs)) => kwargs.get("data_files").cloned(),
            _ => None,
        };
        let as_list = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => Ok(vec![s.clone()]),
            serde_json::Value::Array(items) => {
                items.iter().map(|i| i.as_str().map(str::to_owned).ok_or(())).collect::<Result<Vec<_>, _>>()
            }
            _ => Err(()),
        };
        let bad = || {
            TaskError::spec(format!(
                "task {name}: dataset_kwargs.data_files names files: a path, a list, or one per split"
            ))
        };
        match data_files {
            Some(serde_json::Value::Object(map)) => {
                for (split, paths) in &map {
                    files.insert(split.clone(), as_list(paths).map_err(|()| bad())?);
                }
            }
            Some(other) => {
                files.insert("train".to_owned(), as_list(&other).map_err(|()| bad())?);
            }
            None => {
                return Err(TaskError::spec(format!(
                    "task {name}: dataset_path {dataset} needs dataset_kwargs.data_files"
                )))
            }
        }
    } else {
        let config = text("dataset_name");
        for split in &splits {
            let mut candidates = Vec::new();
            if let Some(config) = &config {
                candidates.push(format!("{config}/{split}-00000-of-00001.parquet"));
            }
            candidates.push(format!("data/{split}-00000-of-00001.parquet"));
            candidates.push(format!("{split}-00000-of-00001.parquet"));
            files.insert(split.clone(), candidates);
        }
    }
    Ok(DataSpec {
        dataset,
        revision: None,
        training_split: text("training_split"),
        validation_split: text("validation_split"),
        test_split: text("test_split"),
        fewshot_split: text("fewshot_split"),
        fewshot_sampler: FewshotSampler::Default,
        files,
    })
}
