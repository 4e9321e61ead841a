//! Integer literals in JSON text that no 64-bit integer holds are refused before a JSON
//! parser rounds them to floats.
//!
//! serde_json reads an integer literal outside i64 and u64 (below −2⁶³ or above 2⁶⁴ − 1) as
//! the nearest float, so once a document is parsed, `18446744073709551616` cannot be told
//! from `1.8446744073709552e19`. Hypha's rule (`markdown/DATA-MODEL.md`) is that a value
//! written as an integer must fit in i64, and a number written with a fraction or an
//! exponent is a float. So every input path checks the text before parsing it
//! ([`check_integer_literals`]), and [`crate::Primitive`]'s JSON reader refuses the parsed
//! integers above i64 (which the parser holds exactly, as u64, and which fields such as
//! a clock's milliseconds may use).

use crate::{Error, Result};

/// Refuses JSON `text` holding an integer literal (no fraction, no exponent) that neither
/// i64 nor u64 holds, naming the literal. Text inside strings is skipped; the text need not be valid JSON
/// (the parser that follows reports that).
pub fn check_integer_literals(text: &str) -> Result<()> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = skip_string(bytes, i + 1),
            b'-' | b'0'..=b'9' => {
                let end = number_end(bytes, i);
                check_number(&text[i..end])?;
                i = end;
            }
            // A bare word (true, false, null or garbage) may hold digits: skip it whole.
            b if b.is_ascii_alphabetic() || b == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The index just past the string whose body starts at `i` (escapes included).
pub(crate) fn skip_string(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The index just past the number token starting at `start`.
pub(crate) fn number_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
        i += 1;
    }
    i
}

/// Refuses one number token if it is written as an integer that neither i64 nor u64 holds.
pub(crate) fn check_number(token: &str) -> Result<()> {
    let is_integer = token.bytes().any(|b| b.is_ascii_digit())
        && !token.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'));
    if is_integer && token.parse::<i64>().is_err() && token.parse::<u64>().is_err() {
        return Err(Error::NumberOutOfRange(token.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_beyond_64_bits_are_refused_at_both_ends_and_the_edges_pass() {
        let refused = [
            "-9223372036854775809",
            "18446744073709551616",
            "-18446744073709551616",
            "100000000000000000000000000000",
        ];
        for literal in refused {
            for text in [
                literal.to_owned(),
                format!("[1, {literal}]"),
                format!(r#"{{"value": {literal}}}"#),
                format!(r#"[{{"local_context": "n", "target": {{"value": {literal}}}}}]"#),
            ] {
                assert_eq!(
                    check_integer_literals(&text),
                    Err(Error::NumberOutOfRange(literal.to_owned())),
                    "{text}"
                );
            }
        }
        let accepted = [
            "9223372036854775807",
            "-9223372036854775808",
            // Held exactly (as u64); a value is refused above i64 when it is read.
            "9223372036854775808",
            "18446744073709551615",
            "0",
            "-0",
            "1.8446744073709552e19",
            "18446744073709551616.0",
            "1e400",
            "-9223372036854775809.5",
            "2E3",
        ];
        for literal in accepted {
            let text = format!(r#"{{"value": {literal}}}"#);
            assert_eq!(check_integer_literals(&text), Ok(()), "{text}");
        }
    }

    #[test]
    fn digits_inside_strings_and_words_are_not_numbers() {
        let texts = [
            r#"{"id": "18446744073709551616"}"#,
            r#"{"a\"18446744073709551616": 1}"#,
            r#"{"a\\": "x", "b": "99999999999999999999"}"#,
            r#"{"k": true, "n": null}"#,
            "x99999999999999999999",
        ];
        for text in texts {
            assert_eq!(check_integer_literals(text), Ok(()), "{text}");
        }
        // An escaped backslash ends before the quote: the number after the string counts.
        assert!(check_integer_literals(r#"{"a\\": 99999999999999999999}"#).is_err());
    }
}
