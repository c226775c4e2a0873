//! Who may publish: bearer tokens.
//!
//! With `--publish-token` set (one or more, comma-separated), `POST /messages` requires
//! `Authorization: Bearer <token>` naming one of them; without it, publishing is open (the
//! embedded default on a developer's machine: the README's production section says to set it).
//! Redis `PUBLISH` is not checked here: access to Redis is that publisher's credential.
//!
//! Tokens are compared by their SHA-256 digests in constant time, so neither a token's bytes nor
//! its length leak through timing. No token is ever logged.

use axum::http::{header, HeaderMap};

/// The configured publish tokens, kept as digests.
#[derive(Clone, Default)]
pub struct PublishAuth {
    digests: Vec<Vec<u8>>,
}

impl std::fmt::Debug for PublishAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublishAuth({} tokens)", self.digests.len())
    }
}

/// Why a publish was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("publishing requires `Authorization: Bearer <token>`")]
    Missing,
    #[error("the publish token is not valid")]
    Invalid,
}

impl PublishAuth {
    /// Open publishing when `tokens` is empty (empty strings are ignored).
    pub fn new<S: AsRef<str>>(tokens: &[S]) -> Self {
        PublishAuth {
            digests: tokens
                .iter()
                .map(AsRef::as_ref)
                .filter(|t| !t.is_empty())
                .map(|t| crate::assets::sha256(t.as_bytes()))
                .collect(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.digests.is_empty()
    }

    /// Checks a request's `Authorization` header.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        if self.is_open() {
            return Ok(());
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or(AuthError::Missing)?;
        let digest = crate::assets::sha256(token.as_bytes());
        // Every configured token is compared, whichever matches, in constant time.
        let matched = self
            .digests
            .iter()
            .fold(false, |any, d| any | constant_time_eq(d, &digest));
        if matched {
            Ok(())
        } else {
            Err(AuthError::Invalid)
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn open_without_tokens() {
        let auth = PublishAuth::new::<&str>(&[]);
        assert!(auth.is_open());
        assert_eq!(auth.check(&HeaderMap::new()), Ok(()));
        assert!(PublishAuth::new(&[""]).is_open());
    }

    #[test]
    fn bearer_tokens() {
        let auth = PublishAuth::new(&["s3cret", "other"]);
        assert_eq!(auth.check(&HeaderMap::new()), Err(AuthError::Missing));
        assert_eq!(auth.check(&with("Basic s3cret")), Err(AuthError::Missing));
        assert_eq!(auth.check(&with("Bearer nope")), Err(AuthError::Invalid));
        assert_eq!(auth.check(&with("Bearer s3cre")), Err(AuthError::Invalid));
        assert_eq!(auth.check(&with("Bearer s3cret")), Ok(()));
        assert_eq!(auth.check(&with("bearer  other ")), Ok(()));
        assert!(!format!("{auth:?}").contains("s3cret"));
    }
}
