//! Bounds what a GraphQL request may cost before async-graphql validates it: the size of
//! the query text, the number of fragments, and the number of selections once fragment
//! spreads are expanded (counted with one memoized cost per fragment, so the check is
//! linear in the text however the spreads fan out). Integer literals beyond 64 bits in the
//! query text are refused here too, before the parser rounds them.
//!
//! async-graphql's own depth and complexity checks expand every spread on every path, so
//! a document whose fragments each spread the next one twice costs 2ⁿ before those limits
//! refuse it. This guard runs first (an extension's `prepare_request`, for HTTP and
//! websocket requests alike) and refuses such documents after one pass over the text.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest,
};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Request, ServerError, ServerResult};

/// The longest query text accepted, in bytes.
pub(crate) const MAX_QUERY_BYTES: usize = 64 * 1024;
/// The most fragment definitions in one document.
pub(crate) const MAX_FRAGMENTS: usize = 256;
/// The most selections (fields, spreads and inline fragments) once every spread is
/// expanded: well above what the complexity limit lets through, far below what costs.
pub(crate) const MAX_EXPANDED_SELECTIONS: usize = 20_000;

/// The key of a request extension that refuses the request with its message (set by the
/// websocket reader when a frame's text is refused before parsing; see `graphql/transport.rs`).
pub(crate) const REFUSED: &str = "hyphaRefused";

/// The most documents the guard remembers, and the longest query text it remembers one for.
const CACHED_DOCUMENTS: usize = 512;
const CACHED_QUERY_BYTES: usize = 4 * 1024;

/// The extension that installs the guard on a schema. It also remembers the documents
/// that passed it, by query text: a client repeating a query (the usual case) has it
/// neither parsed nor checked again, which was a fifth of a small read's time.
#[derive(Debug, Clone, Default)]
pub(crate) struct QueryGuard {
    documents: Arc<Mutex<HashMap<String, ExecutableDocument>>>,
}

impl ExtensionFactory for QueryGuard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for QueryGuard {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Some(async_graphql::Value::String(why)) = request.extensions.get(REFUSED) {
            return Err(refuse(why.clone()));
        }
        let remembered = self.lock().get(&request.query).cloned();
        match remembered {
            Some(document) => request.set_parsed_query(document),
            None => {
                check(&mut request)?;
                if request.query.len() <= CACHED_QUERY_BYTES {
                    let document = request.parsed_query()?.clone();
                    let mut documents = self.lock();
                    if documents.len() >= CACHED_DOCUMENTS {
                        // Emptied when full: a client sending ever new queries costs what
                        // it would without the memory.
                        documents.clear();
                    }
                    documents.insert(request.query.clone(), document);
                }
            }
        }
        next.run(ctx, request).await
    }
}

impl QueryGuard {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ExecutableDocument>> {
        self.documents.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn refuse(message: impl Into<String>) -> ServerError {
    ServerError::new(message, None)
}

/// Every check of the query text, in order of cost; the document is parsed once
/// (async-graphql keeps it).
fn check(request: &mut Request) -> ServerResult<()> {
    if request.query.len() > MAX_QUERY_BYTES {
        return Err(refuse(format!(
            "the query is {} bytes, over the limit of {MAX_QUERY_BYTES}",
            request.query.len()
        )));
    }
    check_graphql_integers(&request.query)?;
    let document = request.parsed_query()?;
    if document.fragments.len() > MAX_FRAGMENTS {
        return Err(refuse(format!(
            "the query defines {} fragments, over the limit of {MAX_FRAGMENTS}",
            document.fragments.len()
        )));
    }
    let expanded = expanded_selections(document)?;
    if expanded > MAX_EXPANDED_SELECTIONS {
        return Err(refuse(format!(
            "the query is too complex: over {MAX_EXPANDED_SELECTIONS} selections once its fragments are expanded"
        )));
    }
    Ok(())
}

/// What the memo knows of a fragment.
#[derive(Clone, Copy)]
enum Cost {
    /// Being counted (met again: a cycle).
    Counting,
    /// Its selections, expanded.
    Counted(usize),
}

/// The selections of every operation once spreads are expanded, saturating at a little
/// past the limit. Each fragment is counted once.
fn expanded_selections(document: &ExecutableDocument) -> ServerResult<usize> {
    let mut memo: HashMap<&str, Cost> = HashMap::new();
    let mut total = 0usize;
    for (_, operation) in document.operations.iter() {
        let cost = count(&operation.node.selection_set.node, document, &mut memo)?;
        total = total.saturating_add(cost);
    }
    Ok(total)
}

fn count<'a>(
    set: &'a SelectionSet,
    document: &'a ExecutableDocument,
    memo: &mut HashMap<&'a str, Cost>,
) -> ServerResult<usize> {
    let mut total = 0usize;
    for selection in &set.items {
        let cost = match &selection.node {
            Selection::Field(field) => count(&field.node.selection_set.node, document, memo)?,
            Selection::InlineFragment(inline) => {
                count(&inline.node.selection_set.node, document, memo)?
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                match memo.get(name) {
                    Some(Cost::Counted(cost)) => *cost,
                    Some(Cost::Counting) => {
                        return Err(refuse(format!("fragment {name} spreads itself")))
                    }
                    None => match document.fragments.get(name) {
                        // An unknown fragment is validation's to report.
                        None => 0,
                        Some(fragment) => {
                            memo.insert(name, Cost::Counting);
                            let cost = count(&fragment.node.selection_set.node, document, memo)?;
                            memo.insert(name, Cost::Counted(cost));
                            cost
                        }
                    },
                }
            }
        };
        total = total.saturating_add(1).saturating_add(cost);
        if total > MAX_EXPANDED_SELECTIONS {
            // Past the limit the exact figure does not matter; stop counting.
            return Ok(total);
        }
    }
    Ok(total)
}

/// Refuses an integer literal in GraphQL text that neither i64 nor u64 holds (strings,
/// block strings and comments skipped; digits inside names are not numbers). The parser
/// holds the rest exactly, and a value above i64 is refused where it is read.
fn check_graphql_integers(text: &str) -> ServerResult<()> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 3;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < bytes.len()
                    && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                hypha_primitives::check_integer_literals(&text[start..i])
                    .map_err(|e| refuse(e.to_string()))?;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fragments F0…F(n−1), each spreading the next twice; the last selects `__typename`.
    pub(crate) fn fan_out(levels: usize) -> String {
        let mut text = String::from("query { ...F0 }\n");
        for level in 0..levels {
            let body = if level + 1 == levels {
                "__typename".to_owned()
            } else {
                format!("...F{next} ...F{next}", next = level + 1)
            };
            text.push_str(&format!("fragment F{level} on Query {{ {body} }}\n"));
        }
        text
    }

    /// A schema with one field, `echo(n: Int): Int`, behind `guard`.
    fn echo_schema(guard: QueryGuard) -> async_graphql::dynamic::Schema {
        use async_graphql::dynamic::{Field, FieldFuture, FieldValue, InputValue, Object, TypeRef};
        let query = Object::new("Query").field(
            Field::new("echo", TypeRef::named(TypeRef::INT), |ctx| {
                FieldFuture::new(async move {
                    let n = ctx.args.try_get("n")?.i64()?;
                    Ok(Some(FieldValue::value(n)))
                })
            })
            .argument(InputValue::new("n", TypeRef::named_nn(TypeRef::INT))),
        );
        async_graphql::dynamic::Schema::build("Query", None, None)
            .register(query)
            .extension(guard)
            .finish()
            .unwrap()
    }

    #[tokio::test]
    async fn a_repeated_query_is_remembered_and_a_refused_one_is_not() {
        let guard = QueryGuard::default();
        let schema = echo_schema(guard.clone());
        let text = "query($n: Int!) { echo(n: $n) }";
        for n in [1, 2, 3] {
            let request = Request::new(text).variables(async_graphql::Variables::from_json(
                serde_json::json!({"n": n}),
            ));
            let answer = schema.execute(request).await.into_result().unwrap();
            assert_eq!(
                answer.data.into_json().unwrap(),
                serde_json::json!({"echo": n})
            );
        }
        assert_eq!(guard.lock().len(), 1, "one document, parsed once");
        // Refused every time, and never remembered.
        for _ in 0..2 {
            let answer = schema.execute(Request::new(fan_out(24))).await;
            assert!(
                answer.errors[0].message.contains("too complex"),
                "{:?}",
                answer.errors
            );
        }
        assert_eq!(guard.lock().len(), 1);
        // A remembered document is still validated against the schema on every request.
        let wrong = "query { echo(n: 1) missing }";
        for _ in 0..2 {
            let answer = schema.execute(Request::new(wrong)).await;
            assert!(
                !answer.errors.is_empty(),
                "unknown field refused every time"
            );
        }
    }

    #[test]
    fn fan_out_is_refused_after_one_pass() {
        let started = std::time::Instant::now();
        let err = check(&mut Request::new(fan_out(24))).unwrap_err();
        assert!(err.message.contains("too complex"), "{}", err.message);
        assert!(started.elapsed() < std::time::Duration::from_millis(50));
        // Ten levels expand to about 2,000 selections: allowed here.
        assert!(check(&mut Request::new(fan_out(10))).is_ok());
    }

    #[test]
    fn cycles_size_and_fragment_count_are_refused() {
        let cycle = "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
        let err = check(&mut Request::new(cycle)).unwrap_err();
        assert!(err.message.contains("spreads itself"), "{}", err.message);

        let long = format!("query {{ {} }}", "__typename ".repeat(MAX_QUERY_BYTES / 10));
        let err = check(&mut Request::new(long)).unwrap_err();
        assert!(
            err.message.contains("bytes, over the limit"),
            "{}",
            err.message
        );

        let mut many = String::from("query { __typename }\n");
        for n in 0..=MAX_FRAGMENTS {
            many.push_str(&format!("fragment G{n} on Query {{ __typename }}\n"));
        }
        let err = check(&mut Request::new(many)).unwrap_err();
        assert!(
            err.message.contains("fragments, over the limit"),
            "{}",
            err.message
        );
    }

    #[test]
    fn integer_literals_beyond_64_bits_are_refused_in_the_query_text() {
        let refused = [
            r#"mutation { write(pointers: [{local_context: "n", target: {value: 18446744073709551616}}]) { id } }"#,
            "query { a(n: -9223372036854775809) }",
            "query { a(n: 99999999999999999999999) }",
        ];
        for text in refused {
            let err = check_graphql_integers(text).unwrap_err();
            assert!(
                err.message.contains("out of range"),
                "{text}: {}",
                err.message
            );
        }
        let accepted = [
            "query { a(n: 9223372036854775807, m: -9223372036854775808, f: 1.8e19) }",
            // Held exactly as u64 by the parser; a value above i64 is refused when read.
            "query { a(n: 18446744073709551615) }",
            r#"query { a(s: "18446744073709551616") }"#,
            "query { a(s: \"\"\"\n 18446744073709551616 \\\"\"\" \"\"\") }",
            "# 18446744073709551616\nquery { field18446744073709551616 }",
        ];
        for text in accepted {
            assert!(check_graphql_integers(text).is_ok(), "{text}");
        }
    }
}
