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
//! The renewal runs apart from the gate, so a slow start of the producer
//! never delays a renewal; the gate removes the producer when the count of
//! the lease runs out (it wakes then). A producer that cannot start (an
//! error from its supervisor) makes the node give the lease up for twice
//! the lease time, so a standby takes over.
//!
//! Never: a node streaming past its own count of the lease by more than a
//! supervisor call (removing the producer); two nodes streaming while both
//! reach the database, but for the moment of a handover.

use std::sync::Arc;
use std::time::{Duration, Instant};

use candela_actors::kafka::lease::{Holdings, LeaseConfig, LeaseError, Lessor};
use candela_actors::supervisor::{ChildSpec, SupervisorError, SupervisorMsg};
use ractor::ActorRef;
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

/// The lease's consumer-group column: producers, not a consumer group.
pub const PRODUCER_LEASE_GROUP: &str = "producer";

/// What the gate does when its producer becomes active the first time
/// (starts the backfill).
pub type OnActive = Box<dyn FnOnce() + Send>;

/// How long the supervisor may take to add or remove the producer.
const SUPERVISOR_CALL: Duration = Duration::from_secs(30);

/// The running gate: stop it to give the lease back.
pub struct Gate {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    lessor: Lessor,
}

impl Gate {
    /// Stops the producer (if active) and gives the lease back.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // The gate removes the producer (one supervisor call) and releases.
        let bound = SUPERVISOR_CALL + Duration::from_secs(5);
        if tokio::time::timeout(bound, &mut self.task).await.is_err() {
            self.task.abort();
            let _ = self.lessor.release_all().await;
        }
    }
}

/// The lease as the renewal task last counted it: held until then.
type Until = Option<Instant>;

/// Starts the gate of `producer` (a child spec of `supervisor`, not yet
/// added) on `topic`'s producer lease.
pub fn start(
    lessor: Lessor,
    topic: String,
    supervisor: ActorRef<SupervisorMsg>,
    producer: ChildSpec,
    on_active: Option<OnActive>,
) -> Gate {
    let config = lessor.config();
    let (stop_tx, stop_rx) = oneshot::channel();
    let (until_tx, until_rx) = watch::channel::<Until>(None);
    // Set by the gate when its producer cannot start: the renewal gives
    // the lease back and claims nothing until then, so a standby takes over.
    let stand_down = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let renewal = tokio::spawn(renew(
        lessor.clone(),
        config,
        topic,
        until_tx,
        Arc::clone(&stand_down),
    ));
    let task = tokio::spawn(gate(
        lessor.clone(),
        config,
        supervisor,
        producer,
        on_active,
        until_rx,
        stand_down,
        stop_rx,
        renewal,
    ));
    Gate {
        stop: Some(stop_tx),
        task,
        lessor,
    }
}

/// Renews (or claims) the lease every `renew`, apart from the gate, so a
/// slow supervisor call never delays a renewal; publishes how long the
/// lease counts.
async fn renew(
    lessor: Lessor,
    config: LeaseConfig,
    topic: String,
    until: watch::Sender<Until>,
    stand_down: Arc<std::sync::Mutex<Option<Instant>>>,
) {
    let mut holdings = Holdings::default();
    loop {
        let down = *stand_down.lock().unwrap_or_else(|p| p.into_inner());
        if down.is_some_and(|t| Instant::now() < t) {
            holdings.clear();
            until.send_replace(None);
            let _ = lessor.release_all().await;
        } else {
            let started = Instant::now();
            // A round longer than a renewal period counts as failed.
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
            let counted = holdings
                .holds(&topic, 0, Instant::now())
                .then(|| started + config.held_for());
            // Only a change wakes the gate (a renewal moves `until` on).
            until.send_if_modified(|u| {
                let changed = u.is_some() != counted.is_some();
                *u = counted;
                changed
            });
        }
        tokio::time::sleep(config.renew).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn gate(
    lessor: Lessor,
    config: LeaseConfig,
    supervisor: ActorRef<SupervisorMsg>,
    producer: ChildSpec,
    mut on_active: Option<OnActive>,
    mut until: watch::Receiver<Until>,
    stand_down: Arc<std::sync::Mutex<Option<Instant>>>,
    mut stop: oneshot::Receiver<()>,
    renewal: tokio::task::JoinHandle<()>,
) {
    let mut active = false;
    // After a failed start: no other attempt before then.
    let mut no_start_before: Option<Instant> = None;
    loop {
        let counted = *until.borrow_and_update();
        let holds = counted.is_some_and(|u| Instant::now() < u);
        let may_start = no_start_before.is_none_or(|t| Instant::now() >= t);
        if holds && !active && may_start {
            match add(&supervisor, producer.clone()).await {
                Ok(()) => {
                    active = true;
                    info!(node = %lessor.member(), "this node's producer is the active one (it holds the producer lease)");
                    if let Some(f) = on_active.take() {
                        f();
                    }
                }
                Err(error) => {
                    // Leave a clean state, give the lease up for a while:
                    // a standby may do better.
                    remove(&supervisor, &producer.name).await;
                    let later = Instant::now() + config.ttl * 2;
                    *stand_down.lock().unwrap_or_else(|p| p.into_inner()) = Some(later);
                    no_start_before = Some(later);
                    warn!(%error, "cannot start the producer: giving the producer lease up for a while");
                }
            }
            continue; // look again: the lease may have run out meanwhile
        } else if !holds && active {
            remove(&supervisor, &producer.name).await;
            active = false;
            info!(node = %lessor.member(), "this node's producer stands by (it no longer holds the producer lease)");
        }
        metrics::gauge!(candela_actors::telemetry::PRODUCER_ACTIVE)
            .set(f64::from(u8::from(active)));
        // Wake on a change of the lease, when its count runs out (the
        // renewal moves it on every round: look again then), or on stop.
        let wake = counted
            .filter(|_| holds)
            .map_or(Instant::now() + config.renew, |u| {
                u.min(Instant::now() + config.renew)
            });
        tokio::select! {
            _ = until.changed() => {}
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = &mut stop => break,
        }
    }
    renewal.abort();
    let _ = renewal.await;
    if active {
        remove(&supervisor, &producer.name).await;
    }
    if let Err(error) = lessor.release_all().await {
        warn!(%error, "cannot give the producer lease back (it lapses by itself)");
    }
}

/// Adds the producer; one already supervised (an earlier add that timed
/// out and went through later) counts as added.
async fn add(supervisor: &ActorRef<SupervisorMsg>, spec: ChildSpec) -> Result<(), String> {
    let ms = SUPERVISOR_CALL.as_millis() as u64;
    match ractor::call_t!(supervisor, SupervisorMsg::Add, ms, spec) {
        Ok(Ok(())) | Ok(Err(SupervisorError::AlreadySupervised { .. })) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn remove(supervisor: &ActorRef<SupervisorMsg>, name: &str) {
    let ms = SUPERVISOR_CALL.as_millis() as u64;
    if let Err(error) = ractor::call_t!(supervisor, SupervisorMsg::Remove, ms, name.to_owned()) {
        warn!(%error, "cannot stop the producer");
    }
}
