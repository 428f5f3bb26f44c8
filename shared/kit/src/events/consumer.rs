//! Applying another service's events exactly once.
//!
//! For each event the consumer opens a transaction, locks its cursor row, skips the event if the
//! cursor is already past it, runs the handler, and moves the cursor, then commits: the effect and
//! the cursor advance together or not at all. A restart (of either side) resumes from the cursor.

use std::future::Future;
use std::time::Duration;

use guestloop_proto::common::v1::event_feed_client::EventFeedClient;
use guestloop_proto::common::v1::{Event, SubscribeEventsRequest};
use sqlx::{Acquire, PgConnection, PgPool};
use tokio::sync::watch;

use crate::client::AuthedChannel;
use crate::error::ApiError;

/// What a service does with one event of another service's feed.
pub trait EventHandler: Send + Sync + 'static {
    /// Applies the event using `conn`, which is inside the consumer's transaction. Return an
    /// error of kind UNAVAILABLE or ABORTED to retry later; any other error records the event as
    /// a dead letter and moves on.
    fn handle<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        event: &'a Event,
    ) -> impl Future<Output = Result<(), ApiError>> + Send + 'a;
}

/// The event's payload as message `M`; a missing or undecodable payload is a permanent error
/// (the consumer records the event as a dead letter).
pub fn decode_payload<M: prost::Message + Default>(event: &Event) -> Result<M, ApiError> {
    let payload = event
        .payload
        .as_ref()
        .ok_or_else(|| ApiError::invalid("payload", "missing"))?;
    M::decode(payload.value.as_slice()).map_err(|e| ApiError::invalid("payload", e.to_string()))
}

/// What happened to one delivered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// The cursor was already past it (a replay).
    Skipped,
    /// The handler refused it permanently; recorded in `consumer_dead_letters`.
    DeadLettered,
}

fn is_transient(error: &ApiError) -> bool {
    matches!(
        error,
        ApiError::Unavailable(_) | ApiError::Aborted(_) | ApiError::ResourceExhausted(_)
    )
}

/// Subscribes to one feed and applies its events with a handler.
pub struct Consumer<H> {
    name: String,
    pool: PgPool,
    event_types: Vec<String>,
    handler: H,
}

impl<H: EventHandler> Consumer<H> {
    /// `name` identifies the cursor, e.g. `crm<-complaints`.
    pub fn new(
        name: impl Into<String>,
        pool: PgPool,
        event_types: Vec<String>,
        handler: H,
    ) -> Self {
        Self {
            name: name.into(),
            pool,
            event_types,
            handler,
        }
    }

    /// The position of the last applied event (0 before the first).
    pub async fn cursor(&self) -> Result<i64, sqlx::Error> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM consumer_cursors WHERE consumer = $1")
                .bind(&self.name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(position.unwrap_or(0))
    }

    /// Applies one event exactly once.
    pub async fn apply(&self, event: &Event) -> Result<Outcome, ApiError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO consumer_cursors (consumer) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(&self.name)
            .execute(&mut *tx)
            .await?;
        let cursor: i64 = sqlx::query_scalar(
            "SELECT position FROM consumer_cursors WHERE consumer = $1 FOR UPDATE",
        )
        .bind(&self.name)
        .fetch_one(&mut *tx)
        .await?;
        if event.position <= cursor {
            return Ok(Outcome::Skipped);
        }
        let mut savepoint = tx.begin().await?;
        let outcome = match self.handler.handle(savepoint.acquire().await?, event).await {
            Ok(()) => {
                savepoint.commit().await?;
                Outcome::Applied
            }
            Err(error) if is_transient(&error) => return Err(error),
            Err(error) => {
                savepoint.rollback().await?;
                tracing::error!(consumer = %self.name, position = event.position,
                    event_type = %event.event_type, %error, "event refused, dead-lettered");
                sqlx::query(
                    "INSERT INTO consumer_dead_letters (consumer, position, event_id, event_type, error) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(&self.name)
                .bind(event.position)
                .bind(&event.event_id)
                .bind(&event.event_type)
                .bind(error.to_string())
                .execute(&mut *tx)
                .await?;
                Outcome::DeadLettered
            }
        };
        sqlx::query(
            "UPDATE consumer_cursors SET position = $2, updated_at = now() WHERE consumer = $1",
        )
        .bind(&self.name)
        .bind(event.position)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Subscribes from the cursor and applies events until `stop` fires, reconnecting with
    /// backoff whenever the feed or the database fails.
    pub async fn run(
        self,
        mut feed: EventFeedClient<AuthedChannel>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut backoff = Duration::from_millis(200);
        let mut failures = 0u32;
        loop {
            let session = self.run_session(&mut feed);
            tokio::select! {
                result = session => {
                    if let Err(error) = result {
                        failures += 1;
                        // A peer that is still starting is normal; keep quiet for the first tries.
                        if failures > 3 {
                            tracing::warn!(consumer = %self.name, %error, "event subscription interrupted");
                        } else {
                            tracing::debug!(consumer = %self.name, %error, "event subscription not available yet");
                        }
                    } else {
                        failures = 0;
                    }
                }
                _ = stop.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn run_session(&self, feed: &mut EventFeedClient<AuthedChannel>) -> anyhow::Result<()> {
        let after = self.cursor().await?;
        let mut stream = feed
            .subscribe_events(SubscribeEventsRequest {
                after_position: after,
                event_types: self.event_types.clone(),
            })
            .await?
            .into_inner();
        while let Some(event) = stream.message().await? {
            self.apply(&event).await?;
        }
        Ok(())
    }
}
