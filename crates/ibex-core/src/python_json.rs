//! JSON written as Python's `json.dumps` writes it (separators, indentation, `ensure_ascii`, float spelling): what
//! lm-eval writes to its sample logs, and what transformers' `tojson` filter gives chat templates.

use serde_json::Value;

/// `json.dumps` keyword arguments.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Escape every non-ASCII character as `\uXXXX`.
    pub ensure_ascii: bool,
    /// One level of indentation; `None` writes everything on one line.
    pub indent: Option<String>,
    /// `(item, key)` separators; Python's defaults when `None`: `(", ", ": ")`, or `(",", ": ")` with an indent.
    pub separators: Option<(String, String)>,
    /// Sort object keys.
    pub sort_keys: bool,
}

/// `json.dumps(value, **options)`.
pub fn dumps(value: &Value, options: &Options) -> String {
    let (item, key) = options.separators.clone().unwrap_or_else(|| {
        let item = if options.indent.is_some() { "," } else { ", " };
        (item.to_owned(), ": ".to_owned())
    });
    let mut out = String::new();
    write(value, options, &item, &key, 0, &mut out);
    out
}

fn write(value: &Value, options: &Options, item: &str, key: &str, depth: usize, out: &mut String) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(indent) = &options.indent {
            out.push('\n');
            out.push_str(&indent.repeat(depth));
        }
    };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&crate::python::number_repr(n)),
        Value::String(s) => string(s, options.ensure_ascii, out),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item);
                }
                newline(out, depth + 1);
                write(v, options, item, key, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if options.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(item);
                }
                newline(out, depth + 1);
                string(k, options.ensure_ascii, out);
                out.push_str(key);
                write(v, options, item, key, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

/// A JSON string as Python escapes it.
fn string(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_escapes_and_separators_follow_python() {
        let value = serde_json::json!({"b": ["ü😀", 1, null], "a": {}});
        let plain = Options { ensure_ascii: true, indent: None, separators: None, sort_keys: true };
        assert_eq!(dumps(&value, &plain), r#"{"a": {}, "b": ["\u00fc\ud83d\ude00", 1, null]}"#);
        let compact =
            Options { ensure_ascii: false, indent: None, separators: Some((",".into(), ":".into())), sort_keys: false };
        assert_eq!(dumps(&value, &compact), r#"{"b":["ü😀",1,null],"a":{}}"#);
    }
}
