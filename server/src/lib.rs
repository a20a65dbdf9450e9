//! popdb-server: the `popdb` binary's library. It serves a Db over PopDB's binary protocol
//! (docs/protocol.md, crate popdb-protocol) with tokio, plus a Prometheus and health
//! endpoint over HTTP.
//!
//! - [`Backend`] is the one interface the request path goes through (writes, linearizable
//!   and bounded-staleness reads, DDL, stats); [`DbBackend`] implements it for the embedded
//!   Db, and a replicated node will implement it in front of Raft.
//! - connection.rs serves one connection (handshake, pipelining, flow control, timeouts);
//!   point_queue.rs logs the puts and deletes of every connection together; request.rs
//!   answers one request; scan.rs cuts scan pages; cursors.rs keeps the read
//!   views cursors continue from; convert.rs maps the Db's types and errors to the wire's.
//! - server.rs wires it together and shuts down cleanly; config.rs holds the flags and the
//!   config file; metrics.rs and http.rs serve `/metrics` and `/health`.

#![forbid(unsafe_code)]

mod backend;
mod config;
mod connection;
mod convert;
mod cursors;
mod http;
mod metrics;
mod point_queue;
mod request;
mod scan;
mod server;

pub use backend::{Backend, DbBackend, Health, ReadConsistency};
pub use config::{Cli, Command, Config, ServeArgs, SyncPolicy};
pub use convert::db_error;
pub use server::{run, serve};
