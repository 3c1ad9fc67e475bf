//! Bounded memory of recent trade ids, to drop trades seen before.
//!
//! CryptoCompare replays the latest ~20 trades of a channel on every
//! subscribe; after a reconnect those are duplicates. Each instrument keeps
//! the last `window` ids (first in, first out), which covers any replay with
//! room to spare while memory stays bounded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::domain::Instrument;

/// The last `window` trade ids of one instrument.
#[derive(Debug)]
struct RecentIds {
    set: HashSet<Arc<str>>,
    order: VecDeque<Arc<str>>,
}

/// Recent trade ids per instrument.
#[derive(Debug)]
pub struct Dedup {
    window: usize,
    per_instrument: HashMap<Instrument, RecentIds>,
}

impl Dedup {
    /// Remembers up to `window` ids per instrument.
    pub fn new(window: usize) -> Self {
        Self {
            window: window.max(1),
            per_instrument: HashMap::new(),
        }
    }

    /// True the first time `(instrument, id)` is seen (and remembers it);
    /// false for a repeat within the window.
    pub fn first_sighting(&mut self, instrument: &Instrument, id: &str) -> bool {
        let recent = match self.per_instrument.get_mut(instrument) {
            Some(recent) => recent,
            None => self
                .per_instrument
                .entry(instrument.clone())
                .or_insert_with(|| RecentIds {
                    set: HashSet::with_capacity(self.window),
                    order: VecDeque::with_capacity(self.window),
                }),
        };
        if recent.set.contains(id) {
            return false;
        }
        if recent.order.len() >= self.window {
            if let Some(old) = recent.order.pop_front() {
                recent.set.remove(&old);
            }
        }
        let id: Arc<str> = Arc::from(id);
        recent.set.insert(id.clone());
        recent.order.push_back(id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_repeats_within_the_window_per_instrument() {
        let a = Instrument::new("Coinbase", "BTC", "USD");
        let b = Instrument::new("Kraken", "BTC", "USD");
        let mut d = Dedup::new(3);
        assert!(d.first_sighting(&a, "1"));
        assert!(!d.first_sighting(&a, "1"));
        assert!(d.first_sighting(&b, "1"));
        for id in ["2", "3", "4"] {
            assert!(d.first_sighting(&a, id));
        }
        // "1" fell out of the window of three.
        assert!(d.first_sighting(&a, "1"));
        assert!(!d.first_sighting(&a, "4"));
    }
}
