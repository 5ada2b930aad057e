//! What a run writes, in lm-eval 0.4.13's files and folder layout, so tools written for lm-eval read ibex's:
//! `<output>/<model_name_sanitized>/results_<date>.json` ([`RunResults`], `EvaluationTracker.save_results_aggregated`
//! in lm_eval/loggers/evaluation_tracker.py) and `samples_<task>_<date>.jsonl` ([`SampleRecord`],
//! `save_results_samples`): per document, `arguments` as `{"gen_args_0": {"arg_0": …, "arg_1": …}}`, every leaf of
//! `resps` and `filtered_resps` a string as Python's `str` writes it, the target a string. ibex's own provenance
//! (task files and hashes, data files and commits, tokenizer rules, timings) sits under the one extra key `ibex`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Version of the `ibex` provenance block.
pub const SCHEMA_VERSION: u32 = 2;

/// The lm-eval version whose prompts, requests and files ibex reproduces.
pub const LM_EVAL_VERSION: &str = "0.4.13";

/// One line of `samples_<task>_<date>.jsonl`, as lm-eval writes it to disk.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SampleRecord {
    /// Index of the document in the evaluated split.
    pub doc_id: usize,
    /// The document after the task's preprocessing.
    pub doc: Map<String, Value>,
    /// The gold answer, as Python's `str` writes it (`"0"` for label 0).
    pub target: String,
    /// Each request's arguments: `gen_args_<i>` → `{"arg_0": context, "arg_1": continuation or generation_kwargs}`.
    pub arguments: Map<String, Value>,
    /// Each request's raw answers: `[["-3.25", "False"]]`, or `["generated text"]`.
    pub resps: Vec<Value>,
    /// Each request's answer after the filter: `["-3.25", "False"]`, or the text.
    pub filtered_resps: Vec<Value>,
    /// The filter's name (`none` unless the task has a `filter_list`).
    pub filter: String,
    /// The metric names scored for this document.
    pub metrics: Vec<String>,
    /// SHA-256 of the document as lm-eval hashes it (`json.dumps(doc, indent=2, ensure_ascii=False)`).
    pub doc_hash: String,
    /// SHA-256 of the first request's context.
    pub prompt_hash: String,
    /// SHA-256 of the target's string form.
    pub target_hash: String,
    /// Each metric's item for this document (`acc`: 0 or 1).
    #[serde(flatten)]
    pub scores: BTreeMap<String, Value>,
}

/// `results_<date>.json`: lm-eval's keys, then `ibex`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResults {
    /// Per task and group: its metrics under lm-eval's keys (`acc,none`, `acc_stderr,none`).
    pub results: BTreeMap<String, ResultEntry>,
    /// Per group, the same entry as in `results`.
    pub groups: BTreeMap<String, ResultEntry>,
    /// Per group, its tasks.
    pub group_subtasks: BTreeMap<String, Vec<String>>,
    /// Per task, its configuration in lm-eval's `TaskConfig` terms, as far as an ibex task has them.
    pub configs: BTreeMap<String, Value>,
    /// Per task and group, its task file's `metadata.version` as lm-eval writes it (a task's as given, a group's as
    /// text); null when the file gives none.
    pub versions: BTreeMap<String, Value>,
    /// Per task and group, the few-shot count.
    #[serde(rename = "n-shot")]
    pub n_shot: BTreeMap<String, usize>,
    /// Per task and group, each metric's direction.
    pub higher_is_better: BTreeMap<String, BTreeMap<String, bool>>,
    /// Per task, documents in the split and documents evaluated.
    #[serde(rename = "n-samples")]
    pub n_samples: BTreeMap<String, SampleCounts>,
    /// The run's settings in lm-eval's `config` terms.
    pub config: RunConfig,
    /// Start of the run, Unix seconds.
    pub date: f64,
    /// What ran: ibex's version, backend and platform (lm-eval's environment report).
    pub pretty_env_info: String,
    /// lm-eval's `upper_git_hash`; always null.
    pub upper_git_hash: Option<String>,
    /// `[pad token, str(id)]` after lm-eval's `configure_pad_token`; `[null, "None"]` when there is none.
    pub tokenizer_pad_token: [Option<String>; 2],
    /// `[eos token, str(id)]`.
    pub tokenizer_eos_token: [Option<String>; 2],
    /// `[bos token, str(id)]`.
    pub tokenizer_bos_token: [Option<String>; 2],
    /// The end-of-text id generation stops on.
    pub eot_token_id: Option<u32>,
    /// The model's window in tokens.
    pub max_length: Option<usize>,
    /// Per task, SHA-256 of its requests (every context and continuation or stop list, in order).
    pub task_hashes: BTreeMap<String, String>,
    /// The harness that produced the file: `ibex`.
    pub model_source: String,
    /// The `--model` argument.
    pub model_name: String,
    /// [`sanitize_model_name`] of it: the folder the files are in.
    pub model_name_sanitized: String,
    /// `--system-instruction`.
    pub system_instruction: Option<String>,
    /// SHA-256 of it.
    pub system_instruction_sha: Option<String>,
    /// `--fewshot-as-multiturn` under a chat template; null without one.
    pub fewshot_as_multiturn: Option<bool>,
    /// The applied chat template's text.
    pub chat_template: Option<String>,
    /// SHA-256 of it.
    pub chat_template_sha: Option<String>,
    /// Wall time of the evaluation in seconds, as a string (lm-eval writes `str(seconds)`).
    pub total_evaluation_time_seconds: String,
    /// ibex's provenance.
    pub ibex: Provenance,
}

/// A task's or group's line in `results`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResultEntry {
    /// The name shown in tables.
    pub alias: String,
    /// The task or group name.
    pub name: String,
    /// Documents evaluated (a group: over its tasks); none for a group without aggregate metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_len: Option<usize>,
    /// `metric,filter` and `metric_stderr,filter` → value (`"N/A"` where no stderr applies).
    #[serde(flatten)]
    pub metrics: BTreeMap<String, Value>,
    /// A group's documents per metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_count: Option<BTreeMap<String, usize>>,
}

/// `n-samples` of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleCounts {
    /// Documents in the evaluated split.
    pub original: usize,
    /// Documents evaluated (after `--limit`, and `--shard`).
    pub effective: usize,
}

/// lm-eval's `config` block.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunConfig {
    /// The backend: `ibex-candle`.
    pub model: String,
    /// `{"pretrained": model, "dtype": …, "revision": …}`.
    pub model_args: Map<String, Value>,
    /// Parameters in the checkpoint's weights.
    pub model_num_parameters: u64,
    /// The dtype as torch names it (`torch.bfloat16`).
    pub model_dtype: String,
    /// The revision asked for (`main` by default).
    pub model_revision: String,
    /// The checkpoint's commit, or empty for a local folder.
    pub model_sha: String,
    /// Requests per forward pass, as a string.
    pub batch_size: String,
    /// The batch sizes requests ran at, in the order first used (one for a fixed size; those `auto` settled on).
    pub batch_sizes: Vec<usize>,
    /// The device that ran.
    pub device: String,
    /// lm-eval's response cache; null.
    pub use_cache: Option<String>,
    /// `--limit`.
    pub limit: Option<usize>,
    /// Bootstrap iterations for corpus-metric stderr; 0 (ibex reports none).
    pub bootstrap_iters: u64,
    /// Generation settings from the command line; empty.
    pub gen_kwargs: Map<String, Value>,
    /// Seed of the few-shot sampler.
    pub fewshot_seed: u64,
}

/// ibex's record of the run: what lm-eval's keys cannot say.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Provenance {
    /// [`SCHEMA_VERSION`] at writing.
    pub schema_version: u32,
    /// The ibex version that ran.
    pub version: String,
    /// The lm-eval version whose behaviour ibex reproduces.
    pub lm_eval_version: String,
    /// The model and how it ran.
    pub model: ModelRecord,
    /// Per task, where its definition and data came from, and how long it took.
    pub tasks: BTreeMap<String, TaskRecord>,
    /// Wall time of the evaluation in seconds (of the last attempt, when the run resumed).
    pub seconds: f64,
    /// Whether every task and group of the run is in the file; false while it runs, and in a file a killed run
    /// left (rerun the same command to resume it).
    #[serde(default)]
    pub complete: bool,
}

/// lm-eval's `sanitize_model_name` (lm_eval/utils.py): runs of `"<>:/|\?*[]` become `__`.
pub fn sanitize_model_name(model: &str) -> String {
    let mut out = String::with_capacity(model.len());
    let mut in_run = false;
    for c in model.chars() {
        if "\"<>:/|\\?*[]".contains(c) {
            if !in_run {
                out.push_str("__");
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out
}

/// `results_<date>.json`.
pub fn results_file_name(date_id: &str) -> String {
    format!("results_{date_id}.json")
}

/// `samples_<task>_<date>.jsonl`.
pub fn samples_file_name(task: &str, date_id: &str) -> String {
    format!("samples_{task}_{date_id}.jsonl")
}

/// The date id a `results_<date>.json` file is named with.
fn results_date(file: &Path) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    Some(name.strip_prefix("results_")?.strip_suffix(".json")?.to_owned())
}

/// Every `results_<date>.json` that `path` names (the file, a folder's files, or those of the model folders in an
/// output folder), oldest first by date.
pub fn find_all_results(path: &Path) -> Result<Vec<PathBuf>, String> {
    if path.is_file() {
        results_date(path).ok_or_else(|| format!("{} is not a results_<date>.json file", path.display()))?;
        return Ok(vec![path.to_owned()]);
    }
    let listed = |folder: &Path| -> Result<Vec<PathBuf>, String> {
        let entries = std::fs::read_dir(folder).map_err(|e| format!("cannot read {}: {e}", folder.display()))?;
        Ok(entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
    };
    let is_results = |p: &PathBuf| p.is_file() && results_date(p).is_some();
    let mut files: Vec<PathBuf> = listed(path)?.into_iter().filter(is_results).collect();
    if files.is_empty() {
        for folder in listed(path)?.into_iter().filter(|p| p.is_dir()) {
            files.extend(listed(&folder)?.into_iter().filter(is_results));
        }
    }
    if files.is_empty() {
        return Err(if path.join("results.json").is_file() {
            format!(
                "{} holds a results.json of an ibex before results schema 2; run it again to write lm-eval's files",
                path.display()
            )
        } else {
            format!("{} holds no results_<date>.json (nor does any folder in it)", path.display())
        });
    }
    // The names differ only in their dates.
    files.sort_by_key(|f| f.file_name().map(|n| n.to_owned()));
    Ok(files)
}

/// The newest `results_<date>.json` that `path` names (see [`find_all_results`]), which must hold one model's runs;
/// its date id comes back too, to find the samples.
pub fn find_results(path: &Path) -> Result<(PathBuf, String), String> {
    let files = find_all_results(path)?;
    let mut folders: Vec<&Path> = files.iter().filter_map(|f| f.parent()).collect();
    folders.sort();
    folders.dedup();
    if folders.len() > 1 {
        return Err(format!(
            "{} holds results of {} models; name one folder: {}",
            path.display(),
            folders.len(),
            folders.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ));
    }
    let newest = files.last().expect("find_all_results returns at least one file");
    Ok((newest.clone(), results_date(newest).expect("found by its name")))
}

/// Reads a results file that [`find_results`] found.
pub fn read_results(path: &Path) -> Result<(RunResults, PathBuf, String), String> {
    let (file, date) = find_results(path)?;
    let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let results = serde_json::from_str(&text).map_err(|e| {
        let value: Option<Value> = serde_json::from_str(&text).ok();
        match value.as_ref().map(|v| v.get("ibex").is_some()) {
            Some(false) => format!("{} has no `ibex` block: lm-eval wrote it, not ibex", file.display()),
            _ => format!("{} is not an ibex results file: {e}", file.display()),
        }
    })?;
    Ok((results, file, date))
}

/// The model and settings of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelRecord {
    /// The `--model` argument.
    pub model: String,
    /// The checkpoint commit for a hub model; `null` for a local folder.
    pub revision: Option<String>,
    /// `f32`, `bf16` or `f16`.
    pub dtype: String,
    /// The device that ran (`cpu`, `cuda:0`).
    pub device: String,
    /// Requests per forward pass: a number, or `auto`.
    pub batch_size: String,
    /// The first size `auto` tried.
    #[serde(default)]
    pub max_batch_size: Option<usize>,
    /// The BOS policy applied (`auto`, `true`, `false`).
    pub add_bos_token: String,
    /// Whose task definitions the run mirrored: `lm-eval` or `bsc` (BSC's fork; `--recipes`).
    #[serde(default = "lm_eval_recipes")]
    pub recipes: String,
    /// Which 1/N of every task's documents this run evaluated (`--shard I/N`), if sharded.
    #[serde(default)]
    pub shard: Option<Shard>,
    /// The shipped model recipe (configs/models) that supplied settings the flags left open, if any.
    #[serde(default)]
    pub recipe: Option<String>,
    /// Whether non-empty strings were encoded with special tokens (the resolved BOS policy).
    pub add_special_tokens: bool,
    /// What encoding with special tokens added: the tokenizer class's rule and the ids it put first and last.
    #[serde(default)]
    pub special_tokens: Option<crate::SpecialTokens>,
    /// The generation settings applied (end-of-sequence ids and their file), when a task generated.
    #[serde(default)]
    pub generation: Option<crate::GenerationConfig>,
    /// `--limit`, if any.
    pub limit: Option<usize>,
    /// Few-shot examples per document.
    pub num_fewshot: usize,
    /// Seed of the few-shot sampler.
    pub fewshot_seed: u64,
    /// Tokens generated at most where a task does not say.
    pub max_gen_toks: usize,
    /// Parameters in the checkpoint's weights (0 until the model is loaded).
    #[serde(default)]
    pub parameters: u64,
    /// The chat template applied (`--apply-chat-template`), by name (`default` for a tokenizer's only one).
    #[serde(default)]
    pub chat_template_name: Option<String>,
    /// SHA-256 of the applied chat template's text.
    #[serde(default)]
    pub chat_template_sha: Option<String>,
    /// `--system-instruction`, if any.
    #[serde(default)]
    pub system_instruction: Option<String>,
    /// Whether few-shot examples were separate chat turns (`--fewshot-as-multiturn`).
    #[serde(default)]
    pub fewshot_as_multiturn: bool,
}

/// `--shard I/N`: the documents at positions `p` with `p % count == index` of every task (after `--limit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard, from 0.
    pub index: usize,
    /// How many shards the run is split into.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// `I/N` with `0 ≤ I < N` (Slurm's `$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT` for an array `0-(N-1)`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parsed = text.split_once('/').and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if index < count => Ok(Shard { index, count }),
            _ => Err(format!("`{text}` is not I/N with 0 <= I < N (e.g. 0/4 … 3/4)")),
        }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Provenance of one task's numbers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task file.
    pub task_file: String,
    /// SHA-256 of the task file.
    pub task_file_sha256: String,
    /// The evaluated split.
    pub split: String,
    /// The data file read.
    pub data_file: String,
    /// The dataset repo and commit, when the data came from the hub.
    pub dataset: Option<String>,
    /// Documents evaluated.
    pub n: usize,
    /// Wall time of the task's requests, in seconds.
    #[serde(default)]
    pub seconds: f64,
    /// Tokens the model processed for the task (inputs, prompts, generated tokens; no padding).
    #[serde(default)]
    pub tokens: u64,
    /// Of those, the tokens the model ran: a prefix that several requests share counts once.
    #[serde(default)]
    pub tokens_computed: u64,
}

/// The recipe set of a results file written before `recipes` was recorded: lm-eval's, the only one there was.
fn lm_eval_recipes() -> String {
    "lm-eval".to_owned()
}
