//! ibex's shared vocabulary. Everything here is independent of any backend (no Candle) and of any task family:
//! what a task asks of a model ([`Request`]), how that request becomes tokens exactly as lm-evaluation-harness
//! builds them ([`Encoder`]), what a model must answer (the text-level [`LanguageModel`], the token-level [`TokenModel`] a backend
//! implements, and the [`TemplateLm`] adapter between them), how per-sample scores aggregate
//! ([`metrics`]), and the schema of what a run writes ([`results`]).
//!
//! A key design decision is that the tokenization contract lives here, once, rather than in each backend: lm-eval's
//! `TemplateLM` does the same, which is why every lm-eval backend builds identical token sequences. A backend only
//! receives token ids ([`TokenRequest`]) and returns log-likelihoods.
#![deny(missing_docs)]

pub mod cache;
mod encode;
mod generation;
pub mod metrics;
mod model;
pub mod placement;
pub mod prefix;
pub mod prompt;
mod pyrandom;
pub mod python;
pub mod python_json;
mod request;
pub mod results;
mod settings;
mod task;
mod template_lm;

pub use encode::{BosPolicy, EncodeError, Encoder, SpecialTokenRule, SpecialTokens, StopCriteria, TokenizerFiles};
pub use generation::{GenerationConfig, GenerationConfigError};
pub use metrics::Metric;
pub use model::{LanguageModel, ModelError, RequestState, ScoreSink, TextSink, TokenModel, TokenScore};
pub use pyrandom::PyRandom;
pub use request::{GenerateRequest, LoglikelihoodRequest, Request, Response, TokenRequest, DEFAULT_MAX_GEN_TOKS};
pub use settings::{
    human_bytes, parse_bytes, BatchSize, DeviceSpec, Devices, Dtype, MaxMemory, DEFAULT_MAX_BATCH_SIZE,
};
pub use task::{
    DataSpec, Doc, FewshotSampler, SampleScore, ShotDelimiters, Task, TaskError, TaskHeader, DEFAULT_FEWSHOT_DELIMITER,
    NO_FILTER,
};
pub use template_lm::{generation_prompt, scoring_tokens, TemplateLm};
