//! Requests a task makes and the answers a model gives, in lm-eval's terms.

use crate::TokenScore;
use serde::Serialize;

/// lm-eval's `loglikelihood` request: the log-probability of `continuation` following `context`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoglikelihoodRequest {
    /// Text the model conditions on; may be empty.
    pub context: String,
    /// Text whose tokens are scored.
    pub continuation: String,
}

/// lm-eval's model-level `max_gen_toks` (`HFLM`'s default): the budget of generations whose task sets none.
pub const DEFAULT_MAX_GEN_TOKS: usize = 256;

/// lm-eval's `generate_until` request: greedy generation from `context` until one of `until` appears or
/// `max_gen_toks` tokens are generated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GenerateRequest {
    /// The prompt.
    pub context: String,
    /// Stop strings; the generated text is cut at the first of them.
    pub until: Vec<String>,
    /// The most tokens to generate, when the task sets it; else the model's default (lm-eval's model-level
    /// `max_gen_toks`, 256).
    pub max_gen_toks: Option<usize>,
    /// The task's `generation_kwargs` as lm-eval passes them with the request (`TaskConfig.__post_init__`: `until`
    /// added when absent, `temperature` a float; lm-eval's defaults without any), which sample logs write as the
    /// request's arguments. A model reads `until` and `max_gen_toks` only.
    pub generation_kwargs: serde_json::Map<String, serde_json::Value>,
}

/// What a task asks of a model, before tokenization. lm-eval's `multiple_choice` never reaches a model: a task
/// expands it into one [`Request::Loglikelihood`] per choice, as `ConfigurableTask.construct_requests` does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Request {
    /// See [`LoglikelihoodRequest`].
    Loglikelihood(LoglikelihoodRequest),
    /// See [`GenerateRequest`].
    Generate(GenerateRequest),
}

impl Request {
    /// The text the model conditions on.
    pub fn context(&self) -> &str {
        match self {
            Request::Loglikelihood(r) => &r.context,
            Request::Generate(r) => &r.context,
        }
    }
}

/// A model's answer to one [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Response {
    /// The answer to [`Request::Loglikelihood`]: `[loglikelihood, is_greedy]` in lm-eval's sample logs.
    Loglikelihood(TokenScore),
    /// The answer to [`Request::Generate`]: the generated text, cut at the first stop string.
    Generation(String),
}

impl Response {
    /// The summed log-likelihood, for a [`Response::Loglikelihood`].
    pub fn loglikelihood(&self) -> Option<f64> {
        match self {
            Response::Loglikelihood(score) => Some(score.logprob),
            Response::Generation(_) => None,
        }
    }

    /// The generated text, for a [`Response::Generation`].
    pub fn generation(&self) -> Option<&str> {
        match self {
            Response::Generation(text) => Some(text),
            Response::Loglikelihood(_) => None,
        }
    }
}

/// A loglikelihood request after tokenization: what a backend scores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// Context token ids (at least one: an empty context becomes lm-eval's prefix token).
    pub context: Vec<u32>,
    /// Continuation token ids, whose log-probabilities are summed.
    pub continuation: Vec<u32>,
}

impl TokenRequest {
    /// The model input and the number of scored positions, as lm-eval's `_loglikelihood_tokens` builds them:
    /// `(context + continuation)[-(max_length + 1):][:-1]`, so the prediction of every continuation token is read
    /// from the position before it. The scored positions are the last `continuation.len()` of the input (fewer only
    /// when truncation ate into the continuation itself).
    pub fn model_input(&self, max_length: usize) -> (Vec<u32>, usize) {
        let whole: Vec<u32> = self.context.iter().chain(&self.continuation).copied().collect();
        let start = whole.len().saturating_sub(max_length + 1);
        let input = whole[start..whole.len() - 1].to_vec();
        let scored = self.continuation.len().min(input.len());
        (input, scored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_input_drops_the_last_token_and_left_truncates() {
        let request = TokenRequest { context: vec![1, 2, 3], continuation: vec![4, 5] };
        assert_eq!(request.model_input(100), (vec![1, 2, 3, 4], 2));
        // max_length 3 keeps the last 4 tokens [2,3,4,5] and drops the final one.
        assert_eq!(request.model_input(3), (vec![2, 3, 4], 2));
    }

    #[test]
    fn truncation_into_the_continuation_scores_fewer_tokens() {
        let request = TokenRequest { context: vec![1], continuation: vec![2, 3, 4, 5] };
        let (input, scored) = request.model_input(2);
        assert_eq!(input, vec![3, 4]);
        assert_eq!(scored, 2);
    }
}
