//! End to end through the real client: the `popdb` binary on a free port, driven by
//! `popdb-client` (async and blocking): tables on both engines, puts, gets, deletes, a
//! batch across tables, a scan that follows cursors across pages, and concurrent
//! interactive transactions whose conflicts the client retries.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod common;

use std::sync::Arc;

use common::Server;
use popdb_client::{
    BlockingClient, Client, ClientOptions, Engine, ScanOptions, TableOptions, TxnOptions,
    WriteBatch,
};

#[test]
fn the_client_drives_a_real_server() {
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start(&temp.path().join("data"), &[]);
    let addr = server.addr.to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Arc::new(
            Client::connect(&addr, ClientOptions::default())
                .await
                .unwrap(),
        );
        client.ping().await.unwrap();
        client
            .create_table("routes", TableOptions::new(Engine::Btree))
            .await
            .unwrap();
        client
            .create_table("hits", TableOptions::new(Engine::Lsm))
            .await
            .unwrap();
        let names: Vec<String> = client
            .list_tables()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["routes", "hits"]);

        let lsn = client.put("routes", b"/a", b"origin-1").await.unwrap();
        let got = client.get("routes", b"/a").await.unwrap().unwrap();
        assert_eq!(
            (got.value.as_slice(), got.version),
            (b"origin-1".as_slice(), lsn)
        );
        client.delete("routes", b"/a").await.unwrap();
        assert!(client.get("routes", b"/a").await.unwrap().is_none());

        // One batch across both tables: one LSN for both.
        let mut batch = WriteBatch::new();
        batch
            .put("routes", b"/b", b"origin-2")
            .put("hits", b"/b", b"1");
        let lsn = client.batch(batch).await.unwrap();
        assert_eq!(
            client.get("routes", b"/b").await.unwrap().unwrap().version,
            lsn
        );
        assert_eq!(
            client.get("hits", b"/b").await.unwrap().unwrap().version,
            lsn
        );

        // 300 keys pipelined, then a scan in pages of 64 that follows the cursors.
        let puts: Vec<_> = (0..300_u32)
            .map(|i| {
                let client = Arc::clone(&client);
                tokio::spawn(async move {
                    client
                        .put("hits", format!("k{i:04}").as_bytes(), &i.to_le_bytes())
                        .await
                })
            })
            .collect();
        for put in puts {
            put.await.unwrap().unwrap();
        }
        let all = client
            .scan("hits", ScanOptions::new().from("k").to("l").page_size(64))
            .collect()
            .await
            .unwrap();
        assert_eq!(all.len(), 300);
        assert!(all.windows(2).all(|w| w[0].key < w[1].key));

        // Four tasks increment one counter 25 times each, by transaction.
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let client = Arc::clone(&client);
                tokio::spawn(async move {
                    for _ in 0..25 {
                        let options = TxnOptions {
                            retries_max: 200,
                            ..TxnOptions::default()
                        };
                        client
                            .transaction(options, |txn| async move {
                                let n = txn.get("hits", b"counter").await?.map_or(0, |v| v.len());
                                txn.put("hits", b"counter", &vec![b'+'; n + 1]);
                                Ok(())
                            })
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let counter = client.get("hits", b"counter").await.unwrap().unwrap();
        assert_eq!(counter.value.len(), 100);
    });
    drop(runtime);

    // The blocking client, on the same server.
    let blocking = BlockingClient::connect(&addr, ClientOptions::default()).unwrap();
    blocking.ping().unwrap();
    let lsn = blocking.put("routes", b"/c", b"origin-3").unwrap();
    let got = blocking.get("routes", b"/c").unwrap().unwrap();
    assert_eq!(got.version, lsn);
}
