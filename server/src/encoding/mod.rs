//! Encodings every layer reads or writes the same way, knowing nothing of the feed or of HTTP
//! handlers: SHA-256 digests and hexadecimal (asset ETags, the asset digest, token fingerprints,
//! idempotency digests), and `Cookie` header values (the auth and asset cookies). Imports
//! nothing from the crate.

pub mod cookie;
pub mod digest;
