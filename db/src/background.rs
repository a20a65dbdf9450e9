//! The Db's one background thread: every [`crate::DbOptions::background_interval`] (or
//! when woken) it syncs no-sync writes, runs the tables' flushes and compactions, and
//! takes a checkpoint when one is due. Not a thread per table.

use std::sync::Arc;
use std::thread::JoinHandle;

use crate::db::Inner;
use crate::error::{Error, Result};

pub(crate) fn start(inner: Arc<Inner>) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("popdb-db-background".to_string())
        .spawn(move || run(&inner))
        .map_err(|e| Error::io("spawn the Db's background thread", e))
}

fn run(inner: &Inner) {
    loop {
        {
            let mut stop = inner.stop.lock();
            if *stop {
                return;
            }
            inner
                .wake
                .wait_for(&mut stop, inner.options.background_interval);
            if *stop {
                return;
            }
        }
        if let Err(error) = inner.maintenance_round() {
            *inner.background_error.lock() = Some(error);
        }
    }
}
