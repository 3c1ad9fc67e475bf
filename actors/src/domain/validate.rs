//! What a record must be to enter the platform: one set of rules, applied by
//! the Kafka decoder to every record it reads (`kafka::schema`), by the
//! producer to every trade and bar it takes from the source, and restated by
//! the database's constraints (`migrations/`).
//!
//! A record that breaks a rule is refused with the field and the reason
//! ([`Invalid`]); the consumer sends it to the dead-letter topic. Nothing
//! refused here ever reaches a store, so no row can fail a constraint, fail
//! to be read back, or overflow the bar arithmetic because of one record:
//!
//! | field | rule |
//! |---|---|
//! | `market`, `base`, `quote` | 1 to 32 characters, ASCII letters, digits or `.` (the [`Instrument`] grammar) |
//! | trade `id` | 1 to [`MAX_TRADE_ID_BYTES`] bytes, no control characters |
//! | `ts_ns`, `open_time` | from [`EARLIEST_SECS`] (2009-01-01) to now + [`FUTURE_SLACK_SECS`] (one day); `open_time` a multiple of 60 |
//! | `recv_ns` | 0 (unknown) or within the same range as `ts_ns` |
//! | `price`, `open`, `high`, `low`, `close` | > 0 and ≤ [`MAX_PRICE`] |
//! | `qty` | ≥ 0 and ≤ [`MAX_QUANTITY`] |
//! | `volume_base`, `volume_quote` | ≥ 0 and ≤ [`MAX_VOLUME`] |
//! | every decimal | at most [`MAX_SCALE`] digits after the point |
//! | a trade's `price × qty` | exact (no rounding, no overflow) |
//! | a bar | `low ≤ open ≤ high`, `low ≤ close ≤ high` |
//!
//! Pure functions, no I/O. What must never happen: a record that passes here
//! and is then refused by a store's constraint for a reason of its own
//! content, or a panic on any input.

use rust_decimal::Decimal;

use super::record::HistoryBar;
use super::tick::{Instrument, Tick};

/// The earliest acceptable trade or bar time: 2009-01-01T00:00:00Z (Unix
/// seconds), before the first bitcoin trade.
pub const EARLIEST_SECS: i64 = 1_230_768_000;
/// How far past the receiver's clock a time may lie (clock skew between
/// exchanges, the source and this node): one day.
pub const FUTURE_SLACK_SECS: i64 = 86_400;
/// The longest trade id, in bytes (exchange ids are numbers or UUIDs).
pub const MAX_TRADE_ID_BYTES: usize = 64;
/// The longest market or symbol, in characters.
pub const MAX_SYMBOL_CHARS: usize = 32;
/// The most digits after the decimal point of any price, quantity or volume.
pub const MAX_SCALE: u32 = 18;
/// The highest price: 10^15 in the quote currency.
pub const MAX_PRICE: Decimal = Decimal::from_parts(2_764_472_320, 232_830, 0, false, 0);
/// The largest quantity of one trade: 10^15 in the base currency.
pub const MAX_QUANTITY: Decimal = MAX_PRICE;
/// The largest volume of one history bar: 10^24.
pub const MAX_VOLUME: Decimal = Decimal::from_parts(2_701_131_776, 466_537_709, 54_210, false, 0);

/// A field breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid field `{field}`: {reason}")]
pub struct Invalid {
    /// The field's name in the Kafka schema.
    pub field: &'static str,
    /// Which rule, and the value (shortened when long).
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason: reason.into(),
    }
}

/// At most 40 characters of `text`, for a reason that names a bad value
/// without copying a huge one into every log line and dead letter.
pub fn shorten(text: &str) -> String {
    shorten_to(text, 40)
}

/// At most `max` characters of `text` (then `…` and its length in bytes).
pub fn shorten_to(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()),
    }
}

/// The current time, Unix seconds (0 if the clock is before 1970).
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whether `part` is a valid market or symbol: 1 to 32 ASCII letters,
/// digits or `.`.
pub fn is_symbol(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= MAX_SYMBOL_CHARS
        && part.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.')
}

/// A market or symbol field.
pub fn symbol(field: &'static str, part: &str) -> Result<(), Invalid> {
    if is_symbol(part) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "`{}` is not 1 to {MAX_SYMBOL_CHARS} ASCII letters, digits or `.`",
                shorten(part)
            ),
        ))
    }
}

/// The three parts of an instrument.
pub fn instrument(i: &Instrument) -> Result<(), Invalid> {
    symbol("market", &i.market)?;
    symbol("base", &i.base)?;
    symbol("quote", &i.quote)
}

/// A trade id.
pub fn trade_id(id: &str) -> Result<(), Invalid> {
    if id.is_empty() {
        return Err(invalid("id", "empty"));
    }
    if id.len() > MAX_TRADE_ID_BYTES {
        return Err(invalid(
            "id",
            format!(
                "{} bytes, longer than {MAX_TRADE_ID_BYTES}: `{}`",
                id.len(),
                shorten(id)
            ),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(invalid("id", "holds a control character"));
    }
    Ok(())
}

/// The latest acceptable time, Unix seconds, when the clock reads `now`.
fn latest_secs(now: i64) -> i64 {
    now.saturating_add(FUTURE_SLACK_SECS)
}

/// A time in seconds.
pub fn time_secs(field: &'static str, secs: i64, now: i64) -> Result<(), Invalid> {
    if (EARLIEST_SECS..=latest_secs(now)).contains(&secs) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{secs} s is outside {EARLIEST_SECS}..={} (2009-01-01 to one day from now)",
                latest_secs(now)
            ),
        ))
    }
}

/// A time in nanoseconds.
pub fn time_ns(field: &'static str, ns: i64, now: i64) -> Result<(), Invalid> {
    let earliest = EARLIEST_SECS.saturating_mul(1_000_000_000);
    let latest = latest_secs(now).saturating_mul(1_000_000_000);
    if (earliest..=latest).contains(&ns) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{ns} ns is outside {earliest}..={latest} (2009-01-01 to one day from now)"),
        ))
    }
}

fn scale(field: &'static str, d: Decimal) -> Result<(), Invalid> {
    if d.scale() <= MAX_SCALE {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{d} has {} digits after the point, more than {MAX_SCALE}",
                d.scale()
            ),
        ))
    }
}

/// A price (trade price, or a bar's open, high, low or close).
pub fn price(field: &'static str, d: Decimal) -> Result<(), Invalid> {
    if d <= Decimal::ZERO {
        return Err(invalid(field, format!("{d} is not positive")));
    }
    if d > MAX_PRICE {
        return Err(invalid(field, format!("{d} is above {MAX_PRICE}")));
    }
    scale(field, d)
}

/// A trade's quantity.
pub fn quantity(field: &'static str, d: Decimal) -> Result<(), Invalid> {
    if d.is_sign_negative() && !d.is_zero() {
        return Err(invalid(field, format!("{d} is negative")));
    }
    if d > MAX_QUANTITY {
        return Err(invalid(field, format!("{d} is above {MAX_QUANTITY}")));
    }
    scale(field, d)
}

/// A bar's volume.
pub fn volume(field: &'static str, d: Decimal) -> Result<(), Invalid> {
    if d.is_sign_negative() && !d.is_zero() {
        return Err(invalid(field, format!("{d} is negative")));
    }
    if d > MAX_VOLUME {
        return Err(invalid(field, format!("{d} is above {MAX_VOLUME}")));
    }
    scale(field, d)
}

/// `price × quantity` exactly, or why not (the quote volume of one trade:
/// a rounded product would make bars depend on how it was rounded).
pub fn quote_volume(price: Decimal, quantity: Decimal) -> Result<Decimal, Invalid> {
    if quantity.is_zero() {
        return Ok(Decimal::ZERO);
    }
    match price.checked_mul(quantity) {
        Some(v) if v.scale() == price.scale() + quantity.scale() => Ok(v),
        _ => Err(invalid(
            "qty",
            format!("price {price} × quantity {quantity} is not exactly representable"),
        )),
    }
}

/// Every rule for a live trade, with the clock at `now` (Unix seconds).
pub fn tick(t: &Tick, now: i64) -> Result<(), Invalid> {
    instrument(&t.instrument)?;
    trade_id(&t.trade_id)?;
    time_ns("ts_ns", t.trade_time_ns, now)?;
    if t.received_ns != 0 {
        time_ns("recv_ns", t.received_ns, now)?;
    }
    price("price", t.price)?;
    quantity("qty", t.quantity)?;
    quote_volume(t.price, t.quantity).map(|_| ())
}

/// Every rule for a history bar, with the clock at `now` (Unix seconds).
pub fn history_bar(b: &HistoryBar, now: i64) -> Result<(), Invalid> {
    instrument(&b.instrument)?;
    if b.open_time.rem_euclid(60) != 0 {
        return Err(invalid(
            "open_time",
            format!(
                "{} is not the start of a minute (a multiple of 60)",
                b.open_time
            ),
        ));
    }
    time_secs("open_time", b.open_time, now)?;
    price("open", b.open)?;
    price("high", b.high)?;
    price("low", b.low)?;
    price("close", b.close)?;
    volume("volume_base", b.volume_base)?;
    volume("volume_quote", b.volume_quote)?;
    if b.low > b.high {
        return Err(invalid(
            "low",
            format!("low {} is above high {}", b.low, b.high),
        ));
    }
    for (field, v) in [("open", b.open), ("close", b.close)] {
        if v < b.low || v > b.high {
            return Err(invalid(
                field,
                format!("{v} is outside low {} .. high {}", b.low, b.high),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Side;

    const NOW: i64 = 1_700_000_000;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn good_tick() -> Tick {
        Tick {
            instrument: Instrument::new("Coinbase", "BTC", "USD"),
            trade_id: "593817342".into(),
            trade_time_ns: 1_699_999_999_123_000_000,
            price: d("37250.12"),
            quantity: d("0.0150"),
            side: Side::Buy,
            received_ns: 1_699_999_999_200_000_000,
        }
    }

    fn good_bar() -> HistoryBar {
        HistoryBar {
            instrument: Instrument::new("Coinbase", "BTC", "USD"),
            open_time: 1_699_999_980,
            open: d("37250.12"),
            high: d("37260"),
            low: d("37240.5"),
            close: d("37255"),
            volume_base: d("12.5"),
            volume_quote: d("465650.25"),
        }
    }

    fn field_of(r: Result<(), Invalid>) -> &'static str {
        r.expect_err("refused").field
    }

    #[test]
    fn the_constants_are_what_they_say() {
        assert_eq!(MAX_PRICE, d("1000000000000000"));
        assert_eq!(MAX_VOLUME, d("1000000000000000000000000"));
        // 2009-01-01T00:00:00Z.
        assert_eq!(EARLIEST_SECS % 86_400, 0);
        assert_eq!((EARLIEST_SECS - 1_230_768_000), 0);
    }

    #[test]
    fn good_records_pass() {
        tick(&good_tick(), NOW).unwrap();
        history_bar(&good_bar(), NOW).unwrap();
        // Zero quantity (some venues report it), unknown receive time.
        let mut t = good_tick();
        t.quantity = Decimal::ZERO;
        t.received_ns = 0;
        tick(&t, NOW).unwrap();
        // A flat bar of a minute without trades.
        let mut b = good_bar();
        b.volume_base = Decimal::ZERO;
        b.volume_quote = Decimal::ZERO;
        history_bar(&b, NOW).unwrap();
    }

    #[test]
    fn each_poison_trade_is_refused_with_its_field() {
        type Poison = Box<dyn Fn(&mut Tick)>;
        let cases: Vec<(&str, Poison)> = vec![
            ("price", Box::new(|t| t.price = Decimal::ZERO)),
            ("price", Box::new(|t| t.price = d("-1"))),
            ("price", Box::new(|t| t.price = d("1000000000000001"))),
            ("price", Box::new(|t| t.price = d("0.0000000000000000001"))),
            ("qty", Box::new(|t| t.quantity = d("-5"))),
            ("qty", Box::new(|t| t.quantity = d("1000000000000001"))),
            ("base", Box::new(|t| t.instrument.base = "BTC USD".into())),
            ("market", Box::new(|t| t.instrument.market = "a".repeat(33))),
            ("quote", Box::new(|t| t.instrument.quote = "US$".into())),
            ("id", Box::new(|t| t.trade_id = "9".repeat(10_000))),
            ("id", Box::new(|t| t.trade_id = String::new())),
            ("id", Box::new(|t| t.trade_id = "12\n3".into())),
            ("ts_ns", Box::new(|t| t.trade_time_ns = 0)),
            ("ts_ns", Box::new(|t| t.trade_time_ns = -1)),
            ("ts_ns", Box::new(|t| t.trade_time_ns = i64::MAX)),
            ("recv_ns", Box::new(|t| t.received_ns = -7)),
            // 10^15 × 10^15 does not fit a decimal: refused, not a panic.
            (
                "qty",
                Box::new(|t| {
                    t.price = MAX_PRICE;
                    t.quantity = MAX_QUANTITY;
                }),
            ),
            // 18 + 18 digits after the point: the product would be rounded.
            (
                "qty",
                Box::new(|t| {
                    t.price = d("1.000000000000000001");
                    t.quantity = d("1.000000000000000001");
                }),
            ),
        ];
        for (field, poison) in cases {
            let mut t = good_tick();
            poison(&mut t);
            assert_eq!(field_of(tick(&t, NOW)), field, "{t:?}");
        }
    }

    #[test]
    fn each_poison_bar_is_refused_with_its_field() {
        type Poison = Box<dyn Fn(&mut HistoryBar)>;
        let cases: Vec<(&str, Poison)> = vec![
            ("open_time", Box::new(|b| b.open_time = 9_300_000_000)),
            ("open_time", Box::new(|b| b.open_time = 61)),
            ("open_time", Box::new(|b| b.open_time = 0)),
            ("open_time", Box::new(|b| b.open_time = i64::MIN + 32)),
            ("low", Box::new(|b| b.low = d("37270"))),
            ("open", Box::new(|b| b.open = d("37230"))),
            ("close", Box::new(|b| b.close = d("37261"))),
            ("high", Box::new(|b| b.high = d("-1"))),
            ("volume_base", Box::new(|b| b.volume_base = d("-0.1"))),
            (
                "volume_quote",
                Box::new(|b| b.volume_quote = d("1000000000000000000000001")),
            ),
            ("base", Box::new(|b| b.instrument.base = String::new())),
        ];
        for (field, poison) in cases {
            let mut b = good_bar();
            poison(&mut b);
            assert_eq!(field_of(history_bar(&b, NOW)), field, "{b:?}");
        }
    }

    #[test]
    fn times_are_bounded_by_the_clock() {
        let day = FUTURE_SLACK_SECS;
        time_secs("t", NOW + day, NOW).unwrap();
        assert!(time_secs("t", NOW + day + 1, NOW).is_err());
        time_secs("t", EARLIEST_SECS, NOW).unwrap();
        assert!(time_secs("t", EARLIEST_SECS - 1, NOW).is_err());
        time_ns("t", (NOW + day) * 1_000_000_000, NOW).unwrap();
        assert!(time_ns("t", (NOW + day) * 1_000_000_000 + 1, NOW).is_err());
        // A clock at the end of time does not overflow.
        time_ns("t", 1_700_000_000_000_000_000, i64::MAX).unwrap();
    }

    #[test]
    fn quote_volume_is_exact_or_refused() {
        assert_eq!(
            quote_volume(d("37250.12"), d("0.0150")).unwrap(),
            d("558.75180")
        );
        assert_eq!(quote_volume(d("37250.12"), d("0.0150")).unwrap().scale(), 6);
        assert_eq!(quote_volume(d("5"), d("0.000")).unwrap(), Decimal::ZERO);
        assert!(quote_volume(MAX_PRICE, MAX_QUANTITY).is_err());
    }

    #[test]
    fn long_values_are_shortened_in_reasons() {
        let reason = trade_id(&"x".repeat(10_000)).unwrap_err().reason;
        assert!(reason.len() < 120, "{reason}");
        assert!(reason.contains("10000 bytes"), "{reason}");
        assert_eq!(shorten("abc"), "abc");
        // Cut on a character boundary.
        let s = "é".repeat(50);
        assert!(shorten(&s).starts_with(&"é".repeat(40)));
    }
}
