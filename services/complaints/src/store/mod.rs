//! Storage of the complaints schema. Small functions that take the caller's transaction, so
//! a change, its timeline entry, its event and its KPI mark commit together.

pub mod complaints;
pub mod kpis;
pub mod remedies;
pub mod settings;
pub mod timeline;

pub use complaints::{ClockRow, ComplaintRow};
