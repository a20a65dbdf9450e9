//! Random messages for the codec tests and the fuzz replay: every request and response
//! kind, with small keys so that frames stay short, and boundary values in integers.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::ops::Bound;

use popdb_protocol::{
    Check, Commit, Compression, Condition, Cursor, Direction, Engine, Entries, Entry, ErrorKind,
    HandshakeOk, IdempotencyKey, Limit, Limits, Request, Response, Scan, ServerError, Status,
    TableInfo, TableOptions, UnknownReason, Versioned, Write,
};
use popdb_testkit::Rng;

const INTERESTING_U64: [u64; 6] = [0, 1, 0xff, u32::MAX as u64, u64::MAX - 1, u64::MAX];

pub fn any_u64(rng: &mut Rng) -> u64 {
    if rng.chance(4) {
        INTERESTING_U64[rng.index(INTERESTING_U64.len())]
    } else {
        rng.next() >> rng.below(64)
    }
}

pub fn any_u32(rng: &mut Rng) -> u32 {
    (any_u64(rng) >> 32) as u32 ^ if rng.chance(2) { 0 } else { rng.next() as u32 }
}

/// Up to `len_max` bytes of any value; empty one time in four.
pub fn any_bytes(rng: &mut Rng, len_max: usize) -> Vec<u8> {
    if rng.chance(4) {
        return Vec::new();
    }
    let len = rng.index(len_max + 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

pub fn any_key(rng: &mut Rng) -> Vec<u8> {
    any_bytes(rng, 12)
}

pub fn any_value(rng: &mut Rng) -> Vec<u8> {
    any_bytes(rng, 24)
}

/// Table names: mostly valid ones, some with non-ASCII UTF-8 (the codec carries any text;
/// the Db refuses bad names).
pub fn any_name(rng: &mut Rng) -> String {
    const NAMES: [&str; 6] = ["t", "users", "orders-2026", "a.b_c", "", "\u{e9}t\u{e9}"];
    if rng.chance(3) {
        let len = 1 + rng.index(64);
        return (0..len)
            .map(|_| char::from(b'a' + rng.below(26) as u8))
            .collect();
    }
    NAMES[rng.index(NAMES.len())].to_owned()
}

pub fn any_text(rng: &mut Rng) -> String {
    const TEXTS: [&str; 5] = [
        "",
        "ok",
        "key of 600 bytes is over 512",
        "x\u{2603}y",
        "a b c",
    ];
    TEXTS[rng.index(TEXTS.len())].to_owned()
}

pub fn any_options(rng: &mut Rng) -> TableOptions {
    TableOptions {
        engine: if rng.chance(2) {
            Engine::Lsm
        } else {
            Engine::Btree
        },
        compression: if rng.chance(2) {
            Compression::None
        } else {
            Compression::Zstd {
                level: any_u32(rng).cast_signed(),
            }
        },
        page_size: any_u32(rng),
        bloom_bits_per_key: any_u32(rng),
    }
}

pub fn any_bound(rng: &mut Rng) -> Bound<Vec<u8>> {
    match rng.below(3) {
        0 => Bound::Unbounded,
        1 => Bound::Included(any_key(rng)),
        _ => Bound::Excluded(any_key(rng)),
    }
}

pub fn any_cursor(rng: &mut Rng) -> Option<Cursor> {
    rng.chance(2).then(|| Cursor {
        key: any_key(rng),
        lsn: any_u64(rng),
    })
}

pub fn any_tables(rng: &mut Rng) -> Vec<String> {
    (0..=rng.index(4)).map(|_| any_name(rng)).collect()
}

pub fn any_writes(rng: &mut Rng, tables_count: usize) -> Vec<Write> {
    (0..rng.index(6))
        .map(|_| Write {
            table: rng.index(tables_count) as u16,
            key: any_key(rng),
            value: rng.chance(3).then(|| any_value(rng)),
        })
        .collect()
}

pub fn any_check(rng: &mut Rng) -> Check {
    match rng.below(4) {
        0 => Check::Version {
            key: any_key(rng),
            version: any_u64(rng),
        },
        1 => Check::Absent { key: any_key(rng) },
        2 => Check::Exists { key: any_key(rng) },
        _ => Check::RangeUnchanged {
            start: any_key(rng),
            end: rng.chance(2).then(|| any_key(rng)),
            since: any_u64(rng),
        },
    }
}

pub fn any_commit(rng: &mut Rng) -> Commit {
    let tables = any_tables(rng);
    let conditions = (0..rng.index(5))
        .map(|_| Condition {
            table: rng.index(tables.len()) as u16,
            check: any_check(rng),
        })
        .collect();
    Commit {
        idempotency: rng.chance(2).then(|| IdempotencyKey {
            client: any_u64(rng),
            sequence: any_u64(rng),
        }),
        writes: any_writes(rng, tables.len()),
        tables,
        conditions,
    }
}

/// Requests of every kind, each about equally often.
pub fn any_request(rng: &mut Rng) -> Request {
    match rng.below(13) {
        0 => Request::Handshake {
            version_min: rng.next() as u8,
            version_max: rng.next() as u8,
            token: rng.chance(2).then(|| any_bytes(rng, 40)),
        },
        1 => Request::Ping,
        2 => Request::Status,
        3 => Request::CreateTable {
            name: any_name(rng),
            options: any_options(rng),
        },
        4 => Request::DropTable {
            name: any_name(rng),
        },
        5 => Request::ListTables,
        6 => Request::DescribeTable {
            name: any_name(rng),
        },
        7 => Request::Get {
            table: any_name(rng),
            key: any_key(rng),
        },
        8 => Request::Put {
            table: any_name(rng),
            key: any_key(rng),
            value: any_value(rng),
        },
        9 => Request::Delete {
            table: any_name(rng),
            key: any_key(rng),
        },
        10 => {
            let tables = any_tables(rng);
            Request::Batch {
                writes: any_writes(rng, tables.len()),
                tables,
            }
        }
        11 => Request::Scan(Scan {
            table: any_name(rng),
            lower: any_bound(rng),
            upper: any_bound(rng),
            direction: if rng.chance(2) {
                Direction::Forward
            } else {
                Direction::Backward
            },
            limit: rng.below(u64::from(popdb_protocol::SCAN_LIMIT_MAX) + 1) as u32,
            cursor: any_cursor(rng),
        }),
        _ => Request::Commit(any_commit(rng)),
    }
}

pub fn any_table_info(rng: &mut Rng) -> TableInfo {
    TableInfo {
        id: any_u64(rng),
        name: any_name(rng),
        options: any_options(rng),
    }
}

pub fn any_error_kind(rng: &mut Rng) -> ErrorKind {
    match rng.below(14) {
        0 => ErrorKind::BadRequest,
        1 => ErrorKind::FrameTooLarge,
        2 => ErrorKind::LimitExceeded {
            limit: Limit::ALL[rng.index(Limit::ALL.len())],
        },
        3 => ErrorKind::UnsupportedVersion {
            min: rng.next() as u8,
            max: rng.next() as u8,
        },
        4 => ErrorKind::Unauthorized,
        5 => ErrorKind::UnknownTable,
        6 => ErrorKind::TableExists,
        7 => ErrorKind::Conflict {
            condition_index: any_u32(rng),
        },
        8 => ErrorKind::UnknownOutcome {
            reason: UnknownReason::ALL[rng.index(UnknownReason::ALL.len())],
        },
        9 => ErrorKind::Overloaded,
        10 => ErrorKind::ReadOnly,
        11 => ErrorKind::CursorExpired,
        12 => ErrorKind::Internal,
        _ => ErrorKind::NotLeader {
            leader_hint: rng.chance(2).then(|| "10.0.0.2:7878".to_owned()),
        },
    }
}

/// Limits within the defaults' shape (a client decodes with what the server announced).
pub fn any_limits(rng: &mut Rng) -> Limits {
    Limits {
        frame_size_max: 16 + any_u32(rng) / 2,
        key_size_max: any_u32(rng),
        value_size_max: any_u32(rng),
        batch_writes_max: any_u32(rng),
        batch_size_max: any_u32(rng),
        conditions_max: any_u32(rng),
        scan_limit_max: any_u32(rng),
        tables_max: any_u32(rng),
    }
}

/// Responses of every kind, each about equally often. Counts stay within the default
/// limits.
pub fn any_response(rng: &mut Rng) -> Response {
    match rng.below(11) {
        0 => Response::Handshake(HandshakeOk {
            version: rng.next() as u8,
            server_version: any_text(rng),
            limits: any_limits(rng),
            in_flight_max: any_u32(rng),
            cursor_ttl_ms: any_u32(rng),
        }),
        1 => Response::Pong,
        2 => Response::Status(Status {
            visible_lsn: any_u64(rng),
            durable_lsn: any_u64(rng),
            uptime_ms: any_u64(rng),
            tables_count: any_u32(rng),
            connections_count: any_u32(rng),
            read_only: rng.chance(2),
            stats: (0..rng.index(4))
                .map(|_| (any_text(rng), any_text(rng)))
                .collect(),
        }),
        3 => Response::TableCreated {
            lsn: any_u64(rng),
            table: any_table_info(rng),
        },
        4 => Response::Tables((0..rng.index(4)).map(|_| any_table_info(rng)).collect()),
        5 => Response::Table(any_table_info(rng)),
        6 => Response::Value(rng.chance(2).then(|| Versioned {
            value: any_value(rng),
            version: any_u64(rng),
        })),
        7 => Response::Written { lsn: any_u64(rng) },
        8 => Response::Entries(Entries {
            read_lsn: any_u64(rng),
            entries: (0..rng.index(5))
                .map(|_| Entry {
                    key: any_key(rng),
                    value: any_value(rng),
                    version: any_u64(rng),
                })
                .collect(),
            cursor: any_cursor(rng),
        }),
        9 => Response::Committed { lsn: any_u64(rng) },
        _ => Response::Error(ServerError::new(any_error_kind(rng), any_text(rng))),
    }
}

/// Limits small enough that random frames hit them.
pub const TINY_LIMITS: Limits = Limits {
    frame_size_max: 200,
    key_size_max: 6,
    value_size_max: 10,
    batch_writes_max: 3,
    batch_size_max: 24,
    conditions_max: 2,
    scan_limit_max: 3,
    tables_max: 2,
};
