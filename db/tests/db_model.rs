//! The Db against a model (a map of tables), by randomized operations: DDL (tables created,
//! dropped and re-created under the same name, on both engines), batches across tables
//! with repeated keys and deletes, transactions whose key and range conditions pass or
//! fail, idempotent resends, the interactive helper, read views held across writes, gets
//! and scans both ways with bounds, prefixes and limits, background work, checkpoints, and
//! reopens (clean, or after a simulated power loss: every write is synced, so nothing may
//! be lost).
//!
//! Replay one case: `DB_MODEL_SEED=<seed> cargo test --profile checked -p popdb-db --test
//! db_model`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::Path;
use std::sync::Arc;

use popdb_db::{
    Check, Commit, Condition, Db, DbOptions, Direction, Durability, EngineKind, Error,
    IdempotencyKey, PointWrites, ReadView, Scan, TableOptions, WriteBatch, WriteOptions,
};
use popdb_io::SimFs;
use popdb_testkit::Rng;

/// Key -> (value, version).
type Rows = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;

#[derive(Clone, Debug, Default)]
struct ModelTable {
    id: u64,
    rows: Rows,
}

/// Table name -> table.
type Model = BTreeMap<String, ModelTable>;

/// A write: table, key, value or delete.
type Write = (String, Vec<u8>, Option<Vec<u8>>);

/// Writes as a batch holds them.
type Writes = Vec<Write>;

const NAMES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

fn options(fs: &SimFs, rng: &mut Rng) -> DbOptions {
    let mut options = DbOptions {
        fs: Arc::new(fs.clone()),
        background: false,
        ..DbOptions::default()
    };
    options.wal.segment_size = 64 * 1024;
    options.wal.record_size_max = 60_000;
    options.reserve_bytes = 64 * 1024;
    options.lsm.memtable_size_max = 4 * 1024;
    options.lsm.l0_compaction_trigger = 2;
    options.btree_roots_retained = 2 + rng.index(6);
    // Some runs take background checkpoints often, from the log's size.
    options.checkpoint_log_bytes = if rng.chance(2) { 16 * 1024 } else { u64::MAX };
    options
}

fn open(fs: &SimFs, rng: &mut Rng) -> Db {
    Db::open(Path::new("/db"), options(fs, rng)).unwrap()
}

#[test]
fn the_db_matches_the_model() {
    let seeds: Vec<u64> = match std::env::var("DB_MODEL_SEED") {
        Ok(seed) => vec![seed.parse().unwrap()],
        Err(_) => (1..=16).collect(),
    };
    for seed in seeds {
        let result = catch_unwind(AssertUnwindSafe(|| run(seed, 600)));
        if let Err(panic) = result {
            eprintln!(
                "replay with DB_MODEL_SEED={seed} cargo test --profile checked -p popdb-db \
                 --test db_model"
            );
            resume_unwind(panic);
        }
    }
}

struct Case {
    fs: SimFs,
    db: Option<Db>,
    rng: Rng,
    model: Model,
    /// A read view held across later operations, with the model as of it.
    held: Option<(ReadView, Model)>,
    /// The model after each of the last few changes, for views at older LSNs.
    history: std::collections::VecDeque<(u64, Model)>,
    last_lsn: u64,
    client_sequence: u64,
    counts: BTreeMap<&'static str, u64>,
}

fn run(seed: u64, steps: usize) {
    let fs = SimFs::new(seed);
    let mut rng = Rng(seed);
    let db = open(&fs, &mut rng);
    let mut case = Case {
        fs,
        db: Some(db),
        rng,
        model: Model::new(),
        held: None,
        history: std::collections::VecDeque::new(),
        last_lsn: 0,
        client_sequence: 0,
        counts: BTreeMap::new(),
    };
    for _ in 0..steps {
        case.step();
    }
    case.reopen(false);
    case.verify_all();
    eprintln!("seed {seed}: {:?}", case.counts);
    assert!(
        case.counts.get("conflict").copied().unwrap_or(0) > 0,
        "{:?}",
        case.counts
    );
    assert!(
        case.counts.get("committed txn").copied().unwrap_or(0) > 0,
        "{:?}",
        case.counts
    );
}

fn key(rng: &mut Rng) -> Vec<u8> {
    match rng.below(12) {
        0 => Vec::new(),
        1 => vec![0xff; 1 + rng.index(4)],
        _ => format!("k{:02}", rng.below(40)).into_bytes(),
    }
}

fn value(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(12) {
        0 => 0,
        // More than a 4 KiB B+tree leaf holds inline: an overflow chain.
        1 => 1000 + rng.index(3000),
        _ => rng.index(30),
    };
    vec![u8::try_from(rng.below(256)).unwrap(); len]
}

fn bound(rng: &mut Rng) -> Bound<Vec<u8>> {
    match rng.below(3) {
        0 => Bound::Unbounded,
        1 => Bound::Included(key(rng)),
        _ => Bound::Excluded(key(rng)),
    }
}

fn in_bounds(key: &[u8], lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    let above = match lower {
        Bound::Unbounded => true,
        Bound::Included(b) => key >= b.as_slice(),
        Bound::Excluded(b) => key > b.as_slice(),
    };
    let below = match upper {
        Bound::Unbounded => true,
        Bound::Included(b) => key <= b.as_slice(),
        Bound::Excluded(b) => key < b.as_slice(),
    };
    above && below
}

/// What the model says `scan` returns from `rows`.
fn model_scan(rows: &Rows, scan: &Scan) -> Vec<(Vec<u8>, Vec<u8>, u64)> {
    let mut out: Vec<_> = rows
        .iter()
        .filter(|(k, _)| in_bounds(k, &scan.lower, &scan.upper))
        .filter(|(k, _)| scan.prefix.as_ref().is_none_or(|p| k.starts_with(p)))
        .map(|(k, (v, ver))| (k.clone(), v.clone(), *ver))
        .collect();
    if scan.direction == Direction::Backward {
        out.reverse();
    }
    out.truncate(scan.limit);
    out
}

impl Case {
    fn db(&self) -> &Db {
        self.db.as_ref().unwrap()
    }

    fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }

    fn table_name(&mut self) -> String {
        NAMES[self.rng.index(NAMES.len())].to_string()
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=4 => self.create_table(),
            5..=6 => self.drop_table(),
            7..=31 => self.batch(),
            32..=39 => self.point_writes(),
            40..=59 => self.transaction(),
            60..=63 => self.interactive(),
            64..=79 => self.read(),
            80..=83 => self.hold_view(),
            84..=87 => {
                self.db().maintenance_step().unwrap();
            }
            88..=91 => {
                self.db().checkpoint().unwrap();
                self.count("checkpoint");
            }
            92..=95 => self.verify_held(),
            _ => {
                let crash = self.rng.chance(2);
                self.reopen(crash);
            }
        }
    }

    fn note_lsn(&mut self, lsn: u64) {
        assert!(lsn > self.last_lsn, "LSN {lsn} after {}", self.last_lsn);
        self.last_lsn = lsn;
    }

    /// Remembers the model as of `lsn` (call after applying the change at `lsn`).
    fn remember(&mut self, lsn: u64) {
        self.history.push_back((lsn, self.model.clone()));
        if self.history.len() > 6 {
            self.history.pop_front();
        }
    }

    fn create_table(&mut self) {
        let name = self.table_name();
        let engine = if self.rng.chance(2) {
            EngineKind::Lsm
        } else {
            EngineKind::Btree
        };
        let result = self.db().create_table(&name, TableOptions::new(engine));
        if self.model.contains_key(&name) {
            assert!(matches!(result, Err(Error::TableExists(_))), "{result:?}");
            return;
        }
        let desc = result.unwrap();
        assert_eq!(desc.name, name);
        assert_eq!(desc.options.engine, engine);
        self.note_lsn(desc.id);
        self.model.insert(
            name,
            ModelTable {
                id: desc.id,
                rows: Rows::new(),
            },
        );
        self.count("create");
    }

    fn drop_table(&mut self) {
        let name = self.table_name();
        let result = self.db().drop_table(&name);
        match self.model.remove(&name) {
            Some(table) => assert_eq!(result.unwrap().id, table.id),
            None => assert!(matches!(result, Err(Error::UnknownTable(_))), "{result:?}"),
        }
        self.count("drop");
    }

    /// Random writes over the model's tables (and now and then a missing one).
    fn writes(&mut self) -> (WriteBatch, Writes) {
        let mut batch = WriteBatch::new();
        let mut writes = Vec::new();
        let names: Vec<String> = self.model.keys().cloned().collect();
        for _ in 0..self.rng.index(8) {
            let table = if names.is_empty() || self.rng.chance(40) {
                self.table_name()
            } else {
                names[self.rng.index(names.len())].clone()
            };
            let key = key(&mut self.rng);
            let value = (!self.rng.chance(4)).then(|| value(&mut self.rng));
            match &value {
                Some(v) => batch.put(&table, key.clone(), v.clone()),
                None => batch.delete(&table, key.clone()),
            };
            writes.push((table, key, value));
        }
        (batch, writes)
    }

    fn apply_to_model(&mut self, lsn: u64, writes: &[Write]) {
        for (table, key, value) in writes {
            let rows = &mut self.model.get_mut(table).unwrap().rows;
            match value {
                Some(v) => rows.insert(key.clone(), (v.clone(), lsn)),
                None => rows.remove(key),
            };
        }
    }

    fn batch(&mut self) {
        let (batch, writes) = self.writes();
        let missing = writes.iter().any(|(t, _, _)| !self.model.contains_key(t));
        // Some writes skip the sync: they are made durable before any crash below, and
        // exercise the LSN lease.
        let durability = self.rng.chance(3).then_some(Durability::NoSync);
        let result = self.db().write_with(batch, WriteOptions { durability });
        if missing {
            assert!(matches!(result, Err(Error::UnknownTable(_))), "{result:?}");
            return;
        }
        let lsn = result.unwrap();
        self.note_lsn(lsn);
        self.apply_to_model(lsn, &writes);
        self.remember(lsn);
        self.count("batch");
    }

    /// Point writes gathered and logged as one append: each gets its own LSN, in the order
    /// added; one naming a missing table is refused as it is added.
    fn point_writes(&mut self) {
        let (_, writes) = self.writes();
        let durability = self.rng.chance(3).then_some(Durability::NoSync);
        let mut points = PointWrites::new(WriteOptions { durability });
        let mut added = Vec::new();
        for (table, key, value) in writes {
            let result = self
                .db()
                .add_point_write(&mut points, &table, &key, value.as_deref());
            if self.model.contains_key(&table) {
                result.unwrap();
                added.push((table, key, value));
            } else {
                assert!(matches!(result, Err(Error::UnknownTable(_))), "{result:?}");
            }
        }
        assert_eq!(points.len(), added.len());
        let (tx, rx) = std::sync::mpsc::channel();
        let lead = self
            .db()
            .write_points_leading(points, move |results| tx.send(results).unwrap());
        if let Some(lead) = lead {
            match self.rng.below(3) {
                0 => lead.run(),
                1 => lead.run_if_at_most(self.rng.index(4)),
                _ => drop(lead),
            }
        }
        let results = rx.recv().unwrap();
        assert_eq!(results.len(), added.len());
        let mut previous = None;
        for (result, write) in results.into_iter().zip(&added) {
            let lsn = result.unwrap();
            if let Some(previous) = previous {
                assert_eq!(lsn, previous + 1, "one append's records are consecutive");
            }
            previous = Some(lsn);
            self.note_lsn(lsn);
            self.apply_to_model(lsn, std::slice::from_ref(write));
            self.remember(lsn);
        }
        self.count("point writes");
    }

    /// A condition on an existing table, and whether the model says it holds.
    fn condition(&mut self) -> Option<(Condition, bool)> {
        let names: Vec<String> = self.model.keys().cloned().collect();
        if names.is_empty() {
            return None;
        }
        let table = names[self.rng.index(names.len())].clone();
        let rows = &self.model[&table].rows;
        let key = key(&mut self.rng);
        let current = rows.get(&key).map(|(_, v)| *v);
        let (check, holds) = match self.rng.below(4) {
            0 => {
                let version = match (current, self.rng.chance(3)) {
                    (Some(v), false) => v,
                    (Some(v), true) => v - 1,
                    (None, _) => 1 + self.rng.below(self.last_lsn + 1),
                };
                (
                    Check::Version {
                        key: key.clone(),
                        version,
                    },
                    current == Some(version),
                )
            }
            1 => (Check::Absent { key: key.clone() }, current.is_none()),
            2 => (Check::Exists { key: key.clone() }, current.is_some()),
            _ => {
                let mut end = crate::key(&mut self.rng);
                let mut start = key.clone();
                if end < start {
                    std::mem::swap(&mut start, &mut end);
                }
                let end = (!self.rng.chance(5)).then_some(end);
                let newest = rows
                    .range(start.clone()..)
                    .take_while(|(k, _)| end.as_ref().is_none_or(|e| *k < e))
                    .map(|(_, (_, v))| *v)
                    .max()
                    .unwrap_or(0);
                let since = match self.rng.below(3) {
                    0 => newest,
                    1 => newest.saturating_sub(1),
                    _ => self.rng.below(self.last_lsn + 1),
                };
                (Check::RangeUnchanged { start, end, since }, newest <= since)
            }
        };
        Some((Condition { table, check }, holds))
    }

    fn transaction(&mut self) {
        let mut conditions = Vec::new();
        let mut first_failed = None;
        for i in 0..self.rng.index(4) {
            if let Some((condition, holds)) = self.condition() {
                if !holds && first_failed.is_none() {
                    first_failed = Some(u32::try_from(i).unwrap());
                }
                conditions.push(condition);
            }
        }
        let (writes, model_writes) = self.writes();
        let missing = model_writes
            .iter()
            .any(|(t, _, _)| !self.model.contains_key(t));
        let idempotency = self.rng.chance(3).then(|| {
            self.client_sequence += 1;
            IdempotencyKey {
                client: 7,
                sequence: self.client_sequence,
            }
        });
        let commit = Commit {
            conditions,
            writes,
            idempotency,
            durability: None,
        };
        let result = self.db().commit(commit.clone());
        if missing {
            assert!(matches!(result, Err(Error::UnknownTable(_))), "{result:?}");
            return;
        }
        let first = format!("{result:?}");
        if let Some(index) = first_failed {
            let Err(Error::Conflict { condition, lsn }) = result else {
                panic!("expected a conflict on condition {index}, got {result:?}");
            };
            assert_eq!(condition, index);
            self.note_lsn(lsn);
            self.count("conflict");
        } else {
            let lsn = result.unwrap();
            self.note_lsn(lsn);
            self.apply_to_model(lsn, &model_writes);
            self.remember(lsn);
            self.count("committed txn");
        }
        if idempotency.is_some() {
            // A resend returns the first result and applies nothing again.
            let again = self.db().commit(commit);
            assert_eq!(format!("{again:?}"), first);
            self.count("resend");
        }
    }

    /// The interactive helper: move a counter from one key to another, both read first.
    fn interactive(&mut self) {
        let Some(table) = self.model.keys().next().cloned() else {
            return;
        };
        let result = self.db().transaction(2, |txn| {
            let a = txn.get(&table, b"counter-a")?.map_or(0, |v| v.len());
            let seen = txn.scan(&table, &Scan::prefix("counter-"))?;
            txn.put(&table, "counter-a", vec![1; a + 1]);
            Ok(seen.len())
        });
        let (seen, lsn) = result.unwrap();
        let rows = &self.model[&table].rows;
        assert_eq!(
            seen,
            rows.keys().filter(|k| k.starts_with(b"counter-")).count()
        );
        let a = rows
            .get(b"counter-a".as_slice())
            .map_or(0, |(v, _)| v.len());
        self.note_lsn(lsn);
        let writes = vec![(table, b"counter-a".to_vec(), Some(vec![1; a + 1]))];
        self.apply_to_model(lsn, &writes);
        self.count("interactive");
    }

    fn random_scan(&mut self) -> Scan {
        Scan {
            lower: bound(&mut self.rng),
            upper: bound(&mut self.rng),
            prefix: self.rng.chance(4).then(|| {
                let mut prefix = key(&mut self.rng);
                prefix.truncate(2);
                prefix
            }),
            direction: if self.rng.chance(2) {
                Direction::Forward
            } else {
                Direction::Backward
            },
            limit: if self.rng.chance(3) {
                self.rng.index(5)
            } else {
                usize::MAX
            },
        }
    }

    fn read(&mut self) {
        let name = self.table_name();
        let key = key(&mut self.rng);
        let scan = self.random_scan();
        let db = self.db();
        let Some(table) = self.model.get(&name) else {
            assert!(matches!(db.get(&name, &key), Err(Error::UnknownTable(_))));
            return;
        };
        let got = db.get(&name, &key).unwrap();
        assert_eq!(got, table.rows.get(&key).cloned(), "get {name} {key:?}");
        let entries: Vec<_> = db
            .scan(&name, &scan)
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.value, e.version))
            .collect();
        assert_eq!(
            entries,
            model_scan(&table.rows, &scan),
            "scan {name} {scan:?}"
        );
        self.count("read");
    }

    fn hold_view(&mut self) {
        if self.rng.chance(2)
            && let Some((lsn, model)) = self
                .history
                .get(self.rng.index(self.history.len().max(1)))
                .cloned()
        {
            // A view at an older LSN, if every table still retains it; it holds the tables
            // live now that existed then.
            if let Some(view) = self.db().read_view_at(lsn).unwrap() {
                assert_eq!(view.lsn(), lsn);
                let live: Model = model
                    .into_iter()
                    .filter(|(name, t)| self.model.get(name).is_some_and(|now| now.id == t.id))
                    .collect();
                self.held = Some((view, live));
                self.count("older view");
            }
            return;
        }
        let view = self.db().read_view().unwrap();
        assert_eq!(view.lsn(), self.db().visible_lsn().min(view.lsn()));
        self.held = Some((view, self.model.clone()));
    }

    fn verify_held(&mut self) {
        let Some((view, model)) = &self.held else {
            return;
        };
        for (name, table) in model {
            let entries: Vec<_> = view
                .scan(name, &Scan::all())
                .unwrap()
                .into_iter()
                .map(|e| (e.key, e.value, e.version))
                .collect();
            assert_eq!(
                entries,
                model_scan(&table.rows, &Scan::all()),
                "held view of {name}"
            );
        }
        for name in NAMES {
            if !model.contains_key(name) {
                assert!(view.get(name, b"x").is_err());
            }
        }
        self.count("held view");
    }

    fn verify_all(&self) {
        let db = self.db();
        let tables = db.tables();
        let listed: Vec<(String, u64)> = tables.iter().map(|t| (t.name.clone(), t.id)).collect();
        let mut expected: Vec<(String, u64)> =
            self.model.iter().map(|(n, t)| (n.clone(), t.id)).collect();
        expected.sort_by_key(|(_, id)| *id);
        assert_eq!(listed, expected);
        for (name, table) in &self.model {
            let entries: Vec<_> = db
                .scan(name, &Scan::all())
                .unwrap()
                .into_iter()
                .map(|e| (e.key, e.value, e.version))
                .collect();
            assert_eq!(
                entries,
                model_scan(&table.rows, &Scan::all()),
                "table {name}"
            );
        }
    }

    fn reopen(&mut self, crash: bool) {
        self.held = None;
        let db = self.db.take().unwrap();
        if crash {
            // No-sync writes were acknowledged: make them durable first (losing them is
            // allowed, and tested in db_faults.rs; the model here keeps everything).
            db.sync().unwrap();
            self.fs.crash();
            drop(db);
            self.count("crash");
        } else {
            db.close().unwrap();
            self.count("reopen");
        }
        let db = open(&self.fs, &mut self.rng);
        let recovery = db.recovery().clone();
        assert!(recovery.visible_lsn >= self.last_lsn.min(recovery.visible_lsn));
        self.db = Some(db);
        self.verify_all();
        // LSNs keep growing across reopens.
        self.last_lsn = self.last_lsn.max(self.db().visible_lsn());
    }
}
