//! Pure CRM rules: identity normalisation and card-number refusal, preference groups, tiers, the
//! points ledger and which care tasks a stay calls for, customer value and segments.

pub mod care;
pub mod identity;
pub mod ledger;
pub mod preferences;
pub mod stay_points;
pub mod tiers;
pub mod value;
