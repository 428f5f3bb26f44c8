//! Applying changes to one complaint: load it under a row lock with everything its rules need,
//! change it, then save row, clocks, timeline, event and KPI mark in the same transaction.

use chrono::{DateTime, Utc};
use guestloop_kit::auth::Role;
use guestloop_kit::events::{append, NewEvent};
use guestloop_kit::{ApiError, ApiResult};
use guestloop_proto::complaints::v1 as pb;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::clocks;
use crate::convert::{complaint_to_proto, status_from_name};
use crate::settings::{effective, EffectiveSettings};
use crate::store::remedies::RemedyRow;
use crate::store::timeline::{self, Entry};
use crate::store::{self, ClockRow, ComplaintRow};

/// The current instant at the database's precision (microseconds), so what a write returns
/// equals what a later read returns.
pub fn now() -> DateTime<Utc> {
    use chrono::DurationRound;
    let now = Utc::now();
    now.duration_trunc(chrono::Duration::microseconds(1))
        .unwrap_or(now)
}

/// A complaint with its clocks, remedies, history and settings.
pub struct Loaded {
    pub row: ComplaintRow,
    pub clocks: Vec<ClockRow>,
    pub remedies: Vec<RemedyRow>,
    pub history: Vec<(DateTime<Utc>, String)>,
    pub fired: Vec<String>,
    pub settings: EffectiveSettings,
}

async fn fired_triggers(conn: &mut PgConnection, id: Uuid) -> ApiResult<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT trigger FROM complaint_escalations WHERE complaint_id = $1")
            .bind(id)
            .fetch_all(conn)
            .await?,
    )
}

pub async fn settings_for(
    conn: &mut PgConnection,
    chain_id: &str,
    property_id: &str,
) -> ApiResult<EffectiveSettings> {
    effective(&store::settings::get(conn, chain_id, property_id).await?).map_err(|error| {
        match error {
            // Stored settings that later rules refuse are not the caller's input: the
            // property's settings must be saved again, valid.
            ApiError::InvalidArgument(violations) => ApiError::failed_precondition(
                "SETTINGS_INVALID",
                format!("settings/{property_id}"),
                format!(
                    "the stored settings of {property_id} are no longer valid ({}); a manager must save valid ones",
                    violations
                        .iter()
                        .map(|v| format!("{}: {}", v.field, v.description))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ),
            other => other,
        }
    })
}

/// Loads a complaint; with `lock` the row stays locked until the transaction ends.
pub async fn load(conn: &mut PgConnection, id: Uuid, lock: bool) -> ApiResult<Loaded> {
    let row = if lock {
        store::complaints::load_for_update(conn, id).await?
    } else {
        store::complaints::load(conn, id).await?
    };
    let clocks = store::complaints::clocks(conn, id).await?;
    let remedies = store::remedies::for_complaint(conn, id).await?;
    let history = timeline::status_history(conn, id).await?;
    let fired = fired_triggers(conn, id).await?;
    let settings = settings_for(conn, &row.chain_id, &row.property_id).await?;
    Ok(Loaded {
        row,
        clocks,
        remedies,
        history,
        fired,
        settings,
    })
}

impl Loaded {
    pub fn status(&self) -> pb::Status {
        status_from_name(&self.row.status)
    }

    /// The client view at `now` (clock states recomputed, nothing written).
    pub fn view(&self, now: DateTime<Utc>) -> pb::Complaint {
        let mut clocks = self.clocks.clone();
        let refreshed = clocks::refresh(
            &mut clocks,
            &self.settings,
            &self.row.department,
            &self.history,
            &self.fired,
            self.row.reopen_count,
            now,
        );
        complaint_to_proto(&self.row, refreshed.clocks, &self.remedies)
    }

    /// Refuses a stale etag (ABORTED) when the caller sent one.
    pub fn check_etag(&self, etag: &str) -> ApiResult<()> {
        if !etag.is_empty() && etag != self.row.etag.to_string() {
            return Err(ApiError::Aborted(
                "complaint changed since it was read (etag mismatch); read it again".into(),
            ));
        }
        Ok(())
    }

    /// Records a status change (timeline, clocks) in memory and in the transaction. A resume
    /// (the guest answered, the complaint goes back to where it was) ends the wait and changes
    /// no clock: going back to `reopened` is no new reopen cycle.
    pub async fn record_status(
        &mut self,
        conn: &mut PgConnection,
        to: &str,
        resume: bool,
        actor: &str,
        note: &str,
        now: DateTime<Utc>,
    ) -> ApiResult<()> {
        let from = self.row.status.clone();
        timeline::append(
            conn,
            self.row.complaint_id,
            Entry {
                at: now,
                actor,
                kind: "transition",
                from_status: Some(&from),
                to_status: Some(to),
                note,
            },
        )
        .await?;
        if to == "cancelled" {
            clocks::bring_due_times_up_to(
                &mut self.clocks,
                &self.settings,
                &self.row.department,
                &self.history,
                now,
            );
        }
        self.history.push((now, to.to_string()));
        let finished = if resume {
            Vec::new()
        } else {
            clocks::on_status_change(&mut self.clocks, to, now)
        };
        if !finished.is_empty() {
            sqlx::query(
                "INSERT INTO complaint_clock_cycles (complaint_id, stage, started_at, met) \
                 SELECT $1, * FROM unnest($2::int2[], $3::timestamptz[], $4::bool[]) ON CONFLICT DO NOTHING",
            )
            .bind(self.row.complaint_id)
            .bind(finished.iter().map(|c| c.stage).collect::<Vec<i16>>())
            .bind(finished.iter().map(|c| c.started_at).collect::<Vec<_>>())
            .bind(finished.iter().map(|c| c.met).collect::<Vec<bool>>())
            .execute(&mut *conn)
            .await?;
        }
        self.row.status = to.to_string();
        Ok(())
    }

    /// Moves the complaint one rung up its property's ladder, once per trigger.
    pub async fn escalate(
        &mut self,
        conn: &mut PgConnection,
        trigger: &str,
        now: DateTime<Utc>,
    ) -> ApiResult<bool> {
        let ladder = &self.settings.escalation_ladder;
        let current = self.row.escalation_level.parse::<Role>().ok();
        let position = current
            .and_then(|r| ladder.iter().position(|l| *l == r))
            .unwrap_or(0);
        let to = ladder
            .get(position + 1)
            .or(ladder.last())
            .copied()
            .unwrap_or(Role::Supervisor);
        let inserted = sqlx::query(
            "INSERT INTO complaint_escalations (complaint_id, trigger, fired_at, from_level, to_level) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(self.row.complaint_id)
        .bind(trigger)
        .bind(now)
        .bind(&self.row.escalation_level)
        .bind(to.as_str())
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        let from = std::mem::replace(&mut self.row.escalation_level, to.as_str().to_string());
        self.row.escalation_count += 1;
        self.row.first_escalated_at.get_or_insert(now);
        self.fired.push(trigger.to_string());
        timeline::append(
            conn,
            self.row.complaint_id,
            Entry {
                at: now,
                actor: "system",
                kind: "escalated",
                from_status: None,
                to_status: None,
                note: &format!("{trigger}: {from} -> {}", to.as_str()),
            },
        )
        .await?;
        append(
            conn,
            NewEvent {
                event_type: "complaints.complaint.escalated",
                subject: format!("complaints/{}", self.row.complaint_id),
                chain_id: &self.row.chain_id,
                property_id: &self.row.property_id,
                payload: &pb::ComplaintEscalated {
                    complaint_id: self.row.complaint_id.to_string(),
                    property_id: self.row.property_id.clone(),
                    trigger: trigger.to_string(),
                    from_level: from,
                    to_level: to.as_str().to_string(),
                },
            },
        )
        .await?;
        Ok(true)
    }

    /// Writes the complaint back: clocks recomputed from the full history, next watcher time,
    /// new etag, KPI mark. Returns the client view.
    pub async fn save(
        &mut self,
        conn: &mut PgConnection,
        now: DateTime<Utc>,
    ) -> ApiResult<pb::Complaint> {
        let refreshed = clocks::refresh(
            &mut self.clocks,
            &self.settings,
            &self.row.department,
            &self.history,
            &self.fired,
            self.row.reopen_count,
            now,
        );
        self.row.next_escalation_at = refreshed.next_escalation_at;
        self.row.updated_at = now;
        store::complaints::update(conn, &mut self.row).await?;
        store::complaints::save_clocks(
            conn,
            self.row.complaint_id,
            &self.clocks,
            store::complaints::Rollup::Mark,
        )
        .await?;
        Ok(complaint_to_proto(
            &self.row,
            refreshed.clocks,
            &self.remedies,
        ))
    }
}

/// Records a `ComplaintChanged` event of `event_type`.
pub async fn emit_changed(
    conn: &mut PgConnection,
    event_type: &str,
    complaint: &pb::Complaint,
    from_status: pb::Status,
    actor: &str,
) -> ApiResult<()> {
    append(
        conn,
        NewEvent {
            event_type,
            subject: format!("complaints/{}", complaint.complaint_id),
            chain_id: &complaint.chain_id,
            property_id: &complaint.property_id,
            payload: &pb::ComplaintChanged {
                complaint: Some(complaint.clone()),
                from_status: from_status as i32,
                actor: actor.to_string(),
            },
        },
    )
    .await?;
    Ok(())
}
