//! Pure facilities rules: inspection schedules, the work-order lifecycle and repair targets,
//! repeat-fix rules.

pub mod schedule;
pub mod work_orders;
