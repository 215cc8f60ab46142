//! The inspector's actions: Download (a capture file, the lines `receiver export` writes for
//! the same requests, in its order, named by what it holds), the whole body of one request,
//! and Send again (built by `verify::resend` and sent by `common::client`, the path `sender
//! replay` takes; its form is `send_form`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::web::{self, WebBody};
use http::header::{HeaderValue, CONTENT_DISPOSITION};
use http::{Response, StatusCode};

use super::send_form::{self, Field, Mode, SendContext, SendForm};
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
    let named = match &wanted {
        Wanted::One(key) => key.to_text(),
        Wanted::Page(asked) => asked.fields.file_name_part(),
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
        &capture_file_name(&named, &records),
    )
}

/// A capture file's name by what it holds: `capture-` and the request (`a12`) or the page's
/// filters (`event_name-completed_account-1010`, or `all`), then the receive times of its
/// first and last request (one for a single request; `empty` when it holds none), so files
/// downloaded one after another keep apart.
fn capture_file_name(named: &str, records: &[(RequestKey, verify::CaptureRecord)]) -> String {
    let named = if named.is_empty() { "all" } else { named };
    let times: Vec<i64> = records
        .iter()
        .map(|(_, record)| record.received_at_ms)
        .collect();
    let span = match (times.iter().min(), times.iter().max()) {
        (Some(first), Some(last)) if first == last => pages::file_name_time(*first),
        (Some(first), Some(last)) => format!(
            "{}-{}",
            pages::file_name_time(*first),
            pages::file_name_time(*last)
        ),
        _ => "empty".to_owned(),
    };
    format!("capture-{named}-{span}.jsonl")
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

/// `POST /requests/KEY/send`: fields `to`, `mode` (`resign-own`: this receiver's keys;
/// `resign`: the signature file in `signature_file`, its JSON; `verbatim`), and for a request
/// the receiver refused, to re-sign it, `include_refused=on`: re-signing it makes it pass as
/// signed, which must be asked for. A form that cannot be used comes back as typed with the
/// error beside its field (400).
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
    let detail = match read_store(state, move |reader| reader.request(key)).await {
        Ok(Some(detail)) => detail,
        Ok(None) => return web::text(StatusCode::NOT_FOUND, "404 not found\n".to_owned()),
        Err(error) => return store_failed(&error),
    };
    let verdict = detail.summary.verdict.label().to_owned();
    let record = detail.record;
    let now = verify::unix_now();
    let authentication = state.authentication.current();
    let context = SendContext::new(
        &authentication,
        &record.headers,
        record.reason.is_some(),
        now,
    );
    let to_text = field("to");
    let mode = Mode::parse(&field("mode"));
    let mut typed = SendForm {
        to: to_text.clone(),
        mode: mode.unwrap_or_else(|| context.default_mode()),
        error: None,
    };
    let refuse = |mut typed: SendForm, at: Field, message: String| {
        typed.error = Some((at, message));
        web::html(
            StatusCode::BAD_REQUEST,
            pages::send_refused(&key_text, &typed, &context),
        )
    };
    let Some(mode) = mode else {
        let message = format!("Mode {:?} is not one of the choices", field("mode"));
        return refuse(typed, Field::Mode, message);
    };
    let to: http::Uri = match to_text.parse() {
        Ok(to) => to,
        Err(_) => {
            let message = format!("Target URL {to_text:?} is not a URL");
            return refuse(typed, Field::To, message);
        }
    };
    if to.host().is_none() || to.scheme_str() != Some("http") {
        let message = "Target URL must be an http:// URL with a host".to_owned();
        return refuse(typed, Field::To, message);
    }
    // An inspector reachable from other hosts sends nothing internal (the client's connect
    // checks again).
    if let Err(refused) = state.targets.check_uri(&to).await {
        return refuse(typed, Field::To, format!("Target URL: {refused}"));
    }
    // Re-signing launders a refused request (another account's, a forged signature) into
    // one the next receiver stores as signed: only when asked for by name.
    if record.reason.is_some() && mode != Mode::Verbatim && field("include_refused") != "on" {
        let message = format!(
            "This request was refused ({verdict}): tick \"Re-sign although it was refused\" to \
             re-sign it anyway, or send it verbatim"
        );
        return refuse(typed, Field::IncludeRefused, message);
    }
    let resign = |auth: &verify::resend::ResendAuth| {
        let message_id = verify::resend::captured_message_id(&record.headers)
            .unwrap_or_else(verify::resend::new_message_id);
        let mut headers = verify::resend::resign_base_headers();
        verify::resend::add_authentication(&mut headers, auth, &message_id, now, &record.body);
        headers
    };
    let headers = match mode {
        Mode::Verbatim => verify::resend::verbatim_headers(record.headers.clone()),
        Mode::OwnKeys => match send_form::own_auth(&authentication, now) {
            Some(auth) => resign(&auth),
            None => {
                let message = "This receiver has no keys of its own to sign with: choose \
                               the signature file or verbatim"
                    .to_owned();
                return refuse(typed, Field::Mode, message);
            }
        },
        Mode::SignatureFile => {
            let text = field("signature_file");
            if text.is_empty() {
                let message = "Re-signing needs the signature file's JSON".to_owned();
                return refuse(typed, Field::SignatureFile, message);
            }
            let keyring = match verify::SignatureFile::from_json(text.as_bytes())
                .map_err(|error| error.to_string())
                .and_then(|file| file.keyring().map_err(|error| error.to_string()))
            {
                Ok(keyring) => keyring,
                Err(error) => {
                    let message = format!("The signature file cannot be used: {error}");
                    return refuse(typed, Field::SignatureFile, message);
                }
            };
            resign(&verify::resend::ResendAuth {
                basic: None,
                keyrings: vec![keyring],
            })
        }
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
    tracing::info!(request = %key_text, to = %host, status = ?answer.status, mode = mode.value(), "inspector: sent again");
    typed.mode = mode;
    web::html(
        StatusCode::OK,
        pages::sent(&key_text, &typed, &context, &answer),
    )
}
