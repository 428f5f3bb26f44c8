//! Guest profiles: create, read (role-aware, contact reads logged), update, preferences with
//! dislikes as first-class entries, duplicates and merge, the manual strategic tier.

use chrono::{DateTime, NaiveDate, Utc};
use guestloop_kit::auth::{principal, Principal, Role};
use guestloop_kit::{idempotency, tenancy, ApiError, ApiResult, FieldViolation};
use guestloop_proto::crm::v1 as pb;
use tonic::Request;
use uuid::Uuid;

use super::store::{self, load, may_read_contacts, to_proto, GuestRow};
use super::Api;
use crate::domain::identity::{
    assigned_guest_id, email_key, guest_id_shape, phone_key, phone_shape,
};
use crate::domain::preferences::{may_add_like, merged_entries, normalise, HeldEntry};
use crate::domain::tiers::Tier;
use guestloop_kit::text::free_text;

/// Trimmed `value`, at most `max` characters.
fn bounded(value: &str, field: &str, max: usize, v: &mut Vec<FieldViolation>) -> String {
    let value = value.trim();
    if value.chars().count() > max {
        v.push(FieldViolation::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    value.to_string()
}

/// Free text: trimmed, bounded, and never a payment card number (the kit's rule, optional).
pub(super) fn text(value: &str, field: &str, max: usize, v: &mut Vec<FieldViolation>) -> String {
    free_text(value, field, max, false, v)
}

/// A special date (birthday, anniversary): from 1900 to today.
fn date(value: &str, field: &str, v: &mut Vec<FieldViolation>) -> Option<NaiveDate> {
    if value.is_empty() {
        return None;
    }
    let first = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(NaiveDate::MIN);
    guestloop_kit::time::calendar_date(value, field, first, chrono::Utc::now().date_naive())
        .map_err(|e| v.push(e))
        .ok()
}

fn contact(
    guest: &pb::Guest,
    v: &mut Vec<FieldViolation>,
) -> (String, String, Option<String>, Option<String>) {
    let email = text(&guest.email, "guest.email", 254, v);
    // Not free text, so no card check: phone numbers of 13 to 15 digits pass the Luhn check one
    // time in ten (e.g. 0086 138 0013 8002). `phone` below keeps it to a phone number's
    // characters and length, which no 16 to 19 digit card number fits.
    let phone = bounded(&guest.phone, "guest.phone", 40, v);
    let email_key = email_key(&email);
    if !email.is_empty() && email_key.is_none() {
        v.push(FieldViolation::new(
            "guest.email",
            "is not an email address",
        ));
    }
    let phone_key = phone_key(&phone);
    if !phone.is_empty() {
        if let Err(problem) = phone_shape(&phone) {
            v.push(FieldViolation::new("guest.phone", problem));
        } else if phone_key.is_none() {
            v.push(FieldViolation::new(
                "guest.phone",
                "needs at least 6 digits",
            ));
        }
    }
    (email, phone, email_key, phone_key)
}

pub async fn tier(
    api: &Api,
    request: Request<pb::GetGuestTierRequest>,
) -> ApiResult<pb::GuestTier> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let guest_id = request.guest_id;
    store::require_guest_id("guest_id", &guest_id)?;
    let row = super::store::load_tier(&api.context.pool, &principal, &guest_id).await?;
    // A service asking for a chain sees that chain's guests only, as the chain's callers do.
    if tenancy::caller_chain(&principal).is_none()
        && !request.on_behalf_of_chain.is_empty()
        && row.chain_id != request.on_behalf_of_chain
    {
        return Err(ApiError::not_found("guest", guest_id));
    }
    let program = match &row.program {
        Some(stored) => super::program::decode(&row.chain_id, stored)?,
        None => super::program::Program::default(),
    };
    Ok(pb::GuestTier {
        tier_name: super::program::name_of(&program, &row.tier),
        guest_id: row.guest_id,
        tier: row.tier,
    })
}

pub async fn create(api: &Api, request: Request<pb::CreateGuestRequest>) -> ApiResult<pb::Guest> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    idempotency::check_request_id(&request.request_id)?;
    let guest = request
        .guest
        .clone()
        .ok_or_else(|| ApiError::invalid("guest", "is required"))?;
    let mut v = Vec::new();
    let given_name = text(&guest.given_name, "guest.given_name", 100, &mut v);
    let family_name = text(&guest.family_name, "guest.family_name", 100, &mut v);
    if given_name.is_empty() && family_name.is_empty() {
        v.push(FieldViolation::new(
            "guest.family_name",
            "a name is required",
        ));
    }
    let (email, phone, email_key, phone_key) = contact(&guest, &mut v);
    let birthday = date(&guest.birthday, "guest.birthday", &mut v);
    let anniversary = date(&guest.anniversary, "guest.anniversary", &mut v);
    let company = text(&guest.company, "guest.company", 200, &mut v);
    let notes = text(&guest.notes, "guest.notes", 2000, &mut v);
    let language = text(&guest.language, "guest.language", 16, &mut v);
    let mut consent = guest.consent.clone().unwrap_or_default();
    consent.source = text(&consent.source, "guest.consent.source", 100, &mut v);
    // An id from another system (the PMS's, say); without one the service assigns one below.
    if !guest.guest_id.is_empty() {
        if let Err(problem) = guest_id_shape(&guest.guest_id) {
            v.push(FieldViolation::new("guest.guest_id", problem));
        }
    }
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    if let Some(previous) = idempotency::claim::<_, pb::Guest>(
        &mut tx,
        &principal,
        "CreateGuest",
        &request.request_id,
        &request,
    )
    .await?
    {
        return Ok(previous);
    }
    let guest_id = if guest.guest_id.is_empty() {
        assigned_guest_id()
    } else {
        guest.guest_id.clone()
    };
    let row: GuestRow = sqlx::query_as(&format!(
        "INSERT INTO guests (guest_id, chain_id, given_name, family_name, email, phone, email_key, phone_key, language, \
         birthday, anniversary, company, consent_marketing, consent_profiling, consent_sharing, consent_at, consent_source, \
         notes, created_by, updated_by) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,\
         CASE WHEN $19 THEN now() END,$16,$17,$18,$18) RETURNING {}",
        store::GUEST_COLUMNS
    ))
    .bind(&guest_id)
    .bind(principal.chain_id())
    .bind(&given_name)
    .bind(&family_name)
    .bind(&email)
    .bind(&phone)
    .bind(&email_key)
    .bind(&phone_key)
    .bind(&language)
    .bind(birthday)
    .bind(anniversary)
    .bind(&company)
    .bind(consent.marketing)
    .bind(consent.profiling)
    .bind(consent.data_sharing)
    .bind(&consent.source)
    .bind(&notes)
    .bind(principal.subject())
    // A choice is recorded when the guest made one, a refusal of everything included.
    .bind(guest.consent.is_some())
    .fetch_one(&mut *tx)
    .await?;
    // An account may already hold points under this id: a PMS feed's stays earned them before
    // the guest became a member. They are the guest's only when they were earned at this
    // chain's properties (an account of no known chain is claimed by the first profile).
    let account_chain: Option<String> = sqlx::query_scalar(
        "INSERT INTO loyalty_accounts (guest_id, chain_id) VALUES ($1, $2) \
         ON CONFLICT (guest_id) DO UPDATE SET chain_id = coalesce(loyalty_accounts.chain_id, EXCLUDED.chain_id), \
         member = true RETURNING chain_id",
    )
    .bind(&guest_id)
    .bind(principal.chain_id())
    .fetch_one(&mut *tx)
    .await?;
    if account_chain.as_deref() != Some(principal.chain_id()) {
        return Err(ApiError::AlreadyExists(format!(
            "guest id {guest_id} is already in use by another chain; choose another id"
        )));
    }
    if guest.consent.is_some() {
        record_consent(&mut tx, &row, principal.subject()).await?;
    }
    let reply = to_proto(&mut tx, &row, true).await?;
    idempotency::record(
        &mut tx,
        &principal,
        "CreateGuest",
        &request.request_id,
        &reply,
    )
    .await?;
    tx.commit().await?;
    Ok(reply)
}

/// Appends the profile's current consent choices to its history: what, when, how, who.
async fn record_consent(
    conn: &mut sqlx::PgConnection,
    row: &GuestRow,
    recorded_by: &str,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO consent_history (guest_id, marketing, profiling, sharing, given_at, source, recorded_by) \
         VALUES ($1, $2, $3, $4, coalesce($5, now()), $6, $7)",
    )
    .bind(&row.guest_id)
    .bind(row.consent_marketing)
    .bind(row.consent_profiling)
    .bind(row.consent_sharing)
    .bind(row.consent_at)
    .bind(&row.consent_source)
    .bind(recorded_by)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Guests read their own profile; staff read any guest of their chain.
/// Staff (not the guest themselves, not another service), whose contact reads are logged.
fn is_staff(principal: &Principal) -> bool {
    !matches!(principal.role(), Role::Guest | Role::Service)
}

fn check_reader(principal: &Principal, guest_id: &str) -> ApiResult<()> {
    if principal.role() == Role::Guest && principal.guest_id() != Some(guest_id) {
        return Err(ApiError::not_found("guest", guest_id.to_string()));
    }
    Ok(())
}

pub async fn get(api: &Api, request: Request<pb::GetGuestRequest>) -> ApiResult<pb::Guest> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    store::require_guest_id("guest_id", &request.guest_id)?;
    check_reader(&principal, &request.guest_id)?;
    let mut tx = api.context.pool.begin().await?;
    let row = load(&mut tx, &principal, &request.guest_id, false, true).await?;
    let own = principal.role() == Role::Guest;
    let contacts = own || may_read_contacts(&principal);
    if contacts && is_staff(&principal) {
        // The property the read is logged at must be one the caller works at.
        if !request.property_id.is_empty() {
            tenancy::require_property(&mut tx, &principal, &request.property_id).await?;
        }
        store::log_contact_read(&mut tx, &principal, &row.guest_id, &request.property_id).await?;
    }
    let guest = to_proto(&mut tx, &row, contacts).await?;
    tx.commit().await?;
    Ok(guest)
}

const UPDATABLE: [&str; 10] = [
    "given_name",
    "family_name",
    "email",
    "phone",
    "language",
    "birthday",
    "anniversary",
    "company",
    "consent",
    "notes",
];

pub async fn update(api: &Api, request: Request<pb::UpdateGuestRequest>) -> ApiResult<pb::Guest> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let patch = request
        .guest
        .ok_or_else(|| ApiError::invalid("guest", "is required"))?;
    store::require_guest_id("guest.guest_id", &patch.guest_id)?;
    check_reader(&principal, &patch.guest_id)?;
    let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
    let mut v = Vec::new();
    if paths.is_empty() {
        v.push(FieldViolation::new(
            "update_mask",
            "list the fields to update",
        ));
    }
    for path in &paths {
        if !UPDATABLE.contains(&path.as_str()) {
            v.push(FieldViolation::new(
                "update_mask",
                format!("`{path}` cannot be updated"),
            ));
        }
    }
    let (email, phone, email_key, phone_key) = contact(&patch, &mut v);
    let birthday = date(&patch.birthday, "guest.birthday", &mut v);
    let anniversary = date(&patch.anniversary, "guest.anniversary", &mut v);
    let given_name = text(&patch.given_name, "guest.given_name", 100, &mut v);
    let family_name = text(&patch.family_name, "guest.family_name", 100, &mut v);
    let company = text(&patch.company, "guest.company", 200, &mut v);
    let notes = text(&patch.notes, "guest.notes", 2000, &mut v);
    let language = text(&patch.language, "guest.language", 16, &mut v);
    let consent_source = text(
        &patch
            .consent
            .as_ref()
            .map(|c| c.source.clone())
            .unwrap_or_default(),
        "guest.consent.source",
        100,
        &mut v,
    );
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    let mut row = load(&mut tx, &principal, &patch.guest_id, true, false).await?;
    if row.erased || row.merged_into.is_some() {
        return Err(ApiError::failed_precondition(
            "GUEST_NOT_ACTIVE",
            format!("guests/{}", row.guest_id),
            "the guest was erased or merged",
        ));
    }
    if !request.etag.is_empty() && request.etag != row.etag.to_string() {
        return Err(ApiError::Aborted(
            "guest changed since it was read (etag mismatch)".into(),
        ));
    }
    let mut keys = (None::<Option<String>>, None::<Option<String>>);
    for path in &paths {
        match path.as_str() {
            "given_name" => row.given_name = given_name.clone(),
            "family_name" => row.family_name = family_name.clone(),
            "email" => {
                row.email = email.clone();
                keys.0 = Some(email_key.clone());
            }
            "phone" => {
                row.phone = phone.clone();
                keys.1 = Some(phone_key.clone());
            }
            "language" => row.language = language.clone(),
            "birthday" => row.birthday = birthday,
            "anniversary" => row.anniversary = anniversary,
            "company" => row.company = company.clone(),
            "notes" => row.notes = notes.clone(),
            "consent" => {
                let consent = patch.consent.clone().unwrap_or_default();
                row.consent_marketing = consent.marketing;
                row.consent_profiling = consent.profiling;
                row.consent_sharing = consent.data_sharing;
                row.consent_source = consent_source.clone();
                row.consent_at = Some(chrono::Utc::now());
            }
            _ => {}
        }
    }
    // A profile keeps a name, as CreateGuest requires: an update may not clear the last one (a
    // profile left nameless before this rule can still have its other fields edited).
    if row.given_name.is_empty() && row.family_name.is_empty() {
        let cleared: Vec<FieldViolation> = ["given_name", "family_name"]
            .into_iter()
            .filter(|name| paths.iter().any(|path| path == name))
            .map(|name| {
                FieldViolation::new(
                    format!("guest.{name}"),
                    "a name is required: the profile would be left without one",
                )
            })
            .collect();
        if !cleared.is_empty() {
            return Err(ApiError::InvalidArgument(cleared));
        }
    }
    // Withdrawing consent to profiling clears the customer value and segment at once.
    let row: GuestRow = sqlx::query_as(&format!(
        "UPDATE guests SET given_name=$2, family_name=$3, email=$4, phone=$5, language=$6, birthday=$7, anniversary=$8, \
         company=$9, notes=$10, consent_marketing=$11, consent_profiling=$12, consent_sharing=$13, consent_source=$14, \
         consent_at=$15, email_key = CASE WHEN $16 THEN $17 ELSE email_key END, \
         phone_key = CASE WHEN $18 THEN $19 ELSE phone_key END, updated_at=now(), updated_by=$20, etag=gen_random_uuid(), \
         customer_value = CASE WHEN $12 THEN customer_value ELSE 0 END, \
         value_segment = CASE WHEN $12 THEN value_segment ELSE '' END \
         WHERE guest_id=$1 RETURNING {}",
        store::GUEST_COLUMNS
    ))
    .bind(&row.guest_id)
    .bind(&row.given_name)
    .bind(&row.family_name)
    .bind(&row.email)
    .bind(&row.phone)
    .bind(&row.language)
    .bind(row.birthday)
    .bind(row.anniversary)
    .bind(&row.company)
    .bind(&row.notes)
    .bind(row.consent_marketing)
    .bind(row.consent_profiling)
    .bind(row.consent_sharing)
    .bind(&row.consent_source)
    .bind(row.consent_at)
    .bind(keys.0.is_some())
    .bind(keys.0.flatten())
    .bind(keys.1.is_some())
    .bind(keys.1.flatten())
    .bind(principal.subject())
    .fetch_one(&mut *tx)
    .await?;
    if paths.iter().any(|p| p == "consent") {
        record_consent(&mut tx, &row, principal.subject()).await?;
    }
    // The answer shows the profile's contact details to staff who may read them: a read, logged
    // (no property: an edit is not made at one).
    let contacts = principal.role() == Role::Guest || may_read_contacts(&principal);
    if contacts && is_staff(&principal) {
        store::log_contact_read(&mut tx, &principal, &row.guest_id, "").await?;
    }
    let reply = to_proto(&mut tx, &row, contacts).await?;
    tx.commit().await?;
    Ok(reply)
}

pub async fn duplicates(
    api: &Api,
    request: Request<pb::FindDuplicatesRequest>,
) -> ApiResult<pb::FindDuplicatesResponse> {
    let principal = principal(&request)?.clone();
    let guest_id = request.into_inner().guest_id;
    store::require_guest_id("guest_id", &guest_id)?;
    let mut conn = api.context.pool.acquire().await?;
    let row = load(&mut conn, &principal, &guest_id, false, true).await?;
    // A merged profile keeps its contact keys (not its contact details): they are the guest's
    // too, so a profile with the email or phone a merged one had is a duplicate of the guest it
    // was merged into, either way round.
    let guest_ids: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT coalesce(other.merged_into, other.guest_id) FROM guests me JOIN guests other \
         ON other.chain_id = me.chain_id AND NOT other.erased \
         AND ((me.email_key IS NOT NULL AND other.email_key = me.email_key) OR (me.phone_key IS NOT NULL AND other.phone_key = me.phone_key)) \
         WHERE (me.guest_id = $1 OR me.merged_into = $1) AND coalesce(other.merged_into, other.guest_id) <> $1 ORDER BY 1",
    )
    .bind(&row.guest_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(pb::FindDuplicatesResponse { guest_ids })
}

pub async fn merge(api: &Api, request: Request<pb::MergeGuestsRequest>) -> ApiResult<pb::Guest> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    store::require_guest_id("surviving_guest_id", &request.surviving_guest_id)?;
    store::require_guest_id("duplicate_guest_id", &request.duplicate_guest_id)?;
    if request.surviving_guest_id == request.duplicate_guest_id {
        return Err(ApiError::invalid(
            "duplicate_guest_id",
            "must name another guest",
        ));
    }
    let mut tx = api.context.pool.begin().await?;
    // Lock both in a fixed order so two opposite merges cannot deadlock.
    let mut ids = [
        request.surviving_guest_id.clone(),
        request.duplicate_guest_id.clone(),
    ];
    ids.sort();
    for id in &ids {
        load(&mut tx, &principal, id, true, false).await?;
    }
    let survivor = load(
        &mut tx,
        &principal,
        &request.surviving_guest_id,
        false,
        false,
    )
    .await?;
    let duplicate = load(
        &mut tx,
        &principal,
        &request.duplicate_guest_id,
        false,
        false,
    )
    .await?;
    // A retry of this very merge (its answer lost): the survivor as it is now, nothing moved.
    if duplicate.merged_into.as_deref() == Some(survivor.guest_id.as_str())
        && survivor.merged_into.is_none()
        && !survivor.erased
    {
        let reply = to_proto(&mut tx, &survivor, false).await?;
        tx.commit().await?;
        return Ok(reply);
    }
    if survivor.merged_into.is_some()
        || duplicate.merged_into.is_some()
        || survivor.erased
        || duplicate.erased
    {
        return Err(ApiError::failed_precondition(
            "GUEST_NOT_ACTIVE",
            "guests",
            "both guests must be active (not merged or erased)",
        ));
    }
    let (from, to) = (&duplicate.guest_id, &survivor.guest_id);
    // Postings in flight on either account finish first (they hold the account's lock), so their
    // ledger entries are moved and their balances added below; later ones wait for the guest
    // rows locked above and then follow the redirect.
    sqlx::query(
        "SELECT guest_id FROM loyalty_accounts WHERE guest_id = ANY($1) ORDER BY guest_id FOR UPDATE",
    )
    .bind(&ids[..])
    .fetch_all(&mut *tx)
    .await?;
    merge_preferences(&mut tx, &survivor.chain_id, to, from).await?;
    for table in [
        "service_failures",
        "stays",
        "ledger",
        "contact_access_log",
        "tier_history",
        "care_tasks",
        "consent_history",
    ] {
        sqlx::query(&format!(
            "UPDATE {table} SET guest_id = $2 WHERE guest_id = $1"
        ))
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await?;
    }
    // The two ledgers are now one, in posting order: each entry's running balance is
    // recomputed over it, so the statement reads as one account's and ends at the summed
    // balance. (Each ledger's running sums are never negative, so neither are their sums.)
    sqlx::query(
        "UPDATE ledger l SET balance_after = r.running FROM ( \
             SELECT entry_id, sum(points) OVER (ORDER BY entry_id) AS running FROM ledger WHERE guest_id = $1 \
         ) r WHERE l.entry_id = r.entry_id AND l.guest_id = $1 AND l.balance_after <> r.running",
    )
    .bind(to)
    .execute(&mut *tx)
    .await?;
    super::store::open_account(&mut tx, to).await?;
    sqlx::query(
        "UPDATE loyalty_accounts a SET balance = a.balance + d.balance, lifetime_earned = a.lifetime_earned + d.lifetime_earned, \
         last_activity_at = greatest(a.last_activity_at, d.last_activity_at) FROM loyalty_accounts d \
         WHERE a.guest_id = $2 AND d.guest_id = $1",
    )
    .bind(from)
    .bind(to)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM loyalty_accounts WHERE guest_id = $1")
        .bind(from)
        .execute(&mut *tx)
        .await?;
    // Fill what the survivor lacks, keep both profiles' notes, and take the duplicate's consent
    // when it was given (or withdrawn) more recently; then leave a redirect behind.
    sqlx::query(
        "UPDATE guests s SET email = CASE WHEN s.email = '' THEN d.email ELSE s.email END, \
         email_key = coalesce(s.email_key, d.email_key), phone = CASE WHEN s.phone = '' THEN d.phone ELSE s.phone END, \
         phone_key = coalesce(s.phone_key, d.phone_key), birthday = coalesce(s.birthday, d.birthday), \
         anniversary = coalesce(s.anniversary, d.anniversary), \
         language = CASE WHEN s.language = '' THEN d.language ELSE s.language END, \
         company = CASE WHEN s.company = '' THEN d.company ELSE s.company END, \
         notes = CASE WHEN d.notes = '' OR s.notes = d.notes THEN s.notes WHEN s.notes = '' THEN d.notes \
                      ELSE s.notes || E'\\n' || d.notes END, \
         consent_marketing = CASE WHEN d.consent_at > coalesce(s.consent_at, '-infinity') THEN d.consent_marketing ELSE s.consent_marketing END, \
         consent_profiling = CASE WHEN d.consent_at > coalesce(s.consent_at, '-infinity') THEN d.consent_profiling ELSE s.consent_profiling END, \
         consent_sharing = CASE WHEN d.consent_at > coalesce(s.consent_at, '-infinity') THEN d.consent_sharing ELSE s.consent_sharing END, \
         consent_source = CASE WHEN d.consent_at > coalesce(s.consent_at, '-infinity') THEN d.consent_source ELSE s.consent_source END, \
         consent_at = CASE WHEN d.consent_at > coalesce(s.consent_at, '-infinity') THEN d.consent_at ELSE s.consent_at END, \
         updated_at = now(), etag = gen_random_uuid() \
         FROM guests d WHERE s.guest_id = $2 AND d.guest_id = $1",
    )
    .bind(from)
    .bind(to)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE guests SET merged_into = $2, given_name = '', family_name = '', email = '', phone = '', \
         birthday = NULL, anniversary = NULL, notes = '', updated_at = now(), updated_by = $3 WHERE guest_id = $1",
    )
    .bind(from)
    .bind(to)
    .bind(principal.subject())
    .execute(&mut *tx)
    .await?;
    // Profiles merged into the duplicate earlier now lead straight to the survivor: redirects
    // never chain, so an old id resolves in one step however many merges followed.
    sqlx::query("UPDATE guests SET merged_into = $2 WHERE merged_into = $1")
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await?;
    // The consent kept may be the duplicate's later refusal of profiling: no value stays then.
    sqlx::query(
        "UPDATE guests SET customer_value = 0, value_segment = '' WHERE guest_id = $1 AND NOT consent_profiling",
    )
    .bind(to)
    .execute(&mut *tx)
    .await?;
    let tier_changed = keep_status(&mut tx, &survivor, &duplicate).await?;
    let survivor = load(&mut tx, &principal, to, false, false).await?;
    // Contact details are read with GetGuest (logged), not in the answers of other changes.
    let reply = to_proto(&mut tx, &survivor, false).await?;
    tx.commit().await?;
    if tier_changed {
        api.context.events.wake();
    }
    Ok(reply)
}

/// The survivor's likes and dislikes after a merge, as [`merged_entries`] chooses them from both
/// profiles' under the chain's groups: the duplicate's chosen entries move over, every other
/// entry of either is deleted (a merged profile shows no preferences, so none is left on it).
async fn merge_preferences(
    conn: &mut sqlx::PgConnection,
    chain_id: &str,
    survivor_id: &str,
    duplicate_id: &str,
) -> ApiResult<()> {
    let (groups, _) = super::preference_groups::load(&mut *conn, chain_id).await?;
    let rows: Vec<(Uuid, String, String, String, i16, DateTime<Utc>)> = sqlx::query_as(
        "SELECT preference_id, guest_id, grp, value, polarity, recorded_at FROM preferences \
         WHERE guest_id = $1 OR guest_id = $2",
    )
    .bind(survivor_id)
    .bind(duplicate_id)
    .fetch_all(&mut *conn)
    .await?;
    let (mut own, mut theirs) = (Vec::new(), Vec::new());
    for (id, guest_id, group, value, polarity, recorded_at) in rows {
        let entry = HeldEntry {
            id,
            group,
            value,
            polarity,
            like: polarity == pb::Polarity::Like as i16,
            recorded_at,
        };
        if guest_id == survivor_id {
            own.push(entry);
        } else {
            theirs.push(entry);
        }
    }
    let kept = merged_entries(&groups, &own, &theirs);
    sqlx::query(
        "UPDATE preferences SET guest_id = $1 WHERE guest_id = $2 AND preference_id = ANY($3)",
    )
    .bind(survivor_id)
    .bind(duplicate_id)
    .bind(&kept)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM preferences WHERE (guest_id = $1 OR guest_id = $2) AND NOT preference_id = ANY($3)",
    )
    .bind(survivor_id)
    .bind(duplicate_id)
    .bind(&kept)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The survivor keeps what either profile earned: a strategic tier set by hand on either, and
/// the higher tier of the two, the change recorded in its history with an event as any tier
/// change is. Returns whether the tier changed.
async fn keep_status(
    conn: &mut sqlx::PgConnection,
    survivor: &GuestRow,
    duplicate: &GuestRow,
) -> ApiResult<bool> {
    let higher = match (Tier::parse(&survivor.tier), Tier::parse(&duplicate.tier)) {
        (Some(kept), Some(merged)) => kept.max(merged).as_str(),
        _ => survivor.tier.as_str(),
    };
    let strategic_manual = survivor.strategic_manual || duplicate.strategic_manual;
    let changed = higher != survivor.tier;
    if changed {
        // The reason does not name the duplicate: its id goes when the guest is erased.
        crate::tiers::record_change(
            &mut *conn,
            &survivor.guest_id,
            &survivor.chain_id,
            &survivor.tier,
            higher,
            "merged with a duplicate profile of a higher tier",
        )
        .await?;
    }
    if changed || strategic_manual != survivor.strategic_manual {
        // A tier taken over from the duplicate starts its own grace when it falls short.
        sqlx::query(
            "UPDATE guests SET tier = $2, strategic_manual = $3, \
             tier_short_since = CASE WHEN tier = $2 THEN tier_short_since END WHERE guest_id = $1",
        )
        .bind(&survivor.guest_id)
        .bind(higher)
        .bind(strategic_manual)
        .execute(&mut *conn)
        .await?;
    }
    Ok(changed)
}

/// The most preference entries (likes, dislikes, allergies, taboos) one guest holds.
pub const MAX_ENTRIES: i64 = 500;

pub async fn add_preference(
    api: &Api,
    request: Request<pb::AddPreferenceRequest>,
) -> ApiResult<pb::Guest> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    store::require_guest_id("guest_id", &request.guest_id)?;
    check_reader(&principal, &request.guest_id)?;
    let preference = request
        .preference
        .ok_or_else(|| ApiError::invalid("preference", "is required"))?;
    let mut v = Vec::new();
    let group = normalise(&preference.group);
    if group.is_empty() {
        v.push(FieldViolation::new("preference.group", "is required"));
    }
    let value = text(&preference.value, "preference.value", 200, &mut v);
    if value.is_empty() {
        v.push(FieldViolation::new("preference.value", "must not be empty"));
    }
    match pb::Polarity::try_from(preference.polarity) {
        Ok(pb::Polarity::Unspecified) => {
            v.push(FieldViolation::new("preference.polarity", "is required"))
        }
        Err(_) => v.push(FieldViolation::new(
            "preference.polarity",
            format!("unknown value {}", preference.polarity),
        )),
        Ok(_) => {}
    }
    let source = text(&preference.source, "preference.source", 100, &mut v);
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    let row = load(&mut tx, &principal, &request.guest_id, true, true).await?;
    if row.erased {
        return Err(ApiError::failed_precondition(
            "GUEST_NOT_ACTIVE",
            format!("guests/{}", row.guest_id),
            "the guest was erased",
        ));
    }
    let (groups, _) = super::preference_groups::load(&mut *tx, &row.chain_id).await?;
    let Some(group_rule) = groups.iter().find(|g| g.name == group) else {
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        return Err(ApiError::invalid(
            "preference.group",
            format!("must be one of the chain's groups: {}", names.join(", ")),
        ));
    };
    // An entry the guest already holds (same group, value and polarity) is not recorded again:
    // a retried call answers the profile with the entry it has, and never counts twice against
    // the limit.
    let held: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM preferences WHERE guest_id = $1 AND grp = $2 AND value = $3 AND polarity = $4)",
    )
    .bind(&row.guest_id)
    .bind(&group)
    .bind(&value)
    .bind(preference.polarity as i16)
    .fetch_one(&mut *tx)
    .await?;
    // The limit keeps likes in check. A dislike, an allergy or a taboo is never refused: staff
    // must always be able to record what could harm or offend the guest.
    let like = preference.polarity == pb::Polarity::Like as i32;
    if like && !held {
        let likes: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM preferences WHERE guest_id = $1 AND grp = $2 AND polarity = $3",
        )
        .bind(&row.guest_id)
        .bind(&group)
        .bind(pb::Polarity::Like as i16)
        .fetch_one(&mut *tx)
        .await?;
        if !may_add_like(group_rule, likes) {
            return Err(ApiError::failed_precondition(
                "PREFERENCE_LIMIT",
                format!("guests/{}/preferences/{group}", row.guest_id),
                format!(
                    "the `{group}` group already holds {likes} likes (limit {})",
                    group_rule.likes_limit
                ),
            ));
        }
    }
    // However many dislikes staff record, a profile stays readable: past a guest's
    // MAX_ENTRIES entries (far beyond any real guest's), nothing more is added.
    if !held {
        let entries: i64 =
            sqlx::query_scalar("SELECT count(*) FROM preferences WHERE guest_id = $1")
                .bind(&row.guest_id)
                .fetch_one(&mut *tx)
                .await?;
        if entries >= MAX_ENTRIES {
            return Err(ApiError::failed_precondition(
                "PREFERENCE_LIMIT",
                format!("guests/{}/preferences", row.guest_id),
                format!("the guest already holds {entries} preferences (at most {MAX_ENTRIES}); remove some first"),
            ));
        }
    }
    if !held {
        sqlx::query(
            "INSERT INTO preferences (preference_id, guest_id, grp, value, polarity, source, recorded_by, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, now())",
        )
        .bind(Uuid::now_v7())
        .bind(&row.guest_id)
        .bind(&group)
        .bind(&value)
        .bind(preference.polarity as i16)
        .bind(&source)
        .bind(principal.subject())
        .execute(&mut *tx)
        .await?;
    }
    // A guest sees their own contact details; staff read them with GetGuest (logged).
    let reply = to_proto(&mut tx, &row, principal.role() == Role::Guest).await?;
    tx.commit().await?;
    Ok(reply)
}

pub async fn remove_preference(
    api: &Api,
    request: Request<pb::RemovePreferenceRequest>,
) -> ApiResult<pb::Guest> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    store::require_guest_id("guest_id", &request.guest_id)?;
    check_reader(&principal, &request.guest_id)?;
    let id = Uuid::parse_str(&request.preference_id)
        .map_err(|_| ApiError::invalid("preference_id", "must be a UUID"))?;
    let mut tx = api.context.pool.begin().await?;
    let row = load(&mut tx, &principal, &request.guest_id, true, true).await?;
    let removed = sqlx::query("DELETE FROM preferences WHERE preference_id = $1 AND guest_id = $2")
        .bind(id)
        .bind(&row.guest_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if removed == 0 {
        return Err(ApiError::not_found("preference", id.to_string()));
    }
    // A guest sees their own contact details; staff read them with GetGuest (logged).
    let reply = to_proto(&mut tx, &row, principal.role() == Role::Guest).await?;
    tx.commit().await?;
    Ok(reply)
}

/// The tier a guest held before the strategic tier was set by hand: the one the latest change
/// to `strategic` came from, or `new` when the history records none.
async fn tier_before_strategic(conn: &mut sqlx::PgConnection, guest_id: &str) -> ApiResult<String> {
    let before: Option<String> = sqlx::query_scalar(
        "SELECT from_tier FROM tier_history WHERE guest_id = $1 AND to_tier = 'strategic' \
         ORDER BY changed_at DESC LIMIT 1",
    )
    .bind(guest_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(before
        .filter(|tier| Tier::parse(tier).is_some_and(|t| t != Tier::Strategic))
        .unwrap_or_else(|| Tier::New.as_str().to_string()))
}

/// The most characters the reason for a manual tier change may have.
const MAX_TIER_REASON: usize = 500;

pub async fn set_strategic(
    api: &Api,
    request: Request<pb::SetStrategicTierRequest>,
) -> ApiResult<pb::Guest> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    store::require_guest_id("guest_id", &request.guest_id)?;
    let mut v = Vec::new();
    // Kept in the tier history and sent in the `crm.tier.changed` event.
    let reason = text(&request.reason, "reason", MAX_TIER_REASON, &mut v);
    if reason.is_empty() {
        v.push(FieldViolation::new("reason", "is required"));
    }
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    let row = load(&mut tx, &principal, &request.guest_id, true, true).await?;
    // An erased guest's record keeps no new free text (the reason) nor events about them.
    if row.erased {
        return Err(ApiError::failed_precondition(
            "GUEST_ERASED",
            format!("guests/{}", row.guest_id),
            "the guest was erased",
        ));
    }
    let to = if request.strategic {
        "strategic".to_string()
    } else if row.strategic_manual || row.tier == "strategic" {
        tier_before_strategic(&mut tx, &row.guest_id).await?
    } else {
        row.tier.clone()
    };
    let to = to.as_str();
    if to != row.tier {
        crate::tiers::record_change(
            &mut tx,
            &row.guest_id,
            &row.chain_id,
            &row.tier,
            to,
            &reason,
        )
        .await?;
    }
    // A tier set by hand starts with no grace period running: the next evaluation judges the
    // guest's activity against it afresh.
    let by_hand = request.strategic != row.strategic_manual || to != row.tier;
    sqlx::query(
        "UPDATE guests SET strategic_manual = $2, tier = $3, \
         tier_short_since = CASE WHEN $4 THEN NULL ELSE tier_short_since END, \
         updated_at = now(), etag = gen_random_uuid() WHERE guest_id = $1",
    )
    .bind(&row.guest_id)
    .bind(request.strategic)
    .bind(to)
    .bind(by_hand)
    .execute(&mut *tx)
    .await?;
    let row = load(&mut tx, &principal, &row.guest_id, false, false).await?;
    // Contact details are read with GetGuest (logged), not in the answers of other changes.
    let reply = to_proto(&mut tx, &row, false).await?;
    tx.commit().await?;
    api.context.events.wake();
    Ok(reply)
}
