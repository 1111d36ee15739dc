//! Who a request comes from, and logging in and out.
//!
//! `auth = "users"`: a login page checks the name and password against the argon2 hashes
//! of `[[console.users]]`; a good login creates a session in the control store (so every
//! console replica knows it) and sets a cookie holding its random token — HttpOnly,
//! SameSite=Strict, Secure behind TLS. Only the token's SHA-256 is stored. A session
//! unused for `console.idle_timeout` ends.
//!
//! `auth = "header"`: a trusted reverse proxy names the user (and maybe their groups) in
//! headers; those are believed only from `console.header.trusted_proxies`. Such a user's
//! CSRF token lives in a session row keyed by the user's name, created on first sight.

use crate::error::PageError;
use crate::view::Nav;
use crate::AppState;
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::header::{HeaderMap, HeaderValue, SET_COOKIE};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use concord_config::{ConsoleAuth, ConsoleRole, CookieSecure};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::Duration;

/// The session cookie's name.
pub const COOKIE: &str = "concord_session";

/// A known user, as every handler after the guard sees them.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub role: ConsoleRole,
    /// The token every form of this user's session carries.
    pub csrf: String,
    /// The digest of the session's token (users mode), to end it at logout.
    session: Option<String>,
}

impl User {
    /// Refuses (403) a user whose role is below `role`, naming what they tried.
    pub fn require(&self, role: ConsoleRole, what: &str) -> Result<(), PageError> {
        if self.role >= role {
            return Ok(());
        }
        Err(PageError::Forbidden(format!(
            "{} is a {} and may not {what}: that needs the {} role",
            self.name,
            self.role.as_str(),
            role.as_str()
        )))
    }

    pub fn nav(&self, active: &'static str) -> Nav {
        Nav {
            user: self.name.clone(),
            role: self.role.as_str(),
            csrf: self.csrf.clone(),
            active,
        }
    }
}

/// Hex SHA-256 of `text`.
fn digest(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 32 random bytes as hex (the OS-seeded CSPRNG behind `rand::rng`).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who sent this request: `Ok(None)` when nobody is logged in (users mode).
pub async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<Option<User>, PageError> {
    match state.console().auth {
        ConsoleAuth::Users => from_session(state, headers).await,
        ConsoleAuth::Header => from_proxy(state, headers, peer).await.map(Some),
    }
}

/// Sessions seen within this long are not written again on each request.
const TOUCH_EVERY_MS: i64 = 30_000;

async fn from_session(state: &AppState, headers: &HeaderMap) -> Result<Option<User>, PageError> {
    let jar = CookieJar::from_headers(headers);
    let Some(token) = jar.get(COOKIE).map(|c| c.value().to_owned()) else {
        return Ok(None);
    };
    let hash = digest(&token);
    let store = state.store();
    let Some(session) = store.session(&hash).await? else {
        return Ok(None);
    };
    let now = now_ms();
    let idle = state.console().idle_timeout.as_millis() as i64;
    if now - session.seen_ms > idle {
        store.end_session(&hash).await?;
        return Ok(None);
    }
    // A user removed from the config, or given another role, is known by the config now.
    let Some(configured) = state
        .console()
        .users
        .iter()
        .find(|u| u.name == session.user)
    else {
        store.end_session(&hash).await?;
        return Ok(None);
    };
    if now - session.seen_ms > TOUCH_EVERY_MS {
        store.touch_session(&hash).await?;
    }
    Ok(Some(User {
        name: session.user,
        role: configured.role,
        csrf: session.csrf,
        session: Some(hash),
    }))
}

async fn from_proxy(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<User, PageError> {
    let h = &state.console().header;
    let trusted = peer.is_some_and(|p| state.0.proxies.iter().any(|n| n.contains(&p.ip())));
    if !trusted {
        return Err(PageError::Forbidden(format!(
            "requests must come through the trusted proxy (console.header.trusted_proxies); \
             this one came from {}",
            peer.map(|p| p.ip().to_string())
                .unwrap_or_else(|| "an unknown address".into())
        )));
    }
    let name = header_text(headers, &h.user_header)
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            PageError::Unauthorized(format!(
                "the proxy did not name a user in {}",
                h.user_header
            ))
        })?;
    let groups: Vec<String> = h
        .groups_header
        .as_deref()
        .and_then(|g| header_text(headers, g))
        .map(|g| g.split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default();
    let role = std::iter::once(&name)
        .chain(groups.iter())
        .filter_map(|n| h.roles.get(n).copied())
        .max()
        .or(h.default_role)
        .ok_or_else(|| {
            PageError::Forbidden(format!(
                "{name} has no console role (console.header.roles names neither the user nor \
                 any of their groups, and there is no default_role)"
            ))
        })?;
    let key = digest(&format!("header\0{name}"));
    let store = state.store();
    let csrf = match store.session(&key).await? {
        Some(s) => s.csrf,
        None => {
            let csrf = random_token();
            // Another replica may have created it first: then its token is the one.
            if store
                .create_session(&key, &name, role.as_str(), &csrf)
                .await
                .is_err()
            {
                store
                    .session(&key)
                    .await?
                    .map(|s| s.csrf)
                    .ok_or_else(|| PageError::Unauthorized("no session could be kept".into()))?
            } else {
                csrf
            }
        }
    };
    Ok(User {
        name,
        role,
        csrf,
        session: None,
    })
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    next: String,
    name: String,
    problem: Option<String>,
}

#[derive(Deserialize)]
pub struct Next {
    #[serde(default)]
    next: Option<String>,
}

/// Where to go after logging in: a path on this console, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

pub async fn login_page(
    State(state): State<AppState>,
    Query(q): Query<Next>,
) -> Result<Response, PageError> {
    if state.console().auth == ConsoleAuth::Header {
        return Ok(Redirect::to("/").into_response());
    }
    let page = LoginPage {
        next: safe_next(q.next.as_deref()),
        name: String::new(),
        problem: None,
    };
    Ok(Html(page.render()?).into_response())
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
}

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    if state.console().auth == ConsoleAuth::Header {
        return Err(PageError::BadRequest(
            "this console is behind a login proxy (console.auth = \"header\")".into(),
        ));
    }
    crate::guard::same_origin(&state, &headers)?;
    let addr = peer.ip();
    let next = safe_next(form.next.as_deref());
    if let Some(wait) = state.0.limiter.wait(&form.name, addr) {
        tracing::warn!(user = %form.name, %addr, "console login refused: too many failures");
        return Err(PageError::TooManyRequests(format!(
            "too many failed logins for this name from this address; try again in {}",
            humantime::format_duration(Duration::from_secs(wait.as_secs() + 1))
        )));
    }
    let user = state
        .console()
        .users
        .iter()
        .find(|u| u.name == form.name)
        .cloned();
    // An unknown name costs the same argon2 work as a wrong password.
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| DUMMY_HASH.to_owned());
    let password = form.password.clone();
    let good = tokio::task::spawn_blocking(move || verify(&hash, &password))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| good) else {
        state.0.limiter.failed(&form.name, addr);
        tracing::warn!(user = %form.name, %addr, "console login failed: wrong name or password");
        let page = LoginPage {
            next,
            name: form.name,
            problem: Some("wrong name or password".into()),
        };
        return Ok((axum::http::StatusCode::UNAUTHORIZED, Html(page.render()?)).into_response());
    };
    state.0.limiter.succeeded(&user.name, addr);
    let token = random_token();
    state
        .store()
        .create_session(
            &digest(&token),
            &user.name,
            user.role.as_str(),
            &random_token(),
        )
        .await?;
    tracing::info!(user = %user.name, %addr, role = user.role.as_str(), "console login");
    let cookie = session_cookie(&state, &headers, token);
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().append(SET_COOKIE, cookie);
    Ok(response)
}

/// A well-formed argon2id hash no password is known for, checked for unknown names.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$YWJjZGVmZ2hpamtsbW5vcA$8KzjEwHLJ7/RBEN1Sx+tyH3ZgG2vB8O5ROj0FQ0kKYQ";

fn verify(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

fn session_cookie(state: &AppState, headers: &HeaderMap, token: String) -> HeaderValue {
    let secure = match state.console().cookie_secure {
        CookieSecure::Always => true,
        CookieSecure::Never => false,
        CookieSecure::Auto => headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https")),
    };
    let cookie = Cookie::build((COOKIE, token))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("a hex token makes a valid header")
}

pub async fn logout(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Response, PageError> {
    if let Some(hash) = &user.session {
        state.store().end_session(hash).await?;
    }
    tracing::info!(user = %user.name, "console logout");
    let mut gone = Cookie::build((COOKIE, ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .build();
    gone.make_removal();
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        SET_COOKIE,
        HeaderValue::from_str(&gone.to_string()).expect("a valid header"),
    );
    Ok(response)
}

/// `concord console hash-password`: the argon2id PHC string of `password` (a fresh salt).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&h, "correct horse"));
        assert!(!verify(&h, "correct horsE"));
        assert!(
            !verify(DUMMY_HASH, ""),
            "the dummy hash parses and matches nothing"
        );
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[test]
    fn next_stays_on_this_console() {
        assert_eq!(
            safe_next(Some("/mismatches?state=detected")),
            "/mismatches?state=detected"
        );
        assert_eq!(safe_next(Some("//evil.example/x")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
