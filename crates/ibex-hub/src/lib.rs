//! Turns a model or dataset reference into files on disk.
//!
//! A model is a local folder or a Hugging Face id (with an optional revision), fetched through `hf-hub` into the
//! same cache Python's `huggingface_hub` uses (`HF_HOME`, `HF_HUB_CACHE`, `HF_TOKEN`), so a checkpoint downloaded by
//! either tool serves both. `HF_HUB_OFFLINE=1` is honoured by resolving from the cache alone (hf-hub 1.0 ignores
//! that variable; its local-files-only mode is the equivalent), which is how Slurm compute nodes without internet run.

mod datasets;

pub use datasets::{card_patterns, default_files, matching, resolve_dataset_split, CardSplit, PARQUET_BRANCH};

use hf_hub::{HFClient, HFClientSync, HFError, HFRepositorySync, RepoType};
use std::path::{Path, PathBuf};

/// Optional tokenizer settings files, in the order transformers reads them.
const TOKENIZER_SETTINGS: [&str; 2] = ["tokenizer_config.json", "special_tokens_map.json"];

/// A model or dataset cannot be found or fetched.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A path was given that does not exist.
    #[error("no model folder at {0}; pass an existing folder or a Hugging Face id such as BSC-LT/salamandra-2b")]
    NoFolder(PathBuf),
    /// A required file is absent.
    #[error("{file} not found in {source_name}; {hint}")]
    Missing {
        /// The file.
        file: String,
        /// The folder or repo@revision searched.
        source_name: String,
        /// What to do.
        hint: String,
    },
    /// The hub client failed (network, authentication, unknown repo or revision).
    #[error("{repo}: {message}")]
    Hub {
        /// The repo@revision asked for.
        repo: String,
        /// The hub's message and what to do.
        message: String,
    },
    /// A model file is unreadable or malformed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Where a model's files came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A local folder.
    Folder(PathBuf),
    /// A Hugging Face repo at a resolved commit.
    Hub {
        /// `owner/name`.
        repo: String,
        /// The commit the files belong to (the snapshot folder's name in the cache).
        commit: String,
    },
}

/// The files of a LlamaForCausalLM checkpoint.
#[derive(Clone, Debug)]
pub struct ModelFiles {
    /// config.json.
    pub config: PathBuf,
    /// tokenizer.json.
    pub tokenizer: PathBuf,
    /// tokenizer_config.json and special_tokens_map.json, those the checkpoint has, in that order.
    pub tokenizer_settings: Vec<PathBuf>,
    /// tokenizer.model (SentencePiece), when the checkpoint has one: transformers rebuilds some tokenizers from it.
    pub sentencepiece: Option<PathBuf>,
    /// generation_config.json, when the checkpoint has one: transformers' `generate` reads it.
    pub generation_config: Option<PathBuf>,
    /// chat_template.jinja, when the checkpoint has one: transformers ≥ 4.47 saves the chat template there and
    /// prefers it to tokenizer_config.json's `chat_template`.
    pub chat_template: Option<PathBuf>,
    /// model.safetensors, or every shard named by model.safetensors.index.json: resolved, but for a hub model not
    /// downloaded until [`fetch_weights`], so a run can be planned and checked before gigabytes move.
    pub weights: Vec<WeightFile>,
    /// Where they came from.
    pub origin: Origin,
}

/// One safetensors file of a checkpoint.
#[derive(Clone, Debug)]
pub struct WeightFile {
    /// The file's name in the repo or folder.
    pub name: String,
    /// The file on disk, when it is there already (a local folder, or the hub cache).
    pub path: Option<PathBuf>,
}

/// The weight files on disk, downloading those the hub cache lacks (the snapshot the rest of `files` came from).
pub fn fetch_weights(files: &ModelFiles) -> Result<Vec<PathBuf>, HubError> {
    let Origin::Hub { repo, commit } = &files.origin else {
        return Ok(files.weights.iter().filter_map(|w| w.path.clone()).collect());
    };
    let hub = Hub::new(repo, Some(commit), "", |client, owner, name| client.model(owner, name))?;
    files.weights.iter().map(|w| w.path.clone().map_or_else(|| hub.get(&w.name), Ok)).collect()
}

/// A dataset split's files resolved from the hub.
#[derive(Clone, Debug)]
pub struct DatasetFiles {
    /// The files on disk, in the order `datasets` reads them (sorted by their path in the repository); a split's
    /// rows are theirs in turn.
    pub paths: Vec<PathBuf>,
    /// The dataset commit they belong to.
    pub commit: String,
}

/// Whether `HF_HUB_OFFLINE` forbids network access, read as `huggingface_hub` reads it.
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"))
}

/// Resolves `model` (a folder, or a Hugging Face id) at `revision` (hub only; default `main`).
pub fn resolve_model(model: &str, revision: Option<&str>) -> Result<ModelFiles, HubError> {
    let path = Path::new(model);
    if path.is_dir() {
        return resolve_folder(path);
    }
    if looks_like_path(model) {
        return Err(HubError::NoFolder(path.to_owned()));
    }
    let hub = Hub::new(model, revision, "", |client, owner, name| client.model(owner, name))?;
    let config = hub.get("config.json")?;
    let tokenizer = hub.get("tokenizer.json")?;
    let mut tokenizer_settings = Vec::new();
    for name in TOKENIZER_SETTINGS {
        tokenizer_settings.extend(hub.get_optional(name)?);
    }
    // The index is small; the weights themselves wait for `fetch_weights`.
    let names = match hub.get_optional("model.safetensors.index.json")? {
        Some(index) => shard_names(&index)?,
        None => vec!["model.safetensors".to_owned()],
    };
    let snapshot = config.parent().unwrap_or(Path::new("")).to_owned();
    let weights: Vec<WeightFile> = names
        .into_iter()
        .map(|name| {
            let cached = snapshot.join(&name);
            WeightFile { path: cached.is_file().then_some(cached), name }
        })
        .collect();
    if hub.offline {
        if let Some(absent) = weights.iter().find(|w| w.path.is_none()) {
            return Err(match hub.get_optional(&absent.name) {
                Err(offline_miss) => offline_miss,
                Ok(_) => hub.no_weights(),
            });
        }
    }
    let sentencepiece = hub.get_optional("tokenizer.model")?;
    let generation_config = hub.get_optional("generation_config.json")?;
    let chat_template = hub.get_optional("chat_template.jinja")?;
    let commit = snapshot_commit(&config);
    Ok(ModelFiles {
        config,
        tokenizer,
        tokenizer_settings,
        sentencepiece,
        generation_config,
        chat_template,
        weights,
        origin: Origin::Hub { repo: model.into(), commit },
    })
}

fn resolve_folder(folder: &Path) -> Result<ModelFiles, HubError> {
    let required = |name: &str| {
        let path = folder.join(name);
        path.is_file().then_some(path).ok_or_else(|| HubError::Missing {
            file: name.into(),
            source_name: folder.display().to_string(),
            hint: "a checkpoint folder needs config.json, tokenizer.json and safetensors weights".into(),
        })
    };
    let config = required("config.json")?;
    let tokenizer = required("tokenizer.json")?;
    let tokenizer_settings = TOKENIZER_SETTINGS.iter().map(|name| folder.join(name)).filter(|p| p.is_file()).collect();
    let single = folder.join("model.safetensors");
    let shards = if single.is_file() {
        vec![single]
    } else {
        let index = required("model.safetensors.index.json").map_err(|_| HubError::Missing {
            file: "model.safetensors or model.safetensors.index.json".into(),
            source_name: folder.display().to_string(),
            hint: "ibex reads safetensors weights only; convert pytorch_model.bin with transformers' save_pretrained"
                .into(),
        })?;
        let shards = shard_names(&index)?.into_iter().map(|s| folder.join(s)).collect::<Vec<_>>();
        if let Some(absent) = shards.iter().find(|s| !s.is_file()) {
            return Err(HubError::Missing {
                file: absent.display().to_string(),
                source_name: index.display().to_string(),
                hint: "the index names a shard the folder lacks; copy every shard".into(),
            });
        }
        shards
    };
    let weights = shards
        .into_iter()
        .map(|path| WeightFile {
            name: path.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned()),
            path: Some(path),
        })
        .collect();
    let optional = |name: &str| Some(folder.join(name)).filter(|p| p.is_file());
    Ok(ModelFiles {
        config,
        tokenizer,
        tokenizer_settings,
        sentencepiece: optional("tokenizer.model"),
        generation_config: optional("generation_config.json"),
        chat_template: optional("chat_template.jinja"),
        weights,
        origin: Origin::Folder(folder.to_owned()),
    })
}

impl ModelFiles {
    /// Every file but the weights: config.json, the tokenizer's files, generation_config.json, chat_template.jinja
    /// (those the checkpoint has).
    pub fn small_files(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.config, &self.tokenizer]
            .into_iter()
            .chain(&self.tokenizer_settings)
            .chain(&self.sentencepiece)
            .chain(&self.generation_config)
            .chain(&self.chat_template)
    }
}

/// A relative or absolute path rather than `owner/name`.
fn looks_like_path(model: &str) -> bool {
    model.is_empty() || model.starts_with(['.', '/', '~']) || model.matches('/').count() > 1 || model.ends_with('/')
}

/// The distinct shard files of a safetensors index, in first-appearance order.
fn shard_names(index: &Path) -> Result<Vec<String>, HubError> {
    let file_error = |message: String| HubError::File { path: index.to_owned(), message };
    let text = std::fs::read_to_string(index).map_err(|e| file_error(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| file_error(e.to_string()))?;
    let map = json["weight_map"].as_object().ok_or_else(|| file_error("no `weight_map` object".into()))?;
    let mut shards: Vec<String> = Vec::new();
    for file in map.values() {
        let file = file.as_str().ok_or_else(|| file_error("a `weight_map` value is not a file name".into()))?;
        if !shards.iter().any(|s| s == file) {
            shards.push(file.to_owned());
        }
    }
    Ok(shards)
}

/// The commit of a file inside a hub cache snapshot (`…/snapshots/<commit>/<file>`).
fn snapshot_commit(path: &Path) -> String {
    path.ancestors()
        .find(|p| p.parent().and_then(Path::file_name).is_some_and(|n| n == "snapshots"))
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One repo at one revision, online or from the cache alone.
struct Hub<T: RepoType> {
    repo: HFRepositorySync<T>,
    /// `huggingface-cli download`'s flag for the repo's type (`--repo-type dataset`), or nothing for a model.
    repo_type_flag: &'static str,
    id: String,
    revision: Option<String>,
    offline: bool,
    cache: PathBuf,
}

impl<T: RepoType> Hub<T> {
    fn new(
        id: &str,
        revision: Option<&str>,
        repo_type_flag: &'static str,
        open: impl FnOnce(&HFClientSync, &str, &str) -> HFRepositorySync<T>,
    ) -> Result<Self, HubError> {
        let hub_error = |e: HFError| HubError::Hub { repo: id.into(), message: e.to_string() };
        let client = HFClient::new().map_err(hub_error)?;
        let cache = client.cache_dir().to_owned();
        let client = HFClientSync::from_inner(client).map_err(hub_error)?;
        let (owner, name) = hf_hub::split_id(id);
        let repo = open(&client, owner, name);
        Ok(Self {
            repo,
            repo_type_flag,
            id: id.into(),
            revision: revision.map(str::to_owned),
            offline: offline(),
            cache,
        })
    }

    fn describe(&self) -> String {
        format!("{}@{}", self.id, self.revision.as_deref().unwrap_or("main"))
    }

    fn get(&self, file: &str) -> Result<PathBuf, HubError> {
        self.get_optional(file)?.ok_or_else(|| HubError::Missing {
            file: file.into(),
            source_name: self.describe(),
            hint: "check the repo id and --revision".into(),
        })
    }

    fn no_weights(&self) -> HubError {
        HubError::Missing {
            file: "model.safetensors or model.safetensors.index.json".into(),
            source_name: self.describe(),
            hint: "ibex reads safetensors weights only".into(),
        }
    }

    /// `Ok(None)` when the repo (or, offline, the cache) does not hold `file`.
    fn get_optional(&self, file: &str) -> Result<Option<PathBuf>, HubError> {
        let result = self
            .repo
            .download_file()
            .filename(file)
            .maybe_revision(self.revision.clone())
            .local_files_only(self.offline)
            .send();
        match result {
            Ok(path) => Ok(Some(path)),
            Err(HFError::EntryNotFound { .. }) => Ok(None),
            Err(HFError::LocalEntryNotFound { .. }) if self.offline && self.cached_snapshot() => Ok(None),
            Err(HFError::LocalEntryNotFound { .. }) => Err(HubError::Hub {
                repo: self.describe(),
                message: format!(
                    "not in the Hugging Face cache at {} and HF_HUB_OFFLINE=1 forbids downloading; fetch it on a \
                     machine with internet (`huggingface-cli download{} {}{}`) into that cache, or use local files \
                     instead",
                    self.cache.display(),
                    self.repo_type_flag,
                    self.id,
                    self.revision.as_deref().map_or(String::new(), |r| format!(" --revision {r}")),
                ),
            }),
            Err(e) => Err(HubError::Hub { repo: self.describe(), message: hub_hint(&e) }),
        }
    }

    /// Whether the cache holds a snapshot for the revision, so a missing file there means the repo lacks it.
    fn cached_snapshot(&self) -> bool {
        self.snapshot_dir().is_some()
    }

    /// The cached snapshot folder of the revision (`refs/<revision>` names its commit), if there is one.
    fn snapshot_dir(&self) -> Option<PathBuf> {
        let folder = format!("{}--{}", self.repo.repo_type().plural(), self.id.replace('/', "--"));
        let revision = self.revision.as_deref().unwrap_or("main");
        let repo_dir = self.cache.join(folder);
        let commit = std::fs::read_to_string(repo_dir.join("refs").join(revision))
            .map(|c| c.trim().to_owned())
            .unwrap_or_else(|_| revision.to_owned());
        let snapshot = repo_dir.join("snapshots").join(commit);
        snapshot.is_dir().then_some(snapshot)
    }
}

fn hub_hint(error: &HFError) -> String {
    match error {
        HFError::RepoNotFound { .. } => {
            format!("{error}; check the id, and set HF_TOKEN if the repo is private or gated")
        }
        HFError::AuthRequired { .. } | HFError::Forbidden { .. } => {
            format!("{error}; set HF_TOKEN to a token that has access (gated models need their terms accepted)")
        }
        HFError::RevisionNotFound { .. } => format!("{error}; check --revision"),
        other => format!("{other}; on a machine without internet set HF_HUB_OFFLINE=1 to use the cache"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_ids_are_told_apart() {
        assert!(looks_like_path("./ckpt"));
        assert!(looks_like_path("/scratch/models/salamandra"));
        assert!(looks_like_path("models/a/b"));
        assert!(!looks_like_path("BSC-LT/salamandra-2b"));
        assert!(!looks_like_path("gpt2"));
    }

    #[test]
    fn commit_is_read_from_the_snapshot_folder() {
        let path = Path::new("/c/hub/models--a--b/snapshots/0123abcd/sub/config.json");
        assert_eq!(snapshot_commit(path), "0123abcd");
        assert_eq!(snapshot_commit(Path::new("/plain/config.json")), "");
    }
}
