//! wisp-bench: replays the brief's traffic model against a Wisp deployment
//! and turns the model into a bill of machines. It speaks to servers only
//! through the SDK (`wisp-client`), as any client would.
//!
//! # Layout
//! - [`run`]: the swarm (users registered, befriended in circles of six,
//!   logged in over the nodes), phases of traffic at a rate, exactly-once
//!   accounting, latency histograms, and the search for the highest rate
//!   held.
//! - [`json`]: the `run --json` objects, typed (a public contract).
//! - [`server_usage`]: the servers' memory and CPU sampled during a run
//!   (`--server-pid`), over [`proc`], which reads them from Linux's `/proc`.
//! - [`redis_stats`]: what the Redis servers behind a cluster did per
//!   message (`--redis`), from `INFO commandstats` and `INFO cpu`.
//! - [`idle`]: many idle logged-in users and the server memory each costs.
//! - [`plan`]: the brief's traffic model, storage sizes and machines.
//! - [`report`]: the SVG report of a run.

pub mod idle;
pub mod json;
pub mod plan;
pub mod proc;
pub mod redis_stats;
pub mod report;
pub mod run;
pub mod server_usage;
