//! Dynamic topic names: `{prefix}.{market}.{base}-{quote}`, e.g.
//! `tick-data.dyn.Binance.SOL-USDT`.
//!
//! Instrument parts are ASCII letters, digits and `.` (see
//! `domain::Instrument`). Kafka allows `[A-Za-z0-9._-]` in topic names, up to
//! 249 characters, but treats `.` and `_` as the same character in metric
//! names (two topics that differ only there collide). So a `.` inside a part
//! becomes `_`, and the name then ends in `.h` and eight hex digits of a
//! stable hash (FNV-1a) of the instrument, so that `A.B:X-Y` and `A:B.X-Y`
//! can never collide. Case is kept: the same instrument always gives the
//! same topic, on every node and across restarts.

use crate::domain::Instrument;
use crate::kafka::admin::is_valid_topic_name;

/// The default prefix of dynamic topics.
pub const DEFAULT_PREFIX: &str = "tick-data.dyn";

/// Why no topic name could be made (crosses nodes in the Coordinator's
/// answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum TopicNameError {
    /// The prefix has characters Kafka refuses, or is empty.
    #[error("invalid dynamic topic prefix `{0}`: use 1 to 100 of [A-Za-z0-9._-]")]
    Prefix(String),
    /// An instrument part is empty or has characters outside `[A-Za-z0-9.]`.
    #[error("instrument `{0}` cannot name a topic: its parts must be letters, digits or `.`")]
    Instrument(String),
    /// The name would be longer than Kafka allows.
    #[error("the topic name for `{instrument}` would be {len} characters (at most 249)")]
    TooLong {
        /// The instrument.
        instrument: String,
        /// The length.
        len: usize,
    },
}

/// Checks a dynamic topic prefix.
pub fn check_prefix(prefix: &str) -> Result<(), TopicNameError> {
    if prefix.len() > 100
        || !is_valid_topic_name(prefix)
        || prefix.starts_with('.')
        || prefix.ends_with('.')
    {
        return Err(TopicNameError::Prefix(prefix.to_owned()));
    }
    Ok(())
}

/// The dynamic topic of `instrument`.
pub fn topic_for(prefix: &str, instrument: &Instrument) -> Result<String, TopicNameError> {
    check_prefix(prefix)?;
    let parts = [&instrument.market, &instrument.base, &instrument.quote];
    if parts
        .iter()
        .any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
    {
        return Err(TopicNameError::Instrument(instrument.to_string()));
    }
    let dotted = parts.iter().any(|p| p.contains('.'));
    let clean = |p: &str| p.replace('.', "_");
    let mut name = format!(
        "{prefix}.{}.{}-{}",
        clean(&instrument.market),
        clean(&instrument.base),
        clean(&instrument.quote)
    );
    if dotted {
        name.push_str(&format!(
            ".h{:08x}",
            fnv1a(instrument.to_string().as_bytes())
        ));
    }
    if name.len() > 249 {
        return Err(TopicNameError::TooLong {
            instrument: instrument.to_string(),
            len: name.len(),
        });
    }
    debug_assert!(is_valid_topic_name(&name));
    Ok(name)
}

/// 32-bit FNV-1a: stable across builds and platforms (unlike `std`'s hasher).
pub(crate) fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i(s: &str) -> Instrument {
        s.parse().unwrap()
    }

    #[test]
    fn plain_instruments_read_naturally() {
        assert_eq!(
            topic_for(DEFAULT_PREFIX, &i("Binance:SOL-USDT")).unwrap(),
            "tick-data.dyn.Binance.SOL-USDT"
        );
        assert_eq!(
            topic_for("x", &i("Kraken:ETH-EUR")).unwrap(),
            "x.Kraken.ETH-EUR"
        );
    }

    #[test]
    fn dots_are_replaced_and_disambiguated() {
        let a = topic_for(DEFAULT_PREFIX, &i("A.B:X-Y")).unwrap();
        let b = topic_for(DEFAULT_PREFIX, &i("A:B.X-Y")).unwrap();
        assert!(a.starts_with("tick-data.dyn.A_B.X-Y.h"), "{a}");
        assert!(b.starts_with("tick-data.dyn.A.B_X-Y.h"), "{b}");
        // Kafka's metric names map `.` to `_`: they must still differ.
        assert_ne!(a.replace('.', "_"), b.replace('.', "_"));
        assert!(is_valid_topic_name(&a) && is_valid_topic_name(&b));
        // Stable: the same instrument, the same name.
        assert_eq!(a, topic_for(DEFAULT_PREFIX, &i("A.B:X-Y")).unwrap());
    }

    #[test]
    fn bad_prefixes_and_parts_are_refused() {
        for p in ["", "a b", ".x", "x.", "x/y", &"p".repeat(101)] {
            assert!(
                matches!(
                    topic_for(p, &i("Kraken:ETH-EUR")),
                    Err(TopicNameError::Prefix(_))
                ),
                "{p:?}"
            );
        }
        let odd = Instrument::new("Kra ken", "ETH", "EUR");
        assert!(matches!(
            topic_for(DEFAULT_PREFIX, &odd),
            Err(TopicNameError::Instrument(_))
        ));
        let long = Instrument::new("M".repeat(100), "B".repeat(100), "Q".repeat(100));
        assert!(matches!(
            topic_for(DEFAULT_PREFIX, &long),
            Err(TopicNameError::TooLong { .. })
        ));
    }
}
