//! Assets and their usage meters.

use chrono::{Duration, NaiveDate, Utc};
use guestloop_kit::auth::principal;
use guestloop_kit::text::free_text;
use guestloop_kit::time::calendar_date;
use guestloop_kit::{idempotency, money, paging, tenancy, ApiError, ApiResult, FieldViolation};
use guestloop_proto::common::v1::Money;
use guestloop_proto::facilities::v1 as pb;
use tonic::Request;
use uuid::Uuid;

use super::{limits, Api};

#[derive(Debug, sqlx::FromRow)]
pub struct AssetRow {
    pub asset_id: Uuid,
    pub property_id: String,
    pub name: String,
    pub category: i16,
    pub building: String,
    pub floor: String,
    pub room: String,
    pub install_date: Option<NaiveDate>,
    pub expected_life_years: i32,
    pub vendor: String,
    pub warranty_end: Option<NaiveDate>,
    pub replacement_currency: String,
    pub replacement_minor: i64,
    pub status: String,
    pub meter_hours: i64,
    pub meter_cycles: i64,
    pub replacement_flagged: bool,
}

/// The longest expected life an asset may have: a building's structure lasts about this long,
/// and the replacement forecast adds it to the install date.
const MAX_LIFE_YEARS: i32 = 150;

pub(crate) const COLUMNS: &str = "asset_id, property_id, name, category, building, floor, room, install_date, expected_life_years, \
    vendor, warranty_end, replacement_currency, replacement_minor, status, meter_hours, meter_cycles, replacement_flagged";

pub fn to_proto(row: AssetRow) -> pb::Asset {
    pb::Asset {
        asset_id: row.asset_id.to_string(),
        property_id: row.property_id,
        name: row.name,
        category: i32::from(row.category),
        location: Some(pb::Location {
            building: row.building,
            floor: row.floor,
            room: row.room,
        }),
        install_date: row.install_date.map(|d| d.to_string()).unwrap_or_default(),
        expected_life_years: row.expected_life_years,
        vendor: row.vendor,
        warranty_end: row.warranty_end.map(|d| d.to_string()).unwrap_or_default(),
        replacement_cost: (row.replacement_minor > 0).then_some(Money {
            currency_code: row.replacement_currency,
            minor_units: row.replacement_minor,
        }),
        status: row.status,
        meter_hours: row.meter_hours,
        meter_cycles: row.meter_cycles,
        replacement_flagged: row.replacement_flagged,
    }
}

pub fn parse_id(text: &str, field: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| ApiError::invalid(field, "must be a UUID"))
}

pub async fn load(conn: &mut sqlx::PgConnection, id: Uuid) -> ApiResult<AssetRow> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM assets WHERE asset_id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| ApiError::not_found("asset", id.to_string()))
}

/// Checks that a request's asset reference names an asset of `property_id`: INVALID_ARGUMENT on
/// `field` otherwise. An unknown asset and another property's asset get the same answer, so the
/// refusal does not tell whether an asset exists outside the caller's property.
pub async fn require_of_property(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    property_id: &str,
    field: &str,
) -> ApiResult<()> {
    let owner: Option<String> =
        sqlx::query_scalar("SELECT property_id FROM assets WHERE asset_id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    if owner.as_deref() == Some(property_id) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!("{id} is not an asset of property {property_id}"),
        ))
    }
}

/// An optional date from `first` to `last` (empty: none).
fn optional_date(
    text: &str,
    field: &str,
    first: NaiveDate,
    last: NaiveDate,
    v: &mut Vec<FieldViolation>,
) -> Option<NaiveDate> {
    if text.is_empty() {
        return None;
    }
    calendar_date(text, field, first, last)
        .map_err(|e| v.push(e))
        .ok()
}

/// The earliest date an asset may have been installed.
const FIRST_INSTALL: NaiveDate = match NaiveDate::from_ymd_opt(1800, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

pub async fn create(api: &Api, request: Request<pb::CreateAssetRequest>) -> ApiResult<pb::Asset> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    idempotency::check_request_id(&request.request_id)?;
    let asset = request
        .asset
        .clone()
        .ok_or_else(|| ApiError::invalid("asset", "is required"))?;
    let mut v = Vec::new();
    if asset.property_id.is_empty() {
        v.push(FieldViolation::new("asset.property_id", "is required"));
    }
    let name = free_text(&asset.name, "asset.name", limits::NAME, true, &mut v);
    let vendor = free_text(&asset.vendor, "asset.vendor", limits::NAME, false, &mut v);
    let location = asset.location.clone().unwrap_or_default();
    let building = free_text(
        &location.building,
        "asset.location.building",
        limits::LABEL,
        false,
        &mut v,
    );
    let floor = free_text(
        &location.floor,
        "asset.location.floor",
        limits::LABEL,
        false,
        &mut v,
    );
    let room = free_text(
        &location.room,
        "asset.location.room",
        limits::ROOM,
        false,
        &mut v,
    );
    match pb::AssetCategory::try_from(asset.category) {
        Ok(pb::AssetCategory::Unspecified) => {
            v.push(FieldViolation::new("asset.category", "is required"))
        }
        Err(_) => v.push(FieldViolation::new(
            "asset.category",
            format!("unknown value {}", asset.category),
        )),
        Ok(_) => {}
    }
    // Installed by now (a year ahead for one being planned); a warranty of at most a century.
    let today = Utc::now().date_naive();
    let install = optional_date(
        &asset.install_date,
        "asset.install_date",
        FIRST_INSTALL,
        today + Duration::days(366),
        &mut v,
    );
    let warranty = optional_date(
        &asset.warranty_end,
        "asset.warranty_end",
        install.unwrap_or(FIRST_INSTALL),
        install.unwrap_or(today) + Duration::days(100 * 366),
        &mut v,
    );
    let (currency, minor_units) = money::non_negative(
        asset.replacement_cost.as_ref(),
        "asset.replacement_cost",
        &mut v,
    );
    if !(0..=MAX_LIFE_YEARS).contains(&asset.expected_life_years) {
        v.push(FieldViolation::new(
            "asset.expected_life_years",
            format!("must be between 0 (unknown) and {MAX_LIFE_YEARS} years"),
        ));
    }
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    tenancy::claim_property(&mut tx, &principal, &asset.property_id).await?;
    if let Some(previous) = idempotency::claim::<_, pb::Asset>(
        &mut tx,
        &principal,
        "CreateAsset",
        &request.request_id,
        &request,
    )
    .await?
    {
        return Ok(previous);
    }
    let row: AssetRow = sqlx::query_as(&format!(
        "INSERT INTO assets (asset_id, property_id, name, category, building, floor, room, install_date, expected_life_years, \
         vendor, warranty_end, replacement_currency, replacement_minor) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(&asset.property_id)
    .bind(&name)
    .bind(asset.category as i16)
    .bind(&building)
    .bind(&floor)
    .bind(&room)
    .bind(install)
    .bind(asset.expected_life_years)
    .bind(&vendor)
    .bind(warranty)
    .bind(&currency)
    .bind(minor_units)
    .fetch_one(&mut *tx)
    .await?;
    let reply = to_proto(row);
    idempotency::record(
        &mut tx,
        &principal,
        "CreateAsset",
        &request.request_id,
        &reply,
    )
    .await?;
    tx.commit().await?;
    Ok(reply)
}

pub async fn get(api: &Api, request: Request<pb::GetAssetRequest>) -> ApiResult<pb::Asset> {
    let principal = principal(&request)?.clone();
    let id = parse_id(&request.get_ref().asset_id, "asset_id")?;
    let mut conn = api.context.pool.acquire().await?;
    let row = load(&mut conn, id).await?;
    if !tenancy::can_access(&mut conn, &principal, &row.property_id).await? {
        return Err(ApiError::not_found("asset", id.to_string()));
    }
    Ok(to_proto(row))
}

pub async fn list(
    api: &Api,
    request: Request<pb::ListAssetsRequest>,
) -> ApiResult<pb::ListAssetsResponse> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let mut conn = api.context.pool.acquire().await?;
    tenancy::require_property(&mut conn, &principal, &request.property_id).await?;
    let limit = paging::page_size(request.page_size, 100, 1000)?;
    let after: Uuid = paging::decode_token(&request.page_token)?.unwrap_or_else(Uuid::nil);
    let rows: Vec<AssetRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM assets WHERE property_id = $1 AND ($2 = '' OR room = $2) AND asset_id > $3 ORDER BY asset_id LIMIT $4"
    ))
    .bind(&request.property_id)
    .bind(&request.room)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&mut *conn)
    .await?;
    let (rows, next_page_token) = paging::split_page(rows, limit, |r| r.asset_id);
    let assets = rows.into_iter().map(to_proto).collect();
    Ok(pb::ListAssetsResponse {
        assets,
        next_page_token,
    })
}

pub async fn meter(
    api: &Api,
    request: Request<pb::RecordMeterReadingRequest>,
) -> ApiResult<pb::Asset> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let id = parse_id(&request.asset_id, "asset_id")?;
    let column = match request.meter.as_str() {
        "hours" => "meter_hours",
        "cycles" => "meter_cycles",
        _ => return Err(ApiError::invalid("meter", "must be `hours` or `cycles`")),
    };
    let mut tx = api.context.pool.begin().await?;
    // Locked until commit: two readings at once are checked one after the other, so the later
    // check sees the earlier reading and a meter never goes backwards.
    let row: AssetRow = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM assets WHERE asset_id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("asset", id.to_string()))?;
    if !tenancy::can_access(&mut tx, &principal, &row.property_id).await? {
        return Err(ApiError::not_found("asset", id.to_string()));
    }
    let current = if column == "meter_hours" {
        row.meter_hours
    } else {
        row.meter_cycles
    };
    if request.value < current {
        return Err(ApiError::invalid(
            "value",
            format!("meter readings only grow; the last reading is {current}"),
        ));
    }
    let row: AssetRow = sqlx::query_as(&format!(
        "UPDATE assets SET {column} = $2 WHERE asset_id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(request.value)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(to_proto(row))
}
