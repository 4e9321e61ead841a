//! The GraphiQL page at `GET /`, with its scripts and styles served by the node itself
//! (vendored in `bindings/assets/`), so it works with no internet.
//!
//! `/?query=…` opens the page with that query; `&run` also runs it once the page has
//! loaded (used by the headless-browser test, handy for links). Subscriptions run over the
//! node's websocket (graphql-transport-ws) with a small fetcher written here, so no
//! websocket client library needs vendoring.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Hypha · GraphiQL</title>
<link rel="stylesheet" href="/assets/graphiql.min.css">
<style>body { margin: 0; } #graphiql { height: 100vh; }</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script src="/assets/react.production.min.js"></script>
<script src="/assets/react-dom.production.min.js"></script>
<script src="/assets/graphiql.min.js"></script>
<script>
  const params = new URLSearchParams(location.search);
  const http = GraphiQL.createFetcher({ url: location.origin + "/graphql" });

  // Subscriptions: graphql-transport-ws over the page's own websocket, as an async
  // iterator GraphiQL shows result by result (no graphql-ws client to vendor).
  function subscribe(request) {
    const queue = [];
    let wake = null;
    let finished = false;
    const push = (item) => {
      if (finished) return;
      if (item.done) finished = true;
      if (wake) { const w = wake; wake = null; w(item); } else { queue.push(item); }
    };
    const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/graphql/ws", "graphql-transport-ws");
    ws.onopen = () => ws.send(JSON.stringify({ type: "connection_init" }));
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      switch (message.type) {
        case "connection_ack":
          ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: request }));
          break;
        case "next": push({ value: message.payload, done: false }); break;
        case "error": push({ value: { errors: message.payload }, done: false }); break;
        case "complete": push({ value: undefined, done: true }); break;
        case "ping": ws.send(JSON.stringify({ type: "pong" })); break;
      }
    };
    ws.onerror = () => push({ value: { errors: [{ message: "the websocket to the node failed" }] }, done: false });
    ws.onclose = () => push({ value: undefined, done: true });
    return {
      [Symbol.asyncIterator]() { return this; },
      next() {
        if (queue.length) return Promise.resolve(queue.shift());
        if (finished) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => { wake = resolve; });
      },
      return() {
        finished = true;
        ws.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  // Whether the operation to run is a subscription (comments and strings aside).
  function isSubscription(request) {
    const text = (request.query || "").replace(/#[^\n]*/g, "").replace(/"(?:[^"\\]|\\.)*"/g, '""');
    const operations = [...text.matchAll(/(?:^|[}\s])(query|mutation|subscription)\b\s*([_A-Za-z][_0-9A-Za-z]*)?/g)];
    const chosen = operations.find((m) => request.operationName && m[2] === request.operationName) || operations[0];
    return Boolean(chosen) && chosen[1] === "subscription";
  }

  const fetcher = (request, options) => isSubscription(request) ? subscribe(request) : http(request, options);
  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {
      fetcher,
      defaultQuery: "{ node { id version deltas } schemas }",
      query: params.get("query") || undefined,
    })
  );
  if (params.has("run")) {
    const run = () => {
      const button = document.querySelector(".graphiql-execute-button");
      if (button) { button.click(); } else { setTimeout(run, 100); }
    };
    setTimeout(run, 300);
  }
</script>
</body>
</html>
"#;

/// `GET /`: the page.
pub(crate) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// `GET /assets/{file}`: the page's vendored scripts and styles, cached for a day.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    let (content_type, body): (&str, &'static [u8]) = match file.as_str() {
        "graphiql.min.js" => (
            "text/javascript",
            include_bytes!("../assets/graphiql.min.js"),
        ),
        "graphiql.min.css" => ("text/css", include_bytes!("../assets/graphiql.min.css")),
        "react.production.min.js" => (
            "text/javascript",
            include_bytes!("../assets/react.production.min.js"),
        ),
        "react-dom.production.min.js" => (
            "text/javascript",
            include_bytes!("../assets/react-dom.production.min.js"),
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}
