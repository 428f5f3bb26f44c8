//! Data-subject rights: export everything CRM holds about a guest, and erasure (the profile is
//! pseudonymised, the ledger keeps its amounts under the pseudonym, `crm.guest.erased` tells
//! every other service to scrub its copies, and the erasure log records who erased, why and
//! when under the pseudonym).

use guestloop_kit::auth::{principal, Principal, Role};
use guestloop_kit::events::{append, NewEvent};
use guestloop_kit::{ApiError, ApiResult};
use guestloop_proto::crm::v1 as pb;
use prost::Message;
use serde_json::{json, Value};
use tonic::Request;
use uuid::Uuid;

use super::store::{load, may_read_contacts, GuestRow};
use super::Api;
use guestloop_kit::text::contains_card_number;

const PRIVACY_ROLES: [Role; 3] = [
    Role::GeneralManager,
    Role::ChainAdmin,
    Role::ChainQualityManager,
];

/// The rows `sql` selects, its `$1` bound to every id the guest is known by.
async fn rows_as_json(
    conn: &mut sqlx::PgConnection,
    sql: &str,
    guest_ids: &[String],
) -> ApiResult<Value> {
    let rows: Vec<Value> = sqlx::query_scalar(&format!(
        "SELECT coalesce(json_agg(t), '[]'::json)::jsonb FROM ({sql}) t"
    ))
    .bind(guest_ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().next().unwrap_or(Value::Array(Vec::new())))
}

pub async fn export(
    api: &Api,
    request: Request<pb::ExportGuestDataRequest>,
) -> ApiResult<pb::ExportGuestDataResponse> {
    let principal = principal(&request)?.clone();
    let guest_id = request.into_inner().guest_id;
    super::store::require_guest_id("guest_id", &guest_id)?;
    if principal.role() == Role::Guest {
        if principal.guest_id() != Some(guest_id.as_str()) {
            return Err(ApiError::not_found("guest", guest_id));
        }
    } else {
        principal.require_role(&PRIVACY_ROLES)?;
    }
    let mut tx = api.context.pool.begin().await?;
    let (id, chain_id) = match load(&mut tx, &principal, &guest_id, false, true).await {
        Ok(guest) => (guest.guest_id, guest.chain_id),
        // A PMS id nobody enrolled: CRM holds its stays and ledger, and exports them.
        Err(ApiError::NotFound { .. }) => {
            match profileless_chain(&mut tx, &principal, &guest_id).await? {
                Some(chain) => (guest_id.clone(), chain),
                None => return Err(ApiError::not_found("guest", guest_id)),
            }
        }
        Err(other) => return Err(other),
    };
    let id = id.as_str();
    // The guest and every profile merged into them, as erasure takes them: each merged profile
    // in full, as the guest's own (company, language, consent, value, …), and anything still
    // filed under an old id.
    let ids = known_ids(&mut tx, id, &chain_id).await?;
    let mut document = json!({
        "guest": rows_as_json(&mut tx, "SELECT * FROM guests WHERE guest_id = ANY($1) AND merged_into IS NULL", &ids).await?,
        "merged_guests": rows_as_json(&mut tx, "SELECT * FROM guests WHERE guest_id = ANY($1) AND merged_into IS NOT NULL ORDER BY guest_id", &ids).await?,
        "preferences": rows_as_json(&mut tx, "SELECT * FROM preferences WHERE guest_id = ANY($1)", &ids).await?,
        "service_failures": rows_as_json(&mut tx, "SELECT * FROM service_failures WHERE guest_id = ANY($1)", &ids).await?,
        "stays": rows_as_json(&mut tx, "SELECT * FROM stays WHERE guest_id = ANY($1)", &ids).await?,
        "loyalty_account": rows_as_json(&mut tx, "SELECT * FROM loyalty_accounts WHERE guest_id = ANY($1)", &ids).await?,
        "ledger": rows_as_json(&mut tx, "SELECT * FROM ledger WHERE guest_id = ANY($1) ORDER BY entry_id", &ids).await?,
        "tier_history": rows_as_json(&mut tx, "SELECT * FROM tier_history WHERE guest_id = ANY($1)", &ids).await?,
        "contact_access_log": rows_as_json(&mut tx, "SELECT * FROM contact_access_log WHERE guest_id = ANY($1)", &ids).await?,
        "care_tasks": rows_as_json(&mut tx, "SELECT * FROM care_tasks WHERE guest_id = ANY($1) ORDER BY due_date", &ids).await?,
        "consent_history": rows_as_json(&mut tx, "SELECT * FROM consent_history WHERE guest_id = ANY($1) ORDER BY entry_id", &ids).await?,
        // CreateGuest answers kept so a retried create answers the same: the profile as created.
        "stored_answers": stored_profiles_as_json(&mut tx, &chain_id, &ids).await?,
    });
    // A guest reads their own contact details; staff only when their role may (a quality
    // manager works on the complaints, not the contacts).
    if principal.role() != Role::Guest && !may_read_contacts(&principal) {
        strip_contacts(&mut document);
    }
    tracing::info!(guest_id = %id, actor = principal.subject(), "guest data exported");
    sqlx::query("INSERT INTO contact_access_log (actor, role, guest_id, property_id) VALUES ($1, $2, $3, 'export')")
        .bind(super::store::actor_name(&principal))
        .bind(principal.role().as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(pb::ExportGuestDataResponse {
        json: document.to_string(),
    })
}

/// The guest rows' contact details and their normalised keys (merged profiles keep the keys).
const CONTACT_FIELDS: [&str; 4] = ["email", "phone", "email_key", "phone_key"];

fn strip_contacts(document: &mut Value) {
    for part in ["guest", "merged_guests"] {
        if let Some(rows) = document.get_mut(part).and_then(Value::as_array_mut) {
            for row in rows.iter_mut().filter_map(Value::as_object_mut) {
                for field in CONTACT_FIELDS {
                    row.remove(field);
                }
            }
        }
    }
    if let Some(stored) = document
        .get_mut("stored_answers")
        .and_then(Value::as_array_mut)
    {
        for profile in stored
            .iter_mut()
            .filter_map(|s| s.get_mut("guest"))
            .filter_map(Value::as_object_mut)
        {
            for field in CONTACT_FIELDS {
                profile.remove(field);
            }
        }
    }
}

pub async fn erase(
    api: &Api,
    request: Request<pb::EraseGuestRequest>,
) -> ApiResult<pb::EraseGuestResponse> {
    let principal = principal(&request)?.clone();
    principal.require_role(&PRIVACY_ROLES)?;
    let request = request.into_inner();
    super::store::require_guest_id("guest_id", &request.guest_id)?;
    let reason = erasure_reason(&request.reason)?;
    let mut attempts = 0;
    let (mut tx, guest, every_id) = loop {
        let mut tx = api.context.pool.begin().await?;
        // A PMS id nobody enrolled has stays, an account and a ledger but no profile: it gets
        // an empty one, which the erasure below takes like any other.
        if let Some(chain) = profileless_chain(&mut tx, &principal, &request.guest_id).await? {
            sqlx::query(
                "INSERT INTO guests (guest_id, chain_id, created_by, updated_by) \
                 VALUES ($1, $2, 'erasure', 'erasure') ON CONFLICT (guest_id) DO NOTHING",
            )
            .bind(&request.guest_id)
            .bind(&chain)
            .execute(&mut *tx)
            .await?;
        }
        if let Some((guest, every_id)) = lock_person(&mut tx, &principal, &request.guest_id).await?
        {
            break (tx, guest, every_id);
        }
        tx.rollback().await?;
        attempts += 1;
        if attempts == MAX_LOCK_ATTEMPTS {
            return Err(ApiError::Aborted(
                "the guest kept being merged meanwhile; retry the erasure".into(),
            ));
        }
    };
    if guest.erased {
        return Ok(pb::EraseGuestResponse {
            guest_id: guest.guest_id,
            records_scrubbed: 0,
        });
    }
    let pseudonym = format!("erased-{}", Uuid::now_v7().simple());
    let original = guest.guest_id.clone();
    let mut scrubbed = 0i32;
    // A new row under the pseudonym keeps the ledger's amounts; the original row loses every
    // personal field and points at it.
    sqlx::query(
        "INSERT INTO guests (guest_id, chain_id, tier, erased, created_at, created_by, updated_by) \
         SELECT $2, chain_id, tier, true, created_at, '', 'erasure' FROM guests WHERE guest_id = $1",
    )
    .bind(&original)
    .bind(&pseudonym)
    .execute(&mut *tx)
    .await?;
    // A merge moved the duplicate's records to the survivor; anything still under an old id
    // (written before the merge took it along) moves to the pseudonym too. One account per
    // guest: only the survivor has one.
    scrubbed += sqlx::query("UPDATE loyalty_accounts SET guest_id = $2 WHERE guest_id = $1")
        .bind(&original)
        .bind(&pseudonym)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i32;
    for table in [
        "service_failures",
        "stays",
        "ledger",
        "tier_history",
        "contact_access_log",
    ] {
        scrubbed += sqlx::query(&format!(
            "UPDATE {table} SET guest_id = $2 WHERE guest_id = ANY($1)"
        ))
        .bind(&every_id)
        .bind(&pseudonym)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i32;
    }
    forget_free_text(&mut tx, &every_id, &pseudonym).await?;
    // Open care tasks go: nobody is left to greet or look after, and closing one would ask
    // staff to write about the guest. Done ones stay (the property's work was done) under the
    // pseudonym, without their reason (a birthday, an anniversary) and outcome (free text about
    // the guest).
    scrubbed += sqlx::query("DELETE FROM care_tasks WHERE guest_id = ANY($1) AND NOT done")
        .bind(&every_id)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i32;
    scrubbed += sqlx::query(
        "UPDATE care_tasks SET guest_id = $2, reason = '', outcome = '', updated_at = now(), \
         updated_by = 'erasure' WHERE guest_id = ANY($1)",
    )
    .bind(&every_id)
    .bind(&pseudonym)
    .execute(&mut *tx)
    .await?
    .rows_affected() as i32;
    scrubbed += sqlx::query("DELETE FROM preferences WHERE guest_id = ANY($1)")
        .bind(&every_id)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i32;
    // Consent choices go with the person: nobody is left to hold them to.
    scrubbed += sqlx::query("DELETE FROM consent_history WHERE guest_id = ANY($1)")
        .bind(&every_id)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i32;
    sqlx::query("UPDATE stays SET room = '' WHERE guest_id = $1")
        .bind(&pseudonym)
        .execute(&mut *tx)
        .await?;
    scrub_stored_profiles(&mut tx, &guest.chain_id, &every_id, &pseudonym).await?;
    for id in &every_id {
        repoint_events(&mut tx, id, &pseudonym).await?;
    }
    // The merged rows go with the original (one statement: they reference each other), so no
    // old id redirects to the pseudonym; each answers NOT_FOUND like the original.
    scrubbed += sqlx::query("DELETE FROM guests WHERE guest_id = ANY($1)")
        .bind(&every_id)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i32;
    // One event per id the guest was known by: each says what it always said ("scrub this
    // id"), so every consumer scrubs the merged ids with the handler it already has.
    for id in &every_id {
        append(
            &mut tx,
            NewEvent {
                event_type: "crm.guest.erased",
                subject: format!("guests/{id}"),
                chain_id: &guest.chain_id,
                property_id: "",
                payload: &pb::GuestErased {
                    guest_id: id.clone(),
                },
            },
        )
        .await?;
    }
    sqlx::query(
        "INSERT INTO erasure_log (pseudonym, chain_id, actor, role, reason) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&pseudonym)
    .bind(&guest.chain_id)
    .bind(principal.subject())
    .bind(principal.role().as_str())
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    api.context.events.wake();
    tracing::info!(
        pseudonym = %pseudonym,
        actor = principal.subject(),
        "guest erased"
    );
    Ok(pb::EraseGuestResponse {
        guest_id: pseudonym,
        records_scrubbed: scrubbed,
    })
}

/// The chain of a guest id CRM has no profile for but stays or an account under (a PMS id
/// nobody enrolled): the one chain its stays' properties and account are of, when the caller
/// acts for it. `None` when a
/// profile exists, there are no such stays, or they are another chain's.
async fn profileless_chain(
    conn: &mut sqlx::PgConnection,
    principal: &Principal,
    guest_id: &str,
) -> ApiResult<Option<String>> {
    let profile: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM guests WHERE guest_id = $1)")
            .bind(guest_id)
            .fetch_one(&mut *conn)
            .await?;
    if profile {
        return Ok(None);
    }
    let chains: Vec<String> = sqlx::query_scalar(
        "SELECT pc.chain_id FROM stays s JOIN property_chains pc ON pc.property_id = s.property_id \
         WHERE s.guest_id = $1 \
         UNION SELECT chain_id FROM loyalty_accounts WHERE guest_id = $1 AND chain_id IS NOT NULL",
    )
    .bind(guest_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(match chains.as_slice() {
        [chain] if guestloop_kit::tenancy::caller_chain(principal).is_none_or(|c| c == chain) => {
            Some(chain.clone())
        }
        _ => None,
    })
}

/// What people wrote or were logged as about the guest, now under `pseudonym`: the reasons
/// staff gave for postings (everything but the system's own, which name a stay, a complaint or
/// a rule) and for tier changes read `[erased]`; the guest's own reads and redemptions name the
/// role instead of their login; expiry entries' sources name the pseudonym instead of the ids in
/// `every_id` (a source is unique, and the pseudonym keeps it so).
async fn forget_free_text(
    conn: &mut sqlx::PgConnection,
    every_id: &[String],
    pseudonym: &str,
) -> ApiResult<()> {
    sqlx::query(
        "UPDATE ledger SET reason = CASE WHEN actor = 'system' OR reason = '' THEN reason ELSE '[erased]' END, \
         actor = CASE WHEN kind = 'redeem' AND actor NOT IN ('system', 'guest') \
                       AND EXISTS (SELECT 1 FROM contact_access_log l WHERE l.guest_id = $1 AND l.role = 'guest' AND l.actor = ledger.actor) \
                      THEN 'guest' ELSE actor END \
         WHERE guest_id = $1",
    )
    .bind(pseudonym)
    .execute(&mut *conn)
    .await?;
    for id in every_id {
        for prefix in ["expiry:", "expiry-credits:"] {
            sqlx::query(
                "UPDATE ledger SET source = $3 || $4 || substr(source, length($3 || $2) + 1) \
                 WHERE guest_id = $1 AND starts_with(source, $3 || $2 || ':')",
            )
            .bind(pseudonym)
            .bind(id)
            .bind(prefix)
            .bind(pseudonym)
            .execute(&mut *conn)
            .await?;
        }
    }
    sqlx::query("UPDATE tier_history SET reason = '[erased]' WHERE guest_id = $1")
        .bind(pseudonym)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE contact_access_log SET actor = 'guest' WHERE guest_id = $1 AND role = 'guest'",
    )
    .bind(pseudonym)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The reason an erasure is logged with: required, bounded, and never a payment card number.
fn erasure_reason(reason: &str) -> ApiResult<&str> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApiError::invalid("reason", "is required"));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::invalid(
            "reason",
            format!("must be at most {MAX_REASON_CHARS} characters"),
        ));
    }
    if contains_card_number(reason) {
        return Err(ApiError::invalid(
            "reason",
            "must not contain a payment card number",
        ));
    }
    // The log outlives the person: it may say why and by which request, not who.
    if guestloop_kit::text::contains_contact_details(reason) {
        return Err(ApiError::invalid(
            "reason",
            "must not contain an email address or phone number (name the request, not the person)",
        ));
    }
    Ok(reason)
}

const MAX_REASON_CHARS: usize = 500;

/// How often an erasure reads the person again after a merge changed them under it.
const MAX_LOCK_ATTEMPTS: u32 = 5;

/// The guest `guest_id` names now and every id the same person was known by, locked for update
/// in id order in one statement. An old id of a merged profile names the person it was merged
/// into (as export reads it): erasing it erases the survivor, not the empty shell the merge left
/// behind; and the profiles merged into the survivor (and into those, …) are erased with it.
/// Read first, then locked all at once, as a merge locks its two profiles: two erasures of one
/// person by different ids, or an erasure and a merge, wait for each other instead of locking
/// the same profiles in opposite orders. `None` when a merge changed the person between the
/// read and the lock: start over.
async fn lock_person(
    conn: &mut sqlx::PgConnection,
    principal: &Principal,
    guest_id: &str,
) -> ApiResult<Option<(GuestRow, Vec<String>)>> {
    let guest = load(conn, principal, guest_id, false, true).await?;
    if guest.erased {
        return Ok(Some((guest, Vec::new())));
    }
    let ids = known_ids(conn, &guest.guest_id, &guest.chain_id).await?;
    sqlx::query(
        "SELECT guest_id FROM guests WHERE guest_id = ANY($1) ORDER BY guest_id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    // Read again under the locks: no merge can take the guest away or add to it now.
    let locked = load(conn, principal, &guest.guest_id, false, false).await?;
    if locked.merged_into.is_some()
        || known_ids(conn, &guest.guest_id, &guest.chain_id).await? != ids
    {
        return Ok(None);
    }
    Ok(Some((locked, ids)))
}

/// `guest_id`, then every id merged into it (directly or through other merged ids) in id order.
async fn known_ids(
    conn: &mut sqlx::PgConnection,
    guest_id: &str,
    chain_id: &str,
) -> ApiResult<Vec<String>> {
    let mut ids: Vec<String> = sqlx::query_scalar(
        "WITH RECURSIVE merged (guest_id) AS ( \
             SELECT guest_id FROM guests WHERE merged_into = $1 AND chain_id = $2 \
             UNION \
             SELECT g.guest_id FROM guests g JOIN merged m ON g.merged_into = m.guest_id WHERE g.chain_id = $2 \
         ) SELECT guest_id FROM merged ORDER BY guest_id",
    )
    .bind(guest_id)
    .bind(chain_id)
    .fetch_all(&mut *conn)
    .await?;
    ids.insert(0, guest_id.to_string());
    Ok(ids)
}

/// A stored CreateGuest answer: its request id, when it was stored, and the profile as created.
struct StoredProfile {
    request_id: String,
    stored_at: chrono::DateTime<chrono::Utc>,
    guest: pb::Guest,
}

/// Stored CreateGuest responses carry the profile as created (name, email, phone, notes, …):
/// those of `guest_ids` in `chain_id`. A response is decoded and its guest id compared exactly,
/// so `G1001`'s leaves `G10011`'s alone, and another chain's never matches.
async fn stored_profiles(
    conn: &mut sqlx::PgConnection,
    chain_id: &str,
    guest_ids: &[String],
) -> ApiResult<Vec<StoredProfile>> {
    let candidates: Vec<(String, chrono::DateTime<chrono::Utc>, Vec<u8>)> =
        sqlx::query_as(
            "SELECT request_id, created_at, response FROM idempotency_keys \
             WHERE chain_id IN ($2, '') AND method = 'CreateGuest' AND response IS NOT NULL \
               AND EXISTS (SELECT 1 FROM unnest($1::text[]) AS id WHERE position(convert_to(id, 'UTF8') IN response) > 0) \
             ORDER BY created_at, request_id",
        )
        .bind(guest_ids)
        .bind(chain_id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(candidates
        .into_iter()
        .filter_map(|(request_id, stored_at, response)| {
            let guest = pb::Guest::decode(response.as_slice()).ok()?;
            (guest.chain_id == chain_id && guest_ids.contains(&guest.guest_id)).then_some(
                StoredProfile {
                    request_id,
                    stored_at,
                    guest,
                },
            )
        })
        .collect())
}

/// The stored CreateGuest answers of `guest_ids`, for an export: the personal data each holds,
/// as the profile was created (an email or phone changed since is still in it).
async fn stored_profiles_as_json(
    conn: &mut sqlx::PgConnection,
    chain_id: &str,
    guest_ids: &[String],
) -> ApiResult<Value> {
    let time = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
            .map(|t| t.to_rfc3339())
    };
    let preferences = |entries: &[pb::Preference]| {
        entries
            .iter()
            .map(|p| {
                json!({
                    "group": p.group,
                    "value": p.value,
                    "polarity": pb::Polarity::try_from(p.polarity)
                        .map(|p| p.as_str_name())
                        .unwrap_or("POLARITY_UNSPECIFIED"),
                    "source": p.source,
                    "recorded_by": p.recorded_by,
                    "record_time": time(&p.record_time),
                })
            })
            .collect::<Vec<_>>()
    };
    let stored = stored_profiles(conn, chain_id, guest_ids).await?;
    Ok(Value::Array(
        stored
            .into_iter()
            .map(|s| {
                let g = s.guest;
                let consent = g.consent.unwrap_or_default();
                json!({
                    "method": "CreateGuest",
                    "request_id": s.request_id,
                    "stored_at": s.stored_at.to_rfc3339(),
                    "guest": {
                        "guest_id": g.guest_id,
                        "given_name": g.given_name,
                        "family_name": g.family_name,
                        "email": g.email,
                        "phone": g.phone,
                        "language": g.language,
                        "birthday": g.birthday,
                        "anniversary": g.anniversary,
                        "company": g.company,
                        "notes": g.notes,
                        "consent": {
                            "marketing": consent.marketing,
                            "profiling": consent.profiling,
                            "data_sharing": consent.data_sharing,
                            "given_time": time(&consent.given_time),
                            "source": consent.source,
                        },
                        "preferences": preferences(&g.preferences),
                        "avoid": preferences(&g.avoid),
                    },
                })
            })
            .collect(),
    ))
}

/// Stored CreateGuest responses of `guest_ids` in `chain_id` (see [`stored_profiles`]) lose the
/// profile: each answers the erased record (the pseudonym, marked erased) from now on, so a
/// retried create gets that instead of creating the guest again with their details.
async fn scrub_stored_profiles(
    conn: &mut sqlx::PgConnection,
    chain_id: &str,
    guest_ids: &[String],
    pseudonym: &str,
) -> ApiResult<()> {
    let erased = pb::Guest {
        guest_id: pseudonym.to_string(),
        chain_id: chain_id.to_string(),
        erased: true,
        ..Default::default()
    };
    // A response is decoded and its guest id compared exactly, as [`stored_profiles`] does.
    guestloop_kit::idempotency::rewrite_stored_answers(
        conn,
        chain_id,
        "CreateGuest",
        guest_ids,
        |stored: &mut pb::Guest| {
            let theirs = stored.chain_id == chain_id && guest_ids.contains(&stored.guest_id);
            if theirs {
                *stored = erased.clone();
            }
            theirs
        },
    )
    .await?;
    Ok(())
}

/// CRM's own event log names the guest too (tier changes): those events move to the pseudonym,
/// subject and payload, as the ledger does. The erasure events themselves keep the original ids,
/// which is what tells the other services whose copies to scrub.
async fn repoint_events(
    conn: &mut sqlx::PgConnection,
    original: &str,
    pseudonym: &str,
) -> ApiResult<()> {
    let events: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        // The subject's first two parts name the index (outbox_events_by_object); an id with a
        // `/` in it is matched whole by the subject.
        "SELECT id, payload FROM outbox_events WHERE split_part(subject, '/', 1) = 'guests' \
         AND split_part(subject, '/', 2) = split_part($1, '/', 2) AND subject = $1 \
         AND event_type = 'crm.tier.changed' FOR UPDATE",
    )
    .bind(format!("guests/{original}"))
    .fetch_all(&mut *conn)
    .await?;
    for (id, payload) in events {
        let mut changed = pb::TierChanged::decode(payload.as_slice())
            .map_err(|e| ApiError::internal(format!("stored tier event {id}: {e}")))?;
        changed.guest_id = pseudonym.to_string();
        changed.reason = "[erased]".into();
        sqlx::query("UPDATE outbox_events SET subject = $2, payload = $3 WHERE id = $1")
            .bind(id)
            .bind(format!("guests/{pseudonym}"))
            .bind(changed.encode_to_vec())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
