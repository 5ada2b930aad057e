//! Python string and number semantics that lm-eval's behaviour and files depend on.

/// Python's `str.isspace` (what `strip()`, `rstrip()` and `split()` use): Unicode whitespace plus the ASCII
/// separators U+001C–U+001F, which Rust's `char::is_whitespace` leaves out.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `repr(float)` (also its `str`): the shortest digits that round-trip, fixed notation for exponents from -4 to 15,
/// scientific (`1e+16`, `1.5e-05`) otherwise.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exponent) {
        let point = exponent + 1;
        let text = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        format!("{sign}{text}")
    } else {
        let rest = if digits.len() > 1 { format!(".{}", &digits[1..]) } else { String::new() };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{}{rest}e{exp_sign}{:02}", &digits[..1], exponent.abs())
    }
}

/// Python's `str()` of a JSON value as lm-eval writes `target` and hashes it: strings as they are, everything else
/// as Python prints it (`True`, `None`, `['a', 1]`, `1.0`).
pub fn python_str(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => python_repr(other),
    }
}

/// Python's `repr()` of a JSON value.
fn python_repr(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "None".into(),
        serde_json::Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        serde_json::Value::Number(n) => number_repr(n),
        // Python quotes with ' unless the text holds ' and no "; escapes are left out (targets are plain text).
        serde_json::Value::String(s) if s.contains('\'') && !s.contains('"') => format!("\"{s}\""),
        serde_json::Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        serde_json::Value::Array(items) => {
            format!("[{}]", items.iter().map(python_repr).collect::<Vec<_>>().join(", "))
        }
        serde_json::Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", python_repr(&serde_json::Value::from(k.as_str())), python_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Python's `repr()` of a JSON number: an integer as it is, a float as [`float_repr`] spells it.
pub fn number_repr(number: &serde_json::Number) -> String {
    match (number.as_i64(), number.as_u64(), number.as_f64()) {
        (Some(i), _, _) => i.to_string(),
        (_, Some(u), _) => u.to_string(),
        (_, _, Some(f)) => float_repr(f),
        _ => number.to_string(),
    }
}

/// lm-eval's `general_detokenize` (`lm_eval/utils.py`): five literal replacements, then
/// `re.sub(r" (['.,])", r"\1", s)`, whose left-to-right, non-overlapping scan this reproduces.
pub fn general_detokenize(text: &str) -> String {
    let replaced =
        text.replace(" n't", "n't").replace(" )", ")").replace("( ", "(").replace("\" ", "\"").replace(" \"", "\"");
    let mut out = String::with_capacity(replaced.len());
    let mut chars = replaced.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ' ' && chars.peek().is_some_and(|n| matches!(n, '\'' | '.' | ',')) {
            continue;
        }
        out.push(c);
    }
    out
}

/// IberoBench's `lowercase_first_letter`, `text[0].lower() + text[1:]` (Python's lowercasing of one character may
/// yield several); empty text stays empty.
pub fn lowercase_first_letter(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detokenize_matches_general_detokenize() {
        // Expected values computed with lm-eval 0.4.13's general_detokenize.
        assert_eq!(general_detokenize("He did n't go ( far ) ."), "He didn't go (far).");
        assert_eq!(general_detokenize("un \" partit \" , ok"), "un\"partit\", ok");
        assert_eq!(general_detokenize("a  . b ' c"), "a . b' c");
    }

    #[test]
    fn floats_are_spelled_as_python_repr_spells_them() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (123456.789, "123456.789"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (1e15, "1000000000000000.0"),
        ];
        for (value, python) in cases {
            assert_eq!(float_repr(value), python, "{value}");
        }
    }
}
