//! The interface a task implements ([`Task`]) and the settings every task has ([`TaskHeader`]). Tasks see text and
//! JSON, never a backend.

use crate::metrics::Metric;
use crate::prompt::Output;
use crate::Response;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One evaluated document after the task's preprocessing.
#[derive(Clone, Debug, PartialEq)]
pub struct Doc {
    /// Index of the row in the evaluated split: lm-eval's `doc_id`, the join key of sample logs and parity tests.
    pub id: usize,
    /// The document's fields after preprocessing, as lm-eval logs them under `doc`.
    pub fields: Map<String, Value>,
}

/// The filter lm-eval applies when a task names none (`take_first`): its results keys end in `,none`.
pub const NO_FILTER: &str = "none";

/// How one document scored under one of its task's filters (lm-eval's filter ensembles, `filter_list`).
#[derive(Clone, Debug, PartialEq)]
pub struct SampleScore {
    /// The filter's name, as results keys (`exact_match,strict-match`) and sample logs (`filter`) give it.
    pub filter: String,
    /// The responses after the filter, one per request (lm-eval's `filtered_resps`).
    pub filtered_resps: Vec<Response>,
    /// The gold answer as lm-eval logs it under `target`.
    pub target: Value,
    /// Each metric's per-sample item (`acc` → 1.0; `mcc` → `[gold, prediction]`), aggregated over documents as the
    /// task's [`Metric`] says.
    pub metrics: BTreeMap<String, Value>,
}

/// A task's definition is wrong, or a data row does not fit it.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A data row lacks a field or holds a value the task cannot use.
    #[error("row {row}, field `{field}`: {message}")]
    Row {
        /// Index of the row in its split.
        row: usize,
        /// The field at fault.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The task file itself is invalid.
    #[error("{message}")]
    Spec {
        /// What is wrong and what to do.
        message: String,
        /// Byte range of the offending value in the task file, when known, so the error can name its line.
        span: Option<std::ops::Range<usize>>,
    },
}

impl TaskError {
    /// A data-row error.
    pub fn row(row: usize, field: &str, message: impl Into<String>) -> Self {
        TaskError::Row { row, field: field.to_owned(), message: message.into() }
    }

    /// A task-file error without a location.
    pub fn spec(message: impl Into<String>) -> Self {
        TaskError::Spec { message: message.into(), span: None }
    }

    /// Attaches the byte range of the offending value to a task-file error.
    pub fn at(self, range: std::ops::Range<usize>) -> Self {
        match self {
            TaskError::Spec { message, .. } => TaskError::Spec { message, span: Some(range) },
            other => other,
        }
    }
}

/// Where a task's data lives: a Hugging Face dataset repo, lm-eval's three split roles, and per split the candidate
/// files inside the repo.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// The dataset repo (`facebook/xnli`).
    pub dataset: String,
    /// lm-eval's `dataset_name`: the dataset's config (`en`), whose card entry and folder name its files.
    #[serde(default)]
    pub config: Option<String>,
    /// A branch, tag or commit of the dataset repo; the default branch when absent.
    #[serde(default)]
    pub revision: Option<String>,
    /// lm-eval's `training_split`: the first choice for few-shot examples.
    #[serde(default)]
    pub training_split: Option<String>,
    /// lm-eval's `validation_split`: evaluated when there is no test split.
    #[serde(default)]
    pub validation_split: Option<String>,
    /// lm-eval's `test_split`: evaluated when set.
    #[serde(default)]
    pub test_split: Option<String>,
    /// lm-eval's `fewshot_split`: where few-shot examples come from, when set.
    #[serde(default)]
    pub fewshot_split: Option<String>,
    /// How few-shot examples are chosen (lm-eval's `fewshot_config.sampler`).
    #[serde(default)]
    pub fewshot_sampler: FewshotSampler,
    /// Per split, the files the task names (`dataset_kwargs.data_files`: paths, or patterns inside a hub dataset),
    /// which must come to one file; a hub split the task names no file for is found by the hub's own rules
    /// (`ibex_hub::resolve_dataset_split`).
    #[serde(default)]
    pub files: BTreeMap<String, Vec<String>>,
}

/// lm-eval's few-shot samplers (`lm_eval/api/samplers.py`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FewshotSampler {
    /// `default`: `random.Random(seed).sample` per document.
    #[default]
    Default,
    /// `first_n`: the pool's first k documents, in order (the evaluated one left out when excluded).
    FirstN,
}

impl DataSpec {
    /// The evaluated split: lm-eval evaluates the test split when a task has one, else the validation split.
    pub fn eval_split(&self) -> Option<&str> {
        self.test_split.as_deref().or(self.validation_split.as_deref())
    }

    /// Where few-shot examples come from: the few-shot split, else training, else validation, else test (lm-eval's
    /// `fewshot_docs`).
    pub fn fewshot_split(&self) -> Option<&str> {
        self.fewshot_split
            .as_deref()
            .or(self.training_split.as_deref())
            .or(self.validation_split.as_deref())
            .or(self.test_split.as_deref())
    }

    /// Whether the sampler excludes the evaluated document: lm-eval passes `eval_doc` to its sampler only when the
    /// task's few-shot split setting equals its test split (both unset: no test split). It then draws k + 1
    /// examples and drops the evaluated document.
    pub fn fewshot_excludes_eval_doc(&self) -> bool {
        self.fewshot_split == self.test_split
    }
}

/// lm-eval's default `fewshot_delimiter`, after each few-shot example.
pub const DEFAULT_FEWSHOT_DELIMITER: &str = "\n\n";

/// The part of a task's lm-eval config that is not about prompts.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TaskHeader {
    /// lm-eval's task name (`xnli_en`).
    pub name: String,
    /// ISO 639 code of the task's language, for listings.
    pub language: String,
    /// Between a prompt and its answer: lm-eval's `target_delimiter`.
    pub target_delimiter: String,
    /// lm-eval's `fewshot_delimiter`: between the system prompt and the task's description, and a generation's
    /// default stop string.
    pub fewshot_delimiter: String,
    /// How few-shot examples are delimited: lm-eval's `fewshot_config` delimiters.
    pub shots: ShotDelimiters,
    /// Where the data lives.
    pub data: DataSpec,
}

/// The delimiters of few-shot examples (lm-eval's `FewshotConfig.target_delimiter` and `fewshot_delimiter`, which
/// are the task's own unless `fewshot_config` sets them).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ShotDelimiters {
    /// Between an example's prompt and its answer.
    pub target_delimiter: String,
    /// After each example.
    pub fewshot_delimiter: String,
}

/// An evaluation task: turns data rows into documents, documents into requests, and responses into scores.
pub trait Task: Send + Sync {
    /// The task's settings.
    fn header(&self) -> &TaskHeader;

    /// The task's name, identical to lm-eval's (`xnli_en`).
    fn name(&self) -> &str {
        &self.header().name
    }

    /// The task's language code.
    fn language(&self) -> &str {
        &self.header().language
    }

    /// Where the task's data lives by default.
    fn data(&self) -> &DataSpec {
        &self.header().data
    }

    /// lm-eval's `process_docs`: a split's rows as the task evaluates or draws examples from them, which may drop
    /// rows (document ids then count the kept rows, as lm-eval's do). Rows pass unchanged by default.
    fn process_docs(&self, rows: Vec<Map<String, Value>>) -> Result<Vec<Map<String, Value>>, TaskError> {
        Ok(rows)
    }

    /// Builds the document for data row `row` of the evaluated split, applying the task's preprocessing.
    fn doc(&self, row: usize, fields: &Map<String, Value>) -> Result<Doc, TaskError>;

    /// lm-eval's `doc_to_text`: the prompt of a document, before the target delimiter.
    fn doc_to_text(&self, doc: &Doc) -> String;

    /// lm-eval's `doc_to_target` as text: the gold answer a few-shot example shows.
    fn doc_to_target(&self, doc: &Doc) -> String;

    /// lm-eval's `fewshot_config.samples`: examples written in the task file, the few-shot pool when the task names
    /// no few-shot split (before training, validation and test are tried). `None` by default.
    fn fewshot_samples(&self) -> Option<Vec<Map<String, Value>>> {
        None
    }

    /// Builds the few-shot example of pool row `row` (`fields` as the pool gives them), checked against the
    /// templates examples are shown with (lm-eval's `fewshot_config`; the task's own by default).
    fn shot_doc(&self, row: usize, fields: &Map<String, Value>) -> Result<Doc, TaskError> {
        self.doc(row, fields)
    }

    /// A few-shot example's prompt: `fewshot_config.doc_to_text`, else [`Task::doc_to_text`].
    fn shot_text(&self, shot: &Doc) -> String {
        self.doc_to_text(shot)
    }

    /// A few-shot example's answer: `fewshot_config.doc_to_target` (and `doc_to_choice`), else
    /// [`Task::doc_to_target`].
    fn shot_target(&self, shot: &Doc) -> String {
        self.doc_to_target(shot)
    }

    /// lm-eval's `description` for a document (a template over its fields), put before the few-shot examples; empty
    /// for tasks without one.
    fn description(&self, _doc: &Doc) -> String {
        String::new()
    }

    /// What the document asks after its context: its choices, or a generation (lm-eval's `output_type`).
    /// [`crate::prompt`] builds the context and the requests from it, as lm-eval's `fewshot_context` and
    /// `construct_requests` do.
    fn output(&self, doc: &Doc) -> Output;

    /// Scores a document from the responses to its requests, in the order of [`Task::output`]: one score per
    /// filter, in the order of [`Task::filters`].
    fn score(&self, doc: &Doc, responses: &[Response]) -> Vec<SampleScore>;

    /// The names of the task's filters (lm-eval's `filter_list`), in the order its results and sample logs list
    /// them; [`NO_FILTER`] alone by default.
    fn filters(&self) -> Vec<String> {
        vec![NO_FILTER.to_owned()]
    }

    /// The metrics [`Task::score`] reports, in display order.
    fn metrics(&self) -> &[Metric];

    /// The task file's `num_fewshot`, if it sets one (`--num-fewshot` overrides it unless it is 0).
    fn num_fewshot(&self) -> Option<usize> {
        None
    }

    /// lm-eval's task version: the task file's `metadata.version`, as given; null when it gives none.
    fn version(&self) -> Value {
        Value::Null
    }
}
