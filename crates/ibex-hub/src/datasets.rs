//! Which file holds a split of a hub dataset, found as the `datasets` library finds it for a repository without a
//! loading script (`datasets/load.py`, `data_files.py`): the dataset card's `configs:` front matter (its `data_files`
//! patterns per split), else the repository's files named after the split, else the parquet conversion the hub keeps
//! on the `refs/convert/parquet` branch (`<config>/<split>/*.parquet`). Online the repository is listed through the
//! hub's tree API; offline the cached snapshot is what there is.

use crate::{offline, snapshot_commit, DatasetFile, Hub, HubError};
use hf_hub::{HFError, RepoType};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The hub's branch of parquet conversions.
pub const PARQUET_BRANCH: &str = "refs/convert/parquet";

/// The extensions ibex reads, as `datasets` picks data files by extension.
const DATA_EXTENSIONS: [&str; 5] = ["parquet", "jsonl", "json", "csv", "tsv"];

/// The file holding `split` of `dataset` (config `config`, lm-eval's `dataset_name`) at `revision`, by the rules
/// above. A split spread over several files is an error naming them (ibex reads one file per split).
pub fn resolve_dataset_split(
    dataset: &str,
    revision: Option<&str>,
    config: Option<&str>,
    split: &str,
) -> Result<DatasetFile, HubError> {
    let hub = Hub::new(dataset, revision, " --repo-type dataset", |client, owner, name| client.dataset(owner, name))?;
    let listing = hub.listing().map_err(|e| hub.error(&e))?;
    let card = hub.get_optional("README.md")?.and_then(|path| std::fs::read_to_string(path).ok());
    let (patterns, rule) = match card.as_deref().and_then(|text| card_patterns(text, config, split)) {
        Some(patterns) => (patterns, "the dataset card's `configs:`"),
        None => (default_patterns(config, split), "the files named after the split"),
    };
    let matched = matching(&listing, &patterns);
    if let Some(file) = single(&hub, &matched, split, rule)? {
        return Ok(file);
    }
    // The parquet conversion: `<config>/<split>/NNNN.parquet` on its own branch.
    let branch = Hub::new(dataset, Some(PARQUET_BRANCH), " --repo-type dataset", |client, owner, name| {
        client.dataset(owner, name)
    })?;
    let converted = format!("{}/{split}/*.parquet", config.unwrap_or("default"));
    // A repository the hub has not converted has no such branch: nothing to find there.
    let matched = match branch.listing() {
        Ok(listing) => matching(&listing, std::slice::from_ref(&converted)),
        Err(HFError::RevisionNotFound { .. } | HFError::EntryNotFound { .. }) => Vec::new(),
        Err(other) => return Err(branch.error(&other)),
    };
    if let Some(file) = single(&branch, &matched, split, "the parquet conversion")? {
        return Ok(file);
    }
    let hint = if hub.offline {
        "HF_HUB_OFFLINE=1 and the cache lacks it: run `ibex fetch` with the run's flags where the hub is reachable, \
         or pass the split with --data TASK=PATH"
    } else {
        "download the split and pass it with --data TASK=PATH"
    };
    Err(HubError::Missing {
        file: format!("split `{split}` ({} or {PARQUET_BRANCH}: {converted})", patterns.join(", ")),
        source_name: hub.describe(),
        hint: hint.into(),
    })
}

/// The one file of `matched`, fetched; `None` when nothing matched; an error for several.
fn single<T: RepoType>(
    hub: &Hub<T>,
    matched: &[String],
    split: &str,
    rule: &str,
) -> Result<Option<DatasetFile>, HubError> {
    match matched {
        [] => Ok(None),
        [file] => {
            let path = hub.get(file)?;
            let commit = snapshot_commit(&path);
            Ok(Some(DatasetFile { path, commit }))
        }
        several => Err(HubError::Missing {
            file: format!("one file for split `{split}`"),
            source_name: hub.describe(),
            hint: format!(
                "{rule} gives it {} files ({}); ibex reads one file per split: join them and pass --data TASK:{split}=PATH",
                several.len(),
                several.join(", ")
            ),
        }),
    }
}

/// The `data_files` patterns a dataset card's `configs:` front matter gives `split` of `config` (the config marked
/// `default: true`, or named `default`, or the only one, when `config` is `None`); `None` when the card has no
/// `configs:` or none for the config.
pub fn card_patterns(card: &str, config: Option<&str>, split: &str) -> Option<Vec<String>> {
    let front = card.strip_prefix("---")?.split("\n---").next()?;
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(front).ok()?;
    let configs: Value = serde_json::to_value(yaml.get("configs")?).ok()?;
    let configs = configs.as_array()?;
    let name = |c: &Value| c.get("config_name").and_then(Value::as_str).unwrap_or("default").to_owned();
    let chosen = match config {
        Some(config) => configs.iter().find(|c| name(c) == config)?,
        None => configs
            .iter()
            .find(|c| c.get("default") == Some(&Value::Bool(true)))
            .or_else(|| configs.iter().find(|c| name(c) == "default"))
            .or_else(|| (configs.len() == 1).then(|| &configs[0]))?,
    };
    let as_list = |v: &Value| match v {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    match chosen.get("data_files")? {
        Value::Array(entries) if entries.iter().all(Value::is_object) => entries
            .iter()
            .find(|e| e.get("split").and_then(Value::as_str) == Some(split))
            .map(|e| e.get("path").map(as_list).unwrap_or_default()),
        // A bare pattern or list is the `train` split.
        other if split == "train" => Some(as_list(other)),
        _ => None,
    }
}

/// Where `datasets` looks for a split when the card says nothing (its `DEFAULT_PATTERNS_SPLIT_IN_FILENAME` and
/// `…_IN_DIR_NAME`, narrowed to the config's folder when there is one): `<split>.*`, `<split>-*`, `*_<split>.*`,
/// `*-<split>-*`, and the same under `data/` and in a folder named after the split.
pub fn default_patterns(config: Option<&str>, split: &str) -> Vec<String> {
    let prefixes: Vec<String> = match config {
        Some(config) => vec![format!("{config}/")],
        None => vec![String::new(), "data/".into()],
    };
    prefixes
        .iter()
        .flat_map(|prefix| {
            [
                format!("{prefix}{split}.*"),
                format!("{prefix}{split}-*"),
                format!("{prefix}*_{split}.*"),
                format!("{prefix}*-{split}-*"),
                format!("{prefix}*-{split}.*"),
                format!("{prefix}{split}/*"),
            ]
        })
        .collect()
}

/// The files of `listing` that a pattern matches, with an extension ibex reads, each once, sorted (as `datasets`
/// sorts them). `*` stays within a folder, `**` crosses folders, `?` is one character.
pub fn matching(listing: &[String], patterns: &[String]) -> Vec<String> {
    let regexes: Vec<regex::Regex> = patterns.iter().filter_map(|p| glob_regex(p)).collect();
    let readable =
        |file: &str| Path::new(file).extension().and_then(|e| e.to_str()).is_some_and(|e| DATA_EXTENSIONS.contains(&e));
    let mut files: Vec<String> =
        listing.iter().filter(|f| readable(f) && regexes.iter().any(|r| r.is_match(f))).cloned().collect();
    files.sort();
    files.dedup();
    files
}

fn glob_regex(pattern: &str) -> Option<regex::Regex> {
    let mut out = String::from("^");
    let mut chars = pattern.trim_start_matches('/').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str(".*");
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            other => out.push_str(&regex::escape(&other.to_string())),
        }
    }
    out.push('$');
    regex::Regex::new(&out).ok()
}

impl<T: RepoType> Hub<T> {
    /// Every file of the repository at the revision: the hub's tree, or offline the cached snapshot's files.
    pub(crate) fn listing(&self) -> Result<Vec<String>, HFError> {
        if offline() {
            return Ok(self.snapshot_files());
        }
        let entries = self.repo.list_tree().maybe_revision(self.revision.clone()).recursive(true).send()?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| match entry {
                hf_hub::repository::RepoTreeEntry::File { path, .. } => Some(path),
                _ => None,
            })
            .collect())
    }

    /// A hub failure as ibex reports it, with what to do.
    fn error(&self, error: &HFError) -> HubError {
        HubError::Hub { repo: self.describe(), message: crate::hub_hint(error) }
    }

    /// The files of the cached snapshot for the revision, repository-relative.
    fn snapshot_files(&self) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path: PathBuf = entry.path();
                if path.is_dir() {
                    walk(root, &path, out);
                } else if let Ok(relative) = path.strip_prefix(root) {
                    out.push(relative.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        let mut files = Vec::new();
        if let Some(snapshot) = self.snapshot_dir() {
            walk(&snapshot, &snapshot, &mut files);
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = "---\nlicense: cc-by-4.0\nconfigs:\n- config_name: eu\n  data_files:\n  - split: train\n    path: \
                        xnli.train.eu.mt.tsv\n  - split: test\n    path: [\"xnli.test.eu.tsv\"]\n- config_name: \
                        eu_native\n  default: true\n  data_files:\n  - split: test\n    path: native/*.tsv\n---\n# XNLIeu\n";

    #[test]
    fn the_cards_configs_name_each_splits_files() {
        assert_eq!(card_patterns(CARD, Some("eu"), "test").unwrap(), ["xnli.test.eu.tsv"]);
        assert_eq!(card_patterns(CARD, Some("eu"), "train").unwrap(), ["xnli.train.eu.mt.tsv"]);
        assert_eq!(card_patterns(CARD, None, "test").unwrap(), ["native/*.tsv"]);
        assert_eq!(card_patterns(CARD, Some("eu"), "validation"), None);
        assert_eq!(card_patterns(CARD, Some("eu_mt"), "test"), None);
        assert_eq!(card_patterns("# no front matter\n", None, "test"), None);
        let bare = "---\nconfigs:\n- config_name: default\n  data_files: \"*.csv\"\n---\n";
        assert_eq!(card_patterns(bare, None, "train").unwrap(), ["*.csv"]);
    }

    #[test]
    fn patterns_match_as_datasets_globs_do() {
        let listing: Vec<String> = [
            "data/test-00000-of-00001.parquet",
            "data/train-00000-of-00002.parquet",
            "data/train-00001-of-00002.parquet",
            "README.md",
            "en/validation-00000-of-00001.parquet",
            "native/a/b.tsv",
            "native/c.tsv",
            "xnli_gl_test.csv",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            matching(&listing, &default_patterns(None, "test")),
            ["data/test-00000-of-00001.parquet", "xnli_gl_test.csv"]
        );
        assert_eq!(matching(&listing, &default_patterns(None, "train")).len(), 2);
        assert_eq!(
            matching(&listing, &default_patterns(Some("en"), "validation")),
            ["en/validation-00000-of-00001.parquet"]
        );
        assert_eq!(matching(&listing, &["native/*.tsv".to_owned()]), ["native/c.tsv"]);
        assert_eq!(matching(&listing, &["native/**.tsv".to_owned()]), ["native/a/b.tsv", "native/c.tsv"]);
        assert!(matching(&listing, &["README.*".to_owned()]).is_empty());
    }
}
