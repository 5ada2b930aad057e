//! Published numbers as `configs/published/*.toml` state them: one file per source, one row per value.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// A source of published numbers.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// A short name (`essay`).
    pub name: String,
    /// What it is: title, author, date.
    pub title: String,
    /// Where to read it, when known.
    #[serde(default)]
    pub url: Option<String>,
}

/// A published value: a point or a range, as a fraction (0.5177 for 51.77%).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PublishedRow {
    /// The ibex task name the value is for.
    pub task: String,
    /// The metric (`acc`, `f1`, `exact_match`).
    pub metric: String,
    /// The filter the metric was read under (lm-eval's results key `exact_match,flexible-extract`); `none`, lm-eval's
    /// name for no filter, when the row does not say.
    #[serde(default = "no_filter")]
    pub filter: String,
    /// The Hugging Face id of the model.
    pub model: String,
    /// The value, when a single number was published.
    #[serde(default)]
    pub value: Option<f64>,
    /// The range, when a range was published (`93–94%` → `[0.93, 0.94]`).
    #[serde(default)]
    pub range: Option<[f64; 2]>,
    /// Decimal places of the published percentage (51.77% → 2): the value stands for ± half its last unit.
    pub decimals: u32,
    /// Few-shot examples, when the source says.
    #[serde(default)]
    pub shots: Option<u32>,
    /// Harness and version, when the source says.
    #[serde(default)]
    pub harness: Option<String>,
    /// Whether the prompts went through the model's chat template (lm-eval's `--apply_chat_template`); plain-text
    /// prompts, lm-eval's default, when absent.
    #[serde(default)]
    pub apply_chat_template: bool,
    /// The recipe set that produced the number: `lm-eval` (lm-eval's own task files) or `bsc` (BSC's fork, whose NLI
    /// tasks filter and normalise documents differently since 2025-04-08); not stated when absent.
    #[serde(default)]
    pub recipes: Option<String>,
    /// The lm-eval version that produced it (`0.4.4–0.4.7`, `0.4.9.2+`), as its source or its date says.
    #[serde(default)]
    pub lm_eval_version: Option<String>,
    /// Whether a BOS token was put before every non-empty string: off in the lm-eval versions BSC used before its
    /// 0.4.9.2 merge, the tokenizer's default (on, for Salamandra and ALIA) after it.
    #[serde(default)]
    pub add_bos_token: Option<bool>,
    /// The reading of an ambiguous published name the row assumes (the essay's "SQuAD_en": SQuAD v1.1 or XQuAD).
    #[serde(default)]
    pub reading: Option<String>,
    /// False when the number cannot be traced to its origin.
    #[serde(default = "yes")]
    pub verified: bool,
    /// Anything a reader must know.
    #[serde(default)]
    pub note: Option<String>,
}

fn yes() -> bool {
    true
}

fn no_filter() -> String {
    ibex_core::NO_FILTER.to_owned()
}

impl PublishedRow {
    /// What reproducing the number needs, as a table shows it: recipe set, lm-eval version, BOS; `not stated` when
    /// the source says none of them.
    pub fn needs(&self) -> String {
        let mut parts = Vec::new();
        parts.extend(self.recipes.as_ref().map(|r| format!("{r} recipes")));
        parts.extend(self.lm_eval_version.as_ref().map(|v| format!("lm-eval {v}")));
        parts.extend(self.add_bos_token.map(|bos| format!("BOS {}", if bos { "on" } else { "off" })));
        if parts.is_empty() {
            "not stated".to_owned()
        } else {
            parts.join(", ")
        }
    }

    /// The published interval as fractions, widened by the rounding of the published percentage.
    pub fn interval(&self) -> Option<(f64, f64)> {
        let half_unit = 0.5 * 10f64.powi(-(self.decimals as i32)) / 100.0;
        let (low, high) = match (self.value, self.range) {
            (_, Some([low, high])) => (low, high),
            (Some(value), None) => (value, value),
            (None, None) => return None,
        };
        Some((low - half_unit, high + half_unit))
    }
}

/// One file of `configs/published`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedFile {
    /// Where the numbers come from.
    pub source: Source,
    /// The numbers.
    #[serde(rename = "row")]
    pub rows: Vec<PublishedRow>,
}

/// A published-numbers file is unreadable or invalid.
#[derive(Debug, thiserror::Error)]
#[error("published numbers {path}: {message}")]
pub struct PublishedError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Reads a published-numbers file, or every `*.toml` in a folder.
pub fn load(path: &Path) -> Result<Vec<PublishedFile>, PublishedError> {
    let error = |message: String| PublishedError { path: path.display().to_string(), message };
    let mut files = Vec::new();
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| error(e.to_string()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        entries.sort();
        for entry in entries {
            files.extend(load(&entry)?);
        }
        return Ok(files);
    }
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    files.push(parse(&path.display().to_string(), &text)?);
    Ok(files)
}

/// The published numbers shipped in `configs/published/`, embedded in the binary.
pub fn shipped() -> Result<Vec<PublishedFile>, PublishedError> {
    ibex_assets::PUBLISHED.iter().map(|(path, text)| parse(path, text)).collect()
}

/// Parses one published-numbers file; `path` names it in errors.
fn parse(path: &str, text: &str) -> Result<PublishedFile, PublishedError> {
    let error = |message: String| PublishedError { path: path.to_owned(), message };
    let file: PublishedFile = toml::from_str(text).map_err(|e| error(e.message().trim_end().replace('\n', "; ")))?;
    if let Some(row) = file.rows.iter().find(|r| r.value.is_some() == r.range.is_some()) {
        return Err(error(format!(
            "row {}/{}/{} needs exactly one of `value` and `range`",
            row.task, row.metric, row.model
        )));
    }
    Ok(file)
}
