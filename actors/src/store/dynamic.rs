//! The durable book of dynamic instruments: the instruments the platform was
//! asked for on demand (the Data Not Found path) and serves since, kept in the
//! system of record (`dynamic_instruments`, PostgreSQL or SQLite) so that they
//! outlive every process. The Coordinator writes it when it creates or
//! removes one, and reads it to reconcile (every stored instrument has a
//! producer streaming it and a consumer reading its topic).
//!
//! What must never happen: an instrument served live that is not in the book
//! (it would be lost at the next restart), or one in the book twice (the
//! instrument is the key: creating it again changes nothing).

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::postgres::PgStore;
use super::StoreError;
use crate::domain::Instrument;
use crate::embedded::SqliteStore;

/// Where a dynamic instrument stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DynamicState {
    /// Served: streamed live to its topic, which a consumer reads.
    Active,
    /// Being removed (an admin asked); nothing re-creates it.
    Removing,
}

impl DynamicState {
    fn as_str(self) -> &'static str {
        match self {
            DynamicState::Active => "active",
            DynamicState::Removing => "removing",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "active" => Ok(DynamicState::Active),
            "removing" => Ok(DynamicState::Removing),
            other => Err(StoreError::Corrupt(format!(
                "dynamic instrument state `{other}`"
            ))),
        }
    }
}

/// One dynamic instrument as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicRecord {
    /// The instrument.
    pub instrument: Instrument,
    /// Its dynamic topic.
    pub topic: String,
    /// The consumer group that reads the topic.
    pub group: String,
    /// When it was created, Unix seconds.
    pub created_at: i64,
    /// Where it stands.
    pub state: DynamicState,
}

/// A boxed future (the registry is used as a trait object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The book of dynamic instruments.
pub trait DynamicRegistry: Send + Sync + 'static {
    /// Every dynamic instrument, by instrument.
    fn list(&self) -> BoxFuture<'_, Result<Vec<DynamicRecord>, StoreError>>;
    /// Adds `record` unless its instrument is there; answers whether it was
    /// added.
    fn add(&self, record: DynamicRecord) -> BoxFuture<'_, Result<bool, StoreError>>;
    /// Sets the state of `instrument`; answers whether it is there.
    fn set_state<'a>(
        &'a self,
        instrument: &'a Instrument,
        state: DynamicState,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Removes `instrument`; answers whether it was there.
    fn remove<'a>(&'a self, instrument: &'a Instrument) -> BoxFuture<'a, Result<bool, StoreError>>;
}

fn record(
    instrument: String,
    topic: String,
    group: String,
    created_at: i64,
    state: String,
) -> Result<DynamicRecord, StoreError> {
    Ok(DynamicRecord {
        instrument: instrument
            .parse()
            .map_err(|e: crate::domain::tick::InvalidInstrument| {
                StoreError::Corrupt(e.to_string())
            })?,
        topic,
        group,
        created_at,
        state: DynamicState::parse(&state)?,
    })
}

impl DynamicRegistry for PgStore {
    fn list(&self) -> BoxFuture<'_, Result<Vec<DynamicRecord>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT instrument, topic, consumer_group, extract(epoch from created_at)::int8, state \
                 FROM dynamic_instruments ORDER BY instrument",
            )
            .fetch_all(self.pool())
            .await?;
            rows.iter()
                .map(|r| {
                    record(
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                    )
                })
                .collect()
        })
    }

    fn add(&self, r: DynamicRecord) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let done = sqlx::query(
                "INSERT INTO dynamic_instruments (instrument, topic, consumer_group, created_at, state) \
                 VALUES ($1, $2, $3, to_timestamp($4), $5) ON CONFLICT DO NOTHING",
            )
            .bind(r.instrument.to_string())
            .bind(&r.topic)
            .bind(&r.group)
            .bind(r.created_at)
            .bind(r.state.as_str())
            .execute(self.pool())
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn set_state<'a>(
        &'a self,
        instrument: &'a Instrument,
        state: DynamicState,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let done =
                sqlx::query("UPDATE dynamic_instruments SET state = $2 WHERE instrument = $1")
                    .bind(instrument.to_string())
                    .bind(state.as_str())
                    .execute(self.pool())
                    .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn remove<'a>(&'a self, instrument: &'a Instrument) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM dynamic_instruments WHERE instrument = $1")
                .bind(instrument.to_string())
                .execute(self.pool())
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}

impl DynamicRegistry for SqliteStore {
    fn list(&self) -> BoxFuture<'_, Result<Vec<DynamicRecord>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT instrument, topic, consumer_group, created_at, state \
                 FROM dynamic_instruments ORDER BY instrument",
            )
            .fetch_all(self.pool())
            .await?;
            rows.iter()
                .map(|r| {
                    record(
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                    )
                })
                .collect()
        })
    }

    fn add(&self, r: DynamicRecord) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let done = sqlx::query(
                "INSERT INTO dynamic_instruments (instrument, topic, consumer_group, created_at, state) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            )
            .bind(r.instrument.to_string())
            .bind(&r.topic)
            .bind(&r.group)
            .bind(r.created_at)
            .bind(r.state.as_str())
            .execute(self.writer())
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn set_state<'a>(
        &'a self,
        instrument: &'a Instrument,
        state: DynamicState,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let done =
                sqlx::query("UPDATE dynamic_instruments SET state = ?2 WHERE instrument = ?1")
                    .bind(instrument.to_string())
                    .bind(state.as_str())
                    .execute(self.writer())
                    .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn remove<'a>(&'a self, instrument: &'a Instrument) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM dynamic_instruments WHERE instrument = ?1")
                .bind(instrument.to_string())
                .execute(self.writer())
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}
