//! Committed bar changes, pushed to whoever follows them (the API's live
//! stream), instead of everyone polling the store.
//!
//! A consumer that committed a batch hands the rows of every minute it
//! touched ([`crate::store::WriteOutcome::touched`], as stored after the
//! commit, with their versions) to a [`BarSink`]: in process, the API's hub
//! on the same node; across nodes, [`crate::store::redis_feed`] (Redis
//! pub/sub), which every API node follows.
//!
//! A sink never blocks the consumer and never fails its batch: the store is
//! the truth, and a follower that may have missed a change (a lost
//! connection, a full queue) asks the store for every change after the last
//! version it saw ([`crate::store::BarStore::changed_since`]). What a sink
//! passes on must therefore be *exactly* what was committed, never a bar
//! that was not stored.

use crate::domain::{validate, Interval};
use crate::store::StoredBar;

/// Where a consumer hands the committed rows of a batch.
pub trait BarSink: Send + Sync + 'static {
    /// The rows of the minutes a commit touched (versions included). Must
    /// return at once.
    fn publish(&self, bars: &[StoredBar]);
}

/// A sink that passes nothing on (a node without followers).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSink;

impl BarSink for NoSink {
    fn publish(&self, _bars: &[StoredBar]) {}
}

/// At most this many bars in one feed message (a history backfill can touch
/// thousands of minutes in one batch: it is sent in several messages).
pub const MAX_BARS_PER_MESSAGE: usize = 1_000;

/// Why a bar received from another node was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("feed bar refused: {0}")]
pub struct FeedRefused(pub String);

/// Checks a bar that came from outside the process (another node's feed): a
/// valid instrument, a 1-minute bar at a minute boundary in the accepted time
/// range, a positive version, prices and volumes in range.
pub fn check_bar(b: &StoredBar, now: i64) -> Result<(), FeedRefused> {
    let bar = &b.bar;
    let refuse = |e: validate::Invalid| FeedRefused(e.to_string());
    validate::instrument(&bar.instrument).map_err(refuse)?;
    if bar.interval != Interval::M1 || bar.open_time.rem_euclid(60) != 0 {
        return Err(FeedRefused(format!(
            "not a 1-minute bar at a minute boundary ({:?} at {})",
            bar.interval, bar.open_time
        )));
    }
    validate::time_secs("open_time", bar.open_time, now).map_err(refuse)?;
    if b.version <= 0 {
        return Err(FeedRefused(format!(
            "version {} is not positive",
            b.version
        )));
    }
    for (field, d) in [
        ("open", bar.open),
        ("high", bar.high),
        ("low", bar.low),
        ("close", bar.close),
    ] {
        validate::price(field, d).map_err(refuse)?;
    }
    // Sums of products: their scale may exceed a single value's limit.
    for (field, d) in [
        ("volume_base", bar.volume_base),
        ("volume_quote", bar.volume_quote),
    ] {
        if d.is_sign_negative() && !d.is_zero() || d > validate::MAX_VOLUME {
            return Err(FeedRefused(format!("{field} {d} is out of range")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Bar, Instrument, TradeMark};
    use crate::store::Source;
    use rust_decimal::Decimal;

    fn stored(open_time: i64, version: i64) -> StoredBar {
        let d = Decimal::from(100);
        StoredBar {
            bar: Bar {
                instrument: Instrument::new("Coinbase", "BTC", "USD"),
                interval: Interval::M1,
                open_time,
                open: d,
                high: d,
                low: d,
                close: d,
                volume_base: Decimal::ONE,
                volume_quote: d,
                trades: 1,
                first: TradeMark {
                    time_ns: open_time * 1_000_000_000,
                    id: "1".into(),
                },
                last: TradeMark {
                    time_ns: open_time * 1_000_000_000,
                    id: "1".into(),
                },
            },
            source: Source::Live,
            version,
        }
    }

    #[test]
    fn feed_bars_are_checked() {
        let now = 1_700_000_000;
        assert!(check_bar(&stored(1_699_999_980, 7), now).is_ok());
        assert!(check_bar(&stored(1_699_999_981, 7), now).is_err());
        assert!(check_bar(&stored(1_699_999_980, 0), now).is_err());
        let mut far = stored(now + 10 * 86_400 - (now + 10 * 86_400) % 60, 1);
        assert!(check_bar(&far, now).is_err());
        far.bar.open_time = 1_699_999_980;
        far.bar.instrument = Instrument::new("Coin base", "BTC", "USD");
        assert!(check_bar(&far, now).is_err());
        let mut negative = stored(1_699_999_980, 1);
        negative.bar.low = Decimal::from(-1);
        assert!(check_bar(&negative, now).is_err());
        NoSink.publish(&[stored(60, 1)]);
    }
}
