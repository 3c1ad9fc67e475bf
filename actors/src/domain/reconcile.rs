//! The reconciliation rule of live and history minutes: which 1-minute bar a
//! minute has, given every live tick and every history answer the platform
//! ever stored for it. Pure: the stores apply it (SQLite in Rust with these
//! functions, PostgreSQL in SQL that mirrors them, checked by the same tests).
//!
//! For one (instrument, minute):
//!
//! * **L**, the live bar: the bar of the *set* of distinct live ticks
//!   ([`crate::domain::Bar::merge`] is commutative and associative, and a
//!   tick's identity is (instrument, trade id)).
//! * **H**, the best history answer: of the history answers for the minute
//!   with a base volume above zero (CryptoCompare's flat zero-volume bar
//!   says "no trade", never "repair"), the greatest in the order of
//!   [`history_rank`]: the most complete answer (the largest base volume)
//!   wins, later answers included: an answer fetched 0.2 s after the minute
//!   closed, before the source had all of it, is replaced by the complete
//!   one fetched later.
//! * The minute's bar is H (source `history`) when H exists and is **more
//!   complete** than L ([`more_complete`]: L is missing, or H's base volume
//!   exceeds L's by more than the source's precision), otherwise L.
//!
//! Both L and H are functions of a set (a join in a lattice), and the choice
//! between them is a function of (L, H), so the bar does not depend on the
//! order in which ticks and answers arrive, on how they fall into batches,
//! or on redeliveries. Nothing is final: a more complete answer can always
//! repair a minute, a less complete one never undoes it.
//!
//! What must never happen: float noise in the source's volumes (history
//! volumes are JSON numbers: `0.30000000000000004` for a complete `0.3`)
//! making an answer "more complete" than the exact live bar.

use std::cmp::Ordering;

use rust_decimal::Decimal;

use super::{Bar, HistoryBar, Interval, TradeMark};

/// The relative precision of the source's volumes: an IEEE double holds 15
/// to 17 significant digits, and summing a minute's trades in floating point
/// loses a few more. Two volumes closer than this (relative to the larger)
/// are the same volume.
pub const VOLUME_TOLERANCE: Decimal = Decimal::from_parts(1, 0, 0, false, 12);

/// The order of history answers for one minute: base volume, then quote
/// volume, high, low, open, close (a total order on the values, so "the
/// greatest answer" does not depend on the order the answers came in).
pub fn history_rank(h: &HistoryBar) -> (Decimal, Decimal, Decimal, Decimal, Decimal, Decimal) {
    (
        h.volume_base,
        h.volume_quote,
        h.high,
        h.low,
        h.open,
        h.close,
    )
}

/// Whether history answer `a` ranks above `b` ([`history_rank`]).
pub fn outranks(a: &HistoryBar, b: &HistoryBar) -> bool {
    history_rank(a).cmp(&history_rank(b)) == Ordering::Greater
}

/// Whether a history answer counts at all (a zero-volume bar is the source's
/// flat bar for a minute without trades).
pub fn counts(h: &HistoryBar) -> bool {
    h.volume_base > Decimal::ZERO
}

/// The best of `answers` for each (instrument, minute) that counts, in the
/// order of first appearance.
pub fn best_answers<'a>(answers: impl IntoIterator<Item = &'a HistoryBar>) -> Vec<&'a HistoryBar> {
    let mut best: Vec<&HistoryBar> = Vec::new();
    let mut at: std::collections::HashMap<(&crate::domain::Instrument, i64), usize> =
        Default::default();
    for h in answers.into_iter().filter(|h| counts(h)) {
        match at.entry((&h.instrument, h.open_time)) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let slot = &mut best[*e.get()];
                if outranks(h, slot) {
                    *slot = h;
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(best.len());
                best.push(h);
            }
        }
    }
    best
}

/// Whether a history base volume `history` shows trades the live base volume
/// `live` misses: larger by more than [`VOLUME_TOLERANCE`] of the larger.
pub fn more_complete(history: Decimal, live: Decimal) -> bool {
    if history <= live {
        return false;
    }
    let scale = history.abs().max(live.abs());
    match (
        scale.checked_mul(VOLUME_TOLERANCE),
        history.checked_sub(live),
    ) {
        (Some(tolerance), Some(difference)) => difference > tolerance,
        // Volumes this large differ by far more than any rounding.
        _ => true,
    }
}

/// Where a minute's bar comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    /// The live bar.
    Live,
    /// The best history answer.
    History,
}

/// Which bar a minute has, given its live bar and best history answer
/// (`None` when neither exists).
pub fn choose(live: Option<&Bar>, history: Option<&HistoryBar>) -> Option<Chosen> {
    match (live, history.filter(|h| counts(h))) {
        (None, None) => None,
        (None, Some(_)) => Some(Chosen::History),
        (Some(_), None) => Some(Chosen::Live),
        (Some(l), Some(h)) if more_complete(h.volume_base, l.volume_base) => Some(Chosen::History),
        (Some(_), Some(_)) => Some(Chosen::Live),
    }
}

/// A history answer as a 1-minute bar: no trade count (the source does not
/// give one), first and last trade at the minute's edges, without ids.
pub fn history_bar(h: &HistoryBar) -> Bar {
    let start_ns = h.open_time.saturating_mul(1_000_000_000);
    Bar {
        instrument: h.instrument.clone(),
        interval: Interval::M1,
        open_time: h.open_time,
        open: h.open,
        high: h.high,
        low: h.low,
        close: h.close,
        volume_base: h.volume_base,
        volume_quote: h.volume_quote,
        trades: 0,
        first: TradeMark {
            time_ns: start_ns,
            id: String::new(),
        },
        last: TradeMark {
            time_ns: start_ns.saturating_add(59_999_999_999),
            id: String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Instrument;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn answer(vb: &str, vq: &str) -> HistoryBar {
        HistoryBar {
            instrument: Instrument::new("Coinbase", "BTC", "USD"),
            open_time: 60,
            open: d("10"),
            high: d("12"),
            low: d("9"),
            close: d("11"),
            volume_base: d(vb),
            volume_quote: d(vq),
        }
    }

    fn live(vb: &str) -> Bar {
        Bar {
            volume_base: d(vb),
            trades: 3,
            ..history_bar(&answer(vb, "1"))
        }
    }

    #[test]
    fn float_noise_is_not_more_complete() {
        assert!(!more_complete(d("0.30000000000000004"), d("0.3")));
        assert!(!more_complete(d("1000.0000000000001"), d("1000")));
        assert_eq!(
            choose(
                Some(&live("0.3")),
                Some(&answer("0.30000000000000004", "1"))
            ),
            Some(Chosen::Live)
        );
    }

    #[test]
    fn a_missed_trade_is_more_complete() {
        assert!(more_complete(d("0.31"), d("0.3")));
        // The smallest trade a double can tell apart at this size.
        assert!(more_complete(d("1000.00000001"), d("1000")));
        assert!(!more_complete(d("0.3"), d("0.31")));
        assert!(!more_complete(d("0.3"), d("0.3")));
        assert_eq!(
            choose(Some(&live("0.3")), Some(&answer("0.31", "1"))),
            Some(Chosen::History)
        );
    }

    #[test]
    fn huge_volumes_do_not_overflow() {
        assert!(more_complete(Decimal::MAX, d("1")));
        assert!(!more_complete(Decimal::MAX, Decimal::MAX));
    }

    #[test]
    fn zero_volume_answers_never_count() {
        assert_eq!(choose(None, Some(&answer("0", "0"))), None);
        assert_eq!(
            choose(Some(&live("1")), Some(&answer("0", "0"))),
            Some(Chosen::Live)
        );
        assert!(best_answers([&answer("0", "0")]).is_empty());
    }

    #[test]
    fn the_most_complete_answer_wins_in_any_order() {
        let early = answer("0.5", "5");
        let complete = answer("0.8", "8");
        let same_volume_more_quote = answer("0.8", "9");
        let all = [&early, &complete, &same_volume_more_quote];
        for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2], [1, 2, 0]] {
            let best = best_answers(order.iter().map(|&k| all[k]));
            assert_eq!(best, vec![&same_volume_more_quote], "{order:?}");
        }
        assert!(outranks(&complete, &early));
        assert!(!outranks(&early, &early));
    }

    #[test]
    fn history_alone_makes_the_minute() {
        assert_eq!(choose(None, Some(&answer("1", "1"))), Some(Chosen::History));
        let bar = history_bar(&answer("1", "2"));
        assert_eq!((bar.trades, bar.first.time_ns), (0, 60_000_000_000));
        assert_eq!(bar.last.time_ns, 119_999_999_999);
        assert_eq!(choose(None, None), None);
    }
}
