//! Which file holds a split of a hub dataset, found as the `datasets` library finds it for a repository without a
//! loading script (`datasets/load.py`, `data_files.py`): the dataset card's `configs:` front matter (its `data_files`
//! patterns per split), else the repository's files named after the split, else the parquet conversion the hub keeps
//! on the `refs/convert/parquet` branch (`<config>/<split>/*.parquet`). Online the repository is listed through the
//! hub's tree API; offline the cached snapshot is what there is.

use crate::{offline, snapshot_commit, DatasetFiles, Hub, HubError};
use hf_hub::{HFError, RepoType};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

/// The hub's branch of parquet conversions.
pub const PARQUET_BRANCH: &str = "refs/convert/parquet";

/// The extensions ibex reads, as `datasets` picks data files by extension.
const DATA_EXTENSIONS: [&str; 5] = ["parquet", "jsonl", "json", "csv", "tsv"];

/// The files holding `split` of `dataset` (config `config`, lm-eval's `dataset_name`) at `revision`: the files the
/// task names (`named`, `dataset_kwargs.data_files` patterns) when it names some, else by the rules above, every
/// file a rule matches (a split spread over shards is read shard by shard, as `datasets` concatenates them).
pub fn resolve_dataset_split(
    dataset: &str,
    revision: Option<&str>,
    config: Option<&str>,
    split: &str,
    named: Option<&[String]>,
) -> Result<DatasetFiles, HubError> {
    let hub = Hub::new(dataset, revision, " --repo-type dataset", |client, owner, name| client.dataset(owner, name))?;
    let listing = hub.listing().map_err(|e| hub.error(&e))?;
    if let Some(named) = named {
        let matched = matching(&listing, named);
        return fetched(&hub, &matched)?.ok_or_else(|| HubError::Missing {
            file: named.join(", "),
            source_name: hub.describe(),
            hint: missing_hint(&hub),
        });
    }
    let card = hub.get_optional("README.md")?.and_then(|path| std::fs::read_to_string(path).ok());
    let (matched, patterns) = match card.as_deref().map(|text| card_patterns(text, config, split)) {
        Some(CardSplit::Patterns(patterns)) => (matching(&listing, &patterns), patterns),
        Some(CardSplit::NoSuchSplit(config)) => {
            return Err(HubError::Missing {
                file: format!("split `{split}`"),
                source_name: hub.describe(),
                hint: format!("the dataset card's config `{config}` has no such split; check the task's split keys"),
            })
        }
        _ => {
            // Without card configs a config can only be a folder: ibex looks inside it (`datasets` would refuse).
            let prefix = config.map(|c| format!("{c}/")).unwrap_or_default();
            let inside: Vec<String> =
                listing.iter().filter_map(|f| f.strip_prefix(&prefix)).map(str::to_owned).collect();
            let found = default_files(&inside, split).into_iter().map(|f| format!("{prefix}{f}")).collect();
            (found, vec![format!("{prefix}<the files `datasets` names after `{split}`>")])
        }
    };
    if let Some(files) = fetched(&hub, &matched)? {
        return Ok(files);
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
    if let Some(files) = fetched(&branch, &matched)? {
        return Ok(files);
    }
    Err(HubError::Missing {
        file: format!("split `{split}` ({} or {PARQUET_BRANCH}: {converted})", patterns.join(", ")),
        source_name: hub.describe(),
        hint: missing_hint(&hub),
    })
}

fn missing_hint<T: RepoType>(hub: &Hub<T>) -> String {
    if hub.offline {
        "HF_HUB_OFFLINE=1 and the cache lacks it: run `ibex fetch` with the run's flags where the hub is reachable, \
         or pass the split with --data TASK=PATH"
            .into()
    } else {
        "download the split and pass it with --data TASK=PATH".into()
    }
}

/// Every file of `matched` (sorted), fetched; `None` when nothing matched.
fn fetched<T: RepoType>(hub: &Hub<T>, matched: &[String]) -> Result<Option<DatasetFiles>, HubError> {
    let paths = matched.iter().map(|file| hub.get(file)).collect::<Result<Vec<_>, _>>()?;
    Ok(paths.first().map(|first| DatasetFiles { commit: snapshot_commit(first), paths: paths.clone() }))
}

/// What a dataset card says of a split.
#[derive(Debug, PartialEq, Eq)]
pub enum CardSplit {
    /// Its `data_files` patterns.
    Patterns(Vec<String>),
    /// The config exists but names no such split (`datasets` raises "unknown split").
    NoSuchSplit(String),
    /// The card has no `configs:`, or none of that name.
    Silent,
}

/// What a dataset card's `configs:` front matter says of `split` of `config` (the config marked `default: true`, or
/// named `default`, or the only one, when `config` is `None`).
pub fn card_patterns(card: &str, config: Option<&str>, split: &str) -> CardSplit {
    card_config(card, config, split).unwrap_or(CardSplit::Silent)
}

fn card_config(card: &str, config: Option<&str>, split: &str) -> Option<CardSplit> {
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
    let missing = || CardSplit::NoSuchSplit(name(chosen));
    Some(match chosen.get("data_files")? {
        Value::Array(entries) if entries.iter().all(Value::is_object) => entries
            .iter()
            .find(|e| e.get("split").and_then(Value::as_str) == Some(split))
            .map_or_else(missing, |e| CardSplit::Patterns(e.get("path").map(as_list).unwrap_or_default())),
        // A bare pattern or list is the `train` split.
        other if split == "train" => CardSplit::Patterns(as_list(other)),
        _ => missing(),
    })
}

/// `datasets`' split keywords (`data_files.py`, `SPLIT_KEYWORDS`): the names a file or folder may carry for a split.
fn keywords(split: &str) -> &'static [&'static str] {
    match split {
        "train" => &["train", "training"],
        "validation" => &["validation", "valid", "dev", "val"],
        "test" => &["test", "testing", "eval", "evaluation"],
        _ => &[],
    }
}

/// The characters `datasets` accepts around a split keyword (`NON_WORDS_CHARS`), as a glob class.
const SEP: &str = "[-._ 0-9]";

/// The files `datasets` gives `split` when the card says nothing (`data_files.get_data_patterns` with fsspec ≥
/// 2023.12): sharded `data/<split>-NNNNN-of-NNNNN*` names when the repository has any; else, when any of train,
/// validation and test is named by a folder, the split's folders; else, when any is named in a file name, its
/// file names; else every file is `train`.
pub fn default_files(listing: &[String], split: &str) -> Vec<String> {
    let sharded = |name: &str| format!("data/{name}-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9]*.*");
    if !matching(listing, &[sharded("*")]).is_empty() {
        return matching(listing, &[sharded(split)]);
    }
    let in_dir = |keyword: &str| {
        vec![
            format!("**/{keyword}/**"),
            format!("**/{keyword}{SEP}*/**"),
            format!("**/*{SEP}{keyword}/**"),
            format!("**/*{SEP}{keyword}{SEP}*/**"),
        ]
    };
    let in_file = |keyword: &str| vec![format!("**/{keyword}{SEP}*"), format!("**/*{SEP}{keyword}{SEP}*")];
    for rule in [&in_dir as &dyn Fn(&str) -> Vec<String>, &in_file] {
        let patterns = |name: &str| keywords(name).iter().flat_map(|k| rule(k)).collect::<Vec<_>>();
        if ["train", "validation", "test"].iter().any(|name| !matching(listing, &patterns(name)).is_empty()) {
            return matching(listing, &patterns(split));
        }
    }
    if split == "train" {
        matching(listing, &["**".to_owned()])
    } else {
        Vec::new()
    }
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

/// fsspec's glob as a regex: `**/` is any number of folders (none included), `**` anything, `*` anything within a
/// folder, `?` one character, `[...]` a class.
fn glob_regex(pattern: &str) -> Option<regex::Regex> {
    let mut out = String::from("^");
    let mut chars = pattern.trim_start_matches('/').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next();
                    out.push_str("(?:.*/)?");
                } else {
                    out.push_str(".*");
                }
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '[' => {
                out.push('[');
                for class in chars.by_ref() {
                    if class == ']' {
                        break;
                    }
                    if class == '\\' || class == '[' {
                        out.push('\\');
                    }
                    out.push(class);
                }
                out.push(']');
            }
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
        // A plan reads several splits and tasks of one repository: it is listed once per run, and every split is
        // found in the same listing.
        static LISTINGS: OnceLock<Mutex<HashMap<String, Vec<String>>>> = OnceLock::new();
        let listings = LISTINGS.get_or_init(Mutex::default);
        let key = format!("{}{}", self.repo_type_flag, self.describe());
        if let Some(listing) = listings.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return Ok(listing.clone());
        }
        let entries = self.repo.list_tree().maybe_revision(self.revision.clone()).recursive(true).send()?;
        let listing: Vec<String> = entries
            .into_iter()
            .filter_map(|entry| match entry {
                hf_hub::repository::RepoTreeEntry::File { path, .. } => Some(path),
                _ => None,
            })
            .collect();
        listings.lock().unwrap_or_else(PoisonError::into_inner).insert(key, listing.clone());
        Ok(listing)
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
        let patterns = |config, split| match card_patterns(CARD, config, split) {
            CardSplit::Patterns(p) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(patterns(Some("eu"), "test"), ["xnli.test.eu.tsv"]);
        assert_eq!(patterns(Some("eu"), "train"), ["xnli.train.eu.mt.tsv"]);
        assert_eq!(patterns(None, "test"), ["native/*.tsv"]);
        assert_eq!(card_patterns(CARD, Some("eu"), "validation"), CardSplit::NoSuchSplit("eu".into()));
        assert_eq!(card_patterns(CARD, Some("eu_mt"), "test"), CardSplit::Silent);
        assert_eq!(card_patterns("# no front matter\n", None, "test"), CardSplit::Silent);
        let bare = "---\nconfigs:\n- config_name: default\n  data_files: \"*.csv\"\n---\n";
        assert_eq!(card_patterns(bare, None, "train"), CardSplit::Patterns(vec!["*.csv".into()]));
    }

    fn list(files: &[&str]) -> Vec<String> {
        files.iter().map(|f| (*f).to_owned()).collect()
    }

    #[test]
    fn default_rules_follow_datasets_order() {
        // Sharded names win over every other rule.
        let sharded = list(&[
            "data/test-00000-of-00001.parquet",
            "data/train-00000-of-00002.parquet",
            "data/train-00001-of-00002.parquet",
            "test.jsonl",
        ]);
        assert_eq!(default_files(&sharded, "test"), ["data/test-00000-of-00001.parquet"]);
        assert_eq!(default_files(&sharded, "train").len(), 2);
        // File names: every keyword of the split (test.jsonl and test_hard.jsonl are both "test", dev is validation).
        let names = list(&["test.jsonl", "test_hard.jsonl", "dev.csv", "README.md", "attest.jsonl"]);
        assert_eq!(default_files(&names, "test"), ["test.jsonl", "test_hard.jsonl"]);
        assert_eq!(default_files(&names, "validation"), ["dev.csv"]);
        // A folder named after a split wins over file names.
        let folders = list(&["eval/a.parquet", "eval/b.parquet", "train.jsonl"]);
        assert_eq!(default_files(&folders, "test"), ["eval/a.parquet", "eval/b.parquet"]);
        assert!(default_files(&folders, "train").is_empty());
        // Nothing named: everything is train.
        assert_eq!(default_files(&list(&["x.csv", "y/z.csv"]), "train"), ["x.csv", "y/z.csv"]);
    }

    #[test]
    fn globs_match_as_fsspec_does() {
        let listing = list(&["native/a/b.tsv", "native/c.tsv", "test.csv", "d/test.csv"]);
        assert_eq!(matching(&listing, &["native/*.tsv".to_owned()]), ["native/c.tsv"]);
        assert_eq!(matching(&listing, &["native/**.tsv".to_owned()]), ["native/a/b.tsv", "native/c.tsv"]);
        assert_eq!(matching(&listing, &["**/test.csv".to_owned()]), ["d/test.csv", "test.csv"]);
        assert_eq!(matching(&listing, &["[t]est.csv".to_owned()]), ["test.csv"]);
        assert!(matching(&listing, &["README.*".to_owned()]).is_empty());
    }
}
