//! The standards library and versioned templates.

use guestloop_kit::auth::principal;
use guestloop_kit::{tenancy, ApiError, ApiResult, FieldViolation};
use guestloop_proto::audit::v1 as pb;
use prost::Message;
use tonic::Request;
use uuid::Uuid;

use super::Api;

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

/// Standards that apply at a property: the chain's plus the property's own (which win on code).
pub async fn standards_for(
    conn: &mut sqlx::PgConnection,
    property_id: &str,
) -> ApiResult<Vec<StandardRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT DISTINCT ON (code) {STANDARD_COLUMNS} FROM standards WHERE property_id IN ('', $1) ORDER BY code, property_id DESC"
    ))
    .bind(property_id)
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
    if standard.code.trim().is_empty() {
        v.push(FieldViolation::new("standard.code", "is required"));
    }
    if standard.title.trim().is_empty() {
        v.push(FieldViolation::new("standard.title", "is required"));
    }
    match pb::StandardKind::try_from(standard.kind) {
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
    // chain-wide standard (no property) names none.
    if !standard.property_id.is_empty() {
        tenancy::claim_property(&mut tx, &principal, &standard.property_id).await?;
    }
    let row: StandardRow = sqlx::query_as(&format!(
        "INSERT INTO standards ({STANDARD_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) RETURNING {STANDARD_COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(standard.code.trim())
    .bind(&standard.property_id)
    .bind(standard.title.trim())
    .bind(&standard.department)
    .bind(&standard.touchpoint)
    .bind(standard.kind as i16)
    .bind(standard.min)
    .bind(standard.max)
    .bind(&standard.unit)
    .bind(standard.dimension as i16)
    .bind(standard.weight)
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
    let rows = standards_for(&mut conn, &property).await?;
    Ok(pb::ListStandardsResponse {
        standards: rows.into_iter().map(standard_to_proto).collect(),
    })
}

/// A template version as stored.
pub async fn template(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    version: Option<i32>,
) -> ApiResult<pb::Template> {
    let row: Option<(i32, String, Vec<u8>, i16, f64)> = sqlx::query_as(
        "SELECT version, name, sections, critical_rule, pass_threshold FROM templates WHERE template_id = $1 \
         AND ($2::int IS NULL OR version = $2) ORDER BY version DESC LIMIT 1",
    )
    .bind(id)
    .bind(version)
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

pub async fn publish_template(
    api: &Api,
    request: Request<pb::PublishTemplateRequest>,
) -> ApiResult<pb::Template> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let mut v = Vec::new();
    if request.name.trim().is_empty() {
        v.push(FieldViolation::new("name", "is required"));
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
    // Every item must name a standard of the library (chain-wide or of some property): a code
    // nobody defined would make every audit of the template impossible to submit. Another
    // chain's property standards are not the caller's library.
    let known: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT DISTINCT code FROM standards s WHERE code = ANY($1) AND {}",
        tenancy::foreign_property_filter("s.property_id", 2)
    ))
    .bind(&codes)
    .bind(tenancy::caller_chain(&principal))
    .fetch_all(&api.context.pool)
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
    let id = if request.template_id.is_empty() {
        Uuid::now_v7()
    } else {
        Uuid::parse_str(&request.template_id)
            .map_err(|_| ApiError::invalid("template_id", "must be a UUID"))?
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
    };
    let version: i32 = sqlx::query_scalar(
        "INSERT INTO templates (template_id, version, name, sections, critical_rule, pass_threshold) \
         SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4, $5 FROM templates WHERE template_id = $1 RETURNING version",
    )
    .bind(id)
    .bind(request.name.trim())
    .bind(stored.encode_to_vec())
    .bind(rule as i16)
    .bind(request.pass_threshold)
    .fetch_one(&api.context.pool)
    .await?;
    Ok(pb::Template {
        template_id: id.to_string(),
        version,
        name: request.name.trim().to_string(),
        sections: request.sections,
        critical_rule: rule as i32,
        pass_threshold: request.pass_threshold,
        touchpoint_weighted: request.touchpoint_weighted,
    })
}
