//! The inspector's actions: Download (a capture file, the lines `receiver export` writes for
//! the same requests, in its order), the whole body of one request, and Send again (built by
//! `verify::resend` and sent by `common::client`, the path `sender replay` takes).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::web::{self, WebBody};
use http::header::{HeaderValue, CONTENT_DISPOSITION};
use http::{Response, StatusCode};

use super::{list_query, pages, read_store, store_failed, State};
use crate::store::{Cursor, RequestKey};

/// Bound on one Send again, connect included.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

fn attachment(mut response: Response<WebBody>, file_name: &str) -> Response<WebBody> {
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        response.headers_mut().insert(CONTENT_DISPOSITION, value);
    }
    response
}

/// What a download covers.
enum Wanted {
    /// One request (the detail page's link).
    One(RequestKey),
    /// The page this query shows.
    Page(Box<super::ListQuery>),
}

/// `GET /download`: `?request=KEY` for one request, else the page the same query shows.
pub(super) async fn download(state: &Arc<State>, query: &[(String, String)]) -> Response<WebBody> {
    let wanted = match query.iter().find(|(name, _)| name == "request") {
        Some((_, value)) => match RequestKey::parse(value) {
            Some(key) => Wanted::One(key),
            None => return web::text(StatusCode::BAD_REQUEST, "400 no such request\n".to_owned()),
        },
        None => match list_query(query) {
            Ok(asked) => Wanted::Page(Box::new(asked)),
            Err(message) => return web::text(StatusCode::BAD_REQUEST, format!("400 {message}\n")),
        },
    };
    let read = read_store(state, move |reader| {
        let keys = match wanted {
            Wanted::One(key) => vec![key],
            Wanted::Page(asked) => {
                let start = asked.before.unwrap_or(Cursor::NEWEST);
                let page = reader.requests(&asked.filter, start, asked.limit)?;
                page.rows.iter().map(|row| row.key).collect()
            }
        };
        let mut records = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(detail) = reader.request(key)? {
                records.push((key, detail.record));
            }
        }
        Ok(records)
    })
    .await;
    let mut records = match read {
        Ok(records) => records,
        Err(error) => return store_failed(&error),
    };
    // `receiver export`'s order: receive time, accepted before refused, then id.
    records.sort_by_key(|(key, record)| match key {
        RequestKey::Accepted(id) => (record.received_at_ms, 0, *id),
        RequestKey::Refused(id) => (record.received_at_ms, 1, *id),
    });
    let mut lines = String::new();
    for (_, record) in &records {
        lines.push_str(&record.to_json_line());
        lines.push('\n');
    }
    attachment(
        web::respond(StatusCode::OK, "application/x-ndjson", lines),
        "capture.jsonl",
    )
}

/// `GET /requests/KEY/body`: the body exactly as received.
pub(super) async fn body(state: &Arc<State>, key: RequestKey) -> Response<WebBody> {
    match read_store(state, move |reader| reader.request(key)).await {
        Ok(Some(detail)) => attachment(
            web::respond(
                StatusCode::OK,
                "application/octet-stream",
                Bytes::from(detail.record.body),
            ),
            &format!("{}-body.bin", key.to_text()),
        ),
        Ok(None) => web::text(StatusCode::NOT_FOUND, "404 not found\n".to_owned()),
        Err(error) => store_failed(&error),
    }
}

/// `POST /requests/KEY/send`: fields `to`, `mode` (`verbatim` or `resign`) and, to re-sign,
/// `signature_file` (the file's JSON), and for a request the receiver refused
/// `include_refused=on`: re-signing it makes it pass as signed, which must be asked for.
pub(super) async fn send_again(
    state: &Arc<State>,
    key: RequestKey,
    form: &[(String, String)],
) -> Response<WebBody> {
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim().to_owned())
            .unwrap_or_default()
    };
    let key_text = key.to_text();
    let refuse = |message: String| {
        web::html(
            StatusCode::BAD_REQUEST,
            pages::form_error(&key_text, &message),
        )
    };
    let to_text = field("to");
    let to: http::Uri = match to_text.parse() {
        Ok(to) => to,
        Err(_) => return refuse(format!("Target URL {to_text:?} is not a URL")),
    };
    if to.host().is_none() || to.scheme_str() != Some("http") {
        return refuse("Target URL must be an http:// URL with a host".to_owned());
    }
    let detail = match read_store(state, move |reader| reader.request(key)).await {
        Ok(Some(detail)) => detail,
        Ok(None) => return web::text(StatusCode::NOT_FOUND, "404 not found\n".to_owned()),
        Err(error) => return store_failed(&error),
    };
    let mode = field("mode");
    let refused = pages::is_refusal(&detail.summary.verdict);
    // Said beside its field, the URL and mode kept (never the signature file).
    let beside = |field: pages::SendField, message: String| {
        web::html(
            StatusCode::BAD_REQUEST,
            pages::send_refused(&key_text, &to_text, &mode, refused, (field, &message)),
        )
    };
    // An inspector reachable from other hosts sends nothing internal (the client's connect
    // checks again).
    if let Err(refused) = state.targets.check_uri(&to).await {
        return beside(pages::SendField::Target, format!("Target URL: {refused}"));
    }
    // Re-signing launders a refused request (another account's, a forged signature) into
    // one the next receiver stores as signed: only when asked for by name.
    if refused && mode == "resign" && field("include_refused") != "on" {
        return beside(
            pages::SendField::IncludeRefused,
            format!(
                "This request was refused ({}): tick \"Re-sign although it was refused\" to \
                 re-sign it anyway, or send it verbatim",
                detail.summary.verdict.label()
            ),
        );
    }
    let record = detail.record;
    let headers = match mode.as_str() {
        "verbatim" => verify::resend::verbatim_headers(record.headers),
        "resign" => {
            let text = field("signature_file");
            if text.is_empty() {
                return refuse("Re-signing needs the signature file's JSON".to_owned());
            }
            let keyring = match verify::SignatureFile::from_json(text.as_bytes())
                .map_err(|error| error.to_string())
                .and_then(|file| file.keyring().map_err(|error| error.to_string()))
            {
                Ok(keyring) => keyring,
                Err(error) => return refuse(format!("The signature file cannot be used: {error}")),
            };
            let auth = verify::resend::ResendAuth {
                basic: None,
                keyrings: vec![keyring],
            };
            let message_id = verify::resend::captured_message_id(&record.headers)
                .unwrap_or_else(verify::resend::new_message_id);
            let mut headers = verify::resend::resign_base_headers();
            verify::resend::add_authentication(
                &mut headers,
                &auth,
                &message_id,
                verify::unix_now(),
                &record.body,
            );
            headers
        }
        other => return refuse(format!("Mode {other:?} is neither verbatim nor resign")),
    };
    let answer = common::client::post(
        &state.client,
        &to,
        &headers,
        Bytes::from(record.body),
        SEND_TIMEOUT,
    )
    .await;
    // The host only: a URL may carry credentials (`http://user:pass@…`), never logged.
    let host = to.authority().map_or("", |authority| authority.as_str());
    let host = host.rsplit('@').next().unwrap_or_default();
    tracing::info!(request = %key_text, to = %host, status = ?answer.status, "inspector: sent again");
    web::html(StatusCode::OK, pages::sent(&key_text, &to_text, &answer))
}
