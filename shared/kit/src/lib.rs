//! The Guestloop service kit: everything every service is built with, used the same way by all
//! of them — layered configuration, a schema-confined database pool and migrations, the server
//! bootstrap with its one middleware stack, JWT authentication and policy tables, the error
//! mapping onto gRPC statuses, idempotent creates, the transactional outbox and its feed and
//! consumers, telemetry, the private PostgreSQL server, free local ports, and the working-time
//! calculator.

pub mod auth;
pub mod background;
pub mod client;
pub mod config;
pub mod db;
pub mod demo;
pub mod embedded_pg;
pub mod error;
pub mod events;
pub mod guest_id;
pub mod idempotency;
pub mod middleware;
pub mod money;
pub mod paging;
pub mod ports;
pub mod server;
pub mod telemetry;
pub mod tenancy;
pub mod text;
pub mod time;
pub mod worktime;

pub use error::{ApiError, ApiResult, FieldViolation};
