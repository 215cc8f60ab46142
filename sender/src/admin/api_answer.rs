//! The API's JSON answers and how it reads a JSON body: shared by every operation of the API
//! ([`super::api`], [`super::api_recovery`]).

use common::web::{self, WebBody};
use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::Asked;

/// An error answer of the API.
pub(super) fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    field: Option<&str>,
) -> Response<WebBody> {
    let mut body = json!({"error": code, "message": message});
    if let (Some(field), Value::Object(map)) = (field, &mut body) {
        map.insert("field".into(), json!(field));
    }
    answer(status, &body)
}

/// A JSON answer.
pub(super) fn answer(status: StatusCode, body: &Value) -> Response<WebBody> {
    web::respond(status, "application/json", format!("{body}\n"))
}

/// Reads a JSON body; an empty body is `{}`.
pub(super) fn body<T: for<'de> Deserialize<'de> + Default>(asked: &Asked) -> serde_json::Result<T> {
    if asked.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&asked.body)
}
