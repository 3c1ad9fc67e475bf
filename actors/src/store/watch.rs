//! What a cache tells its readers when its hours change, so that a reader
//! that keeps what it built from earlier answers (the API's memo) can answer
//! without asking the cache while nothing it holds has moved.
//!
//! Every write that gives an hour of 1-minute bars a new version, and every
//! change of a "complete from" mark (a fill, a trim that moves it, an
//! invalidation), sends a [`CacheEvent`] **in the same step** as the change:
//! on Redis the write's script publishes it (`PUBLISH` inside the script:
//! no write without its message, and messages in the order of the writes);
//! in process the cache calls its listeners under its lock. A listener hears
//! [`CacheEvent::Live`] once its subscription is in place (every change after
//! that reaches it) and [`CacheEvent::Lost`] when it ends (changes may be
//! missed until the next `Live`).
//!
//! What must never happen: a change of what a read would answer without an
//! event (then a reader would serve a stale hour), or an unreadable message
//! taken for anything but "forget everything".

use crate::domain::Instrument;

/// A change of a cache, as its readers hear it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheEvent {
    /// The listener hears every change from now on.
    Live,
    /// The listener may miss changes from now on (its subscription ended).
    Lost,
    /// Hours of an instrument took new versions (`(hour, version)`).
    Hours {
        /// The instrument.
        instrument: Instrument,
        /// Each changed hour's start and its new version.
        hours: Vec<(i64, i64)>,
    },
    /// An instrument's mark moved forward to `from` (a trim dropped the
    /// minutes before it): the cache holds less, nothing it holds changed.
    Mark {
        /// The instrument.
        instrument: Instrument,
        /// The new mark.
        from: i64,
    },
    /// What the cache claims to hold completely changed: for one
    /// instrument (its mark moved), or for all (`None`: an invalidation, or a
    /// message that could not be read).
    Reset(Option<Instrument>),
}

/// Who hears a cache's events. Must return at once (it is called inside the
/// cache's own step, or by the subscription's task).
pub trait CacheListener: Send + Sync + 'static {
    /// One event.
    fn event(&self, event: CacheEvent);
}

/// The Redis channel of the cache's events under `prefix`.
pub fn channel(prefix: &str) -> String {
    format!("{prefix}:1m:events")
}

/// The most hours one message may name (a write touches few; a fill of a
/// day touches 25).
pub const MAX_HOURS_PER_MESSAGE: usize = 10_000;

/// Reads a message of the channel: `h <instrument> <hour>:<version>,…`,
/// `m <instrument> <mark>`, `r <instrument>` or `R`. An unreadable one is an error (the caller then
/// forgets everything: it cannot know what changed).
pub fn read_message(payload: &[u8]) -> Result<CacheEvent, String> {
    if payload.len() > MAX_HOURS_PER_MESSAGE * 40 {
        return Err(format!("{} bytes: too long", payload.len()));
    }
    let text = std::str::from_utf8(payload).map_err(|_| "not UTF-8".to_owned())?;
    let mut parts = text.split(' ');
    let kind = parts.next().unwrap_or_default();
    let instrument = |s: Option<&str>| -> Result<Instrument, String> {
        let s = s.ok_or("no instrument")?;
        let i: Instrument = s.parse().map_err(|e| format!("instrument `{s}`: {e}"))?;
        crate::domain::validate::instrument(&i).map_err(|e| e.to_string())?;
        Ok(i)
    };
    let event = match kind {
        "R" => CacheEvent::Reset(None),
        "r" => CacheEvent::Reset(Some(instrument(parts.next())?)),
        "m" => {
            let instrument = instrument(parts.next())?;
            let from = parts.next().ok_or("no mark")?;
            CacheEvent::Mark {
                instrument,
                from: from
                    .parse()
                    .map_err(|_| format!("mark `{}`", shorten(from)))?,
            }
        }
        "h" => {
            let instrument = instrument(parts.next())?;
            let list = parts.next().ok_or("no hours")?;
            let mut hours = Vec::new();
            for pair in list.split(',') {
                let (h, v) = pair
                    .split_once(':')
                    .ok_or_else(|| format!("`{pair}` is not HOUR:VERSION"))?;
                let (h, v): (i64, i64) = (
                    h.parse().map_err(|_| format!("hour `{h}`"))?,
                    v.parse().map_err(|_| format!("version `{v}`"))?,
                );
                if h.rem_euclid(crate::store::HOUR_SECS) != 0 || v <= 0 {
                    return Err(format!("`{pair}`: not an hour and a positive version"));
                }
                hours.push((h, v));
            }
            CacheEvent::Hours { instrument, hours }
        }
        other => return Err(format!("unknown kind `{}`", shorten(other))),
    };
    if parts.next().is_some() {
        return Err("trailing words".into());
    }
    Ok(event)
}

fn shorten(s: &str) -> &str {
    match s.char_indices().nth(20) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_read_or_refused() {
        let btc = Instrument::new("Coinbase", "BTC", "USD");
        assert_eq!(read_message(b"R"), Ok(CacheEvent::Reset(None)));
        assert_eq!(
            read_message(b"r Coinbase:BTC-USD"),
            Ok(CacheEvent::Reset(Some(btc.clone())))
        );
        assert_eq!(
            read_message(b"m Coinbase:BTC-USD 1700000000"),
            Ok(CacheEvent::Mark {
                instrument: btc.clone(),
                from: 1_700_000_000
            })
        );
        assert!(read_message(b"m Coinbase:BTC-USD").is_err());
        assert!(read_message(b"m Coinbase:BTC-USD x").is_err());
        assert_eq!(
            read_message(b"h Coinbase:BTC-USD 3600:12,7200:13"),
            Ok(CacheEvent::Hours {
                instrument: btc,
                hours: vec![(3_600, 12), (7_200, 13)]
            })
        );
        for bad in [
            &b""[..],
            b"x",
            b"r",
            b"r nope",
            b"h Coinbase:BTC-USD",
            b"h Coinbase:BTC-USD 3601:1",
            b"h Coinbase:BTC-USD 3600:0",
            b"h Coinbase:BTC-USD 3600:1 more",
            b"h Coinbase:BTC-USD 3600",
            b"\xff",
        ] {
            assert!(
                read_message(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
