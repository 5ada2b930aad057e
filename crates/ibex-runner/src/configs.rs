//! The run recipes the repository ships in `configs/` (embedded, so they work from any directory): suites, the tasks
//! that re-run one published comparison, and model recipes, the settings a model's published numbers used.

use crate::RunError;
use ibex_core::{BosPolicy, Dtype};
use std::path::Path;

/// A suite file (`configs/suites/NAME.toml`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Suite {
    tasks: Vec<String>,
}

/// The tasks of a suite given by name (shipped in `configs/suites/`) or as a path to a suite file of one's own.
pub fn suite_tasks(suite: &str) -> Result<Vec<String>, RunError> {
    let (source, text) = if Path::new(suite).is_file() {
        let text = std::fs::read_to_string(suite).map_err(|e| RunError::Suite(format!("cannot read {suite}: {e}")))?;
        (suite.to_owned(), text)
    } else {
        let (path, text) = ibex_assets::find(ibex_assets::SUITES, suite).ok_or_else(|| {
            let known: Vec<&str> = ibex_assets::SUITES
                .iter()
                .filter_map(|(path, _)| path.rsplit('/').next()?.strip_suffix(".toml"))
                .collect();
            RunError::Suite(format!(
                "unknown suite `{suite}`; shipped suites: {}, or pass a suite file's path",
                known.join(", ")
            ))
        })?;
        (path.to_owned(), text.to_owned())
    };
    let suite: Suite =
        toml::from_str(&text).map_err(|e| RunError::Suite(format!("{source}: {}", e.message().trim_end())))?;
    Ok(suite.tasks)
}

/// A model recipe (`configs/models/*.toml`): how the model's published numbers were produced.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRecipe {
    /// The Hugging Face id the recipe applies to.
    pub id: String,
    /// The dtype the numbers were computed in.
    pub dtype: Option<Dtype>,
    /// The lm-eval era's BOS policy.
    pub add_bos_token: Option<BosPolicy>,
    /// Whether the numbers were computed through the tokenizer's chat template (lm-eval's
    /// `--apply_chat_template`).
    pub apply_chat_template: Option<bool>,
    /// lm-eval's `--fewshot_as_multiturn` for those numbers.
    pub fewshot_as_multiturn: Option<bool>,
    /// The repository-relative recipe file.
    #[serde(skip)]
    pub source: String,
}

/// The shipped recipe for the hub id `model`, if any.
pub fn model_recipe(model: &str) -> Result<Option<ModelRecipe>, RunError> {
    for (path, text) in ibex_assets::MODELS {
        let mut recipe: ModelRecipe =
            toml::from_str(text).map_err(|source| RunError::Recipe { path: (*path).to_owned(), source })?;
        if recipe.id == model {
            recipe.source = (*path).to_owned();
            return Ok(Some(recipe));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_suites_and_model_recipes_resolve_by_name() {
        assert_eq!(suite_tasks("essay").unwrap(), ["xnli_en", "squad_en", "xquad_en"]);
        let err = suite_tasks("esay").unwrap_err().to_string();
        assert_eq!(err, "unknown suite `esay`; shipped suites: essay, iberian, or pass a suite file's path");
        let recipe = model_recipe("BSC-LT/salamandra-2b").unwrap().unwrap();
        assert_eq!(recipe.dtype, Some(Dtype::Bf16));
        assert_eq!(recipe.add_bos_token, Some(BosPolicy::Never));
        assert_eq!(recipe.source, "configs/models/salamandra-2b.toml");
        assert_eq!(model_recipe("someone/else").unwrap(), None);
    }
}
