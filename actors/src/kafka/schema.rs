//! The wire format of a tick on Kafka: versioned JSON that any Kafka client can
//! read, documented in `docs/kafka-schema.md` at the repository root.
//!
//! ```json
//! {"v":1,"market":"Coinbase","base":"BTC","quote":"USD","id":"593817342",
//!  "ts_ns":1700000000123000000,"price":"37250.12","qty":"0.015",
//!  "side":"buy","recv_ns":1700000000200000000}
//! ```
//!
//! Prices and quantities are decimal strings, so they survive every JSON
//! parser exactly (scale included: `"0.0150"` stays `"0.0150"`). The message
//! key is the instrument, `Coinbase:BTC-USD`, so all ticks of one instrument
//! land in one partition and keep their order.
//!
//! Encoding and decoding are pure functions with no I/O. Decoding never
//! panics: an unknown version or a malformed message is a [`DecodeError`],
//! which the consumer routes to a dead-letter topic.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::{Instrument, Side, Tick};

/// The schema version this build writes, and the only one it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Why a message is not a tick this build can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message carries a schema version this build does not read.
    #[error("unsupported tick schema version {found} (this build reads version {SCHEMA_VERSION})")]
    UnsupportedVersion {
        /// The version found in the message.
        found: u64,
    },
    /// The message is not JSON, or lacks a field, or a field has the wrong type.
    #[error("malformed tick message: {0}")]
    Malformed(String),
    /// A field is present but its value is not acceptable.
    #[error("invalid tick field `{field}`: {reason}")]
    InvalidField {
        /// The field's name in the schema.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Version 1 as written: borrows from the tick, so encoding allocates nothing
/// but the output.
#[derive(Serialize)]
struct V1Out<'a> {
    v: u32,
    market: &'a str,
    base: &'a str,
    quote: &'a str,
    id: &'a str,
    ts_ns: i64,
    #[serde(with = "rust_decimal::serde::str")]
    price: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    qty: Decimal,
    side: Side,
    recv_ns: i64,
}

/// Version 1 as read. Strings borrow from the input unless they hold escapes.
/// Unknown fields are ignored: adding an optional field is a compatible change
/// that keeps `v: 1` (see the schema doc).
#[derive(Deserialize)]
struct V1In<'a> {
    v: u64,
    #[serde(borrow)]
    market: Cow<'a, str>,
    #[serde(borrow)]
    base: Cow<'a, str>,
    #[serde(borrow)]
    quote: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
    ts_ns: i64,
    #[serde(borrow)]
    price: Cow<'a, str>,
    #[serde(borrow)]
    qty: Cow<'a, str>,
    side: Side,
    recv_ns: i64,
}

/// Only the version, to classify a message that is not valid version 1.
#[derive(Deserialize)]
struct Probe {
    v: Option<u64>,
}

/// Appends the JSON encoding of `tick` to `out`. Reusing `out` across ticks
/// makes encoding allocation-free once the buffer has grown.
pub fn encode_into(tick: &Tick, out: &mut Vec<u8>) {
    let msg = V1Out {
        v: SCHEMA_VERSION,
        market: &tick.instrument.market,
        base: &tick.instrument.base,
        quote: &tick.instrument.quote,
        id: &tick.trade_id,
        ts_ns: tick.trade_time_ns,
        price: tick.price,
        qty: tick.quantity,
        side: tick.side,
        recv_ns: tick.received_ns,
    };
    // Serialising strings, integers and unit enum variants into a Vec cannot fail.
    serde_json::to_writer(out, &msg).expect("writing tick JSON to a Vec cannot fail");
}

/// The JSON encoding of `tick`.
pub fn encode(tick: &Tick) -> Vec<u8> {
    let mut out = Vec::with_capacity(192);
    encode_into(tick, &mut out);
    out
}

/// Writes the message key of `instrument` (its display form,
/// `Coinbase:BTC-USD`) into `out`, replacing what was there.
pub fn write_key(instrument: &Instrument, out: &mut String) {
    out.clear();
    // Writing to a String cannot fail.
    let _ = write!(out, "{instrument}");
}

/// The message key of `instrument`: `Coinbase:BTC-USD`.
pub fn key(instrument: &Instrument) -> String {
    instrument.to_string()
}

/// Decodes one message payload.
pub fn decode(payload: &[u8]) -> Result<Tick, DecodeError> {
    let raw: V1In<'_> = match serde_json::from_slice(payload) {
        Ok(raw) => raw,
        Err(e) => {
            // Not version 1 as we know it: say whether it is another version.
            return Err(match serde_json::from_slice::<Probe>(payload) {
                Ok(Probe { v: Some(v) }) if v != u64::from(SCHEMA_VERSION) => {
                    DecodeError::UnsupportedVersion { found: v }
                }
                _ => DecodeError::Malformed(e.to_string()),
            });
        }
    };
    if raw.v != u64::from(SCHEMA_VERSION) {
        return Err(DecodeError::UnsupportedVersion { found: raw.v });
    }
    let non_empty = |field: &'static str, s: Cow<'_, str>| {
        if s.is_empty() {
            Err(DecodeError::InvalidField {
                field,
                reason: "empty".into(),
            })
        } else {
            Ok(s.into_owned())
        }
    };
    let decimal = |field: &'static str, s: &str| {
        Decimal::from_str(s).map_err(|e| DecodeError::InvalidField {
            field,
            reason: format!("`{s}` is not a decimal: {e}"),
        })
    };
    Ok(Tick {
        price: decimal("price", &raw.price)?,
        quantity: decimal("qty", &raw.qty)?,
        instrument: Instrument {
            market: non_empty("market", raw.market)?,
            base: non_empty("base", raw.base)?,
            quote: non_empty("quote", raw.quote)?,
        },
        trade_id: non_empty("id", raw.id)?,
        trade_time_ns: raw.ts_ns,
        side: raw.side,
        received_ns: raw.recv_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Tick {
        Tick {
            instrument: Instrument::new("Coinbase", "BTC", "USD"),
            trade_id: "593817342".into(),
            trade_time_ns: 1_700_000_000_123_000_000,
            price: "37250.12".parse().unwrap(),
            quantity: "0.0150".parse().unwrap(),
            side: Side::Buy,
            received_ns: 1_700_000_000_200_000_000,
        }
    }

    #[test]
    fn encodes_the_documented_shape() {
        let json = String::from_utf8(encode(&sample())).unwrap();
        assert_eq!(
            json,
            r#"{"v":1,"market":"Coinbase","base":"BTC","quote":"USD","id":"593817342","ts_ns":1700000000123000000,"price":"37250.12","qty":"0.0150","side":"buy","recv_ns":1700000000200000000}"#
        );
        assert_eq!(decode(json.as_bytes()).unwrap(), sample());
    }

    #[test]
    fn key_is_the_instrument() {
        let mut k = String::from("junk");
        write_key(&sample().instrument, &mut k);
        assert_eq!(k, "Coinbase:BTC-USD");
        assert_eq!(key(&sample().instrument), k);
    }

    #[test]
    fn the_documented_example_decodes() {
        // The example in docs/kafka-schema.md, field order shuffled, an extra
        // field added and a string escaped: all allowed.
        let t = decode(
            br#"{"side":"sell","v":1,"market":"Kraken","base":"ETH","quote":"EUR","id":"a\u0062c",
                "ts_ns":1,"price":"2000","qty":"1.5","recv_ns":2,"venue_seq":7}"#,
        )
        .unwrap();
        assert_eq!(t.instrument, Instrument::new("Kraken", "ETH", "EUR"));
        assert_eq!(t.trade_id, "abc");
        assert_eq!(t.side, Side::Sell);
        assert_eq!(t.quantity, Decimal::new(15, 1));
    }

    #[test]
    fn unknown_versions_are_typed_errors() {
        assert_eq!(
            decode(br#"{"v":2,"whatever":true}"#),
            Err(DecodeError::UnsupportedVersion { found: 2 })
        );
        let mut v2 = String::from_utf8(encode(&sample())).unwrap();
        v2 = v2.replacen(r#""v":1"#, r#""v":2"#, 1);
        assert_eq!(
            decode(v2.as_bytes()),
            Err(DecodeError::UnsupportedVersion { found: 2 })
        );
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        let ok = String::from_utf8(encode(&sample())).unwrap();
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "malformed"),
            ("not json".into(), "malformed"),
            ("[1,2]".into(), "malformed"),
            (r#"{"market":"x"}"#.into(), "malformed"),
            (ok.replace(r#","qty":"0.0150""#, ""), "malformed"),
            (ok.replace(r#""37250.12""#, "37250.12"), "malformed"),
            (ok.replace(r#""buy""#, r#""sideways""#), "malformed"),
            (ok.replace(r#""37250.12""#, r#""12,5""#), "price"),
            (ok.replace(r#""0.0150""#, r#""""#), "qty"),
            (ok.replace(r#""BTC""#, r#""""#), "base"),
            (ok.replace(r#""593817342""#, r#""""#), "id"),
        ];
        for (input, expect) in cases {
            let err = decode(input.as_bytes()).unwrap_err();
            match (&err, expect) {
                (DecodeError::Malformed(_), "malformed") => {}
                (DecodeError::InvalidField { field, .. }, f) if *field == f => {}
                _ => panic!("{input}: expected {expect}, got {err:?}"),
            }
        }
    }

    fn arb_decimal() -> impl Strategy<Value = Decimal> {
        (any::<i64>(), 0u32..=28).prop_map(|(m, s)| Decimal::new(m, s))
    }

    fn arb_part() -> impl Strategy<Value = String> {
        "[A-Za-z0-9.]{1,12}"
    }

    fn arb_tick() -> impl Strategy<Value = Tick> {
        (
            (arb_part(), arb_part(), arb_part()),
            // Trade ids are opaque strings: anything non-empty, escapes included.
            "\\PC{1,20}",
            any::<i64>(),
            arb_decimal(),
            arb_decimal(),
            prop_oneof![Just(Side::Buy), Just(Side::Sell), Just(Side::Unknown)],
            any::<i64>(),
        )
            .prop_map(
                |((market, base, quote), trade_id, ts, price, quantity, side, recv)| Tick {
                    instrument: Instrument::new(market, base, quote),
                    trade_id,
                    trade_time_ns: ts,
                    price,
                    quantity,
                    side,
                    received_ns: recv,
                },
            )
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_exact(tick in arb_tick()) {
            let bytes = encode(&tick);
            let back = decode(&bytes).unwrap();
            // Decimal equality is numeric; the scale must survive too.
            prop_assert_eq!(back.price.to_string(), tick.price.to_string());
            prop_assert_eq!(back.quantity.to_string(), tick.quantity.to_string());
            prop_assert_eq!(&back, &tick);
            // And the key parses back to the instrument.
            let k: Instrument = key(&tick.instrument).parse().unwrap();
            prop_assert_eq!(k, tick.instrument);
        }

        #[test]
        fn encode_into_appends_exactly_one_message(a in arb_tick(), b in arb_tick()) {
            let mut buf = Vec::new();
            encode_into(&a, &mut buf);
            let first = buf.len();
            encode_into(&b, &mut buf);
            prop_assert_eq!(decode(&buf[..first]).unwrap(), a);
            prop_assert_eq!(decode(&buf[first..]).unwrap(), b);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }
    }
}
