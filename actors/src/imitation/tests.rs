//! The imitation over its own sockets: pairs it does not list are refused
//! as CryptoCompare refuses them, and the REST delay switch.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::*;

async fn serve(config: ImitationConfig) -> ImitationHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Imitation::serve(config, listener).await.unwrap()
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_of_an_unlisted_pair_is_cryptocompares_refusal() {
    let im = serve(ImitationConfig::default()).await;
    let rest = im.rest_url();
    for path in ["histominute", "histohour", "histoday"] {
        let (status, body) = get(&format!(
            "{rest}/data/v2/{path}?fsym=FOO&tsym=BAR&e=Coinbase&limit=3"
        ))
        .await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            body,
            r#"{"Response":"Error","Message":"Coinbase market does not exist for this coin pair (FOO-BAR)","HasWarning":false,"Type":1,"RateLimit":{},"Data":{},"Cooldown":0}"#,
            "{path}"
        );
    }
    // A market that lists other pairs, a market that does not exist, and
    // CCCAGG (no `e=`) answer alike, naming the market as asked.
    for (query, market) in [
        ("fsym=DOGE&tsym=EUR&e=Kraken", "Kraken"),
        ("fsym=BTC&tsym=USD&e=Nowhere", "Nowhere"),
        ("fsym=FOO&tsym=USD", "CCCAGG"),
        ("fsym=USD&tsym=BTC&e=coinbase", "coinbase"),
    ] {
        let (status, body) = get(&format!("{rest}/data/v2/histominute?{query}")).await;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let (fsym, tsym) = {
            let q: HashMap<&str, &str> = query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .collect();
            (q["fsym"], q["tsym"])
        };
        assert_eq!(
            v["Message"],
            format!("{market} market does not exist for this coin pair ({fsym}-{tsym})"),
            "{body}"
        );
        assert_eq!(
            (v["Response"].as_str(), v["Type"].as_i64()),
            (Some("Error"), Some(1))
        );
    }
    let c = im.counters();
    assert_eq!(
        (c.rest_unknown_pairs, c.rest_errors, c.rest_requests),
        (7, 7, 7)
    );

    // Listed pairs answer bars, whatever the case of the request.
    for query in [
        "fsym=BTC&tsym=USD&e=Coinbase",
        "fsym=btc&tsym=usd&e=coinbase",
        "fsym=SOL&tsym=USDT&e=Binance",
        "fsym=BTC&tsym=USD",
    ] {
        let (status, body) = get(&format!("{rest}/data/v2/histominute?{query}&limit=2")).await;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["Response"], "Success", "{query}: {body}");
        assert_eq!(v["Data"]["Data"].as_array().unwrap().len(), 3, "{query}");
    }
    // The same bars for both spellings: one instrument. (Closed hours only:
    // the hour in progress may gain a trade between the two requests.)
    let closed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3_600
        * 3_600
        - 7_200;
    let a = get(&format!(
        "{rest}/data/v2/histohour?fsym=BTC&tsym=USD&e=Coinbase&toTs={closed}"
    ))
    .await;
    let b = get(&format!(
        "{rest}/data/v2/histohour?fsym=btc&tsym=usd&e=COINBASE&toTs={closed}"
    ))
    .await;
    assert_eq!(a, b);
    assert_eq!(im.counters().rest_unknown_pairs, 7);
    im.shutdown().await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame, parsed; None after `within`.
async fn next_frame(ws: &mut Ws, within: Duration) -> Option<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("connection ended: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_to_an_unlisted_pair_is_invalid_and_streams_nothing() {
    let im = serve(ImitationConfig {
        trades_per_sec: 50.0,
        replay_count: 5,
        ..ImitationConfig::default()
    })
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(im.ws_url()).await.unwrap();
    let welcome = next_frame(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(welcome["TYPE"], "20");
    let sub = serde_json::json!({
        "action": "SubAdd",
        "subs": ["0~Coinbase~FOO~BAR", "0~Kraken~ETH~EUR", "0~Nowhere~BTC~USD"],
    });
    ws.send(Message::Text(sub.to_string().into()))
        .await
        .unwrap();

    let mut raw = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(1_500);
    while Instant::now() < deadline {
        if let Some(f) = next_frame(&mut ws, Duration::from_millis(100)).await {
            raw.push(f);
        }
    }
    let notices: Vec<&serde_json::Value> = raw.iter().filter(|f| f["TYPE"] == "500").collect();
    assert_eq!(notices.len(), 2, "{raw:?}");
    assert_eq!(
        notices[0],
        &serde_json::json!({
            "TYPE": "500", "MESSAGE": "INVALID_SUB", "PARAMETER": "0~Coinbase~FOO~BAR",
            "INFO": "We have not integrated FOO-BAR trades on Coinbase or we have not currently mapped it.",
        })
    );
    assert_eq!(
        (
            notices[1]["MESSAGE"].as_str(),
            notices[1]["PARAMETER"].as_str()
        ),
        (Some("INVALID_SUB"), Some("0~Nowhere~BTC~USD"))
    );
    // The listed channel is subscribed and streams; the others stream nothing.
    let subscribed: Vec<&str> = raw
        .iter()
        .filter(|f| f["TYPE"] == "16")
        .filter_map(|f| f["SUB"].as_str())
        .collect();
    assert_eq!(subscribed, ["0~Kraken~ETH~EUR"]);
    assert!(raw.iter().any(|f| f["TYPE"] == "3"), "LOADCOMPLETE");
    let trades: Vec<&serde_json::Value> = raw.iter().filter(|f| f["TYPE"] == "0").collect();
    assert!(trades.len() > 5, "{} trades", trades.len());
    assert!(
        trades.iter().all(
            |t| (t["M"].as_str(), t["FSYM"].as_str(), t["TSYM"].as_str())
                == (Some("Kraken"), Some("ETH"), Some("EUR"))
        ),
        "only the listed pair streams"
    );
    let c = im.counters();
    assert_eq!((c.subscriptions, c.subscriptions_refused), (1, 2));
    im.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_delay_switch_delays_every_answer() {
    let im = serve(ImitationConfig::default()).await;
    let url = format!(
        "{}/data/v2/histominute?fsym=BTC&tsym=USD&e=Coinbase&limit=1",
        im.rest_url()
    );
    let unlisted = format!(
        "{}/data/v2/histominute?fsym=FOO&tsym=USD&e=Coinbase",
        im.rest_url()
    );
    // No measured durations: a delay far longer than a client's patience
    // makes the client give up, and the imitation counts what it delayed.
    let within = |url: String, secs: u64| async move {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(secs))
            .build()
            .unwrap()
            .get(url)
            .send()
            .await
    };
    let r = within(url.clone(), 30).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(im.counters().rest_delayed, 0);

    im.set_rest_delay(Duration::from_secs(600));
    assert_eq!(im.rest_delay(), Duration::from_secs(600));
    for u in [url.clone(), unlisted.clone()] {
        let err = within(u, 1).await.unwrap_err();
        assert!(err.is_timeout(), "{err}");
    }
    // (Counted on arrival, before the wait.)
    assert_eq!(im.counters().rest_delayed, 2);

    // Over HTTP, as from another process.
    let client = reqwest::Client::new();
    let control = |q: &str| format!("{}/_imitation/rest_delay?{q}", im.rest_url());
    let r = client.post(control("ms=0")).send().await.unwrap();
    assert!(r.status().is_success());
    assert_eq!(im.rest_delay(), Duration::ZERO);
    let r = within(url.clone(), 30).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(im.counters().rest_delayed, 2);
    let r = client.post(control("ms=600000")).send().await.unwrap();
    assert!(r.status().is_success());
    assert!(within(url.clone(), 1).await.unwrap_err().is_timeout());
    assert_eq!(im.counters().rest_delayed, 3);
    let r = client.post(control("ms=soon")).send().await.unwrap();
    assert!(r.status().is_client_error());
    im.shutdown().await;

    // From the configuration, from the start.
    let im = serve(ImitationConfig {
        rest_delay_ms: 600_000,
        ..ImitationConfig::default()
    })
    .await;
    assert_eq!(im.rest_delay(), Duration::from_secs(600));
    let url = format!(
        "{}/data/v2/histominute?fsym=BTC&tsym=USD&e=Coinbase&limit=1",
        im.rest_url()
    );
    assert!(within(url, 1).await.unwrap_err().is_timeout());
    assert_eq!(im.counters().rest_delayed, 1);
    im.shutdown().await;
}

#[tokio::test]
async fn a_bad_listing_is_refused_at_start() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = Imitation::serve(
        ImitationConfig {
            pairs: vec!["Coinbase:BTC-USD".into(), "Coinbase BTC/USD".into()],
            ..ImitationConfig::default()
        },
        listener,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("pairs[1]"), "{err}");
}

#[test]
fn the_configuration_answers_what_it_lists() {
    let config = ImitationConfig::default();
    config.validate().unwrap();
    let all = config.instruments().unwrap();
    assert_eq!(all.len(), DEFAULT_PAIRS.len());
    assert!(config
        .lists(&Instrument::new("kraken", "eth", "eur"))
        .unwrap());
    assert!(!config
        .lists(&Instrument::new("Coinbase", "FOO", "BAR"))
        .unwrap());
    let firehose = ImitationConfig::firehose();
    assert_eq!(firehose.pairs, config.pairs);
}
