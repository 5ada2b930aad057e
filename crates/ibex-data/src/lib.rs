//! Reads a dataset split into rows of JSON objects, whatever the file format the hub or a user hands over: parquet
//! (the hub's own format), JSON Lines, a JSON array, CSV or TSV. Tasks then see one shape, `serde_json::Map`, as
//! lm-eval's tasks see a `datasets` row as a dict.

use parquet::file::reader::SerializedFileReader;
use serde_json::{Map, Value};
use std::fs::File;
use std::path::{Path, PathBuf};

/// One data row: column name → value.
pub type Row = Map<String, Value>;

/// A data file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file does not exist or cannot be opened.
    #[error("cannot read data file {path}: {message}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The operating system's message.
        message: String,
    },
    /// The extension is not a format ibex reads.
    #[error("{0}: unknown data format; use .parquet, .jsonl, .json, .csv or .tsv")]
    Format(PathBuf),
    /// A row (line, record) is malformed.
    #[error("{path}, row {row}: {message}")]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based row (line for JSON Lines, record for CSV/TSV/parquet, element for a JSON array).
        row: usize,
        /// What is wrong.
        message: String,
    },
}

/// Reads every row of `path`, choosing the reader by extension.
pub fn read_rows(path: &Path) -> Result<Vec<Row>, DataError> {
    let open_error = |e: std::io::Error| DataError::Open { path: path.to_owned(), message: e.to_string() };
    let row_error = |row: usize, message: String| DataError::Row { path: path.to_owned(), row, message };
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match extension.as_str() {
        "parquet" => {
            let reader = SerializedFileReader::new(File::open(path).map_err(open_error)?)
                .map_err(|e| row_error(0, format!("not a parquet file: {e}")))?;
            reader
                .into_iter()
                .enumerate()
                .map(|(i, row)| match row.map(|r| r.to_json_value()) {
                    Ok(Value::Object(map)) => Ok(map),
                    Ok(_) => Err(row_error(i + 1, "not a record".into())),
                    Err(e) => Err(row_error(i + 1, e.to_string())),
                })
                .collect()
        }
        "jsonl" | "ndjson" => json_lines(&std::fs::read_to_string(path).map_err(open_error)?, &row_error),
        "json" => {
            let text = std::fs::read_to_string(path).map_err(open_error)?;
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Array(items)) => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| match item {
                        Value::Object(map) => Ok(map),
                        _ => Err(row_error(i + 1, "array element is not an object".into())),
                    })
                    .collect(),
                Ok(Value::Object(top)) if top.get("data").is_some_and(Value::is_array) => {
                    Ok(squad_rows(top["data"].as_array().map(Vec::as_slice).unwrap_or_default()))
                }
                // `datasets` also reads JSON Lines from a .json file.
                _ => json_lines(&text, &row_error),
            }
        }
        "csv" => delimited(path, b',', true),
        // TSV files on the hub (HiTZ/xnli-eu) are read with quoting off, as their text holds bare quotes.
        "tsv" => delimited(path, b'\t', false),
        _ => Err(DataError::Format(path.to_owned())),
    }
}

/// SQuAD's own nested JSON (`data → paragraphs → qas`, as SQuAD v1.1, XQuAD and CatalanQA ship it), one row per
/// question: `id`, `title`, `context`, `question`, `answers` (`[{text, answer_start}]`). A `data` array of plain
/// records is read as rows.
fn squad_rows(data: &[Value]) -> Vec<Row> {
    let mut rows = Vec::new();
    for article in data {
        let Some(paragraphs) = article.get("paragraphs").and_then(Value::as_array) else {
            if let Value::Object(record) = article {
                rows.push(record.clone());
            }
            continue;
        };
        for paragraph in paragraphs {
            for qa in paragraph.get("qas").and_then(Value::as_array).into_iter().flatten() {
                let mut row = Row::new();
                let field = |value: Option<&Value>| value.cloned().unwrap_or(Value::Null);
                row.insert("id".into(), field(qa.get("id")));
                row.insert("title".into(), field(article.get("title")));
                row.insert("context".into(), field(paragraph.get("context")));
                row.insert("question".into(), field(qa.get("question")));
                row.insert("answers".into(), field(qa.get("answers")));
                rows.push(row);
            }
        }
    }
    rows
}

fn json_lines(text: &str, row_error: &dyn Fn(usize, String) -> DataError) -> Result<Vec<Row>, DataError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(row_error(i + 1, "line is not a JSON object".into())),
            Err(e) => Err(row_error(i + 1, format!("invalid JSON: {e}"))),
        })
        .collect()
}

/// CSV/TSV with a header row; every value is a string, as `datasets` infers none for a task that maps labels.
fn delimited(path: &Path, delimiter: u8, quoting: bool) -> Result<Vec<Row>, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(quoting)
        .from_path(path)
        .map_err(|e| DataError::Open { path: path.to_owned(), message: e.to_string() })?;
    let row_error = |row: usize, e: csv::Error| DataError::Row { path: path.to_owned(), row, message: e.to_string() };
    let header = reader.headers().map_err(|e| row_error(1, e))?.clone();
    reader
        .records()
        .enumerate()
        .map(|(i, record)| {
            let record = record.map_err(|e| row_error(i + 1, e))?;
            Ok(header.iter().zip(record.iter()).map(|(k, v)| (k.to_owned(), Value::String(v.to_owned()))).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(name: &str, content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        File::create(&path).unwrap().write_all(content.as_bytes()).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_jsonl_json_csv_and_tsv_alike() {
        let expected = serde_json::json!({"premise": "A cat sat.", "label": "1"});
        let (_d, jsonl) = file("a.jsonl", "{\"premise\": \"A cat sat.\", \"label\": \"1\"}\n\n");
        let (_d2, json) = file("a.json", "[{\"premise\": \"A cat sat.\", \"label\": \"1\"}]");
        let (_d3, csv) = file("a.csv", "premise,label\n\"A cat sat.\",1\n");
        let (_d4, tsv) = file("a.tsv", "premise\tlabel\nA cat sat.\t1\n");
        for path in [jsonl, json, csv, tsv] {
            let rows = read_rows(&path).unwrap();
            assert_eq!(Value::Object(rows[0].clone()), expected, "{}", path.display());
        }
    }

    #[test]
    fn tsv_keeps_bare_quotes() {
        let (_d, tsv) = file("q.tsv", "premise\tlabel\nHe said \"no\tquote\t2\n");
        let rows = read_rows(&tsv);
        // Three fields against a two-column header is a malformed row, reported with its number.
        assert!(matches!(rows, Err(DataError::Row { row: 1, .. })));
        let (_d, tsv) = file("q.tsv", "premise\tlabel\nHe said \"no.\t2\n");
        assert_eq!(read_rows(&tsv).unwrap()[0]["premise"], "He said \"no.");
    }

    #[test]
    fn squad_nested_json_becomes_one_row_per_question() {
        let (_d, path) = file(
            "squad.json",
            r#"{"version": "1.1", "data": [{"title": "Boats", "paragraphs": [{"context": "The boat is blue.",
            "qas": [{"id": "q1", "question": "What colour?", "answers": [{"text": "blue", "answer_start": 12}]},
                    {"id": "q2", "question": "What is blue?", "answers": [{"text": "The boat", "answer_start": 0}]}]}]}]}"#,
        );
        let rows = read_rows(&path).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["question"], "What is blue?");
        assert_eq!(rows[1]["context"], "The boat is blue.");
        assert_eq!(rows[0]["answers"][0]["text"], "blue");
        assert_eq!(rows[0]["title"], "Boats");
    }

    #[test]
    fn malformed_json_line_names_the_line() {
        let (_d, path) = file("bad.jsonl", "{\"a\": 1}\n{\"a\": \n");
        let err = read_rows(&path).unwrap_err().to_string();
        assert!(err.contains("row 2"), "{err}");
    }

    #[test]
    fn unknown_extension_is_rejected() {
        let (_d, path) = file("data.xlsx", "");
        assert!(matches!(read_rows(&path), Err(DataError::Format(_))));
    }
}
