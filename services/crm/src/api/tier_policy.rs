//! Each chain's tier programme: names, thresholds (nights, stays, spend), window, grace and the
//! downgrade limit, stored as the wire message and read through [`load`] wherever tiers are
//! evaluated or named.

use chrono::{DateTime, Duration, Utc};
use guestloop_kit::auth::principal;
use guestloop_kit::time::to_timestamp;
use guestloop_kit::{ApiError, ApiResult, FieldViolation};
use guestloop_proto::common::v1::AuditStamps;
use guestloop_proto::crm::v1 as pb;
use prost::Message;
use sqlx::PgExecutor;
use tonic::Request;

use super::Api;
use crate::domain::tiers::{Threshold, TierPolicy, Window};

fn threshold(wire: Option<&pb::TierThreshold>, default: Threshold) -> Threshold {
    wire.map_or(default, |t| Threshold {
        nights: t.nights,
        stays: t.stays,
        spend: t.spend_minor_units,
    })
}

fn threshold_to_wire(t: Threshold) -> pb::TierThreshold {
    pb::TierThreshold {
        nights: t.nights,
        stays: t.stays,
        spend_minor_units: t.spend,
    }
}

/// The policy a wire message describes, defaults for what it leaves unset.
pub fn from_wire(wire: &pb::TierPolicy) -> Result<TierPolicy, Vec<FieldViolation>> {
    let defaults = TierPolicy::default();
    let name = |given: &str, default: &String| {
        if given.is_empty() {
            default.clone()
        } else {
            given.trim().to_string()
        }
    };
    let window = match pb::TierWindow::try_from(wire.window) {
        Ok(pb::TierWindow::Unspecified | pb::TierWindow::Rolling12Months) => {
            Window::Rolling12Months
        }
        Ok(pb::TierWindow::CalendarYear) => Window::CalendarYear,
        Err(_) => {
            return Err(vec![FieldViolation::new(
                "policy.window",
                format!("unknown value {}", wire.window),
            )])
        }
    };
    let policy = TierPolicy {
        names: [
            name(&wire.new_name, &defaults.names[0]),
            name(&wire.regular_name, &defaults.names[1]),
            name(&wire.vip_name, &defaults.names[2]),
            name(&wire.strategic_name, &defaults.names[3]),
        ],
        regular: threshold(wire.regular.as_ref(), defaults.regular),
        vip: threshold(wire.vip.as_ref(), defaults.vip),
        spend_currency: wire.spend_currency.trim().to_string(),
        window,
        grace: wire
            .grace_days
            .map_or(defaults.grace, |d| Duration::days(i64::from(d))),
        max_downgrade_steps: match wire.max_downgrade_steps {
            0 => defaults.max_downgrade_steps,
            n => u8::try_from(n).unwrap_or(u8::MAX),
        },
    };
    let faults = policy.faults();
    if faults.is_empty() {
        Ok(policy)
    } else {
        Err(faults
            .into_iter()
            .map(|(field, why)| FieldViolation::new(field, why))
            .collect())
    }
}

pub fn to_wire(policy: &TierPolicy, stamp: Option<(DateTime<Utc>, String)>) -> pb::TierPolicy {
    pb::TierPolicy {
        new_name: policy.names[0].clone(),
        regular_name: policy.names[1].clone(),
        vip_name: policy.names[2].clone(),
        strategic_name: policy.names[3].clone(),
        regular: Some(threshold_to_wire(policy.regular)),
        vip: Some(threshold_to_wire(policy.vip)),
        spend_currency: policy.spend_currency.clone(),
        window: match policy.window {
            Window::Rolling12Months => pb::TierWindow::Rolling12Months,
            Window::CalendarYear => pb::TierWindow::CalendarYear,
        } as i32,
        grace_days: Some(i32::try_from(policy.grace.num_days()).unwrap_or(i32::MAX)),
        max_downgrade_steps: i32::from(policy.max_downgrade_steps),
        stamps: stamp.map(|(at, by)| AuditStamps {
            update_time: Some(to_timestamp(at)),
            updated_by: by,
            ..Default::default()
        }),
    }
}

/// The chain's policy (defaults when none is stored) and who last changed it.
pub async fn load<'e>(
    db: impl PgExecutor<'e>,
    chain_id: &str,
) -> ApiResult<(TierPolicy, Option<(DateTime<Utc>, String)>)> {
    let row: Option<(Vec<u8>, DateTime<Utc>, String)> = sqlx::query_as(
        "SELECT policy, updated_at, updated_by FROM tier_policies WHERE chain_id = $1",
    )
    .bind(chain_id)
    .fetch_optional(db)
    .await?;
    let Some((bytes, at, by)) = row else {
        return Ok((TierPolicy::default(), None));
    };
    let wire = pb::TierPolicy::decode(bytes.as_slice()).map_err(ApiError::internal)?;
    let policy = from_wire(&wire).map_err(|faults| {
        ApiError::internal(format!(
            "stored tier policy of {chain_id} no longer validates: {faults:?}"
        ))
    })?;
    Ok((policy, Some((at, by))))
}

/// The chain's display name of a tier key ("vip" → "Gold"); unknown keys are returned as given.
pub async fn tier_name<'e>(
    db: impl PgExecutor<'e>,
    chain_id: &str,
    tier: &str,
) -> ApiResult<String> {
    let (policy, _) = load(db, chain_id).await?;
    Ok(crate::domain::tiers::Tier::parse(tier)
        .map_or_else(|| tier.to_string(), |t| policy.name(t).to_string()))
}

pub async fn get(
    api: &Api,
    request: Request<pb::GetTierPolicyRequest>,
) -> ApiResult<pb::TierPolicy> {
    let principal = principal(&request)?.clone();
    let (policy, stamp) = load(&api.context.pool, principal.chain_id()).await?;
    Ok(to_wire(&policy, stamp))
}

pub async fn update(
    api: &Api,
    request: Request<pb::UpdateTierPolicyRequest>,
) -> ApiResult<pb::TierPolicy> {
    let principal = principal(&request)?.clone();
    let wire = request
        .into_inner()
        .policy
        .ok_or_else(|| ApiError::invalid("policy", "is required"))?;
    let policy = from_wire(&wire).map_err(ApiError::InvalidArgument)?;
    let mut stored = to_wire(&policy, None);
    stored.stamps = None;
    let at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO tier_policies (chain_id, policy, updated_at, updated_by) VALUES ($1, $2, now(), $3) \
         ON CONFLICT (chain_id) DO UPDATE SET policy = EXCLUDED.policy, updated_at = now(), updated_by = EXCLUDED.updated_by \
         RETURNING updated_at",
    )
    .bind(principal.chain_id())
    .bind(stored.encode_to_vec())
    .bind(principal.subject())
    .fetch_one(&api.context.pool)
    .await?;
    Ok(to_wire(
        &policy,
        Some((at, principal.subject().to_string())),
    ))
}
