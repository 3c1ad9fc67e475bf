//! Runs the CryptoCompare imitation on its own, for demos and for other
//! processes (fault switches under `/_imitation/...`).
//!
//! `cargo run -p candela-actors --example cryptocompare_imitation -- 127.0.0.1:8090 [firehose]`

use candela_actors::imitation::{Imitation, ImitationConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8090".into());
    let config = match args.next().as_deref() {
        Some("firehose") => ImitationConfig::firehose(),
        _ => ImitationConfig::default(),
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let imitation = Imitation::serve(config, listener).await?;
    println!(
        "rest {}  ws {}  control {}/_imitation/counters",
        imitation.rest_url(),
        imitation.ws_url(),
        imitation.rest_url()
    );
    // Serves until the process is stopped.
    std::future::pending::<()>().await;
    drop(imitation);
    Ok(())
}
