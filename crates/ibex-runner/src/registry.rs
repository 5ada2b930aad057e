//! The task registry: every task file shipped in `tasks/` (embedded at build time) plus those of `--tasks-dir`
//! folders, each dispatched to its family by the file's `family` key.

use ibex_core::{Task, TaskError, TaskFamily};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Every task family ibex knows. Adding a family is one line here.
const FAMILIES: &[&dyn TaskFamily] = &[&ibex_task_nli::Nli, &ibex_task_qa::Qa];

/// The task files compiled into the binary: (path relative to the repository, content).
const BUILTIN: &[(&str, &str)] = ibex_assets::TASKS;

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
    /// The task file (repository-relative for shipped tasks).
    pub source: String,
    /// SHA-256 of the task file's bytes, recorded in results so a changed definition is visible.
    pub sha256: String,
}

/// A named set of tasks whose scores are also aggregated, weighted by size (lm-eval's `weight_by_size: true`).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// The group's name (`xnli`).
    pub group: String,
    /// Its tasks.
    pub tasks: Vec<String>,
    /// The group file.
    #[serde(skip)]
    pub source: String,
    /// The metrics aggregated (an lm-eval group's `aggregate_metric_list`); every metric of the first task when
    /// `None` (ibex's group files).
    #[serde(skip)]
    pub metrics: Option<Vec<String>>,
}

/// Every known task and group by name.
pub struct Registry {
    entries: BTreeMap<String, Entry>,
    groups: BTreeMap<String, Group>,
    /// Tasks and groups of lm-eval YAML files that ibex cannot run yet: name → (file, reason).
    unsupported: BTreeMap<String, (String, String)>,
    /// lm-eval YAML files that cannot be read at all: (file, reason).
    unreadable: Vec<(String, String)>,
}

impl Registry {
    fn empty() -> Self {
        Self { entries: BTreeMap::new(), groups: BTreeMap::new(), unsupported: BTreeMap::new(), unreadable: Vec::new() }
    }

    /// The shipped tasks plus every `*.toml` and lm-eval `*.yaml` under each of `dirs`.
    pub fn load(dirs: &[impl AsRef<Path>]) -> Result<Self, RegistryError> {
        let mut registry = Self::empty();
        for (source, text) in BUILTIN {
            registry.add(source, text)?;
        }
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
                if file.extension().is_some_and(|e| e == "yaml") {
                    registry.add_yaml(&file, &source, &text)?;
                } else {
                    registry.add(&source, &text)?;
                }
            }
        }
        // An lm-eval group whose tasks are not all here (defined in another folder, or not runnable) cannot run.
        let missing: Vec<(String, String, String)> = registry
            .groups
            .values()
            .filter(|g| g.source.ends_with(".yaml"))
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

    fn add(&mut self, source: &str, text: &str) -> Result<(), RegistryError> {
        let file_error = |message: String| RegistryError::File { file: source.to_owned(), message };
        let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let toml_error = |e: toml::de::Error| {
            file_error(match e.span() {
                Some(span) => format!("line {}: {}", line(span.start), e.message().trim_end().replace('\n', "; ")),
                None => e.message().trim_end().replace('\n', "; "),
            })
        };
        let task_error = |e: TaskError| match e {
            TaskError::Spec { message, span: Some(span) } => {
                file_error(format!("line {}: {message}", line(span.start)))
            }
            other => file_error(other.to_string()),
        };
        let table: toml::Table = toml::from_str(text).map_err(toml_error)?;
        if table.contains_key("group") {
            let mut group: Group = toml::from_str(text).map_err(toml_error)?;
            group.source = source.to_owned();
            let name = group.group.clone();
            self.ensure_new(&name, source)?;
            self.groups.insert(name, group);
            return Ok(());
        }
        let family_name = table.get("family").and_then(|f| f.as_str()).unwrap_or_default();
        let Some(family) = FAMILIES.iter().find(|f| f.name() == family_name) else {
            let known: Vec<&str> = FAMILIES.iter().map(|f| f.name()).collect();
            return Err(file_error(format!("unknown family `{family_name}`; known families: {}", known.join(", "))));
        };
        let task = family.load(text).map_err(task_error)?;
        let name = task.name().to_owned();
        self.ensure_new(&name, source)?;
        let sha256 = format!("{:x}", Sha256::digest(text.as_bytes()));
        self.entries.insert(name, Entry { task, family: family.name(), source: source.to_owned(), sha256 });
        Ok(())
    }

    /// Registers what an lm-eval task YAML file defines: a task, a group, or a task ibex cannot run yet (kept with
    /// its reason, so naming it explains itself while the folder's other tasks run).
    fn add_yaml(&mut self, file: &Path, source: &str, text: &str) -> Result<(), RegistryError> {
        let loaded = match ibex_task_yaml::load(file) {
            Ok(loaded) => loaded,
            Err(e) => {
                self.unreadable.push((source.to_owned(), e.to_string()));
                return Ok(());
            }
        };
        let name = match &loaded {
            ibex_task_yaml::Loaded::Task(task, _) => task.name().to_owned(),
            ibex_task_yaml::Loaded::Group { name, .. } | ibex_task_yaml::Loaded::Unsupported { name, .. } => {
                name.clone()
            }
            ibex_task_yaml::Loaded::Fragment => return Ok(()),
        };
        // A file of a --tasks-dir that runs replaces a shipped task or group of its name (lm-eval's own tasks folder
        // redefines xnli_en); one that cannot run leaves the shipped one alone. Two files of the folders defining
        // one name leave it unrunnable, saying so.
        let runs = !matches!(loaded, ibex_task_yaml::Loaded::Unsupported { .. });
        let first = self
            .entries
            .get(&name)
            .map(|e| e.source.clone())
            .or_else(|| self.groups.get(&name).map(|g| g.source.clone()))
            .or_else(|| self.unsupported.get(&name).map(|(source, _)| source.clone()));
        if let Some(first) = first {
            let shipped = BUILTIN.iter().any(|(file, _)| *file == first);
            if shipped && !runs {
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
        match loaded {
            ibex_task_yaml::Loaded::Task(task, files) => {
                // The file and its includes: a changed include changes the task.
                let mut digest = Sha256::new();
                digest.update(text.as_bytes());
                for include in &files[1..] {
                    digest.update(std::fs::read(include).unwrap_or_default());
                }
                let sha256 = format!("{:x}", digest.finalize());
                self.entries.insert(name, Entry { task, family: "yaml", source: source.to_owned(), sha256 });
            }
            ibex_task_yaml::Loaded::Group { tasks, metrics, .. } => {
                let group = Group { group: name.clone(), tasks, source: source.to_owned(), metrics: Some(metrics) };
                self.groups.insert(name, group);
            }
            ibex_task_yaml::Loaded::Unsupported { reason, .. } => {
                self.unsupported.insert(name, (source.to_owned(), reason));
            }
            ibex_task_yaml::Loaded::Fragment => {}
        }
        Ok(())
    }

    /// Fails if a task or group called `name` is already registered.
    fn ensure_new(&self, name: &str, source: &str) -> Result<(), RegistryError> {
        let first = self.entries.get(name).map(|e| &e.source).or_else(|| self.groups.get(name).map(|g| &g.source));
        match first {
            Some(first) => {
                Err(RegistryError::Duplicate { name: name.to_owned(), first: first.clone(), second: source.to_owned() })
            }
            None => Ok(()),
        }
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

    /// Every group, by name.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// Expands task and group names into the tasks to run (each once, in order) and the groups to aggregate.
    pub fn select(&self, names: &[String]) -> Result<(Vec<&Entry>, Vec<&Group>), RegistryError> {
        let mut tasks: Vec<&Entry> = Vec::new();
        let mut groups = Vec::new();
        for name in names {
            let members = match self.groups.get(name) {
                Some(group) => {
                    groups.push(group);
                    group.tasks.iter().map(|t| self.get(t)).collect::<Result<Vec<_>, _>>()?
                }
                None => vec![self.get(name)?],
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

/// Every task file under `dir`: ibex's `.toml` and lm-eval's `.yaml`.
fn collect_task_files(dir: &Path, files: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_task_files(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "toml" || e == "yaml") {
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

    #[test]
    fn groups_expand_to_their_tasks_once() {
        let registry = Registry::load(&[] as &[&Path]).unwrap();
        let names = ["xnli_ca".to_owned(), "nli_ca".to_owned()];
        let (tasks, groups) = registry.select(&names).unwrap();
        let tasks: Vec<_> = tasks.iter().map(|e| e.task.name()).collect();
        assert_eq!(tasks, ["xnli_ca", "teca"]);
        assert_eq!(groups[0].group, "nli_ca");
        assert_eq!(registry.select(&["xnli".to_owned()]).unwrap().0.len(), 15);
    }

    #[test]
    fn a_second_definition_of_a_name_is_refused() {
        let mut registry = Registry::load(&[] as &[&Path]).unwrap();
        let text = BUILTIN.iter().find(|(p, _)| p.ends_with("xnli_en.toml")).unwrap().1;
        let err = registry.add("mine/xnli_en.toml", text).unwrap_err().to_string();
        assert_eq!(err, "task `xnli_en` is defined twice: tasks/nli/xnli_en.toml and mine/xnli_en.toml; rename one");
        let err = registry.add("g.toml", "group = \"xnli\"\ntasks = [\"xnli_en\"]\n").unwrap_err().to_string();
        assert!(err.starts_with("task `xnli` is defined twice: tasks/groups/xnli.toml and g.toml"), "{err}");
    }

    #[test]
    fn a_group_with_no_tasks_or_a_task_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("g.toml"), "group = \"mine\"\ntasks = []\n").unwrap();
        let err = Registry::load(&[dir.path()]).err().unwrap().to_string();
        assert!(err.ends_with("g.toml: group `mine` names no tasks"), "{err}");
        std::fs::write(dir.path().join("g.toml"), "group = \"mine\"\ntasks = [\"xnli_en\", \"xnli_en\"]\n").unwrap();
        let err = Registry::load(&[dir.path()]).err().unwrap().to_string();
        assert!(err.ends_with("g.toml: group `mine` names task `xnli_en` twice"), "{err}");
    }

    #[test]
    fn task_file_errors_name_the_line() {
        let mut registry = Registry::empty();
        let text = BUILTIN.iter().find(|(p, _)| p.ends_with("xnli_en.toml")).unwrap().1;
        let bad = text.replace("{premise}, right? Also, {hypothesis}", "{premise}, right? Also, {hypotesis}");
        let err = registry.add("x.toml", &bad).unwrap_err().to_string();
        let line = bad.lines().position(|l| l.contains("hypotesis")).unwrap() + 1;
        assert!(err.starts_with(&format!("task file x.toml: line {line}: unknown template variable")), "{err}");
        let bad = text.replace("family = \"nli\"", "family = \"nli\"\nshots = 3");
        let err = registry.add("y.toml", &bad).unwrap_err().to_string();
        assert!(err.starts_with("task file y.toml: line 4: unknown field `shots`"), "{err}");
        let bad = text.replace("[recipe]", "[recipe]\nshots = 3");
        let err = registry.add("z.toml", &bad).unwrap_err().to_string();
        let line = bad.lines().position(|l| l == "shots = 3").unwrap() + 1;
        assert!(err.starts_with(&format!("task file z.toml: line {line}: unknown field `shots`")), "{err}");
        let bad = text.replace("family = \"nli\"", "family = \"mcq\"");
        let err = registry.add("w.toml", &bad).unwrap_err().to_string();
        assert_eq!(err, "task file w.toml: unknown family `mcq`; known families: nli, qa");
    }
}
