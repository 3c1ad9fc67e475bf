//! The cluster listener: accepts connections on `cluster.listen` (or the
//! socket handed over as `cluster`, [`crate::sockets`]) and hands each to
//! the node server; with TLS it first runs the handshake in a task of its
//! own, with a deadline.
//!
//! ractor_cluster's own listener runs the TLS handshake inside its accept
//! loop, without a deadline: one connection that sends nothing would stop
//! every other peer from connecting; and it binds its port itself (a
//! handed-over socket could not be used). So the node server listens only
//! on an unused loopback port (with TLS: still TLS), and this acceptor
//! serves the configured address, on plain TCP as on TLS.
//!
//! What must never happen: a silent or slow client holding up another
//! connection; more than [`MAX_HANDSHAKES`] handshakes at once (beyond,
//! connections are closed at once); a stream handed over unencrypted when
//! the transport is TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use ractor_cluster::{NetworkStream, NodeServerMessage};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most TLS handshakes in progress at once.
pub const MAX_HANDSHAKES: usize = 64;

/// Binds `listen` (or takes the socket handed over as `cluster`,
/// [`crate::sockets`]) and serves it until the returned task is aborted.
pub async fn start(
    listen: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    server: ActorRef<NodeServerMessage>,
    handshake_timeout: Duration,
) -> std::io::Result<JoinHandle<()>> {
    let listener = match crate::sockets::take("cluster", listen) {
        Some(handed) => TcpListener::from_std(handed)?,
        None => TcpListener::bind(listen).await?,
    };
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    Ok(tokio::spawn(async move {
        loop {
            let (stream, peer_addr) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    // (e.g. too many open files): the next accept may work.
                    tracing::warn!(error = %err, "cluster listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let Ok(local_addr) = stream.local_addr() else {
                continue;
            };
            let Some(acceptor) = &tls else {
                // Plain TCP: nothing to wait for.
                let _ = server.cast(NodeServerMessage::ConnectionOpened {
                    stream: Box::new(NetworkStream::Raw {
                        peer_addr,
                        local_addr,
                        stream,
                    }),
                    is_server: true,
                });
                continue;
            };
            let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
                tracing::warn!(%peer_addr, max = MAX_HANDSHAKES, "cluster listener: too many TLS handshakes at once; connection closed");
                continue;
            };
            let (acceptor, server) = (acceptor.clone(), server.clone());
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = server.cast(NodeServerMessage::ConnectionOpened {
                            stream: Box::new(NetworkStream::TlsServer {
                                peer_addr,
                                local_addr,
                                stream,
                            }),
                            is_server: true,
                        });
                    }
                    Ok(Err(err)) => {
                        tracing::warn!(%peer_addr, error = %err, "cluster listener: TLS handshake refused")
                    }
                    Err(_) => tracing::warn!(
                        %peer_addr,
                        secs = handshake_timeout.as_secs_f64(),
                        "cluster listener: no TLS handshake in time; connection closed"
                    ),
                }
            });
        }
    }))
}
