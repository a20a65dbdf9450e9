//! The offline verifier, `check`: a healthy Db with tables on both engines checks clean
//! and its report counts tables, entries and log records; a flipped byte in a B+tree
//! table's file or in an LSM table's SSTs is reported as a problem or an error naming the
//! table's file, never a panic; a table directory that is missing, or that belongs to no
//! table, is reported. The Db lives on the simulated file system; damage is done through
//! its file-system API after the Db is closed.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use popdb_db::{CheckReport, Db, DbOptions, EngineKind, TableOptions, WriteBatch, check};
use popdb_io::{FileSystem, OpenOptions, SimFs};

const DIR: &str = "/db";
const GEN_DIR: &str = "/db/gen-000001";
const KEYS_COUNT: u64 = 300;
const BATCH_KEYS: u64 = 20;
/// Batches written after the checkpoint.
const LATE_BATCHES: u64 = 5;
/// The B+tree tables' page size (the default).
const PAGE: u64 = 4096;

fn options(fs: &SimFs) -> DbOptions {
    let mut options = DbOptions {
        fs: Arc::new(fs.clone()),
        background: false,
        // No reserve: 64 MiB per test makes the simulated file system slow.
        reserve_bytes: 0,
        ..DbOptions::default()
    };
    // Small segments: a default one is preallocated whole on the simulated file system.
    options.wal.segment_size = 64 * 1024;
    options.wal.record_size_max = 60_000;
    options.lsm.memtable_size_max = 2 * 1024;
    options.lsm.l0_compaction_trigger = 2;
    options
}

fn key(i: u64) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

/// What a healthy Db holds, and what its check must count.
struct Built {
    /// Table name -> key -> value.
    tables: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Table name -> id.
    ids: BTreeMap<String, u64>,
    visible_lsn: u64,
    checkpoint_lsn: u64,
}

/// A Db with a B+tree table and an LSM table: `KEYS_COUNT` keys in each, a checkpoint,
/// then `LATE_BATCHES` batches of overwrites and deletes (to the B+tree too if
/// `late_btree`), flushed and compacted LSM SSTs. Closed when it returns.
fn build(fs: &SimFs, late_btree: bool) -> Built {
    let db = Db::open(DIR, options(fs)).unwrap();
    let mut built = Built {
        tables: BTreeMap::new(),
        ids: BTreeMap::new(),
        visible_lsn: 0,
        checkpoint_lsn: 0,
    };
    for (name, engine) in [("routes", EngineKind::Btree), ("hits", EngineKind::Lsm)] {
        let desc = db.create_table(name, TableOptions::new(engine)).unwrap();
        built.ids.insert(name.to_string(), desc.id);
        built.tables.insert(name.to_string(), BTreeMap::new());
    }
    for first in (0..KEYS_COUNT).step_by(BATCH_KEYS as usize) {
        let mut batch = WriteBatch::new();
        for i in first..first + BATCH_KEYS {
            for (name, rows) in &mut built.tables {
                let value = format!("{name}-{i}-{}", "v".repeat((i % 40) as usize));
                batch.put(name, key(i), value.clone());
                rows.insert(key(i), value.into_bytes());
            }
        }
        db.write(batch).unwrap();
        db.maintenance_step().unwrap();
    }
    built.checkpoint_lsn = db.checkpoint().unwrap();
    for round in 0..LATE_BATCHES {
        let mut batch = WriteBatch::new();
        for (name, rows) in &mut built.tables {
            if name == "routes" && !late_btree {
                continue;
            }
            for i in (round..KEYS_COUNT).step_by(17) {
                if i % 2 == 0 {
                    batch.delete(name, key(i));
                    rows.remove(&key(i));
                } else {
                    batch.put(name, key(i), format!("late-{round}"));
                    rows.insert(key(i), format!("late-{round}").into_bytes());
                }
            }
        }
        db.write(batch).unwrap();
    }
    built.visible_lsn = db.visible_lsn();
    db.close().unwrap();
    built
}

fn table_dir(id: u64) -> PathBuf {
    Path::new(GEN_DIR).join(format!("t-{id:016x}"))
}

/// Flips the byte at `offset` of `path`, durably.
fn flip(fs: &SimFs, path: &Path, offset: u64) {
    let file = fs.open(path, OpenOptions::read_write()).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    byte[0] ^= 0x5a;
    file.write_all_at(&byte, offset).unwrap();
    file.sync_all().unwrap();
}

/// The check's outcome must be a report with a problem naming `needle`, or an error
/// naming it.
fn assert_reported(outcome: &popdb_db::Result<CheckReport>, needle: &str) {
    match outcome {
        Ok(report) => {
            assert!(!report.is_clean(), "damage not found:\n{report}");
            assert!(
                report.problems.iter().any(|p| p.contains(needle)),
                "no problem names {needle}:\n{report}"
            );
            assert!(report.to_string().contains(needle), "{report}");
        }
        Err(error) => assert!(
            error.to_string().contains(needle),
            "the error does not name {needle}: {error}"
        ),
    }
}

#[test]
fn check_healthy_db_checks_clean_and_counts() {
    let fs = SimFs::new(1);
    let built = build(&fs, true);
    let report = check(Path::new(DIR), options(&fs)).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.generation, 1);
    assert_eq!(report.checkpoint_lsn, Some(built.checkpoint_lsn));
    assert_eq!(report.checkpoint_tables_count, 2);
    assert_eq!(report.intent_lsn, None);
    assert_eq!(report.visible_lsn, built.visible_lsn);
    assert_eq!(report.log_records_count, LATE_BATCHES);
    assert_eq!(
        report.log_range,
        Some((built.checkpoint_lsn + 1, built.visible_lsn))
    );
    let recovery = report.recovery.as_ref().unwrap();
    assert_eq!(recovery.records_replayed, LATE_BATCHES);
    assert!(recovery.table_dirs_removed.is_empty());
    assert_eq!(report.tables.len(), 2);
    for table in &report.tables {
        let rows = &built.tables[&table.desc.name];
        assert_eq!(table.entries_count, rows.len() as u64, "{report}");
        assert_eq!(table.problems_count, 0);
        let summary = table.engine.as_deref().unwrap();
        match table.desc.options.engine {
            EngineKind::Btree => assert!(summary.contains("fill factor"), "{summary}"),
            EngineKind::Lsm => assert!(summary.contains("SSTs"), "{summary}"),
        }
    }
    let total: usize = built.tables.values().map(BTreeMap::len).sum();
    assert_eq!(report.entries_count(), total as u64);
    let text = report.to_string();
    assert!(text.contains("problems: none"), "{text}");
    assert!(text.contains("routes"), "{text}");

    // The check recovered the Db like an open: it still opens and holds the same data.
    let db = Db::open(DIR, options(&fs)).unwrap();
    for (name, rows) in &built.tables {
        for (k, v) in rows {
            assert_eq!(db.get(name, k).unwrap().unwrap().0, *v);
        }
    }
}

#[test]
fn check_flipped_btree_page_read_by_the_scans_is_a_problem_naming_the_file() {
    let fs = SimFs::new(2);
    // No write to the B+tree after its only checkpoint: every page past the metas is a
    // page of its tree, and the open replays nothing into it.
    let built = build(&fs, false);
    let file = table_dir(built.ids["routes"]).join(popdb_btree::FILE_NAME);
    let len = fs
        .open(&file, OpenOptions::read_only())
        .unwrap()
        .len()
        .unwrap();
    let pages = len / PAGE;
    flip(&fs, &file, (pages / 2) * PAGE + PAGE / 2);
    let outcome = check(Path::new(DIR), options(&fs));
    let dir = format!("t-{:016x}", built.ids["routes"]);
    assert_reported(&outcome, &dir);
    let report = outcome.unwrap();
    assert!(report.recovery.is_some());
    // The other table is untouched and checks clean.
    let hits = report
        .tables
        .iter()
        .find(|t| t.desc.name == "hits")
        .unwrap();
    assert_eq!(hits.problems_count, 0, "{report}");
}

#[test]
fn check_flipped_btree_pages_replayed_into_name_the_file_never_panic() {
    let fs = SimFs::new(3);
    let built = build(&fs, true);
    let file = table_dir(built.ids["routes"]).join(popdb_btree::FILE_NAME);
    let len = fs
        .open(&file, OpenOptions::read_only())
        .unwrap()
        .len()
        .unwrap();
    // A byte in the middle of every page past the metas: the open's replay meets one.
    for page in 2..len / PAGE {
        flip(&fs, &file, page * PAGE + PAGE / 2);
    }
    let outcome = check(Path::new(DIR), options(&fs));
    assert_reported(&outcome, &format!("t-{:016x}", built.ids["routes"]));
}

#[test]
fn check_flipped_lsm_sst_names_the_table_never_panics() {
    let fs = SimFs::new(4);
    let built = build(&fs, true);
    let dir = table_dir(built.ids["hits"]);
    let ssts: Vec<PathBuf> = fs
        .read_dir(&dir)
        .unwrap()
        .into_iter()
        .map(|name| dir.join(name))
        .filter(|path| path.extension().is_some_and(|e| e == "sst"))
        .collect();
    assert!(!ssts.is_empty(), "no SST in {}", dir.display());
    for sst in &ssts {
        let len = fs
            .open(sst, OpenOptions::read_only())
            .unwrap()
            .len()
            .unwrap();
        flip(&fs, sst, len / 3);
    }
    let outcome = check(Path::new(DIR), options(&fs));
    assert_reported(&outcome, &format!("t-{:016x}", built.ids["hits"]));
}

#[test]
fn check_missing_table_directory_is_reported_and_not_recreated() {
    let fs = SimFs::new(5);
    let built = build(&fs, true);
    let dir = table_dir(built.ids["hits"]);
    for name in fs.read_dir(&dir).unwrap() {
        fs.remove_file(&dir.join(name)).unwrap();
    }
    fs.remove_dir(&dir).unwrap();
    fs.sync_dir(Path::new(GEN_DIR)).unwrap();
    let report = check(Path::new(DIR), options(&fs)).unwrap();
    assert!(report.recovery.is_none(), "{report}");
    assert_eq!(report.problems.len(), 1, "{report}");
    assert!(report.problems[0].contains("is missing"), "{report}");
    assert!(
        report.problems[0].contains(&dir.display().to_string()),
        "{report}"
    );
    assert!(!fs.exists(&dir).unwrap(), "check created {}", dir.display());
}

#[test]
fn check_table_directory_without_its_file_is_reported_and_not_recreated() {
    let fs = SimFs::new(8);
    let built = build(&fs, true);
    let file = table_dir(built.ids["routes"]).join(popdb_btree::FILE_NAME);
    fs.remove_file(&file).unwrap();
    fs.sync_dir(&table_dir(built.ids["routes"])).unwrap();
    let report = check(Path::new(DIR), options(&fs)).unwrap();
    assert!(report.recovery.is_none(), "{report}");
    assert_eq!(report.problems.len(), 1, "{report}");
    assert!(
        report.problems[0].contains(&file.display().to_string()),
        "{report}"
    );
    assert!(
        !fs.exists(&file).unwrap(),
        "check created {}",
        file.display()
    );
}

#[test]
fn check_directory_of_no_table_is_reported_as_removed_by_recovery() {
    let fs = SimFs::new(6);
    build(&fs, true);
    let stray = Path::new(GEN_DIR).join(format!("t-{:016x}", 0xffu64));
    fs.create_dir_all(&stray).unwrap();
    let file = fs
        .open(&stray.join("tree.btree"), OpenOptions::create())
        .unwrap();
    file.write_all_at(b"left behind", 0).unwrap();
    file.sync_all().unwrap();
    fs.sync_dir(&stray).unwrap();
    fs.sync_dir(Path::new(GEN_DIR)).unwrap();
    let report = check(Path::new(DIR), options(&fs)).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.recovery.as_ref().unwrap().table_dirs_removed, [0xff]);
    assert!(
        report.to_string().contains("t-00000000000000ff"),
        "{report}"
    );
}

#[test]
fn check_directory_without_a_db_is_refused_and_left_alone() {
    let fs = SimFs::new(7);
    let error = check(Path::new("/nothing"), options(&fs)).unwrap_err();
    assert!(error.to_string().contains("CURRENT"), "{error}");
    assert!(!fs.exists(Path::new("/nothing")).unwrap());
}
