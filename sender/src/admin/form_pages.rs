//! The flows of the **Add webhook** / **Edit** form. Save, **Test webhook** and **Download
//! signature** all send the whole form, so each works with the values on screen, saved or
//! not (SPEC section 8):
//! - every problem of the form is found at once ([`WebhookChanges::problems`], the command
//!   line's rules) and shown beside its field in plain words, with what was typed kept;
//! - Test sends one event with the webhook as the form makes it (nothing stored), after the
//!   Target URL check Save makes, and shows the answer above the form it leaves as it was;
//! - Download signature answers with the file the webhook will sign with once saved: the
//!   stored one while the scheme's kind stays, else the one generated for this unsaved form
//!   (its pending entry, `pending.rs`), which Test signs with and Save keeps;
//! - a typed password is kept in the pending entry, never written into the page;
//! - a Save refused because the webhook changed meanwhile keeps what was typed and says what
//!   changed (the form carries the record it was read at).

use common::web::{self, WebBody};
use http::{Response, StatusCode};

use super::form_html::{
    changed_meanwhile, same_keys, webhook_form, FormBase, FormValues, FormView,
};
use super::html::{FieldError, Notice};
use super::input::{form_changes, scheme_name};
use super::page_answer::{failed_page, find, see_other, usage_of, value, Answer};
use super::pending::Pending;
use super::{blocking, Admin};
use crate::manage::{self, one_a_field, Problem, Refusal, TestOutcome, WebhookChanges};
use crate::registry::{Auth, AuthMethod, SchemeName, Webhook, WebhookId};
use crate::UsageError;

/// The webhook a form is about, the values on it, and what they amount to.
struct Screen {
    /// The stored webhook (Edit), as it is now.
    stored: Option<Webhook>,
    /// The form's pending entry (always for Add; on Edit once something needs keeping).
    pending: Option<Pending>,
    /// The form named a pending entry that is gone (expired, or the process restarted).
    pending_lost: bool,
    /// The changes on screen, with the pending signature and the kept password.
    changes: WebhookChanges,
    /// Every problem, one a field.
    problems: Vec<Problem>,
    /// The values as typed, for showing the form again.
    values: FormValues,
    /// What an Edit form was read at.
    base: Option<FormBase>,
}

impl Screen {
    /// The webhook the form makes, not stored: the stored one with the changes applied, or
    /// a new one under the pending entry's id.
    fn preview(&self) -> Result<Webhook, UsageError> {
        let now = verify::unix_now_ms();
        match &self.stored {
            Some(stored) => {
                let mut webhook = stored.clone();
                self.changes.clone().apply(&mut webhook, now)?;
                Ok(webhook)
            }
            None => self.changes.clone().create(now),
        }
    }

    /// The errors for the page.
    fn errors(&self) -> Vec<FieldError> {
        self.problems
            .iter()
            .map(|problem| FieldError {
                field: problem.field,
                message: problem.message.clone(),
            })
            .collect()
    }
}

/// Reads a posted form: the stored webhook (`id`), the form's pending entry (a new one for an
/// Add form that names none, or one that is gone), the changes and every problem.
async fn read_screen(
    admin: &Admin,
    id: Option<&str>,
    form: &[(String, String)],
) -> anyhow::Result<Screen> {
    let stored = match id {
        Some(id) => Some(find(admin, id).await?),
        None => None,
    };
    let named = value(form, "pending");
    let found = named.and_then(|pending_id| match &stored {
        Some(webhook) => admin.pending.get(pending_id, &webhook.id),
        None => admin.pending.get_new(pending_id),
    });
    let pending_lost = named.is_some() && found.is_none();
    let pending = match (found, &stored) {
        (Some(pending), _) => Some(pending),
        (None, None) => Some(new_pending(admin)?),
        (None, Some(_)) => None,
    };
    let kept_password = pending.as_ref().and_then(|p| p.password.as_ref());
    let (mut changes, mut problems) = form_changes(form, stored.is_none(), kept_password);
    changes.pending_signature = pending.as_ref().and_then(|p| p.file.clone());
    // A Target URL given here is delivered to under these pages' rule by every worker.
    changes.target_policy = admin.targets.policy();
    problems.extend(changes.problems(stored.as_ref()));
    Ok(Screen {
        base: FormBase::posted(form),
        stored,
        pending,
        pending_lost,
        changes,
        problems: one_a_field(problems),
        values: FormValues::posted(form),
    })
}

/// A pending entry for a new webhook, with a secret generated for the default scheme: the
/// Add page has its secret before Save.
fn new_pending(admin: &Admin) -> anyhow::Result<Pending> {
    let mut pending = admin.pending.create(WebhookId::generate(), true)?;
    pending.file = Some(manage::signature_file_of(
        None,
        None,
        &pending.webhook_id,
        "",
        SchemeName::StandardWebhooks,
        verify::unix_now_ms(),
    )?);
    admin.pending.put(pending.clone());
    Ok(pending)
}

/// Keeps what the page cannot carry: a password typed into the form, and the signature file
/// `made` for it (when it is not the stored one), in the form's pending entry (made now on
/// Edit when needed). Gives the entry.
fn keep_typed(
    admin: &Admin,
    screen: &mut Screen,
    form: &[(String, String)],
    made: Option<&verify::SignatureFile>,
) -> anyhow::Result<()> {
    let typed = value(form, "password")
        .filter(|text| !text.trim().is_empty())
        .filter(|_| screen.changes.auth == Some(AuthMethod::Basic));
    let stored_file = match screen.stored.as_ref().map(|webhook| &webhook.auth) {
        Some(Auth::Signature(file)) => Some(file),
        _ => None,
    };
    let made = made.filter(|file| {
        stored_file.is_none_or(|stored| !same_keys(stored, file))
            && screen
                .pending
                .as_ref()
                .and_then(|pending| pending.file.as_ref())
                .is_none_or(|pending| !same_keys(pending, file))
    });
    if typed.is_none() && made.is_none() {
        return Ok(());
    }
    let mut pending = match (screen.pending.take(), &screen.stored) {
        (Some(pending), _) => pending,
        (None, Some(webhook)) => admin.pending.create(webhook.id.clone(), false)?,
        (None, None) => new_pending(admin)?,
    };
    if let Some(typed) = typed {
        pending.password = Some(typed.into());
    }
    if let Some(file) = made {
        pending.file = Some(file.clone());
    }
    admin.pending.put(pending.clone());
    screen.pending = Some(pending);
    Ok(())
}

/// The form again, as `screen` holds it, with `status`.
async fn form_again(
    admin: &Admin,
    status: StatusCode,
    screen: &Screen,
    notice: Option<&Notice>,
    tested: Option<&TestOutcome>,
    changed: &[String],
) -> Answer {
    let waiting = waiting(admin, screen.stored.as_ref()).await?;
    let errors = screen.errors();
    Ok(web::html(
        status,
        webhook_form(&FormView {
            webhook: screen.stored.as_ref(),
            values: &screen.values,
            base: screen.base.as_ref(),
            errors: &errors,
            changed,
            notice,
            tested,
            pending: screen.pending.as_ref(),
            waiting,
        }),
    ))
}

/// Requests waiting in a stored webhook's queue, with its staged batch events.
async fn waiting(admin: &Admin, webhook: Option<&Webhook>) -> anyhow::Result<Option<u64>> {
    let Some(webhook) = webhook else {
        return Ok(None);
    };
    let id = webhook.id.clone();
    let counts = blocking(admin, move |state| state.counts(Some(&id))).await?;
    Ok(Some(counts.pending + counts.staged))
}

/// What the pages say about a Target URL these pages may not send to, as a problem.
async fn target_problem(admin: &Admin, webhook: &Webhook) -> Option<Problem> {
    super::check_target(admin, Some(&webhook.url))
        .await
        .err()
        .map(Problem::from)
}

/// `GET /webhooks/new`: the Add webhook form, with its pending entry and the secret generated
/// for it; `?done=` names what brought the user here.
pub(super) async fn new_page(admin: &Admin, done: Option<&str>) -> Answer {
    let pending = new_pending(admin)?;
    let notice = match done {
        Some("test") => Some(Notice::Problem(
            "A test result is shown once, right after Test webhook, and what was typed is not \
             kept at its address: fill the form in and press Test webhook again."
                .into(),
        )),
        _ => None,
    };
    let values = FormValues::new_webhook();
    Ok(web::html(
        StatusCode::OK,
        webhook_form(&FormView {
            webhook: None,
            values: &values,
            base: None,
            errors: &[],
            changed: &[],
            notice: notice.as_ref(),
            tested: None,
            pending: Some(&pending),
            waiting: None,
        }),
    ))
}

/// `GET /webhooks/{id}`: the Edit form as stored; `?done=` names what was just done.
pub(super) async fn edit_page(admin: &Admin, id: &str, done: Option<&str>) -> Answer {
    let webhook = find(admin, id).await?;
    let notice = match done {
        Some("saved") => Some(Notice::Done("Saved.".into())),
        Some("saved-new-secret") => Some(Notice::Problem(
            "Saved, with a new secret: the one generated before Save had expired (an unsaved \
             form is kept an hour after its last use). Download signature again and give the \
             new file to the receiving team."
                .into(),
        )),
        Some("test") => Some(Notice::Problem(
            "A test result is shown once, right after Test webhook: here is the webhook as \
             stored; press Test webhook again to send another test event."
                .into(),
        )),
        _ => None,
    };
    stored_form(admin, &webhook, StatusCode::OK, notice.as_ref()).await
}

/// The Edit form of `webhook` as stored, with a pending entry of its own: a Download
/// signature answers with a file and leaves the page as it is, so the entry that keeps the
/// file's secret for Save must be named by the page before.
async fn stored_form(
    admin: &Admin,
    webhook: &Webhook,
    status: StatusCode,
    notice: Option<&Notice>,
) -> Answer {
    let waiting = waiting(admin, Some(webhook)).await?;
    let base = FormBase::of(webhook);
    let pending = admin.pending.create(webhook.id.clone(), false)?;
    Ok(web::html(
        status,
        webhook_form(&FormView {
            webhook: Some(webhook),
            values: &FormValues::of(webhook),
            base: Some(&base),
            errors: &[],
            changed: &[],
            notice,
            tested: None,
            pending: Some(&pending),
            waiting,
        }),
    ))
}

/// The form again, 422 with every problem, when `screen` cannot be saved; `None` when it can.
/// The Target URL's reach is judged too when `check_target` (a new webhook, or a new URL):
/// only once the rest is right, as the reach needs a whole webhook.
///
/// # Errors
/// The typed values cannot be kept for the form.
async fn unsaveable(
    admin: &Admin,
    screen: &mut Screen,
    form: &[(String, String)],
    check_target: bool,
) -> anyhow::Result<Option<Response<WebBody>>> {
    if check_target && screen.problems.is_empty() {
        if let Ok(webhook) = screen.preview() {
            screen
                .problems
                .extend(target_problem(admin, &webhook).await);
        }
    }
    if screen.problems.is_empty() {
        return Ok(None);
    }
    keep_typed(admin, screen, form, None)?;
    form_again(
        admin,
        StatusCode::UNPROCESSABLE_ENTITY,
        screen,
        None,
        None,
        &[],
    )
    .await
    .map(Some)
}

/// `POST /webhooks`: Save on Add webhook.
pub(super) async fn create(admin: &Admin, form: &[(String, String)]) -> Answer {
    let mut screen = read_screen(admin, None, form).await?;
    if let Some(again) = unsaveable(admin, &mut screen, form, true).await? {
        return Ok(again);
    }
    let changes = screen.changes.clone();
    let signature = changes.auth == Some(AuthMethod::Signature);
    match blocking(admin, move |state| manage::add(state, changes)).await {
        Ok(webhook) => {
            if let Some(pending) = &screen.pending {
                admin.pending.remove(&pending.id);
            }
            let done = if signature && screen.pending_lost {
                "saved-new-secret"
            } else {
                "saved"
            };
            Ok(see_other(&format!("/webhooks/{}?done={done}", webhook.id)))
        }
        Err(failure) => refused(admin, &mut screen, form, failure).await,
    }
}

/// `POST /webhooks/{id}`: Save on Edit.
pub(super) async fn save(admin: &Admin, id: &str, form: &[(String, String)]) -> Answer {
    let mut screen = read_screen(admin, Some(id), form).await?;
    let new_url = screen.changes.url.is_some();
    if let Some(again) = unsaveable(admin, &mut screen, form, new_url).await? {
        return Ok(again);
    }
    let changes = screen.changes.clone();
    let version = screen.base.as_ref().map(|base| base.version);
    let owned = id.to_owned();
    let saved = blocking(admin, move |state| {
        manage::edit(state, &owned, changes, version)
    })
    .await;
    match saved {
        Ok(webhook) => {
            if let Some(pending) = &screen.pending {
                admin.pending.remove(&pending.id);
            }
            Ok(see_other(&format!("/webhooks/{}?done=saved", webhook.id)))
        }
        Err(failure) => refused(admin, &mut screen, form, failure).await,
    }
}

/// A Save the state refused: the limit of webhooks, or a change made meanwhile (the form
/// again with what was typed, what changed, and the webhook's version now, so that Save
/// again applies what was typed over what the user has now seen); a missing webhook or a
/// storage failure is a page of its own.
async fn refused(
    admin: &Admin,
    screen: &mut Screen,
    form: &[(String, String)],
    failure: anyhow::Error,
) -> Answer {
    match Refusal::of(&failure) {
        Some(Refusal::Limit(message)) => {
            keep_typed(admin, screen, form, None)?;
            screen.problems = vec![Problem::from(UsageError(message))];
            form_again(admin, StatusCode::CONFLICT, screen, None, None, &[]).await
        }
        Some(Refusal::Changed(_)) if screen.stored.is_some() => {
            let id = screen
                .stored
                .as_ref()
                .map(|webhook| webhook.id.to_string())
                .unwrap_or_default();
            let now = find(admin, &id).await?;
            let read = screen
                .base
                .as_ref()
                .map(|base| base.read.clone())
                .unwrap_or_default();
            let changed = changed_meanwhile(&read, &now);
            screen.base = Some(FormBase::of(&now));
            screen.stored = Some(now);
            keep_typed(admin, screen, form, None)?;
            form_again(admin, StatusCode::CONFLICT, screen, None, None, &changed).await
        }
        _ => match usage_of(&failure) {
            Some(usage) => {
                keep_typed(admin, screen, form, None)?;
                screen.problems = vec![Problem::from(usage)];
                form_again(
                    admin,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    screen,
                    None,
                    None,
                    &[],
                )
                .await
            }
            None => Err(failure),
        },
    }
}

/// `POST /webhooks/new/test` and `POST /webhooks/{id}/test`: **Test webhook** with the values
/// on screen. Nothing is stored but what the page cannot carry (the pending entry).
pub(super) async fn test(admin: &Admin, id: Option<&str>, form: &[(String, String)]) -> Answer {
    let mut screen = read_screen(admin, id, form).await?;
    let preview = if screen.problems.is_empty() {
        match screen.preview() {
            Ok(webhook) => Some(webhook),
            Err(usage) => {
                screen.problems.push(Problem::from(usage));
                None
            }
        }
    } else {
        None
    };
    let made = match preview.as_ref().map(|webhook| &webhook.auth) {
        Some(Auth::Signature(file)) => Some(file.clone()),
        _ => None,
    };
    keep_typed(admin, &mut screen, form, made.as_ref())?;
    let Some(webhook) = preview else {
        return form_again(
            admin,
            StatusCode::UNPROCESSABLE_ENTITY,
            &screen,
            None,
            None,
            &[],
        )
        .await;
    };
    match super::test_unsaved(admin, &webhook, None).await {
        Ok(outcome) => form_again(admin, StatusCode::OK, &screen, None, Some(&outcome), &[]).await,
        Err(failure) => match usage_of(&failure) {
            // A Target URL these pages may not send to: said beside the field, as Save says it.
            Some(usage) => {
                screen.problems = vec![Problem::from(usage)];
                form_again(
                    admin,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &screen,
                    None,
                    None,
                    &[],
                )
                .await
            }
            None => Err(failure),
        },
    }
}

/// `POST /webhooks/new/signature` and `POST /webhooks/{id}/signature`: **Download signature**
/// for the scheme on screen, saved or not: the file the webhook signs with once saved. Only
/// the Authentication choice and the Scheme matter (and the Name, written into the file), so
/// it works before the rest of the form is filled in.
pub(super) async fn download(admin: &Admin, id: Option<&str>, form: &[(String, String)]) -> Answer {
    let mut screen = read_screen(admin, id, form).await?;
    let chosen = value(form, "auth") == Some("signature");
    let scheme = scheme_name(value(form, "scheme").unwrap_or("standard-webhooks"));
    let (Ok(scheme), true) = (scheme, chosen) else {
        screen.problems = vec![Problem::new(
            "auth",
            "--auth signature is needed for a signature file",
            "Choose Signature (and its Scheme) to download a signature file",
        )];
        keep_typed(admin, &mut screen, form, None)?;
        return form_again(
            admin,
            StatusCode::UNPROCESSABLE_ENTITY,
            &screen,
            None,
            None,
            &[],
        )
        .await;
    };
    let webhook_id = match (&screen.stored, &screen.pending) {
        (Some(webhook), _) => webhook.id.clone(),
        (None, Some(pending)) => pending.webhook_id.clone(),
        (None, None) => return Err(anyhow::anyhow!("an Add form without its pending entry")),
    };
    let name = value(form, "name")
        .filter(|name| !name.trim().is_empty())
        .map(str::to_owned)
        .or_else(|| screen.stored.as_ref().map(|webhook| webhook.name.clone()))
        .unwrap_or_default();
    let current = match screen.stored.as_ref().map(|webhook| &webhook.auth) {
        Some(Auth::Signature(file)) => Some(file),
        _ => None,
    };
    let file = manage::signature_file_of(
        current,
        screen.changes.pending_signature.as_ref(),
        &webhook_id,
        &name,
        scheme,
        verify::unix_now_ms(),
    )?;
    keep_typed(admin, &mut screen, form, Some(&file))?;
    let text = file
        .for_receiver()
        .map_err(|error| UsageError(format!("the signature file: {error}")))?
        .to_json_pretty();
    Ok(super::attachment(&text, webhook_id.as_str()))
}

/// `POST /webhooks/{id}/rotate`: **Rotate secret** with its **Overlap**.
pub(super) async fn rotate(admin: &Admin, id: &str, form: &[(String, String)]) -> Answer {
    let version = value(form, "version").and_then(|text| text.parse().ok());
    let rotated = match super::overlap(value(form, "overlap")) {
        Ok(overlap) => {
            let owned = id.to_owned();
            blocking(admin, move |state| {
                manage::rotate_secret(state, &owned, overlap, version)
            })
            .await
        }
        Err(usage) => Err(usage.into()),
    };
    let (webhook, notice) = match rotated {
        Ok((ends, webhook)) => (
            webhook,
            Notice::Done(format!(
                "Rotated: both secrets sign until {ends}. Download signature again and give the file to the receiving team."
            )),
        ),
        Err(failure) => {
            let message = match Refusal::of(&failure) {
                Some(Refusal::Changed(_)) => {
                    "This webhook was changed meanwhile (by the delivery worker, another page \
                     or a command), so no secret was added: here it is as it is now; rotate \
                     again if you still want to."
                        .to_owned()
                }
                _ => match usage_of(&failure) {
                    Some(usage) => Problem::from(usage).message,
                    None => return Ok(failed_page(&failure)),
                },
            };
            (find(admin, id).await?, Notice::Problem(message))
        }
    };
    stored_form(admin, &webhook, StatusCode::OK, Some(&notice)).await
}

/// Redirects the address of a test result or a download (a reload, a bookmark) to the form
/// it came from, which says why.
pub(super) fn back_to_form(id: Option<&str>) -> Response<WebBody> {
    let plain = |id: &str| {
        id.bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
    };
    match id {
        Some(id) if plain(id) => see_other(&format!("/webhooks/{id}?done=test")),
        // Not an id we make: the list, rather than echoing it into a header.
        Some(_) => see_other("/"),
        None => see_other("/webhooks/new?done=test"),
    }
}
