//! The wire format of a record on Kafka: versioned JSON that any Kafka client
//! can read, documented in `docs/kafka-schema.md` at the repository root.
//!
//! A message is a live trade or a closed minute (history bar), told apart by
//! the field `type`. A trade is written exactly as before the field existed
//! (no `type`), so every version-1 trade message ever written still decodes
//! as a trade and old readers keep reading trades:
//!
//! ```json
//! {"v":1,"market":"Coinbase","base":"BTC","quote":"USD","id":"593817342",
//!  "ts_ns":1700000000123000000,"price":"37250.12","qty":"0.015",
//!  "side":"buy","recv_ns":1700000000200000000}
//! {"v":1,"type":"bar","market":"Coinbase","base":"BTC","quote":"USD",
//!  "open_time":1700000040,"open":"37250.12","high":"37260","low":"37240.5",
//!  "close":"37255","volume_base":"12.5","volume_quote":"465650.25"}
//! ```
//!
//! Prices, quantities and volumes are decimal strings, so they survive every
//! JSON parser exactly (scale included: `"0.0150"` stays `"0.0150"`). The
//! message key is the instrument, `Coinbase:BTC-USD`, so all records of one
//! instrument land in one partition and keep their order.
//!
//! Encoding and decoding are pure functions with no I/O. Decoding never
//! panics: an unknown version or type, a malformed message, or a record that
//! breaks one of the platform's rules ([`crate::domain::validate`]: positive
//! prices, symbols by the instrument grammar, bounded trade ids, times from
//! 2009 to a day from now, consistent bars, bounded decimals) is a
//! [`DecodeError`] naming the field and the reason, which the consumer
//! routes to a dead-letter topic. Only records a store can take pass.

use std::borrow::Cow;
use std::fmt::Write as _;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::validate::{self, Invalid};
use crate::domain::{HistoryBar, Instrument, Record, Side, Tick};

/// The schema version this build writes, and the only one it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Why a message is not a record this build can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message carries a schema version this build does not read.
    #[error("unsupported schema version {found} (this build reads version {SCHEMA_VERSION})")]
    UnsupportedVersion {
        /// The version found in the message.
        found: u64,
    },
    /// The message's `type` is neither `trade` nor `bar`.
    #[error("unknown record type `{found}` (this build reads `trade` and `bar`)")]
    UnknownType {
        /// The type found in the message.
        found: String,
    },
    /// The message is not JSON, or lacks a field, or a field has the wrong type.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A field is present but its value is not acceptable.
    #[error("invalid field `{field}`: {reason}")]
    InvalidField {
        /// The field's name in the schema.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<Invalid> for DecodeError {
    fn from(e: Invalid) -> Self {
        DecodeError::InvalidField {
            field: e.field,
            reason: e.reason,
        }
    }
}

impl DecodeError {
    /// A short name of the kind of refusal, for metrics and dead-letter
    /// headers: `version`, `type`, `malformed` or the field's name.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::UnsupportedVersion { .. } => "version",
            DecodeError::UnknownType { .. } => "type",
            DecodeError::Malformed(_) => "malformed",
            DecodeError::InvalidField { field, .. } => field,
        }
    }
}

/// A trade as written: borrows from the tick, so encoding allocates nothing
/// but the output. No `type` field: a trade is the default kind.
#[derive(Serialize)]
struct TradeOut<'a> {
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

/// A history bar as written.
#[derive(Serialize)]
struct BarOut<'a> {
    v: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    market: &'a str,
    base: &'a str,
    quote: &'a str,
    open_time: i64,
    #[serde(with = "rust_decimal::serde::str")]
    open: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    high: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    low: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    close: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    volume_base: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    volume_quote: Decimal,
}

/// A JSON string that borrows from the input unless it holds escapes.
/// (`Option<Cow<str>>` would always allocate: serde borrows only a bare `Cow`.)
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Every field of every kind, as read. Which ones are required depends on
/// `type`; unknown fields are ignored (adding an optional field is a
/// compatible change that keeps `v: 1`, see the schema doc).
#[derive(Deserialize)]
struct In<'a> {
    v: u64,
    #[serde(rename = "type", borrow, default)]
    kind: Option<Text<'a>>,
    #[serde(borrow, default)]
    market: Option<Text<'a>>,
    #[serde(borrow, default)]
    base: Option<Text<'a>>,
    #[serde(borrow, default)]
    quote: Option<Text<'a>>,
    // Trade.
    #[serde(borrow, default)]
    id: Option<Text<'a>>,
    #[serde(default)]
    ts_ns: Option<i64>,
    #[serde(borrow, default)]
    price: Option<Text<'a>>,
    #[serde(borrow, default)]
    qty: Option<Text<'a>>,
    #[serde(default)]
    side: Option<Side>,
    #[serde(default)]
    recv_ns: Option<i64>,
    // Bar.
    #[serde(default)]
    open_time: Option<i64>,
    #[serde(borrow, default)]
    open: Option<Text<'a>>,
    #[serde(borrow, default)]
    high: Option<Text<'a>>,
    #[serde(borrow, default)]
    low: Option<Text<'a>>,
    #[serde(borrow, default)]
    close: Option<Text<'a>>,
    #[serde(borrow, default)]
    volume_base: Option<Text<'a>>,
    #[serde(borrow, default)]
    volume_quote: Option<Text<'a>>,
}

/// Only the version, to classify a message that is not valid version 1.
#[derive(Deserialize)]
struct Probe {
    v: Option<u64>,
}

/// Appends the JSON encoding of `tick` to `out`. Reusing `out` across ticks
/// makes encoding allocation-free once the buffer has grown.
pub fn encode_into(tick: &Tick, out: &mut Vec<u8>) {
    let msg = TradeOut {
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

/// Appends the JSON encoding of `record` to `out`: a trade exactly as
/// [`encode_into`] writes it, a bar with `"type":"bar"`.
pub fn encode_record(record: &Record, out: &mut Vec<u8>) {
    match record {
        Record::Trade(tick) => encode_into(tick, out),
        Record::Bar(bar) => {
            let msg = BarOut {
                v: SCHEMA_VERSION,
                kind: "bar",
                market: &bar.instrument.market,
                base: &bar.instrument.base,
                quote: &bar.instrument.quote,
                open_time: bar.open_time,
                open: bar.open,
                high: bar.high,
                low: bar.low,
                close: bar.close,
                volume_base: bar.volume_base,
                volume_quote: bar.volume_quote,
            };
            serde_json::to_writer(out, &msg).expect("writing bar JSON to a Vec cannot fail");
        }
    }
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

/// Decodes one message payload that must be a trade (a bar is an
/// [`DecodeError::InvalidField`] on `type`).
pub fn decode(payload: &[u8]) -> Result<Tick, DecodeError> {
    match decode_record(payload)? {
        Record::Trade(tick) => Ok(tick),
        Record::Bar(_) => Err(DecodeError::InvalidField {
            field: "type",
            reason: "a history bar, where a trade was expected".into(),
        }),
    }
}

/// Decodes one message payload: a trade (`type` absent or `"trade"`) or a
/// history bar (`type` `"bar"`), checked against the platform's rules with
/// the clock now. The consumer pipeline's [`Decode`](crate::consumer::Decode)
/// function.
pub fn decode_record(payload: &[u8]) -> Result<Record, DecodeError> {
    decode_record_at(payload, validate::now_secs())
}

/// [`decode_record`] with the clock at `now` (Unix seconds): a time more
/// than a day after `now` is refused.
pub fn decode_record_at(payload: &[u8], now: i64) -> Result<Record, DecodeError> {
    let raw: In<'_> = match serde_json::from_slice(payload) {
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
    match raw.kind.as_ref().map(|k| k.0.as_ref()) {
        None | Some("trade") => {
            let tick = trade(raw)?;
            validate::tick(&tick, now)?;
            Ok(Record::Trade(tick))
        }
        Some("bar") => {
            let bar = bar(raw)?;
            validate::history_bar(&bar, now)?;
            Ok(Record::Bar(bar))
        }
        Some(other) => Err(DecodeError::UnknownType {
            found: validate::shorten(other),
        }),
    }
}

fn required<T>(field: &'static str, value: Option<T>) -> Result<T, DecodeError> {
    value.ok_or_else(|| DecodeError::Malformed(format!("missing field `{field}`")))
}

fn text(field: &'static str, value: Option<Text<'_>>) -> Result<String, DecodeError> {
    let s = required(field, value)?.0;
    if s.is_empty() {
        Err(DecodeError::InvalidField {
            field,
            reason: "empty".into(),
        })
    } else {
        Ok(s.into_owned())
    }
}

fn decimal(field: &'static str, value: Option<Text<'_>>) -> Result<Decimal, DecodeError> {
    let s = required(field, value)?.0;
    // Exact: a value with more digits than a decimal holds is refused, never
    // rounded.
    Decimal::from_str_exact(&s).map_err(|e| DecodeError::InvalidField {
        field,
        reason: format!("`{}` is not a decimal: {e}", validate::shorten(&s)),
    })
}

fn instrument(
    market: Option<Text<'_>>,
    base: Option<Text<'_>>,
    quote: Option<Text<'_>>,
) -> Result<Instrument, DecodeError> {
    Ok(Instrument {
        market: text("market", market)?,
        base: text("base", base)?,
        quote: text("quote", quote)?,
    })
}

fn trade(raw: In<'_>) -> Result<Tick, DecodeError> {
    // Presence first (a missing field is malformed), then values.
    let ts_ns = required("ts_ns", raw.ts_ns)?;
    let side = required("side", raw.side)?;
    let recv_ns = required("recv_ns", raw.recv_ns)?;
    for (field, present) in [
        ("market", raw.market.is_some()),
        ("base", raw.base.is_some()),
        ("quote", raw.quote.is_some()),
        ("id", raw.id.is_some()),
        ("price", raw.price.is_some()),
        ("qty", raw.qty.is_some()),
    ] {
        if !present {
            return Err(DecodeError::Malformed(format!("missing field `{field}`")));
        }
    }
    Ok(Tick {
        price: decimal("price", raw.price)?,
        quantity: decimal("qty", raw.qty)?,
        instrument: instrument(raw.market, raw.base, raw.quote)?,
        trade_id: text("id", raw.id)?,
        trade_time_ns: ts_ns,
        side,
        received_ns: recv_ns,
    })
}

fn bar(raw: In<'_>) -> Result<HistoryBar, DecodeError> {
    let open_time = required("open_time", raw.open_time)?;
    for (field, present) in [
        ("market", raw.market.is_some()),
        ("base", raw.base.is_some()),
        ("quote", raw.quote.is_some()),
        ("open", raw.open.is_some()),
        ("high", raw.high.is_some()),
        ("low", raw.low.is_some()),
        ("close", raw.close.is_some()),
        ("volume_base", raw.volume_base.is_some()),
        ("volume_quote", raw.volume_quote.is_some()),
    ] {
        if !present {
            return Err(DecodeError::Malformed(format!("missing field `{field}`")));
        }
    }
    if open_time.rem_euclid(60) != 0 {
        return Err(DecodeError::InvalidField {
            field: "open_time",
            reason: format!("{open_time} is not the start of a minute (a multiple of 60)"),
        });
    }
    Ok(HistoryBar {
        instrument: instrument(raw.market, raw.base, raw.quote)?,
        open_time,
        open: decimal("open", raw.open)?,
        high: decimal("high", raw.high)?,
        low: decimal("low", raw.low)?,
        close: decimal("close", raw.close)?,
        volume_base: decimal("volume_base", raw.volume_base)?,
        volume_quote: decimal("volume_quote", raw.volume_quote)?,
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

    fn sample_bar() -> HistoryBar {
        HistoryBar {
            instrument: Instrument::new("Coinbase", "BTC", "USD"),
            open_time: 1_700_000_040,
            open: "37250.12".parse().unwrap(),
            high: "37260".parse().unwrap(),
            low: "37240.50".parse().unwrap(),
            close: "37255".parse().unwrap(),
            volume_base: "12.5".parse().unwrap(),
            volume_quote: "465650.25".parse().unwrap(),
        }
    }

    fn encoded(record: &Record) -> String {
        let mut out = Vec::new();
        encode_record(record, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_bar_encodes_the_documented_shape() {
        let json = encoded(&Record::Bar(sample_bar()));
        assert_eq!(
            json,
            r#"{"v":1,"type":"bar","market":"Coinbase","base":"BTC","quote":"USD","open_time":1700000040,"open":"37250.12","high":"37260","low":"37240.50","close":"37255","volume_base":"12.5","volume_quote":"465650.25"}"#
        );
        assert_eq!(
            decode_record(json.as_bytes()).unwrap(),
            Record::Bar(sample_bar())
        );
        // The trade-only decoder refuses it with a typed error.
        assert!(matches!(
            decode(json.as_bytes()),
            Err(DecodeError::InvalidField { field: "type", .. })
        ));
    }

    #[test]
    fn a_trade_is_written_as_before_and_read_with_or_without_type() {
        let tick = sample();
        let json = encoded(&Record::Trade(tick.clone()));
        assert_eq!(json.as_bytes(), encode(&tick).as_slice());
        assert!(!json.contains("type"));
        assert_eq!(
            decode_record(json.as_bytes()).unwrap(),
            Record::Trade(tick.clone())
        );
        let typed = json.replacen(r#"{"v":1,"#, r#"{"v":1,"type":"trade","#, 1);
        assert_eq!(
            decode_record(typed.as_bytes()).unwrap(),
            Record::Trade(tick)
        );
        assert!(matches!(
            decode_record(b"nope"),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_types_and_bad_bars_are_typed_errors() {
        let ok = encoded(&Record::Bar(sample_bar()));
        assert_eq!(
            decode_record(ok.replace(r#""bar""#, r#""quote""#).as_bytes()),
            Err(DecodeError::UnknownType {
                found: "quote".into()
            })
        );
        let cases: Vec<(String, &str)> = vec![
            (ok.replace(r#","close":"37255""#, ""), "malformed"),
            (ok.replace(r#""type":"bar","#, ""), "malformed"),
            (ok.replace("1700000040", "1700000041"), "open_time"),
            (ok.replace("1700000040", r#""1700000040""#), "malformed"),
            (ok.replace(r#""12.5""#, r#""12,5""#), "volume_base"),
            (ok.replace(r#""37260""#, "37260"), "malformed"),
            (ok.replace(r#""Coinbase""#, r#""""#), "market"),
            (ok.replace(r#""bar""#, "7"), "malformed"),
            // The platform's rules (domain::validate).
            (ok.replace("1700000040", "9300000000"), "open_time"),
            (ok.replace(r#""low":"37240.50""#, r#""low":"37270""#), "low"),
            (ok.replace(r#""37260""#, r#""-37260""#), "high"),
            (ok.replace(r#""12.5""#, r#""-12.5""#), "volume_base"),
            (ok.replace(r#""BTC""#, r#""BTC USD""#), "base"),
        ];
        for (input, expect) in cases {
            let err = decode_record(input.as_bytes()).unwrap_err();
            match (&err, expect) {
                (DecodeError::Malformed(_), "malformed") => {}
                (DecodeError::InvalidField { field, .. }, f) if *field == f => {}
                _ => panic!("{input}: expected {expect}, got {err:?}"),
            }
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
                "ts_ns":1700000000000000000,"price":"2000","qty":"1.5","recv_ns":0,"venue_seq":7}"#,
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
            // The platform's rules (domain::validate): each poison record of
            // the fault-containment issue.
            (ok.replace(r#""37250.12""#, r#""0""#), "price"),
            (ok.replace(r#""37250.12""#, r#""-1""#), "price"),
            (ok.replace(r#""0.0150""#, r#""-5""#), "qty"),
            (ok.replace(r#""BTC""#, r#""BTC USD""#), "base"),
            (ok.replace("593817342", &"7".repeat(10_000)), "id"),
            (
                ok.replace(r#""37250.12""#, r#""79228162514264337593543950335""#),
                "price",
            ),
            (
                ok.replace(r#""37250.12""#, r#""1000000000000000""#)
                    .replace(r#""0.0150""#, r#""1000000000000000""#),
                "qty",
            ),
            (ok.replace("1700000000123000000", "-1"), "ts_ns"),
            (
                ok.replace("1700000000123000000", "9223372036854775807"),
                "ts_ns",
            ),
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

    /// A positive decimal within the rules (below 10^12, at most 8 digits
    /// after the point: the product of two stays exact).
    fn arb_positive() -> impl Strategy<Value = Decimal> {
        (1i64..1_000_000_000_000, 0u32..=8).prop_map(|(m, s)| Decimal::new(m, s))
    }

    /// 2009 to 2023, in nanoseconds.
    fn arb_time_ns() -> impl Strategy<Value = i64> {
        (validate::EARLIEST_SECS * 1_000_000_000)..1_700_000_000_000_000_000
    }

    /// Any tick, valid or not.
    fn arb_any_tick() -> impl Strategy<Value = Tick> {
        (
            (arb_part(), "\\PC{0,34}", arb_part()),
            "\\PC{0,80}",
            any::<i64>(),
            arb_decimal(),
            arb_decimal(),
            any::<i64>(),
        )
            .prop_map(
                |((market, base, quote), trade_id, ts, price, quantity, recv)| Tick {
                    instrument: Instrument::new(market, base, quote),
                    trade_id,
                    trade_time_ns: ts,
                    price,
                    quantity,
                    side: Side::Unknown,
                    received_ns: recv,
                },
            )
    }

    fn arb_part() -> impl Strategy<Value = String> {
        "[A-Za-z0-9.]{1,12}"
    }

    fn arb_tick() -> impl Strategy<Value = Tick> {
        (
            (arb_part(), arb_part(), arb_part()),
            // Trade ids are opaque strings: anything non-empty, escapes included.
            "\\PC{1,16}",
            arb_time_ns(),
            arb_positive(),
            prop_oneof![Just(Decimal::ZERO), arb_positive()],
            prop_oneof![Just(Side::Buy), Just(Side::Sell), Just(Side::Unknown)],
            prop_oneof![Just(0i64), arb_time_ns()],
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

    fn arb_bar() -> impl Strategy<Value = HistoryBar> {
        (
            (arb_part(), arb_part(), arb_part()),
            (validate::EARLIEST_SECS / 60)..(1_700_000_000 / 60),
            (
                arb_positive(),
                arb_positive(),
                arb_positive(),
                arb_positive(),
            ),
            (arb_positive(), arb_positive()),
        )
            .prop_map(|((market, base, quote), minute, (a, b, c, d), (vb, vq))| {
                // Any four prices, ordered so that the bar is consistent.
                let mut p = [a, b, c, d];
                p.sort();
                HistoryBar {
                    instrument: Instrument::new(market, base, quote),
                    open_time: minute * 60,
                    open: p[1],
                    high: p[3],
                    low: p[0],
                    close: p[2],
                    volume_base: vb,
                    volume_quote: vq,
                }
            })
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        prop_oneof![
            arb_tick().prop_map(Record::Trade),
            arb_bar().prop_map(Record::Bar)
        ]
    }

    /// Every decimal of a record as text: equality of `Decimal` is numeric,
    /// the scale must survive too.
    fn decimals(r: &Record) -> Vec<String> {
        match r {
            Record::Trade(t) => vec![t.price.to_string(), t.quantity.to_string()],
            Record::Bar(b) => [
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume_base,
                b.volume_quote,
            ]
            .iter()
            .map(Decimal::to_string)
            .collect(),
        }
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
        fn records_round_trip_exactly(record in arb_record()) {
            let mut bytes = Vec::new();
            encode_record(&record, &mut bytes);
            let back = decode_record(&bytes).unwrap();
            prop_assert_eq!(decimals(&back), decimals(&record));
            prop_assert_eq!(&back, &record);
            prop_assert_eq!(decode_record_at(&bytes, 1_700_000_000), Ok(record));
        }

        #[test]
        fn encode_record_appends_exactly_one_message(a in arb_record(), b in arb_record()) {
            let mut buf = Vec::new();
            encode_record(&a, &mut buf);
            let first = buf.len();
            encode_record(&b, &mut buf);
            prop_assert_eq!(decode_record(&buf[..first]).unwrap(), a);
            prop_assert_eq!(decode_record(&buf[first..]).unwrap(), b);
        }

        #[test]
        fn a_trade_decodes_exactly_when_it_keeps_the_rules(tick in arb_any_tick()) {
            let now = 1_700_000_000;
            let decoded = decode_record_at(&encode(&tick), now);
            match validate::tick(&tick, now) {
                Ok(()) => prop_assert_eq!(decoded, Ok(Record::Trade(tick))),
                // Refused, naming a field (the first the decoder checks).
                Err(_) => prop_assert!(
                    matches!(decoded, Err(DecodeError::InvalidField { .. })),
                    "{decoded:?}"
                ),
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
            let _ = decode_record(&bytes);
        }
    }
}
