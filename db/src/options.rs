//! How a Db is opened, and how one write is made durable.

use std::time::Duration;

use std::sync::Arc;

use popdb_io::{Clock, FsRef, RealFs, SystemClock};
use popdb_wal::WalOptions;

/// Whether a write is durable before it is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// On the medium before the write returns (group-committed: one fdatasync serves every
    /// write waiting at that moment). The default.
    #[default]
    Sync,
    /// Written to the operating system before it returns, made durable by the next sync
    /// (another write's, the Db's background sync, a checkpoint). A crash of the machine
    /// may lose it; its LSN is never handed out again.
    NoSync,
}

/// Options of [`crate::Db::open`]. Every field has a documented default.
#[derive(Clone, Debug)]
pub struct DbOptions {
    /// The file system (the real one by default; tests pass a simulated one).
    pub fs: FsRef,
    /// The clock that times checkpoints and recovery (the log gets it too).
    pub clock: Arc<dyn Clock>,
    /// The log's options. The Db sets the sync policy itself (each write says what it
    /// needs, [`Durability`]); segment size and limits are taken from here.
    pub wal: WalOptions,
    /// How writes are made durable unless a write says otherwise. Default
    /// [`Durability::Sync`].
    pub durability: Durability,
    /// Bytes of the one block cache every LSM table reads through. Default 64 MiB.
    pub block_cache_bytes: usize,
    /// The template every LSM table's options start from (the Db sets the fields that
    /// belong to the table: compression, bloom bits, the shared cache, log-backed mode).
    pub lsm: popdb_lsm::TreeOptions,
    /// Roots each B+tree table retains for read views at older LSNs. Default 8.
    pub btree_roots_retained: usize,
    /// A background checkpoint starts once this many bytes were logged since the last.
    /// Default 64 MiB.
    pub checkpoint_log_bytes: u64,
    /// A background checkpoint starts once the last is this old and anything was written.
    /// Default 60 s.
    pub checkpoint_interval: Duration,
    /// A background checkpoint starts once memtables and B+tree in-memory pages pass this
    /// many bytes. Default 256 MiB.
    pub memory_budget: u64,
    /// Whether the Db runs its background thread (flushes, compactions, checkpoints, the
    /// sync of no-sync writes). Default true; tests turn it off and call
    /// [`crate::Db::maintenance_step`] and [`crate::Db::checkpoint`] themselves.
    pub background: bool,
    /// How often the background thread looks for work and syncs no-sync writes. Default
    /// 20 ms.
    pub background_interval: Duration,
    /// Bytes set aside at open in the data directory's `RESERVE` file and released at the
    /// next open, so that recovery and its checkpoint can run on a disk that filled up.
    /// If they cannot be set aside, the Db opens read-only and says so. Default 64 MiB; 0
    /// for none.
    pub reserve_bytes: u64,
    /// Whether a completed checkpoint purges the log below it. Default true; a replicated
    /// Db turns it off (only Raft purges its log).
    pub purge_log: bool,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            fs: Arc::new(RealFs::new()),
            clock: Arc::new(SystemClock::new()),
            wal: WalOptions::default(),
            durability: Durability::Sync,
            block_cache_bytes: 64 << 20,
            lsm: popdb_lsm::TreeOptions::default(),
            btree_roots_retained: 8,
            checkpoint_log_bytes: 64 << 20,
            checkpoint_interval: Duration::from_mins(1),
            memory_budget: 256 << 20,
            background: true,
            background_interval: Duration::from_millis(20),
            reserve_bytes: 64 << 20,
            purge_log: true,
        }
    }
}

/// Options of one write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// How the write is made durable; `None` takes the Db's [`DbOptions::durability`].
    pub durability: Option<Durability>,
}
