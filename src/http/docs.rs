//! The interactive API reference at `/docs`: RapiDoc (vendored unchanged from its npm package
//! into `static/vendor/rapidoc/`, embedded in the binary, served at `/static/rapidoc-min.js`)
//! renders this server's own `/openapi.json`. Nothing is fetched from anywhere else: the page's
//! Content-Security-Policy allows scripts, fonts and requests only from walleti itself.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

const RAPIDOC: &str = include_str!("../../static/vendor/rapidoc/rapidoc-min.js");

/// The page's own policy, stricter than the default one: scripts only from walleti (no inline
/// script, no eval), requests only to walleti (the spec and "try it"), no plugins, no forms
/// posting elsewhere. Inline styles are allowed because RapiDoc's web components set `style`
/// attributes and their own style elements; a style cannot run code.
pub const DOCS_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const DOCS_PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>API reference · walleti</title>
<script type="module" src="/static/rapidoc-min.js"></script>
</head>
<body>
<rapi-doc spec-url="/openapi.json" render-style="read" theme="light" primary-color="#14213d"
  regular-font="system-ui, sans-serif" mono-font="ui-monospace, monospace"
  show-header="false" allow-server-selection="false" allow-authentication="true"
  allow-spec-url-load="false" allow-spec-file-load="false" schema-description-expanded="true">
  <div slot="overview">
    <p>Amounts are integer minor units with a lowercase ISO 4217 <code>currency</code>;
    money-moving POSTs need an <code>Idempotency-Key</code>; errors are
    <code>{"error": {"type", "code", "message", "param"}}</code>. The raw document is at
    <a href="/openapi.json">/openapi.json</a>; the web apps are at <a href="/app">/app</a>
    and <a href="/merchant">/merchant</a>.</p>
  </div>
</rapi-doc>
<noscript><p>The interactive reference needs JavaScript; the document itself is at
<a href="/openapi.json">/openapi.json</a>.</p></noscript>
</body>
</html>
"##;

/// `/docs` and the viewer's script.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/docs", web::get().to(docs_page))
        .route("/static/rapidoc-min.js", web::get().to(rapidoc));
}

async fn docs_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", DOCS_CONTENT_SECURITY_POLICY))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(DOCS_PAGE)
}

async fn rapidoc() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(RAPIDOC)
}
