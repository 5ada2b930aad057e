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
    #[error("{0}")]
    Spec(String),
}

/// Where a task's data lives: a Hugging Face dataset repo and, per split, the candidate files inside it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// The dataset repo (`facebook/xnli`).
    pub dataset: String,
    /// A branch, tag or commit of the dataset repo; the default branch when absent.
    #[serde(default)]
    pub revision: Option<String>,
    /// The evaluated split.
    pub split: String,
    /// Per split, files inside the repo tried in order (hub layouts change; the first that exists is read).
    pub files: BTreeMap<String, Vec<String>>,
}

/// An evaluation task: turns data rows into documents, documents into requests, and responses into scores.
pub trait Task: Send + Sync {
    /// The task's name, identical to lm-eval's (`xnli_en`).
    fn name(&self) -> &str;

    /// Where the task's data lives by default.
    fn data(&self) -> &DataSpec;

    /// Builds the document for data row `row` of the evaluated split, applying the task's preprocessing.
    fn doc(&self, row: usize, fields: &Map<String, Value>) -> Result<Doc, TaskError>;

    /// The requests one document needs (one per choice for multiple choice).
    fn requests(&self, doc: &Doc) -> Vec<Request>;

    /// Scores a document from the responses to its [`Task::requests`], in the same order.
    fn score(&self, doc: &Doc, responses: &[Response]) -> SampleScore;

    /// The metrics [`Task::score`] reports, in display order.
    fn metrics(&self) -> &[&'static str];
}
