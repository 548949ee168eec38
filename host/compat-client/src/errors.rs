//! Mapping HTTP outcomes back to [`ControlError`].

use nodeplane_interface::ControlError;

/// Turns a failed ureq call into the control-plane error it stands for.
pub(crate) fn from_ureq(what: &str, error: ureq::Error) -> ControlError {
    match error {
        ureq::Error::Status(status, response) => {
            let body = response.into_string().unwrap_or_default();
            from_status(status, &body)
        }
        ureq::Error::Transport(transport) => {
            ControlError::Unavailable(format!("{what}: {transport}"))
        }
    }
}

/// The error an error response stands for: the body when it is a
/// `ControlError` document, otherwise an error derived from the status.
pub(crate) fn from_status(status: u16, body: &str) -> ControlError {
    if let Ok(error) = serde_json::from_str::<ControlError>(body) {
        return error;
    }
    let detail = format!(
        "HTTP {status}: {}",
        body.chars().take(200).collect::<String>()
    );
    match status {
        409 => ControlError::NotJoined,
        404 => ControlError::UnknownPeer(detail),
        400 => ControlError::InvalidConfig(detail),
        500..=599 => ControlError::Unavailable(detail),
        _ => ControlError::Internal(detail),
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

    #[test]
    fn control_error_bodies_round_trip() {
        assert_eq!(
            from_status(409, r#"{"error":"not-joined"}"#),
            ControlError::NotJoined
        );
        assert_eq!(
            from_status(404, r#"{"error":"unknown-peer","detail":"x"}"#),
            ControlError::UnknownPeer("x".into())
        );
        assert_eq!(
            from_status(503, r#"{"error":"unavailable","detail":"swapping"}"#),
            ControlError::Unavailable("swapping".into())
        );
    }

    #[test]
    fn other_bodies_map_by_status() {
        assert!(matches!(
            from_status(502, "bad gateway"),
            ControlError::Unavailable(_)
        ));
        assert!(matches!(
            from_status(404, "no route"),
            ControlError::UnknownPeer(_)
        ));
        assert!(matches!(from_status(418, ""), ControlError::Internal(_)));
    }
}
