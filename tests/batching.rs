//! `--batch-size auto`: the largest batch that fits, found on the longest requests first; a batch that runs out of
//! memory is halved and retried, losing nothing. Tested through the token-level seam with a backend that runs out of
//! memory above a size, around the real Candle model.

use crate::common::{cpu_placement, model_folder, read_results, run_ok, HUB_MODEL};
use ibex_candle::CandleModel;
use ibex_core::{
    BatchSize, Encoder, GenerateRequest, GenerationConfig, LanguageModel, LoglikelihoodRequest, ModelError,
    StopCriteria, TemplateLm, TokenModel, TokenRequest, TokenScore, TokenizerFiles,
};
use std::num::NonZeroUsize;

/// The fixture model, out of memory whenever a batch holds more than `fits` rows (or prompts), taking `replicas` batches at
/// a time (a batch too large for one replica fails them all).
struct Cramped {
    model: CandleModel,
    fits: usize,
    replicas: usize,
}

impl TokenModel for Cramped {
    fn max_length(&self) -> usize {
        self.model.max_length()
    }

    fn replicas(&self) -> usize {
        self.replicas
    }

    fn score(&mut self, batch: &[Vec<TokenRequest>]) -> Result<Vec<Vec<TokenScore>>, ModelError> {
        if batch.len() > self.fits {
            return Err(ModelError::OutOfMemory { device: "test".into(), batch: batch.len() });
        }
        self.model.score(batch)
    }

    fn generate(
        &mut self,
        prompts: &[Vec<u32>],
        max_new_tokens: usize,
        stop: &StopCriteria,
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        if prompts.len() > self.fits {
            return Err(ModelError::OutOfMemory { device: "test".into(), batch: prompts.len() });
        }
        self.model.generate(prompts, max_new_tokens, stop)
    }
}

fn candle() -> CandleModel {
    let folder = model_folder();
    let weights = [folder.join("model.safetensors")];
    CandleModel::load(&folder.join("config.json"), &weights, candle_core::DType::F32, &cpu_placement(&folder)).unwrap()
}

fn encoder() -> Encoder {
    let folder = model_folder();
    let files = TokenizerFiles {
        tokenizer_json: folder.join("tokenizer.json"),
        settings: vec![folder.join("tokenizer_config.json")],
        ..TokenizerFiles::default()
    };
    Encoder::from_files(&files, ibex_core::BosPolicy::Auto).unwrap()
}

fn requests() -> Vec<LoglikelihoodRequest> {
    let sentences = ["The bridge was closed.", "A cat sat on the warm roof.", "Farmers grow apples.", "It rained."];
    (0..13)
        .map(|i| LoglikelihoodRequest {
            context: sentences[i % 4].repeat(1 + i % 3),
            continuation: format!(" {}", sentences[(i + 1) % 4]),
        })
        .collect()
}

#[test]
fn auto_batches_halve_on_out_of_memory_and_lose_nothing() {
    let encoder = encoder();
    let max = NonZeroUsize::new(8).unwrap();
    let mut by_replicas = Vec::new();
    for replicas in [1, 2] {
        let cramped = Cramped { model: candle(), fits: 3, replicas };
        let mut auto = TemplateLm::new(cramped, &encoder, GenerationConfig::default(), BatchSize::Auto { max }, 8);
        let mut recorded = Vec::new();
        let scores = auto.loglikelihood(&requests(), &[], &mut |answers| {
            recorded.extend(answers.iter().map(|(i, _)| *i));
            Ok(())
        });
        // 8 and 4 did not fit; every batch then ran at 2, and each request reached the sink exactly once, also when
        // two replicas took batches side by side and a failure discarded both.
        assert_eq!(auto.batch_sizes(), [2]);
        recorded.sort_unstable();
        assert_eq!(recorded, (0..13).collect::<Vec<_>>());
        by_replicas.push(scores.unwrap());
    }
    assert_eq!(by_replicas[0], by_replicas[1]);
    let scores = by_replicas.remove(0);

    // The same batches as a run at the size auto settled on: the same scores, to the bit.
    let two = BatchSize::Fixed(NonZeroUsize::new(2).unwrap());
    let mut reference = TemplateLm::new(candle(), &encoder, GenerationConfig::default(), two, 8);
    assert_eq!(scores, reference.loglikelihood(&requests(), &[], &mut |_| Ok(())).unwrap());
    let one = BatchSize::Fixed(NonZeroUsize::new(1).unwrap());

    let prompts: Vec<GenerateRequest> = requests()
        .into_iter()
        .map(|r| GenerateRequest {
            context: r.context,
            until: vec!["\n".into()],
            max_gen_toks: Some(6),
            generation_kwargs: serde_json::Map::new(),
        })
        .collect();
    let cramped = Cramped { model: candle(), fits: 1, replicas: 2 };
    let mut auto = TemplateLm::new(cramped, &encoder, GenerationConfig::default(), BatchSize::Auto { max }, 8);
    let texts = auto.generate_until(&prompts, &mut |_| Ok(())).unwrap();
    assert_eq!(auto.batch_sizes(), [1]);
    let mut reference = TemplateLm::new(candle(), &encoder, GenerationConfig::default(), one, 8);
    assert_eq!(texts, reference.generate_until(&prompts, &mut |_| Ok(())).unwrap());
}

#[test]
fn a_fixed_batch_that_runs_out_of_memory_is_an_error_naming_the_size() {
    let encoder = encoder();
    let cramped = Cramped { model: candle(), fits: 3, replicas: 1 };
    let four = BatchSize::Fixed(NonZeroUsize::new(4).unwrap());
    let mut fixed = TemplateLm::new(cramped, &encoder, GenerationConfig::default(), four, 8);
    let err = fixed.loglikelihood(&requests(), &[], &mut |_| Ok(())).unwrap_err().to_string();
    assert!(err.contains("batch of 4") && err.contains("--batch-size"), "{err}");
}

#[test]
fn batch_size_auto_is_recorded_as_lm_eval_records_it() {
    let out = run_ok(&["--model", HUB_MODEL, "--tasks", "xnli_en", "--batch-size", "auto", "--max-batch-size", "16"]);
    let results = read_results(out.path());
    assert_eq!(results["config"]["batch_size"], "auto");
    assert_eq!(results["config"]["batch_sizes"], serde_json::json!([16]));
}

#[test]
fn shared_prefixes_score_as_each_request_alone() {
    // Three choices after one premise, a repeated request, one with nothing in common, and contexts the fixture's
    // window of 96 tokens truncates.
    let premise = "The old mill by the river ground wheat for the whole valley";
    let long = "Every evening the baker counted loaves and wrote the number in a notebook. ".repeat(8);
    let pairs = [
        (premise, ", right? Yes, it was busy."),
        (premise, ", right? Also, the river was cold."),
        (premise, ", right? No, nobody used it."),
        (premise, ", right? No, nobody used it."),
        ("Snow fell on the quiet town", " all night."),
        (long.as_str(), " The notebook filled up."),
        (long.as_str(), " He bought another."),
    ];
    let requests: Vec<LoglikelihoodRequest> = pairs
        .iter()
        .map(|(context, continuation)| LoglikelihoodRequest {
            context: (*context).into(),
            continuation: (*continuation).into(),
        })
        .collect();
    let encoder = encoder();
    let mut model = candle();
    let window = model.max_length();
    let tokens: Vec<TokenRequest> =
        requests.iter().map(|r| ibex_core::scoring_tokens(&encoder, r, window).unwrap()).collect();
    let inputs: Vec<Vec<u32>> = tokens.iter().map(|t| t.model_input(window).0).collect();
    let rows = ibex_core::prefix::share_prefixes(&inputs.iter().map(Vec::as_slice).collect::<Vec<_>>());
    // The premise's four requests share a row (the repeat adding nothing); a truncated input fills the window, so
    // it shares with nothing.
    let members: Vec<Vec<usize>> = rows
        .iter()
        .map(|row| {
            let mut members = row.members.clone();
            members.sort_unstable();
            members
        })
        .collect();
    assert!(members.contains(&vec![0, 1, 2, 3]) && members.contains(&vec![5]), "{members:?}");
    let batch: Vec<Vec<TokenRequest>> =
        rows.iter().map(|row| row.members.iter().map(|&i| tokens[i].clone()).collect()).collect();
    let shared = model.score(&batch).unwrap();
    for (row, row_scores) in rows.iter().zip(shared) {
        for (&i, score) in row.members.iter().zip(row_scores) {
            let alone = model.score(&[vec![tokens[i].clone()]]).unwrap().remove(0).remove(0);
            assert!((score.logprob - alone.logprob).abs() < 1e-4, "request {i}: {score:?} vs {alone:?}");
            assert_eq!(score.is_greedy, alone.is_greedy, "request {i}");
        }
    }
}
