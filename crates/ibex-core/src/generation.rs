//! What transformers' `generate` reads from a checkpoint besides the weights (`GenerationConfig`,
//! transformers/generation/configuration_utils.py): generation_config.json when the checkpoint has one, else the
//! generation keys of config.json (`GenerationConfig.from_model_config`). lm-eval calls `generate` with
//! `do_sample=False` and its own `max_length` and stopping criteria, so of the rest only the end-of-sequence ids and
//! the settings that change greedy decoding matter: the first are applied, the second refused.

use serde_json::Value;
use std::path::Path;

/// A generation setting ibex cannot reproduce, or an unreadable file.
#[derive(Debug, thiserror::Error)]
pub enum GenerationConfigError {
    /// The file cannot be read or parsed.
    #[error("cannot read {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A setting that changes greedy decoding.
    #[error(
        "{path} sets `{key}` to {value}, which changes greedy decoding in transformers' generate and ibex does not \
         apply it; remove the key from a copy of the checkpoint to generate plainly, knowing lm-eval's numbers used it"
    )]
    Unsupported {
        /// The file.
        path: String,
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
}

/// Settings that change greedy decoding, with the value that leaves it unchanged.
const NEUTRAL: [(&str, Neutral); 15] = [
    // Overrides the `max_length` lm-eval passes, so lm-eval generates that many tokens whatever the task says.
    ("max_new_tokens", Neutral::Absent),
    // transformers' own stop strings; lm-eval's generate fails on them (no tokenizer passed).
    ("stop_strings", Neutral::Absent),
    ("repetition_penalty", Neutral::Number(1.0)),
    ("no_repeat_ngram_size", Neutral::Number(0.0)),
    ("encoder_no_repeat_ngram_size", Neutral::Number(0.0)),
    ("min_length", Neutral::Number(0.0)),
    ("min_new_tokens", Neutral::Absent),
    ("num_beams", Neutral::Number(1.0)),
    ("bad_words_ids", Neutral::Absent),
    ("suppress_tokens", Neutral::Absent),
    ("begin_suppress_tokens", Neutral::Absent),
    ("forced_bos_token_id", Neutral::Absent),
    ("forced_eos_token_id", Neutral::Absent),
    ("sequence_bias", Neutral::Absent),
    ("exponential_decay_length_penalty", Neutral::Absent),
];

/// The value of a setting that leaves greedy decoding as it is.
#[derive(Clone, Copy)]
enum Neutral {
    /// This number (or the key absent, or null).
    Number(f64),
    /// Absent, null or empty.
    Absent,
}

/// The generation settings of a checkpoint that ibex applies.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GenerationConfig {
    /// Generation stops on any of these ids (`eos_token_id`, an int or a list).
    pub eos_token_ids: Vec<u32>,
    /// The file they came from: generation_config.json, or config.json when there is none.
    pub source: String,
}

impl GenerationConfig {
    /// Reads `generation_config` when the checkpoint has one, else `model_config`; fails on a setting that changes
    /// greedy decoding.
    pub fn from_files(generation_config: Option<&Path>, model_config: &Path) -> Result<Self, GenerationConfigError> {
        let path = generation_config.unwrap_or(model_config);
        let display = path.display().to_string();
        let file_error = |message: String| GenerationConfigError::File { path: display.clone(), message };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| file_error(e.to_string()))?;
        if !json.is_object() {
            return Err(file_error("not a JSON object".into()));
        }
        for (key, neutral) in NEUTRAL {
            let Some(value) = json.get(key).filter(|v| !v.is_null()) else { continue };
            let neutral = match neutral {
                Neutral::Number(n) => value.as_f64() == Some(n),
                Neutral::Absent => {
                    value.as_array().is_some_and(Vec::is_empty) || value.as_object().is_some_and(|o| o.is_empty())
                }
            };
            if !neutral {
                return Err(GenerationConfigError::Unsupported {
                    path: display,
                    key: key.to_owned(),
                    value: value.to_string(),
                });
            }
        }
        let token_id = |value: &Value| value.as_u64().and_then(|id| u32::try_from(id).ok());
        let eos_token_ids = match json.get("eos_token_id") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(ids)) => ids.iter().map(token_id).collect::<Option<Vec<u32>>>().unwrap_or_default(),
            Some(single) => token_id(single).into_iter().collect(),
        };
        let given = json.get("eos_token_id").filter(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()));
        if let Some(value) = given.filter(|_| eos_token_ids.is_empty()) {
            return Err(file_error(format!("`eos_token_id` is {value}; expected a token id or a list of token ids")));
        }
        Ok(Self { eos_token_ids, source: display })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("generation_config.json");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn eos_ids_come_as_an_int_or_a_list() {
        let (_d, path) = config(r#"{"eos_token_id": [2, 78], "do_sample": true, "temperature": 0.6}"#);
        assert_eq!(GenerationConfig::from_files(Some(&path), Path::new("unused")).unwrap().eos_token_ids, [2, 78]);
        let (_d, path) = config(r#"{"eos_token_id": 5, "repetition_penalty": 1.0, "suppress_tokens": []}"#);
        assert_eq!(GenerationConfig::from_files(None, &path).unwrap().eos_token_ids, [5]);
    }

    #[test]
    fn a_setting_that_changes_greedy_decoding_is_refused_by_name() {
        let (_d, path) = config(r#"{"eos_token_id": 2, "repetition_penalty": 1.2}"#);
        let err = GenerationConfig::from_files(Some(&path), Path::new("unused")).unwrap_err().to_string();
        assert!(err.contains("sets `repetition_penalty` to 1.2, which changes greedy decoding"), "{err}");
        let (_d, path) = config(r#"{"num_beams": 4}"#);
        let err = GenerationConfig::from_files(Some(&path), Path::new("unused")).unwrap_err().to_string();
        assert!(err.contains("`num_beams` to 4"), "{err}");
    }

    #[test]
    fn an_eos_token_id_that_is_no_token_id_is_an_error() {
        for bad in [r#"{"eos_token_id": "two"}"#, r#"{"eos_token_id": -1}"#, r#"{"eos_token_id": [2, "x"]}"#, "[2]"] {
            let (_d, path) = config(bad);
            assert!(GenerationConfig::from_files(Some(&path), Path::new("unused")).is_err(), "{bad}");
        }
    }
}
