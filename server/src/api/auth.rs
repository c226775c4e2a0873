//! Who may publish, and who may read private channels: bearer tokens and JWTs.
//!
//! **Publishing.** With `--publish-token` (one or more) or a JWT key (`--jwt-secret` for HS256,
//! `--jwt-public-key` for RS256) configured, `POST /messages` requires `Authorization: Bearer
//! <credential>`: one of the tokens (any channel), or a JWT whose `ringback.publish` claim lists
//! the channel. Without any, publishing is open (the embedded default on a developer's machine;
//! docs/security.md says to configure them). A missing or bad credential is a
//! `401`; a valid JWT that does not list the channel is a `403`. Redis `PUBLISH` is not checked
//! here: access to Redis is that publisher's credential.
//!
//! **Reading.** Channels matching `--private-channels` are private: a subscriber reads one only
//! with a JWT whose `ringback.subscribe` claim lists it, carried in the `ringback_token` cookie
//! (EventSource cannot set headers), a `token` query parameter, or `Authorization: Bearer`.
//! Public channels need nothing. A credential that is present but bad is a `401`, so an expired
//! token is told, not silently downgraded to the public feed.
//!
//! ```json
//! {"sub": "alice", "exp": 1790000000, "ringback": {"publish": ["blue"], "subscribe": ["team-*"]}}
//! ```
//!
//! Channel lists are patterns: a name, a prefix ending in `*` (`team-*`), or `*` for all.
//! `exp` is required (a token that never expires cannot be taken back); `nbf` and `aud` (with
//! `--jwt-audience`) are checked when present. The algorithm is fixed by the key that is
//! configured, never chosen by the token (no `alg: none`, no HS256-with-the-public-key).
//!
//! Tokens are compared by their SHA-256 digests in constant time, so neither a token's bytes nor
//! its length leak through timing. No credential is ever logged.

use crate::config::AuthArgs;
use crate::feed::channels::ChannelSet;
use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The cookie a browser carries its subscriber JWT in.
pub const TOKEN_COOKIE: &str = "ringback_token";

/// What configures [`Auth`]: the flags ([`AuthArgs`]), with the key file read.
#[derive(Clone, Debug, Default)]
pub struct AuthSettings {
    pub publish_tokens: Vec<String>,
    /// HS256 key.
    pub jwt_secret: Option<String>,
    /// RS256 public key, PEM.
    pub jwt_public_key: Option<Vec<u8>>,
    /// Required `aud`, if any.
    pub jwt_audience: Option<String>,
    pub private_channels: Vec<String>,
}

/// The configured credentials and the private channels.
#[derive(Clone, Default)]
pub struct Auth {
    digests: Vec<Vec<u8>>,
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    audience: Option<String>,
    private: ChannelSet,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Auth({} tokens, hs256: {}, rs256: {}, private: {:?})",
            self.digests.len(),
            self.hs256.is_some(),
            self.rs256.is_some(),
            self.private
        )
    }
}

/// Why a request was refused. `Forbidden` is a `403`, the others `401`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("publishing requires `Authorization: Bearer <token>`")]
    Missing,
    #[error("the credential is not valid: {0}")]
    Invalid(&'static str),
    #[error("the credential does not allow {action} channel `{channel}`")]
    Forbidden {
        action: &'static str,
        channel: String,
    },
}

/// A publisher who passed [`Auth::publisher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publisher {
    /// Names the credential for the publish rate limit: a token's index, a JWT's `sub` (or its
    /// digest), or `None` when publishing is open (the client's address is used then).
    pub credential: Option<String>,
    channels: ChannelSet,
}

impl Publisher {
    /// `Ok` when this publisher may publish to `channel`.
    pub fn check(&self, channel: &str) -> Result<(), AuthError> {
        if self.channels.contains(channel) {
            Ok(())
        } else {
            Err(AuthError::Forbidden {
                action: "publishing to",
                channel: channel.to_owned(),
            })
        }
    }
}

/// What a subscriber's credential grants: the private channels it may read, and until when
/// (the JWT's `exp`, Unix ms; `None` without a token).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reader {
    pub grants: ChannelSet,
    pub expires: Option<u64>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    /// Required by the validation (a token without one is refused as such, not as malformed);
    /// kept so a stream ends when its token does.
    exp: Option<u64>,
    #[serde(default)]
    ringback: Grants,
}

#[derive(Deserialize, Default)]
struct Grants {
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

impl Auth {
    /// From the flags: reads the RS256 key file, if one is named.
    pub fn from_args(args: &AuthArgs) -> Result<Self, String> {
        let jwt_public_key = args
            .jwt_public_key
            .as_ref()
            .map(|path| {
                std::fs::read(path)
                    .map_err(|e| format!("cannot read --jwt-public-key {}: {e}", path.display()))
            })
            .transpose()?;
        Auth::new(&AuthSettings {
            publish_tokens: args.publish_token.clone(),
            jwt_secret: args.jwt_secret.clone(),
            jwt_public_key,
            jwt_audience: args.jwt_audience.clone(),
            private_channels: args.private_channels.clone(),
        })
    }

    pub fn new(settings: &AuthSettings) -> Result<Self, String> {
        let hs256 = settings
            .jwt_secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| DecodingKey::from_secret(s.as_bytes()));
        let rs256 = settings
            .jwt_public_key
            .as_deref()
            .map(|pem| {
                DecodingKey::from_rsa_pem(pem)
                    .map_err(|e| format!("--jwt-public-key is not an RSA public key (PEM): {e}"))
            })
            .transpose()?;
        let private = ChannelSet::parse(&settings.private_channels)
            .map_err(|e| format!("--private-channels: {e}"))?;
        if !private.is_empty() && hs256.is_none() && rs256.is_none() {
            return Err(
                "--private-channels needs a JWT key (--jwt-secret or --jwt-public-key): \
                 without one, nobody could read them"
                    .into(),
            );
        }
        Ok(Auth {
            digests: settings
                .publish_tokens
                .iter()
                .filter(|t| !t.is_empty())
                .map(|t| crate::encoding::digest::sha256(t.as_bytes()))
                .collect(),
            hs256,
            rs256,
            audience: settings.jwt_audience.clone(),
            private,
        })
    }

    /// Open publishing: no token and no JWT key configured.
    pub fn is_open(&self) -> bool {
        self.digests.is_empty() && self.hs256.is_none() && self.rs256.is_none()
    }

    /// The private channels.
    pub fn private(&self) -> &ChannelSet {
        &self.private
    }

    /// Checks a publish request's `Authorization` header (before its body is read).
    pub fn publisher(&self, headers: &HeaderMap) -> Result<Publisher, AuthError> {
        if self.is_open() {
            return Ok(Publisher {
                credential: None,
                channels: ChannelSet::all(),
            });
        }
        let token = bearer(headers).ok_or(AuthError::Missing)?;
        let digest = crate::encoding::digest::sha256(token.as_bytes());
        // Every configured token is compared, whichever matches, in constant time.
        let matched = self.digests.iter().enumerate().fold(None, |found, (i, d)| {
            if constant_time_eq(d, &digest) {
                Some(i)
            } else {
                found
            }
        });
        if let Some(i) = matched {
            return Ok(Publisher {
                credential: Some(format!("token#{i}")),
                channels: ChannelSet::all(),
            });
        }
        if !looks_like_jwt(token) {
            return Err(AuthError::Invalid("unknown token"));
        }
        let claims = self.decode(token)?;
        let channels = ChannelSet::parse(&claims.ringback.publish)
            .map_err(|_| AuthError::Invalid("bad channel pattern in the `ringback` claim"))?;
        let credential = match claims.sub {
            Some(sub) => format!("sub:{sub}"),
            None => format!("jwt:{}", hex8(&digest)),
        };
        Ok(Publisher {
            credential: Some(credential),
            channels,
        })
    }

    /// The private channels a subscriber may read: from its JWT (the `token` query parameter,
    /// then `Authorization: Bearer`, then the cookie), or none without one.
    ///
    /// Without private channels no credential is looked at. With them, a bad token given on
    /// purpose (query or header) is refused. A bad *cookie* reads as no credential: a browser
    /// sends its cookie on its own, often after it expired, and the public feed must not break
    /// for it (an EventSource refused once never retries).
    pub fn reader(
        &self,
        query_token: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Reader, AuthError> {
        if self.private.is_empty() {
            // Nothing a credential could grant: the feed is all public, so a client that sends
            // one anyway (an app's `Authorization` on every request, its publish token) is not
            // refused for it.
            return Ok(Reader::default());
        }
        let explicit = query_token
            .or_else(|| bearer(headers))
            .filter(|t| !t.is_empty());
        if let Some(token) = explicit {
            return self.grants(token);
        }
        match crate::encoding::cookie::values(headers, TOKEN_COOKIE).find(|t| !t.is_empty()) {
            Some(token) => Ok(self.grants(token).unwrap_or_else(|e| {
                tracing::debug!(error = %e, "subscriber cookie not accepted; public channels only");
                Reader::default()
            })),
            None => Ok(Reader::default()),
        }
    }

    fn grants(&self, token: &str) -> Result<Reader, AuthError> {
        let claims = self.decode(token)?;
        let grants = ChannelSet::parse(&claims.ringback.subscribe)
            .map_err(|_| AuthError::Invalid("bad channel pattern in the `ringback` claim"))?;
        Ok(Reader {
            grants,
            expires: claims.exp.map(|exp| exp.saturating_mul(1000)),
        })
    }

    fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid("malformed JWT"))?;
        // The key decides the algorithm; the token's `alg` only selects among configured keys.
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        }
        .ok_or(AuthError::Invalid("JWT algorithm not accepted"))?;
        let mut validation = Validation::new(header.alg);
        validation.validate_nbf = true;
        // A credential is honoured for its lifetime only: no grace after `exp` (the library's
        // default is a minute), as a stream it opened ends at `exp` too.
        validation.leeway = 0;
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                AuthError::Invalid(match e.kind() {
                    ErrorKind::ExpiredSignature => "JWT expired",
                    ErrorKind::ImmatureSignature => "JWT not yet valid",
                    ErrorKind::InvalidSignature => "JWT signature does not verify",
                    ErrorKind::InvalidAudience => "JWT audience not accepted",
                    ErrorKind::MissingRequiredClaim(_) => "JWT has no `exp`",
                    _ => "malformed JWT",
                })
            })
    }
}

/// `Authorization: Bearer <token>`'s token.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
}

fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

fn hex8(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "test-secret-of-some-length";

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    fn auth(settings: AuthSettings) -> Auth {
        Auth::new(&settings).unwrap()
    }

    fn hs256(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn in_an_hour() -> u64 {
        jsonwebtoken::get_current_timestamp() + 3600
    }

    #[test]
    fn channel_patterns() {
        let set = ChannelSet::parse(&["blue", "team-*"]).unwrap();
        assert!(set.contains("blue"));
        assert!(set.contains("team-a"));
        assert!(set.contains("team-"));
        assert!(!set.contains("blue2"));
        assert!(!set.contains("red"));
        assert!(ChannelSet::parse(&["*"]).unwrap().contains("anything"));
        assert!(ChannelSet::parse(&["a b"]).is_err());
        assert!(ChannelSet::parse(&["a*b"]).is_err());
        assert!(ChannelSet::parse::<&str>(&[]).unwrap().is_empty());
    }

    #[test]
    fn open_without_credentials() {
        let open = auth(AuthSettings::default());
        assert!(open.is_open());
        let p = open.publisher(&HeaderMap::new()).unwrap();
        assert_eq!(p.credential, None);
        assert_eq!(p.check("anything"), Ok(()));
        assert!(auth(AuthSettings {
            publish_tokens: vec![String::new()],
            ..Default::default()
        })
        .is_open());
    }

    #[test]
    fn bearer_tokens() {
        let auth = auth(AuthSettings {
            publish_tokens: vec!["s3cret".into(), "other".into()],
            ..Default::default()
        });
        let check = |v: &str| auth.publisher(&with(header::AUTHORIZATION, v));
        assert_eq!(auth.publisher(&HeaderMap::new()), Err(AuthError::Missing));
        assert_eq!(check("Basic s3cret"), Err(AuthError::Missing));
        assert!(matches!(check("Bearer nope"), Err(AuthError::Invalid(_))));
        assert!(matches!(check("Bearer s3cre"), Err(AuthError::Invalid(_))));
        assert_eq!(
            check("Bearer s3cret").unwrap().credential.as_deref(),
            Some("token#0")
        );
        assert_eq!(
            check("bearer  other ").unwrap().credential.as_deref(),
            Some("token#1")
        );
        assert!(!format!("{auth:?}").contains("s3cret"));
    }

    #[test]
    fn without_private_channels_readers_need_and_are_refused_no_credential() {
        let auth = auth(AuthSettings {
            publish_tokens: vec!["s3cret".into()],
            jwt_secret: Some(SECRET.into()),
            ..Default::default()
        });
        for headers in [
            HeaderMap::new(),
            with(header::AUTHORIZATION, "Bearer s3cret"),
            with(header::AUTHORIZATION, "Bearer not-a-jwt"),
        ] {
            assert!(auth.reader(None, &headers).unwrap().grants.is_empty());
        }
        assert!(auth
            .reader(Some("garbage"), &HeaderMap::new())
            .unwrap()
            .grants
            .is_empty());
    }

    #[test]
    fn jwt_publish_claims() {
        let auth = auth(AuthSettings {
            jwt_secret: Some(SECRET.into()),
            ..Default::default()
        });
        assert!(!auth.is_open());
        let token = hs256(
            json!({"sub": "alice", "exp": in_an_hour(), "ringback": {"publish": ["blue", "team-*"]}}),
            SECRET,
        );
        let p = auth
            .publisher(&with(header::AUTHORIZATION, &format!("Bearer {token}")))
            .unwrap();
        assert_eq!(p.credential.as_deref(), Some("sub:alice"));
        assert_eq!(p.check("blue"), Ok(()));
        assert_eq!(p.check("team-x"), Ok(()));
        assert!(matches!(p.check("red"), Err(AuthError::Forbidden { .. })));

        let refused = |token: String| {
            auth.publisher(&with(header::AUTHORIZATION, &format!("Bearer {token}")))
                .unwrap_err()
        };
        let claims = json!({"exp": in_an_hour(), "ringback": {"publish": ["*"]}});
        assert_eq!(
            refused(hs256(claims.clone(), "another-secret")),
            AuthError::Invalid("JWT signature does not verify")
        );
        assert_eq!(
            refused(hs256(
                json!({"exp": 1000, "ringback": {"publish": ["*"]}}),
                SECRET
            )),
            AuthError::Invalid("JWT expired")
        );
        assert_eq!(
            refused(hs256(json!({"ringback": {"publish": ["*"]}}), SECRET)),
            AuthError::Invalid("JWT has no `exp`")
        );
        assert_eq!(
            refused(hs256(
                json!({"exp": in_an_hour(), "nbf": in_an_hour(), "ringback": {"publish": ["*"]}}),
                SECRET
            )),
            AuthError::Invalid("JWT not yet valid")
        );
        // `alg: none` and algorithms without a configured key are refused.
        let none = format!(
            "{}.{}.",
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0",
            "eyJleHAiOjQwMDAwMDAwMDAsInJpbmdiYWNrIjp7InB1Ymxpc2giOlsiKiJdfX0"
        );
        assert!(matches!(refused(none), AuthError::Invalid(_)));
        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            refused(hs384),
            AuthError::Invalid("JWT algorithm not accepted")
        );
    }

    #[test]
    fn readers_carry_jwts_three_ways() {
        let auth = auth(AuthSettings {
            jwt_secret: Some(SECRET.into()),
            private_channels: vec!["secret-*".into()],
            ..Default::default()
        });
        assert!(auth.private().contains("secret-a"));
        let token = hs256(
            json!({"exp": in_an_hour(), "ringback": {"subscribe": ["secret-a"]}}),
            SECRET,
        );
        let none = auth.reader(None, &HeaderMap::new()).unwrap();
        assert!(none.grants.is_empty());
        assert_eq!(none.expires, None);
        for grants in [
            auth.reader(Some(&token), &HeaderMap::new()).unwrap(),
            auth.reader(
                None,
                &with(header::AUTHORIZATION, &format!("Bearer {token}")),
            )
            .unwrap(),
            auth.reader(
                None,
                &with(
                    header::COOKIE,
                    &format!("theme=dark; {TOKEN_COOKIE}={token}"),
                ),
            )
            .unwrap(),
        ] {
            assert!(grants.grants.contains("secret-a"));
            assert!(!grants.grants.contains("secret-b"));
            assert_eq!(
                grants.expires,
                Some(in_an_hour() * 1000),
                "the token's `exp`"
            );
        }
        assert!(auth.reader(Some("garbage"), &HeaderMap::new()).is_err());
        let expired = hs256(
            json!({"exp": 1000, "ringback": {"subscribe": ["*"]}}),
            SECRET,
        );
        let bearer = format!("Bearer {expired}");
        assert!(auth
            .reader(None, &with(header::AUTHORIZATION, &bearer))
            .is_err());
        // A stale cookie falls back to the public channels rather than refusing the stream.
        let stale = with(header::COOKIE, &format!("{TOKEN_COOKIE}={expired}"));
        assert!(auth.reader(None, &stale).unwrap().grants.is_empty());
        // No grace after `exp`: a token that expired a second ago is refused.
        let just_expired = hs256(
            json!({"exp": app::time::unix_now() / 1000 - 1, "ringback": {"subscribe": ["*"]}}),
            SECRET,
        );
        assert!(auth.reader(Some(&just_expired), &HeaderMap::new()).is_err());
    }

    #[test]
    fn rs256_with_a_public_key() {
        let auth = auth(AuthSettings {
            jwt_public_key: Some(include_bytes!("../../tests/fixtures/jwt-rs256.pub").to_vec()),
            ..Default::default()
        });
        let private =
            EncodingKey::from_rsa_pem(include_bytes!("../../tests/fixtures/jwt-rs256.key"))
                .unwrap();
        let claims = json!({"exp": in_an_hour(), "ringback": {"publish": ["blue"]}});
        let token = encode(&Header::new(Algorithm::RS256), &claims, &private).unwrap();
        let p = auth
            .publisher(&with(header::AUTHORIZATION, &format!("Bearer {token}")))
            .unwrap();
        assert_eq!(p.check("blue"), Ok(()));
        // An HS256 token "signed" with the public key's text is not accepted (alg confusion).
        let forged = hs256(claims, include_str!("../../tests/fixtures/jwt-rs256.pub"));
        assert_eq!(
            auth.publisher(&with(header::AUTHORIZATION, &format!("Bearer {forged}")))
                .unwrap_err(),
            AuthError::Invalid("JWT algorithm not accepted")
        );
    }

    #[test]
    fn private_channels_need_a_key() {
        assert!(Auth::new(&AuthSettings {
            private_channels: vec!["x".into()],
            ..Default::default()
        })
        .is_err());
        assert!(Auth::new(&AuthSettings {
            jwt_public_key: Some(b"not a key".to_vec()),
            ..Default::default()
        })
        .is_err());
    }
}
