//! PMS stays: bulk upserts idempotent by the PMS's own reservation id, and the points each
//! checked-out stay earns (once per stay, however often the feed is replayed). Set-based: one
//! statement upserts the whole batch, and one statement each posts its earnings and moves the
//! balances, so a 5,000-stay batch costs a handful of round trips.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use guestloop_kit::auth::principal;
use guestloop_kit::{ApiError, ApiResult, FieldViolation};
use guestloop_proto::crm::v1 as pb;
use sqlx::{Connection, PgConnection};
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

/// Locks the loyalty accounts of `guests` (sorted, distinct), creating the missing ones, and
/// returns their balances. Every transaction takes the locks in guest order, so concurrent
/// batches cannot deadlock. Most batches earn for members who already have an account: for them
/// one ordered `SELECT … FOR UPDATE` does it all. When some account is missing, the locks just
/// taken are given back (rolled back to a savepoint) before the accounts are created, because
/// creating one while holding locks on guests ordered after it would break the order; then the
/// accounts are created and all are locked again, in order.
async fn lock_accounts(
    conn: &mut PgConnection,
    guests: &[&str],
) -> ApiResult<HashMap<String, i64>> {
    const LOCK: &str = "SELECT guest_id, balance FROM loyalty_accounts WHERE guest_id = ANY($1) \
                        ORDER BY guest_id FOR UPDATE";
    let mut savepoint = conn.begin().await?;
    let found: Vec<(String, i64)> = sqlx::query_as(LOCK)
        .bind(guests)
        .fetch_all(&mut *savepoint)
        .await?;
    if found.len() == guests.len() {
        savepoint.commit().await?;
        return Ok(found.into_iter().collect());
    }
    savepoint.rollback().await?;
    sqlx::query(
        "INSERT INTO loyalty_accounts (guest_id) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT DO NOTHING",
    )
    .bind(guests)
    .execute(&mut *conn)
    .await?;
    let locked: Vec<(String, i64)> = sqlx::query_as(LOCK)
        .bind(guests)
        .fetch_all(&mut *conn)
        .await?;
    Ok(locked.into_iter().collect())
}

/// Posts the earnings not posted before (by ledger source), with running balances, under the
/// accounts' row locks (taken in guest order).
async fn earn(conn: &mut PgConnection, earnings: &[Earning]) -> ApiResult<()> {
    if earnings.is_empty() {
        return Ok(());
    }
    let mut guests: Vec<&str> = earnings.iter().map(|e| e.guest_id.as_str()).collect();
    guests.sort_unstable();
    guests.dedup();
    let mut balances = lock_accounts(conn, &guests).await?;
    let sources: Vec<&str> = earnings.iter().map(|e| e.source.as_str()).collect();
    let posted: HashSet<String> =
        sqlx::query_scalar("SELECT source FROM ledger WHERE source = ANY($1)")
            .bind(&sources)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    let tiers: HashMap<String, String> = sqlx::query_as::<_, (String, String)>(
        "SELECT guest_id, tier FROM guests WHERE guest_id = ANY($1)",
    )
    .bind(&guests)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    let (mut ids, mut points, mut after, mut entry_sources) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut earned: BTreeMap<&str, i64> = BTreeMap::new();
    for earning in earnings.iter().filter(|e| !posted.contains(&e.source)) {
        let amount = earn_per_night(tiers.get(&earning.guest_id).map_or("new", String::as_str))
            * earning.nights;
        let balance = balances.entry(earning.guest_id.clone()).or_insert(0);
        *balance += amount;
        ids.push(earning.guest_id.as_str());
        points.push(amount);
        after.push(*balance);
        entry_sources.push(earning.source.as_str());
        *earned.entry(earning.guest_id.as_str()).or_default() += amount;
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO ledger (guest_id, kind, points, balance_after, reason, actor, source) \
         SELECT g, 'earn', p, b, 'stay', 'system', s FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[]) AS t(g, p, b, s)",
    )
    .bind(&ids)
    .bind(&points)
    .bind(&after)
    .bind(&entry_sources)
    .execute(&mut *conn)
    .await?;
    let (account_ids, totals): (Vec<&str>, Vec<i64>) = earned.into_iter().unzip();
    let new_balances: Vec<i64> = account_ids
        .iter()
        .map(|g| balances.get(*g).copied().unwrap_or(0))
        .collect();
    sqlx::query(
        "UPDATE loyalty_accounts a SET balance = u.balance, lifetime_earned = a.lifetime_earned + u.earned, \
         last_activity_at = now() FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(guest_id, balance, earned) \
         WHERE a.guest_id = u.guest_id",
    )
    .bind(&account_ids)
    .bind(&new_balances)
    .bind(&totals)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stay(property: &str, arrival: &str, departure: &str) -> pb::Stay {
        pb::Stay {
            property_id: property.into(),
            pms_reservation_id: "R1".into(),
            guest_id: "g-1".into(),
            arrival_date: arrival.into(),
            departure_date: departure.into(),
            status: pb::StayStatus::CheckedOut as i32,
            ..Default::default()
        }
    }

    fn violations(stays: Vec<pb::Stay>) -> Vec<(String, String)> {
        match validate(stays) {
            Ok(_) => Vec::new(),
            Err(v) => v.into_iter().map(|v| (v.field, v.description)).collect(),
        }
    }

    #[test]
    fn stays_are_at_most_a_year_long() {
        assert!(violations(vec![stay("berlin", "2026-01-01", "2027-01-02")]).is_empty());
        let v = violations(vec![stay("berlin", "2026-01-01", "9999-12-31")]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].0, "stays[0].departure_date");
        let v = violations(vec![stay("berlin", "2026-01-01", "2027-01-03")]);
        assert_eq!(v.len(), 1, "367 nights: {v:?}");
    }

    #[test]
    fn stays_name_their_property() {
        let v = violations(vec![
            stay("berlin", "2026-01-01", "2026-01-03"),
            stay("", "2026-01-01", "2026-01-03"),
        ]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].0, "stays[1].property_id");
    }
}
