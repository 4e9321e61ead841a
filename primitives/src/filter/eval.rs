//! Evaluation of a compiled rule.
//!
//! Value semantics (equality, comparison, arithmetic, number and string conversion) come
//! from `jsonlogic_rs::js_op`, so results agree with jsonlogic-rs bit for bit. What
//! jsonlogic-rs keeps private (`op/*.rs`: truthiness, `var`/`missing`, the lazy operators,
//! `merge`, `in`, `cat`, `substr`, the float-to-JSON conversion) is reimplemented here
//! following its source line by line.
//!
//! Evaluation borrows wherever jsonlogic-rs would clone: literals and `var` lookups are
//! returned as references into the rule or the data, so a typical filter allocates little
//! more than its boolean result.

use std::borrow::Cow;
use std::fmt::{Debug, Display};

use jsonlogic_rs::js_op;
use serde_json::{Map, Number, Value};

use super::node::{compile, Mode, Node, Quantifier, QuantifierItems, QuantifierKind, Var, VarKey};
use super::ops::Op;
use super::path::Key;
use super::FilterError;

type Eval<'a> = Result<Cow<'a, Value>, FilterError>;

impl Node {
    /// Evaluates the rule against `data`.
    pub(crate) fn eval<'a>(&'a self, data: &'a Value) -> Eval<'a> {
        match self {
            Node::Literal(value) => Ok(Cow::Borrowed(value)),
            Node::Deferred(error) => Err(error.clone()),
            Node::Var(var) => eval_var(var, data),
            Node::Missing(args) => missing(args, data).map(Cow::Owned),
            Node::MissingSome(threshold, keys) => {
                missing_some(threshold, keys, data).map(Cow::Owned)
            }
            Node::If(args) => eval_if(args, data),
            Node::Or(args) => eval_or_and(args, data, true),
            Node::And(args) => eval_or_and(args, data, false),
            Node::Map(items, expression) => {
                let items = items.eval(data)?;
                let values = array_or_empty(&items, "map", "map")?;
                values
                    .iter()
                    .map(|item| expression.eval(item).map(Cow::into_owned))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|values| Cow::Owned(Value::Array(values)))
            }
            Node::Filter(items, predicate) => {
                let items = items.eval(data)?;
                let values = array_or_empty(&items, "map", "filter")?;
                let mut kept = Vec::with_capacity(values.len());
                for item in values {
                    if truthy(&*predicate.eval(item)?) {
                        kept.push(item.clone());
                    }
                }
                Ok(Cow::Owned(Value::Array(kept)))
            }
            Node::Reduce(reduce) => {
                let items = reduce.items.eval(data)?;
                let initial = reduce.initial.eval(data)?;
                let values = array_or_empty(&items, "map", "filter")?;
                let mut accumulator = initial.into_owned();
                for current in values {
                    let mut context = Map::with_capacity(2);
                    context.insert("current".into(), current.clone());
                    context.insert("accumulator".into(), accumulator);
                    let context = Value::Object(context);
                    accumulator = reduce.expression.eval(&context)?.into_owned();
                }
                Ok(Cow::Owned(accumulator))
            }
            Node::Quantifier(quantifier) => {
                eval_quantifier(quantifier, data).map(|b| Cow::Owned(Value::Bool(b)))
            }
            // `log` returns its argument (without printing it).
            Node::Unary(Op::Log, arg) => arg.eval(data),
            Node::Unary(op, arg) => {
                let arg = arg.eval(data)?;
                apply(*op, &[&arg]).map(Cow::Owned)
            }
            Node::Binary(op, first, second) => {
                let first = first.eval(data)?;
                let second = second.eval(data)?;
                apply(*op, &[&first, &second]).map(Cow::Owned)
            }
            Node::Nary(op, args) => {
                let values = args
                    .iter()
                    .map(|arg| arg.eval(data))
                    .collect::<Result<Vec<_>, _>>()?;
                let refs: Vec<&Value> = values.iter().map(|v| &**v).collect();
                apply(*op, &refs).map(Cow::Owned)
            }
        }
    }
}

/// JSON-Logic truthiness (jsonlogic-rs's `logic::truthy`).
pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().map(|f| f != 0.0).unwrap_or(false),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}

/// An evaluation error in jsonlogic-rs's `InvalidArgument` wording.
fn invalid_argument(operation: &str, value: &Value, reason: impl Display) -> FilterError {
    FilterError::Evaluation(format!(
        "Invalid argument for '{operation}' - '{value:?}', reason: {reason}"
    ))
}

fn unexpected(message: impl Display) -> FilterError {
    FilterError::Evaluation(format!("unexpected error: {message}"))
}

/// Whether jsonlogic-rs would parse `value` as an operation.
fn is_operation(value: &Value) -> bool {
    match value {
        Value::Object(map) if map.len() == 1 => {
            map.keys().next().and_then(|k| Op::from_key(k)).is_some()
        }
        _ => false,
    }
}

/// jsonlogic-rs re-parses some computed values as rules (the value of a `var` default,
/// the elements `all`/`some`/`none` test): a computed value that looks like an operation
/// is compiled (leniently, as jsonlogic-rs would parse it) and evaluated against `data`.
fn reparse<'v>(value: &'v Value, data: &Value) -> Result<Cow<'v, Value>, FilterError> {
    if is_operation(value) {
        let node = compile(value, Mode::Lenient)?;
        let result = node.eval(data)?.into_owned();
        Ok(Cow::Owned(result))
    } else {
        Ok(Cow::Borrowed(value))
    }
}

fn reparse_cow<'a>(value: Cow<'a, Value>, data: &Value) -> Eval<'a> {
    match value {
        Cow::Borrowed(v) => reparse(v, data),
        Cow::Owned(v) if is_operation(&v) => Ok(Cow::Owned(reparse(&v, data)?.into_owned())),
        owned => Ok(owned),
    }
}

fn eval_var<'a>(var: &'a Var, data: &'a Value) -> Eval<'a> {
    // jsonlogic-rs evaluates every argument first (the key, then the default), then
    // converts the key, then re-parses and evaluates the default (whether or not the key
    // is found), then looks the key up.
    let computed_key = match &var.key {
        VarKey::Whole => return Ok(Cow::Borrowed(data)),
        VarKey::Static(_) => None,
        VarKey::Dynamic(node) => Some(node.eval(data)?),
    };
    let default = match &var.default {
        Some(node) => Some(reparse_cow(node.eval(data)?, data)?),
        None => None,
    };
    let found = match (&var.key, computed_key) {
        (VarKey::Static(Ok(key)), _) => key.lookup(data),
        (VarKey::Static(Err(error)), _) => return Err(error.clone()),
        (_, Some(value)) => Key::from_value(&value)?.lookup(data),
        (_, None) => return Err(unexpected("var key was not evaluated")),
    };
    Ok(found.or(default).unwrap_or(Cow::Owned(Value::Null)))
}

fn eval_all<'a>(args: &'a [Node], data: &'a Value) -> Result<Vec<Cow<'a, Value>>, FilterError> {
    args.iter().map(|arg| arg.eval(data)).collect()
}

/// jsonlogic-rs's `data::missing`.
fn missing(args: &[Node], data: &Value) -> Result<Value, FilterError> {
    let values = eval_all(args, data)?;
    // If the first argument is an array, it is the list of keys (the rest is ignored).
    let keys: Vec<&Value> = match values.first().map(|v| &**v) {
        Some(Value::Array(keys)) => keys.iter().collect(),
        _ => values.iter().map(|v| &**v).collect(),
    };
    let mut missing_keys = Vec::new();
    for key in keys {
        match Key::from_value(key)? {
            Key::Null => {}
            parsed => {
                if parsed.lookup(data).is_none() {
                    missing_keys.push(key.clone());
                }
            }
        }
    }
    Ok(Value::Array(missing_keys))
}

/// jsonlogic-rs's `data::missing_some`, quirks included: keys after the threshold is met
/// are not even checked, and a missing key listed twice counts as present the second time.
fn missing_some(threshold: &Node, keys: &Node, data: &Value) -> Result<Value, FilterError> {
    let threshold_value = threshold.eval(data)?;
    let keys_value = keys.eval(data)?;
    let threshold = match &*threshold_value {
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| {
        invalid_argument(
            "missing_some",
            &threshold_value,
            "missing_some threshold must be a valid, positive integer",
        )
    })?;
    let Value::Array(keys) = &*keys_value else {
        return Err(invalid_argument(
            "missing_some",
            &keys_value,
            "missing_some keys must be an array",
        ));
    };
    let mut missing_keys: Vec<Value> = Vec::new();
    let mut present: u64 = 0;
    for key in keys {
        if present >= threshold {
            break;
        }
        match Key::from_value(key)? {
            Key::Null => {}
            parsed => {
                if parsed.lookup(data).is_none() && !missing_keys.contains(key) {
                    missing_keys.push(key.clone());
                } else {
                    present += 1;
                }
            }
        }
    }
    if present >= threshold {
        Ok(Value::Array(Vec::new()))
    } else {
        Ok(Value::Array(missing_keys))
    }
}

/// jsonlogic-rs's `logic::if_`: `[cond, then, cond, then, …, else]`; no else gives `null`.
fn eval_if<'a>(args: &'a [Node], data: &'a Value) -> Eval<'a> {
    let mut i = 0;
    while i < args.len() {
        if i + 1 == args.len() {
            return args[i].eval(data);
        }
        if truthy(&*args[i].eval(data)?) {
            return args[i + 1].eval(data);
        }
        i += 2;
    }
    Ok(Cow::Owned(Value::Null))
}

/// `or` returns the first truthy value, `and` the first falsy one; otherwise the last.
fn eval_or_and<'a>(args: &'a [Node], data: &'a Value, is_or: bool) -> Eval<'a> {
    let mut last = None;
    for arg in args {
        let value = arg.eval(data)?;
        if truthy(&value) == is_or {
            return Ok(value);
        }
        last = Some(value);
    }
    last.ok_or_else(|| unexpected("or/and had no values to operate on"))
}

/// The items of `map`/`filter`/`reduce`: an array, or nothing for `null`.
fn array_or_empty<'v>(
    items: &'v Value,
    operation: &str,
    name: &str,
) -> Result<&'v [Value], FilterError> {
    match items {
        Value::Array(values) => Ok(values),
        Value::Null => Ok(&[]),
        other => Err(invalid_argument(
            operation,
            other,
            format!("First argument to {name} must evaluate to an array. Got {other:?}"),
        )),
    }
}

/// `all`/`some`/`none` (jsonlogic-rs's `array::all`/`some`/`none`): `false` for no items
/// (so `none` is `true`); each item is evaluated as a rule against the data, then the
/// predicate against the item.
fn eval_quantifier(quantifier: &Quantifier, data: &Value) -> Result<bool, FilterError> {
    let kind = quantifier.kind;
    let predicate = &quantifier.predicate;
    let some = |found: bool| match kind {
        QuantifierKind::None => !found,
        _ => found,
    };
    match &quantifier.items {
        QuantifierItems::Elements(nodes) => Ok(some(quantify(
            kind,
            predicate,
            nodes.iter().map(|node| node.eval(data)),
        )?)),
        QuantifierItems::Evaluated(node) => {
            let items = node.eval(data)?;
            Ok(some(quantify_value(kind, predicate, &items, data)?))
        }
        QuantifierItems::Literal(value) => Ok(some(quantify_value(kind, predicate, value, data)?)),
    }
}

fn quantify_value(
    kind: QuantifierKind,
    predicate: &Node,
    items: &Value,
    data: &Value,
) -> Result<bool, FilterError> {
    match items {
        Value::Array(items) => quantify(kind, predicate, items.iter().map(|i| reparse(i, data))),
        Value::String(s) => quantify(
            kind,
            predicate,
            s.chars()
                .map(|c| Ok(Cow::Owned(Value::String(c.to_string())))),
        ),
        Value::Null => Ok(false),
        other => Err(invalid_argument(
            "all",
            other,
            format!("First argument must evaluate to an array, a string, or null, got {other}"),
        )),
    }
}

/// For `all`: whether there are items and the predicate holds for all of them; for
/// `some`/`none`: whether it holds for any.
fn quantify<'v>(
    kind: QuantifierKind,
    predicate: &Node,
    items: impl Iterator<Item = Result<Cow<'v, Value>, FilterError>>,
) -> Result<bool, FilterError> {
    let mut any_item = false;
    for item in items {
        any_item = true;
        let item = item?;
        let holds = truthy(&*predicate.eval(&item)?);
        match kind {
            QuantifierKind::All if !holds => return Ok(false),
            QuantifierKind::Some | QuantifierKind::None if holds => return Ok(true),
            _ => {}
        }
    }
    Ok(match kind {
        QuantifierKind::All => any_item,
        _ => false,
    })
}

/// `===`: `js_op::strict_eq`, except that two evaluations that borrowed the same value are
/// compared as the distinct copies jsonlogic-rs would have made (its `strict_eq` treats
/// one value compared with itself as equal, even an object or array).
fn strict_eq(first: &Value, second: &Value) -> bool {
    if std::ptr::eq(first, second) {
        match first {
            Value::Array(_) | Value::Object(_) => false,
            scalar => js_op::strict_eq(scalar, &scalar.clone()),
        }
    } else {
        js_op::strict_eq(first, second)
    }
}

/// Applies an eager operator to its evaluated arguments (count already checked).
fn apply(op: Op, args: &[&Value]) -> Result<Value, FilterError> {
    let bool_value = |b: bool| Ok(Value::Bool(b));
    match op {
        Op::Eq => bool_value(js_op::abstract_eq(args[0], args[1])),
        Op::Ne => bool_value(js_op::abstract_ne(args[0], args[1])),
        Op::StrictEq => bool_value(strict_eq(args[0], args[1])),
        Op::StrictNe => bool_value(!strict_eq(args[0], args[1])),
        Op::Not => bool_value(!truthy(args[0])),
        Op::NotNot => bool_value(truthy(args[0])),
        Op::Lt => bool_value(compare(js_op::abstract_lt, args)),
        Op::Lte => bool_value(compare(js_op::abstract_lte, args)),
        Op::Gt => bool_value(compare(js_op::abstract_gt, args)),
        Op::Gte => bool_value(compare(js_op::abstract_gte, args)),
        Op::Add => number(js_op::parse_float_add(&args.to_vec())),
        Op::Sub => number(if args.len() == 1 {
            js_op::to_negative(args[0])
        } else {
            js_op::abstract_minus(args[0], args[1])
        }),
        Op::Mul => number(js_op::parse_float_mul(&args.to_vec())),
        Op::Div => number(js_op::abstract_div(args[0], args[1])),
        Op::Mod => number(js_op::abstract_mod(args[0], args[1])),
        Op::Max => number(js_op::abstract_max(&args.to_vec())),
        Op::Min => number(js_op::abstract_min(&args.to_vec())),
        Op::Merge => Ok(merge(args)),
        Op::In => in_(args[0], args[1]),
        Op::Cat => Ok(cat(args)),
        Op::Substr => substr(args),
        Op::Log => Ok(args[0].clone()),
        Op::Var
        | Op::Missing
        | Op::MissingSome
        | Op::If
        | Op::Ternary
        | Op::Or
        | Op::And
        | Op::Map
        | Op::Filter
        | Op::Reduce
        | Op::All
        | Op::Some
        | Op::None => Err(unexpected(format!(
            "`{}` applied as an eager operator",
            op.symbol()
        ))),
    }
}

/// `<`, `<=`, `>`, `>=` with two arguments, or three for "between".
fn compare(f: fn(&Value, &Value) -> bool, args: &[&Value]) -> bool {
    if args.len() == 2 {
        f(args[0], args[1])
    } else {
        f(args[0], args[1]) && f(args[1], args[2])
    }
}

/// A `js_op` arithmetic result as a JSON number.
fn number<E: Display + Debug>(result: Result<f64, E>) -> Result<Value, FilterError> {
    result
        .map_err(|e| FilterError::Evaluation(e.to_string().trim_end_matches('.').to_owned()))
        .and_then(to_number_value)
}

/// jsonlogic-rs's `value::to_number_value`: whole numbers become integers (saturating at
/// the `i64` range, like its `as` cast), others floats; NaN and infinities are errors.
pub(crate) fn to_number_value(number: f64) -> Result<Value, FilterError> {
    if number.fract() == 0.0 {
        Ok(Value::Number(Number::from(number as i64)))
    } else {
        Number::from_f64(number)
            .map(Value::Number)
            .ok_or_else(|| unexpected(format!("Could not make JSON number from result {number:?}")))
    }
}

/// jsonlogic-rs's `array::merge`: arrays are flattened one level, other values appended.
fn merge(args: &[&Value]) -> Value {
    let mut merged = Vec::new();
    for arg in args {
        match arg {
            Value::Array(values) => merged.extend(values.iter().cloned()),
            other => merged.push((*other).clone()),
        }
    }
    Value::Array(merged)
}

/// jsonlogic-rs's `array::in_`.
fn in_(needle: &Value, haystack: &Value) -> Result<Value, FilterError> {
    match haystack {
        Value::Null => Ok(Value::Bool(false)),
        Value::Array(possibles) => Ok(Value::Bool(possibles.contains(needle))),
        Value::String(haystack) => match needle {
            Value::String(needle) => Ok(Value::Bool(haystack.contains(needle.as_str()))),
            _ => Err(invalid_argument(
                "in",
                needle,
                "If second argument is a string, first argument must also be a string",
            )),
        },
        _ => Err(invalid_argument(
            "in",
            haystack,
            "Second argument must be an array or a string",
        )),
    }
}

/// jsonlogic-rs's `string::cat`.
fn cat(args: &[&Value]) -> Value {
    let mut joined = String::new();
    for arg in args {
        match arg {
            Value::String(s) => joined.push_str(s),
            other => joined.push_str(&js_op::to_string(other)),
        }
    }
    Value::String(joined)
}

/// An integer argument of `substr`.
fn substr_int(value: &Value, which: &str) -> Result<i64, FilterError> {
    match value {
        Value::Number(n) => n.as_i64().ok_or_else(|| {
            invalid_argument(
                "substr",
                value,
                format!("{which} to substr must be an integer"),
            )
        }),
        _ => Err(invalid_argument(
            "substr",
            value,
            format!("{which} to substr must be a number"),
        )),
    }
}

/// jsonlogic-rs's `string::substr`, quirk included: indexes are clamped against the
/// string's length in bytes but count characters.
fn substr(args: &[&Value]) -> Result<Value, FilterError> {
    let Value::String(string) = args[0] else {
        return Err(invalid_argument(
            "substr",
            args[0],
            "First argument to substr must be a string",
        ));
    };
    let idx = substr_int(args[1], "Second argument")?;
    let limit = args
        .get(2)
        .map(|limit| substr_int(limit, "Optional third argument"))
        .transpose()?;

    let string_len = string.len();
    let too_large = |value: &Value| {
        invalid_argument(
            "substr",
            value,
            "The number is too large to index strings on this system",
        )
    };
    // jsonlogic-rs takes `idx.abs()`, which overflows for `i64::MIN`: a panic in a debug
    // build, "too large" in a release build; here it is always "too large".
    let abs = |n: i64| n.checked_abs().and_then(|a| usize::try_from(a).ok());
    let idx_abs = abs(idx).ok_or_else(|| too_large(args[1]))?;
    let start = if idx < 0 {
        string_len.saturating_sub(idx_abs)
    } else {
        string_len.min(idx_abs)
    };
    let end = match limit {
        None => string_len,
        Some(limit) => {
            let limit_abs = abs(limit).ok_or_else(|| too_large(args[2]))?;
            if limit < 0 {
                string_len.saturating_sub(limit_abs)
            } else {
                string_len.min(start.checked_add(limit_abs).unwrap_or(string_len))
            }
        }
    };
    let count = end.saturating_sub(start);
    Ok(Value::String(
        string.chars().skip(start).take(count).collect(),
    ))
}
