//! The Send again form of a request: its modes, the one it starts on, what it says about them,
//! and its errors beside their fields.
//!
//! A captured signature is stale minutes after it was made: a verbatim copy reaches a receiver
//! that checks it as `timestamp_too_old`. So when this receiver holds keys of its own (a
//! signature file that can sign, or Basic credentials), the form starts on re-signing with
//! them, and it says why verbatim would fail when the capture's signature is past its window.
//! A form that cannot be used, or a send that was not answered 2xx, comes back with the values
//! typed (never the pasted signature file: it holds a secret, which a page does not echo).

use common::web::escape;
use verify::resend::{stale_signature, timestamped_schemes, ResendAuth, StaleSignature};
use verify::Authentication;

use super::reasons::approximate_duration;

/// How the request is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Re-signed with this receiver's keys (its signature files or Basic credentials).
    OwnKeys,
    /// Re-signed with a signature file pasted into the form.
    SignatureFile,
    /// The captured headers and bytes.
    Verbatim,
}

impl Mode {
    /// The form value.
    pub(super) fn value(self) -> &'static str {
        match self {
            Self::OwnKeys => "resign-own",
            Self::SignatureFile => "resign",
            Self::Verbatim => "verbatim",
        }
    }

    /// Reads a form value.
    pub(super) fn parse(value: &str) -> Option<Mode> {
        [Self::OwnKeys, Self::SignatureFile, Self::Verbatim]
            .into_iter()
            .find(|mode| mode.value() == value)
    }
}

/// A field of the form, where an error is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    /// Target URL.
    To,
    /// Mode.
    Mode,
    /// Signature file.
    SignatureFile,
    /// The box a refused request must have ticked to be re-signed.
    IncludeRefused,
}

impl Field {
    fn id(self) -> &'static str {
        match self {
            Self::To => "to",
            Self::Mode => "mode",
            Self::SignatureFile => "signature_file",
            Self::IncludeRefused => "include_refused",
        }
    }
}

/// What the form knows about this receiver and this request.
pub(super) struct SendContext {
    /// What re-signing with this receiver's keys uses, in words; `None` when it has none.
    own_keys: Option<String>,
    /// The capture's signature, when too old to pass verbatim.
    stale: Option<StaleSignature>,
    /// The request was refused: re-signing it would make whatever it holds (a forgery, another
    /// account's events) pass as signed, so the form does not start there (as `sender replay
    /// --mode resign` skips refused captures).
    refused: bool,
}

impl SendContext {
    /// The context of a request captured with `headers` (`refused` or not), sent again from a
    /// receiver with `authentication`, at `now_secs`.
    pub(super) fn new(
        authentication: &Authentication,
        headers: &[(String, String)],
        refused: bool,
        now_secs: i64,
    ) -> SendContext {
        let own_keys = match authentication {
            Authentication::Signature(keyrings) => {
                let names: Vec<&str> = keyrings
                    .iter()
                    .filter(|keyring| keyring.can_sign_at(now_secs))
                    .map(|keyring| keyring.scheme().name())
                    .collect();
                (!names.is_empty())
                    .then(|| format!("this receiver's signature file ({})", names.join(", ")))
            }
            Authentication::Basic(_) => Some("this receiver's Basic credentials".to_owned()),
            Authentication::None => None,
        };
        // Judged by this receiver's own windows when it checks signatures, else by the
        // schemes' defaults: what a receiver like it would do with a verbatim copy.
        let schemes: Vec<verify::Scheme> = match authentication {
            Authentication::Signature(keyrings) => keyrings
                .iter()
                .map(|keyring| keyring.scheme().clone())
                .collect(),
            _ => timestamped_schemes(),
        };
        SendContext {
            own_keys,
            stale: stale_signature(headers, &schemes, now_secs),
            refused,
        }
    }

    /// The mode the form starts on: this receiver's keys when it has any and the request was
    /// accepted, else verbatim.
    pub(super) fn default_mode(&self) -> Mode {
        if self.own_keys.is_some() && !self.refused {
            Mode::OwnKeys
        } else {
            Mode::Verbatim
        }
    }

    /// Why a verbatim copy would be refused, when it would.
    pub(super) fn verbatim_warning(&self) -> Option<String> {
        self.stale.map(|stale| {
            format!(
                "Verbatim sends the captured signature, made {} before now: a receiver that \
                 checks it refuses it as timestamp_too_old (its window is {} s). Re-signing \
                 makes a fresh one.",
                approximate_duration(stale.age_secs),
                stale.tolerance_secs
            )
        })
    }
}

/// The credentials of this receiver to re-sign with at `now_secs`: its signature files that
/// can sign, or its Basic credentials; `None` when it has neither.
pub(super) fn own_auth(authentication: &Authentication, now_secs: i64) -> Option<ResendAuth> {
    match authentication {
        Authentication::Signature(keyrings) => {
            let keyrings: Vec<_> = keyrings
                .iter()
                .filter(|keyring| keyring.can_sign_at(now_secs))
                .cloned()
                .collect();
            (!keyrings.is_empty()).then_some(ResendAuth {
                basic: None,
                keyrings,
            })
        }
        Authentication::Basic(credentials) => Some(ResendAuth {
            basic: Some(credentials.clone()),
            keyrings: Vec::new(),
        }),
        Authentication::None => None,
    }
}

/// The values of a form, as typed.
pub(super) struct SendForm {
    /// Target URL.
    pub(super) to: String,
    /// The mode chosen.
    pub(super) mode: Mode,
    /// What is wrong, beside which field.
    pub(super) error: Option<(Field, String)>,
}

/// The form of request `key`.
pub(super) fn render(key: &str, form: &SendForm, context: &SendContext) -> String {
    let error_of = |field: Field| match &form.error {
        Some((at, message)) if *at == field => Some(message.as_str()),
        _ => None,
    };
    let invalid = |field: Field| match error_of(field) {
        Some(_) => format!(
            " aria-invalid=\"true\" aria-describedby=\"{}-error\"",
            field.id()
        ),
        None => String::new(),
    };
    let message = |field: Field| match error_of(field) {
        Some(error) => format!(
            "<p class=\"error\" id=\"{}-error\" role=\"alert\">{}</p>",
            field.id(),
            escape(error)
        ),
        None => String::new(),
    };
    let option = |mode: Mode, label: &str| {
        let selected = if form.mode == mode { " selected" } else { "" };
        format!(
            "<option value=\"{}\"{selected}>{}</option>",
            mode.value(),
            escape(label)
        )
    };
    let own = context
        .own_keys
        .as_deref()
        .map(|keys| option(Mode::OwnKeys, &format!("Re-signed with {keys}")))
        .unwrap_or_default();
    let notes: String = context
        .verbatim_warning()
        .into_iter()
        .map(|note| format!("<p class=\"muted\">{}</p>", escape(&note)))
        .collect();
    // A refused request is re-signed only when asked for by name, as `sender replay` re-signs
    // one only with `--include-refused`.
    let include_refused = if context.refused {
        format!(
            "<p><label for=\"include_refused\"><input id=\"include_refused\" name=\"include_refused\" \
             type=\"checkbox\" value=\"on\"{}> Re-sign although it was refused</label></p>{}\
             <p class=\"muted\">This request was refused: re-signed, whatever it holds (a forgery, \
             another account's events) passes as signed at the next receiver. Re-sign only a \
             request you trust.</p>",
            invalid(Field::IncludeRefused),
            message(Field::IncludeRefused),
        )
    } else {
        String::new()
    };
    let signature_hint = if error_of(Field::SignatureFile).is_some() {
        " (paste it again: a page never shows a secret back)"
    } else {
        ""
    };
    format!(
        "<form method=\"post\" action=\"/requests/{key}/send\" aria-label=\"Send again\">\
         <p><label for=\"to\">Target URL<input id=\"to\" name=\"to\" type=\"url\" required placeholder=\"e.g. http://127.0.0.1:3000/webhook\" size=\"50\" value=\"{to}\"{to_invalid}></label></p>{to_message}\
         <p><label for=\"mode\">Mode<select id=\"mode\" name=\"mode\"{mode_invalid}>{own}{file}{verbatim}</select></label></p>{mode_message}{notes}\
         <p><label for=\"signature_file\">Signature file (its JSON, to re-sign with another file){signature_hint}<textarea id=\"signature_file\" name=\"signature_file\" rows=\"4\" cols=\"60\"{file_invalid}></textarea></label></p>{file_message}\
         {include_refused}<p><button type=\"submit\">Send again</button></p></form>",
        key = escape(key),
        to = escape(&form.to),
        to_invalid = invalid(Field::To),
        to_message = message(Field::To),
        mode_invalid = invalid(Field::Mode),
        mode_message = message(Field::Mode),
        file = option(Mode::SignatureFile, "Re-signed with the signature file below"),
        verbatim = option(Mode::Verbatim, "Verbatim: the captured headers and bytes"),
        file_invalid = invalid(Field::SignatureFile),
        file_message = message(Field::SignatureFile),
    )
}
