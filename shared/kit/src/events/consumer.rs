//! Applying another service's events exactly once.
//!
//! For each batch of events that have arrived, the consumer opens a transaction, locks its cursor
//! row, skips the events the cursor is already past, runs the handler for each of the others, and
//! moves the cursor, then commits: the effects and the cursor advance together or not at all. If
//! an event fails, the batch is rolled back and applied again with a savepoint per event, so only
//! the failing event is set aside. A restart (of either side) resumes from the cursor. Under load
//! one commit covers many events; a lone event waits at most [`LINGER`] for company.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
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

/// The most events applied in one transaction.
pub const MAX_BATCH: usize = 256;
/// How long a batch waits for more events after its first one arrived.
pub const LINGER: Duration = Duration::from_millis(10);

/// Whether the handler refused the event itself (it names no valid thing, or its state does
/// not allow it): dead-lettered at once. Anything else (the database or a peer failing, a
/// fault of ours) is retried, as the next attempt may succeed.
fn is_refusal(error: &ApiError) -> bool {
    matches!(
        error,
        ApiError::InvalidArgument(_)
            | ApiError::NotFound { .. }
            | ApiError::FailedPrecondition { .. }
            | ApiError::PermissionDenied(_)
            | ApiError::AlreadyExists(_)
    )
}

/// How often one event is tried when it keeps failing otherwise than by a refusal, before it
/// is dead-lettered so that the events after it are not held up for ever (with the backoff
/// between sessions, about a minute).
pub const MAX_ATTEMPTS: u32 = 12;

/// Subscribes to one feed and applies its events with a handler.
pub struct Consumer<H> {
    name: String,
    pool: PgPool,
    event_types: Vec<String>,
    handler: H,
    /// The position that last failed and how many times in a row.
    failing: std::sync::Mutex<(i64, u32)>,
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
            failing: std::sync::Mutex::new((0, 0)),
        }
    }

    /// Counts one more failed attempt at `position`; returns the attempts so far.
    fn failed_attempt(&self, position: i64) -> u32 {
        let mut failing = self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failing.0 == position {
            failing.1 += 1;
        } else {
            *failing = (position, 1);
        }
        failing.1
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
        let mut outcomes = self.apply_batch(std::slice::from_ref(event)).await?;
        Ok(outcomes.pop().unwrap_or(Outcome::Skipped))
    }

    /// Applies events (in feed order) exactly once, in one transaction with the cursor move,
    /// and returns one outcome per event. The batch is first applied as a whole; if any event
    /// fails, that transaction is rolled back and the batch runs again with a savepoint per
    /// event, so a refused event is dead-lettered alone and a transient failure keeps the
    /// events before it (see [`Self::apply_guarded`]).
    pub async fn apply_batch(&self, events: &[Event]) -> Result<Vec<Outcome>, ApiError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        match self.apply_whole(events).await {
            Ok(outcomes) => Ok(outcomes),
            Err(error) => {
                tracing::debug!(consumer = %self.name, %error, events = events.len(),
                    "batch failed as a whole; applying its events one savepoint at a time");
                self.apply_guarded(events).await
            }
        }
    }

    /// Locks the cursor row (creating it at 0) and returns its position.
    async fn lock_cursor(&self, conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "INSERT INTO consumer_cursors (consumer) VALUES ($1) \
             ON CONFLICT (consumer) DO UPDATE SET consumer = EXCLUDED.consumer RETURNING position",
        )
        .bind(&self.name)
        .fetch_one(conn)
        .await
    }

    async fn move_cursor(&self, conn: &mut PgConnection, position: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE consumer_cursors SET position = $2, updated_at = now() WHERE consumer = $1",
        )
        .bind(&self.name)
        .bind(position)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// All of the batch or none of it: the common case, with no savepoints.
    async fn apply_whole(&self, events: &[Event]) -> Result<Vec<Outcome>, ApiError> {
        let mut tx = self.pool.begin().await?;
        let cursor = self.lock_cursor(&mut tx).await?;
        let mut outcomes = Vec::with_capacity(events.len());
        let mut moved_to = cursor;
        for event in events {
            if event.position <= moved_to {
                outcomes.push(Outcome::Skipped);
                continue;
            }
            self.handler.handle(&mut tx, event).await?;
            outcomes.push(Outcome::Applied);
            moved_to = event.position;
        }
        if moved_to > cursor {
            self.move_cursor(&mut tx, moved_to).await?;
            tx.commit().await?;
        }
        Ok(outcomes)
    }

    /// Each event in a savepoint of its own: a refused event is rolled back and recorded as a
    /// dead letter; a transient failure stops the batch, commits the events before it (the
    /// cursor just behind the failing one) and returns the error, so the failing event and
    /// the rest come again on the next subscription.
    async fn apply_guarded(&self, events: &[Event]) -> Result<Vec<Outcome>, ApiError> {
        let mut outcomes = Vec::with_capacity(events.len());
        let mut tx = self.pool.begin().await?;
        let cursor = self.lock_cursor(&mut tx).await?;
        let mut moved_to = cursor;
        let mut transient = None;
        for event in events {
            if event.position <= moved_to {
                outcomes.push(Outcome::Skipped);
                continue;
            }
            let mut savepoint = tx.begin().await?;
            match self.handler.handle(savepoint.acquire().await?, event).await {
                Ok(()) => {
                    savepoint.commit().await?;
                    outcomes.push(Outcome::Applied);
                }
                Err(error)
                    if !is_refusal(&error)
                        && self.failed_attempt(event.position) < MAX_ATTEMPTS =>
                {
                    savepoint.rollback().await?;
                    transient = Some(error);
                    break;
                }
                Err(error) => {
                    savepoint.rollback().await?;
                    tracing::error!(consumer = %self.name, position = event.position,
                        event_type = %event.event_type, %error,
                        "event refused or failing every time, dead-lettered");
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
                    outcomes.push(Outcome::DeadLettered);
                }
            }
            moved_to = event.position;
        }
        if moved_to > cursor {
            self.move_cursor(&mut tx, moved_to).await?;
            tx.commit().await?;
        }
        match transient {
            Some(error) => Err(error),
            None => Ok(outcomes),
        }
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
            let started = tokio::time::Instant::now();
            let session = self.run_session(&mut feed);
            tokio::select! {
                result = session => {
                    // A session that ran a while was healthy: the next reconnect starts quick.
                    if started.elapsed() > Duration::from_secs(30) {
                        backoff = Duration::from_millis(200);
                    }
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
        // After the first event of a batch, wait up to LINGER for more (at most MAX_BATCH):
        // under load one transaction and one commit cover many events.
        loop {
            let first = match stream.next().await {
                None => return Ok(()),
                Some(item) => item?,
            };
            let mut events = vec![first];
            let mut failure = None;
            let mut ended = false;
            let linger_until = tokio::time::Instant::now() + LINGER;
            while events.len() < MAX_BATCH {
                match tokio::time::timeout_at(linger_until, stream.next()).await {
                    Err(_) => break,
                    Ok(None) => {
                        ended = true;
                        break;
                    }
                    Ok(Some(Ok(event))) => events.push(event),
                    Ok(Some(Err(status))) => {
                        failure = Some(status);
                        break;
                    }
                }
            }
            self.apply_batch(&events).await?;
            if let Some(status) = failure {
                return Err(status.into());
            }
            if ended {
                return Ok(());
            }
        }
    }
}
