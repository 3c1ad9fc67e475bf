//! The CryptoCompare clients against the imitation on 127.0.0.1:0: paged
//! history, retried rate limits, typed errors, refused keys, and live trades
//! that arrive exactly once through replays, drops, stale connections,
//! malformed frames and late trades.

mod common;

use std::collections::BTreeMap;

use candela_actors::cryptocompare::{
    parse_histo_body, ApiErrorKind, CryptoCompareError, HistoAnswer, HistoBar, HistoryClient,
    Interval, LiveClient,
};
use candela_actors::domain::Instrument;
use candela_actors::imitation::{ImitationConfig, RateLimitStyle, TradeModel};
use common::{assert_exact, client_config, eventually, imitation, Collector};
use rust_decimal::Decimal;

const KEY: &str = "test-key-5e1f";

fn btc() -> Instrument {
    Instrument::new("Coinbase", "BTC", "USD")
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Minute bars recomputed from the model's trades with plain decimal
/// arithmetic, independently of the imitation's aggregation.
fn minute_bars_from_trades(
    model: &TradeModel,
    instrument: &Instrument,
    first: i64,
    last: i64,
) -> Vec<HistoBar> {
    let mut prev_close = None;
    let mut back = first - 60;
    while prev_close.is_none() && back > first - 3_600 {
        let trades = model.trades_between(
            instrument,
            back * 1_000_000_000,
            (back + 60) * 1_000_000_000 - 1,
        );
        prev_close = trades.last().map(|t| t.price());
        back -= 60;
    }
    let mut prev_close = prev_close.unwrap_or(Decimal::ZERO);
    (first..=last)
        .step_by(60)
        .map(|start| {
            let trades = model.trades_between(
                instrument,
                start * 1_000_000_000,
                (start + 60) * 1_000_000_000 - 1,
            );
            let bar = match (trades.first(), trades.last()) {
                (Some(first), Some(last)) => HistoBar {
                    time: start,
                    open: first.price(),
                    high: trades.iter().map(|t| t.price()).max().unwrap(),
                    low: trades.iter().map(|t| t.price()).min().unwrap(),
                    close: last.price(),
                    volume_from: trades.iter().map(|t| t.quantity()).sum(),
                    volume_to: trades.iter().map(|t| t.price() * t.quantity()).sum(),
                },
                _ => HistoBar {
                    time: start,
                    open: prev_close,
                    high: prev_close,
                    low: prev_close,
                    close: prev_close,
                    volume_from: Decimal::ZERO,
                    volume_to: Decimal::ZERO,
                },
            };
            prev_close = bar.close;
            bar
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_longer_than_a_page_arrives_whole_and_equals_the_trades() {
    let im = imitation(ImitationConfig {
        trades_per_sec: 0.05,
        api_key: Some(KEY.into()),
        ..ImitationConfig::default()
    })
    .await;
    let client = HistoryClient::new(client_config(&im, Some(KEY))).unwrap();
    let last = (now_s() / 60 - 3) * 60;
    let from = last - 2_600 * 60 + 17; // not on a minute: the first bar is the next minute
    let first = from - 17 + 60;
    let bars = client
        .bars(Interval::Minute, &btc(), from, last + 59)
        .await
        .unwrap();

    assert_eq!(bars.first().unwrap().time, first);
    assert_eq!(bars.last().unwrap().time, last);
    assert_eq!(bars.len() as i64, (last - first) / 60 + 1);
    assert!(
        bars.windows(2).all(|w| w[1].time == w[0].time + 60),
        "a gap or an overlap"
    );
    assert_eq!(client.metrics().requests, 2, "2600 bars take two pages");
    assert_eq!(
        bars,
        minute_bars_from_trades(&im.model(), &btc(), first, last)
    );
    assert!(
        bars.iter().any(|b| b.volume_from.is_zero()),
        "0.05 trades/s leaves some empty minutes"
    );

    // Hour bars hold the same trades as their minutes.
    let hour = (last / 3_600 - 2) * 3_600;
    let hours = client
        .bars(Interval::Hour, &btc(), hour, hour)
        .await
        .unwrap();
    let minutes: Vec<_> = bars
        .iter()
        .filter(|b| (hour..hour + 3_600).contains(&b.time))
        .collect();
    assert_eq!(hours.len(), 1);
    assert_eq!(
        hours[0].volume_to,
        minutes.iter().map(|b| b.volume_to).sum::<Decimal>()
    );
    assert_eq!(hours[0].high, minutes.iter().map(|b| b.high).max().unwrap());
    assert_eq!(hours[0].close, minutes.last().unwrap().close);
    let days = client
        .bars(Interval::Day, &btc(), now_s() - 3 * 86_400, now_s())
        .await
        .unwrap();
    assert_eq!(days.len(), 3);
    // Complete days only: today's bar grows while the test runs.
    assert_eq!(
        days[..2],
        im.bars(Interval::Day, &btc(), days[0].time, days[1].time)[..]
    );
    assert!(client
        .bars(Interval::Minute, &btc(), last, last - 60)
        .await
        .unwrap()
        .is_empty());
    im.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_pages_are_retried_in_both_styles() {
    let im = imitation(ImitationConfig::default()).await;
    let client = HistoryClient::new(client_config(&im, None)).unwrap();
    let to = now_s() - 600;
    let expected = client
        .bars(Interval::Minute, &btc(), to - 3_600, to)
        .await
        .unwrap();

    im.rate_limit_next(2, RateLimitStyle::Body);
    assert_eq!(
        client
            .bars(Interval::Minute, &btc(), to - 3_600, to)
            .await
            .unwrap(),
        expected
    );
    assert_eq!(client.metrics().rate_limited_retries, 2);

    im.rate_limit_next(2, RateLimitStyle::Http);
    assert_eq!(
        client
            .bars(Interval::Minute, &btc(), to - 3_600, to)
            .await
            .unwrap(),
        expected
    );
    assert_eq!(client.metrics().rate_limited_retries, 4);

    im.rate_limit_next(100, RateLimitStyle::Body);
    let err = client
        .bars(Interval::Minute, &btc(), to - 3_600, to)
        .await
        .unwrap_err();
    assert!(
        matches!(err, CryptoCompareError::RateLimited { attempts: 4 }),
        "{err:?}"
    );
    assert_eq!(im.counters().rest_rate_limited, 8);
    assert_eq!(client.metrics().errors, 1);
    im.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_are_typed() {
    let im = imitation(ImitationConfig::default()).await;
    let client = HistoryClient::new(client_config(&im, None)).unwrap();
    let to = now_s();

    let err = client
        .bars(
            Interval::Minute,
            &Instrument::new("Nowhere", "BTC", "USD"),
            to - 600,
            to,
        )
        .await
        .unwrap_err();
    assert!(err.is_unknown_pair(), "{err:?}");
    let CryptoCompareError::Api(api) = err else {
        panic!("{err:?}")
    };
    assert_eq!((api.code, api.kind()), (1, ApiErrorKind::UnknownPair));
    assert_eq!(
        api.message,
        "Nowhere market does not exist for this coin pair (BTC-USD)"
    );

    let err = client
        .bars(
            Interval::Hour,
            &Instrument::new("Kraken", "TOOLONGSYMBOL", "USD"),
            to - 7_200,
            to,
        )
        .await
        .unwrap_err();
    let CryptoCompareError::Api(api) = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (api.code, api.kind(), api.param.as_deref()),
        (2, ApiErrorKind::InvalidParameter, Some("fsym"))
    );

    // The imitation's own bodies for what the client never sends.
    for (query, param) in [
        ("tsym=USD", "fsym"),
        ("fsym=BTC&tsym=USD&limit=2001", "limit"),
        ("fsym=BTC&tsym=USD&aggregate=31", "aggregate"),
    ] {
        let body = reqwest::get(format!("{}/data/v2/histominute?{query}", im.rest_url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let HistoAnswer::Error(e) = parse_histo_body(&body).unwrap() else {
            panic!("{body}")
        };
        assert_eq!((e.code, e.param.as_deref()), (2, Some(param)), "{body}");
    }
    let body = reqwest::get(format!(
        "{}/data/v2/histoday?fsym=BTC&tsym=USD&limit=4&aggregate=2",
        im.rest_url()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let HistoAnswer::Bars(bars) = parse_histo_body(&body).unwrap() else {
        panic!("{body}")
    };
    assert_eq!(bars.len(), 5);
    assert!(bars.windows(2).all(|w| w[1].time - w[0].time == 2 * 86_400));
    im.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_of_a_pair_the_source_does_not_list_is_an_unknown_pair() {
    let im = imitation(ImitationConfig::default()).await;
    let client = HistoryClient::new(client_config(&im, None)).unwrap();
    let to = now_s();
    for (n, (instrument, interval)) in [
        (Instrument::new("Coinbase", "FOO", "BAR"), Interval::Minute),
        (Instrument::new("Kraken", "DOGE", "EUR"), Interval::Hour),
        (Instrument::new("Binance", "SOL", "USD"), Interval::Day),
    ]
    .into_iter()
    .enumerate()
    {
        assert!(!im.lists(&instrument));
        let err = client
            .bars(interval, &instrument, to - 3 * 86_400, to)
            .await
            .unwrap_err();
        assert!(err.is_unknown_pair(), "{instrument}: {err:?}");
        assert!(!err.is_transient(), "asking again will not help");
        assert_eq!(err.api_kind(), Some(ApiErrorKind::UnknownPair));
        let CryptoCompareError::Api(api) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            (api.code, api.message.as_str(), api.param.as_deref()),
            (
                1,
                format!(
                    "{} market does not exist for this coin pair ({}-{})",
                    instrument.market, instrument.base, instrument.quote
                )
                .as_str(),
                None
            )
        );
        // Refused at once: one request, not retried.
        let m = client.metrics();
        assert_eq!((m.requests, m.errors), (n as u64 + 1, n as u64 + 1));
    }
    assert_eq!(im.counters().rest_unknown_pairs, 3);
    // A listed pair of the same markets answers bars.
    for listed in [
        Instrument::new("Kraken", "ETH", "EUR"),
        Instrument::new("Binance", "SOL", "USDT"),
    ] {
        assert!(im.lists(&listed));
        let bars = client
            .bars(Interval::Minute, &listed, to - 600, to)
            .await
            .unwrap();
        assert!(bars.len() >= 9, "{listed}: {}", bars.len());
    }
    im.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_source_delays_history_and_a_short_timeout_gives_up() {
    let im = imitation(ImitationConfig::default()).await;
    let client = HistoryClient::new(client_config(&im, None)).unwrap();
    let to = (now_s() / 60 - 2) * 60;
    // No assertion on elapsed time: the imitation counts the answers it
    // delayed, and a client that waits less than the delay gives up.
    let fetch = || async {
        let bars = client
            .bars(Interval::Minute, &btc(), to - 600, to)
            .await
            .unwrap();
        assert_eq!(bars.len(), 11);
    };
    fetch().await;
    assert_eq!(im.counters().rest_delayed, 0);

    im.set_rest_delay(std::time::Duration::from_millis(600));
    fetch().await;
    assert_eq!(im.counters().rest_delayed, 1);

    // A client that waits less than the source takes gives up, and the
    // failure is one to retry later (unlike an unknown pair).
    let impatient = HistoryClient::new(candela_actors::cryptocompare::CryptoCompareConfig {
        request_timeout_ms: 200,
        ..client_config(&im, None)
    })
    .unwrap();
    let err = impatient
        .bars(Interval::Minute, &btc(), to - 600, to)
        .await
        .unwrap_err();
    assert!(err.is_transient() && !err.is_unknown_pair(), "{err:?}");

    // Switched off over HTTP, as from another process.
    let r = reqwest::Client::new()
        .post(format!("{}/_imitation/rest_delay?ms=0", im.rest_url()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let delayed = im.counters().rest_delayed;
    fetch().await;
    assert_eq!(im.counters().rest_delayed, delayed, "still delayed");
    // ... and the impatient client gets its answer again.
    impatient
        .bars(Interval::Minute, &btc(), to - 600, to)
        .await
        .unwrap();
    im.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_refused() {
    let im = imitation(ImitationConfig {
        api_key: Some(KEY.into()),
        ..ImitationConfig::default()
    })
    .await;
    let to = now_s();
    for key in [Some("wrong-key"), None] {
        let client = HistoryClient::new(client_config(&im, key)).unwrap();
        let err = client
            .bars(Interval::Minute, &btc(), to - 600, to)
            .await
            .unwrap_err();
        assert!(
            matches!(err, CryptoCompareError::Unauthorized(_)),
            "{err:?}"
        );
    }
    // The key is also accepted as `api_key` (the documented alternative).
    let body = reqwest::get(format!(
        "{}/data/v2/histominute?fsym=BTC&tsym=USD&api_key={KEY}",
        im.rest_url()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(matches!(
        parse_histo_body(&body).unwrap(),
        HistoAnswer::Bars(_)
    ));

    let (live, rx) = LiveClient::spawn(client_config(&im, Some("wrong-key")), [btc()]).unwrap();
    let ticks = Collector::start(rx);
    eventually("two refusals", 10, || live.metrics().unauthorized >= 2).await;
    let m = live.metrics();
    assert_eq!((m.connects, m.trades), (0, 0));
    live.shutdown().await;
    assert!(ticks.finish().await.is_empty());

    // Once the key is right, the same kind of client gets in.
    im.set_api_key(Some("wrong-key".into()));
    let (live, rx) = LiveClient::spawn(client_config(&im, Some("wrong-key")), [btc()]).unwrap();
    let ticks = Collector::start(rx);
    eventually("ticks with the accepted key", 10, || ticks.len() >= 20).await;
    live.shutdown().await;
    im.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_yields_exactly_the_distinct_trades_through_replays_drops_malformed_and_late_frames() {
    let im = imitation(ImitationConfig {
        trades_per_sec: 4.0,
        heartbeat_interval_ms: 200,
        api_key: Some(KEY.into()),
        ..ImitationConfig::default()
    })
    .await;
    let instruments = [
        btc(),
        Instrument::new("Kraken", "ETH", "USD"),
        Instrument::new("Binance", "SOL", "USDT"),
    ];
    let (live, rx) = LiveClient::spawn(client_config(&im, Some(KEY)), instruments.clone()).unwrap();
    let ticks = Collector::start(rx);
    eventually("the replays of every channel", 10, || {
        instruments.iter().all(|i| ticks.count(i) >= 20)
    })
    .await;

    im.replay_recent(10);
    eventually("replayed trades dropped", 10, || {
        live.metrics().duplicates_dropped >= 30
    })
    .await;

    // Two of each kind: invalid JSON, unknown type, no price, price 0, an
    // instrument not subscribed. None of them becomes a tick.
    im.send_malformed(10);
    eventually("malformed frames counted", 10, || {
        let m = live.metrics();
        m.malformed >= 4 && m.unknown >= 2 && m.invalid >= 2 && m.unsubscribed >= 2
    })
    .await;

    im.send_late(9);
    eventually("late trades sent", 10, || im.counters().trades_late >= 9).await;

    let before = live.metrics();
    im.drop_connections();
    eventually("a reconnect", 10, || {
        let m = live.metrics();
        m.connects >= 2 && m.connected && m.duplicates_dropped >= before.duplicates_dropped + 20
    })
    .await;
    let n = ticks.len();
    eventually("more ticks after the reconnect", 10, || {
        ticks.len() >= n + 8
    })
    .await;
    assert!(live.metrics().heartbeats >= 1);

    let m = live.metrics();
    live.shutdown().await;
    let ticks = ticks.finish().await;
    let out_of_order = assert_exact(&im.model(), &instruments, &ticks);
    assert!(
        out_of_order >= 1,
        "late trades arrive out of order and are kept"
    );
    assert_eq!(
        m.trades,
        ticks.len() as u64 + m.duplicates_dropped + m.invalid + m.unsubscribed
    );
    assert!(m.reconnects >= 1);
    im.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_replaced() {
    let im = imitation(ImitationConfig {
        trades_per_sec: 4.0,
        heartbeat_interval_ms: 200,
        ..ImitationConfig::default()
    })
    .await;
    let instruments = [btc()];
    let config = client_config(&im, None);
    assert_eq!(config.stale_after_secs, 2);
    let (live, rx) = LiveClient::spawn(config, instruments.clone()).unwrap();
    let ticks = Collector::start(rx);
    eventually("first ticks", 10, || {
        ticks.len() >= 20 && live.metrics().heartbeats >= 1
    })
    .await;

    im.silence_connections();
    eventually("a stale reconnect", 10, || {
        live.metrics().stale_reconnects >= 1 && live.metrics().connects >= 2
    })
    .await;
    let n = ticks.len();
    eventually("ticks on the new connection", 10, || ticks.len() >= n + 4).await;

    // Heartbeats alone keep a quiet connection alive; without them it is
    // replaced too.
    im.set_heartbeats(false);
    live.unsubscribe(btc());
    eventually("another stale reconnect", 10, || {
        live.metrics().stale_reconnects >= 2
    })
    .await;
    im.set_heartbeats(true);
    live.subscribe(btc());
    let n = ticks.len();
    eventually("ticks after resubscribing", 10, || ticks.len() >= n + 4).await;

    live.shutdown().await;
    assert_exact(&im.model(), &instruments, &ticks.finish().await);
    im.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_change_live_and_bad_channels_and_socket_refusals_are_survived() {
    let im = imitation(ImitationConfig {
        trades_per_sec: 5.0,
        ..ImitationConfig::default()
    })
    .await;
    im.refuse_next_sockets(1);
    let eth = Instrument::new("Kraken", "ETH", "USD");
    let (live, rx) = LiveClient::spawn(client_config(&im, None), [btc()]).unwrap();
    let ticks = Collector::start(rx);
    eventually("a connection after the 429", 10, || {
        live.metrics().connected
    })
    .await;
    assert_eq!(live.metrics().too_many, 1);

    let nowhere = Instrument::new("Nowhere", "BTC", "USD");
    let unlisted = Instrument::new("Coinbase", "FOO", "BAR");
    live.subscribe(nowhere.clone());
    live.subscribe(unlisted.clone());
    live.subscribe(eth.clone());
    eventually("eth ticks and two INVALID_SUBs", 10, || {
        ticks.count(&eth) >= 20 && live.metrics().server_errors >= 2
    })
    .await;
    assert_eq!(im.counters().subscriptions_refused, 2);
    assert_eq!((ticks.count(&nowhere), ticks.count(&unlisted)), (0, 0));

    live.unsubscribe(btc());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let btc_count = ticks.count(&btc());
    let eth_count = ticks.count(&eth);
    eventually("more eth ticks", 10, || ticks.count(&eth) >= eth_count + 5).await;
    assert_eq!(
        ticks.count(&btc()),
        btc_count,
        "no btc ticks after unsubscribing"
    );

    live.shutdown().await;
    let all = ticks.finish().await;
    let by_instrument: BTreeMap<_, usize> = all.iter().fold(BTreeMap::new(), |mut m, t| {
        *m.entry(t.instrument.clone()).or_default() += 1;
        m
    });
    assert_eq!(by_instrument.len(), 2, "{by_instrument:?}");
    assert_exact(&im.model(), &[btc(), eth], &all);
    im.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_subscription_to_an_unlisted_pair_is_an_invalid_sub_and_yields_no_trades() {
    let im = imitation(ImitationConfig {
        trades_per_sec: 20.0,
        ..ImitationConfig::default()
    })
    .await;
    let unlisted = Instrument::new("Coinbase", "FOO", "BAR");
    let (live, rx) =
        LiveClient::spawn(client_config(&im, None), [btc(), unlisted.clone()]).unwrap();
    let ticks = Collector::start(rx);
    eventually("btc ticks and the INVALID_SUB notice", 10, || {
        ticks.count(&btc()) >= 40 && live.metrics().server_errors >= 1
    })
    .await;
    let m = live.metrics();
    assert_eq!(m.server_errors, 1, "one 500 INVALID_SUB notice: {m:?}");
    assert_eq!((m.unauthorized, m.too_many), (0, 0));
    let c = im.counters();
    assert_eq!((c.subscriptions, c.subscriptions_refused), (1, 1));

    // Resubscribed after a reconnect, refused again; still no trades.
    im.drop_connections();
    eventually("a reconnect and a second notice", 10, || {
        let m = live.metrics();
        m.connects >= 2 && m.server_errors >= 2
    })
    .await;
    assert_eq!(
        live.metrics().unsubscribed,
        0,
        "no trade of the unlisted pair"
    );
    live.shutdown().await;
    let all = ticks.finish().await;
    assert!(all.iter().all(|t| t.instrument == btc()), "only btc trades");
    assert_exact(&im.model(), &[btc()], &all);
    im.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_control_surface_flips_the_same_switches() {
    let im = imitation(ImitationConfig {
        trades_per_sec: 5.0,
        ..ImitationConfig::default()
    })
    .await;
    let control = |path: &str| format!("{}/_imitation/{path}", im.rest_url());
    let http = reqwest::Client::new();
    let post = |path: String| http.post(path).send();

    assert!(post(control("rate_limit?n=1&style=http"))
        .await
        .unwrap()
        .status()
        .is_success());
    let client = HistoryClient::new(client_config(&im, None)).unwrap();
    client
        .bars(Interval::Minute, &btc(), now_s() - 600, now_s())
        .await
        .unwrap();
    assert_eq!(client.metrics().rate_limited_retries, 1);

    let (live, rx) = LiveClient::spawn(client_config(&im, None), [btc()]).unwrap();
    let ticks = Collector::start(rx);
    eventually("ticks", 10, || ticks.len() >= 20).await;
    post(control("malformed?n=3")).await.unwrap();
    post(control("replay?n=5")).await.unwrap();
    eventually("malformed and replayed frames", 10, || {
        let m = live.metrics();
        m.malformed >= 2 && m.unknown >= 1 && m.duplicates_dropped >= 5
    })
    .await;
    post(control("drop")).await.unwrap();
    eventually("a reconnect", 10, || live.metrics().connects >= 2).await;
    let body = http
        .get(control("counters"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counters: candela_actors::imitation::ImitationCounters =
        serde_json::from_str(&body).unwrap();
    assert!(counters.trades_sent >= 20 && counters.malformed_sent == 3);
    assert_eq!(
        (counters.rest_rate_limited, counters.connections_dropped),
        (1, 1)
    );

    http.post(control("api_key"))
        .body("now-needed")
        .send()
        .await
        .unwrap();
    post(control("drop")).await.unwrap();
    eventually("a refusal", 10, || live.metrics().unauthorized >= 1).await;
    live.shutdown().await;
    assert_exact(&im.model(), &[btc()], &ticks.finish().await);
    im.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_requests_keep_to_the_clients_own_budget() {
    let im = imitation(ImitationConfig::default()).await;
    // Two requests a minute (one every 30 s after a burst of two).
    let client = HistoryClient::new(candela_actors::cryptocompare::CryptoCompareConfig {
        rest_per_second: 0,
        rest_per_minute: 2,
        ..client_config(&im, None)
    })
    .unwrap();
    let to = (now_s() / 60 - 2) * 60;
    let clone = client.clone();
    client.page(Interval::Minute, &btc(), to, 10).await.unwrap();
    clone.page(Interval::Minute, &btc(), to, 10).await.unwrap();
    // The third waits its turn (~30 s): not sent within 2 s, by either clone.
    let third = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        client.page(Interval::Minute, &btc(), to, 10),
    )
    .await;
    assert!(third.is_err(), "the third request went out at once");
    assert_eq!(im.counters().rest_requests, 2);
}
