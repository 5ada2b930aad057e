//! The interface a backend implements.

use crate::TokenRequest;
use serde::Serialize;

/// The score of one continuation: lm-eval's `(loglikelihood, is_greedy)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TokenScore {
    /// Sum of the continuation tokens' log-probabilities (natural log).
    pub logprob: f64,
    /// Whether every continuation token is the model's argmax at its position.
    pub is_greedy: bool,
}

/// A failure inside a backend.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The backend ran out of device memory.
    #[error("out of memory on {device} while scoring a batch of {batch} sequences; try a smaller --batch-size")]
    OutOfMemory {
        /// The device that failed.
        device: String,
        /// The batch size that did not fit.
        batch: usize,
    },
    /// Any other backend failure, with the backend's own message.
    #[error("{0}")]
    Backend(String),
}

/// A causal language model that scores token sequences. Backends see tokens only, never tasks or text: the
/// tokenization contract is applied before, by [`crate::Encoder`].
pub trait LanguageModel {
    /// The context window: lm-eval's `max_length` (the checkpoint's `max_position_embeddings`).
    fn max_length(&self) -> usize;

    /// Scores a batch; the answers come back in the order of `batch`.
    fn score(&mut self, batch: &[TokenRequest]) -> Result<Vec<TokenScore>, ModelError>;

    /// Greedy decoding from each of `prompts`: appends the argmax token (the first on ties) to a row until
    /// `stop(row, tokens_so_far)` returns true (asked after each token, that token included) or `max_new_tokens` are
    /// generated. Each row stops on its own, so a row's output does not depend on the others.
    fn generate(
        &mut self,
        prompts: &[Vec<u32>],
        max_new_tokens: usize,
        stop: &mut dyn FnMut(usize, &[u32]) -> bool,
    ) -> Result<Vec<Vec<u32>>, ModelError>;
}
