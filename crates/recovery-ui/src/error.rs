//! What a page answers when it cannot do what was asked: a page of its own saying what was
//! wrong, with the right status. Internal errors are logged with their whole cause chain;
//! the page names the failure without leaking anything but its message.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use concord_control::ControlError;
use concord_recovery::RecoveryError;

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("the control store failed")]
    Control(#[from] ControlError),
    #[error("the recovery engine failed")]
    Recovery(#[from] RecoveryError),
    #[error("a page could not be rendered")]
    Render(#[from] askama::Error),
    /// Counting records failed (the cache keeps only the message of the store's error).
    #[error("the control store failed to count records: {0}")]
    Counting(String),
}

impl PageError {
    fn status(&self) -> StatusCode {
        match self {
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            PageError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            PageError::Recovery(RecoveryError::Refused(_)) => StatusCode::BAD_REQUEST,
            PageError::Control(_)
            | PageError::Recovery(_)
            | PageError::Render(_)
            | PageError::Counting(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status.is_server_error() {
            let chain = crate::view::error_chain(&self);
            tracing::error!(error = %chain, "console request failed");
            chain
        } else {
            self.to_string()
        };
        let page = ErrorPage {
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error"),
            message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => (status, format!("{status}: {e}")).into_response(),
        }
    }
}
