//! lm-eval's task YAML (0.4.x) as ibex's tasks: a file and its `include`s read as lm-eval's `load_yaml_config`
//! merges them, then the `multiple_choice` tasks and the groups they define built as lm-eval's `ConfigurableTask`
//! and `ConfigurableGroup` build them. Prompts are Jinja templates rendered by minijinja in lm-eval's environment;
//! ibex runs no Python, so a `!function` hook must name a Rust function ibex has ([`functions`]; other tasks are
//! refused with the function's name).

mod config;
mod filters;
pub mod functions;
mod literal;
pub mod squad;
mod task;

pub use config::{Read, Value};
pub use literal::literal_eval;
pub use task::YamlTask;

use ibex_core::metrics::Aggregation;
use ibex_core::metrics::Metric;
use ibex_core::{DataSpec, FewshotSampler, Task, TaskError, TaskHeader, DEFAULT_FEWSHOT_DELIMITER};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use task::{environment, ExactMatch, OutputType, Scoring, Spec, TEMPLATES};

/// Whose task definitions a run mirrors: lm-eval's own, or BSC's fork of it (`langtech-bsc/mlops-lm-evaluation-harness`,
/// branch `production`), whose NLI tasks keep lm-eval's names but filter and normalise documents differently since
/// 2025-04-08. A published number is reproducible only with the recipes that produced it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Recipes {
    /// lm-eval 0.4.13's task files and hooks.
    #[default]
    LmEval,
    /// BSC's: `tasks/bsc/` replaces the lm-eval tasks of its names, and hooks run BSC's bodies where they differ.
    Bsc,
}

impl Recipes {
    /// The name `--recipes` takes and results record: `lm-eval` or `bsc`.
    pub fn name(self) -> &'static str {
        match self {
            Recipes::LmEval => "lm-eval",
            Recipes::Bsc => "bsc",
        }
    }
}

impl std::str::FromStr for Recipes {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "lm-eval" => Ok(Recipes::LmEval),
            "bsc" => Ok(Recipes::Bsc),
            other => Err(format!("unknown recipe set `{other}`; use lm-eval (the default) or bsc (BSC's fork)")),
        }
    }
}

impl std::fmt::Display for Recipes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One entry of a group's `aggregate_metric_list` (lm-eval's `AggMetricConfig`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMetric {
    /// The metric aggregated (`acc`).
    pub metric: String,
    /// The filters it is aggregated under; `None` (no `filter_list`): every filter a member reports it under,
    /// sorted, as lm-eval's `_discover_filters_for_metric` finds them.
    pub filters: Option<Vec<String>>,
    /// `weight_by_size`: the members' mean weighted by their sizes, with the pooled standard error; else the plain
    /// mean of the members' values, with `sqrt(Σ se²) / k`.
    pub weight_by_size: bool,
}

/// The `datasets` builders that read local files (`dataset_path: json` with `dataset_kwargs.data_files`).
pub const LOCAL_BUILDERS: [&str; 3] = ["json", "csv", "parquet"];

/// What a task YAML file defines.
pub enum Loaded {
    /// A task, every file it was read from with its text (the file first, then its includes), and its tags (lm-eval's
    /// `tag`: names that select it among others, with no aggregate).
    Task(Arc<dyn Task>, Vec<(std::path::PathBuf, String)>, Vec<String>),
    /// A group of tasks (`group:` with a `task:` list), aggregated by size as its `aggregate_metric_list` asks.
    Group {
        /// The group's name.
        name: String,
        /// Its tasks, by name.
        tasks: Vec<String>,
        /// Its `aggregate_metric_list`; empty when it has none, and lm-eval reports no score for it.
        metrics: Vec<GroupMetric>,
        /// Its `metadata.version` as lm-eval writes a group's: as text (`"1.0"`); null when it gives none.
        version: serde_json::Value,
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

/// Reads the task YAML file `path` (and what it includes) with `read`: from disk, or from the files compiled into
/// ibex; its hooks run the bodies of `recipes`. Errors name the file and what to do.
pub fn load(path: &Path, read: Read, recipes: Recipes) -> Result<Loaded, TaskError> {
    let merged = config::load(path, read).map_err(TaskError::spec)?;
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
            Ok(metrics) => {
                let version = match metadata_version(&keys) {
                    serde_json::Value::Null => serde_json::Value::Null,
                    other => serde_json::Value::from(ibex_core::python::python_str(&other)),
                };
                Loaded::Group { name: group, tasks, metrics, version }
            }
            Err(reason) => Loaded::Unsupported { name: group.clone(), reason: format!("group `{group}`: {reason}") },
        });
    }
    let Some(name) = text("task") else { return Ok(Loaded::Fragment) };
    let tags = match keys.get("tag") {
        Some(Value::Plain(serde_json::Value::String(tag))) => vec![tag.clone()],
        Some(Value::Plain(serde_json::Value::Array(tags))) => {
            tags.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect()
        }
        _ => Vec::new(),
    };
    match build(&name, &keys, path, recipes) {
        Ok(task) => Ok(Loaded::Task(Arc::new(task), files, tags)),
        Err(reason) => Ok(Loaded::Unsupported { name, reason: reason.to_string() }),
    }
}

/// The Rust body of the `!function` hook `hook` given as `key` (`find` looks it up by its qualified name,
/// `<folder>/<module>.<name>`), its Python body checked ([`verify_body`]); an error names the hook and those ibex has.
fn resolve_hook<H>(
    name: &str,
    key: &str,
    hook: &Value,
    recipes: Recipes,
    find: impl Fn(&str) -> Option<H>,
    known: &[&str],
) -> Result<H, TaskError> {
    let Value::Function { name: function, folder, dir, at } = hook else {
        return Err(TaskError::spec(format!("task {name}: `{key}` names a function (!function)")));
    };
    let qualified = format!("{folder}/{function}");
    let Some(found) = find(&qualified) else {
        return Err(TaskError::spec(format!(
            "task {name}: `{key}: !function {function}` ({qualified}, at {at}) has no Rust implementation in ibex, \
             which runs no Python; it has {}",
            known.join(", ")
        )));
    };
    verify_body(name, function, dir, &qualified, recipes)?;
    Ok(found)
}

/// Refuses a hook whose Python module beside the task file (`dir`) defines it otherwise than the body ibex mirrors
/// in Rust for `recipes`: ibex runs no Python, so an edited `utils.py` must not be silently replaced. A module ibex
/// cannot read (the shipped tasks carry none) or that does not define the function (it imports it) is not checked.
fn verify_body(name: &str, function: &str, dir: &Path, qualified: &str, recipes: Recipes) -> Result<(), TaskError> {
    functions::check_module(dir, function, qualified, recipes == Recipes::Bsc)
        .map_err(|message| TaskError::spec(format!("task {name}: {message}")))
}

/// A file's `metadata.version`; null when absent.
fn metadata_version(keys: &BTreeMap<String, Value>) -> serde_json::Value {
    match keys.get("metadata") {
        Some(Value::Plain(metadata)) => metadata.get("version").cloned().unwrap_or_default(),
        _ => serde_json::Value::Null,
    }
}

/// A group's `aggregate_metric_list` as lm-eval 0.4.13's `GroupConfig` reads it (one mapping or a list of them;
/// `aggregation: mean` is the only one); empty without one: lm-eval then runs the group's tasks and reports no
/// score for the group.
fn group_metrics(keys: &BTreeMap<String, Value>) -> Result<Vec<GroupMetric>, String> {
    let entries = match keys.get("aggregate_metric_list") {
        None | Some(Value::Plain(serde_json::Value::Null)) => return Ok(Vec::new()),
        Some(Value::Plain(serde_json::Value::Array(entries))) => entries.clone(),
        Some(Value::Plain(one @ serde_json::Value::Object(_))) => vec![one.clone()],
        Some(_) => return Err("aggregate_metric_list is a list of {metric: …}".into()),
    };
    entries
        .iter()
        .map(|entry| {
            let metric = entry.get("metric").and_then(serde_json::Value::as_str).ok_or("an entry names no metric")?;
            if entry.get("aggregation").and_then(serde_json::Value::as_str).is_some_and(|a| a != "mean") {
                return Err(format!("{metric}'s aggregation is not `mean`, the one ibex computes"));
            }
            let weight_by_size = match entry.get("weight_by_size") {
                None | Some(serde_json::Value::Null) => true,
                Some(serde_json::Value::Bool(weight)) => *weight,
                Some(other) => return Err(format!("{metric}'s weight_by_size {other} is not true or false")),
            };
            let filters = match entry.get("filter_list") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(one)) => Some(vec![one.clone()]),
                Some(serde_json::Value::Array(many)) => Some(
                    many.iter()
                        .map(|f| f.as_str().map(str::to_owned))
                        .collect::<Option<_>>()
                        .ok_or_else(|| format!("{metric}'s filter_list names filters"))?,
                ),
                Some(other) => return Err(format!("{metric}'s filter_list {other} names no filter")),
            };
            Ok(GroupMetric { metric: metric.to_owned(), filters, weight_by_size })
        })
        .collect()
}

fn build(name: &str, keys: &BTreeMap<String, Value>, path: &Path, recipes: Recipes) -> Result<YamlTask, TaskError> {
    let plain = |key: &str| match keys.get(key) {
        Some(Value::Plain(serde_json::Value::Null)) | None => None,
        Some(value) => Some(value),
    };
    let text = |key: &str| plain(key).and_then(Value::as_str).map(str::to_owned);
    let output_type = text("output_type").unwrap_or_else(|| "generate_until".into());
    let generates = match output_type.as_str() {
        "multiple_choice" | "loglikelihood" => false,
        "generate_until" => true,
        other => {
            return Err(TaskError::spec(format!(
                "task {name}: output_type `{other}` is not run from YAML yet; ibex runs multiple_choice, \
                 loglikelihood and generate_until tasks"
            )))
        }
    };
    let choices = output_type == "multiple_choice";
    let folder = path.parent().and_then(Path::file_name).map_or(String::new(), |f| f.to_string_lossy().into_owned());
    // A hook's module sits beside the file that names it: `utils.f` in catalan_bench/ is `catalan_bench/utils.f`.
    let process_docs = match plain("process_docs") {
        None => None,
        Some(hook @ Value::Function { .. }) => {
            let known: Vec<&str> = functions::PROCESS_DOCS.iter().map(|(n, _)| *n).collect();
            let find = |qualified: &str| functions::process_docs(qualified, recipes == Recipes::Bsc);
            Some(resolve_hook(name, "process_docs", hook, recipes, find, &known)?)
        }
        Some(_) => return Err(TaskError::spec(format!("task {name}: `process_docs` names a function (!function)"))),
    };
    let process_results = match plain("process_results") {
        Some(hook @ Value::Function { .. }) if generates => {
            let known: Vec<&str> = functions::PROCESS_RESULTS.iter().map(|(n, _)| *n).collect();
            Some(resolve_hook(name, "process_results", hook, recipes, functions::process_results, &known)?)
        }
        _ => None,
    };
    let filters = match plain("filter_list") {
        None => vec![filters::FilterEnsemble::none()],
        Some(Value::Plain(list)) if generates => {
            filters::filter_list(list).map_err(|message| TaskError::spec(format!("task {name}: {message}")))?
        }
        Some(_) => {
            return Err(TaskError::spec(format!(
                "task {name}: filter_list on a {output_type} task is not run; ibex filters generations"
            )))
        }
    };
    let mut checked = vec!["use_prompt", "gen_prefix"];
    if process_results.is_none() {
        checked.push("process_results");
    }
    for key in checked {
        match plain(key) {
            Some(Value::Function { name: function, at, .. }) => {
                return Err(TaskError::spec(format!(
                    "task {name}: `{key}: !function {function}` (at {at}) has no Rust implementation in ibex (it has \
                     none for `{key}` yet); ibex runs no Python"
                )))
            }
            Some(_) => return Err(TaskError::spec(format!("task {name}: `{key}` is not supported yet"))),
            None => {}
        }
    }
    let num_fewshot = match plain("num_fewshot") {
        None => None,
        Some(Value::Plain(serde_json::Value::Number(n))) if n.as_u64().is_some() => n.as_u64().map(|n| n as usize),
        Some(other) => return Err(TaskError::spec(format!("task {name}: num_fewshot is {other:?}, not a count"))),
    };
    let fewshot = fewshot_config(name, plain("fewshot_config"))?;
    if plain("repeats").is_some_and(|v| *v != Value::Plain(serde_json::Value::from(1))) {
        return Err(TaskError::spec(format!("task {name}: repeats other than 1 are not supported")));
    }
    let spec = |key: &str| -> Result<Spec, TaskError> {
        match plain(key) {
            Some(value) => Spec::from_config(key, value),
            None => Err(TaskError::spec(format!("task {name}: needs `{key}`"))),
        }
    };
    let (doc_to_text, doc_to_target) = (spec("doc_to_text")?, spec("doc_to_target")?);
    let shot_spec = |key: &str| match fewshot.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => Spec::from_config(&format!("fewshot_config.{key}"), &Value::nested(value)).map(Some),
    };
    let shots =
        task::ShotSpecs {
            doc_to_text: shot_spec("doc_to_text")?,
            doc_to_target: shot_spec("doc_to_target")?,
            doc_to_choice: shot_spec("doc_to_choice")?,
            samples: match fewshot.get("samples") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::Array(items)) => {
                    Some(items.iter().map(|item| item.as_object().cloned()).collect::<Option<Vec<_>>>().ok_or_else(
                        || TaskError::spec(format!("task {name}: fewshot_config.samples lists mappings")),
                    )?)
                }
                Some(other) if other.get(config::FUNCTION_KEY).is_some() => {
                    return Err(TaskError::spec(format!(
                    "task {name}: `fewshot_config.samples: !function {}` (at {}) has no Rust implementation in ibex, \
                     which runs no Python; list the examples in the file",
                    other[config::FUNCTION_KEY].as_str().unwrap_or_default(),
                    other[config::AT_KEY].as_str().unwrap_or_default()
                )))
                }
                Some(_) => return Err(TaskError::spec(format!("task {name}: fewshot_config.samples lists mappings"))),
            },
        };
    let doc_to_choice = match plain("doc_to_choice") {
        Some(value) => Some(Spec::from_config("doc_to_choice", value)?),
        None if !choices => None,
        None => return Err(TaskError::spec(format!("task {name}: a multiple_choice task needs `doc_to_choice`"))),
    };
    let mut env = environment();
    let description = text("description").filter(|d| !d.is_empty());
    let specs = [
        Some(&doc_to_text),
        Some(&doc_to_target),
        doc_to_choice.as_ref(),
        None,
        shots.doc_to_text.as_ref(),
        shots.doc_to_target.as_ref(),
        shots.doc_to_choice.as_ref(),
    ];
    let templates = TEMPLATES.iter().zip(specs).map(|(key, spec)| match (*key, spec) {
        ("description", _) => (*key, description.clone()),
        (key, Some(Spec::Text(t))) => (key, Some(t.clone())),
        (key, _) => (key, None),
    });
    for (key, template) in templates {
        if let Some(template) = template {
            env.add_template_owned(key, template).map_err(|e| {
                TaskError::spec(format!(
                    "task {name}: `{key}` is not a template ibex can render: {}",
                    task::describe(&e)
                ))
            })?;
        }
    }
    let fewshot_delimiter = text("fewshot_delimiter").unwrap_or_else(|| DEFAULT_FEWSHOT_DELIMITER.into());
    let target_delimiter = text("target_delimiter").unwrap_or_else(|| " ".into());
    let shot_text = |key: &str, inherited: &str| -> Result<String, TaskError> {
        match fewshot.get(key) {
            None | Some(serde_json::Value::Null) => Ok(inherited.to_owned()),
            Some(serde_json::Value::String(text)) => Ok(text.clone()),
            Some(other) => Err(TaskError::spec(format!("task {name}: fewshot_config.{key} is {other}, not text"))),
        }
    };
    let shot_delimiters = ibex_core::ShotDelimiters {
        target_delimiter: shot_text("target_delimiter", &target_delimiter)?,
        fewshot_delimiter: shot_text("fewshot_delimiter", &fewshot_delimiter)?,
    };
    let (output_type, metrics) = if generates {
        generation(name, keys, &fewshot_delimiter, process_results, filters)?
    } else if choices {
        let known = [Metric::ACC, Metric::F1_CHOICE, Metric::MCC, Metric::ACC_NORM, Metric::ACC_BYTES];
        (
            OutputType::MultipleChoice,
            listed_metrics(name, keys, "multiple_choice", &known, &[Metric::ACC, Metric::ACC_NORM])?,
        )
    } else {
        let known = [Metric::PERPLEXITY, Metric::ACC];
        (OutputType::Loglikelihood, listed_metrics(name, keys, "loglikelihood", &known, &known)?)
    };
    let header = TaskHeader {
        name: name.to_owned(),
        language: language(name, &folder),
        target_delimiter,
        fewshot_delimiter,
        shots: shot_delimiters,
        data: fewshot_data(name, &fewshot, data_spec(name, keys)?)?,
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
        output_type,
        has_description: description.is_some(),
        metrics,
        version: metadata_version(keys),
        num_fewshot,
        shots,
    })
}

/// A task's `fewshot_config` (empty without one), its keys checked: lm-eval 0.4.13's `FewshotConfig` keys that ibex
/// reads are `sampler` (`default`, `first_n`), `split`, `samples`, `doc_to_text`, `doc_to_target`, `doc_to_choice`,
/// `target_delimiter` and `fewshot_delimiter`; any other that says something is refused.
fn fewshot_config(name: &str, config: Option<&Value>) -> Result<serde_json::Map<String, serde_json::Value>, TaskError> {
    const READ: [&str; 8] = [
        "sampler",
        "split",
        "samples",
        "doc_to_text",
        "doc_to_target",
        "doc_to_choice",
        "target_delimiter",
        "fewshot_delimiter",
    ];
    let config = match config {
        None => return Ok(serde_json::Map::new()),
        Some(Value::Plain(serde_json::Value::Object(config))) => config.clone(),
        Some(_) => return Err(TaskError::spec(format!("task {name}: fewshot_config is a mapping (sampler:, …)"))),
    };
    if let Some(key) = config.keys().find(|k| !READ.contains(&k.as_str())) {
        return Err(TaskError::spec(format!("task {name}: fewshot_config.{key} is not supported yet")));
    }
    // `FewshotConfig.from_dict` lets a given null replace what the task says: lm-eval fails on a null sampler or
    // delimiter, so ibex refuses them (a null split means none, a null template the task's).
    if let Some(key) = ["sampler", "target_delimiter", "fewshot_delimiter"]
        .iter()
        .find(|k| config.get(**k) == Some(&serde_json::Value::Null))
    {
        return Err(TaskError::spec(format!("task {name}: fewshot_config.{key} is null; give one or leave it out")));
    }
    Ok(config)
}

/// `spec` with what `fewshot_config` says of it: its sampler, and its `split` (which replaces the task's
/// `fewshot_split`, as `FewshotConfig.from_dict` lets it).
fn fewshot_data(
    name: &str,
    fewshot: &serde_json::Map<String, serde_json::Value>,
    mut spec: DataSpec,
) -> Result<DataSpec, TaskError> {
    spec.fewshot_sampler = match fewshot.get("sampler") {
        None => FewshotSampler::Default,
        Some(serde_json::Value::String(sampler)) if sampler == "default" => FewshotSampler::Default,
        Some(serde_json::Value::String(sampler)) if sampler == "first_n" => FewshotSampler::FirstN,
        Some(other) => {
            return Err(TaskError::spec(format!(
                "task {name}: fewshot sampler {other} is not supported yet (ibex has default and first_n)"
            )))
        }
    };
    match fewshot.get("split") {
        None => {}
        Some(serde_json::Value::Null) => spec.fewshot_split = None,
        Some(serde_json::Value::String(split)) => spec.fewshot_split = Some(split.clone()),
        Some(other) => return Err(TaskError::spec(format!("task {name}: fewshot_config.split is {other}, not text"))),
    }
    Ok(spec)
}

/// The metrics a `multiple_choice` (`acc`, `f1`, `mcc`, `acc_norm`, `acc_bytes`; `acc` and `acc_norm` without a
/// `metric_list`) or `loglikelihood` task (`perplexity`, `acc`; both without one) reports: those its `metric_list`
/// names, in the order lm-eval's `process_results` builds its result (the sample logs' order).
fn listed_metrics(
    name: &str,
    keys: &BTreeMap<String, Value>,
    output_type: &str,
    known: &[Metric],
    defaults: &[Metric],
) -> Result<Vec<Metric>, TaskError> {
    let mut metrics: Vec<Metric> = match keys.get("metric_list") {
        None | Some(Value::Plain(serde_json::Value::Null)) => defaults.to_vec(),
        Some(Value::Plain(serde_json::Value::Array(entries))) => entries
            .iter()
            .map(|entry| match entry.get("metric").and_then(serde_json::Value::as_str) {
                Some(metric) => match known.iter().find(|m| m.name == metric) {
                    Some(known) => aggregated(name, *known, entry),
                    None => Err(TaskError::spec(format!(
                        "task {name}: metric `{metric}` is not computed for {output_type} yet; ibex has {}",
                        known.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
                    ))),
                },
                None => match entry.get("metric").filter(|m| m.get(config::FUNCTION_KEY).is_some()) {
                    Some(hook) => Err(TaskError::spec(format!(
                        "task {name}: metric `!function {}` (at {}) has no Rust implementation in ibex yet",
                        hook[config::FUNCTION_KEY].as_str().unwrap_or_default(),
                        hook[config::AT_KEY].as_str().unwrap_or_default()
                    ))),
                    None => Err(TaskError::spec(format!("task {name}: a metric_list entry names no `metric`"))),
                },
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(TaskError::spec(format!("task {name}: metric_list is a list of {{metric: …}}"))),
    };
    metrics.sort_by_key(|m| known.iter().position(|k| k.name == m.name));
    Ok(metrics)
}

/// `metric` with the aggregation its `metric_list` entry names: its own (by name), or an `aggregation: !function`
/// hook ibex has in Rust ([`functions::AGGREGATIONS`]); any other is refused, since the score would differ.
fn aggregated(name: &str, mut metric: Metric, entry: &serde_json::Value) -> Result<Metric, TaskError> {
    use serde_json::Value as Json;
    match entry.get("aggregation") {
        None | Some(Json::Null) => Ok(metric),
        Some(Json::String(given)) if given == metric.aggregation_name() => Ok(metric),
        Some(hook @ Json::Object(_)) if hook.get(config::FUNCTION_KEY).is_some() => {
            let text = |key: &str| hook.get(key).and_then(Json::as_str).unwrap_or_default();
            let qualified = format!("{}/{}", text(config::FOLDER_KEY), text(config::FUNCTION_KEY));
            let dir = Path::new(text(config::DIR_KEY));
            verify_body(name, text(config::FUNCTION_KEY), dir, &qualified, Recipes::LmEval)?;
            metric.aggregation = functions::aggregation(&qualified).ok_or_else(|| {
                let known: Vec<&str> = functions::AGGREGATIONS.iter().map(|(n, _)| *n).collect();
                TaskError::spec(format!(
                    "task {name}: `{}`'s aggregation `!function {}` ({qualified}, at {}) has no Rust implementation \
                     in ibex; it has {}",
                    metric.name,
                    text(config::FUNCTION_KEY),
                    text(config::AT_KEY),
                    known.join(", ")
                ))
            })?;
            Ok(metric)
        }
        Some(other) => Err(TaskError::spec(format!(
            "task {name}: `{}`'s aggregation {other} is not computed; ibex aggregates it with {}",
            metric.name,
            metric.aggregation_name()
        ))),
    }
}

/// A `generate_until` task's settings (`generation_kwargs`, as `TaskConfig.__post_init__` completes them: `until`
/// defaults to the few-shot delimiter) and metrics: the `process_results` hook's, or `exact_match` with its options.
/// Sampling is refused: ibex decodes greedily, as every lm-eval task it mirrors does.
fn generation(
    name: &str,
    keys: &BTreeMap<String, Value>,
    fewshot_delimiter: &str,
    hook: Option<functions::ProcessResults>,
    filters: Vec<filters::FilterEnsemble>,
) -> Result<(OutputType, Vec<Metric>), TaskError> {
    use serde_json::Value as Json;
    let error = |message: String| TaskError::spec(format!("task {name}: {message}"));
    let (mut until, mut max_gen_toks) = (vec![fewshot_delimiter.to_owned()], None);
    let generation_kwargs = match keys.get("generation_kwargs") {
        // `default_gen_kwargs` (`lm_eval/defaults.py`) writes lm-eval's default budget into the task's settings.
        None | Some(Value::Plain(Json::Null)) => {
            max_gen_toks = Some(ibex_core::DEFAULT_MAX_GEN_TOKS);
            serde_json::json!({
                "temperature": 0.0,
                "do_sample": false,
                "max_gen_toks": ibex_core::DEFAULT_MAX_GEN_TOKS,
                "until": until,
            })
            .as_object()
            .cloned()
            .expect("an object")
        }
        Some(Value::Plain(Json::Object(kwargs))) => {
            for (key, value) in kwargs {
                match (key.as_str(), value) {
                    ("until", Json::String(one)) => until = vec![one.clone()],
                    ("until", Json::Array(many)) => {
                        until = many
                            .iter()
                            .map(|s| s.as_str().map(str::to_owned))
                            .collect::<Option<_>>()
                            .ok_or_else(|| error("generation_kwargs.until lists strings".into()))?;
                    }
                    ("max_gen_toks", Json::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => {
                        max_gen_toks = n.as_u64().map(|n| n as usize);
                    }
                    ("do_sample", Json::Bool(false)) => {}
                    ("temperature", Json::Number(t)) if t.as_f64() == Some(0.0) => {}
                    // Without sampling these change nothing.
                    ("top_p" | "top_k", _) if kwargs.get("do_sample") == Some(&Json::Bool(false)) => {}
                    ("num_beams", Json::Number(n)) if n.as_u64() == Some(1) => {}
                    (key, value) => {
                        return Err(error(format!(
                            "generation_kwargs.{key}: {value} is not run: ibex generates greedily (do_sample: false, \
                             temperature: 0.0), with until and max_gen_toks"
                        )))
                    }
                }
            }
            // `TaskConfig.__post_init__`: the stop strings default to the few-shot delimiter, a temperature is a float.
            let mut completed = kwargs.clone();
            if let Some(t) = completed.get("temperature").and_then(Json::as_f64) {
                completed.insert("temperature".into(), Json::from(t));
            }
            completed.entry("until").or_insert_with(|| Json::from(until.clone()));
            completed
        }
        Some(_) => return Err(error("generation_kwargs is a mapping (until:, max_gen_toks:, …)".into())),
    };
    let entries = match keys.get("metric_list") {
        None | Some(Value::Plain(Json::Null)) => Vec::new(),
        Some(Value::Plain(Json::Array(entries))) => entries.clone(),
        Some(_) => return Err(error("metric_list is a list of {metric: …}".into())),
    };
    let metric_name = |entry: &Json| -> Result<String, TaskError> {
        match entry.get("metric") {
            Some(Json::String(metric)) => Ok(metric.clone()),
            Some(other) => match other.get(config::FUNCTION_KEY) {
                Some(function) => Err(error(format!(
                    "metric `!function {}` (at {}) has no Rust implementation in ibex yet",
                    function.as_str().unwrap_or_default(),
                    other[config::AT_KEY].as_str().unwrap_or_default()
                ))),
                None => Err(error(format!("metric {other} is not a name"))),
            },
            None => Err(error("a metric_list entry names no `metric`".into())),
        }
    };
    let higher_is_better = |entry: &Json| entry.get("higher_is_better").and_then(Json::as_bool).unwrap_or(true);
    let mean = |entry: &Json, metric: &str| match entry.get("aggregation") {
        None | Some(Json::Null) => Ok(()),
        Some(Json::String(a)) if a == "mean" => Ok(()),
        Some(other) => Err(error(format!("{metric}'s aggregation {other} is not computed; ibex averages (`mean`)"))),
    };
    let (scoring, metrics) = match hook {
        Some(hook) => {
            // lm-eval aggregates what the hook returns; metric_list gives each its aggregation and direction.
            let mut metrics = Vec::new();
            for &metric in hook.metrics {
                let entry = entries.iter().find(|e| e.get("metric").and_then(Json::as_str) == Some(metric));
                if let Some(entry) = entry {
                    mean(entry, metric)?;
                }
                let better = entry.is_none_or(higher_is_better);
                metrics.push(Metric { name: metric, higher_is_better: better, aggregation: Aggregation::Mean });
            }
            for entry in &entries {
                let metric = metric_name(entry)?;
                if !hook.metrics.contains(&metric.as_str()) {
                    return Err(error(format!(
                        "metric `{metric}` is not one its process_results returns ({})",
                        hook.metrics.join(", ")
                    )));
                }
            }
            (Scoring::Hook(hook), metrics)
        }
        None => {
            let mut options = ExactMatch::default();
            let mut metric = Metric::EXACT_MATCH;
            for entry in &entries {
                let name = metric_name(entry)?;
                if name != "exact_match" {
                    return Err(error(format!(
                        "metric `{name}` is not computed for generate_until yet; ibex has exact_match (and the \
                         metrics of the process_results hooks it has)"
                    )));
                }
                mean(entry, &name)?;
                // lm-eval keeps one set of options per metric name: a later entry replaces an earlier one.
                options = ExactMatch::default();
                metric.higher_is_better = higher_is_better(entry);
                for (key, value) in entry.as_object().into_iter().flatten() {
                    let flag = || value.as_bool().ok_or_else(|| error(format!("exact_match's {key} is true or false")));
                    match key.as_str() {
                        "metric" | "aggregation" | "higher_is_better" => {}
                        "ignore_case" => options.ignore_case = flag()?,
                        "ignore_punctuation" => options.ignore_punctuation = flag()?,
                        "ignore_numbers" => options.ignore_numbers = flag()?,
                        "regexes_to_ignore" => {
                            let patterns: Vec<&str> = value
                                .as_array()
                                .and_then(|items| items.iter().map(Json::as_str).collect())
                                .ok_or_else(|| error("exact_match's regexes_to_ignore lists patterns".into()))?;
                            options.regexes_to_ignore = patterns
                                .iter()
                                .map(|p| {
                                    task::python_regex(p).map_err(|e| {
                                        error(format!(
                                            "exact_match's regexes_to_ignore: `{p}` is not a regex ibex reads: {e}"
                                        ))
                                    })
                                })
                                .collect::<Result<_, _>>()?;
                        }
                        other => return Err(error(format!("exact_match's option `{other}` is not supported"))),
                    }
                }
            }
            (Scoring::ExactMatch(options), vec![metric])
        }
    };
    Ok((OutputType::GenerateUntil { until, max_gen_toks, generation_kwargs, scoring, filters }, metrics))
}

/// The language of a task, for listings: its benchmark folder's (IberoBench's `catalan_bench` → `ca`), else the code
/// its name ends with (`xnli_de` → `de`); empty when neither says.
fn language(name: &str, folder: &str) -> String {
    let benchmark = [
        ("catalan_bench", "ca"),
        ("spanish_bench", "es"),
        ("galician_bench", "gl"),
        ("basque_bench", "eu"),
        ("portuguese_bench", "pt"),
        ("xnli_eu", "eu"),
    ];
    if let Some((_, code)) = benchmark.iter().find(|(f, _)| *f == folder) {
        return (*code).to_owned();
    }
    match name.rsplit_once('_') {
        Some((_, code)) if (2..=3).contains(&code.len()) && code.chars().all(|c| c.is_ascii_lowercase()) => code.into(),
        _ => String::new(),
    }
}

/// Where the task's data lives: local files for `json`, `csv` and `parquet` with `dataset_kwargs.data_files`
/// (paths as the `datasets` library reads them, relative to the working folder; a single path or list is the `train`
/// split); for a hub dataset, the files `dataset_kwargs.data_files` names inside the repository, else none (the hub's
/// own rules find them when the run is planned).
fn data_spec(name: &str, keys: &BTreeMap<String, Value>) -> Result<DataSpec, TaskError> {
    let text = |key: &str| keys.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut dataset =
        text("dataset_path").ok_or_else(|| TaskError::spec(format!("task {name}: needs `dataset_path`")))?;
    let mut files = BTreeMap::new();
    let kwargs = match keys.get("dataset_kwargs") {
        Some(Value::Plain(serde_json::Value::Object(kwargs))) => kwargs.clone(),
        Some(Value::Plain(serde_json::Value::Null)) | None => serde_json::Map::new(),
        Some(_) => return Err(TaskError::spec(format!("task {name}: dataset_kwargs is a mapping"))),
    };
    // `load_dataset`'s keyword arguments that change what is read: ibex reads `data_files` and `revision`; a loading
    // script's trust changes nothing ibex reads; any other would be silently ignored, so it is refused.
    if let Some(key) = kwargs.keys().find(|k| !["data_files", "revision", "trust_remote_code"].contains(&k.as_str())) {
        return Err(TaskError::spec(format!(
            "task {name}: dataset_kwargs.{key} is not read by ibex; name the split's files in data_files instead"
        )));
    }
    let revision = match kwargs.get("revision") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(revision)) => Some(revision.clone()),
        Some(other) => {
            return Err(TaskError::spec(format!("task {name}: dataset_kwargs.revision is {other}, not text")))
        }
    };
    let data_files = kwargs.get("data_files").cloned();
    let local = LOCAL_BUILDERS.contains(&dataset.as_str());
    if local || data_files.is_some() {
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
            None if local => {
                return Err(TaskError::spec(format!(
                    "task {name}: dataset_path {dataset} needs dataset_kwargs.data_files"
                )))
            }
            None => {}
        }
        // `hf://datasets/OWNER/NAME/PATH` (huggingface_hub's file system, which `datasets` reads): files of a hub
        // dataset, fetched and cached as its other files are.
        let repos: Vec<Option<(String, String)>> = files.values().flatten().map(|f| hf_path(f)).collect();
        if local && !repos.is_empty() && repos.iter().all(Option::is_some) {
            let repo = repos[0].as_ref().map(|(repo, _)| repo.clone()).expect("checked");
            if repos.iter().flatten().any(|(other, _)| *other != repo) {
                return Err(TaskError::spec(format!("task {name}: its hf:// data_files name more than one dataset")));
            }
            for paths in files.values_mut() {
                *paths = paths.iter().filter_map(|p| hf_path(p)).map(|(_, path)| path).collect();
            }
            dataset = repo;
        }
    }
    Ok(DataSpec {
        config: text("dataset_name").filter(|_| !LOCAL_BUILDERS.contains(&dataset.as_str())),
        dataset,
        revision,
        training_split: text("training_split"),
        validation_split: text("validation_split"),
        test_split: text("test_split"),
        fewshot_split: text("fewshot_split"),
        fewshot_sampler: FewshotSampler::Default,
        files,
    })
}

/// The dataset repository and the path inside it of an `hf://datasets/OWNER/NAME/PATH` file.
fn hf_path(file: &str) -> Option<(String, String)> {
    let rest = file.strip_prefix("hf://datasets/")?;
    let mut parts = rest.splitn(3, '/');
    let (owner, name, path) = (parts.next()?, parts.next()?, parts.next()?);
    (!owner.is_empty() && !name.is_empty() && !path.is_empty() && !name.contains('@'))
        .then(|| (format!("{owner}/{name}"), path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ibex_core::prompt::Output;

    /// Loads a task from YAML text written to `<tmp>/<folder>/t.yaml`; the reason when it cannot run.
    fn load_text(folder: &str, text: &str) -> Result<Arc<dyn Task>, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(folder)).unwrap();
        let path = dir.path().join(folder).join("t.yaml");
        std::fs::write(&path, text).unwrap();
        match load(&path, &|p| std::fs::read_to_string(p), Recipes::LmEval).map_err(|e| e.to_string())? {
            Loaded::Task(task, ..) => Ok(task),
            Loaded::Unsupported { reason, .. } => Err(reason),
            _ => Err("not a task".into()),
        }
    }

    const GENERATION: &str = "task: g\ndataset_path: some/dataset\ntest_split: test\noutput_type: generate_until\n\
                              doc_to_text: \"{{q}}\"\ndoc_to_target: a\n";

    #[test]
    fn generation_settings_default_as_lm_evals_task_config() {
        let task = load_text("bench", GENERATION).unwrap();
        let doc = task.doc(0, serde_json::json!({"q": "Q?", "a": "A"}).as_object().unwrap()).unwrap();
        // No generation_kwargs: until the few-shot delimiter, lm-eval's 256-token budget.
        let Output::GenerateUntil { until, max_gen_toks, generation_kwargs } = task.output(&doc) else { panic!() };
        assert_eq!((until, max_gen_toks), (vec!["\n\n".to_owned()], Some(256)));
        // lm-eval's default_gen_kwargs, as its sample logs show them.
        let expected =
            serde_json::json!({"temperature": 0.0, "do_sample": false, "max_gen_toks": 256, "until": ["\n\n"]});
        assert_eq!(serde_json::Value::Object(generation_kwargs), expected);
        assert_eq!(task.metrics().iter().map(|m| m.name).collect::<Vec<_>>(), ["exact_match"]);
        let task = load_text(
            "bench",
            &format!("{GENERATION}fewshot_delimiter: '###'\ngeneration_kwargs:\n  max_gen_toks: 5\n"),
        )
        .unwrap();
        let Output::GenerateUntil { until, max_gen_toks, generation_kwargs } = task.output(&doc) else { panic!() };
        assert_eq!((until, max_gen_toks), (vec!["###".to_owned()], Some(5)));
        // The task's own, completed with the stop string lm-eval adds.
        let expected = serde_json::json!({"max_gen_toks": 5, "until": ["###"]});
        assert_eq!(serde_json::Value::Object(generation_kwargs), expected);
    }

    #[test]
    fn sampling_unknown_metrics_and_hooks_are_refused_with_the_reason() {
        let sampled =
            load_text("bench", &format!("{GENERATION}generation_kwargs:\n  do_sample: true\n")).err().expect("refused");
        assert!(sampled.contains("generation_kwargs.do_sample: true is not run: ibex generates greedily"), "{sampled}");
        let bleu = load_text("bench", &format!("{GENERATION}metric_list:\n  - metric: bleu\n")).err().expect("refused");
        assert!(bleu.contains("metric `bleu` is not computed for generate_until yet"), "{bleu}");
        let hook = format!("{GENERATION}process_results: !function utils.process_results_qa\n");
        let unknown = load_text("bench", &hook).err().expect("refused");
        // The error names the file and line that hold the tag.
        assert!(unknown.contains("(bench/utils.process_results_qa, at "), "{unknown}");
        assert!(unknown.contains("t.yaml:7) has no Rust implementation"), "{unknown}");
        assert!(unknown.contains("xquad/utils.process_results_qa"), "{unknown}");
        let extra = format!("{hook}metric_list:\n  - metric: bleu\n");
        let extra = load_text("xquad", &extra).err().expect("refused");
        assert!(extra.contains("metric `bleu` is not one its process_results returns (f1, exact_match)"), "{extra}");
        let task = load_text("xquad", &hook).unwrap();
        assert_eq!(task.metrics().iter().map(|m| m.name).collect::<Vec<_>>(), ["f1", "exact_match"]);
        // The hook reads the row when its document is built.
        let err = task.doc(3, serde_json::json!({"q": "Q?", "a": "A"}).as_object().unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "row 3, field `process_results`: field `answers`: missing");
    }

    /// lm-eval reads digits as a choice index only when the task has choices: a generation's "007" stays text.
    #[test]
    fn digit_targets_of_a_generation_without_choices_stay_text() {
        let task = load_text("bench", GENERATION).unwrap();
        let doc = task.doc(0, serde_json::json!({"q": "Code?", "a": "007"}).as_object().unwrap()).unwrap();
        assert_eq!(task.doc_to_target(&doc), "007");
        let score = task.score(&doc, &[ibex_core::Response::Generation("007".into())]).remove(0);
        assert_eq!(score.filter, "none");
        assert_eq!(score.metrics["exact_match"], 1.0);
        assert_eq!(score.target, "007");
        let flag = task.doc(0, serde_json::json!({"q": "Yes?", "a": true}).as_object().unwrap()).unwrap();
        assert_eq!(task.doc_to_target(&flag), "True");
    }

    #[test]
    fn dataset_kwargs_ibex_would_ignore_are_refused_and_revision_is_read() {
        let with = |kwargs: &str| load_text("bench", &format!("{GENERATION}dataset_kwargs:\n{kwargs}"));
        let err = with("  data_dir: sub\n").err().expect("refused");
        assert!(err.contains("dataset_kwargs.data_dir is not read by ibex"), "{err}");
        let task = with("  revision: refs/convert/parquet\n").unwrap();
        assert_eq!(task.data().revision.as_deref(), Some("refs/convert/parquet"));
    }

    #[test]
    fn hf_data_files_name_a_hub_dataset() {
        let text = "task: w\ndataset_path: csv\ndataset_kwargs:\n  data_files:\n    train: hf://datasets/org/w-es/train.csv\n    \
                    validation: hf://datasets/org/w-es/dev.csv\noutput_type: multiple_choice\nvalidation_split: validation\n\
                    doc_to_text: s\ndoc_to_target: label\ndoc_to_choice: ['a', 'b']\n";
        let task = load_text("bench", text).unwrap();
        assert_eq!(task.data().dataset, "org/w-es");
        assert_eq!(task.data().files["validation"], ["dev.csv"]);
        assert_eq!(hf_path("hf://datasets/org/name@main/x.csv"), None);
    }

    #[test]
    fn fewshot_config_shows_examples_its_own_way_and_refuses_what_ibex_does_not_read() {
        let text = "task: s\ndataset_path: some/dataset\ntest_split: test\noutput_type: multiple_choice\n\
                    doc_to_text: '{{q}}'\ndoc_to_target: a\ndoc_to_choice: ['x', 'y']\nfewshot_config:\n  \
                    sampler: first_n\n  split: dev\n  doc_to_text: 'Q: {{q}}'\n  target_delimiter: ' = '\n  \
                    samples:\n    - {q: one, a: 1}\n";
        let task = load_text("bench", text).unwrap();
        assert_eq!(task.data().fewshot_split.as_deref(), Some("dev"));
        assert_eq!(task.data().fewshot_sampler, FewshotSampler::FirstN);
        assert_eq!(task.header().shots.target_delimiter, " = ");
        assert_eq!(task.header().shots.fewshot_delimiter, "\n\n");
        assert_eq!(task.fewshot_samples().unwrap().len(), 1);
        let shot = task.shot_doc(0, serde_json::json!({"q": "one", "a": 1}).as_object().unwrap()).unwrap();
        let wrong = task.shot_doc(1, serde_json::json!({"q": "two", "a": 5}).as_object().unwrap()).unwrap_err();
        assert_eq!(wrong.to_string(), "row 1, field `doc_to_target`: index 5 is outside the 2 choices");
        // A null split drops the task's fewshot_split, as FewshotConfig.from_dict lets it; a null delimiter is refused.
        let nulled =
            load_text("bench", &format!("fewshot_split: train\n{}", text.replace("split: dev", "split: null")))
                .unwrap();
        assert_eq!(nulled.data().fewshot_split, None);
        let err = load_text("bench", &text.replace("target_delimiter: ' = '", "target_delimiter: null")).err().unwrap();
        assert!(err.contains("fewshot_config.target_delimiter is null"), "{err}");
        assert_eq!((task.shot_text(&shot), task.shot_target(&shot)), ("Q: one".into(), "y".into()));
        assert_eq!(task.doc_to_text(&shot), "one");
        for (key, value) in
            [("process_docs", "!function utils.p"), ("fewshot_indices", "[0, 2]"), ("process_docs", "null")]
        {
            let err = load_text("bench", &format!("{text}  {key}: {value}\n")).err().expect("refused");
            assert!(err.contains(&format!("fewshot_config.{key} is not supported yet")), "{err}");
        }
        let err = load_text("bench", &text.replace("first_n", "balanced")).err().expect("refused");
        assert!(err.contains("fewshot sampler \"balanced\" is not supported yet"), "{err}");
    }

    #[test]
    fn exact_match_options_apply_in_lm_evals_order() {
        let options = ExactMatch {
            regexes_to_ignore: vec![task::python_regex("^The ").unwrap()],
            ignore_case: true,
            ignore_punctuation: true,
            ignore_numbers: false,
        };
        // Regexes run before lowercasing: "the " at the start survives them, then differs.
        assert!(options.matches("The cat.", "cat"));
        assert!(!options.matches("the cat", "cat"));
        assert!(!options.matches("cat 9", "cat"));
        assert!(ExactMatch { ignore_numbers: true, ..ExactMatch::default() }.matches("cat 9", "cat "));
        // Python's `$` also matches before a final newline: re.sub(r"\.$", "", "Paris.\n") == "Paris\n".
        let dollar = ExactMatch {
            regexes_to_ignore: vec![task::python_regex(r"\.$").unwrap(), task::python_regex(r"\s+$").unwrap()],
            ..ExactMatch::default()
        };
        assert!(dollar.matches("Paris", "Paris.\n"));
        assert!(!dollar.matches("Paris", "Par.is"));
        assert_eq!(task::python_regex("[$]").unwrap().replace_all("a$b", "").into_owned(), "ab");
        // Python's `\Z` is the very end: re.sub(r"x\Z", "", "ax\n") leaves "ax\n".
        assert_eq!(task::python_regex(r"x\Z").unwrap().replace_all("ax\n", "").into_owned(), "ax\n");
        assert_eq!(task::python_regex(r"x\Z").unwrap().replace_all("ax", "").into_owned(), "a");
    }
}
