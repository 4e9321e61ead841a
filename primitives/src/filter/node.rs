//! The compiled rule tree and the compiler from JSON.
//!
//! The compiler follows jsonlogic-rs's parser (`value.rs`, `op/mod.rs`): an object with
//! exactly one key that names an operator is an operation, anything else (scalars, arrays,
//! empty and multi-key objects) is a literal returned as is. Arrays are never looked into:
//! operations inside a literal array are literals too. The one exception is the first
//! argument of `all`/`some`/`none` when it is a literal array: jsonlogic-rs evaluates each
//! element as a rule, so they are compiled as rules here.
//!
//! jsonlogic-rs parses the arguments of its lazy operators (`if`, `?:`, `or`, `and`,
//! `all`, `some`, `none`) only when it reaches them, so a malformed operation in a branch
//! that is never taken is no error there. To agree with it exactly, a structural error in
//! a position that may go unevaluated is kept as a [`Node::Deferred`] that fails only when
//! evaluated; in positions that are always evaluated when their operator is (the first
//! argument of `if`/`or`/`and`, …) it is a compile error, as is everything eager.
//! Unknown operators are the exception: [`Mode::Strict`] rejects them wherever they are.

use serde_json::Value;

use super::ops::Op;
use super::path::Key;
use super::FilterError;

/// How single-key objects with an unknown key are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Reject them ([`FilterError::UnknownOperator`]): used for the rule a user wrote.
    Strict,
    /// Literals, as in jsonlogic-rs: used for values computed at evaluation time that
    /// jsonlogic-rs re-parses as rules (`var` defaults, elements tested by `all`/`some`/`none`).
    Lenient,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// A value returned as is.
    Literal(Value),
    /// A malformed operation in a lazily parsed position: fails when evaluated.
    Deferred(FilterError),
    /// `var`.
    Var(Box<Var>),
    /// `missing`, with its (eager) arguments.
    Missing(Vec<Node>),
    /// `missing_some`: threshold and keys.
    MissingSome(Box<Node>, Box<Node>),
    /// `if` and `?:`.
    If(Vec<Node>),
    /// `or`.
    Or(Vec<Node>),
    /// `and`.
    And(Vec<Node>),
    /// `map`: items and the expression evaluated against each item.
    Map(Box<Node>, Box<Node>),
    /// `filter`: items and the predicate evaluated against each item.
    Filter(Box<Node>, Box<Node>),
    /// `reduce`: items, expression (against `{"current", "accumulator"}`), initial value.
    Reduce(Box<Reduce>),
    /// `all`, `some` and `none`.
    Quantifier(Box<Quantifier>),
    /// An eager operator with one argument.
    Unary(Op, Box<Node>),
    /// An eager operator with two arguments.
    Binary(Op, Box<Node>, Box<Node>),
    /// An eager operator with any other number of arguments.
    Nary(Op, Vec<Node>),
}

/// A compiled `var`.
#[derive(Debug, Clone)]
pub(crate) struct Var {
    /// The key.
    pub(crate) key: VarKey,
    /// The default, when given.
    pub(crate) default: Option<Node>,
}

/// The key of a `var`.
#[derive(Debug, Clone)]
pub(crate) enum VarKey {
    /// `{"var": []}`: the whole data.
    Whole,
    /// A literal key, converted (and split) at compile time; a literal of the wrong type
    /// fails when evaluated, as in jsonlogic-rs.
    Static(Result<Key, FilterError>),
    /// A computed key, converted at evaluation time.
    Dynamic(Node),
}

/// A compiled `reduce`.
#[derive(Debug, Clone)]
pub(crate) struct Reduce {
    /// The items.
    pub(crate) items: Node,
    /// The expression.
    pub(crate) expression: Node,
    /// The initial accumulator.
    pub(crate) initial: Node,
}

/// Which of `all`, `some`, `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuantifierKind {
    /// `all`.
    All,
    /// `some`.
    Some,
    /// `none`.
    None,
}

/// A compiled `all`/`some`/`none`.
#[derive(Debug, Clone)]
pub(crate) struct Quantifier {
    /// Which one.
    pub(crate) kind: QuantifierKind,
    /// The items.
    pub(crate) items: QuantifierItems,
    /// The predicate (lazily parsed by jsonlogic-rs: only when there are items).
    pub(crate) predicate: Node,
}

/// Where the items of `all`/`some`/`none` come from (jsonlogic-rs evaluates the first
/// argument only when it is an object).
#[derive(Debug, Clone)]
pub(crate) enum QuantifierItems {
    /// The first argument is an object: evaluate it; its elements are then re-parsed as
    /// rules (leniently) and evaluated.
    Evaluated(Node),
    /// The first argument is a literal array: each element is a rule.
    Elements(Vec<Node>),
    /// Any other literal (a string iterates its characters, `null` is empty, anything
    /// else fails when evaluated).
    Literal(Value),
}

/// Rejects any single-key object with an unknown key in a rule position of `rule`, before
/// compiling, so that it is reported even inside an otherwise malformed operation.
pub(crate) fn check_operators(rule: &Value) -> Result<(), FilterError> {
    let Value::Object(map) = rule else {
        return Ok(());
    };
    if map.len() != 1 {
        return Ok(());
    }
    let Some((key, args)) = map.iter().next() else {
        return Ok(());
    };
    let Some(op) = Op::from_key(key) else {
        return Err(FilterError::UnknownOperator {
            operator: key.clone(),
        });
    };
    match args {
        Value::Array(args) => {
            for (i, arg) in args.iter().enumerate() {
                if i == 0 && matches!(op, Op::All | Op::Some | Op::None) {
                    if let Value::Array(elements) = arg {
                        for element in elements {
                            check_operators(element)?;
                        }
                        continue;
                    }
                }
                check_operators(arg)?;
            }
            Ok(())
        }
        other => check_operators(other),
    }
}

/// Compiles a rule.
pub(crate) fn compile(rule: &Value, mode: Mode) -> Result<Node, FilterError> {
    if let Value::Object(map) = rule {
        if map.len() == 1 {
            if let Some((key, args)) = map.iter().next() {
                match Op::from_key(key) {
                    Some(op) => return compile_op(op, args, mode),
                    None if mode == Mode::Strict => {
                        return Err(FilterError::UnknownOperator {
                            operator: key.clone(),
                        })
                    }
                    None => {}
                }
            }
        }
    }
    Ok(Node::Literal(rule.clone()))
}

/// Compiles a rule in a position jsonlogic-rs parses only when it gets there.
fn compile_lazy(rule: &Value, mode: Mode) -> Result<Node, FilterError> {
    match compile(rule, mode) {
        Ok(node) => Ok(node),
        Err(e @ FilterError::UnknownOperator { .. }) => Err(e),
        Err(e) => Ok(Node::Deferred(e)),
    }
}

/// Compiles the expression of `map`/`filter`/`reduce`, which jsonlogic-rs parses when the
/// operation runs but evaluates only per item, so maybe never. Its parse is shallow: eager
/// operators are checked with their arguments, lazy ones (`if`, `or`, `and`, `map`, …)
/// only for their own shape, their arguments waiting until they run. A structural error
/// that parse would not see is kept as a [`Node::Deferred`], failing only if evaluated.
fn compile_per_item(rule: &Value, mode: Mode) -> Result<Node, FilterError> {
    match compile(rule, mode) {
        Ok(node) => Ok(node),
        Err(e @ FilterError::UnknownOperator { .. }) => Err(e),
        Err(e) => {
            check_shallow(rule)?;
            Ok(Node::Deferred(e))
        }
    }
}

/// What jsonlogic-rs's parse checks of a rule: an operation's own arguments (their being
/// an array, their count) and, for an eager operator, each argument that is an operation.
fn check_shallow(rule: &Value) -> Result<(), FilterError> {
    let Value::Object(map) = rule else {
        return Ok(());
    };
    let Some((key, args)) = map.iter().next().filter(|_| map.len() == 1) else {
        return Ok(());
    };
    let Some(op) = Op::from_key(key) else {
        return Ok(());
    };
    let args = operation_args(op, args)?;
    let lazy = matches!(
        op,
        Op::If
            | Op::Ternary
            | Op::Or
            | Op::And
            | Op::Map
            | Op::Filter
            | Op::Reduce
            | Op::All
            | Op::Some
            | Op::None
    );
    if lazy {
        return Ok(());
    }
    args.into_iter().try_for_each(check_shallow)
}

fn compile_all(args: &[&Value], mode: Mode) -> Result<Vec<Node>, FilterError> {
    args.iter().map(|arg| compile(arg, mode)).collect()
}

/// Compiles the arguments of an operator that always evaluates its first argument and the
/// others only on demand (`if`, `or`, `and`, the literal items of `all`/`some`/`none`).
fn compile_first_eager(args: &[&Value], mode: Mode) -> Result<Vec<Node>, FilterError> {
    args.iter()
        .enumerate()
        .map(|(i, arg)| {
            if i == 0 {
                compile(arg, mode)
            } else {
                compile_lazy(arg, mode)
            }
        })
        .collect()
}

/// Compiles one operation (jsonlogic-rs's `op_from_map` plus the operator's own parsing).
/// An operation's arguments, checked for shape and count as jsonlogic-rs's parser does:
/// a non-array argument is a single argument, for operators that can take one.
fn operation_args(op: Op, args: &Value) -> Result<Vec<&Value>, FilterError> {
    let arity = op.arity();
    let args: Vec<&Value> = match args {
        Value::Array(args) => args.iter().collect(),
        other if arity.accepts_unary() => vec![other],
        _ => {
            return Err(FilterError::InvalidArguments {
                operator: op.symbol().to_owned(),
                reason: "arguments to non-unary operations must be arrays".to_owned(),
            })
        }
    };
    if !arity.accepts(args.len()) {
        return Err(FilterError::WrongArgumentCount {
            operator: op.symbol().to_owned(),
            expected: arity.to_string(),
            actual: args.len(),
        });
    }
    Ok(args)
}

fn compile_op(op: Op, args: &Value, mode: Mode) -> Result<Node, FilterError> {
    let args = operation_args(op, args)?;
    Ok(match op {
        Op::Var => compile_var(&args, mode)?,
        Op::Missing => Node::Missing(compile_all(&args, mode)?),
        Op::MissingSome => Node::MissingSome(
            Box::new(compile(args[0], mode)?),
            Box::new(compile(args[1], mode)?),
        ),
        Op::If | Op::Ternary => Node::If(compile_first_eager(&args, mode)?),
        Op::Or => Node::Or(compile_first_eager(&args, mode)?),
        Op::And => Node::And(compile_first_eager(&args, mode)?),
        // jsonlogic-rs parses all of `map`/`filter`/`reduce`'s arguments whenever it
        // evaluates the operation, but evaluates the expression only per item.
        Op::Map => Node::Map(
            Box::new(compile(args[0], mode)?),
            Box::new(compile_per_item(args[1], mode)?),
        ),
        Op::Filter => Node::Filter(
            Box::new(compile(args[0], mode)?),
            Box::new(compile_per_item(args[1], mode)?),
        ),
        Op::Reduce => Node::Reduce(Box::new(Reduce {
            items: compile(args[0], mode)?,
            expression: compile_per_item(args[1], mode)?,
            initial: compile(args[2], mode)?,
        })),
        Op::All | Op::Some | Op::None => {
            let kind = match op {
                Op::All => QuantifierKind::All,
                Op::Some => QuantifierKind::Some,
                _ => QuantifierKind::None,
            };
            // jsonlogic-rs parses the predicate only when there are items, and then always
            // the first item; whether there are any is known here unless the items are
            // computed or the literal is `null` or `""`.
            let (items, has_items) = match args[0] {
                Value::Object(_) => (QuantifierItems::Evaluated(compile(args[0], mode)?), false),
                Value::Array(elements) => (
                    QuantifierItems::Elements(compile_first_eager(
                        &elements.iter().collect::<Vec<_>>(),
                        mode,
                    )?),
                    !elements.is_empty(),
                ),
                // Another literal: a non-empty string has items; `null` and `""` have none;
                // anything else fails on evaluation whatever the predicate.
                other => (
                    QuantifierItems::Literal(other.clone()),
                    !matches!(other, Value::Null) && other.as_str() != Some(""),
                ),
            };
            let predicate = if has_items {
                compile(args[1], mode)?
            } else {
                compile_lazy(args[1], mode)?
            };
            Node::Quantifier(Box::new(Quantifier {
                kind,
                items,
                predicate,
            }))
        }
        _ => {
            let mut nodes = compile_all(&args, mode)?;
            match nodes.len() {
                1 => Node::Unary(op, Box::new(nodes.remove(0))),
                2 => {
                    let second = nodes.remove(1);
                    let first = nodes.remove(0);
                    Node::Binary(op, Box::new(first), Box::new(second))
                }
                _ => Node::Nary(op, nodes),
            }
        }
    })
}

fn compile_var(args: &[&Value], mode: Mode) -> Result<Node, FilterError> {
    let Some(key) = args.first() else {
        return Ok(Node::Var(Box::new(Var {
            key: VarKey::Whole,
            default: None,
        })));
    };
    let key = match compile(key, mode)? {
        Node::Literal(value) => VarKey::Static(Key::from_value(&value)),
        node => VarKey::Dynamic(node),
    };
    let default = args.get(1).map(|d| compile(d, mode)).transpose()?;
    Ok(Node::Var(Box::new(Var { key, default })))
}
