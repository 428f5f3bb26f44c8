//! Pure facilities rules: inspection schedules, the work-order lifecycle and repair targets,
//! repeat-fix rules, engineering settings.

pub mod schedule;
pub mod settings;
pub mod work_orders;
