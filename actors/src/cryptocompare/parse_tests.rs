//! `parse.rs` against recorded frames and bodies in
//! `tests/fixtures/cryptocompare/`.

use rust_decimal::Decimal;

use super::*;
use crate::cryptocompare::error::ApiErrorKind;
use crate::cryptocompare::messages::Frame;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/cryptocompare/",
            $name
        ))
    };
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

#[test]
fn trade_frame_becomes_an_exact_tick() {
    let Frame::Trade(t) = parse_frame(fixture!("trade.json")).unwrap() else {
        panic!("not a trade")
    };
    let tick = t.to_tick(7);
    assert_eq!(tick.instrument, Instrument::new("Coinbase", "BTC", "USD"));
    assert_eq!(tick.trade_id, "593817342");
    assert_eq!(tick.trade_time_ns, 1_700_000_000_123_000_000);
    assert_eq!(tick.price, dec("37250.12"));
    assert_eq!(tick.price.to_string(), "37250.12");
    assert_eq!(tick.quantity.to_string(), "0.015");
    assert_eq!(tick.side, Side::Buy);
    assert_eq!(tick.received_ns, 7);
}

#[test]
fn trade_variants_sell_reversed_numeric_id_scientific() {
    let Frame::Trade(t) = parse_frame(fixture!("trade_sell_reversed.json")).unwrap() else {
        panic!()
    };
    assert_eq!(t.flags, FLAG_SELL | FLAG_REVERSED);
    assert_eq!(side_from_flags(t.flags), Side::Sell);
    assert_eq!(t.ts_ns, 0);
    assert_eq!(t.quantity.to_string(), "1.25000000");
    assert_eq!(t.id, "1700000001-77");

    let Frame::Trade(t) = parse_frame(fixture!("trade_scientific.json")).unwrap() else {
        panic!()
    };
    assert_eq!(t.id, "123");
    assert_eq!(t.price, dec("0.00000891"));
    assert_eq!(t.quantity, dec("15000000"));
    assert_eq!(side_from_flags(t.flags), Side::Unknown);
    assert_eq!(t.time_ns(), 1_700_000_003_000_000_005);
}

#[test]
fn side_flags_table() {
    for (flags, side) in [
        (1, Side::Sell),
        (2, Side::Buy),
        (4, Side::Unknown),
        (0, Side::Unknown),
        (9, Side::Sell),
        (10, Side::Buy),
        (12, Side::Unknown),
    ] {
        assert_eq!(side_from_flags(flags), side, "F={flags}");
    }
}

#[test]
fn control_frames() {
    let Frame::Welcome(w) = parse_frame(fixture!("welcome.json")).unwrap() else {
        panic!()
    };
    assert_eq!(w.client_id, Some(2561280));
    assert_eq!(w.server_time_ms, Some(1753184197855));
    assert_eq!(w.sockets_remaining, Some(0));
    assert_eq!(
        parse_frame(fixture!("subscribe_complete.json")).unwrap(),
        Frame::SubscribeComplete {
            sub: "0~Coinbase~BTC~USD".into()
        }
    );
    assert_eq!(
        parse_frame(fixture!("unsubscribe_complete.json")).unwrap(),
        Frame::UnsubscribeComplete {
            sub: "0~Coinbase~BTC~USD".into()
        }
    );
    assert_eq!(
        parse_frame(fixture!("load_complete.json")).unwrap(),
        Frame::LoadComplete
    );
    assert_eq!(
        parse_frame(fixture!("heartbeat.json")).unwrap(),
        Frame::Heartbeat {
            time_ms: Some(1582817678330)
        }
    );
    assert_eq!(
        parse_frame(fixture!("ticker.json")).unwrap(),
        Frame::Unknown {
            type_code: "2".into()
        }
    );
}

#[test]
fn notice_frames() {
    for (text, code, message, parameter) in [
        (
            fixture!("unauthorized.json"),
            401,
            "UNAUTHORIZED",
            Some("format"),
        ),
        (
            fixture!("too_many_sockets.json"),
            429,
            "TOO_MANY_SOCKETS_MAX_1_PER_CLIENT",
            None,
        ),
        (
            fixture!("invalid_sub.json"),
            500,
            "INVALID_SUB",
            Some("0~Nope~BTC~USD"),
        ),
    ] {
        let Frame::Notice(n) = parse_frame(text).unwrap() else {
            panic!("{text}")
        };
        assert_eq!(n.code, code);
        assert_eq!(n.message, message);
        assert_eq!(n.parameter.as_deref(), parameter);
        assert!(n.info.is_some());
    }
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    assert!(matches!(
        parse_frame(fixture!("malformed_truncated.txt")),
        Err(ParseError::Json(_))
    ));
    assert!(matches!(
        parse_frame(fixture!("malformed_trade_missing_price.json")),
        Err(ParseError::MissingField("P"))
    ));
    assert!(matches!(
        parse_frame(fixture!("malformed_trade_bad_price.json")),
        Err(ParseError::InvalidNumber("P"))
    ));
    assert!(parse_frame(fixture!("malformed_type_not_string.json")).is_err());
    for text in [
        "",
        "null",
        "[]",
        "{}",
        r#"{"TYPE":"0"}"#,
        r#"{"TYPE":"0","M":"a","FSYM":"b","TSYM":"c","ID":"1","TS":1,"TSNS":-1,"P":1,"Q":1}"#,
    ] {
        assert!(parse_frame(text).is_err(), "{text}");
    }
}

#[test]
fn histo_success_body() {
    let HistoAnswer::Bars(bars) = parse_histo_body(fixture!("histo_success.json")).unwrap() else {
        panic!()
    };
    assert_eq!(bars.len(), 2);
    assert_eq!(
        bars[0],
        HistoBar {
            time: 1652140800,
            open: dec("30076.9"),
            high: dec("32625.41"),
            low: dec("29836.19"),
            close: dec("31013.12"),
            volume_from: dec("103.6"),
            volume_to: dec("3244062.09"),
        }
    );
    assert_eq!(bars[1].time, 1652140860);
    assert_eq!(bars[1].high.to_string(), "31100.0");
}

#[test]
fn histo_error_bodies_are_typed() {
    for (text, code, kind, param) in [
        (
            fixture!("histo_error_rate_limit.json"),
            99,
            ApiErrorKind::RateLimited,
            None,
        ),
        (
            fixture!("histo_error_missing_param.json"),
            2,
            ApiErrorKind::InvalidParameter,
            Some("fsym"),
        ),
        (
            fixture!("histo_error_market.json"),
            1,
            ApiErrorKind::UnknownPair,
            None,
        ),
        (
            fixture!("histo_error_api_key.json"),
            1,
            ApiErrorKind::Unauthorized,
            None,
        ),
    ] {
        let HistoAnswer::Error(e) = parse_histo_body(text).unwrap() else {
            panic!("{text}")
        };
        assert_eq!(e.code, code);
        assert_eq!(e.kind(), kind);
        assert_eq!(e.param.as_deref(), param);
        assert!(!e.message.is_empty());
    }
}

#[test]
fn an_unlisted_pair_is_an_unknown_pair_whatever_the_market_or_type() {
    for (body, code) in [
        (
            r#"{"Response":"Error","Message":"Binance market does not exist for this coin pair (ETH-USD)","HasWarning":false,"Type":1,"RateLimit":{},"Data":{},"Cooldown":0}"#,
            1,
        ),
        (
            r#"{"Response":"Error","Message":"CCCAGG market does not exist for this coin pair (PRICKS-SOL)","HasWarning":false,"Type":1,"RateLimit":{},"Data":{}}"#,
            1,
        ),
        (
            r#"{"Response":"Error","Message":"cccagg_or_exchange market does not exist for this coin pair (EZETH-USD)","HasWarning":false,"Type":2,"RateLimit":{},"Data":{},"Cooldown":0}"#,
            2,
        ),
    ] {
        let HistoAnswer::Error(e) = parse_histo_body(body).unwrap() else {
            panic!("{body}")
        };
        assert_eq!(
            (e.code, e.kind()),
            (code, ApiErrorKind::UnknownPair),
            "{body}"
        );
        assert!(e.is_unknown_pair());
        let err = crate::cryptocompare::CryptoCompareError::Api(e);
        assert!(err.is_unknown_pair() && !err.is_transient(), "{err}");
        assert_eq!(err.api_kind(), Some(ApiErrorKind::UnknownPair));
    }
    // Another `Type` 1 refusal is not an unknown pair.
    let other = ApiError {
        code: 1,
        message: "There is no data for the symbol FOO.".into(),
        param: None,
    };
    assert_eq!(other.kind(), ApiErrorKind::NotAvailable);
    assert!(!crate::cryptocompare::CryptoCompareError::Api(other).is_unknown_pair());
    assert!(!crate::cryptocompare::CryptoCompareError::Closed.is_unknown_pair());
}

#[test]
fn malformed_histo_bodies_are_errors() {
    assert!(matches!(
        parse_histo_body(fixture!("histo_malformed_no_response.json")),
        Err(ParseError::MissingField("Response"))
    ));
    assert!(matches!(
        parse_histo_body(fixture!("histo_malformed_bad_number.json")),
        Err(ParseError::InvalidNumber("high"))
    ));
    assert!(parse_histo_body("<html>502 Bad Gateway</html>").is_err());
}
