//! The JSON text of the imitation's frames and bodies, written as
//! CryptoCompare writes them (`TYPE` as a string, numbers as JSON numbers).
//!
//! Trade frames are written by hand into a string (they are the hot path of
//! the firehose); everything that echoes client input goes through
//! `serde_json` for escaping.

use std::fmt::Write;

use serde::Serialize;
use serde_json::json;

use super::model::Trade;
use crate::cryptocompare::HistoBar;
use crate::domain::Instrument;

/// Writes `value / 10^scale` with exactly `scale` decimals.
fn write_fixed(out: &mut String, value: i128, scale: u32) {
    let pow = 10i128.pow(scale);
    let sign = if value < 0 { "-" } else { "" };
    let v = value.abs();
    let _ = write!(
        out,
        "{sign}{}.{:0width$}",
        v / pow,
        v % pow,
        width = scale as usize
    );
}

/// A trade frame (`TYPE` 0), received by the imitation at `rts_ns`.
pub fn trade(instrument: &Instrument, t: &Trade, rts_ns: i64) -> String {
    let mut s = String::with_capacity(256);
    let _ = write!(
        s,
        r#"{{"TYPE":"0","M":"{}","FSYM":"{}","TSYM":"{}","F":"{}","ID":"{}","TS":{},"Q":"#,
        instrument.market,
        instrument.base,
        instrument.quote,
        t.flags,
        t.id,
        t.time_ns.div_euclid(1_000_000_000),
    );
    write_fixed(&mut s, t.qty_micros as i128, 6);
    s.push_str(r#","P":"#);
    write_fixed(&mut s, t.price_cents as i128, 2);
    s.push_str(r#","TOTAL":"#);
    write_fixed(&mut s, t.notional_e8(), 8);
    let _ = write!(
        s,
        r#","RTS":{},"CCSEQ":{},"TSNS":{},"RTSNS":{}}}"#,
        rts_ns.div_euclid(1_000_000_000),
        t.id % 1_000_000_000,
        t.time_ns.rem_euclid(1_000_000_000),
        rts_ns.rem_euclid(1_000_000_000),
    );
    s
}

/// The welcome frame (`TYPE` 20).
pub fn welcome(uptime_secs: u64, now_ms: i64, client_id: u64, sockets_active: u64) -> String {
    json!({
        "TYPE": "20", "MESSAGE": "STREAMERWELCOME",
        "SERVER_UPTIME_SECONDS": uptime_secs, "SERVER_NAME": "candela-imitation",
        "SERVER_TIME_MS": now_ms, "CLIENT_ID": client_id, "DATA_FORMAT": "JSON",
        "SOCKET_ID": format!("imitation-{client_id}"),
        "SOCKETS_ACTIVE": sockets_active, "SOCKETS_REMAINING": 1000u64.saturating_sub(sockets_active),
        "RATELIMIT_MAX_SECOND": 30, "RATELIMIT_MAX_MINUTE": 60, "RATELIMIT_MAX_HOUR": 1200,
        "RATELIMIT_MAX_DAY": 10000, "RATELIMIT_MAX_MONTH": 20000,
        "RATELIMIT_REMAINING_SECOND": 29, "RATELIMIT_REMAINING_MINUTE": 59,
        "RATELIMIT_REMAINING_HOUR": 1199, "RATELIMIT_REMAINING_DAY": 9999,
        "RATELIMIT_REMAINING_MONTH": 19999
    })
    .to_string()
}

/// `16` SUBSCRIBECOMPLETE or `17` UNSUBSCRIBECOMPLETE.
pub fn sub_complete(subscribed: bool, sub: &str) -> String {
    let (code, message) = if subscribed {
        ("16", "SUBSCRIBECOMPLETE")
    } else {
        ("17", "UNSUBSCRIBECOMPLETE")
    };
    json!({"TYPE": code, "MESSAGE": message, "SUB": sub}).to_string()
}

/// `3` LOADCOMPLETE.
pub fn load_complete() -> String {
    r#"{"TYPE":"3","MESSAGE":"LOADCOMPLETE","INFO":"All your valid subs have been loaded."}"#
        .to_owned()
}

/// `999` HEARTBEAT.
pub fn heartbeat(now_ms: i64) -> String {
    format!(r#"{{"TYPE":"999","MESSAGE":"HEARTBEAT","TIMEMS":{now_ms}}}"#)
}

/// A notice's fields in CryptoCompare's order.
#[derive(Serialize)]
#[allow(non_snake_case)]
struct NoticeFrame<'a> {
    TYPE: String,
    MESSAGE: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    PARAMETER: Option<&'a str>,
    INFO: &'a str,
}

/// A `401`, `429` or `500` notice:
/// `{"TYPE":"500","MESSAGE":"INVALID_SUB","PARAMETER":"0~Nope~BTC~USD","INFO":"..."}`.
pub fn notice(code: u16, message: &str, parameter: Option<&str>, info: &str) -> String {
    let frame = NoticeFrame {
        TYPE: code.to_string(),
        MESSAGE: message,
        PARAMETER: parameter,
        INFO: info,
    };
    serde_json::to_string(&frame).unwrap_or_default()
}

/// The `INFO` of the `500` `INVALID_SUB` notice for a trade channel whose
/// pair the market does not list. CryptoCompare's wording for an unmapped
/// aggregate channel is "We have not integrated any of the exchanges FOO
/// trades on or we have not currently mapped it."; this is the imitation's
/// own wording for a trade channel, in the same style.
pub fn unlisted_sub_info(market: &str, base: &str, quote: &str) -> String {
    format!("We have not integrated {base}-{quote} trades on {market} or we have not currently mapped it.")
}

/// CryptoCompare's message for a history request of a pair the market does
/// not list (or of a market that does not exist): the market as the request
/// spells it.
pub fn unknown_pair_message(market: &str, base: &str, quote: &str) -> String {
    format!("{market} market does not exist for this coin pair ({base}-{quote})")
}

/// The `n`-th kind of bad frame, in turn: invalid JSON, an unknown `TYPE`, a
/// trade frame without a price, a well-formed trade whose price is 0 (which
/// the platform refuses), and a well-formed trade of an instrument nobody
/// subscribed to.
pub fn malformed(n: u64, instrument: Option<&Instrument>) -> String {
    let (m, b, q) = instrument.map_or(("Coinbase", "BTC", "USD"), |i| {
        (&i.market, &i.base, &i.quote)
    });
    match n % 5 {
        0 => r#"{"TYPE":"0","M":"Coinbase","FSYM":"BT"#.to_owned(),
        1 => r#"{"TYPE":"4242","MESSAGE":"IMITATION_UNKNOWN_TYPE"}"#.to_owned(),
        2 => format!(
            r#"{{"TYPE":"0","M":"{m}","FSYM":"{b}","TSYM":"{q}","F":"2","ID":"malformed-{n}","TS":1700000000,"Q":1}}"#
        ),
        3 => format!(
            r#"{{"TYPE":"0","M":"{m}","FSYM":"{b}","TSYM":"{q}","F":"2","ID":"zero-price-{n}","TS":{},"P":0,"Q":1}}"#,
            unix_now_secs()
        ),
        _ => format!(
            r#"{{"TYPE":"0","M":"Nowhere","FSYM":"ZZZ","TSYM":"USD","F":"2","ID":"foreign-{n}","TS":{},"P":1,"Q":1}}"#,
            unix_now_secs()
        ),
    }
}

fn unix_now_secs() -> i64 {
    crate::domain::validate::now_secs()
}

/// A success body of `histo*` holding `bars`.
pub fn histo_success(bars: &[HistoBar], aggregated: bool) -> String {
    let mut s = String::with_capacity(64 + bars.len() * 200);
    let (from, to) = (
        bars.first().map_or(0, |b| b.time),
        bars.last().map_or(0, |b| b.time),
    );
    let _ = write!(
        s,
        r#"{{"Response":"Success","Message":"","HasWarning":false,"Type":100,"RateLimit":{{}},"Data":{{"Aggregated":{aggregated},"TimeFrom":{from},"TimeTo":{to},"Data":["#
    );
    for (i, b) in bars.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            r#"{{"time":{},"high":{},"low":{},"open":{},"volumefrom":{},"volumeto":{},"close":{},"conversionType":"direct","conversionSymbol":""}}"#,
            b.time,
            b.high.normalize(),
            b.low.normalize(),
            b.open.normalize(),
            b.volume_from.normalize(),
            b.volume_to.normalize(),
            b.close.normalize(),
        );
    }
    s.push_str("]}}");
    s
}

/// An error body's fields in CryptoCompare's order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorBody<'a> {
    response: &'static str,
    message: &'a str,
    has_warning: bool,
    #[serde(rename = "Type")]
    type_code: i64,
    rate_limit: serde_json::Value,
    data: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    param_with_error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cooldown: Option<u64>,
}

/// An error body (`"Response":"Error"`), sent with HTTP 200 (or 429), its
/// fields in CryptoCompare's order, e.g.
/// `{"Response":"Error","Message":"…","HasWarning":false,"Type":1,"RateLimit":{},"Data":{},"Cooldown":0}`.
pub fn histo_error(type_code: i64, message: &str, param: Option<&str>) -> String {
    let rate_limit = if type_code == 99 {
        json!({
            "calls_made": {"second": 21, "minute": 21, "hour": 955, "day": 10004, "month": 15146, "total_calls": 15152},
            "max_calls": {"second": 20, "minute": 300, "hour": 3000, "day": 10000, "month": 75000}
        })
    } else {
        json!({})
    };
    let body = ErrorBody {
        response: "Error",
        message,
        has_warning: false,
        type_code,
        rate_limit,
        data: json!({}),
        param_with_error: param,
        cooldown: (param.is_none() && type_code == 1).then_some(0),
    };
    serde_json::to_string(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cryptocompare::{parse_frame, parse_histo_body, Frame, HistoAnswer};
    use crate::imitation::model::TradeModel;

    #[test]
    fn frames_parse_back_with_the_client_parser() {
        let btc = Instrument::new("Coinbase", "BTC", "USD");
        let model = TradeModel::new(1, 50.0, 0);
        for t in model.trades_in_second(&btc, 1_700_000_000) {
            let text = trade(&btc, &t, t.time_ns + 5);
            let Ok(Frame::Trade(f)) = parse_frame(&text) else {
                panic!("{text}")
            };
            let mut tick = t.to_tick(&btc);
            tick.received_ns = 9;
            assert_eq!(f.to_tick(9), tick);
        }
        assert!(matches!(
            parse_frame(&welcome(1, 2, 3, 1)),
            Ok(Frame::Welcome(_))
        ));
        assert!(matches!(
            parse_frame(&heartbeat(5)),
            Ok(Frame::Heartbeat { time_ms: Some(5) })
        ));
        assert!(matches!(
            parse_frame(&notice(500, "INVALID_SUB", Some("0~\"x"), "no")),
            Ok(Frame::Notice(_))
        ));
        assert!(parse_frame(&malformed(0, None)).is_err());
        assert!(matches!(
            parse_frame(&malformed(1, None)),
            Ok(Frame::Unknown { .. })
        ));
        assert!(parse_frame(&malformed(2, Some(&btc))).is_err());
        // Well-formed, but refused by the client: price 0, and an instrument
        // nobody subscribed to.
        assert!(matches!(
            parse_frame(&malformed(3, Some(&btc))),
            Ok(Frame::Trade(t)) if t.price.is_zero()
        ));
        assert!(matches!(
            parse_frame(&malformed(4, Some(&btc))),
            Ok(Frame::Trade(t)) if t.market == "Nowhere"
        ));
        assert_eq!(write_fixed_str(1_234_005, 6), "1.234005");
    }

    fn write_fixed_str(v: i128, scale: u32) -> String {
        let mut s = String::new();
        write_fixed(&mut s, v, scale);
        s
    }

    #[test]
    fn bodies_parse_back() {
        let HistoAnswer::Error(e) = parse_histo_body(&histo_error(99, "over", None)).unwrap()
        else {
            panic!()
        };
        assert_eq!(e.code, 99);
        let HistoAnswer::Bars(b) = parse_histo_body(&histo_success(&[], false)).unwrap() else {
            panic!()
        };
        assert!(b.is_empty());
    }

    #[test]
    fn refusals_are_written_as_cryptocompare_writes_them() {
        assert_eq!(
            histo_error(1, &unknown_pair_message("Coinbase", "FOO", "BAR"), None),
            r#"{"Response":"Error","Message":"Coinbase market does not exist for this coin pair (FOO-BAR)","HasWarning":false,"Type":1,"RateLimit":{},"Data":{},"Cooldown":0}"#
        );
        assert_eq!(
            histo_error(2, "fsym param seems to be missing.", Some("fsym")),
            r#"{"Response":"Error","Message":"fsym param seems to be missing.","HasWarning":false,"Type":2,"RateLimit":{},"Data":{},"ParamWithError":"fsym"}"#
        );
        let HistoAnswer::Error(e) = parse_histo_body(&histo_error(
            1,
            &unknown_pair_message("CCCAGG", "FOO", "USD"),
            None,
        ))
        .unwrap() else {
            panic!()
        };
        assert!(e.is_unknown_pair(), "{e:?}");
        assert_eq!(
            notice(
                500,
                "INVALID_SUB",
                Some("0~Coinbase~FOO~BAR"),
                &unlisted_sub_info("Coinbase", "FOO", "BAR")
            ),
            r#"{"TYPE":"500","MESSAGE":"INVALID_SUB","PARAMETER":"0~Coinbase~FOO~BAR","INFO":"We have not integrated FOO-BAR trades on Coinbase or we have not currently mapped it."}"#
        );
        assert_eq!(
            notice(429, "TOO_MANY", None, "slow"),
            r#"{"TYPE":"429","MESSAGE":"TOO_MANY","INFO":"slow"}"#
        );
    }
}
