//! The operator table: every JSON-Logic operator jsonlogic-rs 0.5 knows, with its argument
//! count rule (copied from jsonlogic-rs's `op/mod.rs` maps).

use std::fmt;

/// How many arguments an operator takes (jsonlogic-rs's `NumParams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arity {
    /// Any number, including none.
    Any,
    /// Exactly one.
    Unary,
    /// Exactly this many.
    Exactly(usize),
    /// This many or more.
    AtLeast(usize),
    /// From `.0` to `.1`, both inclusive.
    Between(usize, usize),
}

impl Arity {
    /// Whether `len` arguments are allowed.
    pub(crate) fn accepts(self, len: usize) -> bool {
        match self {
            Arity::Any => true,
            Arity::Unary => len == 1,
            Arity::Exactly(n) => len == n,
            Arity::AtLeast(n) => len >= n,
            Arity::Between(lo, hi) => (lo..=hi).contains(&len),
        }
    }

    /// Whether a non-array argument is taken as a one-element argument list
    /// (jsonlogic-rs's `can_accept_unary`, quirks included).
    pub(crate) fn accepts_unary(self) -> bool {
        match self {
            Arity::Any | Arity::Unary => true,
            Arity::AtLeast(n) => n >= 1,
            Arity::Exactly(n) => n == 1,
            Arity::Between(lo, hi) => (lo..=hi).contains(&1),
        }
    }
}

impl fmt::Display for Arity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arity::Any => f.write_str("any number"),
            Arity::Unary => f.write_str("exactly 1"),
            Arity::Exactly(n) => write!(f, "exactly {n}"),
            Arity::AtLeast(n) => write!(f, "at least {n}"),
            Arity::Between(lo, hi) => write!(f, "{lo} to {hi}"),
        }
    }
}

/// A known operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    // Eager operators: all arguments are evaluated, then the operator runs.
    Eq,
    Ne,
    StrictEq,
    StrictNe,
    Not,
    NotNot,
    Lt,
    Lte,
    Gt,
    Gte,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Max,
    Min,
    Merge,
    In,
    Cat,
    Substr,
    Log,
    // Data operators: eager arguments, plus access to the data.
    Var,
    Missing,
    MissingSome,
    // Lazy operators: they decide which arguments to evaluate, and how.
    If,
    Ternary,
    Or,
    And,
    Map,
    Filter,
    Reduce,
    All,
    Some,
    None,
}

impl Op {
    /// Every operator, for tests and docs.
    #[cfg(test)]
    pub(crate) const ALL: [Op; 35] = [
        Op::Eq,
        Op::Ne,
        Op::StrictEq,
        Op::StrictNe,
        Op::Not,
        Op::NotNot,
        Op::Lt,
        Op::Lte,
        Op::Gt,
        Op::Gte,
        Op::Add,
        Op::Sub,
        Op::Mul,
        Op::Div,
        Op::Mod,
        Op::Max,
        Op::Min,
        Op::Merge,
        Op::In,
        Op::Cat,
        Op::Substr,
        Op::Log,
        Op::Var,
        Op::Missing,
        Op::MissingSome,
        Op::If,
        Op::Ternary,
        Op::Or,
        Op::And,
        Op::Map,
        Op::Filter,
        Op::Reduce,
        Op::All,
        Op::Some,
        Op::None,
    ];

    /// The operator named `key`, if any.
    pub(crate) fn from_key(key: &str) -> Option<Op> {
        Some(match key {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "===" => Op::StrictEq,
            "!==" => Op::StrictNe,
            "!" => Op::Not,
            "!!" => Op::NotNot,
            "<" => Op::Lt,
            "<=" => Op::Lte,
            ">" => Op::Gt,
            ">=" => Op::Gte,
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "max" => Op::Max,
            "min" => Op::Min,
            "merge" => Op::Merge,
            "in" => Op::In,
            "cat" => Op::Cat,
            "substr" => Op::Substr,
            "log" => Op::Log,
            "var" => Op::Var,
            "missing" => Op::Missing,
            "missing_some" => Op::MissingSome,
            "if" => Op::If,
            "?:" => Op::Ternary,
            "or" => Op::Or,
            "and" => Op::And,
            "map" => Op::Map,
            "filter" => Op::Filter,
            "reduce" => Op::Reduce,
            "all" => Op::All,
            "some" => Op::Some,
            "none" => Op::None,
            _ => return None,
        })
    }

    /// The operator's JSON-Logic name.
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::StrictEq => "===",
            Op::StrictNe => "!==",
            Op::Not => "!",
            Op::NotNot => "!!",
            Op::Lt => "<",
            Op::Lte => "<=",
            Op::Gt => ">",
            Op::Gte => ">=",
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::Mod => "%",
            Op::Max => "max",
            Op::Min => "min",
            Op::Merge => "merge",
            Op::In => "in",
            Op::Cat => "cat",
            Op::Substr => "substr",
            Op::Log => "log",
            Op::Var => "var",
            Op::Missing => "missing",
            Op::MissingSome => "missing_some",
            Op::If => "if",
            Op::Ternary => "?:",
            Op::Or => "or",
            Op::And => "and",
            Op::Map => "map",
            Op::Filter => "filter",
            Op::Reduce => "reduce",
            Op::All => "all",
            Op::Some => "some",
            Op::None => "none",
        }
    }

    /// The argument count rule, as in jsonlogic-rs.
    pub(crate) fn arity(self) -> Arity {
        match self {
            Op::Eq | Op::Ne | Op::StrictEq | Op::StrictNe => Arity::Exactly(2),
            Op::Not | Op::NotNot | Op::Log => Arity::Unary,
            Op::Lt | Op::Lte | Op::Gt | Op::Gte | Op::Substr => Arity::Between(2, 3),
            Op::Add | Op::Merge | Op::Cat | Op::Missing | Op::If | Op::Ternary => Arity::Any,
            Op::Sub => Arity::Between(1, 2),
            Op::Mul | Op::Max | Op::Min | Op::Or | Op::And => Arity::AtLeast(1),
            Op::Div | Op::Mod | Op::In | Op::MissingSome => Arity::Exactly(2),
            Op::Var => Arity::Between(0, 2),
            Op::Map | Op::Filter | Op::All | Op::Some | Op::None => Arity::Exactly(2),
            Op::Reduce => Arity::Exactly(3),
        }
    }
}
