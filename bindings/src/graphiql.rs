//! The GraphiQL page at `GET /`, with its scripts and styles served by the node itself
//! (vendored in `bindings/assets/`), so it works with no internet.
//!
//! `/?query=…` opens the page with that query; `&run` also runs it once the page has
//! loaded (used by the headless-browser test, handy for links).

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;

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
  const fetcher = GraphiQL.createFetcher({ url: location.origin + "/graphql" });
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

fn asset(content_type: &'static str, body: &'static [u8]) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
}

/// `GET /` and the page's assets.
pub(crate) fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/assets/graphiql.min.js",
            get(|| async {
                asset(
                    "text/javascript",
                    include_bytes!("../assets/graphiql.min.js"),
                )
            }),
        )
        .route(
            "/assets/graphiql.min.css",
            get(|| async { asset("text/css", include_bytes!("../assets/graphiql.min.css")) }),
        )
        .route(
            "/assets/react.production.min.js",
            get(|| async {
                asset(
                    "text/javascript",
                    include_bytes!("../assets/react.production.min.js"),
                )
            }),
        )
        .route(
            "/assets/react-dom.production.min.js",
            get(|| async {
                asset(
                    "text/javascript",
                    include_bytes!("../assets/react-dom.production.min.js"),
                )
            }),
        )
}
