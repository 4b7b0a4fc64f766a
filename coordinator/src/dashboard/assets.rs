//! The page: one HTML file, its script and style, and uPlot (the one vendored file, for curves),
//! compiled into the binary. No build step and no external URL: it works on an air-gapped
//! cluster. Every response carries a content security policy that allows nothing but this
//! origin, so that no text from a trial (a name, an error) could run as script.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

const INDEX: &str = include_str!("../../assets/dashboard/index.html");

/// `(name, content type, bytes)` of every file under `/assets/`.
const FILES: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8", include_str!("../../assets/dashboard/app.js")),
    ("views.js", "text/javascript; charset=utf-8", include_str!("../../assets/dashboard/views.js")),
    ("app.css", "text/css; charset=utf-8", include_str!("../../assets/dashboard/app.css")),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard/vendor/uPlot.iife.min.js"),
    ),
    ("uPlot.min.css", "text/css; charset=utf-8", include_str!("../../assets/dashboard/vendor/uPlot.min.css")),
];

pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}

pub async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, body)) => ([(header::CONTENT_TYPE, *content_type)], *body).into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// The headers every answer carries: this origin only (no inline script, no frame elsewhere),
/// no content sniffing, no caching of the sweep's data by proxies.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; \
         connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_served_file_names_an_external_url() {
        for (name, _, body) in FILES.iter().copied().chain([("index.html", "", INDEX)]) {
            for scheme in ["http://", "https://", "//cdn", "ws://", "wss://"] {
                assert!(!body.contains(scheme), "{name} names an external URL ({scheme})");
            }
        }
    }
}
