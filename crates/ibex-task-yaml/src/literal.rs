//! Python's `ast.literal_eval` for what lm-eval feeds it: a rendered `doc_to_choice` or `doc_to_target` template
//! that prints a list (`['yes', 'no']`, `["it's", 'x']`, `[0, 2]`), a number, or a quoted string.

use serde_json::Value;

/// The value of a Python literal: strings, integers, floats, `True`/`False`/`None`, lists and tuples of them.
/// Errors name what could not be read.
pub fn literal_eval(text: &str) -> Result<Value, String> {
    let mut parser = Parser { chars: text.trim().chars().collect(), at: 0 };
    let value = parser.value()?;
    parser.skip_space();
    if parser.at != parser.chars.len() {
        return Err(format!("`{text}` is not one Python literal (text after position {})", parser.at));
    }
    Ok(value)
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.skip_space();
        match self.peek() {
            Some('[') => self.sequence(']'),
            Some('(') => self.sequence(')'),
            Some(quote @ ('\'' | '"')) => self.string(quote).map(Value::String),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => self.number(),
            Some(c) if c.is_alphabetic() => {
                let start = self.at;
                while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    self.at += 1;
                }
                match self.chars[start..self.at].iter().collect::<String>().as_str() {
                    "True" => Ok(Value::Bool(true)),
                    "False" => Ok(Value::Bool(false)),
                    "None" => Ok(Value::Null),
                    word => Err(format!("`{word}` is a name, not a Python literal")),
                }
            }
            Some(c) => Err(format!("`{c}` cannot start a Python literal")),
            None => Err("an empty string is not a Python literal".into()),
        }
    }

    fn sequence(&mut self, close: char) -> Result<Value, String> {
        self.at += 1;
        let mut items = Vec::new();
        loop {
            self.skip_space();
            if self.peek() == Some(close) {
                self.at += 1;
                return Ok(Value::Array(items));
            }
            items.push(self.value()?);
            self.skip_space();
            match self.peek() {
                Some(',') => self.at += 1,
                Some(c) if c == close => {}
                _ => return Err(format!("expected `,` or `{close}` in a Python list")),
            }
        }
    }

    fn string(&mut self, quote: char) -> Result<String, String> {
        self.at += 1;
        let mut text = String::new();
        while let Some(c) = self.peek() {
            self.at += 1;
            match c {
                c if c == quote => return Ok(text),
                '\\' => {
                    let escaped = self.peek().ok_or("a string ends in a backslash")?;
                    self.at += 1;
                    match escaped {
                        'n' => text.push('\n'),
                        't' => text.push('\t'),
                        'r' => text.push('\r'),
                        '0' => text.push('\0'),
                        'x' => text.push(self.code_point(2)?),
                        'u' => text.push(self.code_point(4)?),
                        'U' => text.push(self.code_point(8)?),
                        '\n' => {}
                        '\\' | '\'' | '"' => text.push(escaped),
                        other => {
                            text.push('\\');
                            text.push(other);
                        }
                    }
                }
                c => text.push(c),
            }
        }
        Err("a string is not closed".into())
    }

    fn code_point(&mut self, digits: usize) -> Result<char, String> {
        let hex: String = self.chars.get(self.at..self.at + digits).ok_or("a short escape")?.iter().collect();
        self.at += digits;
        u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32).ok_or_else(|| format!("bad escape `{hex}`"))
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_')) {
            self.at += 1;
        }
        let text: String = self.chars[start..self.at].iter().filter(|&&c| c != '_').collect();
        if let Ok(integer) = text.parse::<i64>() {
            return Ok(Value::from(integer));
        }
        text.parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("`{text}` is not a Python number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_of_strings_in_both_quotes_and_with_escapes() {
        assert_eq!(literal_eval("['yes', 'no']"), Ok(json!(["yes", "no"])));
        assert_eq!(
            literal_eval(r#"["it's", 'say \"hi\"', 'a\nb', 'caf\xe9']"#),
            Ok(json!(["it's", "say \"hi\"", "a\nb", "café"]))
        );
        assert_eq!(literal_eval("( 1, -2.5, True, None, )"), Ok(json!([1, -2.5, true, null])));
        assert_eq!(literal_eval("[]"), Ok(json!([])));
        assert_eq!(literal_eval("7"), Ok(json!(7)));
    }

    #[test]
    fn what_is_not_a_literal_is_named() {
        assert!(literal_eval("[a, b]").unwrap_err().contains("`a` is a name"));
        assert!(literal_eval("['x'").unwrap_err().contains("expected `,`"));
        assert!(literal_eval("'x").unwrap_err().contains("not closed"));
        assert!(literal_eval("['x'] y").unwrap_err().contains("not one Python literal"));
    }
}
