//! Pure audit rules: weighted scoring with N/A and the critical rule, room-inspection rotation,
//! SERVQUAL gaps, and fair staff-behaviour scores (audit observations and complaint outcomes).

pub mod rooms;
pub mod scoring;
pub mod servqual;
pub mod staff;
