//! Guest rows and their conversion to the wire, with contact details only for roles that need them.

use chrono::{DateTime, NaiveDate, Utc};
use guestloop_kit::auth::{Principal, Role};
use guestloop_kit::time::to_timestamp;
use guestloop_kit::{ApiError, ApiResult};
use guestloop_proto::common::v1::AuditStamps;
use guestloop_proto::crm::v1 as pb;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GuestRow {
    pub guest_id: String,
    pub chain_id: String,
    pub given_name: String,
    pub family_name: String,
    pub email: String,
    pub phone: String,
    pub language: String,
    pub birthday: Option<NaiveDate>,
    pub anniversary: Option<NaiveDate>,
    pub company: String,
    pub consent_marketing: bool,
    pub consent_profiling: bool,
    pub consent_sharing: bool,
    pub consent_at: Option<DateTime<Utc>>,
    pub consent_source: String,
    pub notes: String,
    pub tier: String,
    pub strategic_manual: bool,
    pub merged_into: Option<String>,
    pub erased: bool,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
    pub etag: Uuid,
    pub customer_value: f64,
    pub value_segment: String,
}

pub const GUEST_COLUMNS: &str = "guest_id, chain_id, given_name, family_name, email, phone, language, birthday, \
    anniversary, company, consent_marketing, consent_profiling, consent_sharing, consent_at, consent_source, notes, \
    tier, strategic_manual, merged_into, erased, created_at, created_by, updated_at, updated_by, etag, customer_value, \
    value_segment";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PreferenceRow {
    pub preference_id: Uuid,
    pub grp: String,
    pub value: String,
    pub polarity: i16,
    pub source: String,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct ServiceFailureRow {
    pub complaint_id: String,
    pub property_id: String,
    pub category: String,
    pub occurred_at: DateTime<Utc>,
    pub remedies: Vec<String>,
    pub csat: i16,
    pub recovered: bool,
}

/// What one hop of a merge-redirect lookup found.
enum Hop<R> {
    /// The guest itself (not merged, or redirects not followed).
    Found(R),
    /// The guest was merged into this one; look it up next.
    MergedInto(String),
    /// No such guest, or one of another chain (which the caller may not learn exists).
    Missing,
}

/// The one rule for merged guests and chain scope, shared by every guest lookup: a row of
/// another chain is as good as missing (except for services), and a merged row redirects to
/// the guest it was merged into when `follow` is set.
fn hop<R>(
    row: Option<R>,
    principal: &Principal,
    follow: bool,
    chain_and_redirect: impl Fn(&R) -> (&str, Option<&str>),
) -> Hop<R> {
    let Some(row) = row else {
        return Hop::Missing;
    };
    let (chain, merged_into) = chain_and_redirect(&row);
    if chain != principal.chain_id() && principal.role() != Role::Service {
        return Hop::Missing;
    }
    match merged_into {
        Some(next) if follow => Hop::MergedInto(next.to_string()),
        _ => Hop::Found(row),
    }
}

/// Most merge redirects a lookup follows (merges chain A into B into C …).
const MAX_REDIRECTS: usize = 8;

/// The guest another service's event about `guest_id` (of chain `chain_id`, when known) is for
/// now: the id itself, or the survivor it was merged into. `None` when CRM does not know the id
/// (never created here, or erased) or it belongs to another chain. The row found is locked for
/// key share, so a merge or an erasure (which lock it for update) waits for the caller's effect
/// or happens before it; the customer-value batch and tier evaluation, which update guests
/// without touching their key, do not wait for it, nor it for them.
pub async fn current_guest(
    conn: &mut PgConnection,
    chain_id: &str,
    guest_id: &str,
) -> ApiResult<Option<String>> {
    let mut id = guest_id.to_string();
    for _ in 0..MAX_REDIRECTS {
        let row: Option<(String, Option<String>, bool)> = sqlx::query_as(
            "SELECT chain_id, merged_into, erased FROM guests WHERE guest_id = $1 FOR KEY SHARE",
        )
        .bind(&id)
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            None => return Ok(None),
            Some((chain, _, _)) if !chain_id.is_empty() && chain != chain_id => return Ok(None),
            Some((_, _, true)) => return Ok(None),
            Some((_, Some(next), _)) => id = next,
            Some((_, None, false)) => return Ok(Some(id)),
        }
    }
    Ok(None)
}

/// Loads a guest (following merge redirects when `follow` is set), refusing other chains.
/// Opens the loyalty account of a guest CRM holds a profile of, in the profile's chain, unless
/// it has one.
pub async fn open_account(conn: &mut PgConnection, guest_id: &str) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO loyalty_accounts (guest_id, chain_id) \
         VALUES ($1, (SELECT chain_id FROM guests WHERE guest_id = $1)) ON CONFLICT DO NOTHING",
    )
    .bind(guest_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A request's id of a guest, which must name one: an empty id is INVALID_ARGUMENT on the
/// request's `field`, not a guest that cannot be found.
pub fn require_guest_id(field: &str, guest_id: &str) -> ApiResult<()> {
    if guest_id.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    Ok(())
}

pub async fn load(
    conn: &mut PgConnection,
    principal: &Principal,
    guest_id: &str,
    lock: bool,
    follow: bool,
) -> ApiResult<GuestRow> {
    let sql = format!(
        "SELECT {GUEST_COLUMNS} FROM guests WHERE guest_id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let mut id = guest_id.to_string();
    for _ in 0..MAX_REDIRECTS {
        let row: Option<GuestRow> = sqlx::query_as(&sql)
            .bind(&id)
            .fetch_optional(&mut *conn)
            .await?;
        match hop(row, principal, follow, |r| {
            (r.chain_id.as_str(), r.merged_into.as_deref())
        }) {
            Hop::Found(row) => return Ok(row),
            Hop::MergedInto(next) => id = next,
            Hop::Missing => break,
        }
    }
    Err(ApiError::not_found("guest", guest_id.to_string()))
}

/// What a tier lookup needs of a guest: the tier and the chain's stored loyalty program.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TierRow {
    pub guest_id: String,
    pub chain_id: String,
    pub tier: String,
    pub merged_into: Option<String>,
    pub program: Option<Vec<u8>>,
}

/// A guest's tier and their chain's program in one statement (other services ask on every
/// intake), following merge redirects and refusing other chains as [`load`] does.
pub async fn load_tier(
    pool: &sqlx::PgPool,
    principal: &Principal,
    guest_id: &str,
) -> ApiResult<TierRow> {
    let mut id = guest_id.to_string();
    for _ in 0..MAX_REDIRECTS {
        let row: Option<TierRow> = sqlx::query_as(
            "SELECT g.guest_id, g.chain_id, g.tier, g.merged_into, p.program \
             FROM guests g LEFT JOIN loyalty_programs p ON p.chain_id = g.chain_id \
             WHERE g.guest_id = $1",
        )
        .bind(&id)
        .fetch_optional(pool)
        .await?;
        match hop(row, principal, true, |r| {
            (r.chain_id.as_str(), r.merged_into.as_deref())
        }) {
            Hop::Found(row) => return Ok(row),
            Hop::MergedInto(next) => id = next,
            Hop::Missing => break,
        }
    }
    Err(ApiError::not_found("guest", guest_id.to_string()))
}

/// Front-office and management roles read contact details; housekeeping, engineering and other
/// departments see preferences and dislikes only. Where the department decides, a token that
/// names none reads no contacts (it fails closed).
pub fn may_read_contacts(principal: &Principal) -> bool {
    let department_ok = principal.claims.department.as_deref().is_some_and(|d| {
        matches!(
            d,
            "front_office" | "concierge" | "sales" | "guest_relations"
        )
    });
    match principal.role() {
        Role::Agent | Role::Supervisor | Role::DutyManager | Role::DepartmentHead => department_ok,
        Role::GeneralManager | Role::ChainAdmin | Role::Service => true,
        Role::Guest | Role::ChainQualityManager => false,
    }
}

/// The wire form; contact details cleared when `contacts` is false.
pub async fn to_proto(
    conn: &mut PgConnection,
    row: &GuestRow,
    contacts: bool,
) -> ApiResult<pb::Guest> {
    let preferences: Vec<PreferenceRow> = sqlx::query_as(
        "SELECT preference_id, grp, value, polarity, source, recorded_by, recorded_at FROM preferences \
         WHERE guest_id = $1 ORDER BY recorded_at",
    )
    .bind(&row.guest_id)
    .fetch_all(&mut *conn)
    .await?;
    let failures: Vec<ServiceFailureRow> = sqlx::query_as(
        "SELECT complaint_id, property_id, category, occurred_at, remedies, csat, recovered FROM service_failures \
         WHERE guest_id = $1 ORDER BY occurred_at DESC LIMIT 50",
    )
    .bind(&row.guest_id)
    .fetch_all(&mut *conn)
    .await?;
    let balance: Option<i64> =
        sqlx::query_scalar("SELECT balance FROM loyalty_accounts WHERE guest_id = $1")
            .bind(&row.guest_id)
            .fetch_optional(&mut *conn)
            .await?;
    let tier_name = super::program::tier_name(&mut *conn, &row.chain_id, &row.tier).await?;
    let to_pref = |p: &PreferenceRow| pb::Preference {
        preference_id: p.preference_id.to_string(),
        group: p.grp.clone(),
        value: p.value.clone(),
        polarity: i32::from(p.polarity),
        source: p.source.clone(),
        recorded_by: p.recorded_by.clone(),
        record_time: Some(to_timestamp(p.recorded_at)),
    };
    Ok(pb::Guest {
        tier_name,
        guest_id: row.guest_id.clone(),
        chain_id: row.chain_id.clone(),
        given_name: row.given_name.clone(),
        family_name: row.family_name.clone(),
        email: if contacts {
            row.email.clone()
        } else {
            String::new()
        },
        phone: if contacts {
            row.phone.clone()
        } else {
            String::new()
        },
        language: row.language.clone(),
        birthday: row.birthday.map(|d| d.to_string()).unwrap_or_default(),
        anniversary: row.anniversary.map(|d| d.to_string()).unwrap_or_default(),
        company: row.company.clone(),
        consent: Some(pb::Consent {
            marketing: row.consent_marketing,
            profiling: row.consent_profiling,
            data_sharing: row.consent_sharing,
            given_time: row.consent_at.map(to_timestamp),
            source: row.consent_source.clone(),
        }),
        notes: row.notes.clone(),
        preferences: preferences
            .iter()
            .filter(|p| p.polarity == pb::Polarity::Like as i16)
            .map(to_pref)
            .collect(),
        avoid: preferences
            .iter()
            .filter(|p| p.polarity != pb::Polarity::Like as i16)
            .map(to_pref)
            .collect(),
        failures: failures
            .into_iter()
            .map(|f| pb::ServiceFailure {
                complaint_id: f.complaint_id,
                property_id: f.property_id,
                category: f.category,
                occur_time: Some(to_timestamp(f.occurred_at)),
                remedies: f.remedies,
                csat: i32::from(f.csat),
                recovered: f.recovered,
            })
            .collect(),
        tier: row.tier.clone(),
        strategic_manual: row.strategic_manual,
        points_balance: balance.unwrap_or(0),
        merged_into: row.merged_into.clone().unwrap_or_default(),
        erased: row.erased,
        stamps: Some(AuditStamps {
            create_time: Some(to_timestamp(row.created_at)),
            created_by: row.created_by.clone(),
            update_time: Some(to_timestamp(row.updated_at)),
            updated_by: row.updated_by.clone(),
        }),
        etag: row.etag.to_string(),
        contact_details_hidden: !contacts,
        customer_value: row.customer_value,
        value_segment: row.value_segment.clone(),
    })
}

/// Who a record names as having acted ([`Principal::actor`]).
pub fn actor_name(principal: &Principal) -> &str {
    principal.actor()
}

/// Records a read of contact details by staff.
pub async fn log_contact_read(
    conn: &mut PgConnection,
    principal: &Principal,
    guest_id: &str,
    property_id: &str,
) -> ApiResult<()> {
    sqlx::query("INSERT INTO contact_access_log (actor, role, guest_id, property_id) VALUES ($1, $2, $3, $4)")
        .bind(actor_name(principal))
        .bind(principal.role().as_str())
        .bind(guest_id)
        .bind(property_id)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use guestloop_kit::auth::PropertyScope;
    use guestloop_testkit::test_claims;

    fn caller(role: Role, chain: &str) -> Principal {
        let mut claims = test_claims(role, PropertyScope::all());
        claims.chain = chain.into();
        Principal { claims }
    }

    /// (chain, merged into)
    type Row = (&'static str, Option<&'static str>);

    fn step(row: Option<Row>, principal: &Principal, follow: bool) -> Hop<Row> {
        hop(row, principal, follow, |r| (r.0, r.1))
    }

    #[test]
    fn department_staff_without_a_department_read_no_contacts() {
        for role in [
            Role::Agent,
            Role::Supervisor,
            Role::DutyManager,
            Role::DepartmentHead,
        ] {
            let mut staff = caller(role, "c1");
            staff.claims.department = None;
            assert!(!may_read_contacts(&staff), "{role:?} without a department");
            staff.claims.department = Some("housekeeping".into());
            assert!(!may_read_contacts(&staff), "{role:?} of housekeeping");
            staff.claims.department = Some("front_office".into());
            assert!(may_read_contacts(&staff), "{role:?} of the front office");
        }
        let mut manager = caller(Role::GeneralManager, "c1");
        manager.claims.department = None;
        assert!(
            may_read_contacts(&manager),
            "management needs no department"
        );
    }

    #[test]
    fn a_guest_of_the_callers_chain_is_found() {
        let agent = caller(Role::Agent, "c1");
        assert!(matches!(
            step(Some(("c1", None)), &agent, true),
            Hop::Found(("c1", None))
        ));
    }

    #[test]
    fn a_guest_of_another_chain_is_missing_except_to_services() {
        let agent = caller(Role::Agent, "c1");
        assert!(matches!(
            step(Some(("c2", None)), &agent, true),
            Hop::Missing
        ));
        let service = caller(Role::Service, "c1");
        assert!(matches!(
            step(Some(("c2", None)), &service, true),
            Hop::Found(_)
        ));
        assert!(matches!(step(None, &agent, true), Hop::Missing));
    }

    #[test]
    fn a_merged_guest_redirects_only_when_following() {
        let agent = caller(Role::Agent, "c1");
        match step(Some(("c1", Some("g2"))), &agent, true) {
            Hop::MergedInto(next) => assert_eq!(next, "g2"),
            _ => panic!("a followed merge must redirect"),
        }
        assert!(matches!(
            step(Some(("c1", Some("g2"))), &agent, false),
            Hop::Found(("c1", Some("g2")))
        ));
        // The chain check comes before the redirect: another chain's merged row leaks nothing.
        assert!(matches!(
            step(Some(("c2", Some("g2"))), &agent, true),
            Hop::Missing
        ));
    }
}
