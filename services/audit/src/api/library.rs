//! The standards library and versioned templates.

use guestloop_kit::auth::{principal, Principal};
use guestloop_kit::text::free_text;
use guestloop_kit::{idempotency, tenancy, ApiError, ApiResult, FieldViolation};
use guestloop_proto::audit::v1 as pb;
use prost::Message;
use tonic::Request;
use uuid::Uuid;

use super::{Api, MAX_CODE, MAX_NAME, MAX_TOUCHPOINT, MAX_UNIT};

#[derive(sqlx::FromRow)]
pub struct StandardRow {
    pub standard_id: Uuid,
    pub code: String,
    pub property_id: String,
    pub title: String,
    pub department: String,
    pub touchpoint: String,
    pub kind: i16,
    pub min_value: f64,
    pub max_value: f64,
    pub unit: String,
    pub dimension: i16,
    pub weight: f64,
}

pub const STANDARD_COLUMNS: &str = "standard_id, code, property_id, title, department, touchpoint, kind, min_value, max_value, unit, dimension, weight";

pub fn standard_to_proto(row: StandardRow) -> pb::Standard {
    pb::Standard {
        standard_id: row.standard_id.to_string(),
        code: row.code,
        title: row.title,
        department: row.department,
        touchpoint: row.touchpoint,
        kind: i32::from(row.kind),
        min: row.min_value,
        max: row.max_value,
        unit: row.unit,
        dimension: i32::from(row.dimension),
        weight: row.weight,
        property_id: row.property_id,
    }
}

/// The chain whose library applies at each of `properties`: the chain each is registered to,
/// else (unregistered, or `""` for none) the caller's. Each chain once.
pub async fn library_chains(
    conn: &mut sqlx::PgConnection,
    principal: &Principal,
    properties: &[&str],
) -> ApiResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT coalesce(pc.chain_id, $2) FROM unnest($1::text[]) AS p(property_id) \
         LEFT JOIN property_chains pc ON pc.property_id = p.property_id AND p.property_id <> '' \
         ORDER BY 1",
    )
    .bind(properties)
    .bind(principal.chain_id())
    .fetch_all(conn)
    .await?)
}

/// [`library_chains`] for one property (`""`: the caller's chain).
pub async fn library_chain(
    conn: &mut sqlx::PgConnection,
    principal: &Principal,
    property: &str,
) -> ApiResult<String> {
    Ok(library_chains(conn, principal, &[property])
        .await?
        .into_iter()
        .next()
        .unwrap_or_else(|| principal.chain_id().to_string()))
}

/// An SQL condition on `standards s` that keeps the library of the chains in bind parameter
/// `$chains` (text[]) at the properties in `$properties` (text[]): those chains' chain-wide
/// standards, the shared ones (chain `''`, from before standards had a chain) and the
/// properties' own. Order a code's rows by [`LIBRARY_PRECEDENCE`] to pick the one that applies.
pub fn library_condition(chains: usize, properties: usize) -> String {
    format!(
        "((s.property_id = '' AND (s.chain_id = '' OR s.chain_id = ANY(${chains}::text[]))) \
         OR (s.property_id <> '' AND s.property_id = ANY(${properties}::text[])))"
    )
}

/// Which of a code's rows in [`library_condition`] applies: the property's own, then the
/// chain's own, then the shared one.
pub const LIBRARY_PRECEDENCE: &str = "(s.property_id = ''), (s.chain_id = ''), s.chain_id";

/// Standards that apply at `property` (`""` for none) for `chain` (see [`library_chain`]): the
/// chain's and the shared ones, plus the property's own, one per code ([`LIBRARY_PRECEDENCE`]).
pub async fn standards_for(
    conn: &mut sqlx::PgConnection,
    chain: &str,
    property_id: &str,
) -> ApiResult<Vec<StandardRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT DISTINCT ON (s.code) {STANDARD_COLUMNS} FROM standards s WHERE {} \
         ORDER BY s.code, {LIBRARY_PRECEDENCE}",
        library_condition(1, 2)
    ))
    .bind([chain])
    .bind([property_id])
    .fetch_all(conn)
    .await?)
}

pub async fn create_standard(
    api: &Api,
    request: Request<pb::CreateStandardRequest>,
) -> ApiResult<pb::Standard> {
    let principal = principal(&request)?.clone();
    let standard = request
        .into_inner()
        .standard
        .ok_or_else(|| ApiError::invalid("standard", "is required"))?;
    let mut v = Vec::new();
    let code = free_text(&standard.code, "standard.code", MAX_CODE, true, &mut v);
    let title = free_text(&standard.title, "standard.title", MAX_NAME, true, &mut v);
    let department = free_text(
        &standard.department,
        "standard.department",
        MAX_NAME,
        false,
        &mut v,
    );
    let touchpoint = free_text(
        &standard.touchpoint,
        "standard.touchpoint",
        MAX_TOUCHPOINT,
        false,
        &mut v,
    );
    let unit = free_text(&standard.unit, "standard.unit", MAX_UNIT, false, &mut v);
    match pb::StandardKind::try_from(standard.kind) {
        Ok(pb::StandardKind::HardNumeric)
            if !standard.min.is_finite() || !standard.max.is_finite() =>
        {
            v.push(FieldViolation::new(
                "standard.min",
                "min and max must be finite numbers",
            ))
        }
        Ok(pb::StandardKind::HardNumeric) if standard.min > standard.max => {
            v.push(FieldViolation::new("standard.min", "must not exceed max"))
        }
        Ok(pb::StandardKind::Unspecified) | Err(_) => {
            v.push(FieldViolation::new("standard.kind", "is required"))
        }
        Ok(_) => {}
    }
    if !matches!(pb::Dimension::try_from(standard.dimension), Ok(d) if d != pb::Dimension::Unspecified)
    {
        v.push(FieldViolation::new(
            "standard.dimension",
            "must be one of the five service-quality dimensions",
        ));
    }
    if standard.weight <= 0.0 || !standard.weight.is_finite() {
        v.push(FieldViolation::new(
            "standard.weight",
            "must be greater than zero",
        ));
    }
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    // A property's own standard is a record of that property: it registers the property. A
    // chain-wide standard (no property) names none, and enters every property's library.
    if standard.property_id.is_empty() {
        principal.require_whole_chain("a chain-wide standard (no standard.property_id)")?;
    } else {
        tenancy::claim_property(&mut tx, &principal, &standard.property_id).await?;
    }
    // A chain-wide standard is the caller's chain's; a property's own, its property's chain's.
    let chain = library_chain(&mut tx, &principal, &standard.property_id).await?;
    let row: StandardRow = sqlx::query_as(&format!(
        "INSERT INTO standards ({STANDARD_COLUMNS}, chain_id) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) RETURNING {STANDARD_COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(&code)
    .bind(&standard.property_id)
    .bind(&title)
    .bind(&department)
    .bind(&touchpoint)
    .bind(standard.kind as i16)
    .bind(standard.min)
    .bind(standard.max)
    .bind(&unit)
    .bind(standard.dimension as i16)
    .bind(standard.weight)
    .bind(&chain)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(standard_to_proto(row))
}

pub async fn list_standards(
    api: &Api,
    request: Request<pb::ListStandardsRequest>,
) -> ApiResult<pb::ListStandardsResponse> {
    let principal = principal(&request)?.clone();
    let property = request.into_inner().property_id;
    let mut conn = api.context.pool.acquire().await?;
    if !property.is_empty() {
        tenancy::require_property(&mut conn, &principal, &property).await?;
    }
    let chain = library_chain(&mut conn, &principal, &property).await?;
    let rows = standards_for(&mut conn, &chain, &property).await?;
    Ok(pb::ListStandardsResponse {
        standards: rows.into_iter().map(standard_to_proto).collect(),
    })
}

/// Which versions of a template a load may see. Each version carries the chain it was published
/// for, `''` for the shared versions from before templates had a chain.
#[derive(Clone, Copy, Debug)]
pub enum Reach<'a> {
    /// Every version: an audit's own version, or a service (which acts for every chain).
    Any,
    /// The chain's versions and the shared ones; a template with neither is not found. For a
    /// caller naming a template by id.
    Chain(&'a str),
    /// The chain's versions and the shared ones first, any other when there are none. For
    /// existing programs, which were made legitimately and keep being scheduled: one made before
    /// templates had a chain may use a template now owned by another chain.
    Prefer(&'a str),
}

impl<'a> Reach<'a> {
    /// [`Reach::Chain`] for the caller's chain, [`Reach::Any`] for services.
    pub fn of(principal: &'a Principal) -> Self {
        tenancy::caller_chain(principal).map_or(Reach::Any, Reach::Chain)
    }
}

/// A template version as stored: `version`, or the latest one within `reach`.
pub async fn template(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    version: Option<i32>,
    reach: Reach<'_>,
) -> ApiResult<pb::Template> {
    let (chain, strict) = match reach {
        Reach::Any => (None, false),
        Reach::Chain(chain) => (Some(chain), true),
        Reach::Prefer(chain) => (Some(chain), false),
    };
    let row: Option<(i32, String, Vec<u8>, i16, f64)> = sqlx::query_as(
        "SELECT version, name, sections, critical_rule, pass_threshold FROM templates WHERE template_id = $1 \
         AND ($2::int IS NULL OR version = $2) AND (NOT $4 OR chain_id IN ('', $3)) \
         ORDER BY ($3::text IS NOT NULL AND chain_id IN ('', $3)) DESC, version DESC LIMIT 1",
    )
    .bind(id)
    .bind(version)
    .bind(chain)
    .bind(strict)
    .fetch_optional(conn)
    .await?;
    let (version, name, sections, critical_rule, pass_threshold) =
        row.ok_or_else(|| ApiError::not_found("template", id.to_string()))?;
    let stored = pb::PublishTemplateRequest::decode(sections.as_slice())
        .map_err(|e| ApiError::internal(format!("stored template cannot be decoded: {e}")))?;
    let (sections, touchpoint_weighted) = (stored.sections, stored.touchpoint_weighted);
    Ok(pb::Template {
        template_id: id.to_string(),
        version,
        name,
        sections,
        critical_rule: i32::from(critical_rule),
        pass_threshold,
        touchpoint_weighted,
    })
}

/// Holds template `id`'s lock until the transaction ends: exclusive to publish a version of it,
/// shared to adopt it in a program (so a revision sees every program that uses it).
pub async fn lock_template(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    exclusive: bool,
) -> ApiResult<()> {
    let lock = if exclusive {
        "SELECT pg_advisory_xact_lock(hashtextextended('audit.templates/' || $1::text, 0))"
    } else {
        "SELECT pg_advisory_xact_lock_shared(hashtextextended('audit.templates/' || $1::text, 0))"
    };
    sqlx::query(lock).bind(id).execute(conn).await?;
    Ok(())
}

/// The chain a new version of template `id` is published for, with the template locked until
/// the transaction ends (so two first revisions of a shared template cannot both take it over).
/// A new template is the caller's chain's. An owned one keeps its chain, and is not found for a
/// caller of another chain. A shared one (`''`, from before templates had a chain) is taken over
/// by the first chain that revises it, from the new version on: its earlier versions stay shared,
/// so programs of other chains on it keep scheduling the last shared version, not the new
/// owner's. Services act for every chain and leave a shared template shared.
async fn publishing_chain(
    conn: &mut sqlx::PgConnection,
    principal: &Principal,
    id: Uuid,
    named: bool,
) -> ApiResult<String> {
    lock_template(&mut *conn, id, true).await?;
    // Only one chain ever publishes versions of a template after the shared ones, so the
    // greatest chain is its owner ('' when every version is shared).
    let (versions, owner): (i64, String) = sqlx::query_as(
        "SELECT count(*), coalesce(max(chain_id), '') FROM templates WHERE template_id = $1",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let caller = tenancy::caller_chain(principal);
    Ok(if versions == 0 {
        // An id the caller named must be a template's: a typo would start a new one.
        if named {
            return Err(ApiError::not_found("template", id.to_string()));
        }
        principal.chain_id().to_string()
    } else if owner.is_empty() {
        caller.unwrap_or_default().to_string()
    } else if caller.is_none_or(|chain| chain == owner) {
        owner
    } else {
        return Err(ApiError::not_found("template", id.to_string()));
    })
}

/// A revision changes how every program that uses the template audits: a caller whose token
/// does not cover the whole chain may revise it only when all those programs are at properties
/// in their scope. Called under the template's exclusive [`lock_template`], so a program
/// adopting the template meanwhile waits and is seen.
async fn require_every_use_in_scope(
    conn: &mut sqlx::PgConnection,
    principal: &Principal,
    template_id: Uuid,
) -> ApiResult<()> {
    if principal.covers_whole_chain() {
        return Ok(());
    }
    let users: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT property_id FROM programs WHERE template_id = $1 ORDER BY property_id",
    )
    .bind(template_id)
    .fetch_all(&mut *conn)
    .await?;
    principal.require_every_user(&users, &format!("template {template_id}"))
}

pub async fn publish_template(
    api: &Api,
    request: Request<pb::PublishTemplateRequest>,
) -> ApiResult<pb::Template> {
    let principal = principal(&request)?.clone();
    let mut request = request.into_inner();
    let mut v = Vec::new();
    let name = free_text(&request.name, "name", MAX_NAME, true, &mut v);
    for (s, section) in request.sections.iter_mut().enumerate() {
        section.name = free_text(
            &section.name,
            &format!("sections[{s}].name"),
            MAX_NAME,
            false,
            &mut v,
        );
    }
    if request.sections.is_empty() || request.sections.iter().any(|s| s.items.is_empty()) {
        v.push(FieldViolation::new(
            "sections",
            "every template needs sections, each with items",
        ));
    }
    let mut codes: Vec<&str> = Vec::new();
    for (s, section) in request.sections.iter().enumerate() {
        for (i, item) in section.items.iter().enumerate() {
            if item.weight <= 0.0 || !item.weight.is_finite() {
                v.push(FieldViolation::new(
                    format!("sections[{s}].items[{i}].weight"),
                    "must be greater than zero",
                ));
            }
            let code = item.standard_code.as_str();
            if code.trim().is_empty() {
                v.push(FieldViolation::new(
                    format!("sections[{s}].items[{i}].standard_code"),
                    "is required",
                ));
            } else if codes.contains(&code) {
                v.push(FieldViolation::new(
                    format!("sections[{s}].items[{i}].standard_code"),
                    format!("`{code}` is already an item of this template"),
                ));
            } else {
                codes.push(code);
            }
        }
    }
    let id = if request.template_id.is_empty() {
        Uuid::now_v7()
    } else {
        Uuid::parse_str(&request.template_id)
            .map_err(|_| ApiError::invalid("template_id", "must be a UUID"))?
    };
    idempotency::check_request_id(&request.request_id)?;
    let mut tx = api.context.pool.begin().await?;
    let chain = publishing_chain(&mut tx, &principal, id, !request.template_id.is_empty()).await?;
    require_every_use_in_scope(&mut tx, &principal, id).await?;
    if let Some(previous) = idempotency::claim::<_, pb::Template>(
        &mut tx,
        &principal,
        "PublishTemplate",
        &request.request_id,
        &request,
    )
    .await?
    {
        return Ok(previous);
    }
    // Every item must name a standard of the library (chain-wide or of some property): a code
    // nobody defined would make every audit of the template impossible to submit. The library is
    // the template's chain's (the caller's, for a service's shared template) and the shared
    // one; another chain's standards, chain-wide or of its properties, are not in it.
    let library = if chain.is_empty() {
        principal.chain_id()
    } else {
        chain.as_str()
    };
    let known: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT DISTINCT code FROM standards s WHERE code = ANY($1) AND \
         ((s.property_id = '' AND s.chain_id IN ('', $3)) OR (s.property_id <> '' AND {}))",
        tenancy::foreign_property_filter("s.property_id", 2)
    ))
    .bind(&codes)
    .bind(tenancy::caller_chain(&principal))
    .bind(library)
    .fetch_all(&mut *tx)
    .await?;
    for (s, section) in request.sections.iter().enumerate() {
        for (i, item) in section.items.iter().enumerate() {
            let code = &item.standard_code;
            if !code.trim().is_empty() && !known.contains(code) {
                v.push(FieldViolation::new(
                    format!("sections[{s}].items[{i}].standard_code"),
                    format!("`{code}` is not a standard of the library; create it first"),
                ));
            }
        }
    }
    if !(0.0..=100.0).contains(&request.pass_threshold) {
        v.push(FieldViolation::new(
            "pass_threshold",
            "must be between 0 and 100",
        ));
    }
    let rule = match pb::CriticalRule::try_from(request.critical_rule) {
        Ok(pb::CriticalRule::Unspecified) => pb::CriticalRule::FailSection,
        Ok(rule) => rule,
        Err(_) => {
            v.push(FieldViolation::new("critical_rule", "unknown value"));
            pb::CriticalRule::FailSection
        }
    };
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let stored = pb::PublishTemplateRequest {
        template_id: String::new(),
        name: String::new(),
        sections: request.sections.clone(),
        critical_rule: 0,
        pass_threshold: 0.0,
        touchpoint_weighted: request.touchpoint_weighted,
        request_id: String::new(),
    };
    let version: i32 = sqlx::query_scalar(
        "INSERT INTO templates (template_id, version, name, sections, critical_rule, pass_threshold, chain_id) \
         SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4, $5, $6 FROM templates WHERE template_id = $1 RETURNING version",
    )
    .bind(id)
    .bind(&name)
    .bind(stored.encode_to_vec())
    .bind(rule as i16)
    .bind(request.pass_threshold)
    .bind(&chain)
    .fetch_one(&mut *tx)
    .await?;
    let published = pb::Template {
        template_id: id.to_string(),
        version,
        name,
        sections: request.sections.clone(),
        critical_rule: rule as i32,
        pass_threshold: request.pass_threshold,
        touchpoint_weighted: request.touchpoint_weighted,
    };
    idempotency::record(
        &mut tx,
        &principal,
        "PublishTemplate",
        &request.request_id,
        &published,
    )
    .await?;
    tx.commit().await?;
    Ok(published)
}
