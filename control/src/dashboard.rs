//! The web dashboard, served at `/` for tenant members.
//!
//! Plain HTML, CSS and a few ES modules (`control/dashboard/`: `app.js`
//! imports `core.js` and one module per group of pages; typed with JSDoc
//! and checked by `tsc --checkJs --strict`), plus uPlot for charts, all
//! embedded in the binary: nothing is fetched from elsewhere at run time,
//! and the page talks to the same `/v1` API as every client, with the
//! signed-in user's own permissions. No build step: a framework and a
//! bundler would buy little for a handful of views and cost a Node.js
//! toolchain in every build of the control plane.
//!
//! The pages get a Content-Security-Policy of their own (scripts, styles
//! and requests from this origin only; no inline script), set before the
//! API-wide one (`default-src 'none'`) would apply.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use delta_http::ApiError;

use crate::state::AppState;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";

/// (name, content type, bytes) of every asset under `/dashboard/`.
const ASSETS: [(&str, &str, &str); 11] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/app.js"),
    ),
    (
        "core.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/core.js"),
    ),
    (
        "agents.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/agents.js"),
    ),
    (
        "usage.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/usage.js"),
    ),
    (
        "messaging.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/messaging.js"),
    ),
    (
        "team.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/team.js"),
    ),
    (
        "bounties.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/bounties.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../dashboard/style.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/vendor/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("../dashboard/vendor/uPlot.min.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../dashboard/favicon.svg"),
    ),
];

const INDEX: &str = include_str!("../dashboard/index.html");

/// `/` and `/dashboard/{file}`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", INDEX) }),
        )
        .route("/dashboard/{file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .map(|(_, content_type, body)| page(content_type, body))
        .ok_or_else(|| ApiError::not_found("dashboard file"))
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::ASSETS;

    /// Every module a served script imports (`from "./x.js"`) is served too:
    /// a module left out of `ASSETS` would break the page at load.
    #[test]
    fn every_imported_module_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|(name, _, _)| *name).collect();
        let mut imports = 0;
        for (name, _, body) in ASSETS.iter().filter(|(name, _, _)| name.ends_with(".js")) {
            for part in body.split("from \"./").skip(1) {
                let module = part.split('"').next().unwrap_or_default();
                assert!(
                    served.contains(&module),
                    "{name} imports {module}, not served"
                );
                imports += 1;
            }
        }
        assert!(imports >= 5, "app.js imports its page modules");
    }
}
