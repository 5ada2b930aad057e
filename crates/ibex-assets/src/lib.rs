//! What the repository ships besides code, compiled into the binary so that `ibex run --suite essay` and
//! `ibex compare` work from any directory, without a checkout. Each constant lists (repository-relative path,
//! content) in path order; a user's own files are read from disk by the crates that use these.
#![deny(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The file of `list` whose name (without folder and `.toml`) is `name`.
pub fn find<'a>(list: &[(&'a str, &'a str)], name: &str) -> Option<(&'a str, &'a str)> {
    let file = format!("{name}.toml");
    list.iter().copied().find(|(path, _)| path.rsplit('/').next() == Some(file.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_folder_is_embedded() {
        assert!(TASKS.iter().any(|(path, text)| *path == "tasks/xnli/xnli_en.yaml" && text.contains("xnli_en")));
        assert_eq!(find(SUITES, "essay").unwrap().0, "configs/suites/essay.toml");
        assert!(find(MODELS, "salamandra-2b").unwrap().1.contains("BSC-LT/salamandra-2b"));
        assert!(find(PUBLISHED, "essay").is_some());
        assert!(find(SUITES, "ess").is_none());
    }
}
