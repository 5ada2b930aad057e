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
                Ok(Value::Object(_)) if text.trim().lines().count() > 1 => Err(row_error(
                    1,
                    "a JSON object that is not SQuAD's {\"data\": [...]}; use an array of objects, JSON Lines or \
                         SQuAD's nested JSON"
                        .into(),
                )),
                // `datasets` also reads JSON Lines from a .json file.
                _ => json_lines(&text, &row_error),
            }
        }
        "csv" => delimited(path, b','),
        "tsv" => delimited(path, b'\t'),
        _ => Err(DataError::Format(path.to_owned())),
    }
}

/// SQuAD's own nested JSON (`data → paragraphs → qas`, as SQuAD v1.1, XQuAD and CatalanQA ship it), one row per
/// question as the hub's `squad` loading script made them: `id`, `title`, `context`, `question`, and `answers` as
/// a struct of lists (`{text: [...], answer_start: [...]}`). A `data` array of plain records is read as rows.
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
                let answers = qa.get("answers").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
                let column = |key: &str| Value::Array(answers.iter().map(|a| field(a.get(key))).collect());
                row.insert(
                    "answers".into(),
                    serde_json::json!({"text": column("text"), "answer_start": column("answer_start")}),
                );
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

/// pandas' default `na_values`: a field spelled exactly so is missing (`None` in the row lm-eval sees).
const NA_VALUES: [&str; 19] = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
    "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// CSV/TSV as `datasets`' csv builder reads it (`datasets/packaged_modules/csv`), through `pandas.read_csv` with its
/// defaults: a header row; `"` quotes a field only where it opens one (its quotes are dropped, `""` inside is one
/// quote, text after the closing quote joins the field), elsewhere it is a plain character; a quote that never
/// closes is an error (pandas: "EOF inside string"); blank lines are skipped; `NA_VALUES` are missing; then each
/// column's type is inferred as pandas does (integers, else floats, else booleans, else text).
fn delimited(path: &Path, delimiter: u8) -> Result<Vec<Row>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::Open { path: path.to_owned(), message: e.to_string() })?;
    let row_error = |row: usize, message: String| DataError::Row { path: path.to_owned(), row, message };
    if let Some((row, line)) = unclosed_quote(&bytes, delimiter) {
        return Err(row_error(
            row,
            format!(
                "the quote opened on line {line} never closes (pandas, which lm-eval reads CSV with, fails on it too)"
            ),
        ));
    }
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).from_reader(bytes.as_slice());
    let header = unique_names(reader.headers().map_err(|e| row_error(0, e.to_string()))?);
    let mut records: Vec<Vec<Option<String>>> = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| row_error(i + 1, e.to_string()))?;
        // pandas skips lines of whitespace alone, and fills a short row's missing fields with NaN.
        if record.len() == 1 && record[0].trim().is_empty() {
            continue;
        }
        if record.len() > header.len() {
            return Err(row_error(i + 1, format!("{} fields where the header names {}", record.len(), header.len())));
        }
        let mut fields: Vec<Option<String>> =
            record.iter().map(|field| (!NA_VALUES.contains(&field)).then(|| field.to_owned())).collect();
        fields.resize(header.len(), None);
        records.push(fields);
    }
    let columns: Vec<ColumnType> =
        (0..header.len()).map(|j| ColumnType::infer(records.iter().map(|r| r[j].as_deref()))).collect();
    Ok(records
        .into_iter()
        .map(|record| {
            header
                .iter()
                .zip(&columns)
                .zip(record)
                .map(|((name, column), field)| (name.clone(), column.value(field)))
                .collect()
        })
        .collect())
}

/// Header names made unique as pandas makes them: a repeated `a` becomes `a.1`, `a.2`, ….
fn unique_names(header: &csv::StringRecord) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(header.len());
    for name in header {
        let mut unique = name.to_owned();
        let mut count = 0;
        while names.contains(&unique) {
            count += 1;
            unique = format!("{name}.{count}");
        }
        names.push(unique);
    }
    names
}

/// The data row (1-based, header excluded) and line where a field opens a quote that the file never closes.
fn unclosed_quote(bytes: &[u8], delimiter: u8) -> Option<(usize, usize)> {
    let (mut row, mut line, mut at_field_start, mut open) = (0, 1, true, None);
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if open.is_some() {
            if byte == b'"' {
                if bytes.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    open = None;
                }
            }
        } else if byte == b'"' && at_field_start {
            open = Some((row, line));
        } else if byte == b'\n' {
            row += 1;
        }
        if byte == b'\n' {
            line += 1;
        }
        at_field_start = open.is_none() && (byte == delimiter || byte == b'\n' || byte == b'\r');
        i += 1;
    }
    open
}

/// A column's type as pandas infers it from the text of every row (missing fields aside; surrounding spaces do not
/// stop a number from being one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ColumnType {
    /// `int64`: every field is an integer and none is missing.
    Integer,
    /// `float64`: every present field is a number (integers with missing fields become floats too).
    Float,
    /// `bool`: every present field is True/False (any case pandas accepts); missing ones are null.
    Boolean,
    /// `object`: text.
    Text,
}

impl ColumnType {
    fn infer<'a>(fields: impl Iterator<Item = Option<&'a str>> + Clone) -> Self {
        let missing = fields.clone().any(|f| f.is_none());
        let present = fields.flatten();
        let all = |test: fn(&str) -> bool| present.clone().all(test);
        if all(|f| f.trim().parse::<i64>().is_ok()) && !missing && present.clone().next().is_some() {
            ColumnType::Integer
        } else if all(|f| parse_float(f).is_some()) && present.clone().next().is_some() {
            ColumnType::Float
        } else if all(|f| parse_bool(f).is_some()) && present.clone().next().is_some() {
            ColumnType::Boolean
        } else {
            ColumnType::Text
        }
    }

    fn value(self, field: Option<String>) -> Value {
        let Some(field) = field else { return Value::Null };
        match self {
            ColumnType::Integer => field.trim().parse::<i64>().map_or(Value::Null, Value::from),
            ColumnType::Float => parse_float(&field).map_or(Value::Null, Value::from),
            ColumnType::Boolean => parse_bool(&field).map_or(Value::Null, Value::from),
            ColumnType::Text => Value::String(field),
        }
    }
}

/// A decimal number as pandas' parser reads one. pandas also reads `inf` and `Infinity` as floats, which JSON cannot
/// hold: ibex keeps such a column as text.
fn parse_float(field: &str) -> Option<f64> {
    let field = field.trim();
    let digits = field.trim_start_matches(['+', '-']);
    let numeric = digits.starts_with(|c: char| c.is_ascii_digit() || c == '.');
    numeric.then(|| field.parse::<f64>().ok()).flatten().filter(|v| v.is_finite())
}

/// pandas' default `true_values`/`false_values` for bool inference.
fn parse_bool(field: &str) -> Option<bool> {
    match field {
        "True" | "TRUE" | "true" => Some(true),
        "False" | "FALSE" | "false" => Some(false),
        _ => None,
    }
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
        let expected = serde_json::json!({"premise": "A cat sat.", "label": 1});
        let (_d, jsonl) = file("a.jsonl", "{\"premise\": \"A cat sat.\", \"label\": 1}\n\n");
        let (_d2, json) = file("a.json", "[{\"premise\": \"A cat sat.\", \"label\": 1}]");
        let (_d3, csv) = file("a.csv", "premise,label\n\"A cat sat.\",1\n");
        let (_d4, tsv) = file("a.tsv", "premise\tlabel\nA cat sat.\t1\n");
        for path in [jsonl, json, csv, tsv] {
            let rows = read_rows(&path).unwrap();
            assert_eq!(Value::Object(rows[0].clone()), expected, "{}", path.display());
        }
    }

    #[test]
    fn tsv_quoting_follows_pandas_defaults() {
        let (_d, tsv) = file(
            "q.tsv",
            "premise\thypothesis\tlabel\n\
             \"Ez,\" esan zuen gizonak.\tGizonak ezetz esan zuen.\t0\n\
             He said \"no.\t\"a \"\"b\"\" c\"\t1\n\
             \"two\tfields\nand a line\"\tx\t2\n\n",
        );
        let rows = read_rows(&tsv).unwrap();
        assert_eq!(rows.len(), 3);
        // A field opening with a quote loses it; text after the closing quote joins the field.
        assert_eq!(rows[0]["premise"], "Ez, esan zuen gizonak.");
        // A quote inside an unquoted field is a plain character; "" inside a quoted field is one quote.
        assert_eq!(rows[1]["premise"], "He said \"no.");
        assert_eq!(rows[1]["hypothesis"], "a \"b\" c");
        // A quoted field holds tabs and line breaks; the blank last line is skipped.
        assert_eq!(rows[2]["premise"], "two\tfields\nand a line");
        assert_eq!(rows[2]["label"], 2);
    }

    #[test]
    fn an_unclosed_quote_is_an_error_naming_row_and_line() {
        let (_d, tsv) = file("q.tsv", "premise\tlabel\nfine\t0\n\"never closed\t1\nmore\t2\n");
        let err = read_rows(&tsv).unwrap_err().to_string();
        assert!(err.ends_with("row 2: the quote opened on line 3 never closes (pandas, which lm-eval reads CSV with, fails on it too)"), "{err}");
    }

    #[test]
    fn columns_get_the_types_pandas_infers() {
        let (_d, csv) = file("t.csv", "label,score,flag,text,maybe\n0,1.5,True,None,7\n2,,false,NA,\n1,3,TRUE,x,8\n");
        let rows = read_rows(&csv).unwrap();
        let column = |name: &str| rows.iter().map(|r| r[name].clone()).collect::<Vec<_>>();
        assert_eq!(column("label"), [serde_json::json!(0), serde_json::json!(2), serde_json::json!(1)]);
        assert_eq!(column("score"), [serde_json::json!(1.5), Value::Null, serde_json::json!(3.0)]);
        assert_eq!(column("flag"), [Value::Bool(true), Value::Bool(false), Value::Bool(true)]);
        assert_eq!(column("text"), [Value::Null, Value::Null, serde_json::json!("x")]);
        // Integers with a missing field are floats, as pandas makes them.
        assert_eq!(column("maybe"), [serde_json::json!(7.0), Value::Null, serde_json::json!(8.0)]);
    }

    #[test]
    fn padded_numbers_blank_lines_short_rows_and_repeated_names_as_pandas_reads_them() {
        // datasets.load_dataset("csv") on this file gives a: int64 [1, 2, 5], b: text, a.1: float64 [3.0, 4.0, null],
        // flag: bool [true, null, null].
        let (_d, csv) = file("w.csv", "a,b,a,flag\n 1,x,3,True\n  \n2 ,y,4,\n5,z\n");
        let rows = read_rows(&csv).unwrap();
        let column = |name: &str| rows.iter().map(|r| r[name].clone()).collect::<Vec<_>>();
        assert_eq!(column("a"), [serde_json::json!(1), serde_json::json!(2), serde_json::json!(5)]);
        assert_eq!(column("a.1"), [serde_json::json!(3.0), serde_json::json!(4.0), Value::Null]);
        assert_eq!(column("flag"), [Value::Bool(true), Value::Null, Value::Null]);
        let (_d, csv) = file("long.csv", "a,b\n1,2,3\n");
        assert!(read_rows(&csv).unwrap_err().to_string().ends_with("row 1: 3 fields where the header names 2"));
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
        assert_eq!(rows[0]["answers"], serde_json::json!({"text": ["blue"], "answer_start": [12]}));
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
