//! A task YAML file with its `include`s merged, as lm-eval 0.4.13's `tasks/_yaml_loader.load_yaml` merges them: each
//! included file (a path, or a list of them, relative to the including file's folder) gives defaults, a later include
//! over an earlier one, and the file's own keys over all of them. `!function NAME` values are kept as [`Value::Function`].

use serde_yaml_ng::Value as Yaml;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The key under which a `!function` inside a value is kept: `{"!function": "utils.f", "!folder": "catalan_bench"}`.
pub const FUNCTION_KEY: &str = "!function";

/// Beside [`FUNCTION_KEY`]: the folder of the file that holds the tag.
pub const FOLDER_KEY: &str = "!folder";

/// Beside [`FUNCTION_KEY`]: that folder's path.
pub const DIR_KEY: &str = "!dir";

/// Beside [`FUNCTION_KEY`]: where the tag is written ([`Value::Function`]'s `at`).
pub const AT_KEY: &str = "!at";

/// A task file's value, YAML's plain values plus lm-eval's `!function` tag.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Anything YAML writes, as JSON.
    Plain(serde_json::Value),
    /// `!function module.name`: a Python hook, which ibex resolves to a Rust function of that name.
    Function {
        /// `module.name` as the file writes it.
        name: String,
        /// The folder of the file that holds the tag, where lm-eval looks for the module: its name (`catalan_bench`)
        /// qualifies the function ibex looks up.
        folder: String,
        /// That folder's path, where the module's Python source may be read to check it.
        dir: PathBuf,
        /// The file and line that hold the tag (`tasks/catalan_bench/_common_yaml:7`), for errors.
        at: String,
    },
}

/// Where a value was read from: what a `!function` inside it records.
#[derive(Clone, Copy)]
struct Origin<'a> {
    folder: &'a str,
    dir: &'a Path,
    path: &'a Path,
    text: &'a str,
}

impl Origin<'_> {
    /// `path:line` of the first `!function NAME` in the file outside comments (line 1 when the text spells it
    /// otherwise).
    fn at(&self, name: &str) -> String {
        let names_it = |line: &str| {
            let code = line.split_once('#').map_or(line, |(code, _)| code);
            code.split("!function").skip(1).any(|rest| {
                let rest = rest.trim_start().trim_start_matches(['"', '\'']);
                rest.strip_prefix(name)
                    .is_some_and(|after| !after.starts_with(|c: char| c.is_alphanumeric() || c == '_' || c == '.'))
            })
        };
        let line = self.text.lines().position(names_it).map_or(1, |i| i + 1);
        format!("{}:{line}", self.path.display())
    }
}

impl Value {
    /// A value read from inside another (a `fewshot_config` key, say): a `!function` kept there as
    /// `{"!function": …}` becomes [`Value::Function`] again.
    pub fn nested(value: &serde_json::Value) -> Value {
        let text = |key: &str| value.get(key).and_then(serde_json::Value::as_str).map(str::to_owned);
        match (text(FUNCTION_KEY), text(FOLDER_KEY), text(DIR_KEY), text(AT_KEY)) {
            (Some(name), Some(folder), Some(dir), Some(at)) => Value::Function { name, folder, dir: dir.into(), at },
            _ => Value::Plain(value.clone()),
        }
    }

    /// The text, when the value is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Plain(serde_json::Value::String(s)) => Some(s),
            _ => None,
        }
    }
}

/// A file's keys after merging its includes, and every file read with its text, the including file first.
#[derive(Debug)]
pub struct Merged {
    /// The keys.
    pub keys: BTreeMap<String, Value>,
    /// The files read, with their texts.
    pub files: Vec<(PathBuf, String)>,
}

/// Reads a file's text: from disk, or from the task files compiled into ibex.
pub type Read<'a> = &'a dyn Fn(&Path) -> std::io::Result<String>;

/// Reads `path` and its includes with `read`. Errors name the file.
pub fn load(path: &Path, read: Read) -> Result<Merged, String> {
    let mut files = Vec::new();
    let keys = load_into(path, read, &mut files, 0)?;
    Ok(Merged { keys, files })
}

/// Parses one file's text (without resolving includes) into its keys.
pub fn parse(text: &str, path: &Path) -> Result<BTreeMap<String, Value>, String> {
    let yaml: Yaml = serde_yaml_ng::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
    let Yaml::Mapping(mapping) = yaml else {
        return Err(format!("{}: a task file is a mapping of keys (task:, dataset_path:, …)", path.display()));
    };
    let folder = path.parent().and_then(Path::file_name).map_or(String::new(), |f| f.to_string_lossy().into_owned());
    let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
    let folder = Origin { folder: &folder, dir: &dir, path, text };
    mapping
        .into_iter()
        .map(|(key, value)| {
            let key =
                key.as_str().map(str::to_owned).ok_or_else(|| format!("{}: a key is not text", path.display()))?;
            let value = convert(value, folder).map_err(|e| format!("{}: `{key}`: {e}", path.display()))?;
            Ok((key, value))
        })
        .collect()
}

fn load_into(
    path: &Path,
    read: Read,
    files: &mut Vec<(PathBuf, String)>,
    depth: usize,
) -> Result<BTreeMap<String, Value>, String> {
    if depth > 16 {
        return Err(format!("{}: includes nest more than 16 deep (a cycle?)", path.display()));
    }
    let text = read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut own = parse(&text, path)?;
    files.push((path.to_owned(), text));
    let Some(include) = own.remove("include") else { return Ok(own) };
    let includes: Vec<String> = match include {
        Value::Plain(serde_json::Value::String(one)) => vec![one],
        Value::Plain(serde_json::Value::Array(many)) => many
            .into_iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| format!("{}: include names a file", path.display())))
            .collect::<Result<_, _>>()?,
        _ => return Err(format!("{}: `include` names a file or a list of files", path.display())),
    };
    let folder = path.parent().unwrap_or(Path::new("."));
    let mut merged = BTreeMap::new();
    // lm-eval 0.4.13's `_yaml_loader.load_yaml`: in list order, a later include over an earlier one; a relative
    // path is the including file's folder's.
    for include in &includes {
        let included = if Path::new(include).is_absolute() { PathBuf::from(include) } else { folder.join(include) };
        merged.extend(load_into(&included, read, files, depth + 1)?);
    }
    merged.extend(own);
    Ok(merged)
}

fn convert(value: Yaml, folder: Origin) -> Result<Value, String> {
    match value {
        Yaml::Tagged(tagged) if tagged.tag == "function" => match tagged.value {
            Yaml::String(name) => Ok(Value::Function {
                at: folder.at(&name),
                folder: folder.folder.to_owned(),
                dir: folder.dir.to_owned(),
                name,
            }),
            _ => Err("`!function` names a function (module.name)".into()),
        },
        Yaml::Tagged(tagged) => Err(format!("the YAML tag {} is not one lm-eval reads", tagged.tag)),
        other => Ok(Value::Plain(to_json(other, folder)?)),
    }
}

fn to_json(value: Yaml, folder: Origin) -> Result<serde_json::Value, String> {
    Ok(match value {
        Yaml::Null => serde_json::Value::Null,
        Yaml::Bool(b) => serde_json::Value::Bool(b),
        Yaml::Number(n) => serde_json::to_value(&n).map_err(|e| e.to_string())?,
        Yaml::String(s) => serde_json::Value::String(s),
        Yaml::Sequence(items) => {
            serde_json::Value::Array(items.into_iter().map(|i| to_json(i, folder)).collect::<Result<_, _>>()?)
        }
        Yaml::Mapping(map) => serde_json::Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s,
                        Yaml::Number(n) => n.to_string(),
                        Yaml::Bool(b) => if b { "True" } else { "False" }.to_owned(),
                        _ => return Err("a mapping key is not text".to_owned()),
                    };
                    Ok((key, to_json(v, folder)?))
                })
                .collect::<Result<_, String>>()?,
        ),
        // A hook inside a value (a metric's function, a filter's): kept as `{"!function": name}` so whoever reads
        // the value can name it.
        Yaml::Tagged(tagged) if tagged.tag == "function" => match tagged.value {
            Yaml::String(name) => serde_json::json!({
                AT_KEY: folder.at(&name),
                FUNCTION_KEY: name,
                FOLDER_KEY: folder.folder,
                DIR_KEY: folder.dir.to_string_lossy(),
            }),
            _ => return Err("`!function` names a function (module.name)".into()),
        },
        Yaml::Tagged(tagged) => return Err(format!("the YAML tag {} is not one lm-eval reads", tagged.tag)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_give_defaults_and_the_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("_common_yaml"),
            "target_delimiter: ' '\ndoc_to_text: '{{q}}'\nmetric_list:\n  - metric: acc\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("other_yaml"), "doc_to_text: other\ndescription: d\ntarget_delimiter: '-'\n")
            .unwrap();
        std::fs::write(
            dir.path().join("t.yaml"),
            "include: [_common_yaml, other_yaml]\ntask: t\ndoc_to_text: mine\nprocess_docs: !function utils.f\n",
        )
        .unwrap();
        let merged = load(&dir.path().join("t.yaml"), &|p| std::fs::read_to_string(p)).unwrap();
        assert_eq!(merged.keys["doc_to_text"].as_str(), Some("mine"));
        assert_eq!(merged.keys["description"].as_str(), Some("d"));
        // The later include wins.
        assert_eq!(merged.keys["target_delimiter"].as_str(), Some("-"));
        let folder = dir.path().file_name().unwrap().to_string_lossy().into_owned();
        let at = format!("{}:4", dir.path().join("t.yaml").display());
        // A longer name and a comment before it do not count.
        let origin = Origin {
            folder: "f",
            dir: dir.path(),
            path: Path::new("x.yaml"),
            text: "a: !function utils.f_all\n# b: !function utils.f\nc: !function utils.f  # here\n",
        };
        assert_eq!(origin.at("utils.f"), "x.yaml:3");
        let function = Value::Function { name: "utils.f".into(), folder, dir: dir.path().to_owned(), at };
        assert_eq!(merged.keys["process_docs"], function);
        assert_eq!(merged.files.len(), 3);
        assert!(!merged.keys.contains_key("include"));
    }
}
