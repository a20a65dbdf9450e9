//! Writes WAL images with the real log (popdb-wal on `popdb_io::RealFs`), never by hand:
//!
//! - `corpus DIR`: the seed corpus of fuzz target `wal_segment_decode` (segment images with
//!   trailing zeros trimmed, damaged variants, state files), each file prefixed with the two
//!   control bytes that fuzz/checks/wal_segment_decode.rs reads.
//! - `fixture DIR`: the small log of the v1 golden fixtures (a segment and its `STATE`).
//!   Fixtures are never regenerated; this mode is how the committed ones were made.
//! - `dump FILE`: an annotated hex dump of a segment or a state file, one line per field
//!   (docs/format/wal.md, "Worked example").
//!
//! Run from fuzz/: `cargo run --example make_corpus -- corpus /tmp/corpus`.

// A developer's tool that reads and writes scratch folders; the log it drives still goes
// through `popdb_io::RealFs`.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::sync::Arc;

use popdb_io::{FsRef, RealFs};
use popdb_wal::internals::{
    LogState, RECORD_HEADER_SIZE, RecordHeader, SEGMENT_HEADER_SIZE, SegmentHeader,
    UNIT_HEADER_SIZE, UnitHeader, seed,
};
use popdb_wal::{
    LogId, Lsn, NewRecord, NodeId, Record, RecordKind, SyncPolicy, Term, Wal, WalOptions,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["corpus", dir] => corpus(Path::new(dir)),
        ["fixture", dir] => fixture(Path::new(dir)),
        ["dump", file] => dump(Path::new(file)),
        _ => {
            eprintln!("usage: make_corpus corpus DIR | fixture DIR | dump FILE");
            std::process::exit(2);
        }
    }
}

const SEGMENT_SIZE: u64 = 64 * 1024;

fn options(sync: SyncPolicy) -> WalOptions {
    WalOptions {
        segment_size: SEGMENT_SIZE,
        record_size_max: 16 * 1024,
        sync,
        spare_segments: 0,
        ..WalOptions::default()
    }
}

fn open(dir: &Path, sync: SyncPolicy) -> Wal {
    let fs: FsRef = Arc::new(RealFs::new());
    Wal::open(fs, dir, options(sync)).expect("open log").0
}

fn rec(kind: RecordKind, payload: &[u8]) -> NewRecord {
    NewRecord {
        term: Term(0),
        node: NodeId(0),
        kind,
        payload: payload.to_vec(),
    }
}

fn at(lsn: u64, term: u64, node: u64, kind: RecordKind, payload: &[u8]) -> Record {
    Record {
        id: LogId {
            lsn: Lsn(lsn),
            term: Term(term),
            node: NodeId(node),
        },
        kind,
        payload: payload.to_vec(),
    }
}

/// A mix of single appends and multi-record units, with every kind and a Raft-style append.
fn append_mix(wal: &Wal) {
    wal.append(RecordKind::Normal, b"first".to_vec())
        .expect("append");
    wal.append(RecordKind::Blank, Vec::new()).expect("append");
    let batch = (0..5u8)
        .map(|i| rec(RecordKind::Normal, &vec![b'a' + i; usize::from(i) * 7]))
        .collect();
    wal.submit(batch).expect("submit").wait().expect("append");
    let next = wal.next_lsn().0;
    let raft = vec![
        at(next, 3, 2, RecordKind::Membership, b"voters=1,2,3"),
        at(next + 1, 3, 2, RecordKind::Normal, &[0xff; 40]),
    ];
    wal.submit_at(raft)
        .expect("submit_at")
        .wait()
        .expect("append");
    wal.append(RecordKind::Normal, b"last".to_vec())
        .expect("append");
}

/// The log's segment files, by name.
fn segments(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| {
            e.expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8 name")
        })
        .filter(|n| Path::new(n).extension().is_some_and(|e| e == "wal"))
        .filter(|n| !n.starts_with("spare-"))
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).expect("read segment");
            (n, bytes)
        })
        .collect();
    out.sort();
    out
}

/// The image without trailing zeros, but never shorter than the header block.
fn trim(image: &[u8]) -> Vec<u8> {
    let end = image.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    image[..end.max(SEGMENT_HEADER_SIZE as usize).min(image.len())].to_vec()
}

/// Offsets of the units a segment image holds (with the header's seed).
fn units(image: &[u8]) -> Vec<(usize, UnitHeader)> {
    let header = SegmentHeader::decode(image).expect("segment header");
    let seed = seed(header.segment_id, header.generation);
    let mut at = SEGMENT_HEADER_SIZE as usize;
    let mut out = Vec::new();
    while let Some(unit) = image.get(at..).and_then(|b| UnitHeader::decode(b, &seed)) {
        out.push((at, unit));
        at += UNIT_HEADER_SIZE + unit.body_len as usize;
    }
    out
}

struct Out<'a> {
    dir: &'a Path,
    bytes: u64,
}

impl Out<'_> {
    fn put(&mut self, name: &str, control: [u8; 2], image: &[u8]) {
        let mut data = control.to_vec();
        data.extend_from_slice(image);
        std::fs::write(self.dir.join(name), &data).expect("write corpus file");
        self.bytes += data.len() as u64;
    }
}

/// `c0` for a non-last segment whose live records end at `live_end`.
fn live_end_control(first: u64, live_end: u64) -> u8 {
    let k = live_end + 2 - first;
    assert!(k <= 0x7f, "live end too far for the control byte");
    0x80 | k as u8
}

fn corpus(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create corpus dir");
    let mut out = Out { dir, bytes: 0 };

    // A: one segment, every unit synced (durable_upto = the unit's own offset).
    let log = tempfile::tempdir().expect("tempdir");
    let wal = open(log.path(), SyncPolicy::Always);
    append_mix(&wal);
    wal.close().expect("close");
    let (_, image) = segments(log.path()).remove(0);
    let image = trim(&image);
    let header = SegmentHeader::decode(&image).expect("header");
    let units_a = units(&image);
    let records: u64 = units_a.iter().map(|(_, u)| u64::from(u.record_count)).sum();
    out.put("always-tail", [0x00, 0x01], &image);
    out.put(
        "always-header-only",
        [0x00, 0x01],
        &image[..SEGMENT_HEADER_SIZE as usize],
    );
    out.put(
        "always-live-end-reached",
        [live_end_control(header.first_lsn, records), 0x01],
        &image,
    );
    out.put(
        "always-live-end-missing",
        [live_end_control(header.first_lsn, records + 1), 0x01],
        &image,
    );
    out.put("always-generation-too-new", [0x00, 0x00], &image);
    out.put("always-torn-cut", [0x00, 0x01], &image[..image.len() - 10]);
    let (last_at, _) = *units_a.last().expect("units");
    let mut flipped = image.clone();
    flipped[last_at + UNIT_HEADER_SIZE + 20] ^= 0x01;
    out.put("always-torn-flip-last-unit", [0x00, 0x01], &flipped);
    let (first_at, _) = units_a[0];
    let mut flipped = image.clone();
    flipped[first_at + UNIT_HEADER_SIZE + RECORD_HEADER_SIZE] ^= 0x01;
    out.put("always-corrupt-flip-first-unit", [0x00, 0x01], &flipped);
    let mut flipped = image.clone();
    flipped[30] ^= 0x80;
    out.put("always-bad-header", [0x00, 0x01], &flipped);

    // B: nothing synced until close: every unit says durable_upto = 4096.
    let log = tempfile::tempdir().expect("tempdir");
    let wal = open(log.path(), SyncPolicy::Never);
    append_mix(&wal);
    wal.close().expect("close");
    let (_, image) = segments(log.path()).remove(0);
    let image = trim(&image);
    out.put("never-tail", [0x00, 0x01], &image);
    let (first_at, _) = units(&image)[0];
    let mut flipped = image.clone();
    flipped[first_at + 9] ^= 0x04;
    out.put("never-torn-first-unit-header", [0x00, 0x01], &flipped);

    // C: a second generation appending to the same tail, after a torn tail of the first.
    let log = tempfile::tempdir().expect("tempdir");
    let wal = open(log.path(), SyncPolicy::Always);
    append_mix(&wal);
    wal.close().expect("close");
    let (name, image) = segments(log.path()).remove(0);
    let (last_at, last) = *units(&image).last().expect("units");
    let mut torn = image.clone();
    let end = last_at + UNIT_HEADER_SIZE + last.body_len as usize;
    torn[end - 8..end].fill(0);
    std::fs::write(log.path().join(&name), &torn).expect("tear the tail");
    let wal = open(log.path(), SyncPolicy::Always);
    wal.append(RecordKind::Normal, b"after the torn tail".to_vec())
        .expect("append");
    wal.append(RecordKind::Normal, b"x".to_vec())
        .expect("append");
    wal.close().expect("close");
    let (_, image) = segments(log.path()).remove(0);
    out.put("reopened-generation-2", [0x00, 0x02], &trim(&image));
    out.put("reopened-generation-max-1", [0x00, 0x01], &trim(&image));

    // D: rotation: a full non-last segment and the tail after it.
    let log = tempfile::tempdir().expect("tempdir");
    let wal = open(log.path(), SyncPolicy::Always);
    for i in 0..120u32 {
        let payload = vec![(i % 251) as u8; 300 + (i as usize * 37) % 400];
        wal.append(RecordKind::Normal, payload).expect("append");
    }
    wal.close().expect("close");
    let segs = segments(log.path());
    assert!(segs.len() >= 2, "expected a rotation");
    let first = SegmentHeader::decode(&segs[0].1).expect("header");
    let second = SegmentHeader::decode(&segs[1].1).expect("header");
    out.put(
        "rotated-full-segment",
        [
            live_end_control(first.first_lsn, second.first_lsn - 1),
            0x01,
        ],
        &trim(&segs[0].1),
    );
    out.put("rotated-tail", [0x00, 0x01], &trim(&segs[1].1));

    // E: truncation: a later segment supersedes records 6.. of the first.
    let log = tempfile::tempdir().expect("tempdir");
    let wal = open(log.path(), SyncPolicy::Always);
    for i in 0..10u8 {
        wal.append(RecordKind::Normal, vec![i; usize::from(i)])
            .expect("append");
    }
    wal.truncate(Lsn(6)).expect("truncate");
    for i in 0..3u8 {
        wal.append(RecordKind::Blank, vec![i; 3]).expect("append");
    }
    wal.close().expect("close");
    let segs = segments(log.path());
    out.put(
        "truncated-superseded",
        [live_end_control(1, 5), 0x01],
        &trim(&segs[0].1),
    );
    out.put("truncated-new-tail", [0x00, 0x01], &trim(&segs[1].1));

    // F: state files.
    let log = tempfile::tempdir().expect("tempdir");
    let wal = open(log.path(), SyncPolicy::Always);
    let state = std::fs::read(log.path().join("STATE")).expect("read state");
    out.put("state-fresh", [0x00, 0x00], &state);
    wal.append(RecordKind::Normal, b"r".to_vec())
        .expect("append");
    wal.save_vote(b"term=3 voted_for=2").expect("vote");
    wal.purge(LogId {
        lsn: Lsn(1),
        term: Term(0),
        node: NodeId(0),
    })
    .expect("purge");
    wal.close().expect("close");
    let state = std::fs::read(log.path().join("STATE")).expect("read state");
    out.put("state-vote-purged", [0x00, 0x00], &state);
    let mut flipped = state.clone();
    flipped[20] = 2;
    out.put("state-bad-flag", [0x00, 0x00], &flipped);

    eprintln!("wrote {} bytes of corpus", out.bytes);
}

/// The small log of the v1 golden fixtures: three records in two units, a vote and a purge.
fn fixture(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create fixture dir");
    let log = tempfile::tempdir().expect("tempdir");
    let wal = open(log.path(), SyncPolicy::Always);
    wal.submit_at(vec![
        at(1, 1, 7, RecordKind::Normal, b"hello"),
        at(2, 1, 7, RecordKind::Blank, b""),
    ])
    .expect("submit_at")
    .wait()
    .expect("append");
    wal.submit_at(vec![at(3, 2, 7, RecordKind::Membership, b"voters=7")])
        .expect("submit_at")
        .wait()
        .expect("append");
    wal.save_vote(b"term=2 voted_for=7").expect("vote");
    wal.purge(LogId {
        lsn: Lsn(1),
        term: Term(1),
        node: NodeId(7),
    })
    .expect("purge");
    wal.close().expect("close");
    for name in ["0000000000000001.wal", "STATE"] {
        std::fs::copy(log.path().join(name), dir.join(name)).expect("copy fixture file");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Prints one field: offset, its bytes (wrapped 8 a row) and a note.
fn field(b: &[u8], at: usize, len: usize, note: &str) {
    let chunks: Vec<&[u8]> = b[at..at + len].chunks(8).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let note = if i == 0 { note } else { "" };
        println!("{:08x}  {:<23}  {note}", at + i * 8, hex(chunk));
    }
}

#[allow(clippy::many_single_char_names)]
fn dump(file: &Path) {
    let b = std::fs::read(file).expect("read");
    if b.starts_with(b"POPDBWST") {
        return dump_state(&b);
    }
    let header = SegmentHeader::decode(&b).expect("segment header");
    println!("-- segment header ({} bytes of fields)", 64);
    field(&b, 0, 8, "magic \"POPDBWAL\"");
    field(&b, 8, 4, &format!("format_version = {}", u32_at(&b, 8)));
    field(&b, 12, 4, &format!("header_size = {}", u32_at(&b, 12)));
    field(&b, 16, 8, &format!("segment_id = {}", header.segment_id));
    field(&b, 24, 8, &format!("generation = {}", header.generation));
    field(&b, 32, 8, &format!("first_lsn = {}", header.first_lsn));
    field(
        &b,
        40,
        8,
        &format!("segment_size = {}", header.segment_size),
    );
    field(&b, 48, 12, "reserved (zero)");
    field(
        &b,
        60,
        4,
        &format!("crc = {:#010x}: crc32 of bytes 0..60", u32_at(&b, 60)),
    );
    let zero = b[64..SEGMENT_HEADER_SIZE as usize].iter().all(|&x| x == 0);
    println!(
        "{:08x}  ...                      zero through {:#x}: {zero}",
        64, SEGMENT_HEADER_SIZE
    );
    let s = seed(header.segment_id, header.generation);
    let mut at = SEGMENT_HEADER_SIZE as usize;
    while let Some(unit) = UnitHeader::decode(&b[at..], &s) {
        println!("-- unit at {at:#x}");
        field(&b, at, 4, "magic \"UNIT\"");
        field(
            &b,
            at + 4,
            4,
            &format!("crc = {:#010x}", u32_at(&b, at + 4)),
        );
        field(&b, at + 8, 4, &format!("body_len = {}", unit.body_len));
        field(
            &b,
            at + 12,
            4,
            &format!("record_count = {}", unit.record_count),
        );
        field(&b, at + 16, 8, &format!("first_lsn = {}", unit.first_lsn));
        field(&b, at + 24, 8, &format!("generation = {}", unit.generation));
        field(
            &b,
            at + 32,
            8,
            &format!("durable_upto = {:#x}", unit.durable_upto),
        );
        let mut r = at + UNIT_HEADER_SIZE;
        for _ in 0..unit.record_count {
            let h = RecordHeader::decode_checked(&b[r..], &s).expect("record");
            println!("-- record at {r:#x}");
            field(&b, r, 4, &format!("crc = {:#010x}", h.crc));
            field(&b, r + 4, 4, &format!("payload_len = {}", h.payload_len));
            field(&b, r + 8, 8, &format!("lsn = {}", h.lsn));
            field(&b, r + 16, 8, &format!("term = {}", h.term));
            field(&b, r + 24, 8, &format!("node = {}", h.node));
            field(&b, r + 32, 1, &format!("kind = {}", h.kind));
            field(&b, r + 33, 1, "flags = 0");
            field(&b, r + 34, 2, "reserved = 0");
            if h.payload_len > 0 {
                let p = &b[r + RECORD_HEADER_SIZE..r + h.record_len()];
                field(
                    &b,
                    r + RECORD_HEADER_SIZE,
                    p.len(),
                    &format!("payload {:?}", String::from_utf8_lossy(p)),
                );
            }
            r += h.record_len();
        }
        at = r;
    }
    let rest = b[at..].iter().all(|&x| x == 0);
    println!(
        "{at:08x}  ...                      zero through {:#x}: {rest}",
        b.len()
    );
}

fn dump_state(b: &[u8]) {
    let state = LogState::decode(b).expect("state file");
    println!("-- state file: {state:?}");
    field(b, 0, 8, "magic \"POPDBWST\"");
    field(b, 8, 4, &format!("version = {}", u32_at(b, 8)));
    field(b, 12, 8, &format!("generation = {}", u64_at(b, 12)));
    field(b, 20, 1, &format!("has_purged = {}", b[20]));
    field(b, 21, 8, &format!("purged_lsn = {}", u64_at(b, 21)));
    field(b, 29, 8, &format!("purged_term = {}", u64_at(b, 29)));
    field(b, 37, 8, &format!("purged_node = {}", u64_at(b, 37)));
    field(b, 45, 1, &format!("has_vote = {}", b[45]));
    let n = u32_at(b, 46) as usize;
    field(b, 46, 4, &format!("vote_len = {n}"));
    if n > 0 {
        field(
            b,
            50,
            n,
            &format!("vote {:?}", String::from_utf8_lossy(&b[50..50 + n])),
        );
    }
    field(
        b,
        50 + n,
        4,
        &format!(
            "crc = {:#010x}: crc32 of bytes 0..{}",
            u32_at(b, 50 + n),
            50 + n
        ),
    );
}
