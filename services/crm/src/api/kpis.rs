//! Loyalty and guest-memory KPIs: members, tiers and segments, points liability and redemption,
//! repeat stays, data quality, personalisation of high-value guests, and the recovery paradox
//! (do guests whose failure was recovered come back more often than those whose was not?).
//! Every rate comes with its numerator and denominator.

use chrono::Duration;
use guestloop_kit::auth::{principal, PropertyScope};
use guestloop_kit::tenancy;
use guestloop_kit::time::required_period;
use guestloop_kit::ApiResult;
use guestloop_proto::crm::v1 as pb;
use tonic::Request;

use super::Api;

/// Guests of the chain in scope (`columns` of `guests g`; reads that only join on the ids take
/// just `g.guest_id`): `$1` chain, `$2` property ids (empty: all). With properties named, the
/// guests who stayed at one of them: a stay there checked out or in house (a booking, even one
/// whose arrival has passed, a cancelled reservation or a no-show is no stay). The scope is
/// `IN (SELECT … FROM stays …)` on its own, never under an `OR` (`$2` empty or …): under
/// an `OR` PostgreSQL cannot turn it into a semi-join and runs it as a subplan per guest, which
/// is quadratic once the chain's stays no longer fit in `work_mem` (over 80 s for 100k guests and
/// 1M stays instead of well under a second). A per-guest `EXISTS` is no better: the planner
/// probes the stays' property index once per guest.
fn guests_in_scope(columns: &str, properties: &[String]) -> String {
    let scope = if properties.is_empty() {
        "cardinality($2::text[]) = 0"
    } else {
        "g.guest_id IN (SELECT s.guest_id FROM stays s WHERE s.property_id = ANY($2) \
         AND s.status IN ('checked_out', 'in_house'))"
    };
    format!(
        "SELECT {columns} FROM guests g WHERE g.chain_id = $1 AND g.merged_into IS NULL \
         AND NOT g.erased AND {scope}"
    )
}

/// The accounts of the chain (`$1`) CRM holds no profile for: guests a PMS feed earned points
/// for before they became members. With properties named (`$2`), those who stayed there, as
/// for members.
fn accounts_without_profile() -> &'static str {
    "SELECT a.guest_id FROM loyalty_accounts a WHERE a.chain_id = $1 AND NOT a.member \
     AND (cardinality($2::text[]) = 0 \
          OR a.guest_id IN (SELECT s.guest_id FROM stays s WHERE s.property_id = ANY($2) \
                            AND s.status IN ('checked_out', 'in_house')))"
}

fn rate(numerator: i64, denominator: i64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

#[derive(sqlx::FromRow, Default)]
struct Stocks {
    members: i64,
    points_outstanding: i64,
    profiles_complete: i64,
    contacts_given: i64,
    contacts_valid: i64,
    profiles_accurate: i64,
    profiles_fresh: i64,
    high_value_guests: i64,
    high_value_personalised: i64,
}

#[derive(sqlx::FromRow, Default)]
struct Flows {
    /// The guests in scope, counted where the flows need them anyway.
    members: i64,
    points_earned: i64,
    points_redeemed: i64,
    repeat_guests: i64,
    staying_guests: i64,
}

#[derive(sqlx::FromRow, Default)]
struct Recovery {
    recovered_guests: i64,
    recovered_returned: i64,
    unrecovered_guests: i64,
    unrecovered_returned: i64,
}

pub async fn get(api: &Api, request: Request<pb::GetCrmKpisRequest>) -> ApiResult<pb::CrmKpis> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let (start, end) = required_period(request.period.as_ref())?;
    let pool = &api.context.pool;
    let named: Vec<&str> = request.property_ids.iter().map(String::as_str).collect();
    let chain = {
        let mut conn = pool.acquire().await?;
        tenancy::require_properties(&mut conn, &principal, &named).await?;
        tenancy::acting_chain(&mut conn, &principal, "property_ids", &named).await?
    };
    let chain = chain.as_str();
    // Naming no property means every property the caller may see: the whole chain only for a
    // chain-wide scope, else the caller's own properties.
    let properties = if request.property_ids.is_empty() {
        match &principal.claims.props {
            PropertyScope::Listed(ids) => ids.clone(),
            PropertyScope::All(_) => Vec::new(),
        }
    } else {
        request.property_ids.clone()
    };
    if properties.is_empty() && !matches!(principal.claims.props, PropertyScope::All(_)) {
        // A scope that lists no property sees no guest (an empty list below means the chain).
        return Ok(pb::CrmKpis::default());
    }
    let properties = &properties;

    let all_columns = guests_in_scope("g.*", properties);
    let ids = guests_in_scope("g.guest_id", properties);
    let holders = accounts_without_profile();
    let stocks_sql = format!(
        "WITH g AS ({all_columns}) SELECT \
           count(*) AS members, \
           (coalesce((SELECT sum(a.balance) FROM loyalty_accounts a JOIN g USING (guest_id)), 0) \
            + coalesce((SELECT sum(a.balance) FROM loyalty_accounts a JOIN ({holders}) u USING (guest_id)), 0))::bigint \
             AS points_outstanding, \
           count(*) FILTER (WHERE (g.email <> '' OR g.phone <> '') AND g.language <> '' AND g.birthday IS NOT NULL) AS profiles_complete, \
           count(*) FILTER (WHERE g.email <> '' OR g.phone <> '') AS contacts_given, \
           count(*) FILTER (WHERE (g.email <> '' OR g.phone <> '') AND (g.email = '' OR g.email_key IS NOT NULL) \
                              AND (g.phone = '' OR g.phone_key IS NOT NULL)) AS contacts_valid, \
           count(*) FILTER (WHERE (g.email = '' OR g.email_key IS NOT NULL) AND (g.phone = '' OR g.phone_key IS NOT NULL) \
                              AND NOT EXISTS (SELECT 1 FROM guests d WHERE d.chain_id = g.chain_id \
                                  AND coalesce(d.merged_into, d.guest_id) <> g.guest_id AND NOT d.erased \
                                  AND (d.email_key = g.email_key OR d.phone_key = g.phone_key))) AS profiles_accurate, \
           count(*) FILTER (WHERE (g.updated_at >= $3 AND g.updated_at < $4) \
                              OR EXISTS (SELECT 1 FROM stays s WHERE s.guest_id = g.guest_id \
                                  AND s.status IN ('checked_out', 'in_house') \
                                  AND s.departure_date >= $5 AND s.arrival_date < $6)) AS profiles_fresh, \
           count(*) FILTER (WHERE g.tier IN ('vip', 'strategic') OR g.strategic_manual) AS high_value_guests, \
           count(*) FILTER (WHERE (g.tier IN ('vip', 'strategic') OR g.strategic_manual) \
                              AND EXISTS (SELECT 1 FROM preferences p WHERE p.guest_id = g.guest_id)) AS high_value_personalised \
         FROM g"
    );
    // Freshness looks at the 12 months up to the period end: a change then, or a stay that took
    // place (checked out or in house) on any of those days. A booking, a cancelled reservation,
    // a no-show or anything after the period end is no sign that the profile was fresh then.
    let fresh_since = end - Duration::days(365);
    let stocks = sqlx::query_as::<_, Stocks>(&stocks_sql)
        .bind(chain)
        .bind(properties)
        .bind(fresh_since)
        .bind(end)
        .bind(fresh_since.date_naive())
        .bind(end.date_naive())
        .fetch_one(pool);

    let tiers_sql =
        format!("WITH g AS ({all_columns}) SELECT tier, count(*) FROM g GROUP BY 1 ORDER BY 1");
    let tiers = sqlx::query_as::<_, (String, i64)>(&tiers_sql)
        .bind(chain)
        .bind(properties)
        .fetch_all(pool);
    let segments_sql = format!(
        "WITH g AS ({all_columns}) SELECT value_segment, count(*) FROM g GROUP BY 1 ORDER BY 1"
    );
    let segments = sqlx::query_as::<_, (String, i64)>(&segments_sql)
        .bind(chain)
        .bind(properties)
        .fetch_all(pool);

    // Points earned are the credits, a stay's postings in the period taken together: a stay
    // credited and corrected (fewer nights, called off, moved to another guest) in the period
    // earned what its postings net to, once; a give-back of a stay credited in an earlier period
    // takes nothing from this one, so the figure cannot turn negative and leave the redemption
    // rate undefined. A stay's postings share its first posting's source up to the `#n` that
    // numbers the later ones (its ids have `#` percent-encoded).
    let flows_sql = format!(
        "WITH g AS ({ids}), \
              h AS (SELECT guest_id FROM g UNION ALL {holders}), \
              p AS (SELECT l.kind, l.points, l.source FROM ledger l JOIN h USING (guest_id) \
                    WHERE l.posted_at >= $3 AND l.posted_at < $4), \
              st AS (SELECT greatest(sum(points), 0) AS net FROM p WHERE source LIKE 'stay:%' \
                     GROUP BY regexp_replace(source, '#[0-9]+$', '')), \
              l AS (SELECT coalesce(sum(points) FILTER (WHERE kind IN ('earn', 'bonus', 'goodwill') AND points > 0 \
                                                    AND source NOT LIKE 'stay:%'), 0) \
                           + coalesce((SELECT sum(net) FROM st), 0) AS earned, \
                           -sum(points) FILTER (WHERE kind = 'redeem') AS redeemed FROM p), \
              s AS (SELECT s.guest_id, count(*) AS n FROM stays s JOIN g USING (guest_id) \
                    WHERE s.status = 'checked_out' AND s.departure_date >= $3::date AND s.departure_date < $4::date \
                    AND (cardinality($2::text[]) = 0 OR s.property_id = ANY($2)) GROUP BY 1) \
         SELECT (SELECT count(*) FROM g) AS members, \
                coalesce((SELECT earned FROM l), 0)::bigint AS points_earned, \
                coalesce((SELECT redeemed FROM l), 0)::bigint AS points_redeemed, \
                (SELECT count(*) FROM s WHERE n >= 2) AS repeat_guests, \
                (SELECT count(*) FROM s) AS staying_guests"
    );
    let flows = sqlx::query_as::<_, Flows>(&flows_sql)
        .bind(chain)
        .bind(properties)
        .bind(start)
        .bind(end)
        .fetch_one(pool);

    // Each guest's first failure in the period decides their group; "returned" means a later stay
    // (checked out or in house) that began after the failure's day.
    let recovery = sqlx::query_as::<_, Recovery>(
        "WITH f AS (SELECT DISTINCT ON (f.guest_id) f.guest_id, f.occurred_at, \
                       (f.recovered AND NOT f.csat BETWEEN 1 AND 2) AS recovered \
                    FROM service_failures f JOIN guests g ON g.guest_id = f.guest_id \
                    WHERE g.chain_id = $1 AND g.merged_into IS NULL AND NOT g.erased \
                    AND f.occurred_at >= $3 AND f.occurred_at < $4 \
                    AND (cardinality($2::text[]) = 0 OR f.property_id = ANY($2)) \
                    ORDER BY f.guest_id, f.occurred_at), \
              r AS (SELECT f.recovered, EXISTS (SELECT 1 FROM stays s WHERE s.guest_id = f.guest_id \
                    AND s.status IN ('checked_out', 'in_house') AND s.arrival_date > f.occurred_at::date) AS returned FROM f) \
         SELECT count(*) FILTER (WHERE recovered) AS recovered_guests, \
                count(*) FILTER (WHERE recovered AND returned) AS recovered_returned, \
                count(*) FILTER (WHERE NOT recovered) AS unrecovered_guests, \
                count(*) FILTER (WHERE NOT recovered AND returned) AS unrecovered_returned FROM r",
    )
    .bind(chain)
    .bind(properties)
    .bind(start)
    .bind(end)
    .fetch_one(pool);
    // Independent reads: run them side by side on the pool. The loyalty figures take members
    // from the flows query, which finds the guests in scope (the costly part) once for both.
    let (stocks, tiers, segments, flows, recovery) = if request.loyalty_only {
        let (flows, recovery) = tokio::try_join!(flows, recovery)?;
        (
            Stocks {
                members: flows.members,
                ..Stocks::default()
            },
            Vec::new(),
            Vec::new(),
            flows,
            recovery,
        )
    } else {
        tokio::try_join!(stocks, tiers, segments, flows, recovery)?
    };

    Ok(pb::CrmKpis {
        members: stocks.members,
        tiers: tiers
            .into_iter()
            .map(|(tier, guests)| pb::TierCount { tier, guests })
            .collect(),
        segments: segments
            .into_iter()
            .map(|(segment, guests)| pb::SegmentCount { segment, guests })
            .collect(),
        points_outstanding: stocks.points_outstanding,
        points_earned: flows.points_earned,
        points_redeemed: flows.points_redeemed,
        redemption_rate: rate(flows.points_redeemed, flows.points_earned),
        repeat_guests: flows.repeat_guests,
        staying_guests: flows.staying_guests,
        repeat_stay_rate: rate(flows.repeat_guests, flows.staying_guests),
        profiles_complete: stocks.profiles_complete,
        contacts_given: stocks.contacts_given,
        contacts_valid: stocks.contacts_valid,
        profiles_accurate: stocks.profiles_accurate,
        profiles_fresh: stocks.profiles_fresh,
        high_value_guests: stocks.high_value_guests,
        high_value_personalised: stocks.high_value_personalised,
        recovered_guests: recovery.recovered_guests,
        recovered_returned: recovery.recovered_returned,
        unrecovered_guests: recovery.unrecovered_guests,
        unrecovered_returned: recovery.unrecovered_returned,
        recovered_return_rate: rate(recovery.recovered_returned, recovery.recovered_guests),
        unrecovered_return_rate: rate(recovery.unrecovered_returned, recovery.unrecovered_guests),
    })
}

/// Occupied room-nights per property: each night (arrival ≤ date < departure) of an in-house
/// or checked-out stay whose date lies in the period's UTC dates.
pub async fn occupancy(
    api: &Api,
    request: Request<pb::GetOccupancyRequest>,
) -> ApiResult<pb::Occupancy> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    if request.property_ids.is_empty() {
        return Err(guestloop_kit::ApiError::invalid(
            "property_ids",
            "name at least one property",
        ));
    }
    let (start, end) = required_period(request.period.as_ref())?;
    let mut conn = api.context.pool.acquire().await?;
    let named: Vec<&str> = request.property_ids.iter().map(String::as_str).collect();
    tenancy::require_properties_on_behalf(
        &mut conn,
        &principal,
        &request.on_behalf_of_chain,
        &named,
    )
    .await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT p.property_id, coalesce(sum(greatest(0, least(s.departure_date, $3::date) \
                - greatest(s.arrival_date, $2::date))), 0)::bigint \
         FROM unnest($1::text[]) AS p(property_id) \
         LEFT JOIN stays s ON s.property_id = p.property_id AND s.status IN ('in_house', 'checked_out') \
              AND s.arrival_date < $3::date AND s.departure_date > $2::date \
         GROUP BY p.property_id ORDER BY p.property_id",
    )
    .bind(&request.property_ids)
    .bind(start.date_naive())
    .bind(end.date_naive())
    .fetch_all(&mut *conn)
    .await?;
    Ok(pb::Occupancy {
        occupied_room_nights: rows.iter().map(|(_, n)| n).sum(),
        by_property: rows
            .into_iter()
            .map(
                |(property_id, occupied_room_nights)| pb::PropertyOccupancy {
                    property_id,
                    occupied_room_nights,
                },
            )
            .collect(),
    })
}
