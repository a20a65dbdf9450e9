//! Helpers the tree-level tests share.

#![allow(dead_code, reason = "each test binary uses a subset")]
#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::collections::BTreeMap;
use std::ops::Bound;

use popdb_btree::{Direction, Tree};

/// Key -> (value, version) of the live entries.
pub type Model = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;

/// Every live entry of the tree's latest view, by a forward scan.
pub fn contents(tree: &Tree) -> Model {
    let view = tree.read_view();
    let mut iter = view
        .scan((Bound::Unbounded, Bound::Unbounded), Direction::Forward)
        .unwrap();
    let mut got = Model::new();
    while iter.valid() {
        got.insert(iter.key().to_vec(), (iter.value().to_vec(), iter.version()));
        iter.next().unwrap();
    }
    got
}
