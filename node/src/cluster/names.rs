//! Cluster-wide names for actors, on ractor's process groups.
//!
//! ractor's registry is per process: `registry::where_is` never sees an actor
//! on another node. Process groups, however, are synchronised between
//! connected nodes, so a name is a group:
//!
//! * the **identity** group — scope [`NAMES_SCOPE`], group = the name (e.g.
//!   `producer/main`) — holds the one actor known by that name;
//! * the **role** group — scope [`ROLES_SCOPE`], group = the role (e.g.
//!   `producers`) — holds every actor of that kind, for "any producer" lookups
//!   and for the admin view.
//!
//! [`resolve`] reads the identity group at every call: one member is the
//! answer, none is [`NameError::NotFound`], more than one is
//! [`NameError::Duplicate`] (logged). Nothing here caches an actor id: a
//! remote id changes on every reconnect and pids are reused, and a restarted
//! holder re-registers under the same name (its old membership ended with it).
//!
//! ```ignore
//! // In the actor's `pre_start` (a restarted instance registers again):
//! names::register(&myself.get_cell(), "producers", "producer/main")?;
//! // On any connected node:
//! let producer: ActorRef<ProducerMsg> = names::resolve("producer/main")?;
//! let status = names::call_by_name("producer/main", ProducerMsg::Status, timeout).await?;
//! ```
//!
//! Only actors whose message type crosses nodes
//! (`#[derive(RactorClusterMessage)]`) are announced to other nodes; a
//! local-only actor registered here is visible on its own node only, so
//! [`register`] refuses it.

use std::time::Duration;

use candela_actors::call::{call, undelivered, CallError};
use ractor::{pg, ActorCell, ActorId, ActorRef, RpcReplyPort};

/// The process-group scope of identity groups.
pub const NAMES_SCOPE: &str = "candela.names";
/// The process-group scope of role groups.
pub const ROLES_SCOPE: &str = "candela.roles";

/// Why a name could not be registered, resolved or called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name or role is not acceptable.
    #[error("invalid cluster name `{name}`: {reason}")]
    Invalid {
        /// The name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The actor's messages cannot cross nodes, so other nodes would never see it.
    #[error("actor {actor} cannot be named cluster-wide: its messages are local-only")]
    NotRemotable {
        /// The actor.
        actor: ActorId,
    },
    /// No live actor holds the name (on this node or a connected one).
    #[error("no actor holds the cluster name `{name}`")]
    NotFound {
        /// The name.
        name: String,
    },
    /// Several actors hold the name: a collision to fix, never guessed away.
    #[error("cluster name `{name}` is held by {} actors: {}", holders.len(), list(holders))]
    Duplicate {
        /// The name.
        name: String,
        /// Every holder.
        holders: Vec<ActorId>,
    },
    /// The call failed: the holder could not be reached even after
    /// resolving again, did not answer in time, or stopped first.
    #[error(transparent)]
    Call(#[from] CallError),
}

/// A name that does not resolve is a callee that cannot be reached (the
/// actors' [`Directory`](candela_actors::coordinator::Directory) and every
/// caller by name see it so).
impl From<NameError> for CallError {
    fn from(err: NameError) -> Self {
        match err {
            NameError::Call(err) => err,
            NameError::NotFound { name } => {
                CallError::unreachable(&name, "no actor holds this cluster name")
            }
            NameError::Duplicate { name, holders } => CallError::unreachable(
                &name,
                format!(
                    "{} actors hold this cluster name: {}",
                    holders.len(),
                    list(&holders)
                ),
            ),
            NameError::Invalid { name, reason } => CallError::unreachable(&name, reason),
            NameError::NotRemotable { actor } => {
                CallError::unreachable(&actor.to_string(), "its messages are local-only")
            }
        }
    }
}

fn list(ids: &[ActorId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a name or role: non-empty, printable ASCII without spaces.
fn check(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty() && name.len() <= 200 && name.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(NameError::Invalid {
            name: name.to_owned(),
            reason: "must be 1 to 200 printable ASCII characters without spaces".into(),
        })
    }
}

/// Registers `actor` under the cluster-wide `name` and in the group `role`.
///
/// Call it from the actor's `pre_start` (or right after spawning it); the
/// registration ends when the actor stops, so a supervisor's restart simply
/// registers the new instance. If the name is already held by another actor
/// the registration still happens (the other holder may be on a node we
/// are about to lose) but the collision is logged, and [`resolve`] reports
/// [`NameError::Duplicate`] until one of them goes.
pub fn register(actor: &ActorCell, role: &str, name: &str) -> Result<(), NameError> {
    check(name)?;
    check(role)?;
    if !actor.supports_remoting() {
        return Err(NameError::NotRemotable {
            actor: actor.get_id(),
        });
    }
    let others: Vec<ActorId> = holders(name)
        .into_iter()
        .filter(|id| *id != actor.get_id())
        .collect();
    if !others.is_empty() {
        tracing::error!(name, actor = %actor.get_id(), holders = %list(&others), "cluster name already held; registering a duplicate");
    }
    pg::join_scoped(ROLES_SCOPE.into(), role.into(), vec![actor.clone()]);
    pg::join_scoped(NAMES_SCOPE.into(), name.into(), vec![actor.clone()]);
    tracing::debug!(name, role, actor = %actor.get_id(), "registered cluster name");
    Ok(())
}

/// Adds `actor` to one more role group (e.g. a node's agent to
/// `agents/consumer` on a node that runs consumers).
pub fn join_role(actor: &ActorCell, role: &str) -> Result<(), NameError> {
    check(role)?;
    if !actor.supports_remoting() {
        return Err(NameError::NotRemotable {
            actor: actor.get_id(),
        });
    }
    pg::join_scoped(ROLES_SCOPE.into(), role.into(), vec![actor.clone()]);
    Ok(())
}

/// Removes `actor` from the role group `role` (stopping the actor does this
/// too).
pub fn leave_role(actor: &ActorCell, role: &str) {
    pg::leave_scoped(ROLES_SCOPE.into(), role.into(), vec![actor.clone()]);
}

/// A supervised child that holds a cluster name: `spec`'s start function,
/// followed by [`register`] under the child's name in `role` (and in each of
/// `extra_roles`). Every restart registers the new instance again; a child
/// that cannot be registered is stopped and counts as failing to start.
pub fn named_child(
    spec: candela_actors::supervisor::ChildSpec,
    role: &'static str,
    extra_roles: &'static [&'static str],
) -> candela_actors::supervisor::ChildSpec {
    let name = spec.name.clone();
    named_child_as(spec, name, role, extra_roles)
}

/// [`named_child`] with a cluster name other than the child's local one (for
/// a cluster-wide singleton such as `coordinator`, whose local name carries
/// the node's name).
pub fn named_child_as(
    spec: candela_actors::supervisor::ChildSpec,
    name: String,
    role: &'static str,
    extra_roles: &'static [&'static str],
) -> candela_actors::supervisor::ChildSpec {
    let inner = spec.start;
    candela_actors::supervisor::ChildSpec {
        name: spec.name,
        start: std::sync::Arc::new(move |sup, restarts| {
            let inner = std::sync::Arc::clone(&inner);
            let name = name.clone();
            Box::pin(async move {
                let cell = inner(sup, restarts).await?;
                let registered = register(&cell, role, &name)
                    .and_then(|()| extra_roles.iter().try_for_each(|r| join_role(&cell, r)));
                if let Err(err) = registered {
                    cell.stop(Some(err.to_string()));
                    return Err(ractor::SpawnErr::StartupFailed(err.to_string().into()));
                }
                Ok(cell)
            })
        }),
    }
}

/// The name service as the actors' [`Directory`](candela_actors::coordinator::Directory).
#[derive(Debug, Clone, Copy, Default)]
pub struct NameDirectory;

impl candela_actors::coordinator::Directory for NameDirectory {
    fn resolve(&self, name: &str) -> Result<ActorCell, CallError> {
        Ok(resolve_cell(name)?)
    }

    fn members(&self, role: &str) -> Vec<ActorCell> {
        role_members(role)
    }

    fn watch(&self, actor: &ActorCell) {
        pg::monitor_scope(ROLES_SCOPE.to_owned(), actor.clone());
        pg::monitor_scope(NAMES_SCOPE.to_owned(), actor.clone());
    }
}

/// Names held by one of several candidates, elected by a rule
/// (`super::election`): when several hold one (views that disagree for a
/// moment), the holder the rule picks — the lowest by its own name — is the
/// answer, never an error.
const ELECTED: &[&str] = &[candela_actors::coordinator::directory::COORDINATOR_NAME];

/// Removes `actor` from `name` and `role` (stopping the actor does this too).
pub fn unregister(actor: &ActorCell, role: &str, name: &str) {
    pg::leave_scoped(ROLES_SCOPE.into(), role.into(), vec![actor.clone()]);
    pg::leave_scoped(NAMES_SCOPE.into(), name.into(), vec![actor.clone()]);
}

/// The live actors holding `name`, on this node and connected ones.
pub fn holders(name: &str) -> Vec<ActorId> {
    members(name).iter().map(ActorCell::get_id).collect()
}

fn members(name: &str) -> Vec<ActorCell> {
    pg::get_scoped_members(&NAMES_SCOPE.to_owned(), &name.to_owned())
}

/// The actor holding `name`, as an untyped cell.
pub fn resolve_cell(name: &str) -> Result<ActorCell, NameError> {
    check(name)?;
    let mut members = members(name);
    match members.len() {
        0 => Err(NameError::NotFound {
            name: name.to_owned(),
        }),
        1 => Ok(members.remove(0)),
        _ if ELECTED.contains(&name) => {
            members.sort_by_key(|m| m.get_name());
            tracing::warn!(
                name,
                holders = members.len(),
                "an elected name held twice: the rule picks the lowest"
            );
            Ok(members.remove(0))
        }
        _ => {
            let holders: Vec<ActorId> = members.iter().map(ActorCell::get_id).collect();
            tracing::error!(name, holders = %list(&holders), "duplicate cluster name");
            Err(NameError::Duplicate {
                name: name.to_owned(),
                holders,
            })
        }
    }
}

/// The actor holding `name`. `M` must be the holder's message type: a wrong
/// type shows as a send error on the first message.
pub fn resolve<M: ractor::Message>(name: &str) -> Result<ActorRef<M>, NameError> {
    resolve_cell(name).map(ActorRef::from)
}

/// Every actor in the role group `role`.
pub fn role_members(role: &str) -> Vec<ActorCell> {
    pg::get_scoped_members(&ROLES_SCOPE.to_owned(), &role.to_owned())
}

/// Every name with more than one holder, with its holders.
pub fn duplicates() -> Vec<(String, Vec<ActorId>)> {
    let mut out: Vec<_> = pg::which_scoped_groups(&NAMES_SCOPE.to_owned())
        .into_iter()
        .filter_map(|name| {
            let holders = holders(&name);
            (holders.len() > 1).then_some((name, holders))
        })
        .collect();
    out.sort();
    out
}

/// Every registered name, with its holders.
pub fn all() -> Vec<(String, Vec<ActorId>)> {
    let mut out: Vec<_> = pg::which_scoped_groups(&NAMES_SCOPE.to_owned())
        .into_iter()
        .map(|name| {
            let holders = holders(&name);
            (name, holders)
        })
        .filter(|(_, holders)| !holders.is_empty())
        .collect();
    out.sort();
    out
}

/// Calls the actor holding `name` ([`call`]) and waits at most `timeout` for
/// the answer, or less if the holder stops first.
///
/// `msg` builds the request around its reply port (e.g. `ProbeMsg::Whoami`);
/// it is called a second time if the first call could not be delivered or
/// the holder stopped before answering — it stopped or moved between the
/// lookup and the call — after resolving the name again. A time-out is not
/// retried: the request may have been carried out.
pub async fn call_by_name<M, T, F>(name: &str, msg: F, timeout: Duration) -> Result<T, NameError>
where
    M: ractor::Message,
    T: Send + 'static,
    F: Fn(RpcReplyPort<T>) -> M,
{
    let first = resolve_cell(name)?;
    match call(&first, name, &msg, timeout).await {
        Err(err @ (CallError::Unreachable { .. } | CallError::Stopped { .. })) => {
            tracing::debug!(name, actor = %first.get_id(), error = %err, "call by name failed; resolving again");
            Ok(call(&resolve_cell(name)?, name, &msg, timeout).await?)
        }
        answer => Ok(answer?),
    }
}

/// Sends `msg` to the actor holding `name`, without waiting for an answer.
/// Resolves again once if the send fails.
pub fn cast_by_name<M, F>(name: &str, msg: F) -> Result<(), NameError>
where
    M: ractor::Message,
    F: Fn() -> M,
{
    let first: ActorRef<M> = resolve(name)?;
    if first.cast(msg()).is_ok() {
        return Ok(());
    }
    let again: ActorRef<M> = resolve(name)?;
    again
        .cast(msg())
        .map_err(|err| CallError::unreachable(name, undelivered(&err)).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::probe::{Probe, ProbeMsg};
    use ractor::Actor;

    const T: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn resolves_one_holder_and_reports_none_or_many() {
        let err = resolve::<ProbeMsg>("test/absent").unwrap_err();
        assert_eq!(
            err,
            NameError::NotFound {
                name: "test/absent".into()
            }
        );

        let (a, _) = Actor::spawn(None, Probe, ("node-x".into(), "test/one".into()))
            .await
            .unwrap();
        let answer = call_by_name("test/one", ProbeMsg::Whoami, T).await.unwrap();
        assert_eq!(answer.node, "node-x");
        assert_eq!(answer.actor, a.get_id().to_string());
        assert!(role_members("probes")
            .iter()
            .any(|m| m.get_id() == a.get_id()));

        let (b, _) = Actor::spawn(None, Probe, ("node-y".into(), "test/one".into()))
            .await
            .unwrap();
        match resolve::<ProbeMsg>("test/one").unwrap_err() {
            NameError::Duplicate { holders, .. } => {
                assert_eq!(holders.len(), 2);
                assert!(holders.contains(&a.get_id()) && holders.contains(&b.get_id()));
            }
            other => panic!("{other}"),
        }
        assert!(duplicates().iter().any(|(n, _)| n == "test/one"));
        let err = call_by_name("test/one", ProbeMsg::Whoami, T)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("held by 2 actors"), "{err}");

        // When one holder stops, the name is unique again: nothing was cached.
        a.stop_and_wait(None, None).await.unwrap();
        let answer = call_by_name("test/one", ProbeMsg::Whoami, T).await.unwrap();
        assert_eq!(answer.node, "node-y");
        b.stop_and_wait(None, None).await.unwrap();
        assert!(matches!(
            resolve::<ProbeMsg>("test/one"),
            Err(NameError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn a_restarted_holder_is_found_again() {
        let (a, _) = Actor::spawn(None, Probe, ("n1".into(), "test/restart".into()))
            .await
            .unwrap();
        let first = call_by_name("test/restart", ProbeMsg::Whoami, T)
            .await
            .unwrap();
        a.stop_and_wait(None, None).await.unwrap();
        let (b, _) = Actor::spawn(None, Probe, ("n1".into(), "test/restart".into()))
            .await
            .unwrap();
        let second = call_by_name("test/restart", ProbeMsg::Whoami, T)
            .await
            .unwrap();
        assert_ne!(first.actor, second.actor);
        assert_eq!(second.actor, b.get_id().to_string());
        b.stop(None);
    }

    /// Holds a name; at the first call it hands the name over to a new probe
    /// and drops the reply port, as a holder stopping mid-call would.
    struct Handover;

    impl Actor for Handover {
        type Msg = ProbeMsg;
        type State = String;
        type Arguments = String;

        async fn pre_start(
            &self,
            myself: ActorRef<ProbeMsg>,
            name: String,
        ) -> Result<String, ractor::ActorProcessingErr> {
            register(&myself.get_cell(), "handovers", &name)?;
            Ok(name)
        }

        async fn handle(
            &self,
            myself: ActorRef<ProbeMsg>,
            msg: ProbeMsg,
            name: &mut String,
        ) -> Result<(), ractor::ActorProcessingErr> {
            let ProbeMsg::Whoami(reply) = msg;
            unregister(&myself.get_cell(), "handovers", name);
            Actor::spawn(None, Probe, ("successor".into(), name.clone())).await?;
            drop(reply);
            myself.stop(None);
            Ok(())
        }
    }

    #[tokio::test]
    async fn call_by_name_resolves_again_when_the_holder_goes_mid_call() {
        let (first, _) = Actor::spawn(None, Handover, "test/handover".into())
            .await
            .unwrap();
        let answer = call_by_name("test/handover", ProbeMsg::Whoami, T)
            .await
            .unwrap();
        assert_eq!(answer.node, "successor");
        assert_ne!(answer.actor, first.get_id().to_string());
        resolve::<ProbeMsg>("test/handover").unwrap().stop(None);
    }

    #[tokio::test]
    async fn bad_names_and_local_only_actors_are_refused() {
        struct Local;
        struct LocalMsg;
        impl ractor::Message for LocalMsg {}
        impl Actor for Local {
            type Msg = LocalMsg;
            type State = ();
            type Arguments = ();
            async fn pre_start(
                &self,
                _: ActorRef<LocalMsg>,
                _: (),
            ) -> Result<(), ractor::ActorProcessingErr> {
                Ok(())
            }
        }
        let (local, _) = Actor::spawn(None, Local, ()).await.unwrap();
        assert!(matches!(
            register(&local.get_cell(), "locals", "test/local"),
            Err(NameError::NotRemotable { .. })
        ));
        assert!(matches!(
            register(&local.get_cell(), "locals", "has space"),
            Err(NameError::Invalid { .. })
        ));
        assert!(matches!(resolve_cell(""), Err(NameError::Invalid { .. })));
        local.stop(None);
    }
}
