//! Background work of the complaints service, safe to run in several replicas at once:
//! - the escalation watcher, which finds complaints whose next threshold is due through an
//!   index, claims them with `FOR UPDATE SKIP LOCKED`, and fires each trigger exactly once (the
//!   trigger's primary key settles races between replicas);
//! - the KPI rollup worker, which folds marked complaints into the daily rollup;
//! - tier enrichment, which retries the CRM tier lookup for complaints filed while CRM did not
//!   answer.

use std::time::Duration;

use guestloop_kit::background::every;
use guestloop_kit::events::EventLog;
use guestloop_kit::server::ServiceContext;
use guestloop_kit::ApiResult;
use guestloop_proto::complaints::v1 as pb;
use sqlx::PgPool;
use uuid::Uuid;

use crate::clocks::{thresholds, trigger_key, STAGES};
use crate::engine::{self, emit_changed};
use crate::store;

const WATCH_BATCH: i64 = 100;

/// Fires every escalation that is due now; returns how many complaints it looked at.
pub async fn escalate_due(pool: &PgPool, events: &EventLog) -> ApiResult<usize> {
    let mut tx = pool.begin().await?;
    let due: Vec<Uuid> = sqlx::query_scalar(
        "SELECT complaint_id FROM complaints WHERE next_escalation_at <= now() \
         ORDER BY next_escalation_at LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(WATCH_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let now = crate::engine::now();
    for id in &due {
        // Each complaint in a savepoint: one that cannot be escalated (its property's stored
        // settings no longer valid, say) is put back by five minutes and logged, and holds up
        // no other complaint's escalations.
        let mut step = sqlx::Connection::begin(&mut *tx).await?;
        match escalate_one(&mut step, *id, now).await {
            Ok(()) => step.commit().await?,
            Err(error) => {
                step.rollback().await?;
                tracing::warn!(complaint_id = %id, %error, "escalation check failed; retried in five minutes");
                sqlx::query(
                    "UPDATE complaints SET next_escalation_at = now() + interval '5 minutes' WHERE complaint_id = $1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    tx.commit().await?;
    if !due.is_empty() {
        events.wake();
    }
    Ok(due.len())
}

/// Fires the escalations of one complaint that are due at `now`.
async fn escalate_one(
    tx: &mut sqlx::PgConnection,
    id: Uuid,
    now: chrono::DateTime<chrono::Utc>,
) -> ApiResult<()> {
    {
        let mut loaded = engine::load(&mut *tx, id, true).await?;
        let view = loaded.view(now);
        let mut fired_any = false;
        for (clock_row, clock) in loaded.clocks.clone().iter().zip(view.clocks.iter()) {
            let stage = pb::Stage::try_from(clock.stage).unwrap_or(pb::Stage::Unspecified);
            if clock.stop_time.is_some() || clock.paused || !STAGES.contains(&stage) {
                continue;
            }
            let cycle = if matches!(stage, pb::Stage::Resolution | pb::Stage::AnswerToGuest) {
                loaded.row.reopen_count
            } else {
                0
            };
            for percent in thresholds(stage) {
                if clock.elapsed_fraction + 1e-9 < f64::from(*percent) / 100.0 {
                    break;
                }
                let key = trigger_key(stage, cycle, *percent);
                if loaded.fired.contains(&key) {
                    continue;
                }
                fired_any |= loaded.escalate(&mut *tx, &key, now).await?;
                if *percent == 100 {
                    if let Some(row) = loaded
                        .clocks
                        .iter_mut()
                        .find(|c| c.stage == clock_row.stage)
                    {
                        row.breached_at.get_or_insert(now);
                    }
                }
            }
        }
        let from = loaded.status();
        let complaint = loaded.save(&mut *tx, now).await?;
        if fired_any {
            emit_changed(
                &mut *tx,
                "complaints.complaint.transitioned",
                &complaint,
                from,
                "system",
            )
            .await?;
        }
    }
    Ok(())
}

/// Looks up tiers that CRM could not give at intake; escalates priority guests then.
pub async fn enrich_tiers(
    context: &ServiceContext,
    crm: &mut guestloop_proto::crm::v1::crm_service_client::CrmServiceClient<
        guestloop_kit::client::AuthedChannel,
    >,
) -> ApiResult<usize> {
    let pending: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT complaint_id, guest_id, chain_id FROM complaints WHERE NOT tier_checked AND guest_id <> '' \
         ORDER BY created_at LIMIT 50",
    )
    .fetch_all(&context.pool)
    .await?;
    let mut enriched = 0;
    for (id, guest_id, chain_id) in pending {
        // The complaint's chain: another chain's guest of the same id is not this guest.
        let mut request = tonic::Request::new(guestloop_proto::crm::v1::GetGuestTierRequest {
            guest_id,
            on_behalf_of_chain: chain_id,
        });
        request.set_timeout(Duration::from_secs(2));
        let tier = match crm.get_guest_tier(request).await {
            Ok(response) => response.into_inner().tier,
            Err(status) if status.code() == tonic::Code::NotFound => String::new(),
            Err(_) => break, // CRM still unavailable: try again on the next round
        };
        let mut tx = context.pool.begin().await?;
        let mut loaded = engine::load(&mut tx, id, true).await?;
        if loaded.row.tier_checked {
            continue;
        }
        let now = crate::engine::now();
        loaded.row.guest_tier = tier;
        loaded.row.tier_checked = true;
        if crate::api::is_priority_tier(&loaded.row.guest_tier)
            && !matches!(loaded.row.status.as_str(), "closed" | "cancelled")
        {
            loaded.escalate(&mut tx, "priority_guest", now).await?;
        }
        let from = loaded.status();
        let complaint = loaded.save(&mut tx, now).await?;
        emit_changed(
            &mut tx,
            "complaints.complaint.updated",
            &complaint,
            from,
            "system",
        )
        .await?;
        tx.commit().await?;
        enriched += 1;
    }
    if enriched > 0 {
        context.events.wake();
    }
    Ok(enriched)
}

pub async fn run_watcher(context: ServiceContext) {
    let stop = context.stop.clone();
    every(
        "escalation-watcher",
        Duration::from_millis(500),
        stop,
        || escalate_due(&context.pool, &context.events),
    )
    .await;
}

/// Marks a rollup worker folds (and deletes) between two vacuums of `kpi_dirty`.
const VACUUM_AFTER_FOLDED: usize = 20_000;

pub async fn run_rollup(context: ServiceContext) {
    let stop = context.stop.clone();
    let pool = context.pool.clone();
    let folded_since_vacuum = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    every("kpi-rollup", Duration::from_millis(500), stop, || {
        let pool = pool.clone();
        let folded_since_vacuum = folded_since_vacuum.clone();
        async move {
            // Go again at once only after a full batch: folding what a busy intake marks in
            // half a second at a time costs a handful of statements per batch, where chasing
            // every few new marks would spend them on a few complaints each.
            let folded = store::kpis::roll_up_batch(&pool).await?;
            let since = folded_since_vacuum.fetch_add(folded, std::sync::atomic::Ordering::Relaxed)
                + folded;
            if since >= VACUUM_AFTER_FOLDED {
                folded_since_vacuum.store(0, std::sync::atomic::Ordering::Relaxed);
                vacuum_marks(&pool).await;
            }
            Ok(if folded >= store::kpis::BATCH {
                folded
            } else {
                0
            })
        }
    })
    .await;
}

/// `kpi_dirty` is a queue: every intake inserts a mark and the worker deletes it. Each pass
/// scans the table for the oldest marks, so its dead rows must not pile up, and the worker does
/// not rely on autovacuum for that (it may be off, or slow to reach a small table). A plain
/// VACUUM does not block intake; `SKIP_LOCKED` leaves it to another replica already at it.
/// A failure (say, a role that may not vacuum) is logged and folding goes on.
async fn vacuum_marks(pool: &PgPool) {
    if let Err(error) = sqlx::query("VACUUM (SKIP_LOCKED) kpi_dirty")
        .execute(pool)
        .await
    {
        tracing::warn!(%error, "vacuuming kpi_dirty failed");
    }
}

pub async fn run_tier_enrichment(context: ServiceContext) -> () {
    let stop = context.stop.clone();
    let Ok(channel) = context.peer("crm") else {
        return;
    };
    let mut crm = guestloop_proto::crm::v1::crm_service_client::CrmServiceClient::new(channel);
    let mut stop_inner = stop.clone();
    loop {
        if let Err(error) = enrich_tiers(&context, &mut crm).await {
            tracing::warn!(%error, "tier enrichment failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop_inner.changed() => return,
        }
    }
}
