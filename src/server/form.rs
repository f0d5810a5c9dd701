//! Reading a form body off a request: the HTTP half of form handling (body
//! limits, content type); the pure parser is [`crate::grant::Form`].

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};

use crate::grant::{Form, Refusal};

/// Checks the content type and the body a handler received, then parses it.
/// An oversized body is 413; anything unreadable is `invalid_request`.
pub(super) fn read(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Form, Refusal> {
    let body = body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Refusal::PayloadTooLarge
        } else {
            Refusal::InvalidRequest("request body could not be read".into())
        }
    })?;
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(Refusal::InvalidRequest(
            "content type must be application/x-www-form-urlencoded".into(),
        ));
    }
    Form::parse(&body)
}
