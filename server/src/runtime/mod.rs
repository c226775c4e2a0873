//! The bottom layer: what any part of the server may use, knowing nothing of messages or HTTP
//! handlers. Imports nothing from the crate but `config` and `metrics`.

pub mod branches;
pub mod cancel;
pub mod connection;
pub mod jitter;
pub mod lock;
pub mod log_summary;
pub mod process;
pub mod shutdown;
