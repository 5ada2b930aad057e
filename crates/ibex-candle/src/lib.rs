//! ibex's Candle backend: loads a LlamaForCausalLM checkpoint onto a device and scores token sequences.
//!
//! It implements [`ibex_core::TokenModel`] and sees token ids only; the tokenization contract and everything
//! task-shaped happen before it. Scoring projects to the vocabulary only the positions that are scored, a chunk of
//! rows at a time, so no `[batch, seq, vocab]` logits tensor is ever built (256k-vocabulary models make that tensor
//! larger than the model's activations).

mod device;
pub mod llama;

pub use device::{candle_dtype, device_handles, device_name, open_device, placement, DeviceError};

use candle_core::{DType, Tensor, D};
use candle_nn::VarBuilder;
use ibex_core::placement::Placement;
use ibex_core::{ModelError, StopCriteria, TokenModel, TokenRequest, TokenScore};
use llama::{Config, Llama, LlamaConfig};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Scored rows projected to the vocabulary at once: bounds the f32 logits block to about 512 MiB.
const LOGIT_BYTES_PER_CHUNK: usize = 512 << 20;

/// A checkpoint cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// config.json is unreadable, malformed or describes an unsupported model.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A device of the placement cannot be opened.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The safetensors files are unreadable or do not hold what config.json describes.
    #[error("cannot load weights from {files}: {message}")]
    Weights {
        /// The files, comma-separated.
        files: String,
        /// Candle's message.
        message: String,
    },
}

/// The number of parameters the safetensors `weights` hold (the product of every tensor's shape, summed), read from
/// their headers alone: transformers' `num_parameters()`, which lm-eval records as `model_num_parameters`.
pub fn parameter_count(weights: &[PathBuf]) -> Result<u64, LoadError> {
    let mut total = 0u64;
    for path in weights {
        let error = |message: String| LoadError::Weights { files: path.display().to_string(), message };
        let mut file = std::fs::File::open(path).map_err(|e| error(e.to_string()))?;
        let mut size = [0u8; 8];
        std::io::Read::read_exact(&mut file, &mut size).map_err(|e| error(e.to_string()))?;
        // The safetensors format caps its JSON header at 100 MB; a larger claim is a corrupt file.
        let length = u64::from_le_bytes(size);
        if length > 100_000_000 {
            return Err(error(format!("safetensors header of {length} bytes: not a safetensors file")));
        }
        let mut header = vec![0u8; length as usize];
        std::io::Read::read_exact(&mut file, &mut header).map_err(|e| error(format!("safetensors header: {e}")))?;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(|e| error(format!("safetensors header: {e}")))?;
        for (name, tensor) in header.iter().filter(|(name, _)| *name != "__metadata__") {
            let shape = tensor["shape"].as_array().ok_or_else(|| error(format!("tensor {name} has no shape")))?;
            total += shape.iter().map(|d| d.as_u64().unwrap_or(0)).product::<u64>();
        }
    }
    Ok(total)
}

/// A Llama checkpoint loaded as its [`Placement`] says: one copy per replica, each on one device or split over
/// several; replicas score batches side by side, one thread each.
pub struct CandleModel {
    replicas: Vec<Llama>,
}

impl CandleModel {
    /// Reads config.json and memory-maps the safetensors `weights` (one file, or every shard) as `dtype` on the
    /// devices of `placement`, each replica's layers where its stages say.
    pub fn load(
        config_json: &Path,
        weights: &[PathBuf],
        dtype: DType,
        placement: &Placement,
    ) -> Result<Self, LoadError> {
        let config = read_config(config_json)?;
        let files = || weights.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        let weights_error = |e: candle_core::Error| LoadError::Weights { files: files(), message: describe(&e) };
        let mut handles: BTreeMap<usize, VarBuilder> = BTreeMap::new();
        for stage in placement.replicas.iter().flatten() {
            if handles.contains_key(&stage.handle) {
                continue;
            }
            let device = open_device(stage.device)?;
            // SAFETY: the files are memory-mapped read-only; ibex never writes them, and the hub cache replaces files
            // by writing new blobs rather than modifying existing ones.
            #[allow(unsafe_code)]
            let vb = unsafe { VarBuilder::from_mmaped_safetensors(weights, dtype, &device) }.map_err(weights_error)?;
            handles.insert(stage.handle, vb);
        }
        let replicas = placement
            .replicas
            .iter()
            .map(|stages| {
                let stages: Vec<(VarBuilder, Range<usize>)> =
                    stages.iter().map(|s| (handles[&s.handle].clone(), s.layers.clone())).collect();
                Llama::new(&config, &stages).map_err(weights_error)
            })
            .collect::<Result<_, _>>()?;
        // Weights were uploaded (and cast) on this thread's streams; replicas read them from their own threads.
        for vb in handles.values() {
            vb.device().synchronize().map_err(weights_error)?;
        }
        Ok(Self { replicas })
    }

    /// Builds the model on one device from any variable source: safetensors, or a `VarMap` of random weights for
    /// benchmarks.
    pub fn new(config: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self { replicas: vec![Llama::new(config, &[(vb, 0..config.num_hidden_layers)])?] })
    }
}

/// Scores a batch on one replica.
fn score_batch(llama: &Llama, batch: &[TokenRequest]) -> candle_core::Result<Vec<TokenScore>> {
    let max_length = llama.config().max_position_embeddings;
    let inputs: Vec<(Vec<u32>, usize)> = batch.iter().map(|r| r.model_input(max_length)).collect();
    let width = inputs.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
    let mut padded = Vec::with_capacity(batch.len() * width);
    let mut positions = Vec::new();
    for (row, (ids, scored)) in inputs.iter().enumerate() {
        padded.extend_from_slice(ids);
        padded.resize((row + 1) * width, 0);
        let first = row * width + ids.len() - scored;
        positions.extend((first..first + scored).map(|p| p as u32));
    }
    let input_ids = Tensor::from_vec(padded, (batch.len(), width), llama.input_device())?;
    let hidden = llama.forward_hidden(&input_ids)?;
    let hidden = hidden.reshape((batch.len() * width, ()))?;
    // Each scored position predicts the next token: the last `scored` tokens of the continuation.
    let targets: Vec<u32> = batch
        .iter()
        .zip(&inputs)
        .flat_map(|(r, (_, scored))| r.continuation[r.continuation.len() - scored..].iter().copied())
        .collect();
    let (logprobs, greedy) = target_logprobs(llama, &hidden, &positions, &targets)?;
    let mut scores = Vec::with_capacity(batch.len());
    let mut offset = 0;
    for (_, scored) in &inputs {
        let range = offset..offset + scored;
        scores.push(TokenScore {
            logprob: logprobs[range.clone()].iter().map(|&lp| f64::from(lp)).sum(),
            is_greedy: greedy[range].iter().all(|&g| g),
        });
        offset += scored;
    }
    Ok(scores)
}

/// For each scored position of one replica's `hidden` states: the log-probability of its target token and whether
/// that token is the argmax.
fn target_logprobs(
    llama: &Llama,
    hidden: &Tensor,
    positions: &[u32],
    targets: &[u32],
) -> candle_core::Result<(Vec<f32>, Vec<bool>)> {
    let vocab = llama.config().vocab_size;
    let device = llama.output_device();
    let rows_per_chunk = (LOGIT_BYTES_PER_CHUNK / (vocab * 4)).max(1);
    let mut logprobs = Vec::with_capacity(targets.len());
    let mut greedy = Vec::with_capacity(targets.len());
    for (chunk_positions, chunk_targets) in positions.chunks(rows_per_chunk).zip(targets.chunks(rows_per_chunk)) {
        let index = Tensor::new(chunk_positions, device)?;
        let logits = llama.logits(&hidden.index_select(&index, 0)?)?.to_dtype(DType::F32)?;
        let log_softmax = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let target_ids = Tensor::new(chunk_targets, device)?.unsqueeze(1)?;
        logprobs.extend(log_softmax.gather(&target_ids, 1)?.squeeze(1)?.to_vec1::<f32>()?);
        let argmax = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
        greedy.extend(argmax.iter().zip(chunk_targets).map(|(a, t)| a == t));
    }
    Ok((logprobs, greedy))
}

/// Greedy decoding on one replica with a KV cache for a batch of prompts, left-padded to one width: the prompts in
/// one pass, then one token per row per step, so a step's cost does not grow with the prompts beyond attending to the
/// cache. A row stops on its own when `stop` is met for it; the batch ends when every row has.
fn generate_greedy(
    llama: &Llama,
    prompts: &[Vec<u32>],
    max_new_tokens: usize,
    stop: &StopCriteria,
) -> Result<Vec<Vec<u32>>, ModelError> {
    let candle_error = |e: candle_core::Error| model_error(llama, &e, prompts.len());
    let device = llama.input_device();
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let pads: Vec<usize> = prompts.iter().map(|p| width - p.len()).collect();
    let padded: Vec<u32> =
        prompts.iter().flat_map(|p| std::iter::repeat_n(0, width - p.len()).chain(p.iter().copied())).collect();
    let mut input = Tensor::from_vec(padded, (prompts.len(), width), device).map_err(candle_error)?;
    let mut cache = llama.new_cache(pads);
    let mut generated = vec![Vec::new(); prompts.len()];
    let mut done = vec![false; prompts.len()];
    for _ in 0..max_new_tokens {
        let next = llama
            .forward_cached(&input, &mut cache)
            .and_then(|logits| logits.to_dtype(DType::F32)?.argmax(D::Minus1)?.to_vec1::<u32>())
            .map_err(candle_error)?;
        for (row, &token) in next.iter().enumerate() {
            if !done[row] {
                generated[row].push(token);
                done[row] = stop.is_met(&generated[row])?;
            }
        }
        if done.iter().all(|&d| d) {
            break;
        }
        input = Tensor::from_vec(next, (prompts.len(), 1), device).map_err(candle_error)?;
    }
    Ok(generated)
}

/// A Candle error as the seam's: running out of memory is [`ModelError::OutOfMemory`] (which `auto` batch sizes
/// recover from), naming the replica's devices.
fn model_error(llama: &Llama, error: &candle_core::Error, batch: usize) -> ModelError {
    let message = describe(error);
    if message.contains("out of memory") || message.contains("OUT_OF_MEMORY") {
        let devices: Vec<String> = llama.devices().map(device_name).collect();
        ModelError::OutOfMemory { device: devices.join("+"), batch }
    } else {
        ModelError::Backend(message)
    }
}

/// Runs `work` on each batch with its own replica, one thread per batch when there are several.
fn on_replicas<B: Sync, T: Send>(
    replicas: &[Llama],
    batches: &[B],
    work: impl Fn(&Llama, &B) -> Result<T, ModelError> + Sync,
) -> Result<Vec<T>, ModelError> {
    assert!(batches.len() <= replicas.len(), "{} batches for {} replicas", batches.len(), replicas.len());
    if batches.len() == 1 {
        return batches.iter().map(|batch| work(&replicas[0], batch)).collect();
    }
    std::thread::scope(|scope| {
        let threads: Vec<_> = batches
            .iter()
            .zip(replicas)
            .map(|(batch, llama)| {
                let work = &work;
                scope.spawn(move || work(llama, batch))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

impl TokenModel for CandleModel {
    fn max_length(&self) -> usize {
        self.replicas[0].config().max_position_embeddings
    }

    fn replicas(&self) -> usize {
        self.replicas.len()
    }

    fn score(&mut self, batch: &[TokenRequest]) -> Result<Vec<TokenScore>, ModelError> {
        let llama = &self.replicas[0];
        score_batch(llama, batch).map_err(|e| model_error(llama, &e, batch.len()))
    }

    fn score_batches(&mut self, batches: &[Vec<TokenRequest>]) -> Result<Vec<Vec<TokenScore>>, ModelError> {
        on_replicas(&self.replicas, batches, |llama, batch| {
            score_batch(llama, batch).map_err(|e| model_error(llama, &e, batch.len()))
        })
    }

    fn generate(
        &mut self,
        prompts: &[Vec<u32>],
        max_new_tokens: usize,
        stop: &StopCriteria,
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        generate_greedy(&self.replicas[0], prompts, max_new_tokens, stop)
    }

    fn generate_batches(
        &mut self,
        batches: &[Vec<Vec<u32>>],
        max_new_tokens: usize,
        stop: &StopCriteria,
    ) -> Result<Vec<Vec<Vec<u32>>>, ModelError> {
        on_replicas(&self.replicas, batches, |llama, prompts| generate_greedy(llama, prompts, max_new_tokens, stop))
    }
}

/// Candle's message without the backtrace it appends when `RUST_BACKTRACE` is set, so a user's mistake stays one
/// line.
pub(crate) fn describe(error: &candle_core::Error) -> String {
    let text = match error {
        candle_core::Error::WithBacktrace { inner, .. } => return describe(inner),
        other => other.to_string(),
    };
    let frame = |line: &&str| {
        let trimmed = line.trim_start();
        trimmed.starts_with("at ")
            || trimmed.split_once(": ").is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
    };
    text.lines().filter(|line| !frame(line)).collect::<Vec<_>>().join(" ")
}

/// Reads and resolves config.json.
pub fn read_config(path: &Path) -> Result<Config, LoadError> {
    let config_error = |message: String| LoadError::Config { path: path.to_owned(), message };
    let text = std::fs::read_to_string(path).map_err(|e| config_error(e.to_string()))?;
    let raw: LlamaConfig = serde_json::from_str(&text).map_err(|e| config_error(format!("malformed config: {e}")))?;
    raw.into_config().map_err(config_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backtraces_are_left_out_of_messages() {
        let error = candle_core::Error::WithBacktrace {
            inner: Box::new(candle_core::Error::Msg("no GPU".into())),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        };
        assert_eq!(describe(&error), "no GPU");
        let wrapped = candle_core::Error::Msg("line one\n   0: frame\n             at src/x.rs:1".into());
        assert_eq!(describe(&wrapped), "line one");
    }
}
