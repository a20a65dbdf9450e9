//! `PointWrites`: puts and deletes gathered and logged as one append. The bound on what one
//! gathers, the refusals as writes are added, and the lead: a no-sync append that finds the
//! log idle is written only when its lead runs, a synced one by the log's writer thread.
//! (The model test, db_model.rs, checks their contents, LSNs and recovery.)

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use popdb_db::{
    Db, DbOptions, Durability, EngineKind, Error, POINT_WRITES_BYTES_MAX, PointWrites, Result,
    TableOptions, WriteOptions,
};
use popdb_io::SimFs;

const NO_SYNC: WriteOptions = WriteOptions {
    durability: Some(Durability::NoSync),
};
const SYNC: WriteOptions = WriteOptions {
    durability: Some(Durability::Sync),
};

fn open() -> Db {
    let options = DbOptions {
        fs: Arc::new(SimFs::new(5)),
        background: false,
        ..DbOptions::default()
    };
    let db = Db::open(Path::new("/db"), options).unwrap();
    db.create_table("t", TableOptions::new(EngineKind::Lsm))
        .unwrap();
    db.create_table("b", TableOptions::new(EngineKind::Btree))
        .unwrap();
    db
}

/// Logs `writes`, running the lead if one is handed back; their results.
fn log(db: &Db, writes: PointWrites) -> Vec<Result<u64>> {
    let (tx, rx) = mpsc::channel();
    if let Some(lead) = db.write_points_leading(writes, move |results| tx.send(results).unwrap()) {
        lead.run();
    }
    rx.recv().unwrap()
}

#[test]
fn writes_are_gathered_up_to_the_bound_and_a_large_one_goes_alone() {
    let db = open();
    let mut writes = PointWrites::new(NO_SYNC);
    let value = vec![7_u8; 1000];
    let mut added = 0_u32;
    while writes.has_room(4, value.len()) {
        db.add_point_write(&mut writes, "t", &added.to_le_bytes(), Some(&value))
            .unwrap();
        added += 1;
    }
    assert_eq!(writes.len(), added as usize);
    assert_eq!(
        added as usize,
        POINT_WRITES_BYTES_MAX / (1000 + 4 + 64),
        "filled to the bound"
    );
    let refused = db.add_point_write(&mut writes, "t", b"over", Some(&value));
    assert!(
        matches!(refused, Err(Error::LimitExceeded { limit, .. }) if limit == "point writes size"),
        "{refused:?}"
    );
    assert_eq!(writes.len(), added as usize, "a refused write is not added");
    let before = db.visible_lsn();
    let lsns: Vec<u64> = log(&db, writes).into_iter().map(Result::unwrap).collect();
    assert_eq!(
        lsns,
        (before + 1..=before + u64::from(added)).collect::<Vec<_>>()
    );
    for i in 0..added {
        assert_eq!(db.get("t", &i.to_le_bytes()).unwrap().unwrap().0, value);
    }

    // A write larger than the bound is taken alone.
    let mut writes = PointWrites::new(SYNC);
    let large = vec![1_u8; 4 * POINT_WRITES_BYTES_MAX];
    assert!(writes.has_room(3, large.len()));
    db.add_point_write(&mut writes, "b", b"big", Some(&large))
        .unwrap();
    assert!(!writes.has_room(1, 0));
    let lsn = log(&db, writes).pop().unwrap().unwrap();
    assert_eq!(db.get("b", b"big").unwrap(), Some((large, lsn)));
}

#[test]
fn a_write_is_refused_as_it_is_added() {
    let db = open();
    let mut writes = PointWrites::new(NO_SYNC);
    db.add_point_write(&mut writes, "t", b"k", Some(b"v"))
        .unwrap();
    let missing = db.add_point_write(&mut writes, "missing", b"k", Some(b"v"));
    assert!(
        matches!(missing, Err(Error::UnknownTable(_))),
        "{missing:?}"
    );
    let key = vec![0_u8; popdb_db::limits::KEY_SIZE_MAX + 1];
    let long = db.add_point_write(&mut writes, "t", &key, None);
    assert!(
        matches!(long, Err(Error::LimitExceeded { limit, .. }) if limit == "key size"),
        "{long:?}"
    );
    db.add_point_write(&mut writes, "t", b"k", None).unwrap();
    let results = log(&db, writes);
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(db.get("t", b"k").unwrap(), None, "the delete came second");
    assert!(log(&db, PointWrites::new(NO_SYNC)).is_empty());
}

#[test]
fn a_no_sync_append_waits_for_its_lead_and_a_synced_one_does_not_lead() {
    let db = open();
    let (tx, rx) = mpsc::channel();
    for round in 0..3_u8 {
        let mut writes = PointWrites::new(NO_SYNC);
        db.add_point_write(&mut writes, "t", &[round], Some(b"v"))
            .unwrap();
        db.add_point_write(&mut writes, "b", &[round], Some(b"w"))
            .unwrap();
        let tx = tx.clone();
        let lead = db
            .write_points_leading(writes, move |results| tx.send(results).unwrap())
            .expect("an idle log leads a no-sync append");
        assert!(
            rx.recv_timeout(Duration::from_millis(20)).is_err(),
            "answered before the lead ran"
        );
        assert_eq!(db.get("t", &[round]).unwrap(), None);
        match round {
            0 => lead.run(),
            1 => lead.run_if_at_most(1),
            _ => drop(lead),
        }
        let results = rx.recv().unwrap();
        let lsn = results[1].clone().unwrap();
        assert_eq!(results[0].clone().unwrap() + 1, lsn);
        assert_eq!(db.get("b", &[round]).unwrap(), Some((b"w".to_vec(), lsn)));
    }
    let mut writes = PointWrites::new(SYNC);
    db.add_point_write(&mut writes, "t", b"s", Some(b"v"))
        .unwrap();
    let tx = tx.clone();
    assert!(
        db.write_points_leading(writes, move |results| tx.send(results).unwrap())
            .is_none()
    );
    assert!(rx.recv().unwrap()[0].is_ok());
    assert!(db.stats().durable_lsn >= db.visible_lsn());
}

#[test]
fn writes_encoded_apart_are_appended_while_they_fit() {
    let db = open();
    let mut queue = PointWrites::new(NO_SYNC);
    let mut scratch = PointWrites::new(NO_SYNC);
    let value = vec![3_u8; 1000];
    let mut added = 0_u32;
    loop {
        db.add_point_write(&mut scratch, "t", &added.to_le_bytes(), Some(&value))
            .unwrap();
        if !queue.has_room_for(&scratch) {
            break;
        }
        queue.append(&mut scratch).unwrap();
        assert!(scratch.is_empty(), "appending empties the scratch");
        added += 1;
    }
    assert_eq!(queue.len(), added as usize);
    assert_eq!(added as usize, POINT_WRITES_BYTES_MAX / (1000 + 4 + 64));
    let refused = queue.append(&mut scratch);
    assert!(
        matches!(refused, Err(Error::LimitExceeded { limit, .. }) if limit == "point writes size"),
        "{refused:?}"
    );
    assert_eq!(
        (queue.len(), scratch.len()),
        (added as usize, 1),
        "both unchanged"
    );
    let before = db.visible_lsn();
    let lsns: Vec<u64> = log(&db, queue).into_iter().map(Result::unwrap).collect();
    assert_eq!(
        lsns,
        (before + 1..=before + u64::from(added)).collect::<Vec<_>>()
    );
    // The one left over goes on its own, into an empty queue.
    let mut queue = PointWrites::new(NO_SYNC);
    queue.append(&mut scratch).unwrap();
    let lsn = log(&db, queue).pop().unwrap().unwrap();
    assert_eq!(
        db.get("t", &added.to_le_bytes()).unwrap(),
        Some((value, lsn))
    );
}
