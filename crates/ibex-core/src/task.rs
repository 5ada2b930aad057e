//! The interface a task family implements. Tasks see text and JSON, never a backend.

use crate::{Request, Response};
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

/// How one document scored.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleScore {
    /// The gold answer as lm-eval logs it under `target`.
    pub target: Value,
    /// Each metric's per-sample value (e.g. `acc` → 1.0), averaged over documents by the runner.
    pub metrics: BTreeMap<String, f64>,
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

/// The text in column `column` of data row `row`, or an error naming both.
pub fn text_field(row: usize, fields: &Map<String, Value>, column: &str) -> Result<String, TaskError> {
    match fields.get(column) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(TaskError::row(row, column, format!("expected text, found {other}"))),
        None => {
            Err(TaskError::row(row, column, "missing; set [fields] in the task file if the column is named otherwise"))
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
    /// Per split, files inside the repo tried in order (hub layouts change; the first that exists is read).
    #[serde(default)]
    pub files: BTreeMap<String, Vec<String>>,
}

impl DataSpec {
    /// The evaluated split: lm-eval evaluates the test split when a task has one, else the validation split.
    pub fn eval_split(&self) -> Option<&str> {
        self.test_split.as_deref().or(self.validation_split.as_deref())
    }

    /// Where few-shot examples come from: training, else validation, else test (lm-eval's `fewshot_docs`).
    pub fn fewshot_split(&self) -> Option<&str> {
        self.training_split.as_deref().or(self.validation_split.as_deref()).or(self.test_split.as_deref())
    }

    /// Whether the sampler excludes the evaluated document: lm-eval passes `eval_doc` to its sampler only when the
    /// task's few-shot split setting equals its test split, which for task files without one means "no test split".
    /// It then draws k + 1 examples and drops the evaluated document.
    pub fn fewshot_excludes_eval_doc(&self) -> bool {
        self.test_split.is_none()
    }
}

/// An evaluation task: turns data rows into documents, documents into requests, and responses into scores.
pub trait Task: Send + Sync {
    /// The task's name, identical to lm-eval's (`xnli_en`).
    fn name(&self) -> &str;

    /// Where the task's data lives by default.
    fn data(&self) -> &DataSpec;

    /// Builds the document for data row `row` of the evaluated split, applying the task's preprocessing.
    fn doc(&self, row: usize, fields: &Map<String, Value>) -> Result<Doc, TaskError>;

    /// The requests one document needs (one per choice for multiple choice), after `fewshot_context` (the
    /// concatenated [`Task::fewshot_example`]s of the chosen shots; empty at zero shots).
    fn requests(&self, doc: &Doc, fewshot_context: &str) -> Vec<Request>;

    /// A solved example for few-shot prompts, with lm-eval's delimiters: `doc_to_text + target_delimiter + gold
    /// answer + fewshot_delimiter`.
    fn fewshot_example(&self, doc: &Doc) -> String;

    /// Scores a document from the responses to its [`Task::requests`], in the same order.
    fn score(&self, doc: &Doc, responses: &[Response]) -> SampleScore;

    /// The metrics [`Task::score`] reports, in display order.
    fn metrics(&self) -> &[&'static str];
}
