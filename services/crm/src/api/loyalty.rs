//! Stays from PMS feeds, the points ledger (never negative, every effect exactly once by its
//! source), inactivity expiry and tier evaluation.

use chrono::{DateTime, Utc};
use guestloop_kit::auth::{principal, Principal, Role};
use guestloop_kit::time::{from_timestamp, to_timestamp};
use guestloop_kit::worktime::start_of_day;
use guestloop_kit::{paging, ApiError, ApiResult, FieldViolation};
use guestloop_proto::crm::v1 as pb;
use sqlx::{PgConnection, PgPool};
use tonic::Request;

use super::store::load;
use super::Api;
use crate::domain::ledger::{
    apply, fifo_expiring, inactivity_expired, EntryKind, ExpiryMode, LedgerError, Posting,
};
use crate::domain::stay_points::stay_of_source;
use crate::domain::tiers::{evaluate, Qualifying, Standing, Tier, Window};
use guestloop_kit::text::contains_card_number;

/// Roles allowed to move points by hand (an adjustment, a bonus or a manual earn), and the most
/// one such posting may move; `None` is no limit.
fn adjust_limit(role: Role) -> Option<i64> {
    match role {
        Role::Supervisor | Role::DutyManager => Some(5_000),
        Role::GeneralManager => Some(50_000),
        Role::ChainAdmin | Role::ChainQualityManager => None,
        _ => Some(0),
    }
}

/// The most points one person of `role` may credit by hand (earn, bonus, a credit adjustment)
/// in a day of the program's time zone: four postings at the role's limit. `None` is no limit (chain roles; services
/// post by rule).
fn daily_credit_limit(role: Role) -> Option<i64> {
    match role {
        Role::Service => None,
        _ => adjust_limit(role).map(|limit| limit.saturating_mul(4)),
    }
}

/// Holds a credit by hand to the person's daily limit: the day's credits of `actor` (from
/// midnight in the program's time zone) and
/// this one may not exceed [`daily_credit_limit`]. Postings by one person are taken in turn (an
/// advisory lock on the actor), so two at once cannot both pass. A retry of a posting already
/// made is not counted again: it answers the first entry as before.
async fn check_daily_credits(
    conn: &mut PgConnection,
    principal: &Principal,
    points: i64,
    source: &str,
) -> ApiResult<()> {
    let Some(limit) = daily_credit_limit(principal.role()) else {
        return Ok(());
    };
    let actor = principal.subject();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('crm.manual-credits:' || $1, 0))")
        .bind(actor)
        .execute(&mut *conn)
        .await?;
    // The day is the program's: it begins at midnight in the chain's zone.
    let (program, _) = super::program::load(&mut *conn, principal.chain_id()).await?;
    let day_began = start_of_day(
        program.zone,
        Utc::now().with_timezone(&program.zone).date_naive(),
    );
    let (replay, today): (bool, i64) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM ledger WHERE source = $2), \
                coalesce((SELECT sum(points) FROM ledger WHERE actor = $1 AND actor <> 'system' AND points > 0 \
                          AND kind IN ('earn', 'bonus', 'adjust') AND posted_at >= $3), 0)::bigint",
    )
    .bind(actor)
    .bind(source)
    .bind(day_began)
    .fetch_one(&mut *conn)
    .await?;
    if !replay && today.saturating_add(points) > limit {
        return Err(ApiError::PermissionDenied(format!(
            "role {} may credit at most {limit} points by hand per day ({}); {today} credited today",
            principal.role(),
            program.zone.name()
        )));
    }
    Ok(())
}

/// The most one `PostPoints` of `kind` by `role` may move (`None`: no limit). Redemptions are
/// bounded by the balance. Earn and bonus credits create points, so staff are held to the
/// adjustment limits (earning by rule comes from stays); other services post them unlimited.
fn posting_limit(role: Role, kind: EntryKind) -> Option<i64> {
    match (kind, role) {
        (EntryKind::Redeem, _) => None,
        (EntryKind::Earn | EntryKind::Bonus, Role::Service) => None,
        _ => adjust_limit(role),
    }
}

#[derive(Debug, sqlx::FromRow)]
struct EntryRow {
    entry_id: i64,
    guest_id: String,
    kind: String,
    points: i64,
    balance_after: i64,
    reason: String,
    actor: String,
    source: String,
    posted_at: DateTime<Utc>,
}

fn entry_to_proto(row: EntryRow) -> pb::LedgerEntry {
    let kind = match EntryKind::parse(&row.kind) {
        Some(EntryKind::Earn) => pb::EntryKind::Earn,
        Some(EntryKind::Bonus) => pb::EntryKind::Bonus,
        Some(EntryKind::Goodwill) => pb::EntryKind::Goodwill,
        Some(EntryKind::Redeem) => pb::EntryKind::Redeem,
        Some(EntryKind::Expire) => pb::EntryKind::Expire,
        Some(EntryKind::Adjust) => pb::EntryKind::Adjust,
        None => pb::EntryKind::Unspecified,
    };
    pb::LedgerEntry {
        entry_id: row.entry_id,
        guest_id: row.guest_id,
        kind: kind as i32,
        points: row.points,
        balance_after: row.balance_after,
        reason: row.reason,
        actor: row.actor,
        source: row.source,
        post_time: Some(to_timestamp(row.posted_at)),
    }
}

/// Posts one entry under the account's row lock; a second post with the same `source` returns
/// the first entry (when it is the same effect) instead of applying again.
pub async fn post_entry(
    conn: &mut PgConnection,
    guest_id: &str,
    kind: EntryKind,
    delta: i64,
    reason: &str,
    actor: &str,
    source: &str,
) -> ApiResult<pb::LedgerEntry> {
    super::store::open_account(&mut *conn, guest_id).await?;
    let balance: i64 =
        sqlx::query_scalar("SELECT balance FROM loyalty_accounts WHERE guest_id = $1 FOR UPDATE")
            .bind(guest_id)
            .fetch_one(&mut *conn)
            .await?;
    let existing: Option<EntryRow> = sqlx::query_as(
        "SELECT entry_id, guest_id, kind, points, balance_after, reason, actor, source, posted_at FROM ledger WHERE source = $1",
    )
    .bind(source)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(existing) = existing {
        if existing.guest_id != guest_id
            || existing.points != delta
            || existing.kind != kind.as_str()
            || existing.reason != reason
        {
            return Err(reused(source));
        }
        return Ok(entry_to_proto(existing));
    }
    let after = apply(balance, delta).map_err(|e| match e {
        LedgerError::InsufficientPoints { .. } => ApiError::failed_precondition(
            "INSUFFICIENT_POINTS",
            format!("accounts/{guest_id}"),
            e.to_string(),
        ),
        LedgerError::NotPositive => ApiError::invalid("points", e.to_string()),
        LedgerError::TooLarge => ApiError::failed_precondition(
            "BALANCE_LIMIT",
            format!("accounts/{guest_id}"),
            e.to_string(),
        ),
    })?;
    let row: EntryRow = sqlx::query_as(
        "INSERT INTO ledger (guest_id, kind, points, balance_after, reason, actor, source) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         RETURNING entry_id, guest_id, kind, points, balance_after, reason, actor, source, posted_at",
    )
    .bind(guest_id)
    .bind(kind.as_str())
    .bind(delta)
    .bind(after)
    .bind(reason)
    .bind(actor)
    .bind(source)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match ApiError::from(e) {
        // The same source posted meanwhile for another account (whose lock this call does not
        // hold): a request id reused for a different posting.
        ApiError::AlreadyExists(_) => reused(source),
        other => other,
    })?;
    sqlx::query(
        "UPDATE loyalty_accounts SET balance = $2, lifetime_earned = lifetime_earned + greatest($3, 0), \
         last_activity_at = CASE WHEN $4 THEN now() ELSE last_activity_at END WHERE guest_id = $1",
    )
    .bind(guest_id)
    .bind(after)
    .bind(if kind == EntryKind::Expire || kind == EntryKind::Adjust { 0 } else { delta })
    .bind(kind.is_activity())
    .execute(&mut *conn)
    .await?;
    Ok(entry_to_proto(row))
}

/// The most points one posting may move, whoever posts it: far above any real earning or
/// goodwill, and far enough below `i64::MAX` that no sum of postings overflows.
const MAX_POSTING: i64 = 10_000_000;
/// The longest reason a posting keeps.
const MAX_REASON: usize = 500;

fn reused(source: &str) -> ApiError {
    ApiError::failed_precondition(
        "REQUEST_ID_REUSED",
        source.to_string(),
        "this request id was already used for a different posting",
    )
}

/// Goodwill points of an approved complaint remedy: granted once per remedy, whatever replays.
pub async fn post_goodwill(
    conn: &mut PgConnection,
    guest_id: &str,
    remedy_id: &str,
    points: i64,
    complaint_id: &str,
) -> ApiResult<()> {
    let source = format!("remedy:{remedy_id}");
    let reason = format!("service recovery for complaint {complaint_id}");
    post_entry(
        conn,
        guest_id,
        EntryKind::Goodwill,
        points,
        &reason,
        "service:complaints",
        &source,
    )
    .await?;
    Ok(())
}

/// The request names a guest, and a guest reaches only their own account (another's is as good
/// as missing to them).
fn check_own_or_staff(principal: &Principal, guest_id: &str) -> ApiResult<()> {
    super::store::require_guest_id("guest_id", guest_id)?;
    if principal.role() == Role::Guest && principal.guest_id() != Some(guest_id) {
        return Err(ApiError::not_found("guest", guest_id.to_string()));
    }
    Ok(())
}

pub async fn post(
    api: &Api,
    request: Request<pb::PostPointsRequest>,
) -> ApiResult<pb::LedgerEntry> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let mut v = Vec::new();
    if request.request_id.is_empty() {
        v.push(FieldViolation::new(
            "request_id",
            "is required: every ledger mutation is idempotent",
        ));
    }
    guestloop_kit::idempotency::check_request_id(&request.request_id)?;
    if request.points <= 0 {
        v.push(FieldViolation::new("points", "must be greater than zero"));
    } else if request.points > MAX_POSTING {
        v.push(FieldViolation::new(
            "points",
            format!("must be at most {MAX_POSTING} in one posting"),
        ));
    }
    if request.reason.chars().count() > MAX_REASON {
        v.push(FieldViolation::new(
            "reason",
            format!("must be at most {MAX_REASON} characters"),
        ));
    } else if contains_card_number(&request.reason) {
        v.push(FieldViolation::new(
            "reason",
            "must not contain a payment card number",
        ));
    }
    let kind = match pb::EntryKind::try_from(request.kind) {
        Ok(pb::EntryKind::Earn) => EntryKind::Earn,
        Ok(pb::EntryKind::Bonus) => EntryKind::Bonus,
        Ok(pb::EntryKind::Redeem) => EntryKind::Redeem,
        Ok(pb::EntryKind::Adjust) => EntryKind::Adjust,
        _ => {
            v.push(FieldViolation::new(
                "kind",
                "must be EARN, BONUS, REDEEM or ADJUST",
            ));
            EntryKind::Earn
        }
    };
    if kind == EntryKind::Adjust && request.reason.trim().is_empty() {
        v.push(FieldViolation::new(
            "reason",
            "an adjustment needs a reason",
        ));
    }
    if kind == EntryKind::Bonus && request.reason.trim().is_empty() {
        v.push(FieldViolation::new("reason", "a bonus needs a reason"));
    }
    if request.debit && matches!(kind, EntryKind::Earn | EntryKind::Bonus) {
        v.push(FieldViolation::new(
            "debit",
            "EARN and BONUS always credit; debit with REDEEM or a debit ADJUST",
        ));
    }
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    check_own_or_staff(&principal, &request.guest_id)?;
    if principal.role() == Role::Guest && kind != EntryKind::Redeem {
        return Err(ApiError::PermissionDenied(
            "guests may only redeem their own points".into(),
        ));
    }
    if posting_limit(principal.role(), kind).is_some_and(|limit| request.points > limit) {
        return Err(ApiError::PermissionDenied(format!(
            "role {} may not post {} {} points",
            principal.role(),
            request.points,
            kind.as_str()
        )));
    }
    let delta = match kind {
        EntryKind::Redeem => -request.points,
        EntryKind::Adjust if request.debit => -request.points,
        _ => request.points,
    };
    let mut tx = api.context.pool.begin().await?;
    // The guest row is locked (as a merge or an erasure locks it) so that neither can move the
    // account away between this check and the posting; a merged guest's posting follows the
    // redirect to the survivor.
    let guest = load(&mut tx, &principal, &request.guest_id, true, true).await?;
    if guest.erased {
        return Err(ApiError::failed_precondition(
            "GUEST_ERASED",
            format!("guests/{}", guest.guest_id),
            "the guest was erased",
        ));
    }
    // Request ids are the caller's chain's own: another chain may use the same one. A posting
    // made before they were (source `request:<id>`) still answers its retry.
    let legacy = format!("request:{}", request.request_id);
    let posted_before: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM ledger WHERE source = $1)")
            .bind(&legacy)
            .fetch_one(&mut *tx)
            .await?;
    let source = if posted_before {
        legacy
    } else {
        format!("request:{}:{}", principal.chain_id(), request.request_id)
    };
    if delta > 0 && kind != EntryKind::Redeem {
        check_daily_credits(&mut tx, &principal, delta, &source).await?;
    }
    let entry = post_entry(
        &mut tx,
        &guest.guest_id,
        kind,
        delta,
        request.reason.trim(),
        super::store::actor_name(&principal),
        &source,
    )
    .await?;
    tx.commit().await?;
    Ok(entry)
}

pub async fn account(
    api: &Api,
    request: Request<pb::GetLoyaltyAccountRequest>,
) -> ApiResult<pb::LoyaltyAccount> {
    let principal = principal(&request)?.clone();
    let guest_id = request.into_inner().guest_id;
    check_own_or_staff(&principal, &guest_id)?;
    let mut conn = api.context.pool.acquire().await?;
    let guest = load(&mut conn, &principal, &guest_id, false, true).await?;
    let row: Option<(i64, i64, DateTime<Utc>)> =
        sqlx::query_as("SELECT balance, lifetime_earned, last_activity_at FROM loyalty_accounts WHERE guest_id = $1")
            .bind(&guest.guest_id)
            .fetch_optional(&mut *conn)
            .await?;
    let (balance, lifetime_earned, last) = row.unwrap_or((0, 0, guest.created_at));
    let tier_name = super::program::tier_name(&mut *conn, &guest.chain_id, &guest.tier).await?;
    Ok(pb::LoyaltyAccount {
        guest_id: guest.guest_id,
        balance,
        lifetime_earned,
        tier_name,
        tier: guest.tier,
        last_activity_time: Some(to_timestamp(last)),
    })
}

pub async fn list_ledger(
    api: &Api,
    request: Request<pb::ListLedgerRequest>,
) -> ApiResult<pb::ListLedgerResponse> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    check_own_or_staff(&principal, &request.guest_id)?;
    let page = paging::page_size(request.page_size, 100, 1000)?;
    let after: i64 = paging::decode_token(&request.page_token)?.unwrap_or(0);
    let mut conn = api.context.pool.acquire().await?;
    let guest = load(&mut conn, &principal, &request.guest_id, false, true).await?;
    let rows: Vec<EntryRow> = sqlx::query_as(
        "SELECT entry_id, guest_id, kind, points, balance_after, reason, actor, source, posted_at FROM ledger \
         WHERE guest_id = $1 AND entry_id > $2 ORDER BY entry_id LIMIT $3",
    )
    .bind(&guest.guest_id)
    .bind(after)
    .bind(page + 1)
    .fetch_all(&mut *conn)
    .await?;
    let (rows, next_page_token) = paging::split_page(rows, page, |r| r.entry_id);
    let entries = rows.into_iter().map(entry_to_proto).collect();
    Ok(pb::ListLedgerResponse {
        entries,
        next_page_token,
    })
}

pub(super) fn as_of(timestamp: Option<&prost_types::Timestamp>) -> ApiResult<DateTime<Utc>> {
    timestamp.map_or(Ok(Utc::now()), |t| from_timestamp("as_of", t))
}

/// Every chain with guests or loyalty accounts (a chain's PMS feeds may have opened accounts for
/// guests who are not members).
async fn all_chains(pool: &PgPool) -> ApiResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT chain_id FROM guests UNION SELECT chain_id FROM loyalty_accounts WHERE chain_id IS NOT NULL ORDER BY 1",
    )
    .fetch_all(pool)
    .await?)
}

/// The chains a batch runs for: every chain for the service role (the nightly batch), else the
/// caller's own.
pub(super) async fn batch_chains(api: &Api, principal: &Principal) -> ApiResult<Vec<String>> {
    if principal.role() == Role::Service {
        all_chains(&api.context.pool).await
    } else {
        Ok(vec![principal.chain_id().to_string()])
    }
}

/// Expires points under each chain's program: whole balances after the inactivity period, or
/// what is left of each credit once it is old enough (FIFO). Idempotent: the entry's source
/// names the inactivity period or the ledger position it was computed from, and a rerun
/// computes nothing left to expire.
pub async fn run_expiry(
    api: &Api,
    request: Request<pb::RunPointsExpiryRequest>,
) -> ApiResult<pb::RunPointsExpiryResponse> {
    let principal = principal(&request)?.clone();
    let as_of = as_of(request.get_ref().as_of.as_ref())?;
    // A date years on would expire a whole chain's points.
    not_ahead_for_staff(
        &principal,
        as_of,
        "an expiry run posts its expiries at once",
    )?;
    let actor = if principal.role() == Role::Service {
        "system"
    } else {
        principal.subject()
    };
    let mut response = pb::RunPointsExpiryResponse::default();
    for chain in batch_chains(api, &principal).await? {
        expire_chain(&api.context.pool, &chain, as_of, actor, &mut response).await?;
    }
    Ok(response)
}

/// Batches take effect at once: staff may rerun one for a time that was missed, never run one
/// ahead of time (`as_of` more than 5 minutes on is INVALID_ARGUMENT, `why` saying what it
/// would do). The service role's scheduled batches, and their tests, may look ahead.
pub(super) fn not_ahead_for_staff(
    principal: &Principal,
    as_of: DateTime<Utc>,
    why: &str,
) -> ApiResult<()> {
    if principal.role() != Role::Service && as_of > Utc::now() + chrono::Duration::minutes(5) {
        return Err(ApiError::invalid(
            "as_of",
            format!("must not be in the future: {why}"),
        ));
    }
    Ok(())
}

/// The scheduled expiry batch: every chain's points as of `as_of`, as `RunPointsExpiry` does for
/// the service role.
pub async fn expire_all_chains(
    pool: &PgPool,
    as_of: DateTime<Utc>,
) -> ApiResult<pb::RunPointsExpiryResponse> {
    let mut response = pb::RunPointsExpiryResponse::default();
    for chain in all_chains(pool).await? {
        expire_chain(pool, &chain, as_of, "system", &mut response).await?;
    }
    Ok(response)
}

async fn expire_chain(
    pool: &PgPool,
    chain: &str,
    as_of: DateTime<Utc>,
    actor: &str,
    response: &mut pb::RunPointsExpiryResponse,
) -> ApiResult<()> {
    let (program, _) = super::program::load(pool, chain).await?;
    match program.expiry.mode {
        ExpiryMode::Inactivity => {
            expire_inactive(pool, chain, as_of, program.expiry.months, actor, response).await
        }
        ExpiryMode::PerCredit => {
            expire_old_credits(pool, chain, as_of, program.expiry.months, actor, response).await
        }
    }
}

async fn expire_inactive(
    pool: &PgPool,
    chain: &str,
    as_of: DateTime<Utc>,
    months: u32,
    actor: &str,
    response: &mut pb::RunPointsExpiryResponse,
) -> ApiResult<()> {
    // Candidates with three days to spare: SQL and chrono clamp month ends differently (29
    // February 2024 plus 24 months is 28 February 2026 for chrono), and the check below decides.
    let candidates: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT guest_id, last_activity_at FROM loyalty_accounts \
         WHERE chain_id = $1 AND balance > 0 AND last_activity_at <= $2 - make_interval(months => $3) + interval '3 days' \
         ORDER BY guest_id",
    )
    .bind(chain)
    .bind(as_of)
    .bind(i32::try_from(months).unwrap_or(i32::MAX))
    .fetch_all(pool)
    .await?;
    for (guest_id, last_activity) in candidates {
        if !inactivity_expired(last_activity, as_of, months) {
            continue;
        }
        let mut tx = pool.begin().await?;
        // Decide again on the locked account: points earned since the candidates were read
        // make it active again, and then nothing expires.
        // Gone since (merged into another account, or erased): nothing to do here.
        let Some((balance, last_activity)) = sqlx::query_as::<_, (i64, DateTime<Utc>)>(
            "SELECT balance, last_activity_at FROM loyalty_accounts WHERE guest_id = $1 FOR UPDATE",
        )
        .bind(&guest_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            continue;
        };
        if balance == 0 || !inactivity_expired(last_activity, as_of, months) {
            continue;
        }
        // Points can come back without activity (a staff adjustment, a merge bringing another
        // account's balance): each expiry names how many entries the account had, so a later
        // one is a new entry, while a rerun finds the balance gone.
        let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger WHERE guest_id = $1")
            .bind(&guest_id)
            .fetch_one(&mut *tx)
            .await?;
        let source = format!("expiry:{guest_id}:{}:{entries}", last_activity.timestamp());
        post_entry(
            &mut tx,
            &guest_id,
            EntryKind::Expire,
            -balance,
            &format!("{months} months without activity"),
            actor,
            &source,
        )
        .await?;
        tx.commit().await?;
        response.accounts_expired += 1;
        response.points_expired += balance;
    }
    Ok(())
}

async fn expire_old_credits(
    pool: &PgPool,
    chain: &str,
    as_of: DateTime<Utc>,
    months: u32,
    actor: &str,
    response: &mut pb::RunPointsExpiryResponse,
) -> ApiResult<()> {
    let candidates: Vec<String> = sqlx::query_scalar(
        "SELECT a.guest_id FROM loyalty_accounts a \
         WHERE a.chain_id = $1 AND a.balance > 0 AND EXISTS (SELECT 1 FROM ledger l WHERE l.guest_id = a.guest_id \
               AND l.points > 0 AND l.posted_at <= $2 - make_interval(months => $3) + interval '3 days')",
    )
    .bind(chain)
    .bind(as_of)
    .bind(i32::try_from(months).unwrap_or(i32::MAX))
    .fetch_all(pool)
    .await?;
    for guest_id in candidates {
        let mut tx = pool.begin().await?;
        let locked: Option<i64> = sqlx::query_scalar(
            "SELECT balance FROM loyalty_accounts WHERE guest_id = $1 FOR UPDATE",
        )
        .bind(&guest_id)
        .fetch_optional(&mut *tx)
        .await?;
        if locked.is_none() {
            continue;
        }
        // The whole ledger, debits posted after `as_of` included: they used the oldest credits
        // too, and expiring without them would take points those debits already spent.
        let rows: Vec<(i64, DateTime<Utc>, i64, String)> = sqlx::query_as(
            "SELECT entry_id, posted_at, points, source FROM ledger WHERE guest_id = $1 ORDER BY entry_id",
        )
        .bind(&guest_id)
        .fetch_all(&mut *tx)
        .await?;
        let postings: Vec<Posting> = rows
            .iter()
            .map(|(_, at, points, source)| Posting {
                at: *at,
                points: *points,
                stay: stay_of_source(source),
            })
            .collect();
        let expiring = fifo_expiring(&postings, as_of, months);
        let Some((last_entry, _, _, _)) = rows.last() else {
            continue;
        };
        if expiring <= 0 {
            continue;
        }
        post_entry(
            &mut tx,
            &guest_id,
            EntryKind::Expire,
            -expiring,
            &format!("credits older than {months} months, less what was used"),
            actor,
            &format!("expiry-credits:{guest_id}:{last_entry}"),
        )
        .await?;
        tx.commit().await?;
        response.accounts_expired += 1;
        response.points_expired += expiring;
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct TierCandidate {
    guest_id: String,
    tier: String,
    strategic_manual: bool,
    tier_short_since: Option<DateTime<Utc>>,
    nights_a: i64,
    stays_a: i64,
    spend_a: i64,
    nights_b: i64,
    stays_b: i64,
    spend_b: i64,
}

/// Re-evaluates tiers under each chain's policy: the caller's chain, or every chain for the
/// service role (the nightly batch).
pub async fn evaluate_tiers(
    api: &Api,
    request: Request<pb::EvaluateTiersRequest>,
) -> ApiResult<pb::EvaluateTiersResponse> {
    let principal = principal(&request)?.clone();
    let as_of = as_of(request.get_ref().as_of.as_ref())?;
    // A date a year on would take every guest whose stays leave the window by then down a step
    // (with a grace of 0) or start their grace early, and tell them so.
    not_ahead_for_staff(
        &principal,
        as_of,
        "an evaluation changes tiers and sends their events at once",
    )?;
    let chains = batch_chains(api, &principal).await?;
    if principal.role() != Role::Service {
        for chain in &chains {
            not_before_the_last_evaluation(&api.context.pool, chain, as_of).await?;
        }
    }
    let mut response = pb::EvaluateTiersResponse::default();
    for chain in chains {
        evaluate_chain(&api.context.pool, &chain, as_of, &mut response).await?;
    }
    api.context.events.wake();
    Ok(response)
}

/// How far before the latest evaluation staff may still evaluate (a rerun of the same day).
const EVALUATION_SLACK: chrono::Duration = chrono::Duration::days(1);

/// Staff rerun an evaluation that was missed, not one for a time before the chain's latest:
/// it would raise tiers the guests have since lost and start grace periods long over.
async fn not_before_the_last_evaluation(
    pool: &PgPool,
    chain: &str,
    as_of: DateTime<Utc>,
) -> ApiResult<()> {
    let last: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT as_of FROM tier_evaluations WHERE chain_id = $1")
            .bind(chain)
            .fetch_optional(pool)
            .await?;
    match last {
        Some(last) if as_of < last - EVALUATION_SLACK => Err(ApiError::failed_precondition(
            "EVALUATION_IN_THE_PAST",
            format!("chains/{chain}"),
            format!(
                "the tiers were evaluated as of {last}; an evaluation as of an earlier time would undo it"
            ),
        )),
        _ => Ok(()),
    }
}

/// The scheduled tier evaluation: every chain as of `as_of`, as `EvaluateTiers` does for the
/// service role. The caller wakes the event relay for the `crm.tier.changed` events.
pub async fn evaluate_all_chains(
    pool: &PgPool,
    as_of: DateTime<Utc>,
) -> ApiResult<pb::EvaluateTiersResponse> {
    let mut response = pb::EvaluateTiersResponse::default();
    for chain in all_chains(pool).await? {
        evaluate_chain(pool, &chain, as_of, &mut response).await?;
    }
    Ok(response)
}

async fn evaluate_chain(
    pool: &PgPool,
    chain: &str,
    as_of: DateTime<Utc>,
    response: &mut pb::EvaluateTiersResponse,
) -> ApiResult<()> {
    let (program, _) = super::program::load(pool, chain).await?;
    let policy = program.tiers;
    // Departure dates are the properties' own; the year ends when the program's zone says so.
    let periods = policy
        .window
        .periods(as_of.with_timezone(&program.zone).date_naive());
    // Period b is empty for rolling windows.
    let (a, b) = (
        periods[0],
        periods
            .get(1)
            .copied()
            .unwrap_or((periods[0].1, periods[0].1)),
    );
    let rows: Vec<TierCandidate> = sqlx::query_as(
        "SELECT g.guest_id, g.tier, g.strategic_manual, g.tier_short_since, \
                coalesce(sum(s.nights) FILTER (WHERE s.departure_date > $2 AND s.departure_date <= $3), 0)::bigint AS nights_a, \
                count(s.*) FILTER (WHERE s.departure_date > $2 AND s.departure_date <= $3) AS stays_a, \
                coalesce(sum(s.spend_minor) FILTER (WHERE s.departure_date > $2 AND s.departure_date <= $3 \
                    AND s.spend_currency = $6), 0)::bigint AS spend_a, \
                coalesce(sum(s.nights) FILTER (WHERE s.departure_date > $4 AND s.departure_date <= $5), 0)::bigint AS nights_b, \
                count(s.*) FILTER (WHERE s.departure_date > $4 AND s.departure_date <= $5) AS stays_b, \
                coalesce(sum(s.spend_minor) FILTER (WHERE s.departure_date > $4 AND s.departure_date <= $5 \
                    AND s.spend_currency = $6), 0)::bigint AS spend_b \
         FROM guests g LEFT JOIN stays s ON s.guest_id = g.guest_id AND s.status = 'checked_out' \
              AND s.departure_date > least($2, $4) AND s.departure_date <= greatest($3, $5) \
         WHERE g.chain_id = $1 AND g.merged_into IS NULL AND NOT g.erased GROUP BY g.guest_id",
    )
    .bind(chain)
    .bind(a.0)
    .bind(a.1)
    .bind(b.0)
    .bind(b.1)
    .bind(&policy.spend_currency)
    .fetch_all(pool)
    .await?;
    for row in rows {
        response.evaluated += 1;
        let current = Tier::parse(&row.tier).unwrap_or(Tier::New);
        let activity = [
            Qualifying {
                nights: row.nights_a,
                stays: row.stays_a,
                spend: row.spend_a,
            },
            Qualifying {
                nights: row.nights_b,
                stays: row.stays_b,
                spend: row.spend_b,
            },
        ];
        let decision = evaluate(
            &policy,
            Standing {
                tier: current,
                short_since: row.tier_short_since,
                strategic_manual: row.strategic_manual,
            },
            &activity,
            as_of,
        );
        let next = decision.tier;
        if next == current {
            if decision.short_since != row.tier_short_since {
                // Grace starts (or ends) with no change of tier: nothing to announce.
                sqlx::query(
                    "UPDATE guests SET tier_short_since = $2 \
                     WHERE guest_id = $1 AND tier = $3 AND strategic_manual = $4",
                )
                .bind(&row.guest_id)
                .bind(decision.short_since)
                .bind(&row.tier)
                .bind(row.strategic_manual)
                .execute(pool)
                .await?;
            }
            continue;
        }
        let mut tx = pool.begin().await?;
        let reason = match policy.window {
            Window::Rolling12Months => format!(
                "{} nights, {} stays, spend {} in 12 months",
                row.nights_a, row.stays_a, row.spend_a
            ),
            Window::CalendarYear => format!(
                "{} nights, {} stays, spend {} this year; {} nights, {} stays, spend {} last year",
                row.nights_a, row.stays_a, row.spend_a, row.nights_b, row.stays_b, row.spend_b
            ),
        };
        // Only from the standing this decision was made on: a guest whose tier or manual
        // strategic flag changed since it was read (SetStrategicTier, an overlapping run, a
        // merge or an erasure) is left alone, with no history row and no event.
        let updated = sqlx::query(
            "UPDATE guests SET tier = $2, tier_short_since = $5, updated_at = now(), etag = gen_random_uuid() \
             WHERE guest_id = $1 AND tier = $3 AND strategic_manual = $4 \
             AND merged_into IS NULL AND NOT erased",
        )
        .bind(&row.guest_id)
        .bind(next.as_str())
        .bind(&row.tier)
        .bind(row.strategic_manual)
        .bind(decision.short_since)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            continue;
        }
        crate::tiers::record_change(
            &mut tx,
            &row.guest_id,
            chain,
            current.as_str(),
            next.as_str(),
            &reason,
        )
        .await?;
        tx.commit().await?;
        response.changed += 1;
    }
    sqlx::query(
        "INSERT INTO tier_evaluations (chain_id, as_of) VALUES ($1, $2) \
         ON CONFLICT (chain_id) DO UPDATE SET as_of = greatest(tier_evaluations.as_of, EXCLUDED.as_of), run_at = now()",
    )
    .bind(chain)
    .bind(as_of)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staff_credit_points_within_their_adjustment_limit() {
        for kind in [EntryKind::Earn, EntryKind::Bonus, EntryKind::Adjust] {
            assert_eq!(posting_limit(Role::Agent, kind), Some(0), "{kind:?}");
            assert_eq!(posting_limit(Role::Supervisor, kind), Some(5_000));
            assert_eq!(posting_limit(Role::GeneralManager, kind), Some(50_000));
            assert_eq!(posting_limit(Role::ChainAdmin, kind), None);
        }
        assert_eq!(posting_limit(Role::Service, EntryKind::Earn), None);
        assert_eq!(posting_limit(Role::Service, EntryKind::Bonus), None);
        assert_eq!(posting_limit(Role::Service, EntryKind::Adjust), Some(0));
        assert_eq!(posting_limit(Role::Agent, EntryKind::Redeem), None);
    }

    #[test]
    fn staff_credit_at_most_four_postings_at_their_limit_a_day() {
        assert_eq!(daily_credit_limit(Role::Supervisor), Some(20_000));
        assert_eq!(daily_credit_limit(Role::DutyManager), Some(20_000));
        assert_eq!(daily_credit_limit(Role::GeneralManager), Some(200_000));
        assert_eq!(daily_credit_limit(Role::Agent), Some(0));
        assert_eq!(daily_credit_limit(Role::ChainAdmin), None);
        assert_eq!(daily_credit_limit(Role::Service), None);
    }
}
