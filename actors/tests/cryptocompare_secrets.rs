//! The API key never appears in any log output: every tracing event (and
//! every `log` record of the dependencies) at TRACE level is captured while
//! history and live calls run with a key, succeeding and failing, and the
//! capture is searched for the key.
//!
//! A test binary of its own: it installs the global subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use candela_actors::cryptocompare::{HistoryClient, Interval, LiveClient};
use candela_actors::domain::Instrument;
use candela_actors::imitation::{ImitationConfig, RateLimitStyle};
use common::{client_config, eventually, imitation, Collector};
use tracing_subscriber::util::SubscriberInitExt;

const RIGHT: &str = "right-secret-4d9c2e7a";
const WRONG: &str = "wrong-secret-81fb30c5";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_never_reaches_the_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish()
        .init(); // also routes `log` records into tracing

    let im = imitation(ImitationConfig {
        api_key: Some(RIGHT.into()),
        heartbeat_interval_ms: 200,
        ..ImitationConfig::default()
    })
    .await;
    let btc = Instrument::new("Coinbase", "BTC", "USD");
    let to = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;

    let good = client_config(&im, Some(RIGHT));
    tracing::info!(config = ?good, "client configuration");
    let history = HistoryClient::new(good.clone()).unwrap();
    history
        .bars(Interval::Minute, &btc, to - 3_000 * 60, to)
        .await
        .unwrap();
    im.rate_limit_next(2, RateLimitStyle::Http);
    history
        .bars(Interval::Hour, &btc, to - 86_400, to)
        .await
        .unwrap();
    im.rate_limit_next(10, RateLimitStyle::Body);
    let e = history
        .bars(Interval::Day, &btc, to - 86_400, to)
        .await
        .unwrap_err();
    tracing::error!(error = %e, debug = ?e, "expected failure");
    let e = history
        .bars(
            Interval::Day,
            &Instrument::new("Nowhere", "BTC", "USD"),
            to - 86_400,
            to,
        )
        .await
        .unwrap_err();
    tracing::error!(error = %e, debug = ?e, "expected failure");

    let (live, rx) = LiveClient::spawn(good, [btc.clone()]).unwrap();
    let ticks = Collector::start(rx);
    eventually("ticks", 10, || {
        ticks.len() >= 20 && live.metrics().heartbeats >= 1
    })
    .await;
    im.send_malformed(3);
    eventually("malformed frames", 10, || live.metrics().malformed >= 2).await;
    im.drop_connections();
    eventually("a reconnect", 10, || live.metrics().connects >= 2).await;
    live.shutdown().await;

    let bad = client_config(&im, Some(WRONG));
    let e = HistoryClient::new(bad.clone())
        .unwrap()
        .bars(Interval::Minute, &btc, to - 600, to)
        .await
        .unwrap_err();
    tracing::error!(error = %e, debug = ?e, "expected failure");
    let (live, _rx) = LiveClient::spawn(bad, [btc]).unwrap();
    eventually("a refusal", 10, || live.metrics().unauthorized >= 1).await;
    live.shutdown().await;
    im.shutdown().await;

    let text = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(text.contains("history request"), "the capture works");
    assert!(
        text.contains("malformed frame") && text.contains("TRACE"),
        "all levels are captured"
    );
    assert!(
        text.contains("tungstenite"),
        "the dependencies' `log` records are captured"
    );
    for secret in [RIGHT, WRONG] {
        assert!(
            !text.contains(secret),
            "the key {secret} leaked into the logs"
        );
    }
}
