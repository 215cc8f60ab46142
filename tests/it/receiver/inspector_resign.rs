//! The inspector's Send again re-signs a request the receiver refused only when asked to by
//! name (the box "Re-sign although it was refused"), as `sender replay` does only with
//! `--include-refused`: signed anew, a request with a forged signature, or another account's,
//! would be stored as signed by the next receiver.

use std::time::Duration;

use http::StatusCode;
use verify::{BasicCredentials, SignatureFile, SigningSecret};

use crate::support::inspector::Inspected;
use crate::support::receiver::{envelope, wait_until};
use crate::support::store::{for_each_store, TestStore};

for_each_store!(a_refused_request_is_re_signed_only_when_asked_to);

/// The error shown beside field `id`, if any.
fn beside(html: &str, id: &str) -> Option<String> {
    let marker = format!("id=\"{id}-error\"");
    html.split(&marker)
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
        .map(str::to_owned)
}

async fn a_refused_request_is_re_signed_only_when_asked_to(store: TestStore) {
    // The first receiver wants Basic credentials: a request without them is refused (401)
    // and kept, its body a valid envelope.
    let mut config = store.config();
    config.authentication =
        verify::Authentication::Basic(BasicCredentials::new("crm", "s3cret").unwrap());
    let inspected = Inspected::start(config).await;
    // The second checks signatures: a re-signed request gets in, whatever it was.
    let secret = SigningSecret::generate();
    let file = SignatureFile::new(
        "wh_resign",
        "CRM",
        &verify::Scheme::StandardWebhooks {
            tolerance_secs: 300,
        },
        &secret,
        verify::unix_now(),
    );
    let file_path = store.dir().join("sig.json");
    std::fs::write(&file_path, file.to_json_pretty()).unwrap();
    let mut second_config = receiver::Config::for_tests(store.dir().join("second.db"));
    second_config.authentication = verify::Authentication::Signature(vec![
        receiver::config::read_signature_file(&file_path).unwrap(),
    ]);
    let second = Inspected::start(second_config).await;
    let to = format!("http://{}/webhook", second.addr);

    let forged = inspected.post(&[], envelope(666, &["forged-1"])).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let kept = wait_until(Duration::from_secs(10), || async {
        inspected.get("/requests/r1").await.status == StatusCode::OK
    })
    .await;
    assert!(kept, "the refused request is kept");
    let page = inspected.page("/requests/r1").await;
    assert!(
        page.contains("name=\"include_refused\"")
            && page.contains("Re-sign although it was refused"),
        "the refused request's form asks: {page}"
    );

    // Re-signed without the box ticked: refused beside it, nothing sent.
    let signature = file.to_json_pretty();
    let resign = [
        ("to", to.as_str()),
        ("mode", "resign"),
        ("signature_file", signature.as_str()),
    ];
    let reply = inspected.post_form("/requests/r1/send", &resign).await;
    let html = String::from_utf8_lossy(&reply.body).into_owned();
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{html}");
    let error = beside(&html, "include_refused").unwrap_or_else(|| panic!("{html}"));
    assert!(
        error.contains("This request was refused (basic_missing)")
            && error.contains("Re-sign although it was refused"),
        "{error}"
    );
    assert!(
        html.contains(&format!("value=\"{to}\"")),
        "what was typed is kept: {html}"
    );
    assert!(
        !html.contains("whsec_"),
        "the signature file is never echoed"
    );
    assert!(
        second.page("/").await.contains("No requests here yet."),
        "nothing arrived"
    );

    // Nor with this receiver's own credentials, which the form offers.
    let own = [("to", to.as_str()), ("mode", "resign-own")];
    let reply = inspected.post_form("/requests/r1/send", &own).await;
    let html = String::from_utf8_lossy(&reply.body).into_owned();
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{html}");
    assert!(beside(&html, "include_refused").is_some(), "{html}");
    assert!(
        second.page("/").await.contains("No requests here yet."),
        "nothing arrived"
    );

    // Verbatim it goes as it came (its missing credentials still missing: no laundering).
    let reply = inspected
        .post_form("/requests/r1/send", &[("to", &to), ("mode", "verbatim")])
        .await;
    let html = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(html.contains("Answered 401"), "{html}");

    // Asked for by name, it is re-signed: the second receiver stores it as signed.
    let mut ticked = resign.to_vec();
    ticked.push(("include_refused", "on"));
    let reply = inspected.post_form("/requests/r1/send", &ticked).await;
    let html = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(html.contains("Answered 200"), "{html}");

    // An accepted request needs no box: the credentials make the first receiver take it.
    let accepted = inspected
        .post(
            &[("authorization", "Basic Y3JtOnMzY3JldA==")],
            envelope(666, &["fine-1"]),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::OK);
    let page = inspected.page("/requests/a1").await;
    assert!(!page.contains("include_refused"), "{page}");
    let reply = inspected.post_form("/requests/a1/send", &resign).await;
    let html = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(html.contains("Answered 200"), "{html}");
    second.stop().await;
    inspected.stop().await;
}
