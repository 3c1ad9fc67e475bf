//! One active producer among the nodes that set `ingest.active_standby`:
//! the one holding the producer lease in PostgreSQL streams, the others
//! stand by.
//!
//! Producers without the setting all stream their instruments (each tick is
//! published by each and stored once; dynamic instruments are spread over
//! them). With it, a node's producer actor is started (added to the
//! platform supervisor, so it registers as `producer/<node>` in the
//! `producers` role group, which the coordinator reads) only while this
//! node holds the lease `partition_leases(producer, <tick topic>, 0)` —
//! the same lease rounds as the consumers' partitions
//! (`candela_actors::kafka::lease`), every `consumer.lease_renew_ms`. When
//! the active node dies or loses the database, its lease lapses after
//! `consumer.lease_ttl_ms` and a standby takes it on its next round; a
//! node shutting down gives it back at once. Ticks that arrive while no
//! producer streams are the repair's job: every producer node's repair
//! fetches the last minutes' history again once its producer runs.
//!
//! Never: a node streaming past its own count of the lease (its producer is
//! removed first); two nodes streaming while both reach the database, but
//! for the moment of a handover.

use std::time::{Duration, Instant};

use candela_actors::kafka::lease::{Holdings, LeaseConfig, LeaseError, Lessor};
use candela_actors::supervisor::{ChildSpec, SupervisorMsg};
use ractor::ActorRef;
use tokio::sync::oneshot;
use tracing::{info, warn};

/// The lease's consumer-group column: producers, not a consumer group.
pub const PRODUCER_LEASE_GROUP: &str = "producer";

/// What the gate does when its producer becomes active the first time
/// (starts the backfill).
pub type OnActive = Box<dyn FnOnce() + Send>;

/// The running gate: stop it to give the lease back.
pub struct Gate {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    /// Stops the producer (if active) and gives the lease back.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

/// Starts the gate of `producer` (a child spec of `supervisor`, not yet
/// added) on `topic`'s producer lease.
pub fn start(
    lessor: Lessor,
    config: LeaseConfig,
    topic: String,
    supervisor: ActorRef<SupervisorMsg>,
    producer: ChildSpec,
    mut on_active: Option<OnActive>,
) -> Gate {
    let (stop_tx, mut stop_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut holdings = Holdings::default();
        let mut active = false;
        loop {
            let started = Instant::now();
            // A round longer than a renewal period counts as failed, so the
            // producer is removed within a period of its count running out.
            let round = tokio::time::timeout(config.renew, lessor.round(&topic, 1, &[0]))
                .await
                .unwrap_or_else(|_| Err(LeaseError::timed_out()));
            match round {
                Ok(held) => holdings.renewed(&topic, &held, started, &config),
                Err(error) => {
                    metrics::counter!(candela_actors::telemetry::PARTITION_LEASE_ERRORS)
                        .increment(1);
                    warn!(member = %lessor.member(), %error, "cannot renew the producer lease");
                }
            }
            let holds = holdings.holds(&topic, 0, Instant::now());
            if holds && !active {
                match add(&supervisor, producer.clone()).await {
                    Ok(()) => {
                        active = true;
                        info!(node = %lessor.member(), "this node's producer is the active one (it holds the producer lease)");
                        if let Some(f) = on_active.take() {
                            f();
                        }
                    }
                    Err(error) => warn!(%error, "cannot start the producer"),
                }
            } else if !holds && active {
                remove(&supervisor, &producer.name).await;
                active = false;
                info!(node = %lessor.member(), "this node's producer stands by (another node holds the producer lease)");
            }
            metrics::gauge!(candela_actors::telemetry::PRODUCER_ACTIVE)
                .set(f64::from(u8::from(active)));
            tokio::select! {
                _ = tokio::time::sleep(config.renew) => {}
                _ = &mut stop_rx => break,
            }
        }
        if active {
            remove(&supervisor, &producer.name).await;
        }
        if let Err(error) = lessor.release_all().await {
            warn!(%error, "cannot give the producer lease back (it lapses by itself)");
        }
    });
    Gate {
        stop: Some(stop_tx),
        task,
    }
}

async fn add(supervisor: &ActorRef<SupervisorMsg>, spec: ChildSpec) -> Result<(), String> {
    match ractor::call_t!(supervisor, SupervisorMsg::Add, 30_000, spec) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn remove(supervisor: &ActorRef<SupervisorMsg>, name: &str) {
    if let Err(error) = ractor::call_t!(supervisor, SupervisorMsg::Remove, 30_000, name.to_owned())
    {
        warn!(%error, "cannot stop the producer");
    }
}
