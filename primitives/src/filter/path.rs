//! `var`/`missing` keys and their lookup in the data, following jsonlogic-rs's
//! `op/data.rs` (`KeyType`, `get_key`, `get_str_key`, `split_with_escape`).

use std::borrow::Cow;

use serde_json::Value;

use super::FilterError;

/// A variable key, already converted from its JSON form (jsonlogic-rs's `KeyType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    /// `null`: the whole data.
    Null,
    /// A string key; `""` is the whole data.
    Str(StrKey),
    /// An integer key: an array or string index (negative counts from the end), or an
    /// object key in decimal.
    Num(i64),
}

/// A string key split into dot-separated segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StrKey {
    /// The key was `""` (the whole data, whatever its type).
    empty: bool,
    segments: Vec<Segment>,
}

/// One segment of a dotted path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    /// The object key.
    name: String,
    /// The segment as an array or string index, when it parses as an `i64`.
    index: Option<i64>,
}

impl StrKey {
    /// Splits `key` once, as jsonlogic-rs does on every lookup.
    pub(crate) fn new(key: &str) -> StrKey {
        StrKey {
            empty: key.is_empty(),
            segments: split_with_escape(key, '.')
                .into_iter()
                .map(|name| Segment {
                    index: name.parse::<i64>().ok(),
                    name,
                })
                .collect(),
        }
    }
}

impl Key {
    /// Converts an evaluated key value (jsonlogic-rs's `TryFrom<&Value> for KeyType`).
    pub(crate) fn from_value(value: &Value) -> Result<Key, FilterError> {
        match value {
            Value::Null => Ok(Key::Null),
            Value::String(s) => Ok(Key::Str(StrKey::new(s))),
            Value::Number(n) => n
                .as_i64()
                .map(Key::Num)
                .ok_or_else(|| invalid_key(value, "Numeric keys must be valid integers")),
            _ => Err(invalid_key(
                value,
                "Variable keys must be strings, integers, or null",
            )),
        }
    }

    /// Looks the key up in `data` (jsonlogic-rs's `get_key`); `None` when absent.
    pub(crate) fn lookup<'a>(&self, data: &'a Value) -> Option<Cow<'a, Value>> {
        match self {
            Key::Null => Some(Cow::Borrowed(data)),
            Key::Str(key) => {
                if key.empty {
                    return Some(Cow::Borrowed(data));
                }
                match data {
                    Value::Object(_) | Value::Array(_) | Value::String(_) => {
                        let mut current = Cow::Borrowed(data);
                        for segment in &key.segments {
                            current = step(current, segment)?;
                        }
                        Some(current)
                    }
                    _ => None,
                }
            }
            Key::Num(i) => match data {
                // jsonlogic-rs looks up `i.to_string()` as a (dotted) string key; a decimal
                // integer has no dot or backslash, so that is a single object key.
                Value::Object(map) => map.get(&i.to_string()).map(Cow::Borrowed),
                Value::Array(items) => get_index(items, *i).map(Cow::Borrowed),
                Value::String(s) => char_at(s, *i).map(Cow::Owned),
                _ => None,
            },
        }
    }
}

fn invalid_key(value: &Value, reason: &str) -> FilterError {
    FilterError::Evaluation(format!(
        "Invalid variable key - '{value:?}', reason: {reason:?}"
    ))
}

/// One step down a dotted path.
fn step<'a>(current: Cow<'a, Value>, segment: &Segment) -> Option<Cow<'a, Value>> {
    match current {
        Cow::Borrowed(value) => step_ref(value, segment),
        // Only a one-character string (from indexing a string) is ever owned here.
        Cow::Owned(value) => step_ref(&value, segment).map(|v| Cow::Owned(v.into_owned())),
    }
}

fn step_ref<'a>(value: &'a Value, segment: &Segment) -> Option<Cow<'a, Value>> {
    match value {
        Value::Object(map) => map.get(&segment.name).map(Cow::Borrowed),
        Value::Array(items) => get_index(items, segment.index?).map(Cow::Borrowed),
        Value::String(s) => char_at(s, segment.index?).map(Cow::Owned),
        _ => None,
    }
}

/// jsonlogic-rs's `get`: an index that may be negative (counting from the end).
///
/// jsonlogic-rs computes `idx.abs()`, which overflows for `i64::MIN` (a panic in a debug
/// build); here that index is simply out of range.
pub(crate) fn get_index<T>(slice: &[T], idx: i64) -> Option<&T> {
    let abs = usize::try_from(idx.unsigned_abs()).ok()?;
    let adjusted = if idx >= 0 {
        abs
    } else {
        slice.len().checked_sub(abs)?
    };
    slice.get(adjusted)
}

/// The character at a (possibly negative) index, as a JSON string.
fn char_at(s: &str, idx: i64) -> Option<Value> {
    let abs = usize::try_from(idx.unsigned_abs()).ok()?;
    let c = if idx >= 0 {
        s.chars().nth(abs)?
    } else {
        let n = s.chars().count().checked_sub(abs)?;
        s.chars().nth(n)?
    };
    Some(Value::String(c.to_string()))
}

/// Splits a dotted path; `\` escapes the next character (jsonlogic-rs's
/// `split_with_escape`, including dropping a trailing empty segment).
pub(crate) fn split_with_escape(input: &str, delimiter: char) -> Vec<String> {
    let mut result = Vec::new();
    let mut slice = String::new();
    let mut escape = false;

    for c in input.chars() {
        if escape {
            slice.push(c);
            escape = false;
        } else if c == '\\' {
            escape = true;
        } else if c == delimiter {
            result.push(std::mem::take(&mut slice));
        } else {
            slice.push(c);
        }
    }

    if !slice.is_empty() {
        result.push(slice);
    }

    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn split_with_escape_matches_jsonlogic_cases() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("foo", &["foo"]),
            ("foo.bar", &["foo", "bar"]),
            (r"foo\.bar", &["foo.bar"]),
            (r"foo\.bar.biz", &["foo.bar", "biz"]),
            (r"foo\\.bar", &["foo\\", "bar"]),
            (r"foo\\.bar\.biz", &["foo\\", "bar.biz"]),
            (r"foo\\\.bar", &["foo\\.bar"]),
            (r"foo\\\.bar.biz", &["foo\\.bar", "biz"]),
            (r"foo\\bar", &["foo\\bar"]),
            (r"foo\\bar.biz", &["foo\\bar", "biz"]),
            (r"foo\\bar\.biz", &["foo\\bar.biz"]),
            (r"foo\\bar\\.biz", &["foo\\bar\\", "biz"]),
            ("a.", &["a"]),
            ("a..b", &["a", "", "b"]),
            (".", &[""]),
        ];
        for (input, expected) in cases {
            assert_eq!(&split_with_escape(input, '.'), expected, "input {input:?}");
        }
    }

    #[test]
    fn lookups() {
        let data = json!({"a": {"b": [10, 20, "xyz"]}, "1": "one", "a.b": 5});
        let get = |k: Value| {
            Key::from_value(&k)
                .unwrap()
                .lookup(&data)
                .map(Cow::into_owned)
        };
        assert_eq!(get(json!("a.b.1")), Some(json!(20)));
        assert_eq!(get(json!("a.b.-1.0")), Some(json!("x")));
        assert_eq!(get(json!("a.b.-1.-1")), Some(json!("z")));
        assert_eq!(get(json!("a.b.3")), None);
        assert_eq!(get(json!(r"a\.b")), Some(json!(5)));
        assert_eq!(get(json!(1)), Some(json!("one")));
        assert_eq!(get(json!("")), Some(data.clone()));
        assert_eq!(get(json!(null)), Some(data.clone()));
        assert!(Key::from_value(&json!(1.5)).is_err());
        assert!(Key::from_value(&json!(true)).is_err());
        assert_eq!(get_index(&[1, 2, 3], i64::MIN), None);
        assert_eq!(get_index(&[1, 2, 3], -3), Some(&1));
        assert_eq!(get_index(&[1, 2, 3], -4), None);
    }
}
