//! lm-eval's tokenization contract (`lm_eval/api/model.py`, `TemplateLM.loglikelihood` and `_encode_pair`), the
//! reason two harnesses on the same model can disagree: which BOS is added, where trailing whitespace goes, and
//! which side of the join a straddling token belongs to.

use crate::{LoglikelihoodRequest, TokenRequest};
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// Whether non-empty strings are encoded with the tokenizer's special tokens (for Llama-family tokenizers: a BOS).
/// lm-eval ≤ 0.4.9 never added them unless asked (`add_bos_token=True`); since 0.4.9.2 the tokenizer's default
/// applies. Reproducing a published number means choosing the era that produced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum BosPolicy {
    /// The tokenizer's own default, as lm-eval ≥ 0.4.9.2: `add_bos_token` from tokenizer_config.json when it is
    /// set, otherwise whatever tokenizer.json's post-processor adds.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// Always encode with special tokens (lm-eval's `add_bos_token=True`).
    #[serde(rename = "true")]
    #[cfg_attr(feature = "clap", value(name = "true"))]
    Always,
    /// Never encode with special tokens (lm-eval ≤ 0.4.9's default).
    #[serde(rename = "false")]
    #[cfg_attr(feature = "clap", value(name = "false"))]
    Never,
}

impl std::fmt::Display for BosPolicy {
    /// As `--add-bos-token` takes it: `auto`, `true`, `false`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BosPolicy::Auto => "auto",
            BosPolicy::Always => "true",
            BosPolicy::Never => "false",
        })
    }
}

/// A failure to build an [`Encoder`] or to encode a request.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// tokenizer.json could not be read or parsed.
    #[error("cannot load tokenizer {path}: {message}")]
    Load {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// tokenizer_config.json is not valid JSON.
    #[error("cannot parse {path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The tokenizer has neither a BOS nor an EOS token to stand for an empty context.
    #[error("the tokenizer has no BOS or EOS token to use as the prefix of an empty context")]
    NoPrefixToken,
    /// The tokenizer itself failed.
    #[error("tokenizer failed on {text:?}: {message}")]
    Tokenize {
        /// The text being encoded.
        text: String,
        /// What went wrong.
        message: String,
    },
    /// A continuation encodes to no tokens at all, so there is nothing to score.
    #[error("the continuation {continuation:?} (after context {context:?}) encodes to no tokens; nothing to score")]
    EmptyContinuation {
        /// The request's context.
        context: String,
        /// The request's continuation.
        continuation: String,
    },
}

/// Turns [`Request`]s into token ids exactly as lm-eval's Hugging Face backend does.
pub struct Encoder {
    tokenizer: Tokenizer,
    add_special_tokens: bool,
    prefix_token_id: u32,
    /// The end-of-text token: generation stops on it, and its text is a stop string (lm-eval's `eot_token_id`).
    eos_token_id: Option<u32>,
    /// transformers' `clean_up_tokenization_spaces`, applied after decoding.
    clean_up_spaces: bool,
    /// The prefix token as text: a string starting with it gets no special tokens (lm-eval's `has_bos_prefix`).
    prefix_text: String,
}

impl Encoder {
    /// Loads tokenizer.json and resolves the BOS policy and the prefix token (BOS if the tokenizer has one, else EOS)
    /// as lm-eval's `HFLM` does. `settings` are the checkpoint's tokenizer_config.json and special_tokens_map.json,
    /// as present; for each key the first file that sets it wins, as transformers reads them.
    pub fn from_files(tokenizer_json: &Path, settings: &[PathBuf], bos: BosPolicy) -> Result<Self, EncodeError> {
        let tokenizer = Tokenizer::from_file(tokenizer_json)
            .map_err(|e| EncodeError::Load { path: tokenizer_json.display().to_string(), message: e.to_string() })?;
        let mut config = serde_json::Map::new();
        for path in settings {
            let config_error = |message: String| EncodeError::Config { path: path.display().to_string(), message };
            let text = std::fs::read_to_string(path).map_err(|e| config_error(e.to_string()))?;
            let serde_json::Value::Object(entries) =
                serde_json::from_str(&text).map_err(|e| config_error(e.to_string()))?
            else {
                return Err(config_error("not a JSON object".into()));
            };
            for (key, value) in entries {
                config.entry(key).or_insert(value);
            }
        }
        let config = serde_json::Value::Object(config);
        let special_token_id = |key: &str| {
            let token = match &config[key] {
                serde_json::Value::String(s) => Some(s.as_str()),
                serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()),
                _ => None,
            };
            token.and_then(|t| tokenizer.token_to_id(t))
        };
        let bos_id = special_token_id("bos_token");
        let eos_id = special_token_id("eos_token");
        let prefix_token_id = bos_id.or(eos_id).ok_or(EncodeError::NoPrefixToken)?;
        let add_special_tokens = match bos {
            BosPolicy::Always => true,
            BosPolicy::Never => false,
            // Transformers rebuilds a Llama post-processor without BOS when tokenizer_config.json sets
            // `add_bos_token: false`; encoding without special tokens is the same.
            BosPolicy::Auto => config["add_bos_token"].as_bool().unwrap_or(true),
        };
        let prefix_text = tokenizer.decode(&[prefix_token_id], false).unwrap_or_default();
        Ok(Self {
            tokenizer,
            add_special_tokens,
            prefix_token_id,
            eos_token_id: eos_id,
            clean_up_spaces: config["clean_up_tokenization_spaces"].as_bool().unwrap_or(false),
            prefix_text,
        })
    }

    /// Whether non-empty strings get the tokenizer's special tokens.
    pub fn adds_special_tokens(&self) -> bool {
        self.add_special_tokens
    }

    /// The token that stands for an empty context.
    pub fn prefix_token_id(&self) -> u32 {
        self.prefix_token_id
    }

    /// lm-eval's `tok_encode`.
    pub fn tok_encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, EncodeError> {
        let encoding = self
            .tokenizer
            .encode(text, add_special_tokens)
            .map_err(|e| EncodeError::Tokenize { text: text.to_owned(), message: e.to_string() })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Whether `text` is encoded with special tokens: the BOS policy, except that text already starting with the
    /// prefix token's string gets none (lm-eval's `tok_encode` with `has_bos_prefix`).
    fn specials_for(&self, text: &str) -> bool {
        self.add_special_tokens && (self.prefix_text.is_empty() || !text.starts_with(&self.prefix_text))
    }

    /// A generation prompt as lm-eval's `tok_batch_encode` builds it for one context: the tokenizer's default special
    /// tokens (none when the text starts with the prefix token's string), left-truncated to `max_tokens`.
    pub fn encode_prompt(&self, context: &str, max_tokens: usize) -> Result<Vec<u32>, EncodeError> {
        let ids = self.tok_encode(context, self.specials_for(context))?;
        Ok(ids[ids.len().saturating_sub(max_tokens)..].to_vec())
    }

    /// lm-eval's `tok_decode`: the tokenizer's decoder, and transformers' space clean-up when the checkpoint asks.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, EncodeError> {
        let text = self
            .tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(|e| EncodeError::Tokenize { text: format!("{ids:?}"), message: e.to_string() })?;
        Ok(if self.clean_up_spaces { clean_up_tokenization(&text) } else { text })
    }

    /// lm-eval's stop criteria for a generation: the task's `until` plus the end-of-text token's text
    /// (`handle_stop_sequences`), each with its look-back window in tokens (`MultiTokenEOSCriteria`: the stop string's
    /// own token count plus two), and the end-of-text token itself.
    pub fn stop_criteria(&self, until: &[String]) -> Result<StopCriteria<'_>, EncodeError> {
        let mut sequences = until.to_vec();
        if let Some(eos) = self.eos_token_id {
            let eos_text = self.decode(&[eos], false)?;
            if !sequences.contains(&eos_text) {
                sequences.push(eos_text);
            }
        }
        let sequences = sequences
            .into_iter()
            .map(|s| {
                let lookback = self.tok_encode(&s, false)?.len() + 2;
                Ok((s, lookback))
            })
            .collect::<Result<_, EncodeError>>()?;
        Ok(StopCriteria { encoder: Some(self), eos_token_id: self.eos_token_id, sequences })
    }

    /// Tokenizes a loglikelihood request as `TemplateLM.loglikelihood` does.
    pub fn encode(&self, request: &LoglikelihoodRequest) -> Result<TokenRequest, EncodeError> {
        let LoglikelihoodRequest { context, continuation } = request;
        let empty = || EncodeError::EmptyContinuation { context: context.clone(), continuation: continuation.clone() };
        if context.is_empty() {
            let mut continuation_ids = self.tok_encode(continuation, false)?;
            let first = *continuation_ids.first().ok_or_else(empty)?;
            if first == self.prefix_token_id {
                let rest = continuation_ids.split_off(1);
                return Ok(TokenRequest { context: continuation_ids, continuation: rest });
            }
            return Ok(TokenRequest { context: vec![self.prefix_token_id], continuation: continuation_ids });
        }
        let request = self.encode_pair(context, continuation)?;
        if request.continuation.is_empty() {
            return Err(empty());
        }
        Ok(request)
    }

    /// `_encode_pair`: trailing whitespace moves from the context to the continuation; the context is encoded alone,
    /// the continuation is what the whole string encodes to after as many tokens as the context has, so a token
    /// straddling the join is scored.
    fn encode_pair(&self, context: &str, continuation: &str) -> Result<TokenRequest, EncodeError> {
        let kept = context.trim_end_matches(crate::python::is_space);
        let (context, continuation) = (kept, format!("{}{continuation}", &context[kept.len()..]));
        let whole_text = format!("{context}{continuation}");
        let whole = self.tok_encode(&whole_text, self.specials_for(&whole_text))?;
        let context_ids = self.tok_encode(context, self.specials_for(context))?;
        // The context keeps its own encoding even where the whole string merged across the join: the model then
        // sees `context_ids + whole[len(context_ids)..]`, which lm-eval feeds too.
        let continuation_ids = whole[context_ids.len().min(whole.len())..].to_vec();
        Ok(TokenRequest { context: context_ids, continuation: continuation_ids })
    }
}

/// When a generation stops, checked by the generation loop after every token: lm-eval's `stop_sequences_criteria`
/// (`lm_eval/models/utils.py`) plus transformers' stop on the end-of-text token.
pub struct StopCriteria<'a> {
    encoder: Option<&'a Encoder>,
    eos_token_id: Option<u32>,
    /// Stop strings with their look-back windows in tokens.
    sequences: Vec<(String, usize)>,
}

impl StopCriteria<'static> {
    /// Never stops: generation runs to its token budget (benchmarks).
    pub fn never() -> Self {
        Self { encoder: None, eos_token_id: None, sequences: Vec::new() }
    }
}

impl StopCriteria<'_> {
    /// Whether generation stops after `generated`: on the end-of-text token, or when a stop string appears in the last
    /// tokens decoded on their own (so a stop can fire that the full text would not show, as in lm-eval).
    pub fn is_met(&self, generated: &[u32]) -> Result<bool, EncodeError> {
        if generated.last().is_some_and(|&t| Some(t) == self.eos_token_id) {
            return Ok(true);
        }
        let Some(encoder) = self.encoder else { return Ok(false) };
        for (sequence, lookback) in &self.sequences {
            let window = &generated[generated.len().saturating_sub(*lookback)..];
            if encoder.decode(window, false)?.contains(sequence.as_str()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The final text of a generation: the new tokens decoded without special tokens, cut before the first
    /// occurrence of each stop string in turn (`postprocess_generated_text`).
    pub fn generated_text(&self, generated: &[u32]) -> Result<String, EncodeError> {
        let Some(encoder) = self.encoder else { return Ok(String::new()) };
        let mut text = encoder.decode(generated, true)?;
        for (sequence, _) in &self.sequences {
            if let Some(cut) = text.find(sequence.as_str()).filter(|_| !sequence.is_empty()) {
                text.truncate(cut);
            }
        }
        Ok(text)
    }
}

/// transformers' `clean_up_tokenization`.
fn clean_up_tokenization(text: &str) -> String {
    [
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ]
    .iter()
    .fold(text.to_owned(), |text, (from, to)| text.replace(from, to))
}
