//! Driving the console's router in-process: requests with a peer address, a session
//! cookie and the session's CSRF token, against a real control store and real servers.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use tower::ServiceExt;

/// One answer: status, headers, body text.
pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn location(&self) -> String {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

/// A browser-like client of the router: it keeps the session cookie and the last CSRF
/// token it saw on a page.
#[derive(Clone)]
pub struct Client {
    pub app: Router,
    pub peer: SocketAddr,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
    /// Extra headers sent with every request (a proxy's user header, say).
    pub headers: Vec<(String, String)>,
}

impl Client {
    pub fn new(app: Router) -> Self {
        Self {
            app,
            peer: "127.0.0.1:40000".parse().unwrap(),
            cookie: None,
            csrf: None,
            headers: Vec::new(),
        }
    }

    pub async fn send(&mut self, req: Request<Body>) -> Answer {
        let mut req = req;
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let h = req.headers_mut();
        h.insert(header::HOST, "console.test".parse().unwrap());
        if let Some(c) = &self.cookie {
            h.insert(header::COOKIE, c.parse().unwrap());
        }
        for (k, v) in &self.headers {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let res = self
            .app
            .clone()
            .oneshot(req)
            .await
            .expect("the router answers");
        let status = res.status();
        let headers = res.headers().clone();
        if let Some(set) = headers.get(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap().to_owned();
            self.cookie = if set.contains("Max-Age=0") {
                None
            } else {
                Some(pair)
            };
        }
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(t) = csrf_in(&body) {
            self.csrf = Some(t);
        }
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        let req = Request::builder().uri(path).body(Body::empty()).unwrap();
        self.send(req).await
    }

    /// A form POST as a browser sends it from this console (same origin), with the CSRF
    /// token unless `pairs` names its own.
    pub async fn post(&mut self, path: &str, pairs: &[(&str, &str)]) -> Answer {
        let mut all: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !pairs.iter().any(|(k, _)| *k == "csrf") {
            if let Some(t) = &self.csrf {
                all.push(("csrf".into(), t.clone()));
            }
        }
        self.post_raw(
            path,
            &all,
            &[
                ("origin", "http://console.test"),
                ("sec-fetch-site", "same-origin"),
            ],
        )
        .await
    }

    /// A form POST with exactly these fields and headers.
    pub async fn post_raw(
        &mut self,
        path: &str,
        pairs: &[(String, String)],
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            form.append_pair(k, v);
        }
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Body::from(form.finish())).unwrap())
            .await
    }

    /// Logs in through the login page; returns the answer to the POST.
    pub async fn login(&mut self, name: &str, password: &str) -> Answer {
        let a = self
            .post_raw(
                "/login",
                &[
                    ("name".into(), name.into()),
                    ("password".into(), password.into()),
                    ("next".into(), "/".into()),
                ],
                &[("origin", "http://console.test")],
            )
            .await;
        if a.status == StatusCode::SEE_OTHER {
            // The first page carries the session's token.
            self.get("/").await;
        }
        a
    }
}

/// The CSRF token a page's forms carry.
pub fn csrf_in(body: &str) -> Option<String> {
    let at = body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let end = body[at..].find('"')?;
    Some(body[at..at + end].to_owned())
}

/// The console's users in the tests: name, password, role.
pub const USERS: [(&str, &str, &str); 3] = [
    ("ada", "ada's password", "admin"),
    ("olga", "olga's password", "operator"),
    ("vic", "vic's password", "viewer"),
];

/// A `[console]` section with [`USERS`] listening on `port` (argon2 hashes made once per
/// test process: they are slow in a debug build).
pub fn users_section(port: u16, more: &str) -> String {
    static HASHES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let hashes = HASHES.get_or_init(|| {
        USERS
            .iter()
            .map(|(_, p, _)| concord_recovery_ui::auth::hash_password(p).unwrap())
            .collect()
    });
    let mut s = format!("\n[console]\nlisten = \"127.0.0.1:{port}\"\n{more}\n");
    for ((name, _, role), hash) in USERS.iter().zip(hashes) {
        s.push_str(&format!(
            "\n[[console.users]]\nname = \"{name}\"\npassword_hash = \"{hash}\"\nrole = \"{role}\"\n"
        ));
    }
    s
}

/// The password of test user `name`.
pub fn password(name: &str) -> &'static str {
    USERS.iter().find(|u| u.0 == name).expect("a test user").1
}

/// The console's router for the config in `toml`, in this process, against the same
/// servers and control store as a `concord` process started with it.
pub async fn router(toml: &str) -> Router {
    let config = concord_config::Config::from_toml(toml).expect("a valid config");
    let recovery = concord_recovery::Recovery::connect(&config)
        .await
        .expect("the recovery engine connects");
    let state = concord_recovery_ui::AppState::new(
        std::sync::Arc::new(config),
        std::sync::Arc::new(recovery),
    )
    .expect("a console config");
    concord_recovery_ui::router(state)
}

/// A free port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
