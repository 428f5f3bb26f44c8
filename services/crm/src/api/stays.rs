//! PMS stays: bulk upserts idempotent by the PMS's own reservation id, and the points each
//! checked-out stay earns (once per stay, however often the feed is replayed). Set-based: one
//! statement upserts the whole batch, and one statement each posts its earnings and moves the
//! balances, so a 5,000-stay batch costs a handful of round trips.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use guestloop_kit::auth::principal;
use guestloop_kit::{ApiError, ApiResult, FieldViolation};
use guestloop_proto::crm::v1 as pb;
use sqlx::PgConnection;
use tonic::Request;

use super::loyalty::earn_per_night;
use super::Api;

use crate::MAX_STAYS_PER_CALL as MAX_BATCH;

/// The longest stay a PMS may report, in nights (points are earned per night).
const MAX_NIGHTS: i64 = 366;

fn stay_status(status: i32) -> Option<&'static str> {
    match pb::StayStatus::try_from(status).ok()? {
        pb::StayStatus::Booked => Some("booked"),
        pb::StayStatus::InHouse => Some("in_house"),
        pb::StayStatus::CheckedOut => Some("checked_out"),
        pb::StayStatus::Cancelled => Some("cancelled"),
        pb::StayStatus::NoShow => Some("no_show"),
        pb::StayStatus::Unspecified => None,
    }
}

/// One validated stay.
struct Row {
    property_id: String,
    reservation: String,
    guest_id: String,
    arrival: NaiveDate,
    departure: NaiveDate,
    room: String,
    rate_currency: String,
    rate_minor: i64,
    spend_currency: String,
    spend_minor: i64,
    status: &'static str,
}

/// Validates every stay; violations name the entry and field.
fn validate(stays: Vec<pb::Stay>) -> Result<Vec<Row>, Vec<FieldViolation>> {
    let mut v = Vec::new();
    let mut rows = Vec::with_capacity(stays.len());
    let mut seen: HashSet<(String, String)> = HashSet::with_capacity(stays.len());
    for (i, stay) in stays.into_iter().enumerate() {
        let field = |name: &str| format!("stays[{i}].{name}");
        if stay.pms_reservation_id.is_empty() || stay.pms_reservation_id.len() > 100 {
            v.push(FieldViolation::new(
                field("pms_reservation_id"),
                "is required (at most 100 characters)",
            ));
        } else if !seen.insert((stay.property_id.clone(), stay.pms_reservation_id.clone())) {
            v.push(FieldViolation::new(
                field("pms_reservation_id"),
                "appears twice in this call; send each reservation once",
            ));
        }
        if stay.property_id.is_empty() {
            v.push(FieldViolation::new(field("property_id"), "is required"));
        }
        if stay.guest_id.is_empty() {
            v.push(FieldViolation::new(field("guest_id"), "is required"));
        }
        let rate = stay.rate.unwrap_or_default();
        let spend = stay.spend.unwrap_or_default();
        if rate.minor_units < 0 || spend.minor_units < 0 {
            v.push(FieldViolation::new(
                field("spend"),
                "amounts must not be negative",
            ));
        }
        let arrival = NaiveDate::parse_from_str(&stay.arrival_date, "%Y-%m-%d");
        let departure = NaiveDate::parse_from_str(&stay.departure_date, "%Y-%m-%d");
        match (arrival, departure, stay_status(stay.status)) {
            (Ok(arrival), Ok(departure), Some(_))
                if (departure - arrival).num_days() > MAX_NIGHTS =>
            {
                v.push(FieldViolation::new(
                    field("departure_date"),
                    format!("a stay is at most {MAX_NIGHTS} nights"),
                ))
            }
            (Ok(arrival), Ok(departure), Some(status)) if departure >= arrival => rows.push(Row {
                property_id: stay.property_id,
                reservation: stay.pms_reservation_id,
                guest_id: stay.guest_id,
                arrival,
                departure,
                room: stay.room,
                rate_currency: rate.currency_code,
                rate_minor: rate.minor_units,
                spend_currency: spend.currency_code,
                spend_minor: spend.minor_units,
                status,
            }),
            (Ok(_), Ok(_), Some(_)) => v.push(FieldViolation::new(
                field("departure_date"),
                "must not be before arrival_date",
            )),
            (_, _, None) => v.push(FieldViolation::new(field("status"), "is required")),
            _ => v.push(FieldViolation::new(
                field("arrival_date"),
                "dates must be YYYY-MM-DD",
            )),
        }
    }
    if v.is_empty() {
        Ok(rows)
    } else {
        Err(v)
    }
}

pub async fn upsert(
    api: &Api,
    request: Request<pb::UpsertStaysRequest>,
) -> ApiResult<pb::UpsertStaysResponse> {
    let principal = principal(&request)?.clone();
    let stays = request.into_inner().stays;
    if stays.is_empty() || stays.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "stays",
            format!("send between 1 and {MAX_BATCH} stays per call"),
        ));
    }
    for (i, stay) in stays.iter().enumerate() {
        // A missing property is bad input, reported below with the other violations.
        if stay.property_id.is_empty() {
            continue;
        }
        if let Err(e) = principal.require_property(&stay.property_id) {
            return Err(ApiError::PermissionDenied(format!("stays[{i}]: {e}")));
        }
    }
    let mut rows = validate(stays).map_err(ApiError::InvalidArgument)?;
    // One order for every batch, so concurrent batches lock shared rows in the same order.
    rows.sort_by(|a, b| (&a.property_id, &a.reservation).cmp(&(&b.property_id, &b.reservation)));
    let total = rows.len();
    let mut tx = api.context.pool.begin().await?;
    let written: Vec<bool> = sqlx::query_scalar(
        "INSERT INTO stays (property_id, pms_reservation_id, guest_id, arrival_date, departure_date, room, rate_currency, \
         rate_minor, spend_currency, spend_minor, status) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::date[], $6::text[], $7::text[], \
                $8::bigint[], $9::text[], $10::bigint[], $11::text[]) \
         ON CONFLICT (property_id, pms_reservation_id) DO UPDATE SET guest_id = EXCLUDED.guest_id, \
         arrival_date = EXCLUDED.arrival_date, departure_date = EXCLUDED.departure_date, room = EXCLUDED.room, \
         rate_currency = EXCLUDED.rate_currency, rate_minor = EXCLUDED.rate_minor, spend_currency = EXCLUDED.spend_currency, \
         spend_minor = EXCLUDED.spend_minor, status = EXCLUDED.status, updated_at = now() \
         WHERE (stays.guest_id, stays.arrival_date, stays.departure_date, stays.room, stays.rate_currency, stays.rate_minor, \
                stays.spend_currency, stays.spend_minor, stays.status) \
         IS DISTINCT FROM (EXCLUDED.guest_id, EXCLUDED.arrival_date, EXCLUDED.departure_date, EXCLUDED.room, \
                EXCLUDED.rate_currency, EXCLUDED.rate_minor, EXCLUDED.spend_currency, EXCLUDED.spend_minor, EXCLUDED.status) \
         RETURNING (xmax = 0)",
    )
    .bind(rows.iter().map(|r| r.property_id.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.reservation.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.guest_id.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.arrival).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.departure).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.room.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.rate_currency.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.rate_minor).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.spend_currency.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.spend_minor).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let inserted = written.iter().filter(|new| **new).count();
    let earnings: Vec<Earning> = rows
        .iter()
        .filter(|r| r.status == "checked_out" && r.departure > r.arrival)
        .map(|r| Earning {
            guest_id: r.guest_id.clone(),
            source: format!("stay:{}/{}", r.property_id, r.reservation),
            nights: (r.departure - r.arrival).num_days(),
        })
        .collect();
    earn(&mut tx, &earnings).await?;
    tx.commit().await?;
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    Ok(pb::UpsertStaysResponse {
        inserted: count(inserted),
        updated: count(written.len() - inserted),
        unchanged: count(total - written.len()),
    })
}

/// The points one checked-out stay earns, identified by its ledger source.
struct Earning {
    guest_id: String,
    source: String,
    nights: i64,
}

/// Posts the earnings not posted before (by ledger source), with running balances.
///
/// Which earnings are new is read without the accounts' locks: an earning's source is its stay,
/// and the stay upsert earlier in this transaction holds that stay's row, so no other batch can
/// be posting the same earning meanwhile (it waits, then finds it posted). The balances then move
/// in one ordered upsert (accounts created with their first earning), which locks the accounts in
/// guest order (concurrent batches cannot deadlock) and returns the new balances; the ledger's
/// running balances are computed back from them.
async fn earn(conn: &mut PgConnection, earnings: &[Earning]) -> ApiResult<()> {
    if earnings.is_empty() {
        return Ok(());
    }
    let sources: Vec<&str> = earnings.iter().map(|e| e.source.as_str()).collect();
    let posted: HashSet<String> =
        sqlx::query_scalar("SELECT source FROM ledger WHERE source = ANY($1)")
            .bind(&sources)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    let fresh: Vec<&Earning> = earnings
        .iter()
        .filter(|e| !posted.contains(&e.source))
        .collect();
    if fresh.is_empty() {
        return Ok(());
    }
    let mut guests: Vec<&str> = fresh.iter().map(|e| e.guest_id.as_str()).collect();
    guests.sort_unstable();
    guests.dedup();
    let tiers: HashMap<String, String> = sqlx::query_as::<_, (String, String)>(
        "SELECT guest_id, tier FROM guests WHERE guest_id = ANY($1)",
    )
    .bind(&guests)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    let amounts: Vec<i64> = fresh
        .iter()
        .map(|e| earn_per_night(tiers.get(&e.guest_id).map_or("new", String::as_str)) * e.nights)
        .collect();
    let mut earned: BTreeMap<&str, i64> = BTreeMap::new();
    for (earning, amount) in fresh.iter().zip(&amounts) {
        *earned.entry(earning.guest_id.as_str()).or_default() += amount;
    }
    let (account_ids, totals): (Vec<&str>, Vec<i64>) = earned.iter().map(|(g, t)| (*g, *t)).unzip();
    let after: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO loyalty_accounts (guest_id, balance, lifetime_earned) \
         SELECT g, e, e FROM unnest($1::text[], $2::bigint[]) AS u(g, e) ORDER BY g \
         ON CONFLICT (guest_id) DO UPDATE SET balance = loyalty_accounts.balance + EXCLUDED.balance, \
         lifetime_earned = loyalty_accounts.lifetime_earned + EXCLUDED.lifetime_earned, last_activity_at = now() \
         RETURNING guest_id, balance",
    )
    .bind(&account_ids)
    .bind(&totals)
    .fetch_all(&mut *conn)
    .await?;
    // Each account's balance before this batch, then advanced entry by entry.
    let mut balances: HashMap<String, i64> = after
        .into_iter()
        .map(|(guest, balance)| {
            let before = balance - earned.get(guest.as_str()).copied().unwrap_or(0);
            (guest, before)
        })
        .collect();
    let mut balance_after = Vec::with_capacity(fresh.len());
    for (earning, amount) in fresh.iter().zip(&amounts) {
        let balance = balances.entry(earning.guest_id.clone()).or_insert(0);
        *balance += amount;
        balance_after.push(*balance);
    }
    sqlx::query(
        "INSERT INTO ledger (guest_id, kind, points, balance_after, reason, actor, source) \
         SELECT g, 'earn', p, b, 'stay', 'system', s FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[]) AS t(g, p, b, s)",
    )
    .bind(fresh.iter().map(|e| e.guest_id.as_str()).collect::<Vec<_>>())
    .bind(&amounts)
    .bind(&balance_after)
    .bind(fresh.iter().map(|e| e.source.as_str()).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
