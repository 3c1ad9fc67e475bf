//! Listening sockets handed over by the process that starts the node:
//! systemd's socket activation (`LISTEN_FDS` sockets from file descriptor
//! 3 on, named by `LISTEN_FDNAMES`), as a `.socket` unit or a test harness
//! passes them. A listener named here is used as it is instead of binding
//! its configured address: `cluster` (the cluster listener), `status` (the
//! cluster status endpoint), `api`, `ops`. A socket no listener of this
//! node took (say `api` on a node without the API role) is closed once the
//! node's listeners are up, with a warning ([`close_leftovers`]): clients
//! are refused rather than left waiting on a socket nobody accepts on.
//!
//! Why: the port is bound once, by whoever holds it, and never released
//! between choosing it and listening on it (a test's "bind port 0, then
//! release it for the node" races every other process on the machine; a
//! unit can hold a privileged port for an unprivileged node).
//!
//! What must never happen: a socket used twice or for another listener
//! than its name says, an unnamed or unknown socket silently ignored (the
//! node refuses to start), or the variables left for a child process to
//! take the same sockets.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

/// The names a handed-over socket may have.
pub const NAMES: [&str; 4] = ["cluster", "status", "api", "ops"];

/// Why the handed-over sockets cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SocketsError {
    /// `LISTEN_FDNAMES` does not name every socket, or names one twice.
    #[error(
        "LISTEN_FDNAMES `{names}` must name each of the {count} sockets once, among {NAMES:?}"
    )]
    Names {
        /// The variable's value.
        names: String,
        /// `LISTEN_FDS`.
        count: usize,
    },
    /// A descriptor is not a listening TCP socket.
    #[error("handed-over socket `{name}`: {source}")]
    NotTcp {
        /// Its name.
        name: String,
        /// Why.
        source: std::io::Error,
    },
}

static HANDED: OnceLock<Mutex<HashMap<String, TcpListener>>> = OnceLock::new();

/// Takes the sockets the environment hands over (and removes the
/// variables). Call once, first thing in `main`, while the process has one
/// thread. Returns how many.
pub fn inherit() -> Result<usize, SocketsError> {
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let mut fds = listenfd::ListenFd::from_env();
    // `from_env` removed LISTEN_FDS and LISTEN_PID; the names go too
    // (single-threaded here, see above).
    std::env::remove_var("LISTEN_FDNAMES");
    let count = fds.len();
    let mut map = HashMap::new();
    if count == 0 {
        let _ = HANDED.set(Mutex::new(map));
        return Ok(0);
    }
    let list: Vec<&str> = names.split(':').collect();
    let bad = || SocketsError::Names {
        names: names.clone(),
        count,
    };
    if list.len() != count {
        return Err(bad());
    }
    for (i, name) in list.iter().enumerate() {
        if !NAMES.contains(name) || map.contains_key(*name) {
            return Err(bad());
        }
        let not_tcp = |source| SocketsError::NotTcp {
            name: (*name).to_owned(),
            source,
        };
        let listener = fds
            .take_tcp_listener(i)
            .map_err(not_tcp)?
            .ok_or_else(|| not_tcp(std::io::Error::other("already taken")))?;
        listener.set_nonblocking(true).map_err(not_tcp)?;
        map.insert((*name).to_owned(), listener);
    }
    let _ = HANDED.set(Mutex::new(map));
    Ok(count)
}

/// The socket handed over as `name`, once (later calls, and calls in a
/// process that was handed none, get `None`: the listener binds its
/// configured address). `configured` is what the configuration says, for
/// the log when the two differ.
pub fn take(name: &str, configured: std::net::SocketAddr) -> Option<TcpListener> {
    let listener = HANDED
        .get()?
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(name)?;
    match listener.local_addr() {
        Ok(addr) if addr != configured => tracing::warn!(
            name,
            %addr,
            %configured,
            "a handed-over socket listens elsewhere than the configuration says: the socket wins"
        ),
        Ok(addr) => tracing::info!(name, %addr, "listening on a handed-over socket"),
        Err(_) => {}
    }
    Some(listener)
}

/// Whether a socket named `name` was handed over and not taken yet.
pub fn handed(name: &str) -> bool {
    HANDED.get().is_some_and(|m| {
        m.lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(name)
    })
}

/// Closes the handed-over sockets no listener took, saying which (call
/// once every listener of the node is up). Returns their names.
pub fn close_leftovers() -> Vec<String> {
    let Some(map) = HANDED.get() else {
        return Vec::new();
    };
    let left: Vec<(String, TcpListener)> = map
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .collect();
    left.into_iter()
        .map(|(name, listener)| {
            tracing::warn!(
                name = %name,
                addr = ?listener.local_addr().ok(),
                "a handed-over socket no listener of this node uses: closed"
            );
            name
        })
        .collect()
}
