//! The integration tests, as one test binary: each linked test binary carries the whole server
//! with its dependencies (hundreds of megabytes in a debug build), so one binary instead of six
//! saves both link time and disk. The two heap-measuring tests (`churn.rs`, `stalled.rs`) stay
//! binaries of their own: their counting allocator must see no other test's allocations.

#[path = "../support/mod.rs"]
mod support;

mod access;
mod attacks;
mod compression;
mod failover;
mod faults;
mod feed;
mod fuzz_corpus;
mod http2;
mod layers;
mod lifecycle;
mod presence;
mod promises;
mod redis;
