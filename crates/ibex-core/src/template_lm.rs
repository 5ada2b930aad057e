//! The one adapter between the two model seams: lm-eval's `TemplateLM` (`lm_eval/api/model.py`) and the request
//! ordering of `HFLM` (`lm_eval/models/huggingface.py`). It owns the tokenization contract ([`Encoder`]), the length
//! sorting and batching, and the stop criteria; the backend below it sees token ids only.

use crate::prefix::{share_prefixes, Row};
use crate::{
    BatchSize, Encoder, GenerateRequest, GenerationConfig, LanguageModel, LoglikelihoodRequest, ModelError,
    RequestState, ScoreSink, TextSink, TokenModel, TokenRequest, TokenScore,
};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// A [`TokenModel`] made a [`LanguageModel`].
pub struct TemplateLm<'e, M> {
    model: M,
    encoder: &'e Encoder,
    generation: GenerationConfig,
    batch_size: BatchSize,
    /// The size the next batch takes: the fixed size, or `auto`'s current one (it only shrinks).
    current: usize,
    /// Each size batches were run at, in the order first used (lm-eval's `batch_sizes`).
    sizes_used: Vec<usize>,
    max_gen_toks: usize,
    tokens_processed: u64,
    tokens_computed: u64,
}

impl<'e, M: TokenModel> TemplateLm<'e, M> {
    /// `generation` is the checkpoint's generation config; `max_gen_toks` is lm-eval's model-level default, used by
    /// requests that do not set their own.
    pub fn new(
        model: M,
        encoder: &'e Encoder,
        generation: GenerationConfig,
        batch_size: BatchSize,
        max_gen_toks: usize,
    ) -> Self {
        let current = match batch_size {
            BatchSize::Fixed(size) => size.get(),
            BatchSize::Auto { max } => max.get(),
        };
        Self {
            model,
            encoder,
            generation,
            batch_size,
            current,
            sizes_used: Vec::new(),
            max_gen_toks,
            tokens_processed: 0,
            tokens_computed: 0,
        }
    }

    /// Under `auto`, halves the batch size after an out-of-memory error so the failed batch can be retried;
    /// false when there is nothing to halve (a fixed size, or one request already).
    fn shrink(&mut self) -> bool {
        let shrinks = matches!(self.batch_size, BatchSize::Auto { .. }) && self.current > 1;
        if shrinks {
            self.current /= 2;
        }
        shrinks
    }

    /// Notes that a batch ran at the current size.
    fn ran(&mut self) {
        if !self.sizes_used.contains(&self.current) {
            self.sizes_used.push(self.current);
        }
    }
}

/// A loglikelihood request's tokens, as lm-eval builds and checks them: both sides non-empty, the continuation no
/// longer than the context window `window`.
pub fn scoring_tokens(
    encoder: &Encoder,
    request: &LoglikelihoodRequest,
    window: usize,
) -> Result<TokenRequest, String> {
    let tokens = encoder.encode(request).map_err(|e| e.to_string())?;
    if tokens.continuation.len() > window {
        return Err(format!(
            "continuation of {} tokens exceeds the model's context window of {window}",
            tokens.continuation.len()
        ));
    }
    Ok(tokens)
}

/// A generation prompt for lm-eval's `generate_until`: encoded with the tokenizer's default special tokens and
/// left-truncated to leave `budget` tokens of the context window `window` for the answer; at least one token.
pub fn generation_prompt(encoder: &Encoder, context: &str, window: usize, budget: usize) -> Result<Vec<u32>, String> {
    if budget >= window {
        return Err(format!(
            "max_gen_toks {budget} leaves no room for a prompt in the model's context window of {window}; \
             pass a smaller --max-gen-toks"
        ));
    }
    let prompt = encoder.encode_prompt(context, window - budget).map_err(|e| e.to_string())?;
    if prompt.is_empty() {
        return Err("the prompt encodes to no tokens; a generation needs at least one".into());
    }
    Ok(prompt)
}

impl<M: TokenModel> LanguageModel for TemplateLm<'_, M> {
    fn max_length(&self) -> usize {
        self.model.max_length()
    }

    /// Tokenizes every request, groups each document's requests whose inputs share a prefix into rows
    /// ([`crate::prefix::share_prefixes`]), then scores the rows longest first in batches of `batch_size` rows (as
    /// lm-eval's `Collator` orders requests, so the first batch shows whether memory suffices; under `auto` a batch
    /// that runs out of memory is retried at half the size), and returns the scores in request order. Rows are
    /// formed from every request, known or not, and a row whose requests are all known is skipped: `done` records
    /// whole batches, so after a kill a row is either recorded or not, and a resumed run computes the same rows.
    fn loglikelihood(
        &mut self,
        requests: &[LoglikelihoodRequest],
        states: &[RequestState],
        done: &mut ScoreSink<'_>,
    ) -> Result<Vec<TokenScore>, ModelError> {
        let state = |i: usize| states.get(i).copied().unwrap_or_default();
        let known = |i: usize| state(i).known;
        let window = self.model.max_length();
        // Encoded on every core, then collected in order, so an error names the first failing request.
        let tokens = requests
            .par_iter()
            .enumerate()
            .map(|(index, request)| {
                scoring_tokens(self.encoder, request, window).map_err(|message| ModelError::Request { index, message })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<Result<Vec<TokenRequest>, _>>()?;
        let inputs: Vec<Vec<u32>> = tokens.iter().map(|t| t.model_input(window).0).collect();
        let mut documents: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..requests.len() {
            documents.entry(state(i).document).or_default().push(i);
        }
        let rows: Vec<Row> = documents
            .values()
            .flat_map(|members| {
                let document_inputs: Vec<&[u32]> = members.iter().map(|&i| inputs[i].as_slice()).collect();
                share_prefixes(&document_inputs)
                    .into_iter()
                    .map(|row| Row { members: row.members.iter().map(|&m| members[m]).collect(), nodes: row.nodes })
            })
            .collect();
        let mut order: Vec<usize> =
            (0..rows.len()).filter(|&r| rows[r].members.iter().any(|&i| known(i).is_none())).collect();
        order.sort_by_key(|&r| std::cmp::Reverse(rows[r].nodes));
        let mut scores: Vec<Option<TokenScore>> = (0..tokens.len()).map(known).collect();
        let mut start = 0;
        while start < order.len() {
            // One batch per replica; each batch is the one a single device would run, so scores do not depend on
            // how many replicas there are.
            let batches: Vec<&[usize]> = order[start..].chunks(self.current).take(self.model.replicas()).collect();
            let batch_rows: Vec<Vec<Vec<TokenRequest>>> = batches
                .iter()
                .map(|batch| {
                    batch.iter().map(|&r| rows[r].members.iter().map(|&i| tokens[i].clone()).collect()).collect()
                })
                .collect();
            let result = self.model.score_batches(&batch_rows);
            if matches!(result, Err(ModelError::OutOfMemory { .. })) && self.shrink() {
                continue;
            }
            for (batch, batch_scores) in batches.iter().zip(result?) {
                let answered: Vec<(usize, TokenScore)> = batch
                    .iter()
                    .zip(batch_scores)
                    .flat_map(|(&r, row_scores)| rows[r].members.iter().copied().zip(row_scores))
                    .filter(|&(i, _)| known(i).is_none())
                    .collect();
                self.ran();
                self.tokens_processed += answered.iter().map(|&(i, _)| inputs[i].len() as u64).sum::<u64>();
                self.tokens_computed += batch.iter().map(|&r| rows[r].nodes as u64).sum::<u64>();
                done(&answered).map_err(ModelError::Sink)?;
                for (i, score) in answered {
                    scores[i] = Some(score);
                }
                start += batch.len();
            }
        }
        Ok(scores.into_iter().map(|s| s.expect("every request is in one row")).collect())
    }

    /// Groups requests by their stop strings and budget (lm-eval's `Collator` groups by generation settings), then
    /// generates longest prompt first in batches. Each row stops on its own (lm-eval's batch-size-1 behaviour;
    /// lm-eval's batches stop only when every row has, which makes its output depend on the batch size).
    fn generate_until(
        &mut self,
        requests: &[GenerateRequest],
        done: &mut TextSink<'_>,
    ) -> Result<Vec<String>, ModelError> {
        let mut groups: BTreeMap<(&[String], usize), Vec<usize>> = BTreeMap::new();
        for (index, request) in requests.iter().enumerate() {
            let budget = request.max_gen_toks.unwrap_or(self.max_gen_toks);
            groups.entry((&request.until, budget)).or_default().push(index);
        }
        let mut texts = vec![None; requests.len()];
        for ((until, budget), members) in groups {
            let window = self.model.max_length();
            let prompts = members
                .par_iter()
                .map(|&index| {
                    generation_prompt(self.encoder, &requests[index].context, window, budget)
                        .map_err(|message| ModelError::Request { index, message })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
            let mut order: Vec<usize> = (0..members.len()).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(prompts[i].len()));
            let stop = self.encoder.stop_criteria(until, &self.generation.eos_token_ids)?;
            let mut start = 0;
            while start < order.len() {
                let batches: Vec<&[usize]> = order[start..].chunks(self.current).take(self.model.replicas()).collect();
                let batch_prompts: Vec<Vec<Vec<u32>>> =
                    batches.iter().map(|batch| batch.iter().map(|&i| prompts[i].clone()).collect()).collect();
                let result = self.model.generate_batches(&batch_prompts, budget, &stop);
                if matches!(result, Err(ModelError::OutOfMemory { .. })) && self.shrink() {
                    continue;
                }
                for ((batch, batch_prompts), outputs) in batches.iter().zip(&batch_prompts).zip(result?) {
                    self.ran();
                    start += batch.len();
                    let prompt_tokens: usize = batch_prompts.iter().map(Vec::len).sum();
                    let generated_tokens: usize = outputs.iter().map(Vec::len).sum();
                    self.tokens_processed += (prompt_tokens + generated_tokens) as u64;
                    self.tokens_computed += (prompt_tokens + generated_tokens) as u64;
                    let answered = batch
                        .iter()
                        .zip(outputs)
                        .map(|(&i, generated)| Ok((members[i], stop.generated_text(&generated)?)))
                        .collect::<Result<Vec<(usize, String)>, ModelError>>()?;
                    done(&answered).map_err(ModelError::Sink)?;
                    for (index, text) in answered {
                        texts[index] = Some(text);
                    }
                }
            }
        }
        Ok(texts.into_iter().map(|t| t.expect("every request is in one group")).collect())
    }

    fn tokens_processed(&self) -> u64 {
        self.tokens_processed
    }

    fn tokens_computed(&self) -> u64 {
        self.tokens_computed
    }

    fn batch_sizes(&self) -> Vec<usize> {
        self.sizes_used.clone()
    }
}
