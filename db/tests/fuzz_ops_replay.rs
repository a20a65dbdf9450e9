//! Replays fuzz targets `db_transactions` and `engine_ops` as ordinary tests: every file of
//! their committed corpora and crash regressions, then seeded mutations of them (bit flips,
//! byte changes, truncations, splices) and random inputs. Every input is a valid program
//! (the bodies read bytes as operations), so each run drives a Db or an engine through a
//! different sequence and compares it with a model. The bodies are in db/src/fuzz_ops.rs,
//! reached through the `internals` feature.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use popdb_db::internals::{fuzz_db_transactions, fuzz_engine_ops};
use popdb_testkit::{Mutations, Rng, replay_corpus, replay_mutations};

fn mutate(rng: &mut Rng, corpus: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut data = corpus[rng.index(corpus.len())].1.clone();
    for _ in 0..=rng.index(4) {
        match rng.below(4) {
            0 if !data.is_empty() => {
                let at = rng.index(data.len());
                data[at] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let at = rng.index(data.len());
                data[at] = rng.next() as u8;
            }
            2 => data.truncate(rng.index(data.len() + 1)),
            _ => {
                let other = &corpus[rng.index(corpus.len())].1;
                let from = rng.index(other.len() + 1);
                let at = rng.index(data.len() + 1);
                data.splice(at..at, other[from..].iter().copied());
            }
        }
    }
    data
}

#[test]
fn db_transactions_corpus() {
    assert!(replay_corpus("corpus", "db_transactions", fuzz_db_transactions) > 0);
    replay_corpus("regressions", "db_transactions", fuzz_db_transactions);
}

#[test]
fn db_transactions_mutations() {
    let plan = Mutations {
        seed: 0xdb7a,
        count: 300,
        random_len_max: 400,
    };
    replay_mutations("db_transactions", fuzz_db_transactions, plan, mutate);
}

#[test]
fn engine_ops_corpus() {
    assert!(replay_corpus("corpus", "engine_ops", fuzz_engine_ops) > 0);
    replay_corpus("regressions", "engine_ops", fuzz_engine_ops);
}

#[test]
fn engine_ops_mutations() {
    let plan = Mutations {
        seed: 0xe061,
        count: 600,
        random_len_max: 400,
    };
    replay_mutations("engine_ops", fuzz_engine_ops, plan, mutate);
}
