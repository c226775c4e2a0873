//! Ringback's load tool and page-load benchmark. A client of the server over the network: it
//! uses the server's library only for the publish client and the process's own statistics, and
//! opens the hostile clients of `test-support` (which the server's attack tests open too).
//!
//! - [`load`]: `ringback-bench load`, N subscribers and a publisher at a fixed rate.
//! - [`attack`]: `ringback-bench load --attack`, hostile clients beside the subscribers.
//! - [`pageload`]: `ringback-bench pageload`, page loads over HTTP/2 with and without push.
//! - [`fleet`]: `ringback-bench fleet`, browsers and a publisher through a deploy or a crash
//!   behind a load balancer.

pub mod args;
pub mod attack;
pub mod fleet;
pub mod floor;
pub mod histogram;
pub mod load;
pub mod pageload;
