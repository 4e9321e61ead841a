//! Differential test: [`Filter`] against the reference, `jsonlogic_rs::apply` (0.5).
//!
//! For every (rule, data) pair, in a hand-written table covering every JSON-Logic operator
//! and in randomly generated rules:
//!
//! - if jsonlogic-rs returns `Ok(v)`, `Filter::expression(rule)` succeeds and `evaluate(data)`
//!   returns exactly `v` (same JSON type, floats bit for bit), and `matches(data)` is `v`'s
//!   truthiness as jsonlogic-rs computes it (`{"!!": [rule]}`);
//! - if jsonlogic-rs fails, parsing or evaluating fails, and `matches` is `false`.
//!
//! The only cases allowed to differ are listed in [`exceptions`], each with its reason;
//! a test checks that they still differ exactly as documented.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use hypha_primitives::filter::{Filter, FilterError};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

/// Every operator jsonlogic-rs 0.5 knows.
const OPERATORS: [&str; 35] = [
    "==",
    "!=",
    "===",
    "!==",
    "!",
    "!!",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "max",
    "min",
    "merge",
    "in",
    "cat",
    "substr",
    "log",
    "var",
    "missing",
    "missing_some",
    "if",
    "?:",
    "or",
    "and",
    "map",
    "filter",
    "reduce",
    "all",
    "some",
    "none",
];

/// Same JSON, and the same text: tells `1` from `1.0` and `0.0` from `-0.0`.
fn identical(a: &Value, b: &Value) -> bool {
    a == b && format!("{a}") == format!("{b}")
}

/// What happened, for the assertions and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agreement {
    /// Both returned the same value.
    SameValue,
    /// Both failed.
    BothFailed,
}

/// Checks the agreement described in the module docs.
fn check(rule: &Value, data: &Value) -> Result<Agreement, String> {
    let reference = jsonlogic_rs::apply(rule, data);
    let parsed = Filter::expression(rule);
    match reference {
        Ok(expected) => {
            let filter = parsed.map_err(|e| {
                format!("jsonlogic-rs returns {expected} but Filter::expression fails: {e:?}")
            })?;
            let got = filter.evaluate(data).map_err(|e| {
                format!("jsonlogic-rs returns {expected} but Filter::evaluate fails: {e:?}")
            })?;
            if !identical(&got, &expected) {
                return Err(format!(
                    "jsonlogic-rs returns {expected}, Filter returns {got}"
                ));
            }
            let truthy = match jsonlogic_rs::apply(&json!({"!!": [rule]}), data) {
                Ok(Value::Bool(b)) => b,
                other => return Err(format!("jsonlogic-rs's !! of the rule gives {other:?}")),
            };
            if filter.matches(data) != truthy {
                return Err(format!(
                    "matches() is {} for result {expected}",
                    filter.matches(data)
                ));
            }
            Ok(Agreement::SameValue)
        }
        Err(reference_error) => {
            if let Ok(filter) = parsed {
                if let Ok(got) = filter.evaluate(data) {
                    return Err(format!(
                        "jsonlogic-rs fails ({reference_error}) but Filter returns {got}"
                    ));
                }
                if filter.matches(data) {
                    return Err("matches() is true for a failing rule".into());
                }
            }
            Ok(Agreement::BothFailed)
        }
    }
}

/// What jsonlogic-rs is expected to do with a table case (so that a mistyped case that
/// fails on both sides cannot pass unnoticed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Value,
    Error,
}

struct Case {
    rule: Value,
    data: Value,
    expect: Expect,
}

/// The data most table cases run against.
fn doc() -> Value {
    json!({
        "a": 1, "b": "2", "c": [1, 2, 3], "d": {"e": {"f": "deep"}}, "n": null,
        "t": true, "f": false, "s": "hello", "z": 0, "empty": "", "arr": [], "obj": {},
        "x.y": "dotted", "1": "one", "fl": 1.5, "neg": -3,
        "objs": [{"k": "x", "v": 1}, {"k": "y", "v": 2}],
        "rule": {"+": [{"var": "a"}, 41]},
        "bad_rule": {"==": [1]},
        "lazy_rule": {"if": [true, "taken", {"==": [1]}]},
        "not_a_rule": {"foo": 1},
        "rules": [{"var": "a"}, 2, {"-": [{"var": "a"}]}]
    })
}

/// The table: every operator, with coercions, edge cases and errors.
fn cases() -> Vec<Case> {
    let d = doc();
    let mut cases = Vec::new();
    let mut ok = |rule: Value, data: &Value| {
        cases.push(Case {
            rule,
            data: data.clone(),
            expect: Expect::Value,
        })
    };
    let e = json!({});

    // Literals.
    for rule in [
        json!(1),
        json!(1.5),
        json!(-0.0),
        json!("s"),
        json!(null),
        json!(true),
        json!([]),
        json!([1, {"var": "a"}]),
        json!({}),
        json!({"a": 1, "b": 2}),
        json!({"var": "a", "x": 1}),
    ] {
        ok(rule, &d);
    }

    // var: paths, array and string indexes, defaults, the whole data.
    for rule in [
        json!({"var": "a"}),
        json!({"var": ["a"]}),
        json!({"var": "d.e.f"}),
        json!({"var": "d.e"}),
        json!({"var": "d.e."}),
        json!({"var": "c.1"}),
        json!({"var": "c.-1"}),
        json!({"var": "c.5"}),
        json!({"var": "c.+1"}),
        json!({"var": "objs.1.k"}),
        json!({"var": "s.1"}),
        json!({"var": "s.-1"}),
        json!({"var": "s.1.0"}),
        json!({"var": "a.b"}),
        json!({"var": "n.x"}),
        json!({"var": r"x\.y"}),
        json!({"var": "x.y"}),
        json!({"var": "."}),
        json!({"var": 1}),
        json!({"var": "1"}),
        json!({"var": ""}),
        json!({"var": [""]}),
        json!({"var": []}),
        json!({"var": null}),
        json!({"var": [null, "ignored"]}),
        json!({"var": ["nope", "default"]}),
        json!({"var": ["a", "default"]}),
        json!({"var": ["n", "default"]}),
        json!({"var": ["nope", {"+": [1, 2]}]}),
        json!({"var": ["nope", {"var": "s"}]}),
        json!({"var": [{"cat": ["d", ".e", ".f"]}]}),
        json!({"var": [{"var": "b"}]}),
        json!({"var": [{"var": "z"}]}),
        // The default is evaluated again as a rule, even when it comes from the data.
        json!({"var": ["nope", {"var": "rule"}]}),
        json!({"var": ["nope", {"var": "lazy_rule"}]}),
        json!({"var": ["nope", {"var": "not_a_rule"}]}),
        json!({"var": ["nope", [1, 2]]}),
        json!({"var": ["nope", {"a": 1, "b": 2}]}),
    ] {
        ok(rule, &d);
    }
    ok(json!({"var": 1}), &json!([10, 20]));
    ok(json!({"var": -1}), &json!([10, 20]));
    ok(json!({"var": -3}), &json!([10, 20]));
    ok(json!({"var": "0"}), &json!([10, 20]));
    ok(json!({"var": "x"}), &json!([10, 20]));
    ok(json!({"var": 0}), &json!("abc"));
    ok(json!({"var": "2"}), &json!("abc"));
    ok(json!({"var": ""}), &json!(5));
    ok(json!({"var": "a"}), &json!(5));
    ok(json!({"var": 0}), &json!(5));
    ok(json!({"var": "a"}), &json!(null));
    ok(json!({"var": []}), &json!(null));

    // missing, missing_some.
    for rule in [
        json!({"missing": ["a", "nope"]}),
        json!({"missing": "nope"}),
        json!({"missing": []}),
        json!({"missing": [["a", "nope"], "ignored"]}),
        json!({"missing": ["d.e.f", "d.e.g", "c.2", "c.3"]}),
        json!({"missing": [null, "a", "nope"]}),
        json!({"missing": [1, 7]}),
        json!({"missing": [{"merge": ["a", ["nope"]]}]}),
        json!({"missing": ["", "n"]}),
        json!({"missing_some": [1, ["a", "nope"]]}),
        json!({"missing_some": [2, ["a", "nope", "zz"]]}),
        json!({"missing_some": [0, ["x"]]}),
        json!({"missing_some": [1, []]}),
        json!({"missing_some": [3, ["nope", "nope", "a"]]}),
        json!({"missing_some": [2, [null, "nope"]]}),
        json!({"missing_some": [1, ["a", true]]}),
        json!({"missing_some": [{"var": "a"}, {"var": "c"}]}),
    ] {
        ok(rule, &d);
    }
    ok(json!({"missing": [1, 5]}), &json!([1, 2, 3]));
    ok(json!({"missing": ["a"]}), &json!(7));

    // if and ?: with 0, 1, 2, 3, 4, 5 and more arguments.
    for rule in [
        json!({"if": []}),
        json!({"if": [1]}),
        json!({"if": [{"var": "s"}]}),
        json!({"if": true}),
        json!({"if": [true, "yes"]}),
        json!({"if": [false, "yes"]}),
        json!({"if": [true, "yes", "no"]}),
        json!({"if": [false, "yes", "no"]}),
        json!({"if": [{"var": "z"}, "yes", "no"]}),
        json!({"if": [false, "a", false, "b"]}),
        json!({"if": [false, "a", true, "b"]}),
        json!({"if": [false, "a", false, "b", "c"]}),
        json!({"if": [false, "a", true, "b", "c"]}),
        json!({"if": [true, "a", true, "b", "c"]}),
        json!({"if": [
            {"<": [{"var": "neg"}, 0]}, "negative",
            {"==": [{"var": "neg"}, 0]}, "zero",
            "positive"
        ]}),
        json!({"if": [0, 1, "", 2, [], 3, "x", 4, 5]}),
        json!({"if": [[0], "array is truthy", "no"]}),
        json!({"if": [{"var": "obj"}, "object is truthy", "no"]}),
        json!({"?:": [true, 1, 2]}),
        json!({"?:": [false, 1, 2]}),
        json!({"?:": [{"var": "a"}, {"var": "s"}, {"var": "b"}]}),
        json!({"if": [true, 1, {"==": [1]}]}),
        json!({"if": [false, {"==": [1]}, 2]}),
    ] {
        ok(rule, &d);
    }

    // ==, ===, !=, !== with coercions.
    for (a, b) in [
        (json!(1), json!(1)),
        (json!(1), json!("1")),
        (json!(1), json!(1.0)),
        (json!(0), json!(false)),
        (json!(1), json!(true)),
        (json!("1"), json!(true)),
        (json!(null), json!(0)),
        (json!(null), json!(null)),
        (json!(null), json!(false)),
        (json!(""), json!(0)),
        (json!(" "), json!(0)),
        (json!("abc"), json!("abc")),
        (json!([1]), json!(1)),
        (json!([1, 2]), json!("1,2")),
        (json!([]), json!("")),
        (json!([]), json!(false)),
        (json!([[]]), json!(0)),
        (json!({}), json!("[object Object]")),
        (json!({}), json!({})),
        (json!([]), json!([])),
        (json!("1e1"), json!(10)),
        (json!(0.1), json!("0.1")),
        (json!({"var": "c"}), json!({"var": "c"})),
        (json!({"var": "obj"}), json!({"var": "obj"})),
        (json!({"var": "a"}), json!({"var": "a"})),
        (json!({"var": "s"}), json!({"var": "s"})),
        (json!({"var": "n"}), json!({"var": "nope"})),
        (json!({"var": "fl"}), json!("1.5")),
    ] {
        for op in ["==", "===", "!=", "!=="] {
            ok(json!({ op: [a.clone(), b.clone()] }), &d);
        }
    }

    // ! and !!, including the unary non-array argument.
    for arg in [
        json!([false]),
        json!(false),
        json!([true]),
        json!(0),
        json!([0]),
        json!("0"),
        json!(""),
        json!([""]),
        json!([[]]),
        json!([[0]]),
        json!([{}]),
        json!(null),
        json!([null]),
        json!({"var": "s"}),
        json!([{"var": "z"}]),
        json!({"var": "arr"}),
        json!([-0.0]),
    ] {
        ok(json!({ "!": arg.clone() }), &d);
        ok(json!({ "!!": arg }), &d);
    }

    // or and and return the deciding value, not a boolean.
    for rule in [
        json!({"or": [false, 0, "a"]}),
        json!({"or": [0, ""]}),
        json!({"or": [0, "", []]}),
        json!({"or": [{"var": "n"}, {"var": "a"}]}),
        json!({"or": [{"var": "c"}, {"var": "a"}]}),
        json!({"or": [[], {}]}),
        json!({"or": 1}),
        json!({"or": [0]}),
        json!({"or": [true, {"==": [1]}]}),
        json!({"and": [true, 1, "x"]}),
        json!({"and": [1, 0, 2]}),
        json!({"and": [1, "", 2]}),
        json!({"and": [{"var": "a"}, {"var": "s"}]}),
        json!({"and": [{"var": "a"}, {"var": "arr"}, 3]}),
        json!({"and": [false, {"==": [1]}]}),
        json!({"and": "x"}),
        json!({"and": [{"in": ["alice", ["alice"]]}, {">": [2, 1]}]}),
    ] {
        ok(rule, &d);
    }

    // <, <=, >, >= including the three-argument "between".
    for args in [
        json!([1, 2]),
        json!([2, 1]),
        json!([1, 1]),
        json!(["1", 2]),
        json!(["10", "9"]),
        json!(["a", "b"]),
        json!(["a", 1]),
        json!([1, "a"]),
        json!([null, 1]),
        json!([null, 0]),
        json!([null, null]),
        json!([false, true]),
        json!([[2], 3]),
        json!([[1, 2], 3]),
        json!([{}, 1]),
        json!([{}, "[object Object]"]),
        json!([1, 1.5]),
        json!([1.5, "1.5"]),
        json!(["", 0]),
        json!([1, 2, 3]),
        json!([1, 3, 2]),
        json!([1, 1, 1]),
        json!([3, 2, 1]),
        json!([1, "2", 3]),
        json!([{"var": "a"}, {"var": "b"}, {"var": "fl"}]),
    ] {
        for op in ["<", "<=", ">", ">="] {
            ok(json!({ op: args.clone() }), &d);
        }
    }

    // Arithmetic, with coercions; NaN, infinite and unparseable results are errors.
    for rule in [
        json!({"max": [1, 2, 3]}),
        json!({"max": ["3", 2]}),
        json!({"max": [1.5, 1]}),
        json!({"max": [[], -1]}),
        json!({"max": [null, -1]}),
        json!({"max": [true, 0.5]}),
        json!({"max": 5}),
        json!({"max": [-1e300, -2e300]}),
        json!({"min": [1, 2, 3]}),
        json!({"min": ["3", 2.5]}),
        json!({"min": [[5], 6]}),
        json!({"min": [null, 1]}),
        json!({"+": [1, 2]}),
        json!({"+": ["1", 2]}),
        json!({"+": ["1.5x", 1]}),
        json!({"+": [" 12 ", 1]}),
        json!({"+": ["1e3", 0]}),
        json!({"+": ["1e", 0]}),
        json!({"+": ["1.2.3", 0]}),
        json!({"+": []}),
        json!({"+": "3"}),
        json!({"+": [1.5, 1.5]}),
        json!({"+": [0.1, 0.2]}),
        json!({"+": [[1], 1]}),
        json!({"+": [1, -1]}),
        json!({"+": [{"var": "c.0"}, {"var": "fl"}, {"var": "b"}]}),
        json!({"-": [5, 3]}),
        json!({"-": ["5", 3]}),
        json!({"-": [5]}),
        json!({"-": "2"}),
        json!({"-": [null]}),
        json!({"-": [0]}),
        json!({"-": [true, 1]}),
        json!({"-": [0.5]}),
        json!({"-": [[], 1]}),
        json!({"-": [0.3, 0.1]}),
        json!({"*": [2, 3]}),
        json!({"*": ["2", "3"]}),
        json!({"*": [2]}),
        json!({"*": 4}),
        json!({"*": [1.5, 2]}),
        json!({"*": [0.1, 3]}),
        json!({"*": [-1, 0]}),
        json!({"*": [[2], "3x"]}),
        json!({"/": [6, 3]}),
        json!({"/": [1, 3]}),
        json!({"/": ["6", "2"]}),
        json!({"/": [null, 1]}),
        json!({"/": [[], 4]}),
        json!({"/": [7, 2]}),
        json!({"%": [7, 3]}),
        json!({"%": [7.5, 2]}),
        json!({"%": [-7, 3]}),
        json!({"%": ["7", "3"]}),
        json!({"%": [1, 0.3]}),
    ] {
        ok(rule, &d);
    }

    // map, filter, reduce.
    for rule in [
        json!({"map": [{"var": "c"}, {"*": [{"var": ""}, 2]}]}),
        json!({"map": [[], {"var": ""}]}),
        json!({"map": [null, 1]}),
        json!({"map": [{"var": "nope"}, 1]}),
        json!({"map": [[1, {"var": "a"}], {"var": ""}]}),
        json!({"map": [{"var": "c"}, {"var": "a"}]}),
        json!({"map": [{"var": "objs"}, {"var": "k"}]}),
        json!({"map": [{"var": "objs"}, {"cat": [{"var": "k"}, {"var": "v"}]}]}),
        json!({"map": [{"var": "c"}, {"var": []}]}),
        json!({"filter": [{"var": "c"}, {">": [{"var": ""}, 1]}]}),
        json!({"filter": [[0, 1, "", [], {}, "x", null], {"var": ""}]}),
        json!({"filter": [null, true]}),
        json!({"filter": [{"var": "c"}, true]}),
        json!({"filter": [{"var": "objs"}, {"==": [{"var": "v"}, 2]}]}),
        json!({"reduce": [
            {"var": "c"},
            {"+": [{"var": "current"}, {"var": "accumulator"}]},
            0
        ]}),
        json!({"reduce": [[], {"var": "current"}, 10]}),
        json!({"reduce": [null, 1, {"var": "a"}]}),
        json!({"reduce": [{"var": "c"}, {"cat": [{"var": "accumulator"}, {"var": "current"}]}, ""]}),
        json!({"reduce": [{"var": "c"}, {"var": ""}, 0]}),
        json!({"reduce": [{"var": "c"}, {"max": [{"var": "current"}, {"var": "accumulator"}]}, -1000]}),
        json!({"reduce": [{"var": "objs"}, {"+": [{"var": "accumulator"}, {"var": "current.v"}]}, 0.5]}),
        // The expression runs per item, and a lazy operator's arguments are parsed only when
        // it runs: with no items, a malformed operation inside an `or` is no error (found by
        // the random test below).
        json!({"map": [{"var": "nope"}, {"or": {"substr": [null, null, null, null]}}]}),
        json!({"filter": [[], {"and": [{"substr": [1]}]}]}),
        json!({"reduce": [null, {"+": [{"if": [{"substr": []}]}, 1]}, 7]}),
    ] {
        ok(rule, &d);
    }

    // all, some, none on empty and non-empty arrays, strings, null, literal rule arrays,
    // and arrays from the data whose elements look like rules.
    for op in ["all", "some", "none"] {
        for (items, predicate) in [
            (json!({"var": "c"}), json!({">": [{"var": ""}, 0]})),
            (json!({"var": "c"}), json!({">": [{"var": ""}, 1]})),
            (json!({"var": "c"}), json!({">": [{"var": ""}, 5]})),
            (json!([]), json!(true)),
            (json!({"var": "arr"}), json!(true)),
            (json!(null), json!(true)),
            (json!({"var": "nope"}), json!(true)),
            (json!(""), json!(true)),
            (json!("abc"), json!({"in": [{"var": ""}, "abcd"]})),
            (json!("abc"), json!({"==": [{"var": ""}, "b"]})),
            (json!({"var": "s"}), json!({"!=": [{"var": ""}, "z"]})),
            (
                json!([{"var": "a"}, {"+": [1, 1]}]),
                json!({">": [{"var": ""}, 0]}),
            ),
            (json!([0, {"var": "z"}]), json!({"var": ""})),
            (json!([[1], [2]]), json!({"var": "0"})),
            (json!({"var": "rules"}), json!({">": [{"var": ""}, 0]})),
            (json!({"var": "rules"}), json!({"==": [{"var": ""}, 1]})),
            (json!({"var": "objs"}), json!({"==": [{"var": "k"}, "x"]})),
            (json!({"var": "objs"}), json!({"var": "v"})),
            (json!({"var": "arr"}), json!({"==": [1]})),
            (json!([]), json!({"==": [1]})),
            (json!(null), json!({"==": [1]})),
        ] {
            ok(json!({ op: [items, predicate] }), &d);
        }
    }

    // merge, in, cat, substr, log.
    for rule in [
        json!({"merge": []}),
        json!({"merge": [1, 2]}),
        json!({"merge": [[1], [2, [3]]]}),
        json!({"merge": [1, [2], null, {}]}),
        json!({"merge": 5}),
        json!({"merge": [{"var": "c"}, {"var": "a"}]}),
        json!({"merge": {"var": "c"}}),
        json!({"in": ["a", "abc"]}),
        json!({"in": ["z", "abc"]}),
        json!({"in": ["", "abc"]}),
        json!({"in": [1, [1, 2]]}),
        json!({"in": ["1", [1, 2]]}),
        json!({"in": [1.0, [1, 2]]}),
        json!({"in": [[1], [[1], 2]]}),
        json!({"in": ["a", null]}),
        json!({"in": [{"var": "a"}, {"var": "c"}]}),
        json!({"in": ["ell", {"var": "s"}]}),
        json!({"in": [{"var": "nope"}, [null]]}),
        json!({"cat": ["a", "b"]}),
        json!({"cat": ["a", 1, null, true, 1.5, [1, [2, 3]], [null, 1], {"x": 1, "y": 2}]}),
        json!({"cat": []}),
        json!({"cat": "solo"}),
        json!({"cat": {"var": "c"}}),
        json!({"cat": [{"var": "s"}, " ", {"var": "a"}]}),
        json!({"substr": ["jsonlogic", 4]}),
        json!({"substr": ["jsonlogic", -5]}),
        json!({"substr": ["jsonlogic", 1, 3]}),
        json!({"substr": ["jsonlogic", 4, -2]}),
        json!({"substr": ["jsonlogic", -5, -2]}),
        json!({"substr": ["jsonlogic", 0, 100]}),
        json!({"substr": ["jsonlogic", 100]}),
        json!({"substr": ["jsonlogic", -100]}),
        json!({"substr": ["jsonlogic", 2, 0]}),
        json!({"substr": ["jsonlogic", 5, -7]}),
        // jsonlogic-rs clamps against the length in bytes but counts characters.
        json!({"substr": ["héllo", 1, 2]}),
        json!({"substr": ["héllo", -2]}),
        json!({"substr": [{"var": "s"}, {"var": "a"}, {"var": "a"}]}),
        json!({"log": "x"}),
        json!({"log": [{"var": "c"}]}),
        json!({"log": {"var": "d"}}),
    ] {
        ok(rule, &d);
    }
    // Operators inside operator arguments and inside literal arrays.
    for rule in [
        json!({"==": [[{"var": "a"}], "[object Object]"]}),
        json!({"in": [{"var": "a"}, [{"var": "a"}]]}),
        json!({"==": [{"+": [{"var": "a"}, {"*": [2, {"-": [{"var": "c.2"}, 1]}]}]}, 5]}),
        json!({"!": {"!": {"!": {"var": "a"}}}}),
        json!({"map": [{"filter": [{"var": "c"}, {"%": [{"var": ""}, 2]}]}, {"cat": ["n", {"var": ""}]}]}),
        json!({"some": [{"map": [{"var": "objs"}, {"var": "v"}]}, {"===": [{"var": ""}, 2]}]}),
    ] {
        ok(rule, &d);
    }
    ok(json!({"==": [{"var": "a"}, 1]}), &e);

    // jsonlogic-rs errors.
    let mut err = |rule: Value, data: &Value| {
        cases.push(Case {
            rule,
            data: data.clone(),
            expect: Expect::Error,
        })
    };
    // The per-item expression is still parsed (shallowly) when the operation runs, and a
    // lazy operator's malformed argument fails once an item makes it run.
    err(json!({"map": [[], {"substr": [1]}]}), &d);
    err(
        json!({"map": [[1], {"or": {"substr": [null, null, null, null]}}]}),
        &d,
    );
    err(json!({"filter": [[1, 2], {"and": [{"substr": [1]}]}]}), &d);
    for rule in [
        // Argument counts and shapes.
        json!({"==": [1]}),
        json!({"==": [1, 1, 1]}),
        json!({"==": 1}),
        json!({"!=": []}),
        json!({"===": [1]}),
        json!({"!==": 1}),
        json!({"!": []}),
        json!({"!": [1, 2]}),
        json!({"!!": []}),
        json!({"<": [1]}),
        json!({"<": 1}),
        json!({"<=": [1, 2, 3, 4]}),
        json!({">": []}),
        json!({">=": [1]}),
        json!({"-": []}),
        json!({"-": [1, 2, 3]}),
        json!({"*": []}),
        json!({"/": [1]}),
        json!({"/": 1}),
        json!({"%": [1, 2, 3]}),
        json!({"max": []}),
        json!({"min": []}),
        json!({"in": ["a"]}),
        json!({"in": "a"}),
        json!({"substr": ["abc"]}),
        json!({"substr": "abc"}),
        json!({"substr": ["abc", 1, 2, 3]}),
        json!({"log": []}),
        json!({"log": [1, 2]}),
        json!({"var": ["a", 1, 2]}),
        json!({"missing_some": [1]}),
        json!({"missing_some": 1}),
        json!({"or": []}),
        json!({"and": []}),
        json!({"map": [[1]]}),
        json!({"map": {"var": "c"}}),
        json!({"filter": [[1], 1, 2]}),
        json!({"reduce": [[1], 1]}),
        json!({"all": [[1]]}),
        json!({"some": {"var": "c"}}),
        json!({"none": [[1], true, 1]}),
        // Malformed operations where they are reached.
        json!({"if": [false, 1, {"==": [1]}]}),
        json!({"if": [{"==": [1]}, 1, 2]}),
        json!({"or": [false, {"==": [1]}]}),
        json!({"and": [true, {"==": [1]}]}),
        json!({"map": [[], {"==": [1]}]}),
        json!({"map": [{"var": "c"}, {"==": [1]}]}),
        json!({"all": [[1], {"==": [1]}]}),
        json!({"some": [{"var": "c"}, {"==": [1]}]}),
        json!({"none": ["x", {"==": [1]}]}),
        json!({"all": [[{"==": [1]}], true]}),
        json!({"all": [[1, {"==": [1]}], true]}),
        json!({"var": ["nope", {"var": "bad_rule"}]}),
        json!({"var": ["a", {"var": "bad_rule"}]}),
        json!({"var": ["a", {"==": [1]}]}),
        json!({"==": [{"var": ["a", 1, 2]}, 1]}),
        // Keys of the wrong type.
        json!({"var": true}),
        json!({"var": 1.5}),
        json!({"var": [[1]]}),
        json!({"var": {"a": 1, "b": 2}}),
        json!({"var": [{"var": "c"}]}),
        json!({"missing": [true]}),
        json!({"missing": [1.5]}),
        json!({"missing": [[["a"]]]}),
        json!({"missing_some": [-1, ["a"]]}),
        json!({"missing_some": [1.5, ["a"]]}),
        json!({"missing_some": ["1", ["a"]]}),
        json!({"missing_some": [1, "a"]}),
        json!({"missing_some": [1, [{"a": 1, "b": 2}]]}),
        // Values that are not numbers, and results that are not JSON numbers.
        json!({"+": [true, 1]}),
        json!({"+": [null, 1]}),
        json!({"+": [{}, 1]}),
        json!({"+": ["", 1]}),
        json!({"+": ["-", 1]}),
        json!({"+": ["NaN", 1]}),
        json!({"+": [1e308, 1e308]}),
        json!({"-": ["a", 1]}),
        // Unlike JavaScript, a blank string is not 0.
        json!({"-": [" ", 1]}),
        json!({"-": [1, "a"]}),
        json!({"-": [{"var": "obj"}]}),
        json!({"-": [-1e308, 1e308]}),
        json!({"*": [true, 2]}),
        json!({"*": [1e200, 1e200]}),
        json!({"/": [1, 0]}),
        json!({"/": [-1, 0]}),
        json!({"/": [0, 0]}),
        json!({"/": [1, null]}),
        json!({"/": [1, []]}),
        json!({"/": ["a", 1]}),
        json!({"%": [7, 0]}),
        json!({"%": [1, "a"]}),
        json!({"%": [{}, 1]}),
        json!({"max": [1, "a"]}),
        json!({"max": [{"var": "c"}]}),
        json!({"min": [{}, 1]}),
        // Wrong types for array, string and iteration operators.
        json!({"in": [1, "123"]}),
        json!({"in": ["a", 5]}),
        json!({"in": ["a", {"a": 1, "b": 2}]}),
        json!({"in": ["a", true]}),
        json!({"substr": [1, 1]}),
        json!({"substr": ["abc", "1"]}),
        json!({"substr": ["abc", 1.5]}),
        json!({"substr": ["abc", 1, "2"]}),
        json!({"substr": ["abc", 1, 1.5]}),
        json!({"substr": [null, 0]}),
        json!({"map": [{"var": "s"}, 1]}),
        json!({"map": [1, 1]}),
        json!({"map": [{"a": 1, "b": 2}, 1]}),
        json!({"filter": [5, true]}),
        json!({"filter": ["abc", true]}),
        json!({"reduce": ["abc", 1, 0]}),
        json!({"reduce": [{"var": "a"}, 1, 0]}),
        json!({"all": [5, true]}),
        json!({"some": [true, true]}),
        json!({"none": [{"var": "a"}, true]}),
        json!({"all": [{"a": 1, "b": 2}, true]}),
        json!({"some": [{}, true]}),
        json!({"some": [[{"var": true}], true]}),
        // An evaluation error anywhere fails the whole rule.
        json!({"or": [false, {"/": [1, 0]}]}),
        json!({"if": [{"in": ["a", 5]}, 1, 2]}),
        json!({"!": {"var": 1.5}}),
        json!({"cat": ["a", {"-": ["x"]}]}),
        json!({"map": [{"var": "c"}, {"/": [{"var": ""}, 0]}]}),
        json!({"reduce": [{"var": "c"}, {"in": [1, {"var": "current"}]}, 0]}),
    ] {
        err(rule, &d);
    }
    cases
}

#[test]
fn table_agrees_with_jsonlogic() {
    let mut failures = Vec::new();
    let mut values = 0;
    let mut errors = 0;
    for case in cases() {
        let reference_ok = jsonlogic_rs::apply(&case.rule, &case.data).is_ok();
        let expected_ok = case.expect == Expect::Value;
        if reference_ok != expected_ok {
            failures.push(format!(
                "table expects jsonlogic-rs to {} on {} with {}",
                if expected_ok { "succeed" } else { "fail" },
                case.rule,
                case.data
            ));
        }
        match check(&case.rule, &case.data) {
            Ok(Agreement::SameValue) => values += 1,
            Ok(Agreement::BothFailed) => errors += 1,
            Err(why) => failures.push(format!("{} with {}: {why}", case.rule, case.data)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        values > 400 && errors > 100,
        "{values} values, {errors} errors"
    );
}

/// Collects the operators a rule uses in rule positions.
fn operators_in(rule: &Value, found: &mut BTreeSet<String>) {
    if let Value::Object(map) = rule {
        if map.len() == 1 {
            for (key, args) in map {
                found.insert(key.clone());
                match args {
                    Value::Array(args) => {
                        for arg in args {
                            operators_in(arg, found);
                            if let Value::Array(elements) = arg {
                                for element in elements {
                                    operators_in(element, found);
                                }
                            }
                        }
                    }
                    other => operators_in(other, found),
                }
            }
        }
    }
}

#[test]
fn table_covers_every_operator() {
    let mut found = BTreeSet::new();
    for case in cases() {
        if case.expect == Expect::Value {
            operators_in(&case.rule, &mut found);
        }
    }
    let missing: Vec<_> = OPERATORS
        .iter()
        .filter(|op| !found.contains(**op))
        .collect();
    assert!(missing.is_empty(), "no successful case uses {missing:?}");
}

/// A documented, deliberate difference from jsonlogic-rs.
struct Exception {
    rule: Value,
    data: Value,
    /// What jsonlogic-rs does.
    jsonlogic: Reference,
    /// What Filter does.
    filter: Result<Value, FilterError>,
    /// Why they differ.
    #[allow(dead_code)]
    reason: &'static str,
}

enum Reference {
    /// Returns this value.
    Returns(Value),
    /// Overflows: panics in a debug build (tests), errors in a release build.
    Overflows,
}

/// Every case where Filter and jsonlogic-rs are allowed to differ.
fn exceptions() -> Vec<Exception> {
    let unknown = |op: &str| {
        Err(FilterError::UnknownOperator {
            operator: op.to_owned(),
        })
    };
    vec![
        Exception {
            rule: json!({"eq": [1, 1]}),
            data: json!({}),
            jsonlogic: Reference::Returns(json!({"eq": [1, 1]})),
            filter: unknown("eq"),
            reason: "on purpose: an unknown operator is a literal (truthy) object in \
                     jsonlogic-rs, so a misspelt operator would match everything",
        },
        Exception {
            rule: json!({"and": [false, {"contains": ["a", "abc"]}]}),
            data: json!({}),
            jsonlogic: Reference::Returns(json!(false)),
            filter: unknown("contains"),
            reason: "on purpose: unknown operators are rejected everywhere the rule could \
                     evaluate them, also in branches that this data does not reach",
        },
        Exception {
            rule: json!({"==": [{"var": "target"}, {"entity": "alice"}]}),
            data: json!({"target": {"entity": "alice"}}),
            jsonlogic: Reference::Returns(json!(false)),
            filter: unknown("entity"),
            reason: "on purpose: a one-key object literal in an operator argument looks \
                     like an operation, and is rejected as one",
        },
        Exception {
            rule: json!({"var": i64::MIN}),
            data: json!([1, 2]),
            jsonlogic: Reference::Overflows,
            filter: Ok(json!(null)),
            reason: "jsonlogic-rs bug: `i64::abs` overflows on i64::MIN (a panic in a debug \
                     build); Filter treats the index as out of range, as a release build does",
        },
        Exception {
            rule: json!({"substr": ["abc", i64::MIN]}),
            data: json!({}),
            jsonlogic: Reference::Overflows,
            filter: Err(FilterError::Evaluation(format!(
                "Invalid argument for 'substr' - '{:?}', reason: \
                 The number is too large to index strings on this system",
                json!(i64::MIN)
            ))),
            reason: "jsonlogic-rs bug: `i64::abs` overflows on i64::MIN (a panic in a debug \
                     build, a 'too large' error in a release build, which Filter gives)",
        },
        Exception {
            rule: json!({"substr": ["abc", 0, i64::MIN]}),
            data: json!({}),
            jsonlogic: Reference::Overflows,
            filter: Err(FilterError::Evaluation(format!(
                "Invalid argument for 'substr' - '{:?}', reason: \
                 The number is too large to index strings on this system",
                json!(i64::MIN)
            ))),
            reason: "as above, for the length argument",
        },
    ]
}

#[test]
fn documented_exceptions_still_differ() {
    for exception in exceptions() {
        let rule = &exception.rule;
        let data = &exception.data;
        let reference = catch_unwind(AssertUnwindSafe(|| jsonlogic_rs::apply(rule, data)));
        match (&exception.jsonlogic, reference) {
            (Reference::Returns(expected), Ok(Ok(got))) => {
                assert!(
                    identical(expected, &got),
                    "{rule}: jsonlogic-rs gives {got}"
                )
            }
            (Reference::Overflows, Err(_) | Ok(Err(_))) => {}
            (_, other) => panic!("{rule}: jsonlogic-rs no longer does as documented: {other:?}"),
        }
        let ours = Filter::expression(rule).and_then(|f| f.evaluate(data));
        assert_eq!(ours, exception.filter, "{rule}");
        if let Reference::Returns(_) = exception.jsonlogic {
            assert!(check(rule, data).is_err(), "{rule}: check() accepts it");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Random rules.

/// Scalars and small literals (never a one-key object: that would be an unknown operator).
fn literal() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(Value::from),
        (-3i64..6).prop_map(Value::from),
        prop::sample::select(vec![0.5, -1.5, 2.25, 1e300, -0.0, 0.1, 1.0, 7.0])
            .prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "", "a", "abc", "1", "2.5", " 3 ", "1e2", "x.y", "true", "null", "é", "b", "-",
        ])
        .prop_map(Value::from),
        Just(json!([])),
        Just(json!([1, "a"])),
        Just(json!([[0], null])),
        Just(json!({})),
        Just(json!({"k": 1, "j": 2})),
    ]
}

/// `var`/`missing` keys.
fn key() -> impl Strategy<Value = Value> + Clone {
    prop::sample::select(vec![
        json!("a"),
        json!("b"),
        json!("c"),
        json!("c.0"),
        json!("c.-1"),
        json!("d.e"),
        json!("d.e.f"),
        json!(""),
        json!("x"),
        json!("s.0"),
        json!("arr"),
        json!("n"),
        json!("r"),
        json!("current"),
        json!("accumulator"),
        json!("current.a"),
        json!(r"x\.y"),
        json!("1"),
        json!(0),
        json!(1),
        json!(-1),
        json!(null),
        json!(1.5),
        json!(true),
    ])
}

fn var_rule() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        4 => key().prop_map(|k| json!({"var": k})),
        1 => key().prop_map(|k| json!({"var": [k]})),
        1 => (key(), literal()).prop_map(|(k, d)| json!({"var": [k, d]})),
        1 => Just(json!({"var": []})),
    ]
}

/// Argument counts each operator accepts (from jsonlogic-rs's operator maps).
fn valid_counts(op: &str) -> &'static [usize] {
    match op {
        "==" | "!=" | "===" | "!==" | "/" | "%" | "in" | "missing_some" | "map" | "filter"
        | "all" | "some" | "none" => &[2],
        "!" | "!!" | "log" => &[1],
        "<" | "<=" | ">" | ">=" | "substr" => &[2, 3],
        "-" => &[1, 2],
        "reduce" => &[3],
        "var" => &[0, 1, 2],
        "*" | "max" | "min" | "or" | "and" => &[1, 2, 3],
        _ => &[0, 1, 2, 3],
    }
}

/// An operation from an operator, some arguments and a shape selector: mostly a valid
/// argument count, sometimes any count, sometimes a single non-array argument.
fn operation(op: &str, mut args: Vec<Value>, shape: u8) -> Value {
    match shape % 8 {
        0 => {
            let arg = args.pop().unwrap_or(Value::Null);
            json!({ op: arg })
        }
        1..=5 => {
            let counts = valid_counts(op);
            let count = counts[usize::from(shape / 8) % counts.len()];
            let mut filler = [json!(1), json!("a"), json!([2, 3]), json!(null)]
                .into_iter()
                .cycle();
            while args.len() < count {
                args.push(filler.next().unwrap_or(Value::Null));
            }
            args.truncate(count);
            json!({ op: args })
        }
        _ => json!({ op: args }),
    }
}

fn rule() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![2 => literal(), 3 => var_rule()];
    leaf.prop_recursive(4, 40, 4, |inner| {
        prop_oneof![
            8 => (
                prop::sample::select(OPERATORS.to_vec()),
                prop::collection::vec(inner.clone(), 0..=4),
                any::<u8>(),
            )
                .prop_map(|(op, args, shape)| operation(op, args, shape)),
            // all/some/none over a literal array of rules.
            1 => (
                prop::sample::select(vec!["all", "some", "none"]),
                prop::collection::vec(inner.clone(), 0..3),
                inner.clone(),
            )
                .prop_map(|(op, items, predicate)| json!({ op: [items, predicate] })),
            // var with a computed key or default.
            1 => (inner.clone(), prop::option::of(inner.clone())).prop_map(|(k, d)| match d {
                Some(d) => json!({"var": [k, d]}),
                None => json!({"var": [k]}),
            }),
            // reduce using its context.
            1 => (inner.clone(), inner.clone()).prop_map(|(items, initial)| json!({"reduce": [
                items,
                {"+": [{"var": "current"}, {"var": "accumulator"}]},
                initial
            ]})),
            // A literal array holding rules (which stay literal).
            1 => prop::collection::vec(inner, 0..3).prop_map(Value::Array),
        ]
    })
}

/// Values found in the data, including some that look like rules.
fn data_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        6 => literal(),
        1 => prop::sample::select(vec![
            json!({"var": "a"}),
            json!({"==": [1]}),
            json!({"if": [false, 1, {"==": [1]}]}),
            json!({"+": ["1", 2]}),
            json!({"foo": 1}),
            json!({"k": "x", "v": 1}),
        ]),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec!["e", "f", "a", "0", "1"]),
                inner,
                0..3
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

fn data() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => prop::collection::btree_map(
            prop::sample::select(vec![
                "a", "b", "c", "d", "s", "n", "r", "1", "x.y", "arr", "current", "accumulator",
            ]),
            data_value(),
            0..7,
        )
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        1 => data_value(),
    ]
}

fn proptest_cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000)
}

#[test]
fn random_rules_agree_with_jsonlogic() {
    let cases = proptest_cases();
    let mut runner = TestRunner::new(Config::with_cases(cases));
    let values = AtomicUsize::new(0);
    let errors = AtomicUsize::new(0);
    let result = runner.run(&(rule(), data()), |(rule, data)| {
        match check(&rule, &data).map_err(TestCaseError::fail)? {
            Agreement::SameValue => values.fetch_add(1, Ordering::Relaxed),
            Agreement::BothFailed => errors.fetch_add(1, Ordering::Relaxed),
        };
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The generator must exercise both outcomes (counts include shrinking runs, if any).
    let (values, errors) = (values.into_inner(), errors.into_inner());
    let total = values + errors;
    assert!(total >= cases as usize, "{total} cases run");
    assert!(
        values * 3 >= total,
        "only {values} of {total} rules evaluated to a value"
    );
    assert!(
        errors * 20 >= total,
        "only {errors} of {total} rules failed"
    );
}

/// A rough speed comparison (no assertion on time): run with
/// `cargo test --release -p hypha-primitives --test filter_agrees_with_jsonlogic -- --ignored --nocapture`.
#[test]
#[ignore]
fn speed_against_jsonlogic() {
    let data = json!({
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
    });
    let rules = [
        json!({"in": ["alice", {"var": "targets"}]}),
        json!({"and": [
            {"in": ["alice", {"var": "targets"}]},
            {">": [{"var": "time.ms"}, 1_600_000_000_000_u64]}
        ]}),
        json!({"some": [{"var": "pointers"}, {"==": [{"var": "target.entity"}, "alice"]}]}),
    ];
    const N: u32 = 1_000_000;
    for rule in rules {
        let filter = Filter::expression(&rule).unwrap();
        let start = Instant::now();
        let mut hits = 0u32;
        for _ in 0..N {
            hits += u32::from(filter.matches(std::hint::black_box(&data)));
        }
        let ours = start.elapsed();
        assert_eq!(hits, N);
        let reference_n = N / 10;
        let start = Instant::now();
        for _ in 0..reference_n {
            let v = jsonlogic_rs::apply(std::hint::black_box(&rule), &data).unwrap();
            assert_eq!(v, json!(true));
        }
        let reference = start.elapsed() * 10;
        eprintln!(
            "{rule}\n  Filter::matches: {:.0} evals/s; jsonlogic_rs::apply: {:.0} evals/s ({:.1}x)",
            f64::from(N) / ours.as_secs_f64(),
            f64::from(N) / reference.as_secs_f64(),
            reference.as_secs_f64() / ours.as_secs_f64()
        );
    }
}
