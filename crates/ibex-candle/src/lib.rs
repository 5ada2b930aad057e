//! ibex's Candle backend: loads a LlamaForCausalLM checkpoint onto a device and scores token sequences.
//!
//! It implements [`ibex_core::TokenModel`] and sees token ids only; the tokenization contract and everything
//! task-shaped happen before it. Scoring projects to the vocabulary only the positions that are scored, a chunk of
//! rows at a time, so no `[batch, seq, vocab]` logits tensor is ever built (256k-vocabulary models make that tensor
//! larger than the model's activations).

mod device;
pub mod llama;

pub use device::{candle_dtype, device_handles, device_name, open_device, placement, DeviceError};

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use ibex_core::placement::Placement;
use ibex_core::prefix::PrefixTree;
use ibex_core::{ModelError, StopCriteria, TokenModel, TokenRequest, TokenScore};
use llama::{Config, Llama, LlamaConfig, TreeLayout};
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
    replicas: Vec<Replica>,
}

/// One copy of the model, and on the CPU the one-thread pool its batches run in.
struct Replica {
    llama: Llama,
    /// Candle runs its element-wise ops and soft-max as rayon parallel loops; inside this pool they run on the
    /// worker's own thread instead of queueing, with every other worker's, for rayon's global pool.
    pool: Option<rayon::ThreadPool>,
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
        Ok(Self { replicas: cpu_workers(replicas) })
    }

    /// Builds the model on one device from any variable source: safetensors, or a `VarMap` of random weights for
    /// benchmarks.
    pub fn new(config: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            replicas: vec![Replica { llama: Llama::new(config, &[(vb, 0..config.num_hidden_layers)])?, pool: None }],
        })
    }
}

/// On the CPU, every replica once per core, the copies sharing its weights (a clone holds the same tensors), each
/// with a one-thread pool: batches run side by side, one per core, since much of a Candle forward pass (element-wise
/// ops, small matrix products, copies) is serial. Each batch is still scored as one device would score it, so scores
/// do not change. The `ibex` command also sets `CANDLE_NUM_THREADS=1` (unless the user set it), so that Candle's
/// element-wise pool stays on the worker's thread too.
fn cpu_workers(replicas: Vec<Llama>) -> Vec<Replica> {
    if !replicas.iter().all(|llama| llama.devices().all(Device::is_cpu)) {
        return replicas.into_iter().map(|llama| Replica { llama, pool: None }).collect();
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let copies = cores.div_ceil(replicas.len()).max(1);
    replicas
        .iter()
        .flat_map(|llama| std::iter::repeat_n(llama, copies))
        // Without a pool (the system refused a thread) the worker still runs, sharing rayon's global pool.
        .map(|llama| Replica {
            llama: llama.clone(),
            pool: rayon::ThreadPoolBuilder::new().num_threads(1).build().ok(),
        })
        .collect()
}

/// Scores a batch of rows on one replica: each row's requests as one flattened prefix tree, so a prefix they share
/// runs once; a batch of plain sequences runs under the causal mask alone.
fn score_batch(llama: &Llama, rows: &[Vec<TokenRequest>]) -> candle_core::Result<Vec<Vec<TokenScore>>> {
    let max_length = llama.config().max_position_embeddings;
    let trees: Vec<PrefixTree> = rows.iter().map(|row| PrefixTree::new(row, max_length)).collect();
    let width = trees.iter().map(PrefixTree::len).max().unwrap_or(0);
    let mut padded = Vec::with_capacity(trees.len() * width);
    for (row, tree) in trees.iter().enumerate() {
        padded.extend_from_slice(&tree.tokens);
        padded.resize((row + 1) * width, 0);
    }
    let input_ids = Tensor::from_vec(padded, (trees.len(), width), llama.input_device())?;
    let layout = (!trees.iter().all(PrefixTree::is_chain)).then(|| tree_layout(&trees, width));
    let hidden = llama.forward_hidden(&input_ids, layout.as_ref())?;
    let hidden = hidden.reshape((trees.len() * width, ()))?;
    // A node scored by several requests (a shared prefix inside the continuations) is projected once.
    let mut nodes: Vec<u32> = Vec::new();
    let mut slot: BTreeMap<u32, usize> = BTreeMap::new();
    let mut pairs: Vec<(usize, u32)> = Vec::new();
    for (row, tree) in trees.iter().enumerate() {
        for &(node, target) in tree.scored.iter().flatten() {
            let node = (row * width + node) as u32;
            let index = *slot.entry(node).or_insert_with(|| {
                nodes.push(node);
                nodes.len() - 1
            });
            pairs.push((index, target));
        }
    }
    let (logprobs, greedy) = target_logprobs(llama, &hidden, &nodes, &pairs)?;
    let mut answers = Vec::with_capacity(trees.len());
    let mut offset = 0;
    for tree in &trees {
        let mut row_scores = Vec::with_capacity(tree.scored.len());
        for scored in &tree.scored {
            let range = offset..offset + scored.len();
            row_scores.push(TokenScore {
                logprob: logprobs[range.clone()].iter().map(|&lp| f64::from(lp)).sum(),
                is_greedy: greedy[range].iter().all(|&g| g),
            });
            offset += scored.len();
        }
        answers.push(row_scores);
    }
    Ok(answers)
}

/// Positions and attention mask of padded prefix-tree rows of `width` tokens: a node sees itself and its ancestors;
/// a padding node sees itself alone (its output is never read).
fn tree_layout(trees: &[PrefixTree], width: usize) -> TreeLayout {
    let mut positions = vec![0u32; trees.len() * width];
    let mut mask = vec![f32::NEG_INFINITY; trees.len() * width * width];
    for (row, tree) in trees.iter().enumerate() {
        positions[row * width..row * width + tree.len()].copy_from_slice(&tree.positions);
        for query in 0..width {
            let start = (row * width + query) * width;
            if query < tree.len() {
                for key in tree.visible(query) {
                    mask[start + key] = 0.0;
                }
            } else {
                mask[start + query] = 0.0;
            }
        }
    }
    TreeLayout { positions, mask }
}

/// For each `(node, target)` pair over one replica's `hidden` states (rows `nodes[node]`): the log-probability of
/// the target token and whether it is the argmax. Each node is projected to the vocabulary once, a chunk at a time.
fn target_logprobs(
    llama: &Llama,
    hidden: &Tensor,
    nodes: &[u32],
    pairs: &[(usize, u32)],
) -> candle_core::Result<(Vec<f32>, Vec<bool>)> {
    let vocab = llama.config().vocab_size;
    let device = llama.output_device();
    let rows_per_chunk = (LOGIT_BYTES_PER_CHUNK / (vocab * 4)).max(1);
    let mut logprobs = vec![0f32; pairs.len()];
    let mut greedy = vec![false; pairs.len()];
    for (chunk, chunk_nodes) in nodes.chunks(rows_per_chunk).enumerate() {
        let first = chunk * rows_per_chunk;
        let in_chunk: Vec<usize> =
            (0..pairs.len()).filter(|&p| (first..first + chunk_nodes.len()).contains(&pairs[p].0)).collect();
        let index = Tensor::new(chunk_nodes, device)?;
        let logits = llama.logits(&hidden.index_select(&index, 0)?)?.to_dtype(DType::F32)?;
        if device.is_cpu() {
            // Two passes per row in place of Candle's five whole-tensor passes (max, subtract, exp, sum, subtract).
            let rows = logits.to_vec2::<f32>()?;
            let normalizers: Vec<(usize, f32, f32)> = rows.iter().map(|row| log_normalizer(row)).collect();
            for &p in &in_chunk {
                let (row, target) = (pairs[p].0 - first, pairs[p].1 as usize);
                let (argmax, max, log_sum) = normalizers[row];
                logprobs[p] = (rows[row][target] - max) - log_sum;
                greedy[p] = argmax == target;
            }
            continue;
        }
        let log_softmax = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let argmax = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let local: Vec<u32> = in_chunk.iter().map(|&p| (pairs[p].0 - first) as u32).collect();
        let targets: Vec<u32> = in_chunk.iter().map(|&p| pairs[p].1).collect();
        let picked = log_softmax
            .index_select(&Tensor::new(local.as_slice(), device)?, 0)?
            .gather(&Tensor::new(targets.as_slice(), device)?.unsqueeze(1)?, 1)?
            .squeeze(1)?
            .to_vec1::<f32>()?;
        for ((&p, &lp), (&row, &target)) in in_chunk.iter().zip(&picked).zip(local.iter().zip(&targets)) {
            logprobs[p] = lp;
            greedy[p] = argmax[row as usize] == target;
        }
    }
    Ok((logprobs, greedy))
}

/// What `log_softmax` needs of a row of logits, as torch's computes it in f32 (the max subtracted first; here the sum
/// of exponentials is kept in f64): the first maximal index (torch's `argmax`), the max, and `ln Σ exp(x − max)`, so
/// that `log_softmax(x)[t] = (x[t] − max) − ln Σ`.
fn log_normalizer(logits: &[f32]) -> (usize, f32, f32) {
    let (argmax, max) =
        logits.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best });
    let sum: f64 = logits.iter().map(|&x| f64::from((x - max).exp())).sum();
    (argmax, max, sum.ln() as f32)
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

/// Runs `work` on each batch with its own replica (in the replica's pool, if it has one), one thread per batch when
/// there are several.
fn on_replicas<B: Sync, T: Send>(
    replicas: &[Replica],
    batches: &[B],
    work: impl Fn(&Llama, &B) -> Result<T, ModelError> + Sync,
) -> Result<Vec<T>, ModelError> {
    assert!(batches.len() <= replicas.len(), "{} batches for {} replicas", batches.len(), replicas.len());
    let run = |replica: &Replica, batch: &B| match &replica.pool {
        Some(pool) => pool.install(|| work(&replica.llama, batch)),
        None => work(&replica.llama, batch),
    };
    if batches.len() == 1 {
        return batches.iter().map(|batch| run(&replicas[0], batch)).collect();
    }
    std::thread::scope(|scope| {
        let threads: Vec<_> = batches
            .iter()
            .zip(replicas)
            .map(|(batch, replica)| {
                let run = &run;
                scope.spawn(move || run(replica, batch))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

impl TokenModel for CandleModel {
    fn max_length(&self) -> usize {
        self.replicas[0].llama.config().max_position_embeddings
    }

    fn replicas(&self) -> usize {
        self.replicas.len()
    }

    fn score(&mut self, batch: &[Vec<TokenRequest>]) -> Result<Vec<Vec<TokenScore>>, ModelError> {
        on_replicas(&self.replicas, &[batch], |llama, batch| {
            score_batch(llama, batch).map_err(|e| model_error(llama, &e, batch.len()))
        })
        .map(|mut answers| answers.remove(0))
    }

    fn score_batches(&mut self, batches: &[Vec<Vec<TokenRequest>>]) -> Result<Vec<Vec<Vec<TokenScore>>>, ModelError> {
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
        on_replicas(&self.replicas, &[prompts], |llama, prompts| generate_greedy(llama, prompts, max_new_tokens, stop))
            .map(|mut answers| answers.remove(0))
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
