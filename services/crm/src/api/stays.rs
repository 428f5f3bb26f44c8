//! PMS stays: bulk upserts idempotent by the PMS's own reservation id, and the points each
//! checked-out stay earns (once per stay, however often the feed is replayed). Set-based: one
//! statement upserts the whole batch, and one statement each posts its earnings and moves the
//! balances, so a 5,000-stay batch costs a handful of round trips. A stay the PMS corrects after
//! it earned (other nights, cancelled, another guest) moves its points to what it earns now
//! (`domain::stay_points`); the stay row records the nights it credited, the rate it was credited
//! at (the chain's earn rule for its guest's tier then) and how many postings it made, so a
//! correction reads exactly that stay's ledger entries.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use guestloop_kit::auth::principal;
use guestloop_kit::money::currency_code as currency;
use guestloop_kit::text::free_text;
use guestloop_kit::time::{calendar_date, from_timestamp};
use guestloop_kit::{tenancy, ApiError, ApiResult, FieldViolation};
use guestloop_proto::crm::v1 as pb;
use sqlx::PgConnection;
use tonic::Request;

use super::program::{self, Program};
use super::Api;
use crate::domain::identity::guest_id_shape;
use crate::domain::stay_points::{
    self, corrections, earning_nights, Credited, EarnRule, Earning, Rate,
};
use crate::domain::value::minor_unit_digits;

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
    /// Its place in the request, for errors.
    position: usize,
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
    /// When the PMS last changed the reservation, if the feed says.
    modified: Option<DateTime<Utc>>,
}

/// The most a stay's rate or spend may be, in minor units (ten billion in the currency's main
/// unit). Spend is summed over a guest's stays for tiers and customer value, and earns points:
/// an amount no stay reaches would overflow those sums.
pub const MAX_STAY_MINOR_UNITS: i64 = guestloop_kit::money::MAX_MINOR_UNITS;

/// The longest property id a stay may name (guest ids: [`guest_id_shape`]).
const MAX_ID_CHARS: usize = 100;
/// The longest room a stay may name.
const MAX_ROOM_CHARS: usize = 64;

/// The earliest date a stay may name: history a PMS migration brings along, not a year typo
/// of 0202.
const FIRST_STAY_DATE: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

/// How far ahead a reservation may run.
const LATEST_STAY_AHEAD: chrono::Duration = chrono::Duration::days(5 * 366);

/// How far past today's UTC date a checked-out stay may depart: a property east of UTC is
/// already on the next day.
const DEPARTED_SLACK_DAYS: i64 = 1;

/// How far ahead of CRM's clock a PMS's modification time may be (clock skew). A time further
/// ahead would hold the reservation against every later version.
const MODIFIED_SLACK: chrono::Duration = chrono::Duration::hours(1);

/// A stay's modification time: within the timestamp's range and not in the future.
fn modified_time(
    given: Option<&prost_types::Timestamp>,
    field: &str,
    now: DateTime<Utc>,
    v: &mut Vec<FieldViolation>,
) -> Option<DateTime<Utc>> {
    match from_timestamp(field, given?) {
        Ok(at) if at > now + MODIFIED_SLACK => {
            v.push(FieldViolation::new(
                field,
                format!("is in the future (after {})", now + MODIFIED_SLACK),
            ));
            None
        }
        Ok(at) => Some(at),
        Err(ApiError::InvalidArgument(faults)) => {
            v.extend(faults);
            None
        }
        Err(_) => None,
    }
}

/// Validates every stay; violations name the entry and field. `today` is the UTC date: a stay
/// checked out must have departed by then (a PMS moves the departure date to the day the guest
/// left early), so a feed cannot earn points for nights still to come.
fn validate(stays: Vec<pb::Stay>, now: DateTime<Utc>) -> Result<Vec<Row>, Vec<FieldViolation>> {
    let today = now.date_naive();
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
        if stay.property_id.len() > MAX_ID_CHARS {
            v.push(FieldViolation::new(
                field("property_id"),
                format!("must be at most {MAX_ID_CHARS} characters"),
            ));
        }
        if stay.guest_id.is_empty() {
            v.push(FieldViolation::new(field("guest_id"), "is required"));
        } else if let Err(problem) = guest_id_shape(&stay.guest_id) {
            v.push(FieldViolation::new(field("guest_id"), problem));
        }
        let room = free_text(&stay.room, &field("room"), MAX_ROOM_CHARS, false, &mut v);
        let modified = modified_time(
            stay.pms_modified_time.as_ref(),
            &field("pms_modified_time"),
            now,
            &mut v,
        );
        let mut rate = stay.rate.unwrap_or_default();
        let mut spend = stay.spend.unwrap_or_default();
        for (name, money) in [("rate", &mut rate), ("spend", &mut spend)] {
            if money.minor_units < 0 {
                v.push(FieldViolation::new(
                    field(&format!("{name}.minor_units")),
                    "must not be negative",
                ));
            } else if money.minor_units > MAX_STAY_MINOR_UNITS {
                v.push(FieldViolation::new(
                    field(&format!("{name}.minor_units")),
                    format!(
                        "must be at most {MAX_STAY_MINOR_UNITS} (a stay's rate or spend, in minor units)"
                    ),
                ));
            }
            match currency(&money.currency_code, money.minor_units) {
                Ok(code) => money.currency_code = code,
                Err(why) => v.push(FieldViolation::new(
                    field(&format!("{name}.currency_code")),
                    why,
                )),
            }
        }
        let arrival = calendar_date(
            &stay.arrival_date,
            &field("arrival_date"),
            FIRST_STAY_DATE,
            today + LATEST_STAY_AHEAD,
        );
        let departure = calendar_date(
            &stay.departure_date,
            &field("departure_date"),
            FIRST_STAY_DATE,
            today + LATEST_STAY_AHEAD,
        );
        if let (Err(problem), _) | (Ok(_), Err(problem)) = (&arrival, &departure) {
            v.push(problem.clone());
            continue;
        }
        match (arrival, departure, stay_status(stay.status)) {
            (Ok(arrival), Ok(departure), Some(_))
                if (departure - arrival).num_days() > MAX_NIGHTS =>
            {
                v.push(FieldViolation::new(
                    field("departure_date"),
                    format!("a stay is at most {MAX_NIGHTS} nights"),
                ))
            }
            (Ok(arrival), Ok(departure), Some("checked_out"))
                if departure >= arrival
                    && (departure - today).num_days() > DEPARTED_SLACK_DAYS =>
            {
                v.push(FieldViolation::new(
                    field("departure_date"),
                    format!(
                        "a checked-out stay must have departed (by {}); send the day the guest left",
                        today + chrono::Duration::days(DEPARTED_SLACK_DAYS)
                    ),
                ))
            }
            (Ok(arrival), Ok(departure), Some(status)) if departure >= arrival => rows.push(Row {
                position: i,
                property_id: stay.property_id,
                reservation: stay.pms_reservation_id,
                guest_id: stay.guest_id,
                arrival,
                departure,
                room,
                rate_currency: rate.currency_code,
                rate_minor: rate.minor_units,
                spend_currency: spend.currency_code,
                spend_minor: spend.minor_units,
                status,
                modified,
            }),
            (Ok(_), Ok(_), Some(_)) => v.push(FieldViolation::new(
                field("departure_date"),
                "must not be before arrival_date",
            )),
            (_, _, None) => v.push(FieldViolation::new(field("status"), "is required")),
            (Err(_), _, _) | (_, Err(_), _) => {}
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
    let now = Utc::now();
    let today = now.date_naive();
    let mut rows = validate(stays, now).map_err(ApiError::InvalidArgument)?;
    // One order for every batch, so concurrent batches lock shared rows in the same order.
    rows.sort_by(|a, b| (&a.property_id, &a.reservation).cmp(&(&b.property_id, &b.reservation)));
    let total = rows.len();
    let mut properties: Vec<&str> = rows.iter().map(|r| r.property_id.as_str()).collect();
    properties.dedup();
    // A merge or an erasure that commits between reading the guests and locking them sends the
    // batch round again; one that keeps doing so is answered ABORTED for the client to retry.
    let mut attempts = 0;
    let (mut tx, guests) = loop {
        let mut tx = api.context.pool.begin().await?;
        // A PMS feed is the first write most properties see in CRM: it registers them under
        // the caller's chain, and refuses a property another chain holds.
        tenancy::claim_properties(&mut tx, &principal, &properties).await?;
        if let Some(guests) = resolve_guests(&mut tx, &rows).await? {
            break (tx, guests);
        }
        tx.rollback().await?;
        attempts += 1;
        if attempts == MAX_RESOLVE_ATTEMPTS {
            return Err(ApiError::Aborted(
                "the guests of this batch kept being merged or erased meanwhile; retry the call"
                    .into(),
            ));
        }
    };
    // A stay earns for a guest of its property's chain, never another's (a PMS id the chain
    // does not hold yet earns as a new member's): the caller's chain, or for a service (which
    // acts for every chain) the chain that holds the property.
    let caller = tenancy::caller_chain(&principal);
    let owners = match caller {
        Some(_) => HashMap::new(),
        None => tenancy::chains_of(&mut tx, &properties).await?,
    };
    let foreign = rows.iter().find(|r| {
        let chain = caller.or_else(|| owners.get(&r.property_id).map(String::as_str));
        guests
            .get(&r.guest_id)
            .zip(chain)
            .is_some_and(|(g, chain)| g.chain != chain)
    });
    if let Some(row) = foreign {
        return Err(ApiError::PermissionDenied(format!(
            "stays[{}]: guest {} belongs to another chain",
            row.position, row.guest_id
        )));
    }
    for row in &mut rows {
        if let Some(guest) = guests.get(&row.guest_id) {
            row.guest_id.clone_from(&guest.current);
        }
    }
    let chain_of = |property: &str| caller.or_else(|| owners.get(property).map(String::as_str));
    let chains = account_chains(&rows, &guests, chain_of)?;
    // What each stay offers to earn under its chain's program, and what it earns if it is new:
    // its nights and spend at its guest's tier rate, checked out only.
    let programs = programs_of(&mut tx, rows.iter().map(|r| chain_of(&r.property_id))).await?;
    let offers: Vec<Offer> = rows
        .iter()
        .map(|r| {
            let program = chain_of(&r.property_id)
                .and_then(|c| programs.get(c))
                .unwrap_or(&programs[""]);
            Offer::of(r, program)
        })
        .collect();
    let first_rates: Vec<Rate> = rows
        .iter()
        .zip(&offers)
        .map(|(r, o)| o.rule.rate(tier_of(&guests, &r.guest_id)))
        .collect();
    let first_points: Vec<i64> = first_rates
        .iter()
        .zip(&offers)
        .map(|(rate, o)| rate.points(&o.earning))
        .collect();
    let written: Vec<Written> = sqlx::query_as(&format!(
        "INSERT INTO stays (property_id, pms_reservation_id, guest_id, arrival_date, departure_date, room, rate_currency, \
         rate_minor, spend_currency, spend_minor, status, earned_nights, earn_postings, earn_rate_night, earn_rate_spend, \
         pms_modified_at) \
         SELECT u.p, u.r, u.g, u.a, u.d, u.rm, u.rc, u.rmi, u.sc, u.smi, u.st, \
                CASE WHEN u.pts > 0 THEN u.d - u.a ELSE 0 END, CASE WHEN u.pts > 0 THEN 1 ELSE 0 END, \
                CASE WHEN u.pts > 0 THEN u.ern END, CASE WHEN u.pts > 0 THEN u.ers END, u.m \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::date[], $6::text[], $7::text[], \
                $8::bigint[], $9::text[], $10::bigint[], $11::text[], $12::bigint[], $13::int[], $14::int[], \
                $15::timestamptz[]) \
              AS u(p, r, g, a, d, rm, rc, rmi, sc, smi, st, pts, ern, ers, m) \
         ON CONFLICT (property_id, pms_reservation_id) DO UPDATE SET guest_id = {GUEST_KEPT}, \
         arrival_date = EXCLUDED.arrival_date, departure_date = EXCLUDED.departure_date, room = {ROOM_KEPT}, \
         rate_currency = EXCLUDED.rate_currency, rate_minor = EXCLUDED.rate_minor, spend_currency = EXCLUDED.spend_currency, \
         spend_minor = EXCLUDED.spend_minor, status = EXCLUDED.status, \
         pms_modified_at = coalesce(EXCLUDED.pms_modified_at, stays.pms_modified_at), updated_at = now() \
         WHERE (stays.guest_id, stays.arrival_date, stays.departure_date, stays.room, stays.rate_currency, stays.rate_minor, \
                stays.spend_currency, stays.spend_minor, stays.status, stays.pms_modified_at) \
         IS DISTINCT FROM ({GUEST_KEPT}, EXCLUDED.arrival_date, EXCLUDED.departure_date, {ROOM_KEPT}, \
                EXCLUDED.rate_currency, EXCLUDED.rate_minor, EXCLUDED.spend_currency, EXCLUDED.spend_minor, EXCLUDED.status, \
                coalesce(EXCLUDED.pms_modified_at, stays.pms_modified_at)) \
           AND (EXCLUDED.pms_modified_at < stays.pms_modified_at) IS NOT TRUE \
         RETURNING (xmax = 0) AS inserted, CASE WHEN xmax <> 0 THEN property_id END AS property_id, \
         CASE WHEN xmax <> 0 THEN pms_reservation_id END AS pms_reservation_id, \
         CASE WHEN xmax <> 0 THEN guest_id END AS guest_id, earned_nights, earn_postings, \
         CASE WHEN xmax <> 0 THEN earn_rate_night END AS earn_rate_night, \
         CASE WHEN xmax <> 0 THEN earn_rate_spend END AS earn_rate_spend"
    ))
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
    .bind(&first_points)
    .bind(first_rates.iter().map(|r| column(r.per_night)).collect::<Vec<_>>())
    .bind(first_rates.iter().map(|r| column(r.per_spend_unit)).collect::<Vec<_>>())
    // Feeds without modification times send none: unnest pads the missing column with NULLs.
    .bind(if rows.iter().any(|r| r.modified.is_some()) {
        rows.iter().map(|r| r.modified).collect::<Vec<_>>()
    } else {
        Vec::new()
    })
    .fetch_all(&mut *tx)
    .await?;
    let inserted = written.iter().filter(|w| w.inserted).count();
    // Changed stays (their keys come back; new ones answer only that they are new) that earned
    // before or earn now settle what they hold.
    let mut changed: Vec<(&Written, usize)> = Vec::new();
    if inserted < written.len() {
        let index: HashMap<(&str, &str), usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.property_id.as_str(), r.reservation.as_str()), i))
            .collect();
        for w in written.iter().filter(|w| !w.inserted) {
            let (Some(property), Some(reservation)) = (&w.property_id, &w.pms_reservation_id)
            else {
                continue;
            };
            if let Some(&i) = index.get(&(property.as_str(), reservation.as_str())) {
                if w.earn_postings > 0 || offers[i].earning.nights > 0 {
                    changed.push((w, i));
                }
            }
        }
    }
    // Stays CRM holds a later version of were left alone: they post nothing either.
    let stale = if rows.iter().any(|r| r.modified.is_some()) && written.len() < total {
        stale_rows(&mut tx, &rows).await?
    } else {
        HashSet::new()
    };
    settle_care_of_corrected(&mut tx, &written, today).await?;
    let settled: HashSet<usize> = changed.iter().map(|(_, i)| *i).collect();
    // Every other stay that earns posts its first points unless it has (an unchanged stay has,
    // so its first posting is found): the new ones.
    let mut postings: Vec<Posting> = rows
        .iter()
        .zip(&first_points)
        .enumerate()
        .filter(|(i, (_, points))| **points > 0 && !settled.contains(i) && !stale.contains(i))
        .map(|(_, (r, points))| Posting {
            guest_id: r.guest_id.clone(),
            points: *points,
            source: stay_points::source(&r.property_id, &r.reservation, 0),
            reason: "stay",
        })
        .collect();
    // Only an unchanged stay can have posted already: a stay's postings are written with its
    // row, which is never deleted, so a stay new to this batch has none. A batch that wrote
    // every stay it holds (a first import) has nothing to look up.
    if written.len() < total {
        skip_posted(&mut tx, &mut postings).await?;
    }
    let corrections = if changed.is_empty() {
        Vec::new()
    } else {
        settle_changed(&mut tx, &rows, &offers, &changed, &guests).await?
    };
    // Credits alone (new stays, stays checked out since, more nights) take the one ordered
    // upsert; give-backs need the balances first.
    let credits_only = corrections.iter().all(|p| p.points > 0);
    postings.extend(corrections);
    if credits_only {
        credit(&mut tx, &postings, &chains).await?;
    } else {
        post_locked(&mut tx, &postings, &chains).await?;
    }
    tx.commit().await?;
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    Ok(pb::UpsertStaysResponse {
        inserted: count(inserted),
        updated: count(written.len() - inserted),
        unchanged: count(total - written.len() - stale.len()),
        stale: count(stale.len()),
    })
}

/// The batch's stays (their places in `rows`) the upsert left alone because CRM holds a later
/// version. The upsert locked every stay it met, written or not, so none changed since.
async fn stale_rows(conn: &mut PgConnection, rows: &[Row]) -> ApiResult<HashSet<usize>> {
    let stale: Vec<i64> = sqlx::query_scalar(
        "SELECT u.i - 1 FROM unnest($1::text[], $2::text[], $3::timestamptz[]) \
              WITH ORDINALITY AS u(p, r, m, i) \
         JOIN stays s ON s.property_id = u.p AND s.pms_reservation_id = u.r \
         WHERE u.m < s.pms_modified_at",
    )
    .bind(
        rows.iter()
            .map(|r| r.property_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|r| r.reservation.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.modified).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    Ok(stale
        .into_iter()
        .filter_map(|i| usize::try_from(i).ok())
        .collect())
}

/// Open care tasks the PMS's corrections leave without a stay to stand on go at once: those of
/// stays it has just cancelled or marked no-show, whatever day they were due, and those due
/// before the days the scheduled run reconciles (yesterday on, UTC) whose stay now belongs to
/// another guest or no longer spans their day. A task for a guest who never came, or for a
/// guest who was never there that day, would otherwise wait on a past day's list for good.
/// Done tasks are history. Tasks due from yesterday on are corrected (kept, moved to the new
/// guest) by the run for their day.
async fn settle_care_of_corrected(
    conn: &mut PgConnection,
    written: &[Written],
    today: NaiveDate,
) -> ApiResult<()> {
    let (properties, reservations): (Vec<&str>, Vec<&str>) = written
        .iter()
        .filter_map(|w| Some((w.property_id.as_deref()?, w.pms_reservation_id.as_deref()?)))
        .unzip();
    if properties.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "DELETE FROM care_tasks t USING unnest($1::text[], $2::text[]) AS u(p, r), stays s \
         WHERE t.property_id = u.p AND t.pms_reservation_id = u.r AND NOT t.done \
           AND s.property_id = u.p AND s.pms_reservation_id = u.r \
           AND (s.status IN ('cancelled', 'no_show') \
                OR t.due_date < $3 AND (t.guest_id <> s.guest_id OR t.due_date < s.arrival_date \
                                        OR t.due_date > s.departure_date))",
    )
    .bind(&properties)
    .bind(&reservations)
    .bind(today - chrono::Duration::days(1))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The guest a corrected stay keeps: the PMS's, unless the stay belongs to an erased guest's
/// pseudonym (the PMS still knows the original id; writing it back would re-identify the stay).
const GUEST_KEPT: &str =
    "CASE WHEN EXISTS (SELECT 1 FROM guests e WHERE e.guest_id = stays.guest_id AND e.erased) \
     THEN stays.guest_id ELSE EXCLUDED.guest_id END";

/// The room a written stay keeps: the feed's, except on an erased guest's stay, whose room
/// erasure blanked (with the guest kept as in [`GUEST_KEPT`], a resend would otherwise put it
/// back). The feed's own guest (the common case) is decided first, without a lookup.
const ROOM_KEPT: &str = "CASE WHEN stays.guest_id = EXCLUDED.guest_id THEN EXCLUDED.room \
     WHEN EXISTS (SELECT 1 FROM guests e WHERE e.guest_id = stays.guest_id AND e.erased) THEN stays.room \
     ELSE EXCLUDED.room END";

/// A stay the upsert wrote: whether it is new, and what it had credited before (the upsert
/// never changes those columns; new stays return what they were inserted with).
#[derive(sqlx::FromRow)]
struct Written {
    inserted: bool,
    /// Key and guest (the one it belongs to now) of a changed stay; none for a new one.
    property_id: Option<String>,
    pms_reservation_id: Option<String>,
    guest_id: Option<String>,
    earned_nights: i32,
    earn_postings: i32,
    earn_rate_night: Option<i32>,
    earn_rate_spend: Option<i32>,
}

impl Written {
    /// What the stay credited before this batch.
    fn credited(&self) -> Credited {
        Credited {
            nights: i64::from(self.earned_nights),
            rate: self.earn_rate_night.zip(self.earn_rate_spend).map(
                |(per_night, per_spend_unit)| Rate {
                    per_night: i64::from(per_night),
                    per_spend_unit: i64::from(per_spend_unit),
                },
            ),
        }
    }
}

/// What a stay of the batch offers to earn, and the earn rule of its chain's program.
struct Offer {
    earning: Earning,
    rule: EarnRule,
}

impl Offer {
    fn of(row: &Row, program: &Program) -> Offer {
        let currency = program.tiers.spend_currency.as_str();
        let counts = !currency.is_empty() && row.spend_currency == currency;
        Offer {
            earning: Earning {
                nights: earning_nights(row.status, (row.departure - row.arrival).num_days()),
                spend_minor: if counts { row.spend_minor } else { 0 },
                spend_digits: minor_unit_digits(currency).unsigned_abs(),
            },
            rule: program.earn,
        }
    }
}

/// The programs of the chains the batch's stays earn under, by chain id; `""` holds the
/// defaults, for stays of no chain.
async fn programs_of<'a>(
    conn: &mut PgConnection,
    chains: impl Iterator<Item = Option<&'a str>>,
) -> ApiResult<HashMap<String, Program>> {
    let mut programs = HashMap::from([(String::new(), Program::default())]);
    let wanted: HashSet<&str> = chains.flatten().collect();
    for chain in wanted {
        let (program, _) = program::load(&mut *conn, chain).await?;
        programs.insert(chain.to_string(), program);
    }
    Ok(programs)
}

/// A guest a stay names: the profile it leads to now (a merged profile's survivor, as the merge
/// moved its stays), that profile's tier and its chain. Guests CRM does not hold are absent
/// (tier new).
struct Resolved {
    current: String,
    tier: String,
    chain: String,
}

/// How often a batch reads its guests again after a merge or an erasure changed them under it.
const MAX_RESOLVE_ATTEMPTS: u32 = 5;

/// The guests the stays name, resolved through merge redirects, with the profiles they lead to
/// locked `FOR KEY SHARE` until the batch commits. A merge or an erasure locks both profiles
/// `FOR UPDATE`, so it waits for this batch (then moves what the batch wrote) or committed
/// before the lock was granted; the locked rows are read again, and `None` answers that one
/// did (a profile now merged or gone): the caller starts over. The lock is the weakest that
/// conflicts with those two: the customer-value batch and tier evaluation update guests (`FOR
/// NO KEY UPDATE`) without waiting for it, and a merge flattening older redirects updates the
/// ids merged before, which are not locked here. The profiles are locked in id order, in one
/// statement, before any stay or account.
///
/// Feeds rarely name a merged profile, so the profiles named are locked and read at once, in a
/// savepoint. When none of them is merged that is the answer: one statement instead of a read
/// and a lock. When one is, the savepoint is rolled back, which releases those locks before
/// any survivor is locked (holding a merged id while waiting for its survivor could deadlock
/// with an erasure, which locks both in id order), and the guests are resolved in two steps.
async fn resolve_guests(
    conn: &mut PgConnection,
    rows: &[Row],
) -> ApiResult<Option<HashMap<String, Resolved>>> {
    let mut ids: Vec<&str> = rows.iter().map(|r| r.guest_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    sqlx::query("SAVEPOINT named_guests")
        .execute(&mut *conn)
        .await?;
    let named: Vec<(String, Option<String>, String, String)> = sqlx::query_as(
        "SELECT guest_id, merged_into, chain_id, tier FROM guests WHERE guest_id = ANY($1) \
         ORDER BY guest_id FOR KEY SHARE",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    if named
        .iter()
        .all(|(_, merged_into, _, _)| merged_into.is_none())
    {
        sqlx::query("RELEASE SAVEPOINT named_guests")
            .execute(&mut *conn)
            .await?;
        return Ok(Some(
            named
                .into_iter()
                .map(|(id, _, chain, tier)| {
                    let resolved = Resolved {
                        current: id.clone(),
                        tier,
                        chain,
                    };
                    (id, resolved)
                })
                .collect(),
        ));
    }
    sqlx::query("ROLLBACK TO SAVEPOINT named_guests")
        .execute(&mut *conn)
        .await?;
    resolve_through_redirects(conn, &ids).await
}

/// [`resolve_guests`] for a batch naming merged profiles: reads the profiles named, then locks
/// the profiles they lead to and checks that nothing changed in between.
async fn resolve_through_redirects(
    conn: &mut PgConnection,
    ids: &[&str],
) -> ApiResult<Option<HashMap<String, Resolved>>> {
    let found: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT guest_id, merged_into, chain_id FROM guests WHERE guest_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut current: Vec<&str> = found
        .iter()
        .map(|(id, merged_into, _)| merged_into.as_deref().unwrap_or(id))
        .collect();
    current.sort_unstable();
    current.dedup();
    let locked: HashMap<String, (Option<String>, String)> = if current.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as::<_, (String, Option<String>, String)>(
            "SELECT guest_id, merged_into, tier FROM guests WHERE guest_id = ANY($1) \
             ORDER BY guest_id FOR KEY SHARE",
        )
        .bind(&current)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(id, merged_into, tier)| (id, (merged_into, tier)))
        .collect()
    };
    let mut resolved: HashMap<String, Resolved> = HashMap::with_capacity(found.len());
    for (id, merged_into, chain) in &found {
        let survivor = merged_into.as_deref().unwrap_or(id);
        let Some((None, tier)) = locked.get(survivor) else {
            // Merged away or erased since it was read.
            return Ok(None);
        };
        let entry = |current: &str| Resolved {
            current: current.to_string(),
            tier: tier.clone(),
            chain: chain.clone(),
        };
        if merged_into.is_some() {
            resolved.insert(survivor.to_string(), entry(survivor));
        }
        resolved.insert(id.clone(), entry(survivor));
    }
    Ok(Some(resolved))
}

/// The chain each account a batch credits belongs to (keyed by resolved guest id): that of its
/// stays' properties (`None`: a service's stays at properties no chain holds), with the first
/// stay naming it, for errors. Known guests' chains were checked against their profiles; an id
/// CRM holds no profile of is refused when the batch has it stay at two chains' properties.
fn account_chains<'a>(
    rows: &[Row],
    guests: &HashMap<String, Resolved>,
    chain_of: impl Fn(&str) -> Option<&'a str>,
) -> ApiResult<HashMap<String, AccountChain>> {
    let mut chains: HashMap<String, AccountChain> = HashMap::new();
    for row in rows {
        let chain = chain_of(&row.property_id);
        let known = chains
            .entry(row.guest_id.clone())
            .or_insert_with(|| AccountChain {
                chain: None,
                member: guests.contains_key(&row.guest_id),
                position: row.position,
            });
        match (known.chain.as_deref(), chain) {
            (Some(a), Some(b)) if a != b => {
                return Err(ApiError::PermissionDenied(format!(
                    "stays[{}]: guest {} has stays at two chains' properties in this batch",
                    row.position, row.guest_id
                )))
            }
            (None, Some(b)) => known.chain = Some(b.to_string()),
            _ => {}
        }
    }
    Ok(chains)
}

struct AccountChain {
    chain: Option<String>,
    /// Whether CRM holds the guest's profile.
    member: bool,
    /// The first stay of the batch that credits the account.
    position: usize,
}

/// Refuses the batch when an account it credited belongs to another chain than its stays'
/// (`accounts`: guest id and chain as the account upsert left them, which claims an account of
/// no chain for the stays' one). The account's row lock is held, so no other batch can claim
/// it meanwhile.
fn check_account_chains<'a>(
    accounts: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    chains: &HashMap<String, AccountChain>,
) -> ApiResult<()> {
    for (guest, chain) in accounts {
        let Some(expected) = chains.get(guest) else {
            continue;
        };
        if let (Some(held), Some(wanted)) = (chain, expected.chain.as_deref()) {
            if held != wanted {
                return Err(ApiError::PermissionDenied(format!(
                    "stays[{}]: guest {guest} belongs to another chain",
                    expected.position
                )));
            }
        }
    }
    Ok(())
}

/// The tier a (resolved) guest earns at; guests CRM does not hold earn as new.
fn tier_of<'a>(guests: &'a HashMap<String, Resolved>, guest_id: &str) -> &'a str {
    guests.get(guest_id).map_or("new", |g| g.tier.as_str())
}

/// One ledger posting of a stay: positive credits, negative gives back.
struct Posting {
    guest_id: String,
    points: i64,
    source: String,
    reason: &'static str,
}

/// Drops the postings whose source the ledger already holds.
async fn skip_posted(conn: &mut PgConnection, postings: &mut Vec<Posting>) -> ApiResult<()> {
    if postings.is_empty() {
        return Ok(());
    }
    let sources: Vec<&str> = postings.iter().map(|p| p.source.as_str()).collect();
    let posted: HashSet<String> =
        sqlx::query_scalar("SELECT source FROM ledger WHERE source = ANY($1)")
            .bind(&sources)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    if !posted.is_empty() {
        postings.retain(|p| !posted.contains(&p.source));
    }
    Ok(())
}

/// What the changed stays must post to hold what they earn now, numbered after their earlier
/// postings; records on each stay the nights it now credits and its postings.
async fn settle_changed(
    conn: &mut PgConnection,
    rows: &[Row],
    offers: &[Offer],
    changed: &[(&Written, usize)],
    guests: &HashMap<String, Resolved>,
) -> ApiResult<Vec<Posting>> {
    let mut sources: Vec<String> = Vec::new();
    let mut stay_of: HashMap<String, (usize, i32)> = HashMap::new();
    for (n, (w, i)) in changed.iter().enumerate() {
        // One past the recorded postings as well: a posting the stay row does not count yet
        // (written before the count existed) is held all the same, and numbered past.
        for k in 0..=w.earn_postings {
            let source = stay_points::source(&rows[*i].property_id, &rows[*i].reservation, k);
            stay_of.insert(source.clone(), (n, k));
            sources.push(source);
        }
    }
    let entries: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT source, guest_id, points FROM ledger WHERE source = ANY($1)")
            .bind(&sources)
            .fetch_all(&mut *conn)
            .await?;
    let mut held: Vec<BTreeMap<String, i64>> = vec![BTreeMap::new(); changed.len()];
    let mut next: Vec<i32> = changed.iter().map(|(w, _)| w.earn_postings).collect();
    for (source, guest, points) in entries {
        if let Some((n, k)) = stay_of.get(&source) {
            *held[*n].entry(guest).or_default() += points;
            next[*n] = next[*n].max(k + 1);
        }
    }
    let mut postings = Vec::new();
    let mut records = Records::default();
    for (n, (w, i)) in changed.iter().enumerate() {
        let row = &rows[*i];
        let offer = &offers[*i];
        let held: Vec<(String, i64)> = std::mem::take(&mut held[n]).into_iter().collect();
        // The guest the stored stay belongs to (the PMS's, or an erased guest's pseudonym).
        let guest = w.guest_id.as_deref().unwrap_or(&row.guest_id);
        let credited = w.credited();
        let settle = corrections(
            &held,
            credited,
            guest,
            &offer.earning,
            offer.rule.rate(tier_of(guests, guest)),
        );
        let next = next[n];
        for (k, (guest_id, points)) in settle.postings.iter().enumerate() {
            postings.push(Posting {
                guest_id: guest_id.clone(),
                points: *points,
                source: stay_points::source(
                    &row.property_id,
                    &row.reservation,
                    next + i32::try_from(k).unwrap_or(i32::MAX),
                ),
                reason: "stay corrected by the PMS",
            });
        }
        let now = i32::try_from(offer.earning.nights).unwrap_or(i32::MAX);
        let count = next + i32::try_from(settle.postings.len()).unwrap_or(i32::MAX);
        let rate = settle.rate;
        // A change that moves no points (a room) leaves the record as it is.
        if now != w.earned_nights || count != w.earn_postings || rate != credited.rate {
            records.keys.push(row.property_id.as_str());
            records.reservations.push(row.reservation.as_str());
            records.nights.push(now);
            records.counts.push(count);
            records.per_night.push(rate.map(|r| column(r.per_night)));
            records
                .per_spend_unit
                .push(rate.map(|r| column(r.per_spend_unit)));
        }
    }
    if records.keys.is_empty() {
        return Ok(postings);
    }
    sqlx::query(
        "UPDATE stays s SET earned_nights = u.n, earn_postings = u.c, earn_rate_night = u.rn, \
         earn_rate_spend = u.rs \
         FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::int[], $6::int[]) \
              AS u(p, r, n, c, rn, rs) \
         WHERE s.property_id = u.p AND s.pms_reservation_id = u.r",
    )
    .bind(&records.keys)
    .bind(&records.reservations)
    .bind(&records.nights)
    .bind(&records.counts)
    .bind(&records.per_night)
    .bind(&records.per_spend_unit)
    .execute(&mut *conn)
    .await?;
    Ok(postings)
}

/// A rate as its column holds it (rates are validated far below `i32::MAX`).
fn column(rate: i64) -> i32 {
    i32::try_from(rate).unwrap_or(i32::MAX)
}

/// What corrected stays record after settling, column by column.
#[derive(Default)]
struct Records<'a> {
    keys: Vec<&'a str>,
    reservations: Vec<&'a str>,
    nights: Vec<i32>,
    counts: Vec<i32>,
    per_night: Vec<Option<i32>>,
    per_spend_unit: Vec<Option<i32>>,
}

/// Posts credits only (new stays, corrections that only add): the balances move in one ordered
/// upsert (accounts created with their first earning), which locks the accounts in guest order
/// (concurrent batches cannot deadlock) and returns the new balances; the ledger's running
/// balances are computed back from them.
///
/// Which earnings are new was read without the accounts' locks: an earning's source is its stay,
/// and the stay upsert earlier in this transaction holds that stay's row, so no other batch can
/// be posting the same earning meanwhile (it waits, then finds it posted).
async fn credit(
    conn: &mut PgConnection,
    postings: &[Posting],
    chains: &HashMap<String, AccountChain>,
) -> ApiResult<()> {
    if postings.is_empty() {
        return Ok(());
    }
    let mut earned: BTreeMap<&str, i64> = BTreeMap::new();
    for posting in postings {
        *earned.entry(posting.guest_id.as_str()).or_default() += posting.points;
    }
    let (account_ids, totals): (Vec<&str>, Vec<i64>) = earned.iter().map(|(g, t)| (*g, *t)).unzip();
    let after: Vec<(String, i64, Option<String>)> = sqlx::query_as(
        "INSERT INTO loyalty_accounts (guest_id, balance, lifetime_earned, chain_id, member) \
         SELECT g, e, e, c, m FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bool[]) AS u(g, e, c, m) ORDER BY g \
         ON CONFLICT (guest_id) DO UPDATE SET balance = loyalty_accounts.balance + EXCLUDED.balance, \
         lifetime_earned = loyalty_accounts.lifetime_earned + EXCLUDED.lifetime_earned, last_activity_at = now(), \
         chain_id = coalesce(loyalty_accounts.chain_id, EXCLUDED.chain_id) \
         RETURNING guest_id, balance, chain_id",
    )
    .bind(&account_ids)
    .bind(&totals)
    .bind(chains_of(&account_ids, chains))
    .bind(members_of(&account_ids, chains))
    .fetch_all(&mut *conn)
    .await?;
    check_account_chains(
        after
            .iter()
            .map(|(guest, _, chain)| (guest.as_str(), chain.as_deref())),
        chains,
    )?;
    // Each account's balance before this batch, then advanced entry by entry.
    let mut balances: HashMap<String, i64> = after
        .into_iter()
        .map(|(guest, balance, _)| {
            let before = balance - earned.get(guest.as_str()).copied().unwrap_or(0);
            (guest, before)
        })
        .collect();
    let mut balance_after = Vec::with_capacity(postings.len());
    for posting in postings {
        let balance = balances.entry(posting.guest_id.clone()).or_insert(0);
        *balance += posting.points;
        balance_after.push(*balance);
    }
    let points: Vec<i64> = postings.iter().map(|p| p.points).collect();
    let postings: Vec<&Posting> = postings.iter().collect();
    insert_entries(conn, &postings, &points, &balance_after).await
}

/// Posts credits and give-backs (a batch with corrections): locks every account involved in
/// guest order first (creating missing ones) and reads the balances, then applies each posting
/// in turn. A give-back takes at most what the account holds: the balance never goes negative,
/// and what the guest already spent stays spent.
async fn post_locked(
    conn: &mut PgConnection,
    postings: &[Posting],
    chains: &HashMap<String, AccountChain>,
) -> ApiResult<()> {
    if postings.is_empty() {
        return Ok(());
    }
    let mut guests: Vec<&str> = postings.iter().map(|p| p.guest_id.as_str()).collect();
    guests.sort_unstable();
    guests.dedup();
    let locked: Vec<(String, i64, Option<String>)> = sqlx::query_as(
        "INSERT INTO loyalty_accounts (guest_id, chain_id, member) \
         SELECT g, c, m FROM unnest($1::text[], $2::text[], $3::bool[]) AS u(g, c, m) ORDER BY g \
         ON CONFLICT (guest_id) DO UPDATE SET last_activity_at = loyalty_accounts.last_activity_at, \
         chain_id = coalesce(loyalty_accounts.chain_id, EXCLUDED.chain_id) \
         RETURNING guest_id, balance, chain_id",
    )
    .bind(&guests)
    .bind(chains_of(&guests, chains))
    .bind(members_of(&guests, chains))
    .fetch_all(&mut *conn)
    .await?;
    check_account_chains(
        locked
            .iter()
            .map(|(guest, _, chain)| (guest.as_str(), chain.as_deref())),
        chains,
    )?;
    let mut balances: HashMap<String, i64> = locked
        .into_iter()
        .map(|(guest, balance, _)| (guest, balance))
        .collect();
    let mut kept = Vec::with_capacity(postings.len());
    let mut applied = Vec::with_capacity(postings.len());
    let mut balance_after = Vec::with_capacity(postings.len());
    let mut moved: BTreeMap<&str, (i64, bool)> = BTreeMap::new();
    for posting in postings {
        let balance = balances.entry(posting.guest_id.clone()).or_insert(0);
        let points = if posting.points < 0 {
            -(-posting.points).min(*balance)
        } else {
            posting.points
        };
        if points == 0 {
            continue;
        }
        *balance += points;
        let entry = moved.entry(posting.guest_id.as_str()).or_default();
        entry.0 += points;
        entry.1 |= points > 0;
        kept.push(posting);
        applied.push(points);
        balance_after.push(*balance);
    }
    let (mut ids, mut deltas, mut credited) = (Vec::new(), Vec::new(), Vec::new());
    for (guest, (delta, credit)) in &moved {
        ids.push(*guest);
        deltas.push(*delta);
        credited.push(*credit);
    }
    // A give-back is no activity of the guest's: only credits refresh it.
    sqlx::query(
        "UPDATE loyalty_accounts a SET balance = a.balance + u.d, lifetime_earned = greatest(0, a.lifetime_earned + u.d), \
         last_activity_at = CASE WHEN u.c THEN now() ELSE a.last_activity_at END \
         FROM unnest($1::text[], $2::bigint[], $3::bool[]) AS u(g, d, c) WHERE a.guest_id = u.g",
    )
    .bind(&ids)
    .bind(&deltas)
    .bind(&credited)
    .execute(&mut *conn)
    .await?;
    insert_entries(conn, &kept, &applied, &balance_after).await
}

/// Whether a profile holds each of `guests`' accounts, in their order, for an account upsert
/// (read when it creates an account; a profile created since flagged an existing one).
fn members_of(guests: &[&str], chains: &HashMap<String, AccountChain>) -> Vec<bool> {
    guests
        .iter()
        .map(|g| chains.get(*g).is_some_and(|c| c.member))
        .collect()
}

/// The chains of `guests`' accounts, in their order, for an account upsert.
fn chains_of<'a>(
    guests: &[&str],
    chains: &'a HashMap<String, AccountChain>,
) -> Vec<Option<&'a str>> {
    guests
        .iter()
        .map(|g| chains.get(*g).and_then(|c| c.chain.as_deref()))
        .collect()
}

async fn insert_entries(
    conn: &mut PgConnection,
    postings: &[&Posting],
    points: &[i64],
    balance_after: &[i64],
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO ledger (guest_id, kind, points, balance_after, reason, actor, source) \
         SELECT g, 'earn', p, b, r, 'system', s \
         FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[]) AS t(g, p, b, s, r)",
    )
    .bind(postings.iter().map(|p| p.guest_id.as_str()).collect::<Vec<_>>())
    .bind(points)
    .bind(balance_after)
    .bind(postings.iter().map(|p| p.source.as_str()).collect::<Vec<_>>())
    .bind(postings.iter().map(|p| p.reason).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stay(status: pb::StayStatus, arrival: &str, departure: &str) -> pb::Stay {
        pb::Stay {
            property_id: "lisbon".into(),
            pms_reservation_id: "R1".into(),
            guest_id: "G1".into(),
            arrival_date: arrival.into(),
            departure_date: departure.into(),
            status: status as i32,
            ..Default::default()
        }
    }

    /// Noon (UTC) of a day, as the clock a batch is validated against.
    fn noon(year: i32, month: u32, day: u32) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(year, month, day)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .unwrap_or_default()
            .and_utc()
    }

    fn fields(result: Result<Vec<Row>, Vec<FieldViolation>>) -> Vec<String> {
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    #[test]
    fn a_modification_time_may_run_ahead_of_the_clock_by_the_skew_only() {
        let now = noon(2026, 12, 7);
        let at = |t: DateTime<Utc>| pb::Stay {
            pms_modified_time: Some(prost_types::Timestamp {
                seconds: t.timestamp(),
                nanos: 0,
            }),
            ..stay(pb::StayStatus::CheckedOut, "2026-11-01", "2026-11-03")
        };
        let within = validate(vec![at(now + chrono::Duration::minutes(30))], now);
        assert!(within.is_ok_and(|rows| rows[0].modified.is_some()));
        assert_eq!(
            fields(validate(vec![at(now + chrono::Duration::hours(2))], now)),
            vec!["stays[0].pms_modified_time"]
        );
    }

    #[test]
    fn an_account_is_credited_for_one_chain_and_refused_for_another() -> Result<(), ApiError> {
        let today = noon(2026, 12, 7);
        let at = |property: &str, reservation: &str, guest: &str| pb::Stay {
            property_id: property.into(),
            pms_reservation_id: reservation.into(),
            guest_id: guest.into(),
            ..stay(pb::StayStatus::CheckedOut, "2026-11-01", "2026-11-03")
        };
        let rows = validate(
            vec![
                at("lisbon", "R1", "member"),
                at("lisbon", "R2", "walk-in"),
                at("unlisted", "R3", "walk-in"),
                at("unlisted", "R4", "nobody-knows"),
            ],
            today,
        )
        .map_err(ApiError::InvalidArgument)?;
        let known = HashMap::from([(
            "member".to_string(),
            Resolved {
                current: "member".into(),
                tier: "new".into(),
                chain: "alpha".into(),
            },
        )]);
        let chain_of = |property: &str| (property == "lisbon").then_some("alpha");
        let chains = account_chains(&rows, &known, chain_of)?;
        let summary = |g: &str| {
            chains
                .get(g)
                .map(|c| (c.chain.clone(), c.member, c.position))
        };
        assert_eq!(summary("member"), Some((Some("alpha".into()), true, 0)));
        assert_eq!(
            summary("walk-in"),
            Some((Some("alpha".into()), false, 1)),
            "a stay at a property of no known chain takes the other stay's chain"
        );
        assert_eq!(summary("nobody-knows"), Some((None, false, 3)));

        // One id at two chains' properties in one batch.
        let both = validate(
            vec![at("lisbon", "R1", "walk-in"), at("madrid", "R2", "walk-in")],
            today,
        )
        .map_err(ApiError::InvalidArgument)?;
        let two = account_chains(&both, &known, |p| {
            Some(if p == "lisbon" { "alpha" } else { "beta" })
        });
        assert!(
            matches!(&two, Err(ApiError::PermissionDenied(m)) if m.contains("stays[1]")),
            "{:?}",
            two.err()
        );

        // What the account upsert left: the batch's chain, none yet, or another's.
        let held = |chain: Option<&'static str>| [("walk-in", chain)];
        assert!(check_account_chains(held(Some("alpha")), &chains).is_ok());
        assert!(check_account_chains(held(None), &chains).is_ok());
        let refused = check_account_chains(held(Some("beta")), &chains);
        assert!(
            matches!(&refused, Err(ApiError::PermissionDenied(m)) if m.contains("stays[1]")),
            "{:?}",
            refused.err()
        );
        assert_eq!(
            members_of(&["member", "walk-in", "other"], &chains),
            [true, false, false]
        );
        Ok(())
    }

    #[test]
    fn amounts_carry_a_currency_code_kept_in_upper_case() {
        assert_eq!(currency("eur", 100), Ok("EUR".to_string()));
        assert_eq!(currency(" GBP ", 0), Ok("GBP".to_string()));
        assert_eq!(currency("", 0), Ok(String::new()));
        assert!(currency("", 100).is_err(), "an amount needs its currency");
        for bad in ["EURO", "E1R", "€", "US"] {
            assert!(currency(bad, 100).is_err(), "{bad}");
        }
        let today = noon(2026, 12, 7);
        let bad = pb::Stay {
            room: "4111 1111 1111 1111".into(),
            spend: Some(guestloop_proto::common::v1::Money {
                currency_code: "euro".into(),
                minor_units: 100,
            }),
            rate: Some(guestloop_proto::common::v1::Money {
                currency_code: "EUR".into(),
                minor_units: -1,
            }),
            guest_id: "G".repeat(crate::domain::identity::MAX_GUEST_ID_CHARS + 1),
            ..stay(pb::StayStatus::Booked, "2026-12-01", "2026-12-03")
        };
        assert_eq!(
            fields(validate(vec![bad], today)),
            [
                "stays[0].guest_id",
                "stays[0].room",
                "stays[0].rate.minor_units",
                "stays[0].spend.currency_code"
            ]
        );
    }

    #[test]
    fn amounts_no_stay_reaches_are_refused() {
        let today = noon(2026, 12, 7);
        let money = |minor_units| {
            Some(guestloop_proto::common::v1::Money {
                currency_code: "EUR".into(),
                minor_units,
            })
        };
        let priced = |rate, spend| pb::Stay {
            rate: money(rate),
            spend: money(spend),
            ..stay(pb::StayStatus::CheckedOut, "2026-12-01", "2026-12-03")
        };
        assert!(fields(validate(
            vec![priced(MAX_STAY_MINOR_UNITS, MAX_STAY_MINOR_UNITS)],
            today
        ))
        .is_empty());
        assert_eq!(
            fields(validate(
                vec![priced(MAX_STAY_MINOR_UNITS + 1, 9_000_000_000_000_000_000)],
                today
            )),
            ["stays[0].rate.minor_units", "stays[0].spend.minor_units"]
        );
    }

    #[test]
    fn a_stay_names_its_guest_by_an_id_a_profile_could_have() {
        let today = noon(2026, 12, 7);
        let naming = |guest_id: &str| {
            fields(validate(
                vec![pb::Stay {
                    guest_id: guest_id.into(),
                    ..stay(pb::StayStatus::Booked, "2026-12-01", "2026-12-03")
                }],
                today,
            ))
        };
        assert!(naming(&"G".repeat(128)).is_empty());
        assert!(naming("pms:HX-0042/7").is_empty());
        for refused in ["", "4111111111111111", "G 1", "g-1\nDROP", "gäst"] {
            assert_eq!(naming(refused), ["stays[0].guest_id"], "{refused:?}");
        }
    }

    #[test]
    fn a_checked_out_stay_must_have_departed() {
        let today = noon(2026, 12, 7);
        use pb::StayStatus::{Booked, CheckedOut, InHouse};
        for (status, departure, refused) in [
            (CheckedOut, "2026-12-07", false),
            // A property east of UTC is on the next day already.
            (CheckedOut, "2026-12-08", false),
            (CheckedOut, "2026-12-09", true),
            (CheckedOut, "2027-03-01", true),
            (InHouse, "2026-12-12", false),
            (Booked, "2027-03-01", false),
        ] {
            let found = fields(validate(vec![stay(status, "2026-12-01", departure)], today));
            let expected: Vec<String> = if refused {
                vec!["stays[0].departure_date".into()]
            } else {
                Vec::new()
            };
            assert_eq!(found, expected, "{status:?} departing {departure}");
        }
    }
}
