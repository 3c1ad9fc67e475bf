//! Calls between actors: one request, one answer, on this node or another.
//!
//! Every request/reply between the platform's actors goes through here:
//! [`call`] (or its two halves, [`send`] then [`Pending::reply`], for a
//! caller that must know the request is in the callee's mailbox before it
//! waits). It builds the reply port, sends, and waits for the first of three
//! events: the answer, the time-out, or **the callee's end**. The caller
//! watches the callee (`ActorCell::wait`), which works just as well on
//! ractor_cluster's local stand-in of a remote actor: the stand-in is stopped
//! when the remote actor stops or the session to its node closes, so a call
//! to an actor on a node that dies fails at once.
//!
//! A call that gets no answer fails with a [`CallError`] that names the
//! callee and says what happened: it could not be reached, it did not answer
//! in time, or it stopped first. Where the answer is itself a `Result<T, E>`,
//! [`call_result`] (and [`Pending::reply_result`]) keep the callee's own
//! error apart and typed, as [`Failed::Refused`], so the caller can match on
//! it; [`Failed::flatten`] turns it into [`CallError::Refused`] (its text)
//! where the error is only reported further on. Both are serde types: they
//! cross nodes inside other errors.
//!
//! What must never happen:
//!
//! * a caller that waits out its time-out for a callee that has already
//!   stopped (or whose node has gone);
//! * a call without a time-out;
//! * a failed call reported as a bare `String`, or as a time-out when it was
//!   not one.
//!
//! An answer that was already on its way when a remote callee stopped may be
//! reported as [`CallError::Stopped`]: the request may have been carried out.
//! Callers treat `Stopped` and `Timeout` alike in that respect (retry only
//! what is safe to repeat).

use std::fmt::Display;
use std::time::Duration;

use ractor::concurrency::OneshotReceiver;
use ractor::{ActorCell, ActorRef, MessagingErr, RpcReplyPort};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Why a call got no answer (or, flattened from [`Failed`], a refusal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CallError {
    /// The request could not be delivered: no actor holds the name, or its
    /// mailbox is closed.
    #[error("`{name}` cannot be reached: {reason}")]
    Unreachable {
        /// The callee's name.
        name: String,
        /// Why.
        reason: String,
    },
    /// No answer within the time-out; the request may still be carried out.
    #[error("`{name}` did not answer within {timeout_ms} ms")]
    Timeout {
        /// The callee's name.
        name: String,
        /// The time-out.
        timeout_ms: u64,
    },
    /// The callee stopped (or its node went away) before it answered.
    #[error("`{name}` stopped before answering")]
    Stopped {
        /// The callee's name.
        name: String,
    },
    /// The callee answered with a refusal (see [`Failed::flatten`]).
    #[error("`{name}` refused: {reason}")]
    Refused {
        /// The callee's name.
        name: String,
        /// Its reason.
        reason: String,
    },
}

impl CallError {
    /// The callee's name.
    pub fn name(&self) -> &str {
        match self {
            CallError::Unreachable { name, .. }
            | CallError::Timeout { name, .. }
            | CallError::Stopped { name }
            | CallError::Refused { name, .. } => name,
        }
    }

    /// `Unreachable` for `name`, for callers that cannot even find the
    /// callee.
    pub fn unreachable(name: &str, reason: impl Display) -> Self {
        CallError::Unreachable {
            name: name.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Why a call whose answer is `Result<T, E>` gave no `T`: the call failed,
/// or the callee answered with its own error, kept typed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Failed<E> {
    /// No answer.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The callee's answer was its error `error`.
    #[error("`{name}` refused: {error}")]
    Refused {
        /// The callee's name.
        name: String,
        /// Its error.
        error: E,
    },
}

impl<E: Display> Failed<E> {
    /// The failure as a [`CallError`], the callee's error as its text
    /// ([`CallError::Refused`]).
    pub fn flatten(self) -> CallError {
        match self {
            Failed::Call(err) => err,
            Failed::Refused { name, error } => CallError::Refused {
                name,
                reason: error.to_string(),
            },
        }
    }
}

/// A request in the callee's mailbox, its answer still to come.
#[must_use = "a request whose answer is never awaited"]
pub struct Pending<T> {
    actor: ActorCell,
    name: String,
    rx: OneshotReceiver<T>,
    timeout: Duration,
    deadline: Instant,
}

/// Sends the request `msg` builds around a fresh reply port to `actor`
/// (called `name` in errors); the time-out starts now.
pub fn send<M, T>(
    actor: &ActorCell,
    name: &str,
    msg: impl FnOnce(RpcReplyPort<T>) -> M,
    timeout: Duration,
) -> Result<Pending<T>, CallError>
where
    M: ractor::Message,
    T: Send + 'static,
{
    let deadline = Instant::now() + timeout;
    let (tx, rx) = ractor::concurrency::oneshot();
    let port: RpcReplyPort<T> = (tx, timeout).into();
    ActorRef::<M>::from(actor.clone())
        .send_message(msg(port))
        .map_err(|err| CallError::unreachable(name, undelivered(&err)))?;
    Ok(Pending {
        actor: actor.clone(),
        name: name.to_owned(),
        rx,
        timeout,
        deadline,
    })
}

impl<T> Pending<T> {
    /// The answer; or `Timeout` at the deadline, or `Stopped` as soon as the
    /// callee terminates (or drops the reply port) without answering.
    pub async fn reply(self) -> Result<T, CallError> {
        let Pending {
            actor,
            name,
            mut rx,
            timeout,
            deadline,
        } = self;
        tokio::select! {
            biased;
            answer = tokio::time::timeout_at(deadline, &mut rx) => match answer {
                Ok(Ok(answer)) => Ok(answer),
                // The port was dropped unanswered: the callee stopped mid-call.
                Ok(Err(_)) => Err(CallError::Stopped { name }),
                Err(_) => Err(CallError::Timeout {
                    name,
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                }),
            },
            _ = actor.wait(None) => Err(CallError::Stopped { name }),
        }
    }
}

impl<T, E> Pending<Result<T, E>> {
    /// The answer of a callee that answers `Result<T, E>`: its error is
    /// [`Failed::Refused`], kept typed.
    pub async fn reply_result(self) -> Result<T, Failed<E>> {
        let name = self.name.clone();
        match self.reply().await? {
            Ok(answer) => Ok(answer),
            Err(error) => Err(Failed::Refused { name, error }),
        }
    }
}

/// Calls `actor` (called `name` in errors): sends the request `msg` builds
/// around its reply port and waits at most `timeout` for the answer, failing
/// at once if the callee terminates first.
pub async fn call<M, T>(
    actor: &ActorCell,
    name: &str,
    msg: impl FnOnce(RpcReplyPort<T>) -> M,
    timeout: Duration,
) -> Result<T, CallError>
where
    M: ractor::Message,
    T: Send + 'static,
{
    send(actor, name, msg, timeout)?.reply().await
}

/// [`call`] for a callee that answers `Result<T, E>`: its error comes back
/// typed, as [`Failed::Refused`].
pub async fn call_result<M, T, E>(
    actor: &ActorCell,
    name: &str,
    msg: impl FnOnce(RpcReplyPort<Result<T, E>>) -> M,
    timeout: Duration,
) -> Result<T, Failed<E>>
where
    M: ractor::Message,
    T: Send + 'static,
    E: Send + 'static,
{
    send(actor, name, msg, timeout)?.reply_result().await
}

/// What errors call `actor`: its registry name, else its id.
pub fn name_of(actor: &ActorCell) -> String {
    actor
        .get_name()
        .unwrap_or_else(|| actor.get_id().to_string())
}

/// Why a message could not be put in a mailbox, in words.
pub fn undelivered<M>(err: &MessagingErr<M>) -> &'static str {
    match err {
        MessagingErr::SendErr(_) | MessagingErr::ChannelClosed => {
            "its mailbox is closed (it stopped)"
        }
        MessagingErr::InvalidActorType => "it takes another message type",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use ractor::{Actor, ActorProcessingErr};
    use tokio::sync::mpsc;

    use super::*;

    /// Refused odd numbers.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
    #[error("{0} is odd")]
    struct Odd(u32);

    /// Reply ports kept alive outside the callee, as the forwarding task of
    /// a remote call keeps the caller's port while the remote node works.
    type Kept = Arc<Mutex<Vec<RpcReplyPort<u32>>>>;

    enum TestMsg {
        Echo(u32, RpcReplyPort<u32>),
        Even(u32, RpcReplyPort<Result<u32, Odd>>),
        /// Never answered: the port goes to `Kept`, the test hears of it.
        Hold(RpcReplyPort<u32>),
        /// Never answered: the port is dropped.
        Drop(RpcReplyPort<u32>),
    }

    impl ractor::Message for TestMsg {}

    struct Callee;

    impl Actor for Callee {
        type Msg = TestMsg;
        type State = (Kept, mpsc::UnboundedSender<()>);
        type Arguments = (Kept, mpsc::UnboundedSender<()>);

        async fn pre_start(
            &self,
            _: ActorRef<TestMsg>,
            args: Self::Arguments,
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(args)
        }

        async fn handle(
            &self,
            _: ActorRef<TestMsg>,
            msg: TestMsg,
            (kept, held): &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            match msg {
                TestMsg::Echo(n, reply) => {
                    let _ = reply.send(n);
                }
                TestMsg::Even(n, reply) => {
                    let _ = reply.send(if n % 2 == 0 { Ok(n) } else { Err(Odd(n)) });
                }
                TestMsg::Hold(reply) => {
                    kept.lock().unwrap().push(reply);
                    let _ = held.send(());
                }
                TestMsg::Drop(reply) => drop(reply),
            }
            Ok(())
        }
    }

    async fn callee() -> (ActorCell, Kept, mpsc::UnboundedReceiver<()>) {
        let kept = Kept::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let (actor, _) = Actor::spawn(None, Callee, (Arc::clone(&kept), tx))
            .await
            .unwrap();
        (actor.get_cell(), kept, rx)
    }

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn an_answer_comes_back() {
        let (actor, _, _) = callee().await;
        assert_eq!(
            call(&actor, "callee", |r| TestMsg::Echo(7, r), LONG).await,
            Ok(7)
        );
        actor.stop(None);
    }

    #[tokio::test]
    async fn no_answer_in_time_is_a_timeout() {
        let (actor, _kept, mut held) = callee().await;
        let err = call(&actor, "callee", TestMsg::Hold, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(held.recv().await.is_some());
        assert_eq!(
            err,
            CallError::Timeout {
                name: "callee".into(),
                timeout_ms: 50
            }
        );
        assert_eq!(err.to_string(), "`callee` did not answer within 50 ms");
        actor.stop(None);
    }

    #[tokio::test]
    async fn a_callee_that_stops_mid_call_fails_the_call_at_once() {
        let (actor, kept, mut held) = callee().await;
        let target = actor.clone();
        // Its reply port outlives it (in `kept`): only watching the callee
        // can end this call before its 60 s.
        let pending =
            tokio::spawn(async move { call(&target, "callee", TestMsg::Hold, LONG).await });
        held.recv().await.unwrap();
        actor.kill();
        let result = tokio::time::timeout(Duration::from_secs(5), pending)
            .await
            .expect("the caller still waits 5 s after the callee was killed")
            .unwrap();
        assert_eq!(
            result,
            Err(CallError::Stopped {
                name: "callee".into()
            })
        );
        assert_eq!(kept.lock().unwrap().len(), 1, "the port was still held");
    }

    #[tokio::test]
    async fn a_dropped_reply_port_is_stopped() {
        let (actor, _, _) = callee().await;
        let result = tokio::time::timeout(
            Duration::from_secs(5),
            call(&actor, "callee", TestMsg::Drop, LONG),
        )
        .await
        .expect("a dropped port ends the call");
        assert_eq!(
            result,
            Err(CallError::Stopped {
                name: "callee".into()
            })
        );
        actor.stop(None);
    }

    #[tokio::test]
    async fn a_stopped_actor_is_unreachable() {
        let (actor, _, _) = callee().await;
        actor.stop_and_wait(None, None).await.unwrap();
        match call(&actor, "callee", |r| TestMsg::Echo(1, r), LONG).await {
            Err(CallError::Unreachable { name, reason }) => {
                assert_eq!(name, "callee");
                assert!(reason.contains("mailbox is closed"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_refusal_keeps_the_callees_error_and_crosses_nodes() {
        let (actor, _, _) = callee().await;
        assert_eq!(
            call_result(&actor, "callee", |r| TestMsg::Even(4, r), LONG).await,
            Ok(4)
        );
        let err = call_result(&actor, "callee", |r| TestMsg::Even(3, r), LONG)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            Failed::Refused {
                name: "callee".into(),
                error: Odd(3)
            }
        );
        assert_eq!(err.to_string(), "`callee` refused: 3 is odd");
        let wire = serde_json::to_string(&err).unwrap();
        assert_eq!(serde_json::from_str::<Failed<Odd>>(&wire).unwrap(), err);
        assert_eq!(
            err.flatten(),
            CallError::Refused {
                name: "callee".into(),
                reason: "3 is odd".into()
            }
        );
        actor.stop(None);
    }
}
