//! Topic administration: make sure a topic exists before anything produces to
//! it. Used at start-up for the fixed topic and later by the coordinator for
//! dynamic topics.
//!
//! [`ensure_topic`] is idempotent: a topic that already exists is success, and
//! its partition count is left alone (changing it would move instruments to
//! other partitions and break their order; that is an operator's decision).

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::{debug, info, warn};

use super::config::{ConfigError, KafkaConfig};

/// A topic administration request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdminError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The name is not a legal Kafka topic name.
    #[error("invalid topic name `{0}`: 1 to 249 characters of [a-zA-Z0-9._-], not `.` or `..`")]
    InvalidName(String),
    /// The partition count is out of range.
    #[error("a topic has 1 to {MAX_PARTITIONS} partitions, not {0}")]
    Partitions(i32),
    /// The admin client could not be created or the request not sent.
    #[error("kafka admin request failed: {0}")]
    Client(#[from] KafkaError),
    /// The broker refused to create the topic.
    #[error("creating topic `{topic}` failed: {code}")]
    Create {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
    /// The topic was created but did not show up in the metadata in time.
    #[error("topic `{topic}` not visible in broker metadata after {waited:?}")]
    NotVisible {
        /// The topic.
        topic: String,
        /// How long we waited.
        waited: Duration,
    },
}

/// What [`ensure_topic`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredTopic {
    /// The topic.
    pub name: String,
    /// Its partition count as the broker reports it.
    pub partitions: usize,
    /// Whether this call created it (false: it existed already).
    pub created: bool,
}

/// The most partitions a topic this platform creates may have.
pub const MAX_PARTITIONS: i32 = 1_000;

/// Whether `name` is a legal Kafka topic name.
pub fn is_valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn admin_client(config: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>, AdminError> {
    config.validate()?;
    Ok(config.client_config().create()?)
}

/// Creates topic `name` with `partitions` partitions and `replication`
/// replicas unless it exists, then waits until the broker's metadata shows it.
/// A topic that already exists is success, whatever its partition count (a
/// difference is logged as a warning and visible in the result).
pub async fn ensure_topic(
    config: &KafkaConfig,
    name: &str,
    partitions: i32,
    replication: i32,
) -> Result<EnsuredTopic, AdminError> {
    if !is_valid_topic_name(name) {
        return Err(AdminError::InvalidName(name.to_owned()));
    }
    if !(1..=MAX_PARTITIONS).contains(&partitions) {
        return Err(AdminError::Partitions(partitions));
    }
    let admin = admin_client(config)?;
    let timeout = config.admin_timeout();
    let opts = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
    let results = admin.create_topics([&topic], &opts).await?;
    let created = match results.into_iter().next() {
        Some(Ok(_)) => true,
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => false,
        Some(Err((topic, code))) => return Err(AdminError::Create { topic, code }),
        None => {
            return Err(AdminError::Create {
                topic: name.to_owned(),
                code: RDKafkaErrorCode::Unknown,
            })
        }
    };
    let found = wait_visible(admin, name, timeout).await?;
    if created {
        info!(
            topic = name,
            partitions = found,
            replication,
            "created kafka topic"
        );
    } else if found != partitions as usize {
        warn!(
            topic = name,
            partitions = found,
            requested = partitions,
            "kafka topic exists with a different partition count; left as it is"
        );
    } else {
        debug!(topic = name, partitions = found, "kafka topic exists");
    }
    Ok(EnsuredTopic {
        name: name.to_owned(),
        partitions: found,
        created,
    })
}

/// The partition count of `name` as the broker reports it, `None` if the
/// broker does not know the topic.
pub async fn topic_partitions(
    config: &KafkaConfig,
    name: &str,
) -> Result<Option<usize>, AdminError> {
    let admin = admin_client(config)?;
    let timeout = config.admin_timeout();
    let name = name.to_owned();
    run_blocking(move || partitions_now(&admin, &name, timeout)).await
}

/// One topic as the broker's metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Its name.
    pub name: String,
    /// Its partition count.
    pub partitions: usize,
    /// The broker's error for this topic, if any.
    pub error: Option<String>,
}

/// Every topic the broker reports, sorted by name; a broker that does not
/// answer within `timeout` is an error (for the admin view, which must not
/// hang on a broker outage).
pub async fn list_topics(
    config: &KafkaConfig,
    timeout: Duration,
) -> Result<Vec<TopicInfo>, AdminError> {
    let admin = admin_client(config)?;
    run_blocking(move || {
        let md = admin.inner().fetch_metadata(None, timeout)?;
        let mut topics: Vec<TopicInfo> = md
            .topics()
            .iter()
            .map(|t| TopicInfo {
                name: t.name().to_owned(),
                partitions: t.partitions().len(),
                error: t.error().map(|e| RDKafkaErrorCode::from(e).to_string()),
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    })
    .await
}

/// Metadata requests block in librdkafka: keep them off the async threads.
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AdminError> + Send + 'static,
) -> Result<T, AdminError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => {
            warn!(error = %e, "kafka metadata task failed");
            Err(AdminError::Client(KafkaError::Canceled))
        }
    }
}

fn partitions_now(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
    timeout: Duration,
) -> Result<Option<usize>, AdminError> {
    let md = admin.inner().fetch_metadata(Some(name), timeout)?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len()))
}

async fn wait_visible(
    admin: AdminClient<DefaultClientContext>,
    name: &str,
    timeout: Duration,
) -> Result<usize, AdminError> {
    let name = name.to_owned();
    run_blocking(move || {
        let started = Instant::now();
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            match partitions_now(&admin, &name, left.max(Duration::from_millis(100))) {
                Ok(Some(n)) => return Ok(n),
                Ok(None) | Err(_) if started.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) => {
                    return Err(AdminError::NotVisible {
                        topic: name,
                        waited: started.elapsed(),
                    })
                }
                Err(e) => return Err(e),
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in ["tick-data", "a", "dyn.Coinbase_BTC-USD", &"x".repeat(249)] {
            assert!(is_valid_topic_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ü", &"x".repeat(250)] {
            assert!(!is_valid_topic_name(bad), "{bad}");
        }
    }
}
