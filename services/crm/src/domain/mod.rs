//! Pure CRM rules: identity normalisation and card-number refusal, tiers, and the points ledger.

pub mod identity;
pub mod ledger;
pub mod tiers;
