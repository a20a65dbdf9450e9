//! What the parent knows: the operations each cycle's workload started and the answers it
//! got (as lines, from the embedded child's standard output or from the server mode's client
//! threads), the state the previous cycles left, and the check of the recovered tables
//! against them. Both modes share it, so they judge a recovery by the same rules.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use popdb_db::{Db, DbOptions, Scan};

use crate::child::{KEYS_PER_THREAD, SEQ_PER_CYCLE, TABLES, key, options, parse_count};

/// An operation the child started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Put `key(thread, j)` in both tables.
    Put(u64),
    /// Delete `key(thread, j)` from both tables.
    Delete(u64),
    /// Increment the counter in both tables (a transaction).
    Counter,
}

/// What the child heard back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Acked(u64),
    NotApplied,
    /// No answer before the kill: it may or may not have applied.
    InFlight,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Event {
    thread: u64,
    seq: u64,
    kind: Kind,
    answer: Answer,
}

/// Reads the workload's lines.
pub(crate) fn parse(lines: &[String]) -> Result<Vec<Event>, String> {
    let mut events: BTreeMap<(u64, u64), Event> = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split(' ').collect();
        let number = |i: usize| -> Result<u64, String> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| format!("malformed line from the child: {line:?}"))
        };
        match fields.first().copied() {
            Some("S") => {
                let (thread, seq) = (number(1)?, number(2)?);
                let kind = match fields.get(3).copied() {
                    Some("P") => Kind::Put(number(4)?),
                    Some("D") => Kind::Delete(number(4)?),
                    Some("C") => Kind::Counter,
                    _ => return Err(format!("malformed line from the child: {line:?}")),
                };
                events.insert(
                    (thread, seq),
                    Event {
                        thread,
                        seq,
                        kind,
                        answer: Answer::InFlight,
                    },
                );
            }
            Some("A" | "F") => {
                let (thread, seq) = (number(1)?, number(2)?);
                let answer = if fields[0] == "A" {
                    Answer::Acked(number(3)?)
                } else {
                    Answer::NotApplied
                };
                events
                    .get_mut(&(thread, seq))
                    .ok_or_else(|| format!("an answer to an unknown operation: {line:?}"))?
                    .answer = answer;
            }
            Some("E") => return Err(format!("the child failed: {line}")),
            _ => return Err(format!("malformed line from the child: {line:?}")),
        }
    }
    Ok(events.into_values().collect())
}

/// The canary (`--canary`): adds to a cycle's lines an acknowledged put of thread 0's first
/// key that was never sent, which the check must report as lost. If a canary run passes,
/// the harness has stopped seeing what it is meant to see.
pub(crate) fn forge_acknowledged_put(lines: &mut Vec<String>, cycle: u64) {
    // Past any sequence number a real thread reaches in a cycle, so it is the latest write.
    let seq = cycle * SEQ_PER_CYCLE + SEQ_PER_CYCLE / 2;
    lines.push(format!("S 0 {seq} P 0"));
    lines.push(format!("A 0 {seq} {}", u64::MAX / 2));
}

/// A table's rows: key -> (value, version).
pub(crate) type Rows = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;

/// What the recovered Db holds, per table.
pub(crate) struct Found {
    tables: BTreeMap<&'static str, Rows>,
}

impl Found {
    /// The rows of every table in [`TABLES`], read by some other means (the server mode
    /// scans them through the client).
    ///
    /// # Panics
    /// If a table of [`TABLES`] is missing: a caller that could not read one has an error
    /// to report instead.
    pub(crate) fn new(tables: BTreeMap<&'static str, Rows>) -> Self {
        for (table, _) in TABLES {
            assert!(tables.contains_key(table), "no rows read for table {table}");
        }
        Self { tables }
    }
}

/// Opens the Db (recovering it) and reads both tables whole.
pub(crate) fn read_db(dir: &Path) -> Result<Found, String> {
    let db = Db::open(
        dir,
        DbOptions {
            background: false,
            ..options()
        },
    )
    .map_err(|e| e.to_string())?;
    let mut tables = BTreeMap::new();
    for (table, _) in TABLES {
        let rows = db
            .scan(table, &Scan::all())
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|e| (e.key, (e.value, e.version)))
            .collect();
        tables.insert(table, rows);
    }
    db.close().map_err(|e| e.to_string())?;
    Ok(Found { tables })
}

/// What the checks found.
#[derive(Clone, Debug, Default)]
pub(crate) struct Findings {
    pub(crate) checked: u64,
    pub(crate) lost: u64,
    pub(crate) torn: u64,
    pub(crate) phantom: u64,
    pub(crate) regressed: u64,
    pub(crate) check_problems: u64,
}

impl Findings {
    pub(crate) fn is_clean(&self) -> bool {
        self.lost == 0
            && self.torn == 0
            && self.phantom == 0
            && self.regressed == 0
            && self.check_problems == 0
    }

    pub(crate) fn add(&mut self, other: &Findings) {
        self.checked += other.checked;
        self.lost += other.lost;
        self.torn += other.torn;
        self.phantom += other.phantom;
        self.regressed += other.regressed;
        self.check_problems += other.check_problems;
    }
}

impl fmt::Display for Findings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} acknowledged writes checked, {} lost, {} torn, {} phantom",
            self.checked, self.lost, self.torn, self.phantom
        )?;
        if self.regressed > 0 {
            write!(f, ", {} versions went back", self.regressed)?;
        }
        if self.check_problems > 0 {
            write!(f, ", {} offline check problems", self.check_problems)?;
        }
        Ok(())
    }
}

/// A key's state: the operation whose put it holds (and its version), or absent.
type Slot = Option<(u64, u64)>;

/// The state the previous cycles left, as found and checked.
#[derive(Default)]
pub(crate) struct Ledger {
    /// (thread, j) -> the put it holds: (seq, version).
    keys: BTreeMap<(u64, u64), Slot>,
    counter: u64,
    /// Key -> the version found last time (versions only grow).
    versions: BTreeMap<Vec<u8>, u64>,
}

/// The operation sequence number a value was written by, if it belongs to `thread`.
fn parse_value(thread: u64, value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.splitn(3, ':');
    let owner = parts.next()?.strip_prefix('t')?.parse::<u64>().ok()?;
    let seq = parts.next()?.parse().ok()?;
    (owner == thread).then_some(seq)
}

impl Ledger {
    /// Checks what a reopened Db holds against the cycle's events, then takes it as the
    /// state the next cycle starts from.
    pub(crate) fn check(&mut self, events: &[Event], found: &Found) -> Findings {
        let mut findings = Findings::default();
        let (lsm, btree) = (&found.tables["lsm"], &found.tables["btree"]);
        // No batch or transaction in part: both tables hold the same rows.
        let keys: std::collections::BTreeSet<&Vec<u8>> = lsm.keys().chain(btree.keys()).collect();
        for key in keys {
            if lsm.get(key) != btree.get(key) {
                findings.torn += 1;
                eprintln!(
                    "torn: key {}: lsm holds {:?}, btree holds {:?} (versions)",
                    String::from_utf8_lossy(key),
                    lsm.get(key).map(|(_, version)| version),
                    btree.get(key).map(|(_, version)| version)
                );
            }
        }
        // Versions only grow.
        for (key, (_, version)) in lsm {
            if self.versions.get(key).is_some_and(|old| version < old) {
                findings.regressed += 1;
            }
            self.versions.insert(key.clone(), *version);
        }
        findings.checked = events
            .iter()
            .filter(|e| matches!(e.answer, Answer::Acked(_)))
            .count() as u64;
        let threads = events.iter().map(|e| e.thread + 1).max().unwrap_or(0);
        let known_threads = self.keys.keys().map(|(t, _)| t + 1).max().unwrap_or(0);
        for thread in 0..threads.max(known_threads) {
            for j in 0..KEYS_PER_THREAD {
                self.check_key(thread, j, events, lsm, &mut findings);
            }
        }
        self.check_counter(events, lsm, &mut findings);
        findings
    }

    fn check_key(
        &mut self,
        thread: u64,
        j: u64,
        events: &[Event],
        lsm: &Rows,
        findings: &mut Findings,
    ) {
        let ops: Vec<&Event> = events
            .iter()
            .filter(|e| {
                e.thread == thread && matches!(e.kind, Kind::Put(k) | Kind::Delete(k) if k == j)
            })
            .collect();
        let last_acked = ops
            .iter()
            .filter(|e| matches!(e.answer, Answer::Acked(_)))
            .max_by_key(|e| e.seq);
        // What must be there, unless the operation in flight replaced it.
        let expected: Slot = match last_acked {
            Some(e) => match (e.kind, e.answer) {
                (Kind::Put(_), Answer::Acked(lsn)) => Some((e.seq, lsn)),
                _ => None,
            },
            None => self.keys.get(&(thread, j)).copied().flatten(),
        };
        let in_flight = ops
            .iter()
            .find(|e| e.answer == Answer::InFlight && last_acked.is_none_or(|a| e.seq > a.seq));
        let key = key(thread, j).into_bytes();
        let found: Option<(Option<u64>, u64)> = lsm
            .get(&key)
            .map(|(value, version)| (parse_value(thread, value), *version));
        let holds = match (found, expected) {
            (None, None) => Some(None),
            (Some((Some(seq), version)), Some(want)) if (seq, version) == want => Some(Some(want)),
            _ => None,
        };
        let state = if let Some(state) = holds {
            state
        } else {
            // Only the operation in flight may explain the difference.
            let explained = match (in_flight.map(|e| e.kind), found) {
                (Some(Kind::Delete(_)), None) => Some(None),
                (Some(Kind::Put(_)), Some((Some(seq), version)))
                    if Some(seq) == in_flight.map(|e| e.seq)
                        && expected.is_none_or(|(_, v)| version > v) =>
                {
                    Some(Some((seq, version)))
                }
                _ => None,
            };
            if let Some(state) = explained {
                state
            } else {
                let verdict = match found {
                    Some((Some(seq), _))
                        if ops.iter().any(|e| e.seq == seq)
                            || expected.is_some_and(|(s, _)| s > seq) =>
                    {
                        // An older write of this key: a newer acknowledged one was lost.
                        findings.lost += 1;
                        "lost"
                    }
                    Some(_) => {
                        findings.phantom += 1;
                        "phantom"
                    }
                    None => {
                        findings.lost += 1;
                        "lost"
                    }
                };
                eprintln!(
                    "{verdict}: key {}: found (seq, version) {found:?}, expected {expected:?}, \
                     in flight {:?}",
                    String::from_utf8_lossy(&key),
                    in_flight.map(|e| (e.seq, e.kind))
                );
                found.and_then(|(seq, version)| seq.map(|s| (s, version)))
            }
        };
        self.keys.insert((thread, j), state);
    }

    fn check_counter(&mut self, events: &[Event], lsm: &Rows, findings: &mut Findings) {
        let acked = events
            .iter()
            .filter(|e| e.kind == Kind::Counter && matches!(e.answer, Answer::Acked(_)))
            .count() as u64;
        let in_flight = events
            .iter()
            .filter(|e| e.kind == Kind::Counter && e.answer == Answer::InFlight)
            .count() as u64;
        let found = lsm
            .get(b"counter".as_slice())
            .map_or(0, |(value, _)| parse_count(value));
        let low = self.counter + acked;
        if found < low {
            findings.lost += low - found;
        } else if found > low + in_flight {
            findings.phantom += found - low - in_flight;
        }
        if found < low || found > low + in_flight {
            eprintln!(
                "counter: found {found}, expected {low} plus up to {in_flight} in flight \
                 ({} before this cycle, {acked} increments acknowledged)",
                self.counter
            );
        }
        self.counter = found;
    }
}
