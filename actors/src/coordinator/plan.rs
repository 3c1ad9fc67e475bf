//! The Coordinator's choices, pure: which dynamic consumer gets a topic,
//! which producer streams an instrument, which minutes of history a new
//! topic gets.

use crate::domain::Instrument;

use super::topic;

/// A dynamic consumer as the Coordinator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// Its cluster name.
    pub name: String,
    /// The topic it was given, if any.
    pub topic: Option<String>,
    /// Whether its machine is in Idle.
    pub idle: bool,
}

/// Which consumer gets a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerChoice {
    /// This one already has the topic.
    Reuse(String),
    /// This one is idle (no topic).
    Idle(String),
    /// Ask this agent to start one.
    StartOn(String),
    /// Nobody can take it.
    Nobody,
}

/// Chooses the consumer for `topic`: one already on it, else the first idle
/// one without a topic (by name), else an agent in turn (round robin over the
/// agents sorted by name, `turn` counting the requests).
pub fn choose_consumer(
    topic: &str,
    consumers: &[ConsumerInfo],
    agents: &[String],
    turn: usize,
) -> ConsumerChoice {
    let mut sorted: Vec<&ConsumerInfo> = consumers.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(c) = sorted.iter().find(|c| c.topic.as_deref() == Some(topic)) {
        return ConsumerChoice::Reuse(c.name.clone());
    }
    if let Some(c) = sorted.iter().find(|c| c.topic.is_none() && c.idle) {
        return ConsumerChoice::Idle(c.name.clone());
    }
    let mut agents: Vec<&String> = agents.iter().collect();
    agents.sort();
    agents.dedup();
    match agents.len() {
        0 => ConsumerChoice::Nobody,
        n => ConsumerChoice::StartOn(agents[turn % n].clone()),
    }
}

/// Chooses the producer for `instrument`: a stable choice among the
/// producers (sorted by name), spreading instruments over them.
pub fn choose_producer(instrument: &Instrument, producers: &[String]) -> Option<String> {
    let mut sorted: Vec<&String> = producers.iter().collect();
    sorted.sort();
    sorted.dedup();
    if sorted.is_empty() {
        return None;
    }
    let h = topic::fnv1a(instrument.to_string().as_bytes()) as usize;
    Some(sorted[h % sorted.len()].clone())
}

/// The history window for a new topic: the last `minutes` closed minutes
/// before `now` (Unix seconds), as (first, last) minute starts.
pub fn history_window(now: i64, minutes: i64) -> (i64, i64) {
    let last = now - now.rem_euclid(60) - 60;
    (last - (minutes.max(1) - 1) * 60, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, topic: Option<&str>, idle: bool) -> ConsumerInfo {
        ConsumerInfo {
            name: name.into(),
            topic: topic.map(Into::into),
            idle,
        }
    }

    #[test]
    fn a_consumer_already_on_the_topic_is_reused() {
        let consumers = [c("b", None, true), c("a", Some("t"), false)];
        assert_eq!(
            choose_consumer("t", &consumers, &["agent/x".into()], 0),
            ConsumerChoice::Reuse("a".into())
        );
    }

    #[test]
    fn else_the_first_idle_one_without_a_topic() {
        let consumers = [
            c("c", None, true),
            c("a", Some("other"), false),
            // Restarting: in Idle but still assigned (it will be re-told).
            c("b", Some("x"), true),
            c("d", None, false),
        ];
        assert_eq!(
            choose_consumer("t", &consumers, &[], 0),
            ConsumerChoice::Idle("c".into())
        );
    }

    #[test]
    fn else_an_agent_in_turn_else_nobody() {
        let busy = [c("a", Some("other"), false)];
        let agents: Vec<String> = vec!["agent/n2".into(), "agent/n1".into()];
        assert_eq!(
            choose_consumer("t", &busy, &agents, 0),
            ConsumerChoice::StartOn("agent/n1".into())
        );
        assert_eq!(
            choose_consumer("t", &busy, &agents, 1),
            ConsumerChoice::StartOn("agent/n2".into())
        );
        assert_eq!(choose_consumer("t", &busy, &[], 3), ConsumerChoice::Nobody);
    }

    #[test]
    fn producer_choice_is_stable_and_total() {
        let i: Instrument = "Binance:SOL-USDT".parse().unwrap();
        assert_eq!(choose_producer(&i, &[]), None);
        let ps: Vec<String> = vec!["producer/b".into(), "producer/a".into()];
        let first = choose_producer(&i, &ps).unwrap();
        assert!(ps.contains(&first));
        let reversed: Vec<String> = ps.iter().rev().cloned().collect();
        assert_eq!(choose_producer(&i, &reversed).unwrap(), first);
    }

    #[test]
    fn history_window_ends_at_the_last_closed_minute() {
        assert_eq!(history_window(1_000_030, 3), (999_840, 999_960));
        assert_eq!(history_window(1_000_020, 0), (999_960, 999_960));
    }
}
