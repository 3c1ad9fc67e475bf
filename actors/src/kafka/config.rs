//! Configuration of the Kafka layer: where the brokers are, which topic carries
//! ticks, and how the producer batches. Plain serde data with defaults; it turns
//! into an rdkafka [`ClientConfig`] here and nowhere else, so every setting the
//! platform relies on is visible in one place.
//!
//! The delivery guarantee (idempotent producer, `acks=all`) is not
//! configurable: [`KafkaConfig::validate`] refuses `extra` settings that would
//! weaken it or that shadow a first-class field.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

/// The default name of the fixed topic that carries every tick.
pub const DEFAULT_TICK_TOPIC: &str = "tick-data";

/// librdkafka settings that `extra` may not set: they are either the
/// producer's delivery guarantee or a first-class field of [`KafkaConfig`].
const RESERVED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "client.id",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "max.in.flight.requests.per.connection",
    "max.in.flight",
    "retries",
    "message.send.max.retries",
    "delivery.timeout.ms",
    "message.timeout.ms",
    "linger.ms",
    "queue.buffering.max.ms",
    "batch.size",
    "batch.num.messages",
    "compression.type",
    "compression.codec",
    "queue.buffering.max.messages",
];

/// Settings of the Kafka layer (`[kafka]` in `cluster.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port` each.
    pub brokers: Vec<String>,
    /// The client id the brokers see (logs, quotas).
    pub client_id: String,
    /// The fixed topic that carries every tick.
    pub tick_topic: String,
    /// Partitions of the fixed topic when it is created. Ticks are keyed by
    /// instrument, so this bounds how many consumers share the load.
    pub tick_topic_partitions: i32,
    /// Replication factor of topics this layer creates (1 for a single broker).
    pub replication_factor: i32,
    /// How long librdkafka may keep trying to deliver one message (retries
    /// included) before reporting it failed (`delivery.timeout.ms`).
    pub delivery_timeout_ms: u64,
    /// How long the producer waits to fill a batch (`linger.ms`).
    pub linger_ms: u64,
    /// Largest batch sent to one partition, in bytes (`batch.size`).
    pub batch_size_bytes: u32,
    /// Largest batch sent to one partition, in messages (`batch.num.messages`).
    pub batch_max_messages: u32,
    /// Messages the producer may hold in memory before `publish` has to wait
    /// for deliveries (`queue.buffering.max.messages`).
    pub queue_max_messages: u32,
    /// Compression of produced batches.
    pub compression: Compression,
    /// Timeout of admin requests (create topic, metadata), in milliseconds.
    pub admin_timeout_ms: u64,
    /// Longest time a consumer's fetch waits at the broker for data, in
    /// milliseconds (librdkafka `fetch.wait.max.ms`, 500 by default there): it
    /// bounds how long a tick can sit on the broker before a consumer sees it.
    pub fetch_wait_max_ms: u64,
    /// Further librdkafka settings, passed through as they are, e.g.
    /// `"socket.keepalive.enable" = "true"`. Settings that would weaken the
    /// delivery guarantee or shadow a field above are refused.
    pub extra: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: vec!["127.0.0.1:9092".to_owned()],
            client_id: "candela".to_owned(),
            tick_topic: DEFAULT_TICK_TOPIC.to_owned(),
            tick_topic_partitions: 6,
            replication_factor: 1,
            delivery_timeout_ms: 30_000,
            linger_ms: 5,
            batch_size_bytes: 1_000_000,
            batch_max_messages: 10_000,
            queue_max_messages: 200_000,
            compression: Compression::Lz4,
            admin_timeout_ms: 10_000,
            fetch_wait_max_ms: 10,
            extra: BTreeMap::new(),
        }
    }
}

/// Compression of produced batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// LZ4: cheap on CPU, about 3x on tick JSON.
    Lz4,
}

impl Compression {
    fn as_librdkafka(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
        }
    }
}

/// The configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No bootstrap broker.
    #[error("kafka.brokers is empty")]
    NoBrokers,
    /// A setting is outside its range.
    #[error("kafka.{field} = {value} is invalid: {reason}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What would be valid.
        reason: &'static str,
    },
    /// `extra` sets something reserved.
    #[error(
        "kafka.extra may not set `{0}`: it is a field of [kafka] or part of the delivery guarantee"
    )]
    Reserved(String),
}

impl KafkaConfig {
    /// A configuration for these bootstrap brokers (comma separated, as in
    /// `bootstrap.servers`), everything else default.
    pub fn for_brokers(brokers: &str) -> Self {
        Self {
            brokers: brokers.split(',').map(|b| b.trim().to_owned()).collect(),
            ..Self::default()
        }
    }

    /// Checks the settings that rdkafka would otherwise reject late or that
    /// would weaken the delivery guarantee.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.iter().all(|b| b.trim().is_empty()) {
            return Err(ConfigError::NoBrokers);
        }
        let range = |field, value: i64, ok: bool, reason| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange {
                    field,
                    value: value.to_string(),
                    reason,
                })
            }
        };
        let p = i64::from(self.tick_topic_partitions);
        range("tick_topic_partitions", p, p >= 1, "at least 1")?;
        let r = i64::from(self.replication_factor);
        range("replication_factor", r, r >= 1, "at least 1")?;
        let d = i64::try_from(self.delivery_timeout_ms).unwrap_or(i64::MAX);
        range(
            "delivery_timeout_ms",
            d,
            (1_000..=i64::from(i32::MAX)).contains(&d),
            "between 1000 and 2147483647",
        )?;
        let l = i64::try_from(self.linger_ms).unwrap_or(i64::MAX);
        range("linger_ms", l, l <= 900_000, "at most 900000")?;
        let n = i64::from(self.batch_max_messages);
        range("batch_max_messages", n, n >= 1, "at least 1")?;
        let q = i64::from(self.queue_max_messages);
        range("queue_max_messages", q, q >= 1, "at least 1")?;
        if let Some(key) = self.extra.keys().find(|k| RESERVED.contains(&k.as_str())) {
            return Err(ConfigError::Reserved(key.clone()));
        }
        Ok(())
    }

    /// The bootstrap list in librdkafka's form.
    pub fn bootstrap_servers(&self) -> String {
        self.brokers.join(",")
    }

    /// The delivery timeout.
    pub fn delivery_timeout(&self) -> Duration {
        Duration::from_millis(self.delivery_timeout_ms)
    }

    /// The admin request timeout.
    pub fn admin_timeout(&self) -> Duration {
        Duration::from_millis(self.admin_timeout_ms)
    }

    /// Settings shared by every client: brokers, client id, extras.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap_servers())
            .set("client.id", &self.client_id);
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }

    /// Settings of the tick producer: [`Self::client_config`] plus the
    /// delivery guarantee and batching.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = self.client_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("delivery.timeout.ms", self.delivery_timeout_ms.to_string())
            .set("linger.ms", self.linger_ms.to_string())
            .set("batch.size", self.batch_size_bytes.to_string())
            .set("batch.num.messages", self.batch_max_messages.to_string())
            .set(
                "queue.buffering.max.messages",
                self.queue_max_messages.to_string(),
            )
            .set("compression.type", self.compression.as_librdkafka());
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_name_the_fixed_topic() {
        let c = KafkaConfig::default();
        c.validate().unwrap();
        assert_eq!(c.tick_topic, "tick-data");
        let p = c.producer_config();
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("compression.type"), Some("lz4"));
    }

    #[test]
    fn parses_partial_toml_like_json_and_rejects_unknown_fields() {
        let c: KafkaConfig = serde_json::from_str(
            r#"{"brokers":["a:1","b:2"],"linger_ms":20,"compression":"none",
                "extra":{"socket.keepalive.enable":"true"}}"#,
        )
        .unwrap();
        assert_eq!(c.bootstrap_servers(), "a:1,b:2");
        assert_eq!(c.linger_ms, 20);
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.tick_topic_partitions, 6);
        c.validate().unwrap();
        assert_eq!(
            c.client_config().get("socket.keepalive.enable"),
            Some("true")
        );
        assert!(serde_json::from_str::<KafkaConfig>(r#"{"broker":["a:1"]}"#).is_err());
    }

    #[test]
    fn refuses_to_weaken_the_guarantee_or_nonsense() {
        for key in [
            "acks",
            "enable.idempotence",
            "bootstrap.servers",
            "linger.ms",
        ] {
            let mut c = KafkaConfig::default();
            c.extra.insert(key.into(), "1".into());
            assert_eq!(c.validate(), Err(ConfigError::Reserved(key.into())));
        }
        let c = KafkaConfig {
            brokers: vec![],
            ..KafkaConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::NoBrokers));
        let c = KafkaConfig {
            tick_topic_partitions: 0,
            ..KafkaConfig::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::OutOfRange { .. })));
        let c = KafkaConfig {
            delivery_timeout_ms: 10,
            ..KafkaConfig::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::OutOfRange { .. })));
    }

    #[test]
    fn for_brokers_splits_a_bootstrap_list() {
        let c = KafkaConfig::for_brokers("127.0.0.1:1, 127.0.0.1:2");
        assert_eq!(c.brokers, vec!["127.0.0.1:1", "127.0.0.1:2"]);
    }
}
