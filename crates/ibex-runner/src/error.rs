//! Everything that stops a run, each with what to do about it. The binary prints an error with its sources joined
//! by ": ", so a variant's message never repeats its source's.

use std::path::PathBuf;

/// Anything that stops a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A task file, group or task name.
    #[error(transparent)]
    Registry(#[from] crate::RegistryError),
    /// A `--data` argument is unusable.
    #[error("--data {0}")]
    Data(String),
    /// The run's tasks, data and settings do not fit together (no tasks, no documents, too few few-shot examples, a
    /// split no file is known for).
    #[error("{0}")]
    Plan(String),
    /// A suite cannot be found or read.
    #[error("{0}")]
    Suite(String),
    /// A model recipe in `configs/models` is malformed.
    #[error("model recipe {path}")]
    Recipe {
        /// The recipe file.
        path: String,
        /// The TOML error.
        #[source]
        source: toml::de::Error,
    },
    /// Model files.
    #[error(transparent)]
    Hub(#[from] ibex_hub::HubError),
    /// The tokenizer cannot be built as transformers builds it.
    #[error(transparent)]
    Tokenizer(#[from] ibex_core::EncodeError),
    /// The checkpoint's generation settings.
    #[error(transparent)]
    Generation(#[from] ibex_core::GenerationConfigError),
    /// A task's data file cannot be had from the hub.
    #[error("task {task} reads split `{split}` from the hub (or pass it with --data {task}:{split}=PATH)")]
    Dataset {
        /// The task.
        task: String,
        /// The split.
        split: String,
        /// The hub's error.
        #[source]
        source: ibex_hub::HubError,
    },
    /// A data file.
    #[error(transparent)]
    Rows(#[from] ibex_data::DataError),
    /// A data row does not fit its task.
    #[error("task {task}, data {file}")]
    Task {
        /// The task.
        task: String,
        /// The data file.
        file: String,
        /// The row error.
        #[source]
        source: ibex_core::TaskError,
    },
    /// One request cannot be answered.
    #[error("task {task}, document {doc}")]
    Request {
        /// The task.
        task: String,
        /// The document's `doc_id`.
        doc: usize,
        /// The model's error.
        #[source]
        source: ibex_core::ModelError,
    },
    /// The model failed mid-run.
    #[error("task {task}")]
    Model {
        /// The task.
        task: String,
        /// The model's error.
        #[source]
        source: ibex_core::ModelError,
    },
    /// A request cannot be encoded as lm-eval would accept it (found while planning).
    #[error("task {task}, document {doc}: {message}")]
    Encode {
        /// The task.
        task: String,
        /// The document's `doc_id`.
        doc: usize,
        /// What is wrong and what to do.
        message: String,
    },
    /// A task's scores cannot be aggregated.
    #[error("task {task}: {message}")]
    Metric {
        /// The task.
        task: String,
        /// What is wrong.
        message: String,
    },
    /// Shard folders cannot be merged.
    #[error("merge: {0}")]
    Merge(String),
    /// Writing results failed.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}
