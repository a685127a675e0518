//! Who may call `/api/v1/` (pure). With `api.token` set, every request must carry
//! `Authorization: Bearer TOKEN` (compared in constant time), on any listener. Without one, only
//! a listener bound to a loopback address answers: anyone who can reach it is on this host.

use crate::config::ApiToken;

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token configured and the listener is reachable from other hosts: 403.
    NonLoopbackWithoutToken,
    /// A token is configured and the request carries no bearer token: 401.
    MissingToken,
    /// A token is configured and the request's is another: 401.
    WrongToken,
}

impl Refusal {
    pub fn status(self) -> http::StatusCode {
        match self {
            Refusal::NonLoopbackWithoutToken => http::StatusCode::FORBIDDEN,
            Refusal::MissingToken | Refusal::WrongToken => http::StatusCode::UNAUTHORIZED,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::NonLoopbackWithoutToken => {
                "the API is refused on a listener that is not loopback unless api.token is set"
            }
            Refusal::MissingToken => "send Authorization: Bearer <api.token>",
            Refusal::WrongToken => "wrong bearer token",
        }
    }
}

/// Decides one request: `loopback` is whether its listener is bound to a loopback address,
/// `authorization` the raw `Authorization` header, if any.
pub fn check(
    token: &ApiToken,
    loopback: bool,
    authorization: Option<&[u8]>,
) -> Result<(), Refusal> {
    if !token.is_set() {
        return if loopback {
            Ok(())
        } else {
            Err(Refusal::NonLoopbackWithoutToken)
        };
    }
    let presented = authorization
        .and_then(bearer)
        .ok_or(Refusal::MissingToken)?;
    if token.matches(presented) {
        Ok(())
    } else {
        Err(Refusal::WrongToken)
    }
}

/// The credentials of `Bearer <token>` (RFC 6750 §2.1; the scheme is case-insensitive).
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_rule() {
        let none = ApiToken::default();
        assert_eq!(check(&none, true, None), Ok(()));
        assert_eq!(check(&none, true, Some(b"Bearer whatever")), Ok(()));
        assert_eq!(
            check(&none, false, None),
            Err(Refusal::NonLoopbackWithoutToken)
        );
        assert_eq!(
            check(&none, false, Some(b"Bearer whatever")),
            Err(Refusal::NonLoopbackWithoutToken)
        );
        let t = ApiToken::new("0123456789abcdef");
        for loopback in [true, false] {
            assert_eq!(check(&t, loopback, None), Err(Refusal::MissingToken));
            assert_eq!(
                check(&t, loopback, Some(b"Basic abc")),
                Err(Refusal::MissingToken)
            );
            assert_eq!(
                check(&t, loopback, Some(b"Bearer")),
                Err(Refusal::MissingToken)
            );
            assert_eq!(
                check(&t, loopback, Some(b"Bearer 0123456789abcdeX")),
                Err(Refusal::WrongToken)
            );
            assert_eq!(
                check(&t, loopback, Some(b"Bearer 0123456789abcdef")),
                Ok(())
            );
            assert_eq!(
                check(&t, loopback, Some(b"bearer  0123456789abcdef ")),
                Ok(())
            );
        }
        assert_eq!(Refusal::WrongToken.status(), 401);
        assert_eq!(Refusal::NonLoopbackWithoutToken.status(), 403);
    }
}
