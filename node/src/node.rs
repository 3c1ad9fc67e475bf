//! `candela node`: loads the configuration, starts the cluster layer and
//! waits for SIGINT/SIGTERM (or for the cluster layer to fail).

use std::path::Path;

use anyhow::Context;
use candela_node::cluster;
use candela_node::config::Config;
use tracing_subscriber::EnvFilter;

/// Runs the node until a signal; an error if it cannot start or fails.
pub fn run(path: &Path) -> anyhow::Result<()> {
    init_tracing();
    let config = Config::load(path).with_context(|| format!("loading {}", path.display()))?;
    let cookie = config.cluster.cookie(|var| std::env::var(var).ok())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(config, cookie))
}

async fn serve(config: Config, cookie: String) -> anyhow::Result<()> {
    let mut cluster = cluster::start(&config, cookie).await?;
    if let Some(addr) = config.cluster.status_listen {
        cluster::status::serve(addr, config.node.name.clone())
            .await
            .with_context(|| format!("cluster.status_listen: cannot listen on {addr}"))?;
    }
    tracing::info!(node = %config.node.name, "node running");
    let outcome = tokio::select! {
        signal = shutdown_signal() => {
            tracing::info!(signal = signal?, "shutting down");
            Ok(())
        }
        why = cluster.stopped() => Err(anyhow::anyhow!(why)),
    };
    cluster.shutdown().await;
    outcome
}

async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
