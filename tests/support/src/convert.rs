//! Between the platform's types and the oracle's ([`crate::oracle`]): what
//! the tests feed the platform (ticks, history bars, the imitation's trades,
//! the ticks it stored) as the oracle's inputs, and what the platform stores
//! or serves (bars, stored rows, the API's JSON) as reference bars to compare
//! with the oracle's. Fields are copied, never computed: no bar of the
//! platform's making becomes an expected value here.

use candela_actors::domain::{Bar, HistoryBar, Instrument, Tick};
use candela_actors::imitation::TradeModel;
use candela_actors::store::{Source, StoredBar};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::oracle::{self, HistoryMinute, Mark, Minute, RefBar, Trade};

/// A tick as the oracle takes it.
pub fn trade(t: &Tick) -> Trade {
    Trade {
        instrument: t.instrument.to_string(),
        id: t.trade_id.clone(),
        time_ns: t.trade_time_ns,
        price: t.price,
        quantity: t.quantity,
    }
}

/// Ticks as the oracle takes them.
pub fn trades<'a>(ticks: impl IntoIterator<Item = &'a Tick>) -> Vec<Trade> {
    ticks.into_iter().map(trade).collect()
}

/// A history bar (a history answer for one minute) as the oracle takes it.
pub fn history(h: &HistoryBar) -> HistoryMinute {
    HistoryMinute {
        instrument: h.instrument.to_string(),
        open_time: h.open_time,
        open: h.open,
        high: h.high,
        low: h.low,
        close: h.close,
        volume_base: h.volume_base,
        volume_quote: h.volume_quote,
    }
}

/// History bars as the oracle takes them.
pub fn histories<'a>(bars: impl IntoIterator<Item = &'a HistoryBar>) -> Vec<HistoryMinute> {
    bars.into_iter().map(history).collect()
}

/// The imitation's trades of `instrument` from `from_ns` to `to_ns`
/// (inclusive), from its documented fields: price in cents, quantity in
/// millionths, the id as text.
pub fn imitation_trades(
    model: &TradeModel,
    instrument: &Instrument,
    from_ns: i64,
    to_ns: i64,
) -> Vec<Trade> {
    model
        .trades_between(instrument, from_ns, to_ns)
        .iter()
        .map(|t| Trade {
            instrument: instrument.to_string(),
            id: t.id.to_string(),
            time_ns: t.time_ns,
            price: Decimal::new(t.price_cents, 2),
            quantity: Decimal::new(t.qty_micros, 6),
        })
        .collect()
}

/// What an exact history source (the imitation's) answers for the minutes
/// with trades among `trades`: each minute's bar of its trades.
pub fn exact_history(trades: &[Trade]) -> Vec<HistoryMinute> {
    oracle::bars(trades, 60)
        .iter()
        .map(HistoryMinute::exact)
        .collect()
}

/// The live ticks of `instrument` a PostgreSQL store holds (its `ticks`
/// table), as the oracle takes them.
pub async fn stored_ticks(pool: &sqlx::PgPool, instrument: &str) -> Vec<Trade> {
    use sqlx::Row;
    sqlx::query("SELECT trade_id, trade_time_ns, price, quantity FROM ticks WHERE instrument = $1")
        .bind(instrument)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("the ticks of {instrument}: {e}"))
        .iter()
        .map(|r| Trade {
            instrument: instrument.to_owned(),
            id: r.get(0),
            time_ns: r.get(1),
            price: r.get(2),
            quantity: r.get(3),
        })
        .collect()
}

/// A bar of the platform, as a reference bar to compare.
pub fn ref_bar(b: &Bar) -> RefBar {
    RefBar {
        instrument: b.instrument.to_string(),
        open_time: b.open_time,
        open: b.open,
        high: b.high,
        low: b.low,
        close: b.close,
        volume_base: b.volume_base,
        volume_quote: b.volume_quote,
        trades: b.trades,
    }
}

/// Bars of the platform, as reference bars to compare.
pub fn ref_bars<'a>(bars: impl IntoIterator<Item = &'a Bar>) -> Vec<RefBar> {
    bars.into_iter().map(ref_bar).collect()
}

/// Stored rows' bars, as reference bars to compare.
pub fn stored_bars<'a>(rows: impl IntoIterator<Item = &'a StoredBar>) -> Vec<RefBar> {
    rows.into_iter().map(|r| ref_bar(&r.bar)).collect()
}

/// Stored 1-minute rows, as minutes (bar and source) to compare.
pub fn stored_minutes<'a>(rows: impl IntoIterator<Item = &'a StoredBar>) -> Vec<Minute> {
    rows.into_iter()
        .map(|r| Minute {
            bar: ref_bar(&r.bar),
            source: match r.source {
                Source::Live => oracle::Source::Live,
                Source::History => oracle::Source::History,
            },
        })
        .collect()
}

/// The first and last trade a bar of the platform keeps.
pub fn marks(b: &Bar) -> (Mark, Mark) {
    (
        (b.first.time_ns, b.first.id.clone()),
        (b.last.time_ns, b.last.id.clone()),
    )
}

fn decimal(v: &Value, what: &str) -> Decimal {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what}: not a decimal string: {v}"))
}

/// One bar of the API's JSON (`BarDto`) of `instrument`, and its `source`.
pub fn served_bar(json: &Value, instrument: &str) -> (RefBar, String) {
    let field = |name: &str| decimal(&json[name], name);
    (
        RefBar {
            instrument: instrument.to_owned(),
            open_time: json["time"]
                .as_i64()
                .unwrap_or_else(|| panic!("no time: {json}")),
            open: field("open"),
            high: field("high"),
            low: field("low"),
            close: field("close"),
            volume_base: field("volume_base"),
            volume_quote: field("volume_quote"),
            trades: json["trades"]
                .as_u64()
                .unwrap_or_else(|| panic!("no trades: {json}")),
        },
        json["source"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The bars of an answer of `GET /api/v1/ohlcv` for `instrument`.
pub fn served_bars(body: &Value, instrument: &str) -> Vec<RefBar> {
    body["bars"]
        .as_array()
        .unwrap_or_else(|| panic!("no bars: {body}"))
        .iter()
        .map(|b| served_bar(b, instrument).0)
        .collect()
}

/// The 1-minute bars of an answer of `GET /api/v1/ohlcv` for `instrument`,
/// with their sources (none may be `filled`).
pub fn served_minutes(body: &Value, instrument: &str) -> Vec<Minute> {
    body["bars"]
        .as_array()
        .unwrap_or_else(|| panic!("no bars: {body}"))
        .iter()
        .map(|b| {
            let (bar, source) = served_bar(b, instrument);
            let source = match source.as_str() {
                "live" => oracle::Source::Live,
                "history" => oracle::Source::History,
                other => panic!("a minute of source `{other}`: {b}"),
            };
            Minute { bar, source }
        })
        .collect()
}
