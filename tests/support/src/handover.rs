//! Listening sockets a test binds on port 0 and hands to a node process it
//! starts, as systemd's socket activation does (`LISTEN_FDS`,
//! `LISTEN_FDNAMES`; the node takes them in `candela_node::sockets`). The
//! port is never free between being chosen and being listened on, so no
//! other process (another test, another build) can take it.
//!
//! The test gives its copies to the child at each start and keeps none: a
//! node killed with `kill -9` leaves its ports closed (peers and clients
//! are refused, as with any dead server), and a restart binds the same
//! ports again (free unless another process took one while the node was
//! down: then the restart fails with a clear message).

use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::OwnedFd;
use std::process::Command;

use command_fds::{CommandFdExt, FdMapping};

/// Named ports of one node process.
#[derive(Debug)]
pub struct Handover {
    /// `(name, port)`, in the order the sockets are handed over.
    ports: Vec<(String, u16)>,
    /// The sockets, between being bound and handed over.
    held: Option<Vec<TcpListener>>,
}

impl Handover {
    /// Binds a loopback port for each name (`cluster`, `status`, `api`,
    /// `ops`).
    pub fn bind(names: &[&str]) -> Self {
        let held: Vec<TcpListener> = names
            .iter()
            .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a loopback port"))
            .collect();
        let ports = names
            .iter()
            .zip(&held)
            .map(|(n, l)| ((*n).to_owned(), l.local_addr().expect("bound").port()))
            .collect();
        Self {
            ports,
            held: Some(held),
        }
    }

    /// The port named `name`.
    pub fn port(&self, name: &str) -> u16 {
        self.ports
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no port named {name}"))
            .1
    }

    /// Gives `cmd` the sockets (file descriptors 3 on, and the variables
    /// naming them), leaving out those named in `except` (their ports are
    /// then released here, for a process that binds them itself). After the
    /// first start, binds the ports again first. The sockets close in this
    /// process when `cmd` is dropped.
    pub fn give(&mut self, cmd: &mut Command, except: &[&str]) {
        let held = match self.held.take() {
            Some(held) => held,
            None => self
                .ports
                .iter()
                .map(|(name, port)| {
                    TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).unwrap_or_else(|e| {
                        panic!("port {port} ({name}) was taken while its node was down: {e}")
                    })
                })
                .collect(),
        };
        let mut names = Vec::new();
        let mut mappings = Vec::new();
        for ((name, _), listener) in self.ports.iter().zip(held) {
            if except.contains(&name.as_str()) {
                continue; // closed here: the node binds it itself
            }
            mappings.push(FdMapping {
                parent_fd: OwnedFd::from(listener),
                child_fd: 3 + names.len() as i32,
            });
            names.push(name.as_str());
        }
        cmd.fd_mappings(mappings)
            .expect("distinct descriptors")
            .env("LISTEN_FDS", names.len().to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .env_remove("LISTEN_PID");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_never_free_between_being_chosen_and_handed_over() {
        let mut h = Handover::bind(&["api", "ops"]);
        let port = h.port("api");
        // Another process (here: another socket) cannot take it meanwhile,
        // as it could take a port chosen by binding and releasing.
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err());
        // Handed over: the child gets it as descriptor 3, named.
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo $LISTEN_FDS $LISTEN_FDNAMES; ls -l /proc/self/fd/3",
        ]);
        h.give(&mut cmd, &[]);
        let out = cmd.output().expect("sh runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("2 api:ops\n"), "{text}");
        assert!(text.contains("socket:"), "{text}");
        drop(cmd);
        // Once the child is gone (it held the only copies), the port is
        // free again and a restart binds it anew.
        let mut again = Command::new("true");
        h.give(&mut again, &["ops"]);
        assert_eq!(h.port("api"), port);
    }
}
