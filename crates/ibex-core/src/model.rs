//! The two model seams. [`LanguageModel`] is lm-eval's `LM` (`lm_eval/api/model.py`): text in, answers out; the runner
//! talks to nothing else. [`TokenModel`] is what a backend implements: token ids in, scores and token ids out. One
//! adapter, [`crate::TemplateLm`] (lm-eval's `TemplateLM`), joins them and owns everything between text and tokens.

use crate::{EncodeError, GenerateRequest, LoglikelihoodRequest, StopCriteria, TokenRequest};
use serde::Serialize;

/// The score of one continuation: lm-eval's `(loglikelihood, is_greedy)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TokenScore {
    /// Sum of the continuation tokens' log-probabilities (natural log).
    pub logprob: f64,
    /// Whether every continuation token is the model's argmax at its position.
    pub is_greedy: bool,
}

/// What the runner knows of a loglikelihood request besides its text.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RequestState {
    /// The document it belongs to. Only requests of one document compute a shared prefix together, so a document
    /// scores the same, to the bit, in any shard, batch or resumed run.
    pub document: usize,
    /// Its answer, when an interrupted run recorded it. A model that computes requests together plans that work as
    /// if nothing were known, so a resumed run computes what the uninterrupted one would have.
    pub known: Option<TokenScore>,
}

/// A failure inside a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The backend ran out of device memory.
    #[error(
        "out of memory on {device} while scoring a batch of {batch} sequences; try a smaller --batch-size, or \
         --batch-size auto"
    )]
    OutOfMemory {
        /// The device that failed.
        device: String,
        /// The batch size that did not fit.
        batch: usize,
    },
    /// One request cannot be answered (it encodes to nothing, or does not fit the context window).
    #[error("{message}")]
    Request {
        /// The request's index in the slice the model was given.
        index: usize,
        /// What is wrong and what to do.
        message: String,
    },
    /// The caller's sink refused a batch's answers (a journal that cannot be written); the model stops.
    #[error("cannot record answers: {0}")]
    Sink(String),
    /// The tokenizer failed while checking a stop criterion.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Any other backend failure, with the backend's own message.
    #[error("{0}")]
    Backend(String),
}

/// Where a model hands each finished batch's scores, as (index into its requests, score), before it starts the next
/// batch; an `Err` stops the model.
pub type ScoreSink<'a> = dyn FnMut(&[(usize, TokenScore)]) -> Result<(), String> + 'a;

/// Where a model hands each finished batch's generations, as (index into its requests, text), before it starts the
/// next batch; an `Err` stops the model.
pub type TextSink<'a> = dyn FnMut(&[(usize, String)]) -> Result<(), String> + 'a;

/// A causal language model at lm-eval's level: requests as text, answers in the order of the requests. What it does
/// between text and answers (tokenization, sorting, batching, devices) is its own business.
pub trait LanguageModel {
    /// The context window in tokens: lm-eval's `max_length`.
    fn max_length(&self) -> usize;

    /// lm-eval's `loglikelihood`: one score per request, each newly computed one also handed to `done` as its batch
    /// finishes. `states` (one per request, or empty: one document, nothing known) says which document each request
    /// belongs to and holds the answers an interrupted run already recorded, which are returned as they are.
    fn loglikelihood(
        &mut self,
        requests: &[LoglikelihoodRequest],
        states: &[RequestState],
        done: &mut ScoreSink<'_>,
    ) -> Result<Vec<TokenScore>, ModelError>;

    /// lm-eval's `generate_until`: one generated text per request, cut at its first stop string, each also handed
    /// to `done` as its batch finishes.
    fn generate_until(
        &mut self,
        requests: &[GenerateRequest],
        done: &mut TextSink<'_>,
    ) -> Result<Vec<String>, ModelError>;

    /// Tokens the model has processed so far (scored inputs, prompts and generated tokens; padding excluded): the
    /// runner reports throughput from it.
    fn tokens_processed(&self) -> u64;

    /// Of [`LanguageModel::tokens_processed`], the tokens the model ran: a prefix that several requests share
    /// counts once.
    fn tokens_computed(&self) -> u64;

    /// The batch sizes requests ran at so far, each once, in the order first used (lm-eval's `batch_sizes`).
    fn batch_sizes(&self) -> Vec<usize>;
}

/// A causal language model at the token level: what a backend (Candle on CPU or CUDA) implements. It never sees
/// text, tasks or the tokenizer's rules.
pub trait TokenModel {
    /// The context window: the checkpoint's `max_position_embeddings`.
    fn max_length(&self) -> usize;

    /// Scores a batch of rows, each row the requests [`crate::prefix::share_prefixes`] grouped because their inputs
    /// begin alike (one request where nothing is shared). A backend may compute a row's shared prefix once (see
    /// [`crate::prefix::PrefixTree`]); each score must still equal the request's score alone, up to float noise.
    /// The answers come back per row, in the order of `batch` and of each row.
    fn score(&mut self, batch: &[Vec<TokenRequest>]) -> Result<Vec<Vec<TokenScore>>, ModelError>;

    /// How many batches the model runs at once: its replicas (copies on several devices); 1 for most backends.
    fn replicas(&self) -> usize {
        1
    }

    /// Scores up to [`TokenModel::replicas`] batches at once, each as [`TokenModel::score`] would; the answers come
    /// back per batch, in order. The default scores them one after another.
    fn score_batches(&mut self, batches: &[Vec<Vec<TokenRequest>>]) -> Result<Vec<Vec<Vec<TokenScore>>>, ModelError> {
        batches.iter().map(|batch| self.score(batch)).collect()
    }

    /// Generates for up to [`TokenModel::replicas`] batches of prompts at once, each as [`TokenModel::generate`]
    /// would; the answers come back per batch, in order. The default runs them one after another.
    fn generate_batches(
        &mut self,
        batches: &[Vec<Vec<u32>>],
        max_new_tokens: usize,
        stop: &StopCriteria,
    ) -> Result<Vec<Vec<Vec<u32>>>, ModelError> {
        batches.iter().map(|prompts| self.generate(prompts, max_new_tokens, stop)).collect()
    }

    /// Greedy decoding from each of `prompts`: appends the argmax token (the first on ties) to a row until `stop` is
    /// met for that row's generated tokens (checked after each token, that token included) or `max_new_tokens` are
    /// generated. Each row stops on its own, so a row's output does not depend on the others.
    fn generate(
        &mut self,
        prompts: &[Vec<u32>],
        max_new_tokens: usize,
        stop: &StopCriteria,
    ) -> Result<Vec<Vec<u32>>, ModelError>;
}
