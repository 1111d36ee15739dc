//! The guard every request passes: it finds the user (or sends them to the login page),
//! and for anything but GET it checks that the form came from this console — the
//! browser's `Sec-Fetch-Site`/`Origin` say same-origin, and the body carries the session's
//! CSRF token — before any handler runs. It also sets the headers every answer carries
//! (no framing, no sniffing, a content policy allowing only this console's own files).

use crate::auth::{identify, User};
use crate::error::PageError;
use crate::AppState;
use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use std::net::SocketAddr;

/// The largest form accepted (a bulk selection of a page's ids is far below it).
const MAX_FORM: usize = 1 << 20;

pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut response = match check(&state, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    let h = response.headers_mut();
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The request, with the user in its extensions, or why it goes no further.
async fn check(state: &AppState, req: Request) -> Result<Request, Response> {
    let path = req.uri().path();
    if path.starts_with("/static/") || path == "/login" {
        return Ok(req);
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let user = identify(state, req.headers(), peer)
        .await
        .map_err(IntoResponse::into_response)?;
    let Some(user) = user else {
        return Err(if req.method() == Method::GET {
            let here = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let next: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("next", here)
                .finish();
            Redirect::to(&format!("/login?{next}")).into_response()
        } else {
            PageError::Unauthorized("log in first: this session has ended".into()).into_response()
        });
    };
    let req = if matches!(*req.method(), Method::GET | Method::HEAD) {
        req
    } else {
        same_origin(state, req.headers()).map_err(IntoResponse::into_response)?;
        with_token_checked(req, &user).await?
    };
    let mut req = req;
    req.extensions_mut().insert(user);
    Ok(req)
}

/// Reads the form, checks its `csrf` field against the user's, and puts the body back.
async fn with_token_checked(req: Request, user: &User) -> Result<Request, Response> {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, MAX_FORM).await.map_err(|_| {
        PageError::BadRequest(format!("the form is larger than {MAX_FORM} bytes")).into_response()
    })?;
    let token = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned());
    match token {
        None => {
            return Err(PageError::Forbidden(
                "the form carries no CSRF token; reload the page and send it again".into(),
            )
            .into_response())
        }
        Some(t) if !same_secret(&t, &user.csrf) => {
            return Err(PageError::Forbidden(
                "the form's CSRF token is not this session's; reload the page and send it again"
                    .into(),
            )
            .into_response())
        }
        Some(_) => {}
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Compares two tokens in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Refuses a form a browser says came from another site: `Sec-Fetch-Site` other than
/// `same-origin`, or an `Origin` that is neither this console's (the `Host` it was asked
/// at) nor one of `console.allowed_origins`.
pub fn same_origin(state: &AppState, headers: &HeaderMap) -> Result<(), PageError> {
    if let Some(site) = headers.get("sec-fetch-site") {
        if site.as_bytes() != b"same-origin" {
            return Err(PageError::Forbidden(format!(
                "the form was sent from another site (Sec-Fetch-Site: {})",
                String::from_utf8_lossy(site.as_bytes())
            )));
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
    let allowed = state
        .console()
        .allowed_origins
        .iter()
        .any(|o| o.trim_end_matches('/') == origin);
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let own = origin
        .parse::<Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.as_str().to_owned()))
        .is_some_and(|authority| !host.is_empty() && authority.eq_ignore_ascii_case(host));
    if own || allowed {
        Ok(())
    } else {
        Err(PageError::Forbidden(format!(
            "the form was sent from another site (Origin: {origin}); add it to \
             console.allowed_origins if it is this console behind another name"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_secret("abcd", "abcd"));
        assert!(!same_secret("abcd", "abce"));
        assert!(!same_secret("abc", "abcd"));
    }
}
