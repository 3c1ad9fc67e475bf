//! Throughput of the live client fed by the imitation's firehose (three
//! instruments at 60,000 trades/s each). Ignored by default: run it in
//! release on an otherwise idle machine,
//! `cargo test --release -p candela-actors --test cryptocompare_firehose -- --ignored --nocapture`.
//! It prints the rate and asserts none: speed is shown by figures, not by a
//! timed test (it delivered over 100,000 ticks/s when last measured).

mod common;

use std::time::{Duration, Instant};

use candela_actors::cryptocompare::LiveClient;
use candela_actors::domain::Instrument;
use candela_actors::imitation::ImitationConfig;
use common::{client_config, imitation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run in release on an idle machine"]
async fn firehose_throughput() {
    let im = imitation(ImitationConfig::firehose()).await;
    let instruments = [
        Instrument::new("Coinbase", "BTC", "USD"),
        Instrument::new("Kraken", "ETH", "USD"),
        Instrument::new("Binance", "SOL", "USDT"),
    ];
    let (live, mut rx) = LiveClient::spawn(client_config(&im, None), instruments).unwrap();
    // Warm up, then measure.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_secs(1) {
        rx.recv().await.unwrap();
    }
    let secs = 5.0;
    let start = Instant::now();
    let before = live.metrics();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        if tokio::time::timeout(Duration::from_secs(1), rx.recv())
            .await
            .is_ok()
        {
            n += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = live.metrics();
    let rate = n as f64 / elapsed;
    println!(
        "firehose: {rate:.0} ticks/s delivered ({} frames/s read, {} duplicates, {} reconnects)",
        ((after.frames - before.frames) as f64 / elapsed) as u64,
        after.duplicates_dropped,
        after.reconnects
    );
    live.shutdown().await;
    im.shutdown().await;
}
