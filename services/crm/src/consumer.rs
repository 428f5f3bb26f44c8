//! What CRM takes from the complaints feed: each guest's service-failure memory, and goodwill
//! points for approved points remedies — exactly once per remedy, however often the feed is
//! replayed (the consumer cursor and the ledger's unique source both guard it).

use guestloop_kit::events::EventHandler;
use guestloop_kit::ApiError;
use guestloop_proto::common::v1::Event;
use guestloop_proto::complaints::v1 as complaints;
use sqlx::PgConnection;

use crate::api::current_guest;
use crate::domain::value::{minor_unit_digits, to_major};

pub const CONSUMER: &str = "crm<-complaints";

pub const EVENT_TYPES: [&str; 8] = [
    "complaints.complaint.filed",
    "complaints.complaint.updated",
    "complaints.complaint.transitioned",
    "complaints.complaint.resolved",
    "complaints.complaint.reopened",
    "complaints.complaint.closed",
    "complaints.complaint.rated",
    "complaints.remedy.approved",
];

pub struct ComplaintEvents;

use guestloop_kit::events::decode_payload as decode;

/// A short description of a remedy, e.g. `voucher 20.00 EUR` or `points 500 points`, tagged
/// with its id so two equal remedies stay two entries.
fn describe_remedy(r: &complaints::Remedy) -> String {
    let kind = complaints::RemedyKind::try_from(r.kind)
        .map(|k| {
            k.as_str_name()
                .trim_start_matches("REMEDY_KIND_")
                .to_lowercase()
        })
        .unwrap_or_default();
    let what = match (&r.amount, r.points) {
        (Some(m), _) if m.minor_units > 0 => {
            let digits = minor_unit_digits(&m.currency_code);
            format!(
                "{kind} {:.*} {}",
                usize::try_from(digits).unwrap_or(2),
                to_major(&m.currency_code, m.minor_units),
                m.currency_code
            )
        }
        (_, p) if p > 0 => format!("{kind} {p} points"),
        _ => kind,
    };
    format!("{what} [{}]", r.remedy_id)
}

async fn remember_failure(
    conn: &mut PgConnection,
    chain_id: &str,
    complaint: &complaints::Complaint,
) -> Result<(), ApiError> {
    let status = complaints::Status::try_from(complaint.status).unwrap_or_default();
    // A cancelled complaint (filed by mistake, withdrawn) was no service failure: it leaves the
    // memory it entered while open, so it calls for no recovery care and counts in no recovery
    // figure or customer value. Each event carries the complaint as it is after the change, so
    // one that showed it active again would bring it back.
    if status == complaints::Status::Cancelled {
        sqlx::query("DELETE FROM service_failures WHERE complaint_id = $1")
            .bind(&complaint.complaint_id)
            .execute(conn)
            .await?;
        return Ok(());
    }
    let guest_id = complaint
        .guest
        .as_ref()
        .map(|g| g.guest_id.clone())
        .unwrap_or_default();
    if guest_id.is_empty() {
        return Ok(());
    }
    // A merged guest's failures go to the survivor; an erased or unknown guest's are not kept.
    let Some(guest_id) = current_guest(conn, chain_id, &guest_id).await? else {
        return Ok(());
    };
    let remedies: Vec<String> = complaint
        .remedies
        .iter()
        .filter(|r| {
            r.status == complaints::RemedyStatus::Approved as i32
                || r.status == complaints::RemedyStatus::Delivered as i32
        })
        .map(describe_remedy)
        .collect();
    let recovered = matches!(
        status,
        complaints::Status::Resolved | complaints::Status::Closed
    );
    let occurred = complaint
        .create_time
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .unwrap_or_else(chrono::Utc::now);
    sqlx::query(
        "INSERT INTO service_failures (complaint_id, guest_id, property_id, category, occurred_at, remedies, csat, recovered) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (complaint_id) DO UPDATE SET category = EXCLUDED.category, \
         remedies = EXCLUDED.remedies, csat = EXCLUDED.csat, recovered = EXCLUDED.recovered",
    )
    .bind(&complaint.complaint_id)
    .bind(&guest_id)
    .bind(&complaint.property_id)
    .bind(&complaint.category)
    .bind(occurred)
    .bind(&remedies)
    .bind(complaint.rating.as_ref().map_or(0, |r| r.csat as i16))
    .bind(recovered)
    .execute(conn)
    .await?;
    Ok(())
}

/// The account of a guest CRM holds no profile of but stays for in `chain_id` (a PMS id nobody
/// enrolled): the one their earning stays opened, or a new non-member one, as a stay of an id
/// the chain does not hold yet opens. An id with neither (unknown, or erased: its stays moved to
/// the pseudonym) has none.
async fn non_member_account(
    conn: &mut PgConnection,
    chain_id: &str,
    guest_id: &str,
) -> Result<Option<String>, ApiError> {
    let known: bool = sqlx::query_scalar(
        "SELECT NOT EXISTS (SELECT 1 FROM guests WHERE guest_id = $1) AND ( \
             EXISTS (SELECT 1 FROM loyalty_accounts WHERE guest_id = $1 AND chain_id = $2) \
             OR EXISTS (SELECT 1 FROM stays s JOIN property_chains pc ON pc.property_id = s.property_id \
                        WHERE s.guest_id = $1 AND pc.chain_id = $2))",
    )
    .bind(guest_id)
    .bind(chain_id)
    .fetch_one(&mut *conn)
    .await?;
    if !known {
        return Ok(None);
    }
    sqlx::query(
        "INSERT INTO loyalty_accounts (guest_id, chain_id, member) VALUES ($1, $2, false) \
         ON CONFLICT (guest_id) DO NOTHING",
    )
    .bind(guest_id)
    .bind(chain_id)
    .execute(&mut *conn)
    .await?;
    // An account of the id in another chain (ids are global) is not this chain's guest's.
    Ok(sqlx::query_scalar(
        "SELECT guest_id FROM loyalty_accounts WHERE guest_id = $1 AND chain_id = $2",
    )
    .bind(guest_id)
    .bind(chain_id)
    .fetch_optional(&mut *conn)
    .await?)
}

impl EventHandler for ComplaintEvents {
    async fn handle(&self, conn: &mut PgConnection, event: &Event) -> Result<(), ApiError> {
        if event.event_type == "complaints.remedy.approved" {
            let approved: complaints::RemedyApproved = decode(event)?;
            let Some(remedy) = approved.remedy else {
                return Ok(());
            };
            if remedy.points > 0 && !approved.guest_id.is_empty() {
                // Goodwill goes to the guest as CRM knows them now: a merged guest's survivor.
                // An erased guest (or one CRM never knew) gets no account back.
                // A guest known only from PMS stays (no profile) has the account their stays
                // opened in the chain: the goodwill goes there.
                let account = match current_guest(conn, &event.chain_id, &approved.guest_id).await?
                {
                    Some(guest_id) => Some(guest_id),
                    None => non_member_account(conn, &event.chain_id, &approved.guest_id).await?,
                };
                match account {
                    Some(guest_id) => {
                        crate::api::post_goodwill(
                            conn,
                            &guest_id,
                            &remedy.remedy_id,
                            remedy.points,
                            &approved.complaint_id,
                        )
                        .await?
                    }
                    None => tracing::warn!(
                        complaint_id = %approved.complaint_id,
                        remedy_id = %remedy.remedy_id,
                        points = remedy.points,
                        "goodwill for a guest CRM holds no profile or account of (erased or unknown) not posted"
                    ),
                }
            }
            let label = describe_remedy(&remedy);
            sqlx::query(
                "UPDATE service_failures SET remedies = array_append(remedies, $2) \
                 WHERE complaint_id = $1 AND NOT ($2 = ANY(remedies))",
            )
            .bind(&approved.complaint_id)
            .bind(label)
            .execute(&mut *conn)
            .await?;
            return Ok(());
        }
        let changed: complaints::ComplaintChanged = decode(event)?;
        if let Some(complaint) = changed.complaint {
            remember_failure(conn, &event.chain_id, &complaint).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remedies_are_described_in_their_currencys_digits() {
        let remedy = |currency: &str, minor_units: i64, points: i64| complaints::Remedy {
            remedy_id: "r1".into(),
            kind: complaints::RemedyKind::Voucher as i32,
            amount: Some(guestloop_proto::common::v1::Money {
                currency_code: currency.into(),
                minor_units,
            }),
            points,
            ..Default::default()
        };
        assert_eq!(
            describe_remedy(&remedy("EUR", 2_000, 0)),
            "voucher 20.00 EUR [r1]"
        );
        assert_eq!(
            describe_remedy(&remedy("JPY", 2_000, 0)),
            "voucher 2000 JPY [r1]"
        );
        assert_eq!(
            describe_remedy(&remedy("KWD", 12_345, 0)),
            "voucher 12.345 KWD [r1]"
        );
        assert_eq!(
            describe_remedy(&remedy("", 0, 500)),
            "voucher 500 points [r1]"
        );
    }
}
