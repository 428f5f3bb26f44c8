//! Each chain's loyalty program: tier names, thresholds (nights, stays, spend), window, grace and
//! the downgrade limit, what stays earn at each tier, and how points expire. Stored as the wire message and read through
//! [`load`] wherever tiers are evaluated or named and points expire.

use chrono::Duration;
use chrono_tz::Tz;
use guestloop_kit::auth::principal;
use guestloop_kit::{ApiError, ApiResult, FieldViolation};
use guestloop_proto::crm::v1 as pb;
use prost::Message;
use sqlx::PgExecutor;
use tonic::Request;

use super::chain_settings::{stamps, Stamp, Stored};
use super::Api;
use crate::domain::ledger::{ExpiryMode, ExpiryPolicy};
use crate::domain::stay_points::{EarnRule, Rate};
use crate::domain::tiers::{Threshold, Tier, TierPolicy, Window};

/// A chain's whole loyalty program.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub tiers: TierPolicy,
    pub expiry: ExpiryPolicy,
    pub earn: EarnRule,
    /// Whose calendar the program's days follow (tier years, daily credit limits).
    pub zone: Tz,
}

/// A time zone named in IANA's database, or UTC for an empty name.
fn zone(name: &str) -> Result<Tz, String> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>()
        .map_err(|_| format!("`{name}` is not an IANA time zone such as Europe/Lisbon"))
}

fn threshold(wire: Option<&pb::TierThreshold>, default: Threshold) -> Threshold {
    wire.map_or(default, |t| Threshold {
        nights: t.nights,
        stays: t.stays,
        spend: t.spend_minor_units,
    })
}

fn earn_from_wire(wire: Option<&pb::EarnRule>) -> EarnRule {
    let defaults = EarnRule::default();
    let Some(wire) = wire else {
        return defaults;
    };
    let mut rates = defaults.rates;
    for (rate, given) in
        rates
            .iter_mut()
            .zip([&wire.new, &wire.regular, &wire.vip, &wire.strategic])
    {
        if let Some(given) = given {
            *rate = Rate {
                per_night: given.points_per_night,
                per_spend_unit: given.points_per_spend_unit,
            };
        }
    }
    EarnRule { rates }
}

fn earn_to_wire(rule: &EarnRule) -> pb::EarnRule {
    let [new, regular, vip, strategic] = rule.rates.map(|r| {
        Some(pb::EarnRate {
            points_per_night: r.per_night,
            points_per_spend_unit: r.per_spend_unit,
        })
    });
    pb::EarnRule {
        new,
        regular,
        vip,
        strategic,
    }
}

fn threshold_to_wire(t: Threshold) -> pb::TierThreshold {
    pb::TierThreshold {
        nights: t.nights,
        stays: t.stays,
        spend_minor_units: t.spend,
    }
}

impl Default for Program {
    fn default() -> Self {
        Self {
            tiers: TierPolicy::default(),
            expiry: ExpiryPolicy::default(),
            earn: EarnRule::default(),
            zone: Tz::UTC,
        }
    }
}

/// The program a wire message describes, defaults for what it leaves unset.
pub fn from_wire(wire: &pb::LoyaltyProgram) -> Result<Program, Vec<FieldViolation>> {
    let defaults = Program::default();
    let mut violations = Vec::new();
    let name = |given: &str, default: &String| {
        if given.is_empty() {
            default.clone()
        } else {
            given.trim().to_string()
        }
    };
    let window = match pb::TierWindow::try_from(wire.window) {
        Ok(pb::TierWindow::CalendarYear) => Window::CalendarYear,
        Ok(_) => Window::Rolling12Months,
        Err(_) => {
            violations.push(FieldViolation::new(
                "program.window",
                format!("unknown value {}", wire.window),
            ));
            Window::Rolling12Months
        }
    };
    let mode = match pb::ExpiryMode::try_from(wire.expiry_mode) {
        Ok(pb::ExpiryMode::PerCredit) => ExpiryMode::PerCredit,
        Ok(_) => ExpiryMode::Inactivity,
        Err(_) => {
            violations.push(FieldViolation::new(
                "program.expiry_mode",
                format!("unknown value {}", wire.expiry_mode),
            ));
            ExpiryMode::Inactivity
        }
    };
    let months = match wire.expiry_months {
        0 => defaults.expiry.months,
        n if (1..=120).contains(&n) => n.unsigned_abs(),
        n => {
            violations.push(FieldViolation::new(
                "program.expiry_months",
                format!("must be between 1 and 120, not {n}"),
            ));
            defaults.expiry.months
        }
    };
    let tiers = TierPolicy {
        names: [
            name(&wire.new_name, &defaults.tiers.names[0]),
            name(&wire.regular_name, &defaults.tiers.names[1]),
            name(&wire.vip_name, &defaults.tiers.names[2]),
            name(&wire.strategic_name, &defaults.tiers.names[3]),
        ],
        regular: threshold(wire.regular.as_ref(), defaults.tiers.regular),
        vip: threshold(wire.vip.as_ref(), defaults.tiers.vip),
        spend_currency: wire.spend_currency.trim().to_string(),
        window,
        grace: wire
            .grace_days
            .map_or(defaults.tiers.grace, |d| Duration::days(i64::from(d))),
        max_downgrade_steps: match wire.max_downgrade_steps {
            0 => defaults.tiers.max_downgrade_steps,
            n => u8::try_from(n).unwrap_or(u8::MAX),
        },
    };
    let earn = earn_from_wire(wire.earn.as_ref());
    let zone = zone(&wire.time_zone).unwrap_or_else(|why| {
        violations.push(FieldViolation::new("program.time_zone", why));
        Tz::UTC
    });
    let mut faults = tiers.faults();
    faults.extend(earn.faults());
    // Spend thresholds already ask for the currency; spend earning asks the same.
    let currency_fault = faults.iter().any(|(f, _)| f == "program.spend_currency");
    let currency_ok = tiers.spend_currency.len() == 3
        && tiers.spend_currency.chars().all(|c| c.is_ascii_uppercase());
    if earn.uses_spend() && !currency_ok && !currency_fault {
        faults.push((
            "program.spend_currency".into(),
            "a three-letter ISO 4217 code is needed when a tier earns points on spend".into(),
        ));
    }
    violations.extend(
        faults
            .into_iter()
            .map(|(field, why)| FieldViolation::new(field, why)),
    );
    if violations.is_empty() {
        Ok(Program {
            tiers,
            expiry: ExpiryPolicy { mode, months },
            earn,
            zone,
        })
    } else {
        Err(violations)
    }
}

pub fn to_wire(program: &Program, stamp: Option<Stamp>) -> pb::LoyaltyProgram {
    let tiers = &program.tiers;
    pb::LoyaltyProgram {
        new_name: tiers.names[0].clone(),
        regular_name: tiers.names[1].clone(),
        vip_name: tiers.names[2].clone(),
        strategic_name: tiers.names[3].clone(),
        regular: Some(threshold_to_wire(tiers.regular)),
        vip: Some(threshold_to_wire(tiers.vip)),
        spend_currency: tiers.spend_currency.clone(),
        window: match tiers.window {
            Window::Rolling12Months => pb::TierWindow::Rolling12Months,
            Window::CalendarYear => pb::TierWindow::CalendarYear,
        } as i32,
        grace_days: Some(i32::try_from(tiers.grace.num_days()).unwrap_or(i32::MAX)),
        max_downgrade_steps: i32::from(tiers.max_downgrade_steps),
        stamps: stamps(stamp),
        expiry_mode: match program.expiry.mode {
            ExpiryMode::Inactivity => pb::ExpiryMode::Inactivity,
            ExpiryMode::PerCredit => pb::ExpiryMode::PerCredit,
        } as i32,
        expiry_months: i32::try_from(program.expiry.months).unwrap_or(i32::MAX),
        earn: Some(earn_to_wire(&program.earn)),
        time_zone: program.zone.name().to_string(),
    }
}

/// Where programs are kept.
const PROGRAMS: Stored = Stored {
    table: "loyalty_programs",
    column: "program",
};

/// The chain's program (defaults when none is stored) and who last changed it.
pub async fn load<'e>(
    db: impl PgExecutor<'e>,
    chain_id: &str,
) -> ApiResult<(Program, Option<Stamp>)> {
    let Some((bytes, stamp)) = PROGRAMS.load(db, chain_id).await? else {
        return Ok((Program::default(), None));
    };
    Ok((decode(chain_id, &bytes)?, Some(stamp)))
}

/// A stored program (the defaults when the chain has none).
pub fn decode(chain_id: &str, stored: &[u8]) -> ApiResult<Program> {
    let wire = pb::LoyaltyProgram::decode(stored).map_err(ApiError::internal)?;
    from_wire(&wire).map_err(|faults| {
        ApiError::internal(format!(
            "stored loyalty program of {chain_id} no longer validates: {faults:?}"
        ))
    })
}

/// The display name of a tier key under `program` ("vip" → "Gold"); unknown keys as given.
pub fn name_of(program: &Program, tier: &str) -> String {
    Tier::parse(tier).map_or_else(|| tier.to_string(), |t| program.tiers.name(t).to_string())
}

/// The chain's display name of a tier key ("vip" → "Gold"); unknown keys are returned as given.
pub async fn tier_name<'e>(
    db: impl PgExecutor<'e>,
    chain_id: &str,
    tier: &str,
) -> ApiResult<String> {
    let (program, _) = load(db, chain_id).await?;
    Ok(name_of(&program, tier))
}

pub async fn get(
    api: &Api,
    request: Request<pb::GetLoyaltyProgramRequest>,
) -> ApiResult<pb::LoyaltyProgram> {
    let principal = principal(&request)?.clone();
    let (program, stamp) = load(&api.context.pool, principal.chain_id()).await?;
    Ok(to_wire(&program, stamp))
}

pub async fn update(
    api: &Api,
    request: Request<pb::UpdateLoyaltyProgramRequest>,
) -> ApiResult<pb::LoyaltyProgram> {
    let principal = principal(&request)?.clone();
    let wire = request
        .into_inner()
        .program
        .ok_or_else(|| ApiError::invalid("program", "is required"))?;
    let program = from_wire(&wire).map_err(ApiError::InvalidArgument)?;
    let stamp = PROGRAMS
        .store(
            &api.context.pool,
            principal.chain_id(),
            to_wire(&program, None).encode_to_vec(),
            principal.subject(),
        )
        .await?;
    Ok(to_wire(&program, Some(stamp)))
}
