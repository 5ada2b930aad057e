//! What a run writes: `results.json` ([`RunResults`]) and one `samples_<task>.jsonl` per task ([`SampleRecord`]).
//!
//! Sample lines follow lm-eval's `--log_samples` records key for key (`doc_id`, `doc`, `target`, `arguments`,
//! `resps`, `filtered_resps`, `filter`, `metrics`, the three hashes, then each metric), so tools written for lm-eval
//! logs read ibex's, and a line of each can be compared field by field. The schema may grow; keys are never renamed
//! without bumping [`SCHEMA_VERSION`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Version of the results schema.
pub const SCHEMA_VERSION: u32 = 1;

/// One line of `samples_<task>.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SampleRecord {
    /// Index of the document in the evaluated split.
    pub doc_id: usize,
    /// The document after the task's preprocessing.
    pub doc: Map<String, Value>,
    /// The gold answer.
    pub target: Value,
    /// Each request's arguments: `[context, continuation]`, or `[context, generation_kwargs]`.
    pub arguments: Vec<Value>,
    /// Each request's raw answers: `[[loglikelihood, is_greedy]]`, or `[generated_text]`.
    pub resps: Vec<Value>,
    /// Each request's answer after filtering (ibex applies none): `[loglikelihood, is_greedy]`, or the text.
    pub filtered_resps: Vec<Value>,
    /// The filter name; always `none`.
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

/// `results.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResults {
    /// [`SCHEMA_VERSION`] at writing.
    pub schema_version: u32,
    /// The ibex version that ran.
    pub ibex_version: String,
    /// The model and how it ran.
    pub model: ModelRecord,
    /// Per task, metrics named as lm-eval names them (`acc,none`, `acc_stderr,none`), plus `n`.
    pub results: BTreeMap<String, BTreeMap<String, Value>>,
    /// Per group (also in `results`), its tasks.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Per task and group, each metric's direction: lm-eval's `higher_is_better`.
    #[serde(default)]
    pub higher_is_better: BTreeMap<String, BTreeMap<String, bool>>,
    /// Per task, where its definition and data came from, and how long it took.
    pub tasks: BTreeMap<String, TaskRecord>,
    /// Wall time from the first task's first request to the last result, in seconds (lm-eval's
    /// `total_evaluation_time_seconds`; loading the model is not counted).
    #[serde(default)]
    pub total_evaluation_time_seconds: f64,
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
    /// Requests per forward pass.
    pub batch_size: usize,
    /// The BOS policy applied (`auto`, `true`, `false`).
    pub add_bos_token: String,
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
    /// The chat template applied (`--apply-chat-template`), by name (`default` for a tokenizer's only one).
    #[serde(default)]
    pub chat_template: Option<String>,
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
}
