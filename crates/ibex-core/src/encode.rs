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
    /// The checkpoint's tokenizer settings ask for something ibex cannot reproduce exactly.
    #[error("{0}; ibex refuses rather than score with other tokens")]
    Unsupported(String),
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
    /// A context encodes to no tokens (whitespace alone, without special tokens), so there is nothing to condition on.
    #[error("the context {context:?} encodes to no tokens; lm-eval refuses such a request too")]
    EmptyContext {
        /// The request's context.
        context: String,
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

/// The files transformers builds a tokenizer from.
#[derive(Clone, Debug, Default)]
pub struct TokenizerFiles {
    /// tokenizer.json.
    pub tokenizer_json: PathBuf,
    /// tokenizer_config.json and special_tokens_map.json, those present, in that order (merged as transformers
    /// merges them: see `merged_settings`).
    pub settings: Vec<PathBuf>,
    /// tokenizer.model (SentencePiece), when the checkpoint has one.
    pub sentencepiece: Option<PathBuf>,
    /// config.json: its `model_type` picks the tokenizer class when tokenizer_config.json names none.
    pub model_config: Option<PathBuf>,
}

/// The special tokens a tokenizer's attributes name, as strings.
const SPECIAL_TOKEN_ATTRIBUTES: [&str; 7] =
    ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

/// A special token's text as tokenizer settings give it: a string, or an `AddedToken` object's `content`.
fn token_text(value: &serde_json::Value) -> Option<&str> {
    match value {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()),
        _ => None,
    }
}

impl TokenizerFiles {
    /// tokenizer_config.json merged with special_tokens_map.json, as transformers merges them.
    pub fn settings(&self) -> Result<serde_json::Map<String, serde_json::Value>, EncodeError> {
        merged_settings(&self.settings)
    }

    /// transformers' `special_tokens_map`, which chat templates receive as variables: each special token the
    /// settings (or the class's defaults, `<s>`, `</s>` and `<unk>` for Llama's) name, as a string, and
    /// `additional_special_tokens` when there are any.
    pub fn special_tokens_map(&self) -> Result<serde_json::Map<String, serde_json::Value>, EncodeError> {
        let settings = self.settings()?;
        let class = tokenizer_class(&settings, self.model_config.as_deref())?;
        let rebuilds = REBUILDING_CLASSES.iter().any(|c| class == *c || class == format!("{c}Fast"));
        let text = |value: &serde_json::Value| token_text(value).map(str::to_owned);
        let mut map = serde_json::Map::new();
        for key in SPECIAL_TOKEN_ATTRIBUTES {
            let default = match key {
                "bos_token" if rebuilds => Some("<s>".to_owned()),
                "eos_token" if rebuilds => Some("</s>".to_owned()),
                "unk_token" if rebuilds => Some("<unk>".to_owned()),
                _ => None,
            };
            let token = match settings.get(key) {
                Some(value) => text(value),
                None => default,
            };
            if let Some(token) = token.filter(|t| !t.is_empty()) {
                map.insert(key.to_owned(), serde_json::Value::String(token));
            }
        }
        let additional: Vec<serde_json::Value> = settings
            .get("additional_special_tokens")
            .and_then(serde_json::Value::as_array)
            .map(|tokens| tokens.iter().filter_map(text).map(serde_json::Value::String).collect())
            .unwrap_or_default();
        if !additional.is_empty() {
            map.insert("additional_special_tokens".to_owned(), serde_json::Value::Array(additional));
        }
        Ok(map)
    }
}

/// Tokenizer classes whose fast implementation rebuilds tokenizer.json's post-processor from `add_bos_token` and
/// `add_eos_token` (`update_post_processor` in transformers' tokenization_llama_fast.py, code_llama, gemma).
const REBUILDING_CLASSES: [&str; 3] = ["LlamaTokenizer", "CodeLlamaTokenizer", "GemmaTokenizer"];

/// The default tokenizer class of `model_type`s whose class is one of [`REBUILDING_CLASSES`] (transformers'
/// `TOKENIZER_MAPPING_NAMES`; mistral and mixtral as without the optional mistral-common package).
const REBUILDING_MODEL_TYPES: [(&str, &str); 17] = [
    ("llama", "LlamaTokenizer"),
    ("llama4", "LlamaTokenizer"),
    ("llama4_text", "LlamaTokenizer"),
    ("mistral", "LlamaTokenizer"),
    ("mixtral", "LlamaTokenizer"),
    ("phi3", "LlamaTokenizer"),
    ("phimoe", "LlamaTokenizer"),
    ("deepseek_v2", "LlamaTokenizer"),
    ("deepseek_v3", "LlamaTokenizer"),
    ("jamba", "LlamaTokenizer"),
    ("code_llama", "CodeLlamaTokenizer"),
    ("gemma", "GemmaTokenizer"),
    ("gemma2", "GemmaTokenizer"),
    ("gemma3", "GemmaTokenizer"),
    ("gemma3_text", "GemmaTokenizer"),
    ("gemma3n", "GemmaTokenizer"),
    ("recurrent_gemma", "GemmaTokenizer"),
];

/// What encoding a string "with special tokens" adds to it, as the tokenizer class transformers instantiates
/// decides (lm-eval ≥ 0.4.9.2 calls `tokenizer.encode(text)` with those defaults). Recorded in the results file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpecialTokens {
    /// The class transformers builds (`LlamaTokenizerFast`, `PreTrainedTokenizerFast`).
    pub class: String,
    /// Which rule applies.
    pub rule: SpecialTokenRule,
    /// Ids put before the text.
    pub first: Vec<u32>,
    /// Ids put after the text.
    pub last: Vec<u32>,
}

/// Who decides the special tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpecialTokenRule {
    /// `LlamaTokenizerFast` and kin rebuild the post-processor as `[BOS] $A [EOS]`: BOS when `add_bos_token`
    /// (default true), EOS when `add_eos_token` (default false), whatever tokenizer.json says.
    RebuiltFromAddBosEos,
    /// Any other class (`PreTrainedTokenizerFast`) keeps tokenizer.json's post-processor and ignores
    /// `add_bos_token`.
    TokenizerJsonPostProcessor,
}

/// Turns [`Request`]s into token ids exactly as lm-eval's Hugging Face backend does.
pub struct Encoder {
    tokenizer: Tokenizer,
    /// Whether non-empty strings are encoded with special tokens (the BOS policy).
    add_special_tokens: bool,
    /// What "with special tokens" adds.
    special_tokens: SpecialTokens,
    prefix_token_id: u32,
    /// The end-of-text token: its text is a stop string (lm-eval's `eot_token_id`).
    eos_token_id: Option<u32>,
    /// transformers' `clean_up_tokenization_spaces`, applied after decoding.
    clean_up_spaces: bool,
    /// The prefix token as text: a string starting with it gets no special tokens (lm-eval's `has_bos_prefix` in
    /// `tok_encode`).
    prefix_text: String,
    /// The BOS token as text, if the tokenizer has one: a generation prompt starting with it gets no special tokens
    /// (`has_bos_prefix` in `tok_batch_encode`).
    bos_text: Option<String>,
}

impl Encoder {
    /// Builds the tokenizer transformers' `AutoTokenizer` would (class rules, a SentencePiece rebuild where the
    /// settings ask for one), and resolves the BOS policy and the prefix token (BOS if the tokenizer has one, else
    /// EOS) as lm-eval's `HFLM` does.
    pub fn from_files(files: &TokenizerFiles, bos: BosPolicy) -> Result<Self, EncodeError> {
        let config = merged_settings(&files.settings)?;
        let class = tokenizer_class(&config, files.model_config.as_deref())?;
        let rebuilds = REBUILDING_CLASSES.iter().any(|c| class == *c || class == format!("{c}Fast"));
        let load_error =
            |message: String| EncodeError::Load { path: files.tokenizer_json.display().to_string(), message };
        let text = std::fs::read_to_string(&files.tokenizer_json).map_err(|e| load_error(e.to_string()))?;
        let mut json: serde_json::Value = serde_json::from_str(&text).map_err(|e| load_error(e.to_string()))?;
        // No tokenizer.json setting applies that transformers switches off on every encode.
        json["truncation"] = serde_json::Value::Null;
        json["padding"] = serde_json::Value::Null;
        let add_prefix_space = config.get("add_prefix_space").and_then(serde_json::Value::as_bool);
        // PreTrainedTokenizerFast sets a top-level pre-tokenizer's add_prefix_space to its own: the setting's, false
        // when absent; a null setting fails to rebuild the pre-tokenizer there and leaves it as it is.
        let setting = config.get("add_prefix_space");
        if !rebuilds && setting.is_none_or(serde_json::Value::is_boolean) {
            if let Some(flag) = json["pre_tokenizer"].get_mut("add_prefix_space") {
                *flag = serde_json::Value::Bool(add_prefix_space.unwrap_or(false));
            }
        }
        // Of the rebuilding classes, only LlamaTokenizerFast converts itself from tokenizer.model when
        // add_prefix_space is set (`from_slow`).
        if class == "LlamaTokenizerFast" {
            if let Some(add_prefix_space) = add_prefix_space {
                if files.sentencepiece.is_none() {
                    return Err(EncodeError::Unsupported(format!(
                        "tokenizer_config.json sets add_prefix_space, so transformers rebuilds {class} from \
                         tokenizer.model, which this checkpoint lacks (transformers fails to load it too)"
                    )));
                }
                let legacy = config.get("legacy").and_then(serde_json::Value::as_bool).unwrap_or(true);
                rebuild_like_llama_converter(&mut json, add_prefix_space, legacy);
            }
        }
        let tokenizer: Tokenizer = serde_json::from_value(json).map_err(|e| load_error(e.to_string()))?;
        let token_id = |key: &str, default: Option<&str>| {
            let token = match config.get(key) {
                Some(value) => token_text(value),
                None => default,
            };
            token.and_then(|t| tokenizer.token_to_id(t))
        };
        // LlamaTokenizerFast's own defaults for tokens its settings do not name.
        let (bos_default, eos_default) = if rebuilds { (Some("<s>"), Some("</s>")) } else { (None, None) };
        let bos_id = token_id("bos_token", bos_default);
        let eos_id = token_id("eos_token", eos_default);
        let prefix_token_id = bos_id.or(eos_id).ok_or(EncodeError::NoPrefixToken)?;
        let flag = |key: &str, default: bool| config.get(key).and_then(serde_json::Value::as_bool).unwrap_or(default);
        let special_tokens = if rebuilds {
            // lm-eval passes `add_bos_token=True` to the tokenizer when asked to add BOS.
            let add_bos = bos == BosPolicy::Always || flag("add_bos_token", true);
            let add_eos = flag("add_eos_token", false);
            SpecialTokens {
                class,
                rule: SpecialTokenRule::RebuiltFromAddBosEos,
                first: bos_id.filter(|_| add_bos).into_iter().collect(),
                last: eos_id.filter(|_| add_eos).into_iter().collect(),
            }
        } else {
            let (first, last) = post_processor_additions(&tokenizer);
            SpecialTokens { class, rule: SpecialTokenRule::TokenizerJsonPostProcessor, first, last }
        };
        let prefix_text = tokenizer.decode(&[prefix_token_id], false).unwrap_or_default();
        let bos_text = bos_id.and_then(|id| tokenizer.decode(&[id], false).ok()).filter(|t| !t.is_empty());
        Ok(Self {
            tokenizer,
            add_special_tokens: bos != BosPolicy::Never,
            special_tokens,
            prefix_token_id,
            eos_token_id: eos_id,
            clean_up_spaces: flag("clean_up_tokenization_spaces", false),
            prefix_text,
            bos_text,
        })
    }

    /// The id of `token` in the vocabulary, added tokens included.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// The end-of-text id (lm-eval's `eot_token_id`), if the tokenizer names an EOS token.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token_id
    }

    /// Whether non-empty strings get the tokenizer's special tokens.
    pub fn adds_special_tokens(&self) -> bool {
        self.add_special_tokens
    }

    /// What "with special tokens" adds, for the record.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special_tokens
    }

    /// The token that stands for an empty context.
    pub fn prefix_token_id(&self) -> u32 {
        self.prefix_token_id
    }

    /// lm-eval's `tok_encode`: `tokenizer.encode(text, add_special_tokens=…)` with the class's special-token rule.
    pub fn tok_encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, EncodeError> {
        let rebuilt = self.special_tokens.rule == SpecialTokenRule::RebuiltFromAddBosEos;
        let encoding = self
            .tokenizer
            .encode(text, add_special_tokens && !rebuilt)
            .map_err(|e| EncodeError::Tokenize { text: text.to_owned(), message: e.to_string() })?;
        let ids = encoding.get_ids();
        Ok(if add_special_tokens && rebuilt {
            let specials = &self.special_tokens;
            specials.first.iter().chain(ids).chain(&specials.last).copied().collect()
        } else {
            ids.to_vec()
        })
    }

    /// Whether `text` is encoded with special tokens: the BOS policy, except that text already starting with the
    /// prefix token's string gets none (lm-eval's `tok_encode` with `has_bos_prefix`).
    fn specials_for(&self, text: &str) -> bool {
        self.add_special_tokens && (self.prefix_text.is_empty() || !text.starts_with(&self.prefix_text))
    }

    /// A generation prompt as lm-eval's `tok_batch_encode` builds it for one context: the tokenizer's default special
    /// tokens (none when the text starts with the BOS token's string), left-truncated to `max_tokens`.
    pub fn encode_prompt(&self, context: &str, max_tokens: usize) -> Result<Vec<u32>, EncodeError> {
        let starts_with_bos = self.bos_text.as_deref().is_some_and(|bos| context.starts_with(bos));
        let ids = self.tok_encode(context, self.add_special_tokens && !starts_with_bos)?;
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

    /// The stop criteria of a generation: lm-eval's, the task's `until` plus the tokenizer's end-of-text text
    /// (`handle_stop_sequences`), each with its look-back window in tokens (`MultiTokenEOSCriteria`: the stop string's
    /// own token count plus two); and transformers' own, the generation config's `eos_token_ids`.
    pub fn stop_criteria(&self, until: &[String], eos_token_ids: &[u32]) -> Result<StopCriteria<'_>, EncodeError> {
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
        Ok(StopCriteria { encoder: Some(self), eos_token_ids: eos_token_ids.to_vec(), sequences })
    }

    /// Tokenizes a loglikelihood request as `TemplateLM.loglikelihood` does.
    pub fn encode(&self, request: &LoglikelihoodRequest) -> Result<TokenRequest, EncodeError> {
        let LoglikelihoodRequest { context, continuation } = request;
        let tokens = if context.is_empty() {
            let mut continuation_ids = self.tok_encode(continuation, false)?;
            if continuation_ids.first() == Some(&self.prefix_token_id) {
                let rest = continuation_ids.split_off(1);
                TokenRequest { context: continuation_ids, continuation: rest }
            } else {
                TokenRequest { context: vec![self.prefix_token_id], continuation: continuation_ids }
            }
        } else {
            self.encode_pair(context, continuation)?
        };
        // lm-eval asserts both are non-empty (`_loglikelihood_tokens`).
        if tokens.context.is_empty() {
            return Err(EncodeError::EmptyContext { context: context.clone() });
        }
        if tokens.continuation.is_empty() {
            return Err(EncodeError::EmptyContinuation {
                context: context.clone(),
                continuation: continuation.clone(),
            });
        }
        Ok(tokens)
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

/// The ids tokenizer.json's post-processor puts before and after a text, found by encoding a probe both ways.
fn post_processor_additions(tokenizer: &Tokenizer) -> (Vec<u32>, Vec<u32>) {
    let ids = |specials: bool| tokenizer.encode("a", specials).map(|e| e.get_ids().to_vec()).unwrap_or_default();
    let (with, plain) = (ids(true), ids(false));
    match (0..=with.len().saturating_sub(plain.len())).find(|&at| with[at..].starts_with(&plain)) {
        Some(at) if !plain.is_empty() => (with[..at].to_vec(), with[at + plain.len()..].to_vec()),
        _ => (Vec::new(), Vec::new()),
    }
}

/// tokenizer_config.json and special_tokens_map.json merged as transformers' `from_pretrained` merges them
/// (tokenization_utils_base.py, `_from_pretrained`): tokenizer_config.json gives the settings; special_tokens_map.json
/// then overrides the special tokens it names, unless tokenizer_config.json has `added_tokens_decoder` (files saved by
/// transformers ≥ 4.34), in which case the map is not read.
fn merged_settings(settings: &[PathBuf]) -> Result<serde_json::Map<String, serde_json::Value>, EncodeError> {
    let mut config = serde_json::Map::new();
    for path in settings {
        let is_map = path.file_name().is_some_and(|name| name == "special_tokens_map.json");
        if is_map && config.contains_key("added_tokens_decoder") {
            continue;
        }
        let config_error = |message: String| EncodeError::Config { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| config_error(e.to_string()))?;
        let serde_json::Value::Object(entries) =
            serde_json::from_str(&text).map_err(|e| config_error(e.to_string()))?
        else {
            return Err(config_error("not a JSON object".into()));
        };
        config.extend(entries);
    }
    Ok(config)
}

/// The class `AutoTokenizer` instantiates (fast variant): tokenizer_config.json's `tokenizer_class`, else
/// config.json's `tokenizer_class`, else the default of config.json's `model_type`, else `PreTrainedTokenizerFast`.
fn tokenizer_class(
    settings: &serde_json::Map<String, serde_json::Value>,
    model_config: Option<&Path>,
) -> Result<String, EncodeError> {
    let model = match model_config {
        Some(path) => {
            let config_error = |message: String| EncodeError::Config { path: path.display().to_string(), message };
            let text = std::fs::read_to_string(path).map_err(|e| config_error(e.to_string()))?;
            serde_json::from_str(&text).map_err(|e| config_error(e.to_string()))?
        }
        None => serde_json::Value::Null,
    };
    let named = settings.get("tokenizer_class").or(model.get("tokenizer_class")).and_then(|c| c.as_str());
    let class = match named {
        Some(class) => class.trim_end_matches("Fast").to_owned(),
        None => {
            let model_type = model.get("model_type").and_then(|t| t.as_str());
            match REBUILDING_MODEL_TYPES.iter().find(|(t, _)| Some(*t) == model_type) {
                Some((_, class)) => (*class).to_owned(),
                None => return Ok("PreTrainedTokenizerFast".into()),
            }
        }
    };
    Ok(if class == "PreTrainedTokenizer" { "PreTrainedTokenizerFast".into() } else { format!("{class}Fast") })
}

/// What transformers' `LlamaConverter` (convert_slow_tokenizer.py) makes of a SentencePiece model when
/// `add_prefix_space` forces `from_slow`: the same vocabulary and merges (assumed equal to tokenizer.json's), with
/// its own normalizer, pre-tokenizer and decoder. `legacy` (default true) keeps the `▁` prefix in the normalizer;
/// non-legacy moves it to a `Metaspace` pre-tokenizer whose prepend scheme follows `add_prefix_space`.
fn rebuild_like_llama_converter(json: &mut serde_json::Value, add_prefix_space: bool, legacy: bool) {
    use serde_json::json;
    let replace_spaces = json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
    if legacy {
        let mut normalizers = Vec::new();
        if add_prefix_space {
            normalizers.push(json!({"type": "Prepend", "prepend": "\u{2581}"}));
        }
        normalizers.push(replace_spaces);
        json["normalizer"] = json!({"type": "Sequence", "normalizers": normalizers});
        json["pre_tokenizer"] = serde_json::Value::Null;
    } else {
        let prepend_scheme = if add_prefix_space { "first" } else { "never" };
        json["normalizer"] = serde_json::Value::Null;
        json["pre_tokenizer"] =
            json!({"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": prepend_scheme, "split": false});
    }
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if add_prefix_space {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    json["decoder"] = json!({"type": "Sequence", "decoders": decoders});
}

/// When a generation stops, checked by the generation loop after every token: lm-eval's `stop_sequences_criteria`
/// (`lm_eval/models/utils.py`) plus transformers' stop on the generation config's end-of-sequence ids.
pub struct StopCriteria<'a> {
    encoder: Option<&'a Encoder>,
    eos_token_ids: Vec<u32>,
    /// Stop strings with their look-back windows in tokens.
    sequences: Vec<(String, usize)>,
}

impl StopCriteria<'static> {
    /// Never stops: generation runs to its token budget (benchmarks).
    pub fn never() -> Self {
        Self { encoder: None, eos_token_ids: Vec::new(), sequences: Vec::new() }
    }
}

impl StopCriteria<'_> {
    /// Whether generation stops after `generated`: on the end-of-text token, or when a stop string appears in the last
    /// tokens decoded on their own (so a stop can fire that the full text would not show, as in lm-eval).
    pub fn is_met(&self, generated: &[u32]) -> Result<bool, EncodeError> {
        if generated.last().is_some_and(|t| self.eos_token_ids.contains(t)) {
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

    /// What decides where generation stops, for cache keys: the end-of-sequence ids and the stop strings.
    pub fn identity(&self) -> (&[u32], &[(String, usize)]) {
        (&self.eos_token_ids, &self.sequences)
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
