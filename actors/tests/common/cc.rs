//! Helpers shared by the CryptoCompare integration tests: an imitation on
//! 127.0.0.1:0, a client configuration with short timings, polling with a
//! deadline, and the exactness check of live ticks against the imitation's
//! pure trade function.
#![allow(dead_code, missing_docs)]

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use candela_actors::cryptocompare::{ApiKey, CryptoCompareConfig};
use candela_actors::domain::{Instrument, Tick};
use candela_actors::imitation::{Imitation, ImitationConfig, ImitationHandle, TradeModel};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub async fn imitation(config: ImitationConfig) -> ImitationHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Imitation::serve(config, listener).await.unwrap()
}

/// Client settings for tests: fast retries and reconnects.
pub fn client_config(im: &ImitationHandle, key: Option<&str>) -> CryptoCompareConfig {
    CryptoCompareConfig {
        api_key: key.map(ApiKey::new),
        stale_after_secs: 2,
        reconnect_min_ms: 50,
        reconnect_max_ms: 400,
        rest_retries: 3,
        rest_backoff_ms: 10,
        rest_backoff_max_ms: 50,
        connect_timeout_ms: 3_000,
        request_timeout_ms: 20_000,
        ..CryptoCompareConfig::for_urls(im.rest_url(), im.ws_url())
    }
}

/// Polls `condition` every 20 ms until it holds; panics after `secs`.
pub async fn eventually(what: &str, secs: u64, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Collects ticks from a live client's receiver in the background.
pub struct Collector {
    pub ticks: Arc<Mutex<Vec<Tick>>>,
    task: JoinHandle<()>,
}

impl Collector {
    pub fn start(mut rx: mpsc::Receiver<Tick>) -> Self {
        let ticks = Arc::new(Mutex::new(Vec::new()));
        let sink = ticks.clone();
        let task = tokio::spawn(async move {
            while let Some(t) = rx.recv().await {
                sink.lock().unwrap().push(t);
            }
        });
        Self { ticks, task }
    }

    pub fn count(&self, instrument: &Instrument) -> usize {
        self.ticks
            .lock()
            .unwrap()
            .iter()
            .filter(|t| &t.instrument == instrument)
            .count()
    }

    pub fn len(&self) -> usize {
        self.ticks.lock().unwrap().len()
    }

    /// Waits for the channel to close (after the client's shutdown).
    pub async fn finish(self) -> Vec<Tick> {
        self.task.await.unwrap();
        Arc::try_unwrap(self.ticks).unwrap().into_inner().unwrap()
    }
}

/// Asserts that, per instrument, `ticks` are distinct and are exactly the
/// model's trades between the earliest and the latest tick received; returns
/// how many ticks arrived out of time order.
pub fn assert_exact(model: &TradeModel, instruments: &[Instrument], ticks: &[Tick]) -> usize {
    let mut out_of_order = 0;
    for instrument in instruments {
        let mine: Vec<&Tick> = ticks
            .iter()
            .filter(|t| &t.instrument == instrument)
            .collect();
        assert!(!mine.is_empty(), "no ticks for {instrument}");
        let ids: HashSet<&str> = mine.iter().map(|t| t.trade_id.as_str()).collect();
        assert_eq!(ids.len(), mine.len(), "duplicate ticks for {instrument}");
        out_of_order += mine
            .windows(2)
            .filter(|w| w[1].trade_time_ns < w[0].trade_time_ns)
            .count();
        let from = mine.iter().map(|t| t.trade_time_ns).min().unwrap();
        let to = mine.iter().map(|t| t.trade_time_ns).max().unwrap();
        let expected: BTreeMap<String, Tick> = model
            .trades_between(instrument, from, to)
            .iter()
            .map(|t| (t.id.to_string(), t.to_tick(instrument)))
            .collect();
        let got: BTreeMap<String, Tick> = mine
            .iter()
            .map(|t| {
                (
                    t.trade_id.clone(),
                    Tick {
                        received_ns: 0,
                        ..(*t).clone()
                    },
                )
            })
            .collect();
        let missing: Vec<&String> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
        let extra: Vec<&String> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{instrument}: missing {missing:?}, unexpected {extra:?}"
        );
        assert_eq!(
            got, expected,
            "{instrument}: ticks differ from the model's trades"
        );
    }
    out_of_order
}
