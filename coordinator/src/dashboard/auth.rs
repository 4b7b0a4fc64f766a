//! Who may read the dashboard: anyone who reaches a loopback address; on any other address, only
//! a request with the token (the sweep's, `--token-file` or `SAL_TOKEN`), as a bearer header, or
//! as the cookie the login form sets (HttpOnly, SameSite=Strict; it holds a digest of the token,
//! never the token itself).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use sha2::{Digest, Sha256};

use super::Shared;
use crate::report::grid::html_escape;

/// The cookie the login form sets.
const COOKIE: &str = "sal_dashboard";

/// The dashboard's credentials.
pub struct Auth {
    /// `None`: nothing is asked (a loopback address without a token).
    token: Option<String>,
    /// The cookie's value: a digest of the token.
    session: Option<String>,
    /// Served over TLS: the cookie is `Secure`.
    tls: bool,
}

impl Auth {
    /// Credentials for a dashboard on `loopback` or not; a token is required off loopback.
    pub fn new(token: Option<String>, loopback: bool, tls: bool) -> Result<Self, String> {
        match (token, loopback) {
            (None, false) => Err(
                "a dashboard on a non-loopback address needs a token (--token-file FILE, or SAL_TOKEN): anyone who \
                 reaches the address could read the sweep otherwise"
                    .into(),
            ),
            // On loopback the page opens as printed; whoever reaches it is on this machine.
            (_, true) => Ok(Self { token: None, session: None, tls }),
            (Some(token), false) => {
                let session = hex::encode(Sha256::digest(format!("sal-dashboard-session:{token}").as_bytes()));
                Ok(Self { token: Some(token), session: Some(session), tls })
            }
        }
    }

    fn admits(&self, headers: &HeaderMap) -> bool {
        let (Some(token), Some(session)) = (&self.token, &self.session) else { return true };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| same(given, token));
        let cookie = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).any(|cookies| {
            cookies
                .split(';')
                .filter_map(|c| c.trim().split_once('='))
                .any(|(name, value)| name == COOKIE && same(value, session))
        });
        bearer || cookie
    }
}

/// Compares without stopping at the first difference (no timing oracle on the token).
fn same(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given.bytes().zip(expected.bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

/// Lets a request through, or answers 401: the login form for a page, a JSON error for the API.
pub async fn require(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    // The login form and the embedded assets (no sweep data in them) are open to all.
    if path == "/login" || path.starts_with("/assets/") || shared.auth.admits(request.headers()) {
        return next.run(request).await;
    }
    if path.starts_with("/api/") || path == "/metrics" {
        let body = axum::Json(
            serde_json::json!({ "error": "the dashboard needs its token: log in, or send Authorization: Bearer TOKEN" }),
        );
        return (StatusCode::UNAUTHORIZED, body).into_response();
    }
    (StatusCode::UNAUTHORIZED, login_page("")).into_response()
}

fn login_page(message: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>sal-sweep dashboard: log in</title>\
         <link rel=\"stylesheet\" href=\"/assets/app.css\"></head><body class=\"login\"><form method=\"post\" action=\"/login\">\
         <h1>sal-sweep dashboard</h1><p>This dashboard is on a network address: give the sweep's token \
         (the coordinator's <code>--token-file</code> or <code>SAL_TOKEN</code>).</p>\
         <p class=\"error\">{}</p><input type=\"password\" name=\"token\" autocomplete=\"current-password\" autofocus>\
         <button type=\"submit\">Log in</button></form></body></html>",
        html_escape(message)
    ))
}

#[derive(serde::Deserialize)]
pub struct Login {
    token: String,
}

/// The login form's answer: the session cookie and the dashboard, or the form again.
pub async fn login(State(shared): State<Arc<Shared>>, Form(login): Form<Login>) -> Response {
    let auth = &shared.auth;
    let (Some(token), Some(session)) = (&auth.token, &auth.session) else {
        return Redirect::to("/").into_response();
    };
    if !same(&login.token, token) {
        return (StatusCode::UNAUTHORIZED, login_page("That is not the sweep's token.")).into_response();
    }
    let secure = if auth.tls { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/{secure}");
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

pub async fn login_form() -> Html<String> {
    login_page("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_loopback_a_token_is_required_and_checked_as_a_bearer_or_the_login_cookie() {
        assert!(Auth::new(None, false, false).is_err());
        let open = Auth::new(Some("t".into()), true, false).unwrap();
        assert!(open.admits(&HeaderMap::new()));
        let guarded = Auth::new(Some("secret".into()), false, false).unwrap();
        assert!(!guarded.admits(&HeaderMap::new()));
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer secret"));
        assert!(guarded.admits(&headers));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer secreT"));
        assert!(!guarded.admits(&headers));
        let mut cookie = HeaderMap::new();
        let value = format!("x=1; {COOKIE}={}", guarded.session.as_deref().unwrap());
        cookie.insert(header::COOKIE, HeaderValue::from_str(&value).unwrap());
        assert!(guarded.admits(&cookie));
        // The cookie holds a digest: the token itself does not open the door as a cookie.
        let mut raw = HeaderMap::new();
        raw.insert(header::COOKIE, HeaderValue::from_str(&format!("{COOKIE}=secret")).unwrap());
        assert!(!guarded.admits(&raw));
    }
}
