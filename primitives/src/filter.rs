//! Compiled JSON-Logic filters: [`Filter`] parses a rule once into a tree and evaluates it
//! against many documents.
//!
//! The semantics are those of [jsonlogic-rs] 0.5 (`jsonlogic_rs::apply`), which this module
//! is tested against: where `apply` returns a value, [`Filter::evaluate`] returns the same
//! value (floats bit for bit), and where `apply` fails, parsing or evaluating fails. The
//! value-level operations (`==`, `<`, `+`, number and string conversion, …) are
//! jsonlogic-rs's own `js_op` functions; the rest follows its source.
//!
//! Some jsonlogic-rs behaviours worth knowing, kept as they are:
//!
//! - An array in a rule is a literal: operations inside it are not evaluated
//!   (`{"in": ["a", [{"var": "x"}]]}` looks for `"a"` in a one-element array holding the
//!   object `{"var": "x"}`). The exception is the first argument of `all`/`some`/`none`,
//!   whose elements are evaluated as rules.
//! - Empty and multi-key objects are literals.
//! - Values that `all`/`some`/`none` iterate over, and the value of a `var` default, are
//!   evaluated again as rules if they look like an operation (a one-key object whose key is
//!   an operator), even when they come from the data.
//! - A malformed operation (wrong argument count, non-array arguments) in a branch that
//!   may never be taken (an `if` branch, an `or`/`and` argument after the first, an
//!   `all`/`some`/`none` predicate over items that may be empty, or inside a lazy operator
//!   in a `map`/`filter`/`reduce` expression, which runs per item) is not an error; it
//!   fails only if evaluated. Everywhere else it fails [`Filter::parse`].
//!
//! Deliberate differences from jsonlogic-rs:
//!
//! - jsonlogic-rs treats a one-key object whose key is not an operator as a literal
//!   object, which is truthy, so a misspelt operator matches everything. [`Filter::parse`]
//!   rejects it with [`FilterError::UnknownOperator`] wherever the rule would evaluate it:
//!   the rule itself, every operator argument, the elements of a literal array given as
//!   the first argument of `all`/`some`/`none`. (Inside literal arrays and multi-key
//!   objects, which are never evaluated, it stays a literal.)
//! - `log` returns its argument without printing it (jsonlogic-rs prints to stdout).
//! - An index of `i64::MIN` (in `var` or `substr`) makes jsonlogic-rs overflow (a panic in
//!   a debug build); here it is out of range (`var`) or an error (`substr`), as in a
//!   release build of jsonlogic-rs.
//!
//! [jsonlogic-rs]: https://github.com/bestowinc/json-logic-rs

mod eval;
mod index;
mod node;
mod ops;
mod path;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde_json::Value;

pub use index::FilterIndex;
use node::{Mode, Node};

/// Why a filter could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The filter text is not JSON.
    #[error("filter is not valid json: {0}")]
    Json(String),
    /// A one-key object names no known operator (a misspelt operator, most likely).
    #[error("unknown operator `{operator}`")]
    UnknownOperator {
        /// The object's key.
        operator: String,
    },
    /// An operator was given the wrong number of arguments.
    #[error("wrong argument count for `{operator}`: expected {expected}, got {actual}")]
    WrongArgumentCount {
        /// The operator.
        operator: String,
        /// The allowed counts ("exactly 2", "at least 1", "2 to 3", …).
        expected: String,
        /// The number given.
        actual: usize,
    },
    /// An operator's arguments have the wrong shape.
    #[error("invalid arguments for `{operator}`: {reason}")]
    InvalidArguments {
        /// The operator.
        operator: String,
        /// What is wrong.
        reason: String,
    },
    /// The filter is not a rule: a filter must be a JSON-Logic operation (an object with
    /// one operator key) or a boolean. Anything else (a string, a number, `{}`, an array, a
    /// rule sent as a JSON string) would select every delta or none.
    #[error("a filter must be a JSON-Logic rule (an object with one operator, such as {{\"==\": [..]}}) or a boolean, not {received}")]
    NotARule {
        /// What was received, described ("a string", "an empty object", …).
        received: String,
    },
    /// Evaluation failed (a value of the wrong type, a result that is not a JSON number, …);
    /// the message is jsonlogic-rs's.
    #[error("filter evaluation failed: {0}")]
    Evaluation(String),
}

/// A JSON-Logic rule compiled for repeated evaluation. Cloning is cheap (shared).
#[derive(Clone)]
pub struct Filter {
    inner: Arc<Inner>,
}

struct Inner {
    rule: Value,
    root: Node,
}

impl Filter {
    /// Compiles a filter: a JSON-Logic rule (an object with one operator) or a boolean.
    ///
    /// Any other JSON value is refused with [`FilterError::NotARule`], because as a rule it
    /// is a constant: a string, `{}` or a rule encoded twice as a JSON string would select
    /// every delta. [`Filter::expression`] compiles any expression, literals included.
    pub fn parse(rule: &Value) -> Result<Filter, FilterError> {
        check_rule_shape(rule)?;
        Filter::expression(rule)
    }

    /// Compiles any JSON-Logic expression, a bare literal included: what computes a value
    /// rather than selects deltas. Use [`Filter::parse`] for filters.
    pub fn expression(rule: &Value) -> Result<Filter, FilterError> {
        node::check_operators(rule)?;
        let root = node::compile(rule, Mode::Strict)?;
        Ok(Filter {
            inner: Arc::new(Inner {
                rule: rule.clone(),
                root,
            }),
        })
    }

    /// Parses JSON text and compiles it as a rule.
    pub fn from_json_str(text: &str) -> Result<Filter, FilterError> {
        let rule: Value =
            serde_json::from_str(text).map_err(|e| FilterError::Json(e.to_string()))?;
        Filter::parse(&rule)
    }

    /// Evaluates the rule against `data`: what `jsonlogic_rs::apply(rule, data)` returns.
    pub fn evaluate(&self, data: &Value) -> Result<Value, FilterError> {
        self.inner.root.eval(data).map(Cow::into_owned)
    }

    /// Whether the rule's result for `data` is truthy (JSON-Logic truthiness: `false`,
    /// `null`, `0`, `""` and `[]` are falsy). An evaluation error is no match.
    pub fn matches(&self, data: &Value) -> bool {
        self.inner
            .root
            .eval(data)
            .map(|result| eval::truthy(&result))
            .unwrap_or(false)
    }

    /// The compiled tree.
    fn root(&self) -> &Node {
        &self.inner.root
    }

    /// The strings one of which the array at `path` (a `var` key such as `"targets"`)
    /// must hold for the filter to match, when the rule says so: `{"in": ["s", {"var":
    /// path}]}`, alone, in an `and`, or in every branch of an `or`. `None` when the filter
    /// may match without it. Lets a subscriber narrow a stream by entity before filtering.
    pub fn required_members(&self, path: &str) -> Option<Vec<String>> {
        index::required_members(&self.inner.root, &path::Key::Str(path::StrKey::new(path)))
    }

    /// The rule this filter was compiled from.
    pub fn rule(&self) -> &Value {
        &self.inner.rule
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("rule", &self.inner.rule)
            .finish_non_exhaustive()
    }
}

/// Shows the rule as compact JSON.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner.rule, f)
    }
}

/// Refuses a filter that is not an operation or a boolean, naming what it is.
fn check_rule_shape(rule: &Value) -> Result<(), FilterError> {
    let received = match rule {
        Value::Bool(_) => return Ok(()),
        Value::Object(map) if map.len() == 1 => return Ok(()),
        Value::Object(map) if map.is_empty() => "an empty object".to_owned(),
        Value::Object(map) => format!("an object with {} keys", map.len()),
        Value::String(text) if serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object()) => {
            "a string holding JSON (a rule encoded twice?)".to_owned()
        }
        Value::String(_) => "a string".to_owned(),
        Value::Number(_) => "a number".to_owned(),
        Value::Null => "null".to_owned(),
        Value::Array(_) => "an array".to_owned(),
    };
    Err(FilterError::NotARule { received })
}

/// Same as [`Filter::from_json_str`].
impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(text: &str) -> Result<Filter, FilterError> {
        Filter::from_json_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::ops::Op;
    use super::*;
    use serde_json::json;

    fn delta_doc() -> Value {
        json!({
            "id": "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12",
            "author": "cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34",
            "time": {"ms": 1_700_000_000_000_u64, "logical": 3},
            "pointers": [
                {"local_context": "user", "target": {"entity": "alice"}, "target_context": "name"},
                {"local_context": "name", "target": {"value": "Alice"}}
            ],
            "hosts": ["ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56"],
            "targets": ["alice"],
            "contexts": ["user", "name"],
            "values": ["Alice"]
        })
    }

    fn parse(rule: Value) -> Result<Filter, FilterError> {
        Filter::expression(&rule)
    }

    #[test]
    fn a_filter_must_be_an_operation_or_a_boolean() {
        let not_a_rule = |received: &str| {
            Err(FilterError::NotARule {
                received: received.into(),
            })
        };
        let cases = [
            (json!({}), "an empty object"),
            (json!("hello"), "a string"),
            (
                json!(r#"{"in": ["alice", {"var": "targets"}]}"#),
                "a string holding JSON (a rule encoded twice?)",
            ),
            (json!(1), "a number"),
            (json!(null), "null"),
            (json!([{"var": "id"}]), "an array"),
            (json!({"a": 1, "b": 2}), "an object with 2 keys"),
        ];
        for (rule, received) in cases {
            let shown = rule.to_string();
            assert_eq!(
                Filter::parse(&rule).map(|_| ()),
                not_a_rule(received),
                "{shown}"
            );
            // The same values are fine as expressions (they evaluate to themselves).
            assert!(Filter::expression(&rule).is_ok(), "{shown}");
        }
        let doc = delta_doc();
        assert!(Filter::parse(&json!(true)).unwrap().matches(&doc));
        assert!(!Filter::parse(&json!(false)).unwrap().matches(&doc));
        let text = Filter::from_json_str(r#""{\"==\": [1, 1]}""#).unwrap_err();
        assert!(text.to_string().contains("encoded twice"), "{text}");
        assert_eq!(
            Filter::parse(&json!({"nope": 1})).map(|_| ()),
            unknown("nope").map(|_| ())
        );
    }

    fn eval(rule: Value, data: &Value) -> Result<Value, FilterError> {
        parse(rule)?.evaluate(data)
    }

    fn unknown(operator: &str) -> Result<Filter, FilterError> {
        Err(FilterError::UnknownOperator {
            operator: operator.to_owned(),
        })
    }

    #[test]
    fn operator_table_round_trips() {
        for op in Op::ALL {
            assert_eq!(Op::from_key(op.symbol()), Some(op));
        }
        assert_eq!(Op::from_key("AND"), None);
        assert_eq!(Op::from_key("eq"), None);
    }

    #[test]
    fn unknown_operators_are_rejected() {
        assert_eq!(
            parse(json!({"eq": [1, 1]})).map(|_| ()),
            unknown("eq").map(|_| ())
        );
        // Deep inside lazy operators, in branches that are never taken too.
        let deep =
            json!({"and": [true, {"or": [false, {"if": [false, 1, {"!": {"contains": [1]}}]}]}]});
        assert_eq!(parse(deep).map(|_| ()), unknown("contains").map(|_| ()));
        let after_false = json!({"and": [false, {"isIn": ["a", "b"]}]});
        assert_eq!(parse(after_false).map(|_| ()), unknown("isIn").map(|_| ()));
        // In operator arguments, var defaults, quantifier predicates and item lists.
        let cases = [
            (json!({"==": [{"var": "a"}, {"entity": "alice"}]}), "entity"),
            (json!({"var": ["a", {"dflt": 1}]}), "dflt"),
            (
                json!({"some": [{"var": "pointers"}, {"equals": [1, 1]}]}),
                "equals",
            ),
            (json!({"all": [[1, {"x": 2}], true]}), "x"),
            (json!({"map": [{"vars": "a"}, 1]}), "vars"),
            (json!({"!": {"Not": 1}}), "Not"),
            // Reported even inside an otherwise malformed operation.
            (json!({"==": [{"typo": 1}]}), "typo"),
        ];
        for (rule, op) in cases {
            let shown = rule.to_string();
            assert_eq!(parse(rule).map(|_| ()), unknown(op).map(|_| ()), "{shown}");
        }
    }

    #[test]
    fn literals_stay_literals() {
        let data = delta_doc();
        // Empty and multi-key objects, and anything inside a literal array.
        assert_eq!(eval(json!({}), &data), Ok(json!({})));
        assert_eq!(
            eval(json!({"a": 1, "b": 2}), &data),
            Ok(json!({"a": 1, "b": 2}))
        );
        assert_eq!(
            eval(json!([{"var": "id"}, {"whatever": 1}]), &data),
            Ok(json!([{"var": "id"}, {"whatever": 1}]))
        );
        assert_eq!(
            eval(
                json!({"in": [{"var": "x"}, [{"var": "x"}]]}),
                &json!({"x": {"var": "x"}})
            ),
            Ok(json!(true))
        );
    }

    #[test]
    fn wrong_argument_counts_are_rejected() {
        let cases = [
            (json!({"==": [1]}), "==", "exactly 2", 1),
            (json!({"in": ["a", [], 3]}), "in", "exactly 2", 3),
            (json!({"reduce": [[], 1]}), "reduce", "exactly 3", 2),
            (json!({"var": ["a", 1, 2]}), "var", "0 to 2", 3),
            (json!({"!": []}), "!", "exactly 1", 0),
            (json!({"or": []}), "or", "at least 1", 0),
            (json!({"<": [1, 2, 3, 4]}), "<", "2 to 3", 4),
            (
                json!({"and": [{"some": [[1], true, 3]}]}),
                "some",
                "exactly 2",
                3,
            ),
            (json!({"or": [{"if": [{"-": []}, 1]}]}), "-", "1 to 2", 0),
            (json!({"all": [[{"!": []}, 2], true]}), "!", "exactly 1", 0),
            (json!({"some": ["abc", {"in": [1]}]}), "in", "exactly 2", 1),
            (json!({"!": {"substr": ["a"]}}), "substr", "2 to 3", 1),
        ];
        for (rule, operator, expected, actual) in cases {
            let shown = rule.to_string();
            assert_eq!(
                parse(rule).map(|_| ()),
                Err(FilterError::WrongArgumentCount {
                    operator: operator.into(),
                    expected: expected.into(),
                    actual,
                }),
                "{shown}"
            );
        }
        assert_eq!(
            parse(json!({"==": 1})).map(|_| ()),
            Err(FilterError::InvalidArguments {
                operator: "==".into(),
                reason: "arguments to non-unary operations must be arrays".into(),
            })
        );
    }

    #[test]
    fn malformed_operations_in_untaken_branches_fail_only_when_reached() {
        let rule = json!({"if": [{"var": "x"}, {"==": [1]}, "no"]});
        let filter = parse(rule).expect("jsonlogic-rs parses lazy branches on demand");
        assert_eq!(filter.evaluate(&json!({"x": false})), Ok(json!("no")));
        assert!(matches!(
            filter.evaluate(&json!({"x": true})),
            Err(FilterError::WrongArgumentCount { .. })
        ));
        assert!(!filter.matches(&json!({"x": true})));
        let none = parse(json!({"all": [{"var": "xs"}, {"in": 1}]})).unwrap();
        assert_eq!(none.evaluate(&json!({"xs": []})), Ok(json!(false)));
        assert!(none.evaluate(&json!({"xs": [1]})).is_err());
    }

    #[test]
    fn malformed_json_is_a_typed_error() {
        for text in ["", "{", r#"{"==": [1, 1]"#, "nope", r#"{"a" 1}"#] {
            match Filter::from_json_str(text) {
                Err(FilterError::Json(message)) => assert!(!message.is_empty()),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert!(matches!(
            "{\"eq\": [1, 2]}".parse::<Filter>(),
            Err(FilterError::UnknownOperator { .. })
        ));
    }

    #[test]
    fn evaluates_against_a_delta_document() {
        let doc = delta_doc();
        let yes = [
            json!({"in": ["alice", {"var": "targets"}]}),
            json!({">": [{"var": "time.ms"}, 1_600_000_000_000_u64]}),
            json!({"some": [{"var": "pointers"}, {"==": [{"var": "target.entity"}, "alice"]}]}),
            json!({"==": [{"var": "pointers.1.target.value"}, "Alice"]}),
            json!({"==": [{"var": "pointers.-1.local_context"}, "name"]}),
            json!({"all": [{"var": "contexts"}, {"in": [{"var": ""}, ["user", "name"]]}]}),
            json!({"and": [{"in": ["name", {"var": "contexts"}]}, {"<=": [1, {"var": "time.logical"}, 3]}]}),
            json!({"none": [{"var": "hosts"}, {"==": [{"var": ""}, "nobody"]}]}),
            json!({"!": {"missing": ["id", "author", "time.ms"]}}),
            json!({"==": [{"var": "nope.deeper"}, null]}),
        ];
        for rule in yes {
            let filter = Filter::parse(&rule).unwrap();
            assert!(filter.matches(&doc), "{rule}");
            assert_eq!(filter.evaluate(&doc), Ok(json!(true)), "{rule}");
        }
        let no = [
            json!({"in": ["bob", {"var": "targets"}]}),
            json!({"<": [{"var": "time.ms"}, 1_600_000_000_000_u64]}),
            json!({"some": [{"var": "pointers"}, {"==": [{"var": "target.entity"}, "bob"]}]}),
            json!({"var": "missing_field"}),
            // An evaluation error is no match.
            json!({"in": ["alice", {"var": "time"}]}),
        ];
        for rule in no {
            assert!(!Filter::parse(&rule).unwrap().matches(&doc), "{rule}");
        }
        assert_eq!(
            eval(
                json!({"map": [{"var": "pointers"}, {"var": "local_context"}]}),
                &doc
            ),
            Ok(json!(["user", "name"]))
        );
        assert_eq!(
            eval(
                json!({"or": [{"var": "nope"}, {"var": "time.logical"}]}),
                &doc
            ),
            Ok(json!(3))
        );
        assert_eq!(
            eval(
                json!({"cat": [{"var": "targets.0"}, "@", {"substr": [{"var": "id"}, -4]}]}),
                &doc
            ),
            Ok(json!("alice@ab12"))
        );
        assert_eq!(
            eval(
                json!({"reduce": [{"var": "contexts"}, {"+": [{"var": "accumulator"}, 1]}, 0]}),
                &doc
            ),
            Ok(json!(2))
        );
        assert!(matches!(
            eval(json!({"in": ["alice", {"var": "time"}]}), &doc),
            Err(FilterError::Evaluation(_))
        ));
    }

    #[test]
    fn var_paths() {
        let data = json!({"a": {"b.c": 1, "d": [5, 6, "xyz"]}, "7": "seven"});
        let cases = [
            (json!({"var": r"a.b\.c"}), json!(1)),
            (json!({"var": "a.d.2.1"}), json!("y")),
            (json!({"var": "a.d.-2"}), json!(6)),
            (json!({"var": 7}), json!("seven")),
            (json!({"var": ["a.x", "fallback"]}), json!("fallback")),
            (json!({"var": [{"cat": ["a", ".d", ".0"]}]}), json!(5)),
            (json!({"var": [null, 1]}), data.clone()),
            (json!({"var": []}), data.clone()),
        ];
        for (rule, expected) in cases {
            let shown = rule.to_string();
            assert_eq!(eval(rule, &data), Ok(expected), "{shown}");
        }
        assert!(eval(json!({"var": true}), &data).is_err());
        assert!(eval(json!({"var": 1.5}), &data).is_err());
    }

    #[test]
    fn log_returns_its_argument() {
        assert_eq!(
            eval(json!({"log": {"var": "a"}}), &json!({"a": [1]})),
            Ok(json!([1]))
        );
        assert_eq!(eval(json!({"log": ["x"]}), &json!(null)), Ok(json!("x")));
    }

    #[test]
    fn display_rule_and_clone() {
        let text = r#"{"in":["alice",{"var":"targets"}]}"#;
        let filter = Filter::from_json_str(text).unwrap();
        assert_eq!(filter.to_string(), text);
        assert_eq!(filter.rule(), &serde_json::from_str::<Value>(text).unwrap());
        let copy = filter.clone();
        assert!(Arc::ptr_eq(&filter.inner, &copy.inner));
        assert!(format!("{filter:?}").starts_with("Filter { rule: "));
        fn shareable<T: Send + Sync>(_: &T) {}
        shareable(&filter);
    }

    #[test]
    fn error_messages_are_lowercase() {
        let errors = [
            Filter::from_json_str("{").unwrap_err(),
            parse(json!({"eq": [1, 1]})).unwrap_err(),
            parse(json!({"==": [1]})).unwrap_err(),
            parse(json!({"==": 1})).unwrap_err(),
            eval(json!({"in": [1, 2]}), &json!(null)).unwrap_err(),
        ];
        for e in errors {
            let message = e.to_string();
            assert!(message.starts_with(char::is_lowercase), "{message}");
            assert!(!message.ends_with('.'), "{message}");
        }
    }
}
