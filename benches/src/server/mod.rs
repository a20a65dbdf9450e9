//! `popdb-bench server`: the `popdb` server against redis-server over loopback, each in its
//! own process, driven at the same concurrency, pipeline depth, value size, key space and
//! request count (PopDB by a pipelined popdb-client load generator, Redis by
//! `redis-benchmark`), interleaved, reported as median ratios. The hidden `serve-popdb`
//! subcommand is the PopDB process: this binary again, on the `popdb` binary's entry point.

mod args;
mod cpu;
mod driver;
mod load;
mod popdb_side;
mod redis_side;
mod settings;

/// The whole popdb-bench process's allocator, since `serve-popdb` runs the `popdb`
/// server in it: the same one the `popdb` binary declares (server/src/main.rs says why), so
/// that the benchmark measures the allocator the binary ships with. The load generator and
/// every other subcommand use it too; redis-benchmark, the load generator on the other
/// side, links jemalloc like redis-server.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use args::ServerArgs;
pub use driver::run;
pub use popdb_side::serve as serve_popdb;
