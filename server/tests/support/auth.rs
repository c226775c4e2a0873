//! The test's shared secret, tokens signed with it, and a server that wants them.
#![allow(clippy::unwrap_used)]

use super::server::config;
use ringback::config::ServeArgs;

/// The HS256 key of [`private_config`]'s servers.
pub const SECRET: &str = "integration-test-secret";

/// A JWT signed with [`SECRET`].
pub fn hs256(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// An hour from now, as a JWT `exp`.
pub fn later() -> u64 {
    jsonwebtoken::get_current_timestamp() + 3600
}

/// A configuration with JWT keys (HS256 [`SECRET`], the fixture RS256 key) and `secret-*`
/// private.
pub fn private_config() -> ServeArgs {
    let mut cfg = config();
    cfg.auth.jwt_secret = Some(SECRET.into());
    cfg.auth.jwt_public_key =
        Some(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt-rs256.pub").into());
    cfg.auth.private_channels = vec!["secret-*".into()];
    cfg
}
