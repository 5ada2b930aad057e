//! The task registry: every lm-eval task YAML file shipped in `tasks/` (embedded at build time) plus those of
//! `--tasks-dir` folders.

use ibex_core::Task;
use ibex_task_yaml::{Loaded, Recipes};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The task files compiled into the binary: (path relative to the repository, content).
const BUILTIN: &[(&str, &str)] = ibex_assets::TASKS;

/// Where BSC's recipe set lives among them.
const BSC_FOLDER: &str = "tasks/bsc/";

/// Where a task file comes from, which decides what a second definition of its name means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// ibex's own lm-eval recipes: a second shipped definition is a defect of ibex.
    Shipped,
    /// BSC's recipe set under `--recipes bsc`: replaces the shipped lm-eval task of its name.
    ShippedBsc,
    /// A `--tasks-dir` folder.
    Folder,
}

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
    /// The benchmark it belongs to: the task file's folder (`catalan_bench`, `xnli`), as in lm-eval's tasks tree.
    pub benchmark: String,
    /// The task file (repository-relative for shipped tasks).
    pub source: String,
    /// SHA-256 of the task file's bytes and its includes', recorded in results so a changed definition is visible.
    pub sha256: String,
}

impl Entry {
    /// Whose definition the task reproduces, for listings: BSC's fork (`tasks/bsc/`), ibex's own SQuAD v1.1 task,
    /// lm-eval 0.4.13 (every other shipped file, checked against lm-eval's by `scripts/check_shipped_tasks.py`), or
    /// the user's file.
    pub fn mirrors(&self) -> &'static str {
        let shipped = BUILTIN.iter().any(|(path, _)| *path == self.source);
        match () {
            _ if !shipped => "the --tasks-dir file",
            _ if self.source.starts_with(BSC_FOLDER) => "BSC's fork (b67372f7)",
            _ if self.source == "tasks/squad_en/squad_en.yaml" => "ibex (official SQuAD v1.1 scoring)",
            _ => "lm-eval 0.4.13",
        }
    }
}

/// A named set of tasks, run together and aggregated as its `aggregate_metric_list` says (lm-eval's `group`).
#[derive(Clone, Debug)]
pub struct Group {
    /// The group's name (`xnli`).
    pub group: String,
    /// Its tasks.
    pub tasks: Vec<String>,
    /// The group file.
    pub source: String,
    /// Its `aggregate_metric_list`; empty for a group that only names its tasks.
    pub metrics: Vec<ibex_task_yaml::GroupMetric>,
    /// Its version as lm-eval writes a group's (text), or null.
    pub version: serde_json::Value,
}

/// Every known task and group by name.
pub struct Registry {
    entries: BTreeMap<String, Entry>,
    groups: BTreeMap<String, Group>,
    /// Tasks and groups of lm-eval YAML files that ibex cannot run yet: name → (file, reason).
    unsupported: BTreeMap<String, (String, String)>,
    /// lm-eval YAML files that cannot be read at all: (file, reason).
    unreadable: Vec<(String, String)>,
    /// lm-eval's tags: a name that selects every task carrying it, with no aggregate.
    tags: BTreeMap<String, Vec<String>>,
    /// The names defined by the shipped files, until a `--tasks-dir` file replaces them.
    shipped: std::collections::BTreeSet<String>,
    /// The recipe set loaded.
    recipes: Recipes,
    /// `--tasks-dir` definitions that cannot run, of names a shipped task runs under instead: (name, file, reason).
    shadowed: Vec<(String, String, String)>,
}

impl Registry {
    fn empty() -> Self {
        Self {
            entries: BTreeMap::new(),
            groups: BTreeMap::new(),
            unsupported: BTreeMap::new(),
            unreadable: Vec::new(),
            tags: BTreeMap::new(),
            shipped: std::collections::BTreeSet::new(),
            recipes: Recipes::LmEval,
            shadowed: Vec::new(),
        }
    }

    /// The shipped tasks of `recipes` plus every lm-eval `*.yaml` under each of `dirs`, whose hooks run the bodies of
    /// `recipes`.
    pub fn load(dirs: &[impl AsRef<Path>], recipes: Recipes) -> Result<Self, RegistryError> {
        let mut registry = Self::empty();
        let embedded = |path: &Path| {
            // `a/../b` as the file system would resolve it: includes may climb to a sibling benchmark's folder.
            let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
            for component in path.components() {
                match component {
                    std::path::Component::ParentDir => {
                        parts.pop();
                    }
                    std::path::Component::CurDir => {}
                    other => parts.push(other.as_os_str()),
                }
            }
            let path = parts.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>().join("/");
            BUILTIN.iter().find(|(file, _)| *file == path).map(|(_, text)| (*text).to_owned()).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file among the shipped task files")
            })
        };
        for (source, text) in BUILTIN.iter().filter(|(source, _)| !source.starts_with(BSC_FOLDER)) {
            registry.add_yaml(Path::new(source), source, text, &embedded, recipes, Origin::Shipped)?;
        }
        if recipes == Recipes::Bsc {
            for (source, text) in BUILTIN.iter().filter(|(source, _)| source.starts_with(BSC_FOLDER)) {
                registry.add_yaml(Path::new(source), source, text, &embedded, recipes, Origin::ShippedBsc)?;
            }
        }
        registry.recipes = recipes;
        for dir in dirs {
            let dir = dir.as_ref();
            let mut files = Vec::new();
            collect_task_files(dir, &mut files).map_err(|e| RegistryError::File {
                file: dir.display().to_string(),
                message: format!("cannot read this --tasks-dir folder: {e}"),
            })?;
            files.sort();
            for file in files {
                let source = file.display().to_string();
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| RegistryError::File { file: source.clone(), message: e.to_string() })?;
                registry.add_yaml(
                    &file,
                    &source,
                    &text,
                    &|path| std::fs::read_to_string(path),
                    recipes,
                    Origin::Folder,
                )?;
            }
        }
        // An lm-eval group whose tasks are not all here (defined in another folder, or not runnable) cannot run.
        let missing: Vec<(String, String, String)> = registry
            .groups
            .values()
            .filter_map(|g| {
                if let Some(twice) = g.tasks.iter().enumerate().find(|(i, t)| g.tasks[..*i].contains(t)) {
                    return Some((g.group.clone(), g.source.clone(), format!("it names task `{}` twice", twice.1)));
                }
                let absent = g.tasks.iter().find(|t| !registry.entries.contains_key(t.as_str()))?;
                let why = match registry.unsupported.get(absent) {
                    Some((_, reason)) => format!("its task `{absent}` cannot run yet ({reason})"),
                    None => format!("its task `{absent}` is defined by no task file here"),
                };
                Some((g.group.clone(), g.source.clone(), why))
            })
            .collect();
        for (group, source, why) in missing {
            registry.groups.remove(&group);
            registry.unsupported.insert(group, (source, why));
        }
        for group in registry.groups.values() {
            let group_error = |message: String| RegistryError::File { file: group.source.clone(), message };
            if group.tasks.is_empty() {
                return Err(group_error(format!("group `{}` names no tasks", group.group)));
            }
            if let Some(twice) = group.tasks.iter().enumerate().find(|(i, t)| group.tasks[..*i].contains(t)) {
                return Err(group_error(format!("group `{}` names task `{}` twice", group.group, twice.1)));
            }
            let known = |t: &String| registry.entries.contains_key(t) || registry.unsupported.contains_key(t);
            if let Some(unknown) = group.tasks.iter().find(|t| !known(t)) {
                return Err(group_error(format!("group `{}` names unknown task `{unknown}`", group.group)));
            }
        }
        Ok(registry)
    }

    /// Registers what an lm-eval task YAML file defines: a task, a group, or a task ibex cannot run yet (kept with
    /// its reason, so naming it explains itself while the folder's other tasks run).
    /// A shipped file that does not load is a defect of ibex itself, reported as an error.
    fn add_yaml(
        &mut self,
        file: &Path,
        source: &str,
        text: &str,
        read: ibex_task_yaml::Read,
        recipes: Recipes,
        origin: Origin,
    ) -> Result<(), RegistryError> {
        let shipping = origin != Origin::Folder;
        let loaded = match ibex_task_yaml::load(file, read, recipes) {
            Ok(loaded) => loaded,
            Err(e) if shipping => return Err(RegistryError::File { file: source.to_owned(), message: e.to_string() }),
            Err(e) => {
                self.unreadable.push((source.to_owned(), e.to_string()));
                return Ok(());
            }
        };
        let name = match &loaded {
            Loaded::Task(task, ..) => task.name().to_owned(),
            Loaded::Group { name, .. } => name.clone(),
            Loaded::Unsupported { name, reason } if shipping => {
                return Err(RegistryError::File { file: source.to_owned(), message: format!("{name}: {reason}") })
            }
            Loaded::Unsupported { name, .. } => name.clone(),
            Loaded::Fragment => return Ok(()),
        };
        // A file of a --tasks-dir that runs replaces a shipped task or group of its name (lm-eval's own tasks folder
        // redefines xnli_en); one that cannot run leaves the shipped one alone. Two files of the folders defining
        // one name leave it unrunnable, saying so.
        let runs = !matches!(loaded, Loaded::Unsupported { .. });
        let first = self
            .entries
            .get(&name)
            .map(|e| e.source.clone())
            .or_else(|| self.groups.get(&name).map(|g| g.source.clone()))
            .or_else(|| self.unsupported.get(&name).map(|(source, _)| source.clone()));
        // BSC's files replace lm-eval's shipped tasks of their names, and only those.
        let replaced = origin == Origin::ShippedBsc && first.as_ref().is_some_and(|f| !f.starts_with(BSC_FOLDER));
        if let Some(first) = first.filter(|_| !replaced) {
            if shipping {
                return Err(RegistryError::Duplicate { name, first, second: source.to_owned() });
            }
            let shipped = self.shipped.remove(&name);
            if shipped && !runs {
                if let Loaded::Unsupported { reason, .. } = loaded {
                    let reason = format!("{reason} (the shipped task of this name runs instead)");
                    self.shadowed.push((name.clone(), source.to_owned(), reason));
                }
                self.shipped.insert(name);
                return Ok(());
            }
            self.entries.remove(&name);
            self.groups.remove(&name);
            self.unsupported.remove(&name);
            if !shipped {
                self.unsupported.insert(name, (source.to_owned(), format!("defined twice, here and in {first}")));
                return Ok(());
            }
        }
        if shipping {
            self.shipped.insert(name.clone());
        }
        match loaded {
            Loaded::Task(task, files, tags) => {
                for tag in tags {
                    let tagged = self.tags.entry(tag).or_default();
                    if !tagged.contains(&name) {
                        tagged.push(name.clone());
                    }
                }
                // The file and its includes: a changed include changes the task.
                let mut digest = Sha256::new();
                digest.update(text.as_bytes());
                for (_, include) in &files[1..] {
                    digest.update(include.as_bytes());
                }
                let sha256 = format!("{:x}", digest.finalize());
                let benchmark = benchmark(file);
                self.entries.insert(name, Entry { task, benchmark, source: source.to_owned(), sha256 });
            }
            Loaded::Group { tasks, metrics, version, .. } => {
                let group = Group { group: name.clone(), tasks, source: source.to_owned(), metrics, version };
                self.groups.insert(name, group);
            }
            Loaded::Unsupported { reason, .. } => {
                self.unsupported.insert(name, (source.to_owned(), reason));
            }
            Loaded::Fragment => {}
        }
        Ok(())
    }

    /// Every task, by name.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Tasks and groups of lm-eval YAML files that ibex cannot run yet, by name: (file, reason).
    pub fn unsupported(&self) -> impl Iterator<Item = (&String, &(String, String))> {
        self.unsupported.iter()
    }

    /// lm-eval YAML files that could not be read: (file, reason).
    pub fn unreadable(&self) -> &[(String, String)] {
        &self.unreadable
    }

    /// `--tasks-dir` definitions that cannot run, of names a shipped task runs under instead: (name, file, reason).
    pub fn shadowed(&self) -> &[(String, String, String)] {
        &self.shadowed
    }

    /// Every tag with the runnable tasks carrying it, by name.
    pub fn tags(&self) -> impl Iterator<Item = (&String, Vec<&String>)> {
        self.tags.iter().map(|(tag, tasks)| (tag, tasks.iter().filter(|t| self.entries.contains_key(*t)).collect()))
    }

    /// Every group, by name.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// Expands task and group names into the tasks to run (each once, in order) and the groups to aggregate.
    pub fn select(&self, names: &[String]) -> Result<(Vec<&Entry>, Vec<&Group>), RegistryError> {
        let mut tasks: Vec<&Entry> = Vec::new();
        let mut groups = Vec::new();
        for name in names {
            let members = match (self.groups.get(name), self.tags.get(name)) {
                (Some(group), _) => {
                    groups.push(group);
                    group.tasks.iter().map(|t| self.get(t)).collect::<Result<Vec<_>, _>>()?
                }
                (None, Some(tagged)) if !self.entries.contains_key(name) => {
                    tagged.iter().filter_map(|t| self.entries.get(t)).collect()
                }
                _ => vec![self.get(name)?],
            };
            for entry in members {
                if !tasks.iter().any(|t| t.task.name() == entry.task.name()) {
                    tasks.push(entry);
                }
            }
        }
        Ok((tasks, groups))
    }

    /// The task called `name`, or an error saying why ibex cannot run it, or suggesting the closest task or group
    /// name.
    pub fn get(&self, name: &str) -> Result<&Entry, RegistryError> {
        if let Some((file, reason)) = self.unsupported.get(name) {
            return Err(RegistryError::File { file: file.clone(), message: format!("cannot run yet: {reason}") });
        }
        let bsc_file = format!("/{name}.yaml");
        let in_bsc = BUILTIN.iter().any(|(file, _)| file.starts_with(BSC_FOLDER) && file.ends_with(&bsc_file));
        if self.recipes != Recipes::Bsc && in_bsc && !self.entries.contains_key(name) {
            return Err(RegistryError::File {
                file: format!("{BSC_FOLDER}…/{name}.yaml"),
                message: format!("`{name}` is in BSC's recipe set only: pass --recipes bsc"),
            });
        }
        self.entries.get(name).ok_or_else(|| {
            let closest = self
                .entries
                .keys()
                .chain(self.groups.keys())
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

/// The benchmark a task file belongs to: its folder's name.
fn benchmark(file: &Path) -> String {
    file.parent().and_then(Path::file_name).map_or(String::new(), |f| f.to_string_lossy().into_owned())
}

/// Every task file under `dir`: lm-eval's `.yaml`.
fn collect_task_files(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_task_files(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "yaml") {
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
        let registry = Registry::load(&[] as &[&Path], Recipes::LmEval).unwrap();
        assert_eq!(registry.unsupported().count() + registry.unreadable().len(), 0);
        // IberoBench's multiple-choice, extractive QA and MGSM tasks, xnli_va, the 15 XNLI languages, XNLIeu,
        // squad_en.
        assert_eq!(registry.entries().count(), 104);
        assert_eq!(registry.get("mgsm_direct_eu").unwrap().task.filters(), ["remove_whitespace", "flexible-extract"]);
        let tagged = registry.tags().find(|(tag, _)| *tag == "eus_exams_eu").map(|(_, tasks)| tasks.len());
        assert_eq!(tagged, Some(29));
        assert_eq!(registry.select(&["eus_exams_eu".to_owned()]).unwrap().0.len(), 29);
        assert_eq!(registry.get("xnli_en").unwrap().benchmark, "xnli");
        assert_eq!(registry.get("teca").unwrap().source, "tasks/catalan_bench/teca.yaml");
        assert_eq!(registry.get("teca").unwrap().mirrors(), "lm-eval 0.4.13");
        let bsc = Registry::load(&[] as &[&Path], Recipes::Bsc).unwrap();
        assert_eq!(bsc.get("teca").unwrap().mirrors(), "BSC's fork (b67372f7)");
        assert_eq!(bsc.get("xquad_ca").unwrap().mirrors(), "lm-eval 0.4.13");
        let err = registry.get("xnli_enn").err().unwrap().to_string();
        assert_eq!(err, "unknown task `xnli_enn`; did you mean `xnli_en`?; `ibex tasks` lists them");
        let err = registry.get("squadx_completely_else").err().unwrap().to_string();
        assert_eq!(err, "unknown task `squadx_completely_else`; `ibex tasks` lists them");
    }

    #[test]
    fn groups_expand_to_their_tasks_once() {
        let registry = Registry::load(&[] as &[&Path], Recipes::LmEval).unwrap();
        let names = ["xnli_ca".to_owned(), "nli_ca".to_owned()];
        let (tasks, groups) = registry.select(&names).unwrap();
        let tasks: Vec<_> = tasks.iter().map(|e| e.task.name()).collect();
        assert_eq!(tasks, ["xnli_ca", "teca"]);
        assert_eq!(groups[0].group, "nli_ca");
        assert_eq!(registry.select(&["xnli".to_owned()]).unwrap().0.len(), 15);
    }

    #[test]
    fn a_folder_redefining_a_name_twice_leaves_it_unrunnable() {
        let dir = tempfile::tempdir().unwrap();
        let task =
            "task: mine\ndataset_path: facebook/xnli\noutput_type: multiple_choice\nvalidation_split: validation\n\
                    doc_to_text: ''\ndoc_to_target: label\ndoc_to_choice: ['a', 'b']\n";
        std::fs::write(dir.path().join("a.yaml"), task).unwrap();
        std::fs::write(dir.path().join("b.yaml"), task).unwrap();
        let registry = Registry::load(&[dir.path()], Recipes::LmEval).unwrap();
        let err = registry.get("mine").err().unwrap().to_string();
        let first = dir.path().join("a.yaml").display().to_string();
        assert!(err.ends_with(&format!("b.yaml: cannot run yet: defined twice, here and in {first}")), "{err}");
    }
}
