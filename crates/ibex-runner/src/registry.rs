//! The task registry: every task file shipped in `tasks/` (embedded at build time) plus those of `--tasks-dir`
//! folders, each dispatched to its family by the file's `family` key.

use ibex_core::Task;
use ibex_task_nli::{NliSpec, NliTask};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The task files compiled into the binary: (path relative to the repository, content).
const BUILTIN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/builtin_tasks.rs"));

/// A task file is invalid, or a task name is unknown.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A task file cannot be read or does not validate.
    #[error("task file {file}: {message}")]
    File {
        /// The file.
        file: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// Two files define the same task.
    #[error("task `{name}` is defined twice: {first} and {second}; rename one")]
    Duplicate {
        /// The task name.
        name: String,
        /// The file seen first.
        first: String,
        /// The file seen second.
        second: String,
    },
    /// A requested task does not exist.
    #[error("unknown task `{name}`{suggestion}; `ibex tasks` lists them")]
    Unknown {
        /// The name asked for.
        name: String,
        /// ", did you mean `…`?" or nothing.
        suggestion: String,
    },
}

/// One registered task with where it came from.
#[derive(Clone)]
pub struct Entry {
    /// The task.
    pub task: Arc<dyn Task>,
    /// Its family.
    pub family: &'static str,
    /// Its language code.
    pub language: String,
    /// The task file (repository-relative for shipped tasks).
    pub source: String,
    /// SHA-256 of the task file's bytes, recorded in results so a changed definition is visible.
    pub sha256: String,
}

/// Every known task by name.
pub struct Registry {
    entries: BTreeMap<String, Entry>,
}

impl Registry {
    /// The shipped tasks plus every `*.toml` under each of `dirs`.
    pub fn load(dirs: &[impl AsRef<Path>]) -> Result<Self, RegistryError> {
        let mut registry = Self { entries: BTreeMap::new() };
        for (source, text) in BUILTIN {
            registry.add(source, text)?;
        }
        for dir in dirs {
            let dir = dir.as_ref();
            let mut files = Vec::new();
            collect_toml(dir, &mut files).map_err(|e| RegistryError::File {
                file: dir.display().to_string(),
                message: format!("cannot read task folder: {e}"),
            })?;
            files.sort();
            for file in files {
                let source = file.display().to_string();
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| RegistryError::File { file: source.clone(), message: e.to_string() })?;
                registry.add(&source, &text)?;
            }
        }
        Ok(registry)
    }

    fn add(&mut self, source: &str, text: &str) -> Result<(), RegistryError> {
        let file_error = |message: String| RegistryError::File { file: source.to_owned(), message };
        let table: toml::Table = toml::from_str(text).map_err(|e| file_error(e.to_string()))?;
        let family = table.get("family").and_then(|f| f.as_str()).unwrap_or_default();
        let (task, family, language): (Arc<dyn Task>, &'static str, String) = match family {
            ibex_task_nli::FAMILY => {
                let spec: NliSpec = toml::from_str(text).map_err(|e| file_error(e.to_string()))?;
                let task = NliTask::new(spec).map_err(|e| file_error(e.to_string()))?;
                let language = task.language().to_owned();
                (Arc::new(task), ibex_task_nli::FAMILY, language)
            }
            other => {
                return Err(file_error(format!("unknown family `{other}`; known families: {}", ibex_task_nli::FAMILY)))
            }
        };
        let name = task.name().to_owned();
        if let Some(existing) = self.entries.get(&name) {
            return Err(RegistryError::Duplicate { name, first: existing.source.clone(), second: source.to_owned() });
        }
        let sha256 = format!("{:x}", Sha256::digest(text.as_bytes()));
        self.entries.insert(name, Entry { task, family, language, source: source.to_owned(), sha256 });
        Ok(())
    }

    /// Every task, by name.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// The task called `name`, or an error suggesting the closest name.
    pub fn get(&self, name: &str) -> Result<&Entry, RegistryError> {
        self.entries.get(name).ok_or_else(|| {
            let closest = self
                .entries
                .keys()
                .map(|known| (strsim::levenshtein(name, known), known))
                .min()
                .filter(|(distance, _)| *distance <= 3.max(name.len() / 3));
            RegistryError::Unknown {
                name: name.to_owned(),
                suggestion: closest.map(|(_, known)| format!("; did you mean `{known}`?")).unwrap_or_default(),
            }
        })
    }
}

fn collect_toml(dir: &Path, files: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_toml(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_tasks_load_and_unknown_names_get_a_suggestion() {
        let registry = Registry::load(&[] as &[&Path]).unwrap();
        assert_eq!(registry.get("xnli_en").unwrap().family, "nli");
        let err = registry.get("xnli_enn").err().unwrap().to_string();
        assert_eq!(err, "unknown task `xnli_enn`; did you mean `xnli_en`?; `ibex tasks` lists them");
        let err = registry.get("squadx_completely_else").err().unwrap().to_string();
        assert_eq!(err, "unknown task `squadx_completely_else`; `ibex tasks` lists them");
    }
}
