//! The engine conformance suite: the same randomized operations against both engines and a
//! `BTreeMap` model. Batches (repeated keys, deletes, empty and large values), gets, scans
//! both ways with every bound kind, read views held across writes, background work and
//! checkpoints, views at older LSNs, checkpoints, and reopens (after a simulated crash
//! half the time) that come back at the watermark, followed by a replay of the batches
//! above it from the test's log, as the Db replays its WAL.
//!
//! Replay one case: `CONFORMANCE_SEED=<seed> cargo test --profile checked -p popdb-db
//! --test engine_conformance`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::Path;
use std::sync::Arc;

use popdb_db::{Direction, Engine, EngineKind, EngineOptions, EngineView, open_engine};
use popdb_io::{FsRef, SimFs};
use popdb_testkit::Rng;

/// Key -> (value, version); deleted keys are absent.
type Model = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;
type Batch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

fn options(kind: EngineKind) -> EngineOptions {
    match kind {
        EngineKind::Lsm => EngineOptions::Lsm(popdb_lsm::TreeOptions {
            memtable_size_max: 4 * 1024,
            l0_compaction_trigger: 2,
            ..popdb_lsm::TreeOptions::default()
        }),
        EngineKind::Btree => EngineOptions::Btree(popdb_btree::TreeOptions {
            page_size: popdb_btree::PageSize::new(512).unwrap(),
            roots_retained: 8,
        }),
    }
}

fn open(fs: &SimFs, kind: EngineKind) -> Arc<dyn Engine> {
    let fs: FsRef = Arc::new(fs.clone());
    open_engine(fs, Path::new("/table"), options(kind)).unwrap()
}

#[test]
fn both_engines_match_the_model() {
    let seeds: Vec<u64> = match std::env::var("CONFORMANCE_SEED") {
        Ok(seed) => vec![seed.parse().unwrap()],
        Err(_) => (1..=12).collect(),
    };
    for kind in [EngineKind::Lsm, EngineKind::Btree] {
        for &seed in &seeds {
            let result = catch_unwind(AssertUnwindSafe(|| run(kind, seed, 1500)));
            if let Err(panic) = result {
                eprintln!(
                    "{kind:?}: replay with CONFORMANCE_SEED={seed} cargo test --profile \
                     checked -p popdb-db --test engine_conformance"
                );
                resume_unwind(panic);
            }
        }
    }
}

fn key(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        0 => Vec::new(),
        1 => vec![0xff; 1 + rng.index(8)],
        _ => format!("k{:03}", rng.below(200)).into_bytes(),
    }
}

fn value(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(10) {
        0 => 0,
        // Larger than a 512-byte B+tree leaf holds inline: an overflow chain.
        1 => 200 + rng.index(1500),
        _ => rng.index(40),
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

struct Case {
    kind: EngineKind,
    fs: SimFs,
    engine: Arc<dyn Engine>,
    rng: Rng,
    model: Model,
    /// Every batch applied, as the Db's log would hold it.
    log: Vec<(u64, Batch)>,
    /// The model after each of the last few batches, for views at older LSNs.
    history: Vec<(u64, Model)>,
    durable: (Option<u64>, Model),
    lsn: u64,
    checkpoints: u64,
    reopens: u64,
}

fn run(kind: EngineKind, seed: u64, steps: usize) {
    let fs = SimFs::new(seed);
    let engine = open(&fs, kind);
    assert_eq!(engine.kind(), kind);
    let mut case = Case {
        kind,
        fs,
        engine,
        rng: Rng(seed),
        model: Model::new(),
        log: Vec::new(),
        history: Vec::new(),
        durable: (None, Model::new()),
        lsn: 0,
        checkpoints: 0,
        reopens: 0,
    };
    let mut held: Vec<(Box<dyn EngineView>, Model)> = Vec::new();
    for _ in 0..steps {
        match case.rng.below(20) {
            0..=7 => case.apply(),
            8..=10 => {
                let view = case.engine.read_view();
                for _ in 0..4 {
                    let key = key(&mut case.rng);
                    check_get(&*view, &case.model, &key);
                }
            }
            11..=12 => {
                let view = case.engine.read_view();
                check_scan(&*view, &case.model, &mut case.rng);
            }
            13 => held.push((case.engine.read_view(), case.model.clone())),
            14 => {
                if let Some((view, model)) = held.pop() {
                    check_all(&*view, &model);
                }
            }
            15 => case.view_at(),
            16 => while case.engine.maintenance_step().unwrap() {},
            17 => case.checkpoint(),
            18 if case.rng.chance(3) => {
                for (view, model) in held.drain(..) {
                    check_all(&*view, &model);
                }
                case.reopen();
            }
            _ => {}
        }
    }
    for (view, model) in &held {
        check_all(&**view, model);
    }
    check_all(&*case.engine.read_view(), &case.model);
    assert!(
        case.reopens > 0 && case.checkpoints > 0,
        "{kind:?} seed {seed}: too few"
    );
}

/// The canary: the checks must catch a model that differs from the engine by one entry's
/// value, version or presence, or the suite is broken.
#[test]
fn canary_checks_catch_a_wrong_model() {
    for kind in [EngineKind::Lsm, EngineKind::Btree] {
        let engine = open(&SimFs::new(1), kind);
        let batch: Batch = vec![
            (b"a".to_vec(), Some(b"1".to_vec())),
            (b"b".to_vec(), Some(b"2".to_vec())),
        ];
        apply_to(&*engine, 3, &batch);
        let mut right = Model::new();
        apply_model(&mut right, 3, &batch);
        check_all(&*engine.read_view(), &right);
        let mut wrongs = vec![right.clone(), right.clone(), right.clone()];
        wrongs[0].get_mut(b"a".as_slice()).unwrap().0 = b"x".to_vec();
        wrongs[1].get_mut(b"b".as_slice()).unwrap().1 = 2;
        wrongs[2].remove(b"b".as_slice());
        for wrong in wrongs {
            let caught = catch_unwind(AssertUnwindSafe(|| {
                check_all(&*engine.read_view(), &wrong);
            }));
            assert!(caught.is_err(), "{kind:?}: the check missed {wrong:?}");
        }
    }
}

impl Case {
    fn apply(&mut self) {
        self.lsn += 1 + self.rng.below(2);
        let count = self.rng.index(8);
        let mut batch: Batch = Vec::with_capacity(count);
        for _ in 0..count {
            let key = if !batch.is_empty() && self.rng.chance(5) {
                batch[self.rng.index(batch.len())].0.clone()
            } else {
                key(&mut self.rng)
            };
            let value = (!self.rng.chance(4)).then(|| value(&mut self.rng));
            batch.push((key, value));
        }
        apply_to(&*self.engine, self.lsn, &batch);
        apply_model(&mut self.model, self.lsn, &batch);
        self.log.push((self.lsn, batch));
        self.history.push((self.lsn, self.model.clone()));
        if self.history.len() > 4 {
            self.history.remove(0);
        }
        assert_eq!(self.engine.last_applied(), Some(self.lsn));
    }

    fn view_at(&mut self) {
        let watermark = self.engine.watermark().unwrap_or(0);
        let candidates: Vec<&(u64, Model)> = self
            .history
            .iter()
            .filter(|(lsn, _)| *lsn >= watermark)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let (lsn, model) = candidates[self.rng.index(candidates.len())];
        let view = self.engine.read_view_at(*lsn).unwrap();
        assert_eq!(view.lsn(), Some(*lsn), "{:?}", self.kind);
        check_all(&*view, model);
        // A point read at that LSN without a view reads what the view reads.
        for _ in 0..4 {
            let key = key(&mut self.rng);
            let mut value = b"stale".to_vec();
            let found = self.engine.get_at(*lsn, &key, &mut value).unwrap();
            let expected = model.get(&key);
            assert_eq!(
                found,
                Some(expected.map(|&(_, v)| v)),
                "get_at {lsn} {key:?}"
            );
            assert_eq!(value, expected.map(|(v, _)| v.clone()).unwrap_or_default());
        }
    }

    fn checkpoint(&mut self) {
        if self.lsn == 0 {
            return;
        }
        self.engine.checkpoint(self.lsn).unwrap();
        assert_eq!(self.engine.watermark(), Some(self.lsn));
        self.durable = (Some(self.lsn), self.model.clone());
        self.checkpoints += 1;
    }

    /// Drops the engine (crashing the file system half the time) and reopens it: it comes
    /// back at its watermark, and the batches above it are replayed from the log.
    fn reopen(&mut self) {
        let engine = std::mem::replace(&mut self.engine, open_placeholder());
        drop(engine);
        if self.rng.chance(2) {
            self.fs.crash();
        }
        self.engine = open(&self.fs, self.kind);
        self.reopens += 1;
        let watermark = self.engine.watermark();
        assert_eq!(watermark, self.durable.0, "{:?}", self.kind);
        assert_eq!(self.engine.last_applied(), watermark, "{:?}", self.kind);
        check_all(&*self.engine.read_view(), &self.durable.1);
        let from = watermark.unwrap_or(0);
        for (lsn, batch) in self.log.iter().filter(|(lsn, _)| *lsn > from) {
            apply_to(&*self.engine, *lsn, batch);
        }
        check_all(&*self.engine.read_view(), &self.model);
        // Views below the watermark are gone with the old instance.
        self.history.retain(|(lsn, _)| *lsn >= from);
    }
}

/// A stand-in while the real engine is dropped and reopened: a B+tree on its own file
/// system, never used.
fn open_placeholder() -> Arc<dyn Engine> {
    open(&SimFs::new(0), EngineKind::Btree)
}

fn apply_to(engine: &dyn Engine, lsn: u64, batch: &Batch) {
    let writes: Vec<(&[u8], Option<&[u8]>)> = batch
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_deref()))
        .collect();
    engine.apply(lsn, &writes).unwrap();
}

fn apply_model(model: &mut Model, lsn: u64, batch: &Batch) {
    for (key, value) in batch {
        match value {
            Some(value) => model.insert(key.clone(), (value.clone(), lsn)),
            None => model.remove(key),
        };
    }
}

fn check_get(view: &dyn EngineView, model: &Model, key: &[u8]) {
    let mut value = b"stale".to_vec();
    let version = view.get_into(key, &mut value).unwrap();
    if let Some((expected, expected_version)) = model.get(key) {
        assert_eq!(version, Some(*expected_version), "get {key:?}");
        assert_eq!(&value, expected, "get {key:?}");
    } else {
        assert_eq!(version, None, "get {key:?}");
        assert!(value.is_empty(), "get {key:?} left a value");
    }
}

fn scan(
    view: &dyn EngineView,
    lower: &Bound<Vec<u8>>,
    upper: &Bound<Vec<u8>>,
    direction: Direction,
) -> Vec<(Vec<u8>, Vec<u8>, u64)> {
    let mut cursor = view
        .scan(
            lower.as_ref().map(Vec::as_slice),
            upper.as_ref().map(Vec::as_slice),
            direction,
        )
        .unwrap();
    let mut out = Vec::new();
    while cursor.valid() {
        out.push((
            cursor.key().to_vec(),
            cursor.value().to_vec(),
            cursor.version(),
        ));
        cursor.next().unwrap();
    }
    out
}

fn model_scan(
    model: &Model,
    lower: &Bound<Vec<u8>>,
    upper: &Bound<Vec<u8>>,
    direction: Direction,
) -> Vec<(Vec<u8>, Vec<u8>, u64)> {
    let inside = |key: &Vec<u8>| {
        let above = match lower {
            Bound::Included(l) => key >= l,
            Bound::Excluded(l) => key > l,
            Bound::Unbounded => true,
        };
        let below = match upper {
            Bound::Included(u) => key <= u,
            Bound::Excluded(u) => key < u,
            Bound::Unbounded => true,
        };
        above && below
    };
    let all = model
        .iter()
        .filter(|(k, _)| inside(k))
        .map(|(k, (v, ver))| (k.clone(), v.clone(), *ver));
    match direction {
        Direction::Forward => all.collect(),
        Direction::Backward => all.rev().collect(),
    }
}

fn check_scan(view: &dyn EngineView, model: &Model, rng: &mut Rng) {
    let (lower, upper) = (bound(rng), bound(rng));
    let direction = if rng.chance(2) {
        Direction::Forward
    } else {
        Direction::Backward
    };
    assert_eq!(
        scan(view, &lower, &upper, direction),
        model_scan(model, &lower, &upper, direction),
        "scan {lower:?} {upper:?} {direction:?}"
    );
}

fn check_all(view: &dyn EngineView, model: &Model) {
    for direction in [Direction::Forward, Direction::Backward] {
        let all = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(
            scan(view, &all.0, &all.1, direction),
            model_scan(model, &all.0, &all.1, direction)
        );
    }
    for key in model.keys().take(40) {
        check_get(view, model, key);
    }
}
