//! Python string semantics that lm-eval's behaviour depends on.

/// Python's `str.isspace` (what `strip()`, `rstrip()` and `split()` use): Unicode whitespace plus the ASCII
/// separators U+001C–U+001F, which Rust's `char::is_whitespace` leaves out.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}
