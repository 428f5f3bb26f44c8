//! Writing events in the caller's transaction, and positioning them after commit.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use guestloop_proto::common::v1::Event;
use prost::Name;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::error::ApiResult;
use crate::telemetry::current_traceparent;

/// An event to record with a state change.
#[derive(Debug)]
pub struct NewEvent<'a, M: Name> {
    /// Dotted type, e.g. `complaints.complaint.filed`.
    pub event_type: &'a str,
    /// The resource it is about, e.g. `complaints/<id>`.
    pub subject: String,
    pub chain_id: &'a str,
    pub property_id: &'a str,
    pub payload: &'a M,
}

/// Inserts an event into the outbox inside the caller's transaction; it becomes visible to
/// subscribers after the transaction commits and the relay positions it.
pub async fn append<M: Name>(conn: &mut PgConnection, event: NewEvent<'_, M>) -> ApiResult<Uuid> {
    let event_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO outbox_events \
         (event_id, event_type, subject, chain_id, property_id, occur_time, payload_type, payload, traceparent) \
         VALUES ($1, $2, $3, $4, $5, now(), $6, $7, $8)",
    )
    .bind(event_id)
    .bind(event.event_type)
    .bind(&event.subject)
    .bind(event.chain_id)
    .bind(event.property_id)
    .bind(M::type_url())
    .bind(event.payload.encode_to_vec())
    .bind(current_traceparent())
    .execute(conn)
    .await?;
    Ok(event_id)
}

/// The events about objects `$2` of collection `$1`, locked, by the index on the subject's first
/// two parts (`outbox_events_by_object`).
pub const EVENTS_ABOUT: &str = "SELECT id, payload_type, payload FROM outbox_events \
     WHERE split_part(subject, '/', 1) = $1 AND split_part(subject, '/', 2) = ANY($2) \
     ORDER BY id FOR UPDATE";

/// Rewrites, in the caller's transaction, the payloads of the events about `ids` of `collection`
/// (subjects `<collection>/<id>` and `<collection>/<id>/...`): `rewrite` answers an event's new
/// payload from its type and payload, or `None` to leave it as it is. The log is a copy of what
/// the service holds, so an erasure scrubs it too. Answers how many events changed.
pub async fn rewrite_payloads(
    conn: &mut PgConnection,
    collection: &str,
    ids: &[String],
    rewrite: impl Fn(&str, &[u8]) -> Option<Vec<u8>>,
) -> ApiResult<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let events: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(EVENTS_ABOUT)
        .bind(collection)
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?;
    let (mut changed, mut payloads) = (Vec::new(), Vec::new());
    for (id, payload_type, payload) in events {
        if let Some(rewritten) = rewrite(&payload_type, &payload) {
            changed.push(id);
            payloads.push(rewritten);
        }
    }
    if changed.is_empty() {
        return Ok(0);
    }
    Ok(sqlx::query(
        "UPDATE outbox_events o SET payload = u.payload \
         FROM unnest($1::bigint[], $2::bytea[]) AS u(id, payload) WHERE o.id = u.id",
    )
    .bind(&changed)
    .bind(&payloads)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

/// The service's event log: wakes the relay after writes and tells subscribers about new
/// positions. One per service process; cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    pub(crate) pool: PgPool,
    pub(crate) service: &'static str,
    wake_relay: Arc<Notify>,
    head_sender: Arc<watch::Sender<i64>>,
    head: watch::Receiver<i64>,
    /// A transaction id below which every event is known to be positioned (see
    /// [`EventLog::position_batch`]); 0 until this process's first complete pass.
    settled_below: Arc<AtomicI64>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("service", &self.service)
            .finish()
    }
}

/// Advisory lock key for a service's relay: stable, distinct per service.
fn relay_lock_key(service: &str) -> i64 {
    let mut key: i64 = 0x0047_4c4f_5554; // "GLOUT"
    for byte in service.bytes() {
        key = key.wrapping_mul(31).wrapping_add(i64::from(byte));
    }
    key
}

const RELAY_BATCH: i64 = 5_000;
/// How long the relay lets events gather after a pass that positioned some: the most an event
/// waits beyond its commit for a position while events keep arriving.
const RELAY_LINGER: Duration = Duration::from_millis(5);

impl EventLog {
    pub fn new(pool: PgPool, service: &'static str) -> Self {
        let (sender, receiver) = watch::channel(0);
        Self {
            pool,
            service,
            wake_relay: Arc::new(Notify::new()),
            head_sender: Arc::new(sender),
            head: receiver,
            settled_below: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Call after committing a transaction that appended events, to position them at once
    /// (otherwise the relay finds them on its next poll).
    pub fn wake(&self) {
        self.wake_relay.notify_one();
    }

    /// Receives the head position as this process learns about it.
    pub fn subscribe_head(&self) -> watch::Receiver<i64> {
        self.head.clone()
    }

    /// Positions one batch of committed events; returns how many it positioned and the highest
    /// position it assigned (the head, since positions are assigned under the relay lock).
    ///
    /// The scan starts at the writing-transaction horizon of the last complete pass: every
    /// transaction older than the oldest one running at that pass had ended, and the pass
    /// positioned all it could see, so nothing older can still appear. A pass cut short by the
    /// batch limit leaves the horizon where it was.
    pub async fn position_batch(&self) -> Result<(u64, Option<i64>), sqlx::Error> {
        let settled_below = self.settled_below.load(Ordering::Acquire);
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(relay_lock_key(self.service))
            .execute(&mut *tx)
            .await?;
        let (count, highest, horizon): (i64, Option<i64>, i64) = sqlx::query_as(
            "WITH head AS (SELECT coalesce(max(position), 0) AS p FROM outbox_events WHERE position IS NOT NULL), \
                  pending AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM outbox_events \
                              WHERE position IS NULL AND txid >= $2::text::xid8 ORDER BY id LIMIT $1), \
                  positioned AS (UPDATE outbox_events o SET position = head.p + pending.n, positioned_at = now() \
                                 FROM pending, head WHERE o.id = pending.id RETURNING o.position) \
             SELECT count(*), max(position), pg_snapshot_xmin(pg_current_snapshot())::text::bigint FROM positioned",
        )
        .bind(RELAY_BATCH)
        .bind(settled_below.to_string())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        if count < RELAY_BATCH {
            self.settled_below.fetch_max(horizon, Ordering::AcqRel);
        }
        Ok((u64::try_from(count).unwrap_or(0), highest))
    }

    /// Highest assigned position and the count of committed events still waiting for one.
    pub async fn status(&self) -> Result<(i64, i64), sqlx::Error> {
        let row = sqlx::query(
            "SELECT (SELECT coalesce(max(position), 0) FROM outbox_events) AS head, \
                    (SELECT count(*) FROM outbox_events WHERE position IS NULL) AS pending",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("head")?, row.try_get("pending")?))
    }

    /// Highest assigned position (0 before the first).
    pub async fn head(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT coalesce(max(position), 0) FROM outbox_events WHERE position IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await
    }

    /// Reads up to `limit` events after `after`, in position order.
    pub async fn read(
        &self,
        after: i64,
        event_types: &[String],
        limit: i64,
    ) -> Result<Vec<Event>, sqlx::Error> {
        // Two statements, so that a filtered read uses `outbox_events_by_type` (a plan made
        // for both cases would scan by position and filter). The filtered one is planned for
        // its values each time (not kept prepared): a generic plan cannot tell a rare type
        // from a common one and walks the positions, filtering, which is the scan it replaces.
        const COLUMNS: &str = "position, event_id, event_type, subject, chain_id, property_id, \
            occur_time, payload_type, payload, traceparent";
        let sql = if event_types.is_empty() {
            format!(
                "SELECT {COLUMNS} FROM outbox_events WHERE position > $1 AND cardinality($2::text[]) = 0 \
                 ORDER BY position LIMIT $3"
            )
        } else {
            format!(
                "SELECT {COLUMNS} FROM outbox_events WHERE event_type = ANY($2) AND position > $1 \
                 ORDER BY position LIMIT $3"
            )
        };
        let rows = sqlx::query(&sql)
            .persistent(event_types.is_empty())
            .bind(after)
            .bind(event_types)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The relay loop: positions events whenever woken, and every `poll` in case another
    /// replica wrote them; publishes the head to local subscribers. Ends when `stop` fires.
    pub async fn run_relay(self, poll: Duration, mut stop: watch::Receiver<bool>) {
        let mut backoff = poll;
        loop {
            // Under load every pass positions something, and its highest position is the
            // head; only a pass that found nothing asks for the head (another replica may
            // have moved it).
            let outcome = async {
                let mut head = None;
                loop {
                    let (count, highest) = self.position_batch().await?;
                    head = highest.or(head);
                    if count < RELAY_BATCH as u64 {
                        break;
                    }
                }
                match head {
                    Some(head) => Ok::<_, sqlx::Error>((head, true)),
                    None => Ok((self.head().await?, false)),
                }
            }
            .await;
            let mut positioned = false;
            match outcome {
                Ok((head, any)) => {
                    backoff = poll;
                    positioned = any;
                    self.head_sender.send_if_modified(|current| {
                        let changed = *current != head;
                        *current = head;
                        changed
                    });
                }
                Err(error) => {
                    tracing::warn!(service = self.service, %error, "event relay cannot reach the database");
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
            if positioned {
                // Events keep coming while a pass runs: let them gather for a moment, so one
                // pass (and one commit) positions many of them rather than each its own.
                tokio::select! {
                    _ = tokio::time::sleep(RELAY_LINGER) => {}
                    _ = stop.changed() => return,
                }
            }
            tokio::select! {
                _ = self.wake_relay.notified() => {}
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

fn event_from_row(row: &sqlx::postgres::PgRow) -> Result<Event, sqlx::Error> {
    let occur: chrono::DateTime<chrono::Utc> = row.try_get("occur_time")?;
    let event_id: Uuid = row.try_get("event_id")?;
    Ok(Event {
        position: row.try_get("position")?,
        event_id: event_id.to_string(),
        event_type: row.try_get("event_type")?,
        subject: row.try_get("subject")?,
        chain_id: row.try_get("chain_id")?,
        property_id: row.try_get("property_id")?,
        occur_time: Some(crate::time::to_timestamp(occur)),
        payload: Some(prost_types::Any {
            type_url: row.try_get("payload_type")?,
            value: row.try_get("payload")?,
        }),
        traceparent: row.try_get("traceparent")?,
    })
}
