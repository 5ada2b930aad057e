//! Runs tasks against a model. Data flows one way: resolved [`RunConfig`] → task registry → documents → requests →
//! token requests → length-sorted batches → backend → scores → results. Each finished task is written to disk at
//! once (its sample log, then `results.json` with every task so far), so a long run never loses finished work.

mod fewshot;
mod registry;
mod report;

use fewshot::FewshotPool;
pub use registry::{Entry, Registry, RegistryError};
pub use report::results_table;

use ibex_candle::{device_name, parse_dtype, select_device, CandleModel};
use ibex_core::metrics::mean_stderr;
use ibex_core::results::{ModelRecord, RunResults, SampleRecord, TaskRecord, SCHEMA_VERSION};
use ibex_core::{BosPolicy, Doc, Encoder, LanguageModel, Request, Response, SampleScore, TokenRequest};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A resolved, validated run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// A local folder or a Hugging Face model id.
    pub model: String,
    /// Hub revision (branch, tag or commit).
    pub revision: Option<String>,
    /// Task names, in run order.
    pub tasks: Vec<String>,
    /// Extra task-file folders.
    pub tasks_dirs: Vec<PathBuf>,
    /// Data files replacing a task's data for a split.
    pub data: Vec<DataOverride>,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    pub device: String,
    /// `f32`, `bf16` or `f16`.
    pub dtype: String,
    /// Requests per forward pass.
    pub batch_size: usize,
    /// Evaluate only the first N documents of each task.
    pub limit: Option<usize>,
    /// Folder for results.json and sample logs.
    pub output: PathBuf,
    /// Whether to write `samples_<task>.jsonl`.
    pub log_samples: bool,
    /// The lm-eval era to reproduce for BOS tokens.
    pub bos: BosPolicy,
    /// `--add-bos-token` as the user wrote it, for the record.
    pub bos_flag: String,
    /// Few-shot examples per document.
    pub num_fewshot: usize,
    /// Seed of the few-shot sampler (lm-eval's default is 1234).
    pub fewshot_seed: u64,
    /// Tokens to generate when a task does not say (lm-eval's model-level `max_gen_toks`).
    pub max_gen_toks: usize,
}

/// `--data TASK[:SPLIT]=PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataOverride {
    /// The task.
    pub task: String,
    /// The split replaced (the evaluated or the few-shot split); the evaluated split when absent.
    pub split: Option<String>,
    /// The file.
    pub path: PathBuf,
}

impl std::str::FromStr for DataOverride {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (key, path) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}` is not TASK[:SPLIT]=PATH (e.g. xnli_en=/scratch/xnli_en.parquet)"))?;
        let (task, split) = match key.split_once(':') {
            Some((task, split)) => (task, Some(split.to_owned())),
            None => (key, None),
        };
        if task.is_empty() || path.is_empty() {
            return Err(format!("`{text}` is not TASK[:SPLIT]=PATH"));
        }
        Ok(Self { task: task.to_owned(), split, path: PathBuf::from(path) })
    }
}

/// Anything that stops a run, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// See [`RegistryError`].
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A `--data` argument is unusable.
    #[error("--data {0}")]
    Data(String),
    /// A suite cannot be read.
    #[error("{0}")]
    Suite(String),
    /// Device or dtype.
    #[error(transparent)]
    Device(#[from] ibex_candle::DeviceError),
    /// Model files.
    #[error(transparent)]
    Hub(#[from] ibex_hub::HubError),
    /// The tokenizer.
    #[error(transparent)]
    Encode(#[from] ibex_core::EncodeError),
    /// The checkpoint.
    #[error(transparent)]
    Load(#[from] ibex_candle::LoadError),
    /// A data file.
    #[error(transparent)]
    Rows(#[from] ibex_data::DataError),
    /// A data row does not fit its task.
    #[error("task {task}, data {file}: {source}")]
    Task {
        /// The task.
        task: String,
        /// The data file.
        file: String,
        /// The row error.
        source: ibex_core::TaskError,
    },
    /// A request cannot be scored.
    #[error("task {task}, document {doc}: {message}")]
    Request {
        /// The task.
        task: String,
        /// The document.
        doc: usize,
        /// What is wrong.
        message: String,
    },
    /// The backend failed mid-run.
    #[error("task {task}: {source}")]
    Model {
        /// The task.
        task: String,
        /// The backend's error.
        source: ibex_core::ModelError,
    },
    /// Writing results failed.
    #[error("cannot write {path}: {message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's message.
        message: String,
    },
}

/// A suite file (`configs/suites/NAME.toml`): the tasks that re-run one published comparison.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Suite {
    tasks: Vec<String>,
}

/// The tasks of a suite given by name (looked up in `configs/suites/`) or as a path to a suite file.
pub fn suite_tasks(suite: &str) -> Result<Vec<String>, RunError> {
    let path = if Path::new(suite).is_file() {
        PathBuf::from(suite)
    } else {
        Path::new("configs/suites").join(format!("{suite}.toml"))
    };
    let text = std::fs::read_to_string(&path).map_err(|_| {
        RunError::Suite(format!(
            "unknown suite `{suite}`: no {}; run from the ibex repository (configs/suites) or pass a suite file",
            path.display()
        ))
    })?;
    let suite: Suite = toml::from_str(&text)
        .map_err(|e| RunError::Suite(format!("{}: {}", path.display(), e.message().trim_end())))?;
    Ok(suite.tasks)
}

/// Runs every task of `config` and returns what was written to `results.json`.
pub fn run(config: &RunConfig) -> Result<RunResults, RunError> {
    let registry = Registry::load(&config.tasks_dirs)?;
    let (entries, groups) = registry.select(&config.tasks)?;
    for data in &config.data {
        registry.get(&data.task)?;
        let Some(entry) = entries.iter().find(|e| e.task.name() == data.task) else {
            return Err(RunError::Data(format!("names task `{}`, which is not in --tasks", data.task)));
        };
        let spec = entry.task.data();
        let used = [spec.eval_split(), spec.fewshot_split()];
        if let Some(split) = data.split.as_deref().filter(|s| !used.contains(&Some(*s))) {
            let used: Vec<&str> = used.iter().flatten().copied().collect();
            return Err(RunError::Data(format!(
                "names split `{split}` of `{}`, which it does not read; it reads {}",
                data.task,
                used.join(" and ")
            )));
        }
        if !data.path.is_file() {
            return Err(RunError::Data(format!("file {} does not exist", data.path.display())));
        }
    }
    let dtype = parse_dtype(&config.dtype)?;
    let device = select_device(&config.device, dtype)?;
    let files = ibex_hub::resolve_model(&config.model, config.revision.as_deref())?;
    let encoder = Encoder::from_files(&files.tokenizer, &files.tokenizer_settings, config.bos)?;
    let mut model = CandleModel::load(&files.config, &files.weights, dtype, &device)?;
    let mut results = RunResults {
        schema_version: SCHEMA_VERSION,
        ibex_version: env!("CARGO_PKG_VERSION").to_owned(),
        model: ModelRecord {
            model: config.model.clone(),
            revision: match &files.origin {
                ibex_hub::Origin::Hub { commit, .. } => Some(commit.clone()),
                ibex_hub::Origin::Folder(_) => None,
            },
            dtype: config.dtype.clone(),
            device: device_name(&device),
            batch_size: config.batch_size,
            add_bos_token: config.bos_flag.clone(),
            add_special_tokens: encoder.adds_special_tokens(),
            limit: config.limit,
            num_fewshot: config.num_fewshot,
            fewshot_seed: config.fewshot_seed,
            max_gen_toks: config.max_gen_toks,
        },
        results: BTreeMap::new(),
        groups: BTreeMap::new(),
        tasks: BTreeMap::new(),
    };
    std::fs::create_dir_all(&config.output)
        .map_err(|e| RunError::Write { path: config.output.clone(), message: e.to_string() })?;
    for &entry in &entries {
        let (metrics, record) = evaluate_task(entry, config, &encoder, &mut model)?;
        results.results.insert(entry.task.name().to_owned(), metrics);
        results.tasks.insert(entry.task.name().to_owned(), record);
        write_json(&config.output.join("results.json"), &results)?;
    }
    for group in groups {
        let members: Vec<&BTreeMap<String, Value>> = group.tasks.iter().map(|t| &results.results[t]).collect();
        let metrics = entries.iter().find(|e| e.task.name() == group.tasks[0]).map_or(&[][..], |e| e.task.metrics());
        results.results.insert(group.group.clone(), aggregate_group(&members, metrics));
        results.groups.insert(group.group.clone(), group.tasks.clone());
    }
    write_json(&config.output.join("results.json"), &results)?;
    Ok(results)
}

/// Evaluates one task: documents, few-shot contexts, requests, scores, the sample log, and the task's metrics.
fn evaluate_task(
    entry: &Entry,
    config: &RunConfig,
    encoder: &Encoder,
    model: &mut impl LanguageModel,
) -> Result<(BTreeMap<String, Value>, TaskRecord), RunError> {
    let task_name = entry.task.name().to_owned();
    let spec = entry.task.data();
    let eval_split = spec.eval_split().unwrap_or_default();
    let (data_file, dataset) = data_file(entry, config, eval_split)?;
    let rows = ibex_data::read_rows(&data_file)?;
    let limit = config.limit.unwrap_or(rows.len()).min(rows.len());
    if limit == 0 {
        return Err(RunError::Data(format!(
            "gives no documents to evaluate: {} has {} rows and --limit is {:?}",
            data_file.display(),
            rows.len(),
            config.limit
        )));
    }
    let task_error = |source| RunError::Task { task: task_name.clone(), file: data_file.display().to_string(), source };
    let docs = rows[..limit]
        .iter()
        .enumerate()
        .map(|(i, row)| entry.task.doc(i, row))
        .collect::<Result<Vec<_>, _>>()
        .map_err(task_error)?;
    let contexts = if config.num_fewshot == 0 {
        vec![String::new(); docs.len()]
    } else {
        let pool = FewshotPool::load(entry, config, eval_split, &rows, &data_file)?;
        pool.contexts(&docs, config.num_fewshot, config.fewshot_seed)?
    };
    let requests: Vec<Vec<Request>> =
        docs.iter().zip(&contexts).map(|(doc, context)| entry.task.requests(doc, context)).collect();
    let responses = score_requests(&task_name, &docs, &requests, encoder, model, config)?;
    let scores: Vec<SampleScore> =
        docs.iter().zip(&responses).map(|(doc, resps)| entry.task.score(doc, resps)).collect();
    if config.log_samples {
        let path = config.output.join(format!("samples_{task_name}.jsonl"));
        write_samples(&path, entry.task.metrics(), &docs, &requests, &responses, &scores)?;
    }
    let mut metrics = BTreeMap::new();
    for metric in entry.task.metrics() {
        let values: Vec<f64> = scores.iter().map(|s| s.metrics[*metric]).collect();
        let aggregate = mean_stderr(&values);
        metrics.insert(format!("{metric},none"), Value::from(aggregate.value));
        metrics.insert(format!("{metric}_stderr,none"), aggregate.stderr.map_or(Value::from("N/A"), Value::from));
    }
    metrics.insert("n".into(), Value::from(docs.len()));
    let record = TaskRecord {
        task_file: entry.source.clone(),
        task_file_sha256: entry.sha256.clone(),
        split: eval_split.to_owned(),
        data_file: data_file.display().to_string(),
        dataset,
        n: docs.len(),
    };
    Ok((metrics, record))
}

/// A group's metrics from its tasks', as lm-eval aggregates with `weight_by_size: true`: the size-weighted mean, and
/// the pooled standard error (`pooled_sample_stderr`, lm_eval/api/metrics.py).
fn aggregate_group(members: &[&BTreeMap<String, Value>], metrics: &[&str]) -> BTreeMap<String, Value> {
    let sizes: Vec<f64> = members.iter().map(|m| m["n"].as_f64().unwrap_or(0.0)).collect();
    let total: f64 = sizes.iter().sum();
    let mut out = BTreeMap::new();
    for metric in metrics {
        let values: Vec<f64> =
            members.iter().map(|m| m[&format!("{metric},none")].as_f64().unwrap_or(f64::NAN)).collect();
        let value = values.iter().zip(&sizes).map(|(v, n)| v * n).sum::<f64>() / total;
        let stderrs: Option<Vec<f64>> = members.iter().map(|m| m[&format!("{metric}_stderr,none")].as_f64()).collect();
        let stderr = stderrs.map(|stderrs| {
            let pooled_variance = stderrs.iter().zip(&sizes).map(|(se, n)| (n - 1.0) * se * se * n).sum::<f64>()
                / (total - sizes.len() as f64);
            (pooled_variance / total).sqrt()
        });
        out.insert(format!("{metric},none"), Value::from(value));
        out.insert(format!("{metric}_stderr,none"), stderr.map_or(Value::from("N/A"), Value::from));
    }
    out.insert("n".into(), Value::from(total as usize));
    out
}

/// The data file for one split of a task: a `--data` override, else the task's dataset from the hub.
fn data_file(entry: &Entry, config: &RunConfig, split: &str) -> Result<(PathBuf, Option<String>), RunError> {
    let spec = entry.task.data();
    let eval_split = spec.eval_split().unwrap_or_default();
    let chosen = |d: &&DataOverride| d.task == entry.task.name() && d.split.as_deref().unwrap_or(eval_split) == split;
    if let Some(data) = config.data.iter().find(chosen) {
        return Ok((data.path.clone(), None));
    }
    let Some(candidates) = spec.files.get(split).filter(|c| !c.is_empty()) else {
        return Err(RunError::Data(format!(
            "is needed: task file {} names no file for split `{split}`; pass --data {}:{split}=PATH",
            entry.source,
            entry.task.name()
        )));
    };
    let file = ibex_hub::resolve_dataset_file(&spec.dataset, spec.revision.as_deref(), candidates)?;
    Ok((file.path, Some(format!("{}@{}", spec.dataset, file.commit))))
}

/// Answers every request of every document, in document order: loglikelihood requests tokenized and scored longest
/// first in batches (as lm-eval orders them, so the first batch shows whether memory suffices); generation requests
/// batched too, but each row stops on its own (lm-eval's batch-size-1 behaviour; lm-eval's batches stop only when
/// every row has, which makes its output depend on the batch size).
fn score_requests(
    task: &str,
    docs: &[Doc],
    requests: &[Vec<Request>],
    encoder: &Encoder,
    model: &mut impl LanguageModel,
    config: &RunConfig,
) -> Result<Vec<Vec<Response>>, RunError> {
    let request_error = |doc: usize, message: String| RunError::Request { task: task.to_owned(), doc, message };
    let mut scored: Vec<(usize, usize, TokenRequest)> = Vec::new();
    // As lm-eval's Collator: generation requests grouped by their settings (then longest prompt first, in batches).
    let mut generations: BTreeMap<GenerationSettings, Vec<(usize, usize, &str)>> = BTreeMap::new();
    for (doc, doc_requests) in docs.iter().zip(requests) {
        for (index, request) in doc_requests.iter().enumerate() {
            if let Request::Generate { context, until, max_gen_toks } = request {
                let budget = max_gen_toks.unwrap_or(config.max_gen_toks);
                generations.entry((until.clone(), budget)).or_default().push((doc.id, index, context.as_str()));
                continue;
            }
            let tokens = encoder.encode(request).map_err(|e| request_error(doc.id, e.to_string()))?;
            if tokens.continuation.len() > model.max_length() {
                return Err(request_error(
                    doc.id,
                    format!(
                        "continuation of {} tokens exceeds the model's context window of {}",
                        tokens.continuation.len(),
                        model.max_length()
                    ),
                ));
            }
            scored.push((doc.id, index, tokens));
        }
    }
    scored.sort_by_key(|(_, _, t)| std::cmp::Reverse(t.context.len() + t.continuation.len()));
    let generation_count: usize = generations.values().map(Vec::len).sum();
    let progress = ProgressBar::new((scored.len() + generation_count) as u64).with_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} requests, {per_sec}, ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    progress.set_prefix(task.to_owned());
    let mut responses: Vec<Vec<Option<Response>>> = requests.iter().map(|r| vec![None; r.len()]).collect();
    let first_doc = docs.first().map_or(0, |d| d.id);
    let model_error = |source| RunError::Model { task: task.to_owned(), source };
    for batch in scored.chunks(config.batch_size.max(1)) {
        let tokens: Vec<TokenRequest> = batch.iter().map(|(_, _, t)| t.clone()).collect();
        let scores = model.score(&tokens).map_err(model_error)?;
        for ((doc, index, _), score) in batch.iter().zip(scores) {
            responses[doc - first_doc][*index] = Some(Response::Loglikelihood(score));
        }
        progress.inc(batch.len() as u64);
    }
    for ((until, budget), members) in generations {
        let prompts = members
            .iter()
            .map(|(doc, _, context)| {
                prompt_tokens(encoder, model.max_length(), context, budget).map_err(|m| request_error(*doc, m))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(prompts[i].len()));
        let stops = encoder.stop_sequences(&until).map_err(|e| request_error(members[0].0, e.to_string()))?;
        for batch in order.chunks(config.batch_size.max(1)) {
            let batch_prompts: Vec<Vec<u32>> = batch.iter().map(|&i| prompts[i].clone()).collect();
            let mut decode_failure = None;
            let mut stop = |_row: usize, generated: &[u32]| {
                encoder.should_stop(generated, &stops).unwrap_or_else(|e| {
                    decode_failure = Some(e);
                    true
                })
            };
            let outputs = model.generate(&batch_prompts, budget, &mut stop).map_err(model_error)?;
            if let Some(e) = decode_failure {
                return Err(request_error(members[batch[0]].0, e.to_string()));
            }
            for (&i, generated) in batch.iter().zip(outputs) {
                let (doc, index, _) = members[i];
                let text = encoder.generated_text(&generated, &stops).map_err(|e| request_error(doc, e.to_string()))?;
                responses[doc - first_doc][index] = Some(Response::Generation(text));
            }
            progress.inc(batch.len() as u64);
        }
    }
    progress.finish_and_clear();
    Ok(responses.into_iter().map(|r| r.into_iter().map(|x| x.expect("every request answered")).collect()).collect())
}

/// Stop strings and token budget: generation requests that share them share batches.
type GenerationSettings = (Vec<String>, usize);

/// A generation prompt for lm-eval's `generate_until`: encoded with the tokenizer's default special tokens and
/// left-truncated to leave `budget` tokens of the model's window for the answer.
fn prompt_tokens(encoder: &Encoder, window: usize, context: &str, budget: usize) -> Result<Vec<u32>, String> {
    if budget >= window {
        return Err(format!(
            "max_gen_toks {budget} leaves no room for a prompt in the model's context window of {window}; \
             pass a smaller --max-gen-toks"
        ));
    }
    let prompt = encoder.encode_prompt(context, window - budget).map_err(|e| e.to_string())?;
    if prompt.is_empty() {
        return Err("the prompt encodes to no tokens; a generation needs at least one".into());
    }
    Ok(prompt)
}

fn write_samples(
    path: &Path,
    metrics: &[&str],
    docs: &[Doc],
    requests: &[Vec<Request>],
    responses: &[Vec<Response>],
    scores: &[SampleScore],
) -> Result<(), RunError> {
    let write_error = |e: std::io::Error| RunError::Write { path: path.to_owned(), message: e.to_string() };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(write_error)?);
    for (((doc, doc_requests), doc_responses), score) in docs.iter().zip(requests).zip(responses).zip(scores) {
        let arguments: Vec<Value> = doc_requests.iter().map(request_arguments).collect();
        let answers: Vec<Value> = doc_responses
            .iter()
            .map(|response| match response {
                Response::Loglikelihood(s) => serde_json::json!([s.logprob, s.is_greedy]),
                Response::Generation(text) => Value::from(text.as_str()),
            })
            .collect();
        let first_context = doc_requests.first().map_or("", |r| match r {
            Request::Loglikelihood { context, .. } | Request::Generate { context, .. } => context.as_str(),
        });
        let record = SampleRecord {
            doc_id: doc.id,
            doc: doc.fields.clone(),
            target: score.target.clone(),
            prompt_hash: sha256_hex(first_context),
            arguments,
            resps: answers.iter().map(|a| Value::Array(vec![a.clone()])).collect(),
            filtered_resps: answers,
            filter: "none".into(),
            metrics: metrics.iter().map(|m| (*m).to_owned()).collect(),
            doc_hash: sha256_hex(&python_json_indent2(&Value::Object(doc.fields.clone()))),
            target_hash: sha256_hex(&python_str(&score.target)),
            scores: score.metrics.clone(),
        };
        let line = serde_json::to_string(&record).expect("sample records serialize");
        writeln!(out, "{line}").map_err(write_error)?;
    }
    out.flush().map_err(write_error)
}

/// A request's arguments as lm-eval logs them: `[context, continuation]`, or `[context, generation_kwargs]`.
fn request_arguments(request: &Request) -> Value {
    match request {
        Request::Loglikelihood { context, continuation } => serde_json::json!([context, continuation]),
        Request::Generate { context, until, max_gen_toks } => {
            let mut kwargs = serde_json::json!({"until": until, "do_sample": false, "temperature": 0.0});
            if let Some(max) = max_gen_toks {
                kwargs["max_gen_toks"] = Value::from(*max);
            }
            serde_json::json!([context, kwargs])
        }
    }
}

fn write_json(path: &Path, results: &RunResults) -> Result<(), RunError> {
    let text = serde_json::to_string_pretty(results).expect("results serialize") + "\n";
    // Write then rename, so an interrupted run leaves the previous complete file rather than half of a new one.
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|e| RunError::Write { path: path.to_owned(), message: e.to_string() })
}

fn sha256_hex(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// `json.dumps(value, indent=2, ensure_ascii=False)`, which lm-eval hashes for `doc_hash`.
fn python_json_indent2(value: &Value) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"  ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(value, &mut serializer).expect("JSON values serialize");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Python's `str()` of a JSON value as lm-eval's `target_hash` sees it (an int or a string target).
fn python_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
