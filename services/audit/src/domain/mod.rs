//! Pure audit rules: the corrective-action lifecycle, weighted scoring with N/A and the critical rule, room-inspection rotation,
//! SERVQUAL gaps, touchpoint importance factors, and fair staff-behaviour scores (audit
//! observations and complaint outcomes).

pub mod actions;
pub mod rooms;
pub mod scoring;
pub mod servqual;
pub mod staff;
pub mod touchpoints;
