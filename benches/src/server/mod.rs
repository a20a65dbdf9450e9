//! `popdb-bench server`: the `popdb` server against redis-server over loopback, each in its
//! own process, driven at the same concurrency, pipeline depth, value size, key space and
//! request count (PopDB by a load generator that drives it as redis-benchmark drives
//! Redis, Redis by `redis-benchmark`), interleaved, reported as median ratios. The hidden
//! `serve-popdb` subcommand is the PopDB process: this binary again, on the `popdb`
//! binary's entry point.

mod args;
mod cpu;
mod driver;
mod load;
mod popdb_side;
mod redis_side;
mod settings;

pub use args::ServerArgs;
pub use driver::run;
pub use popdb_side::serve as serve_popdb;
