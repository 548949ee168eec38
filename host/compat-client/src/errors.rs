//! The compatibility API's error contract, in both directions: the HTTP
//! status a [`ControlError`] is answered with ([`status_code`], used by the
//! agent's server), and the [`ControlError`] an error response stands for
//! ([`from_response`], used by [`CompatClient`](crate::CompatClient)).
//!
//! Every error answer carries the `ControlError` document (`{"error":
//! kind, "detail": ...}`, see `docs/compat-openapi.yaml`), so the client
//! gets back exactly the error the server sent. Only a response without
//! that document (a proxy's page, a refused route) falls back to
//! [`from_status`].

use nodeplane_interface::ControlError;

/// The HTTP status the compatibility API answers `error` with: 409 for
/// `not-joined`/`has-left`, 404 `unknown-peer`, 422 `invalid-report`, 400
/// the other `invalid-*` and `bad-message`, 503 `unavailable`, 500 `corrupt-ledger`/`internal`.
pub fn status_code(error: &ControlError) -> u16 {
    match error {
        ControlError::NotJoined | ControlError::HasLeft => 409,
        ControlError::UnknownPeer(_) => 404,
        // Well-formed but refused (a report about the node itself): not
        // 400, which the API keeps for requests that break its document.
        ControlError::InvalidReport(_) => 422,
        ControlError::InvalidAddress(_)
        | ControlError::InvalidSubscriber(_)
        | ControlError::InvalidConfig(_)
        | ControlError::BadMessage(_) => 400,
        ControlError::Unavailable(_) => 503,
        ControlError::CorruptLedger(_) | ControlError::Internal(_) => 500,
    }
}

/// The error an error response stands for: the body when it is a
/// `ControlError` document, otherwise [`from_status`].
pub fn from_response(status: u16, body: &str) -> ControlError {
    if let Ok(error) = serde_json::from_str::<ControlError>(body) {
        return error;
    }
    from_status(
        status,
        format!(
            "HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        ),
    )
}

/// The error a bare status stands for, when the body is not a
/// `ControlError` document (`detail` says what came back). The inverse of
/// [`status_code`] by status class; any other 5xx (a gateway, a crashed
/// server) means the control plane cannot be reached, so `unavailable`.
pub fn from_status(status: u16, detail: String) -> ControlError {
    match status {
        409 => ControlError::NotJoined,
        404 => ControlError::UnknownPeer(detail),
        422 => ControlError::InvalidReport(detail),
        400 => ControlError::InvalidConfig(detail),
        500..=599 => ControlError::Unavailable(detail),
        _ => ControlError::Internal(detail),
    }
}

/// Turns a failed ureq call into the control-plane error it stands for.
pub(crate) fn from_ureq(what: &str, error: ureq::Error) -> ControlError {
    match error {
        ureq::Error::Status(status, response) => {
            let body = response.into_string().unwrap_or_default();
            from_response(status, &body)
        }
        ureq::Error::Transport(transport) => {
            ControlError::Unavailable(format!("{what}: {transport}"))
        }
    }
}

/// A response body that did not parse: the agent is not speaking the
/// protocol, which the caller cannot fix, so it is `Unavailable`.
pub(crate) fn bad_body(what: &str, error: impl std::fmt::Display) -> ControlError {
    ControlError::Unavailable(format!("{what}: unexpected response: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<ControlError> {
        let d = || "detail".to_string();
        vec![
            ControlError::NotJoined,
            ControlError::HasLeft,
            ControlError::InvalidAddress(d()),
            ControlError::UnknownPeer(d()),
            ControlError::InvalidReport(d()),
            ControlError::InvalidSubscriber(7),
            ControlError::InvalidConfig(d()),
            ControlError::BadMessage(d()),
            ControlError::Unavailable(d()),
            ControlError::CorruptLedger(d()),
            ControlError::Internal(d()),
        ]
    }

    #[test]
    fn statuses_follow_the_documented_table() {
        let statuses: Vec<u16> = every_kind().iter().map(status_code).collect();
        assert_eq!(
            statuses,
            vec![409, 409, 400, 404, 422, 400, 400, 400, 503, 500, 500]
        );
    }

    #[test]
    fn every_error_survives_the_round_trip() {
        for error in every_kind() {
            let body = serde_json::to_string(&error).unwrap();
            assert_eq!(from_response(status_code(&error), &body), error);
        }
    }

    #[test]
    fn control_error_bodies_round_trip() {
        assert_eq!(
            from_response(409, r#"{"error":"not-joined"}"#),
            ControlError::NotJoined
        );
        assert_eq!(
            from_response(404, r#"{"error":"unknown-peer","detail":"x"}"#),
            ControlError::UnknownPeer("x".into())
        );
        assert_eq!(
            from_response(503, r#"{"error":"unavailable","detail":"swapping"}"#),
            ControlError::Unavailable("swapping".into())
        );
    }

    #[test]
    fn other_bodies_map_by_status() {
        assert!(matches!(
            from_response(502, "bad gateway"),
            ControlError::Unavailable(_)
        ));
        assert!(matches!(
            from_response(404, "no route"),
            ControlError::UnknownPeer(_)
        ));
        assert!(matches!(from_response(418, ""), ControlError::Internal(_)));
        for error in every_kind() {
            let status = status_code(&error);
            let bare = from_status(status, String::new());
            assert_eq!(status_code(&bare) / 100, status / 100, "{error:?}");
        }
    }
}
