//! Scoring throughput of ibex's Candle backend on random-weight models with the exact Salamandra-2B and -7B shapes,
//! on the XNLI-shaped workload that `benches/hf_anchor.py` (HF transformers, what lm-eval's hf backend runs) times, so
//! the two numbers compare on one card. Weights are random: speed does not depend on their values.
//!
//! Workload (as in hf_anchor.py): lengths `40 + (i * 37) % 161` for i < 4096, sorted longest first; sequence k holds
//! token ids `(k * 7919 + j * 104729) % vocab`; batches of 64 consecutive sequences, right-padded; only real tokens
//! count. Each sequence is scored as an XNLI request: the first token is the context, the rest the continuation.
//!
//! With `choices` first, the sequences become documents of three choices that share their first 60% (an XNLI
//! premise), and it times them twice: each request alone (as lm-eval runs them), then grouped into rows that compute
//! each shared prefix once (`ibex_core::prefix`, what `ibex run` does), 64 rows a batch, longest first; tokens/s
//! counts the requests' tokens in both.
//!
//! With `generate` first, it measures greedy decoding instead: 128 new tokens after prompts of 32, 512 and 2048
//! tokens, printing the prompt pass and the decode rate separately; with the KV cache the decode rate should barely
//! depend on the prompt's length.
//!
//!   cargo bench --bench throughput [--features cuda] -- [generate|choices] [SHAPE] [DEVICE] [DTYPE] [SEQUENCES]
//!   SHAPE: salamandra-2b (default), salamandra-7b, tiny, llama-25m (vs_lm_eval.py's); DEVICE: cuda (default) or cpu; DTYPE: bf16 (default), f32, f16

use candle_nn::{VarBuilder, VarMap};
use ibex_candle::llama::Config;
use ibex_candle::{candle_dtype, device_handles, open_device, CandleModel};
use ibex_core::prefix::share_prefixes;
use ibex_core::{Devices, Dtype, StopCriteria, TokenModel, TokenRequest};
use std::time::Instant;

/// The allocator `ibex` runs with (src/main.rs), so the numbers are the command's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn shape(name: &str) -> Config {
    let (hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads, vocab_size) =
        match name {
            "salamandra-2b" => (2048, 5440, 24, 16, 16, 256_000),
            "salamandra-7b" => (4096, 11008, 32, 32, 8, 256_000),
            "tiny" => (64, 172, 2, 4, 2, 1_000),
            "llama-25m" => (512, 1280, 8, 8, 8, 1_156),
            other => panic!("unknown shape {other}; use salamandra-2b, salamandra-7b, tiny or llama-25m"),
        };
    Config {
        hidden_size,
        intermediate_size,
        vocab_size,
        num_hidden_layers,
        num_attention_heads,
        num_key_value_heads,
        head_dim: hidden_size / num_attention_heads,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: 8192,
        tie_word_embeddings: false,
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let generation = args.first().is_some_and(|a| a == "generate");
    let choices = args.first().is_some_and(|a| a == "choices");
    if generation || choices {
        args.remove(0);
    }
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_owned());
    let (shape_name, device_name, dtype_name) = (arg(0, "salamandra-2b"), arg(1, "cuda"), arg(2, "bf16"));
    let sequences: usize = arg(3, "4096").parse().expect("SEQUENCES is a number");
    let config = shape(&shape_name);
    let ibex_dtype: Dtype = dtype_name.parse().unwrap_or_else(|e| panic!("{e}"));
    let devices: Devices = device_name.parse().unwrap_or_else(|e| panic!("{e}"));
    let handle = device_handles(&devices).unwrap_or_else(|e| panic!("{e}"))[0];
    let device = open_device(handle).unwrap_or_else(|e| panic!("{e}"));
    let dtype = candle_dtype(ibex_dtype);
    let varmap = VarMap::new();
    let mut model = CandleModel::new(&config, VarBuilder::from_varmap(&varmap, dtype, &device)).expect("model builds");
    let parameters: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    if generation {
        generate(&mut model, &config, &shape_name, &device_name);
        return;
    }

    let mut lengths: Vec<usize> = (0..sequences).map(|i| 40 + (i * 37) % 161).collect();
    lengths.sort_unstable_by(|a, b| b.cmp(a));
    let ids = |k: usize, len: usize| -> Vec<u32> {
        (0..len).map(|j| ((k * 7919 + j * 104_729) % config.vocab_size) as u32).collect()
    };
    let requests: Vec<TokenRequest> = if choices {
        // Sequence k is choice k % 3 of document k / 3: the document's first 60% (its premise), then tokens of its own.
        lengths
            .iter()
            .enumerate()
            .map(|(k, &len)| {
                let premise_len = (len * 3).div_ceil(5);
                let mut tokens = ids(k / 3, premise_len);
                tokens.extend(ids(k, len)[premise_len..].iter().map(|&t| (t + 1) % config.vocab_size as u32));
                TokenRequest { context: tokens[..1].to_vec(), continuation: tokens[1..].to_vec() }
            })
            .collect()
    } else {
        lengths
            .iter()
            .enumerate()
            .map(|(k, &len)| {
                let tokens = ids(k, len);
                TokenRequest { context: tokens[..1].to_vec(), continuation: tokens[1..].to_vec() }
            })
            .collect()
    };
    let real_tokens: usize = lengths.iter().sum();
    let mut runs = vec![("alone", requests.iter().map(|r| vec![r.clone()]).collect::<Vec<_>>())];
    if choices {
        let inputs: Vec<Vec<u32>> = requests.iter().map(|r| r.model_input(config.max_position_embeddings).0).collect();
        let mut rows = share_prefixes(&inputs.iter().map(Vec::as_slice).collect::<Vec<_>>());
        rows.sort_by_key(|row| std::cmp::Reverse(row.nodes));
        let rows = rows.iter().map(|row| row.members.iter().map(|&i| requests[i].clone()).collect()).collect();
        runs.push(("shared", rows));
    }
    for (label, rows) in runs {
        let batches: Vec<&[Vec<TokenRequest>]> = rows.chunks(64).collect();
        for batch in batches.iter().take(2) {
            model.score(batch).expect("warm-up batch scores");
        }
        let start = Instant::now();
        for batch in &batches {
            model.score(batch).expect("batch scores");
        }
        let seconds = start.elapsed().as_secs_f64();
        let dtype_label = ibex_dtype.to_string();
        println!(
            "{{\"shape\": \"{shape_name}\", \"parameters\": {parameters}, \"device\": \"{device_name}\", \"dtype\": \"{dtype_label}\", \
             \"workload\": \"{}\", \"rows\": {}, \"sequences\": {sequences}, \"real_tokens\": {real_tokens}, \
             \"seconds\": {seconds:.3}, \"tokens_per_s\": {:.0}}}",
            if choices { format!("choices-{label}") } else { "xnli-shaped".to_owned() },
            rows.len(),
            real_tokens as f64 / seconds
        );
    }
}

/// Decode rate after prompts of growing length: the prompt pass is timed apart from the 128 one-token steps.
fn generate(model: &mut CandleModel, config: &Config, shape_name: &str, device_name: &str) {
    const NEW_TOKENS: usize = 128;
    for prompt_len in [32usize, 512, 2048] {
        let prompt: Vec<u32> = (0..prompt_len).map(|j| ((j * 104_729) % config.vocab_size) as u32).collect();
        let prompts = [prompt];
        let start = Instant::now();
        model.generate(&prompts, 1, &StopCriteria::never()).expect("prompt pass");
        let prompt_seconds = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let generated = model.generate(&prompts, NEW_TOKENS, &StopCriteria::never()).expect("generation").remove(0);
        let decode_seconds = (start.elapsed().as_secs_f64() - prompt_seconds).max(f64::EPSILON);
        println!(
            "{{\"shape\": \"{shape_name}\", \"device\": \"{device_name}\", \"prompt_tokens\": {prompt_len}, \
             \"prompt_seconds\": {prompt_seconds:.4}, \"new_tokens\": {}, \"decode_tokens_per_s\": {:.1}}}",
            generated.len(),
            (generated.len() - 1) as f64 / decode_seconds
        );
    }
}
