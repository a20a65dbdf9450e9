//! Replays fuzz target `protocol_frame_decode` (its body is
//! fuzz/checks/protocol_frame_decode.rs, included with `#[path]`) over its committed seed
//! corpus, its regressions, random bytes and a few thousand mutations of valid frame
//! streams: nothing may panic, and whatever decodes must re-encode to its bytes.
//!
//! The seed corpus is written by the ignored test `write_seed_corpus`
//! (`cargo test -p popdb-protocol --test codec_fuzz_replay -- --ignored write_seed_corpus`
//! from the workspace root, into an existing fuzz/corpus/protocol_frame_decode/);
//! `protocol_frame_decode_seed_corpus_is_current` fails if the committed files drift from
//! it.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

#[path = "../../fuzz/checks/protocol_frame_decode.rs"]
mod check;
mod common;

use std::collections::BTreeMap;

use common::{any_request, any_response};
use popdb_protocol::{
    Decoded, ErrorKind, Limit, Limits, Request, Response, ServerError, decode_frame,
};
use popdb_testkit::{Mutations, Rng, fuzz_dir, read_inputs, replay_corpus, replay_mutations};

const TARGET: &str = "protocol_frame_decode";

/// The seed corpus: one frame of every request and response kind, pipelined streams,
/// frames under tiny limits (control bit 0), the spec's worked example, and framing edge
/// cases. Names say what each is.
fn seed_corpus() -> BTreeMap<String, Vec<u8>> {
    let mut seeds = BTreeMap::new();
    let mut rng = Rng(0x5eed_9e07);
    // Every kind, at least once: the generators pick each kind about equally often.
    while seeds.len() < 24 {
        let id = rng.next();
        let frame = if rng.chance(2) {
            let request = any_request(&mut rng);
            (
                format!("request-{:02x}", request.opcode()),
                request.to_frame(id),
            )
        } else {
            let response = any_response(&mut rng);
            (
                format!("response-{:02x}", response.opcode()),
                response.to_frame(id),
            )
        };
        let (name, bytes) = frame;
        let c0 = (seeds.len() as u8) << 1;
        seeds
            .entry(name)
            .or_insert_with(|| [vec![c0], bytes.unwrap()].concat());
    }
    for i in 0..4u8 {
        let mut stream = vec![(i * 37) << 1];
        for _ in 0..8 {
            let id = rng.next();
            let frame = if rng.chance(2) {
                any_request(&mut rng).to_frame(id)
            } else {
                any_response(&mut rng).to_frame(id)
            };
            stream.extend(frame.unwrap());
        }
        seeds.insert(format!("stream-{i}"), stream);
    }
    for i in 0..6u8 {
        let id = rng.next();
        let frame = if i % 2 == 0 {
            any_request(&mut rng).to_frame(id)
        } else {
            any_response(&mut rng).to_frame(id)
        };
        seeds.insert(
            format!("tiny-limits-{i}"),
            [vec![1 | (i << 3)], frame.unwrap()].concat(),
        );
    }
    let put = Request::Put {
        table: "users".into(),
        key: b"k1".to_vec(),
        value: b"hello".to_vec(),
    };
    let error = Response::Error(ServerError::new(
        ErrorKind::LimitExceeded {
            limit: Limit::KeySize,
        },
        "key of 600 bytes",
    ));
    let example = [
        vec![0x10],
        put.to_frame(1).unwrap(),
        Response::Written { lsn: 42 }.to_frame(1).unwrap(),
        error.to_frame(2).unwrap(),
    ]
    .concat();
    seeds.insert("worked-example".into(), example);
    seeds.insert(
        "frame-too-large".into(),
        vec![0, 0xff, 0xff, 0xff, 0xff, 1, 2],
    );
    seeds.insert("frame-too-short".into(), vec![0, 11, 0, 0, 0, 1, 2, 0, 0]);
    let mut partial = vec![6];
    partial.extend(put.to_frame(3).unwrap());
    partial.truncate(30);
    seeds.insert("partial-frame".into(), partial);
    seeds
}

#[test]
fn protocol_frame_decode_corpus_replays_clean() {
    let count = replay_corpus("corpus", TARGET, check::check);
    assert!(count >= 30, "the seed corpus is missing ({count} files)");
}

#[test]
fn protocol_frame_decode_regressions_replay_clean() {
    replay_corpus("regressions", TARGET, check::check);
}

#[test]
fn protocol_frame_decode_seed_corpus_is_current() {
    let committed: BTreeMap<String, Vec<u8>> = read_inputs(&fuzz_dir("corpus", TARGET))
        .into_iter()
        .collect();
    let seeds = seed_corpus();
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        seeds.keys().collect::<Vec<_>>(),
        "run write_seed_corpus"
    );
    for (name, bytes) in &seeds {
        assert!(
            committed[name] == *bytes,
            "{name} drifted: run write_seed_corpus"
        );
    }
    // The frames of the kind seeds are valid, so that mutations start deep in the format.
    for (name, bytes) in seeds.iter().filter(|(n, _)| n.starts_with("re")) {
        let Ok(Decoded::Frame(frame)) = decode_frame(&bytes[1..], &Limits::DEFAULT) else {
            panic!("{name} is not a frame");
        };
        let ok = if frame.header.is_response() {
            Response::decode(&frame, &Limits::DEFAULT).is_ok()
        } else {
            Request::decode(&frame, &Limits::DEFAULT).is_ok()
        };
        assert!(ok, "{name} does not decode");
    }
}

#[test]
#[ignore = "writes committed files: run by hand when the seed corpus changes"]
fn write_seed_corpus() {
    let dir = fuzz_dir("corpus", TARGET);
    for (name, bytes) in seed_corpus() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Values on the boundaries the decoders check: tags, counts, lengths, the frame maximum.
const INTERESTING: [u64; 12] = [
    0,
    1,
    2,
    3,
    4,
    0x7f,
    0x80,
    0xff,
    0xffff,
    16 * 1024 * 1024 + 12,
    u32::MAX as u64,
    u64::MAX,
];

fn mutate_once(rng: &mut Rng, corpus: &[(String, Vec<u8>)], data: &mut Vec<u8>) {
    if data.is_empty() {
        data.push(0);
    }
    let len = data.len();
    match rng.index(8) {
        0 | 1 => data[rng.index(len)] ^= 1 << rng.index(8),
        2 => data.truncate(rng.index(len)),
        3 => {
            let (_, other) = &corpus[rng.index(corpus.len())];
            data.truncate(rng.index(len + 1));
            data.extend_from_slice(&other[rng.index(other.len() + 1)..]);
        }
        4 => {
            let at = rng.index(len + 1);
            let byte = rng.next() as u8;
            data.splice(at..at, std::iter::repeat_n(byte, 1 + rng.index(8)));
        }
        5 => {
            let at = rng.index(len);
            let end = (at + 1 + rng.index(8)).min(len);
            data.drain(at..end);
        }
        _ => {
            // Tags are u8, name lengths and counts u16, lengths and counts u32, ids u64.
            let at = rng.index(len);
            let value = INTERESTING[rng.index(INTERESTING.len())].to_le_bytes();
            let width = [1, 2, 4, 8][rng.index(4)];
            let end = (at + width).min(len);
            data[at..end].copy_from_slice(&value[..end - at]);
        }
    }
}

fn mutate(rng: &mut Rng, corpus: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut data = if rng.chance(3) {
        let mut stream = vec![rng.next() as u8];
        for _ in 0..=rng.index(3) {
            let id = rng.next();
            let frame = if rng.chance(2) {
                any_request(rng).to_frame(id)
            } else {
                any_response(rng).to_frame(id)
            };
            stream.extend(frame.unwrap());
        }
        stream
    } else {
        corpus[rng.index(corpus.len())].1.clone()
    };
    for _ in 0..=rng.index(3) {
        mutate_once(rng, corpus, &mut data);
    }
    data
}

#[test]
fn protocol_frame_decode_mutations_of_the_corpus_replay_clean() {
    let plan = Mutations {
        seed: 0x5eed_9e08,
        count: 50_000,
        random_len_max: 512,
    };
    replay_mutations(TARGET, check::check, plan, mutate);
}
