//! The idempotency keys the Db remembers: the most recent commits that carried one, with
//! their outcomes, in log order. Part of the checkpointed state, so every replica and every
//! recovery agrees on which resends are duplicates.

use std::collections::{HashMap, VecDeque};

use crate::limits::IDEMPOTENCY_KEYS_MAX;
use crate::outcome::Outcome;
use crate::record::IdempotencyKey;

/// Keys and outcomes, evicting the oldest beyond [`IDEMPOTENCY_KEYS_MAX`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Idempotency {
    outcomes: HashMap<IdempotencyKey, Outcome>,
    order: VecDeque<IdempotencyKey>,
}

impl Idempotency {
    /// From a checkpoint image's list, oldest first.
    pub(crate) fn from_entries(entries: &[(IdempotencyKey, Outcome)]) -> Self {
        let mut this = Self::default();
        for (key, outcome) in entries {
            this.insert(*key, *outcome);
        }
        this
    }

    pub(crate) fn get(&self, key: &IdempotencyKey) -> Option<Outcome> {
        self.outcomes.get(key).copied()
    }

    /// Remembers the first outcome of `key`.
    pub(crate) fn insert(&mut self, key: IdempotencyKey, outcome: Outcome) {
        if self.outcomes.contains_key(&key) {
            return;
        }
        self.outcomes.insert(key, outcome);
        self.order.push_back(key);
        while self.order.len() > IDEMPOTENCY_KEYS_MAX {
            if let Some(oldest) = self.order.pop_front() {
                self.outcomes.remove(&oldest);
            }
        }
    }

    /// Every key and outcome, oldest first.
    pub(crate) fn entries(&self) -> Vec<(IdempotencyKey, Outcome)> {
        self.order
            .iter()
            .filter_map(|key| Some((*key, *self.outcomes.get(key)?)))
            .collect()
    }
}
