//! One error type for every service's API, and its single mapping onto `tonic::Status` with
//! `google.rpc` details (BadRequest field violations, ErrorInfo, PreconditionFailure).
//!
//! Storage errors are translated here too: SQLSTATEs become meaningful codes, so a unique
//! violation is ALREADY_EXISTS, a lost serialization race is ABORTED and a lost connection is
//! UNAVAILABLE. INTERNAL is reserved for bugs.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The error domain reported in `ErrorInfo.domain`.
pub const ERROR_DOMAIN: &str = "guestloop.io";

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `complaint.description`.
    pub field: String,
    /// Why it is invalid, in words a client developer can act on.
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Every failure a Guestloop RPC can report.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{resource} {id} not found")]
    NotFound { resource: &'static str, id: String },
    #[error("{0}")]
    AlreadyExists(String),
    /// The resource is not in a state that allows the operation.
    #[error("{description}")]
    FailedPrecondition {
        /// Machine-readable reason, e.g. `ILLEGAL_TRANSITION`.
        reason: &'static str,
        subject: String,
        description: String,
    },
    /// A concurrent change won (etag mismatch, serialization failure after retries).
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// A dependency (database, another service) cannot be reached right now.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub fn not_found(resource: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            resource,
            id: id.into(),
        }
    }

    pub fn failed_precondition(
        reason: &'static str,
        subject: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self::FailedPrecondition {
            reason,
            subject: subject.into(),
            description: description.into(),
        }
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }

    /// A peer's refusal of a call made with the caller's own token, when what it refused is the
    /// caller's request (invalid argument, out of scope, not authenticated): the caller gets the
    /// same answer, field violations included. Anything else (the peer down, overloaded or
    /// failing) is `None`: the peer's part is missing, and the caller is not at fault.
    pub fn from_peer_refusal(peer: &str, status: &Status) -> Option<ApiError> {
        let message = format!("{peer}: {}", status.message());
        match status.code() {
            Code::InvalidArgument => {
                let mut violations: Vec<FieldViolation> = status
                    .get_details_bad_request()
                    .map(|bad| {
                        bad.field_violations
                            .into_iter()
                            .map(|v| FieldViolation::new(v.field, v.description))
                            .collect()
                    })
                    .unwrap_or_default();
                if violations.is_empty() {
                    violations.push(FieldViolation::new("request", message));
                }
                Some(ApiError::InvalidArgument(violations))
            }
            Code::PermissionDenied => Some(ApiError::PermissionDenied(message)),
            Code::Unauthenticated => Some(ApiError::Unauthenticated(message)),
            _ => None,
        }
    }

    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound { .. } => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::FailedPrecondition { .. } => Code::FailedPrecondition,
            Self::Aborted(_) => Code::Aborted,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::Unavailable(_) => Code::Unavailable,
            Self::Internal(_) => Code::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "INVALID_ARGUMENT",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::AlreadyExists(_) => "ALREADY_EXISTS",
            Self::FailedPrecondition { reason, .. } => reason,
            Self::Aborted(_) => "CONCURRENT_MODIFICATION",
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::PermissionDenied(_) => "OUT_OF_SCOPE",
            Self::ResourceExhausted(_) => "OVERLOADED",
            Self::Unavailable(_) => "DEPENDENCY_UNAVAILABLE",
            Self::Internal(_) => "INTERNAL",
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        if let ApiError::Internal(detail) = &error {
            tracing::error!(error = %detail, "internal error");
        }
        let mut details = ErrorDetails::new();
        match &error {
            ApiError::InvalidArgument(violations) => {
                for violation in violations {
                    details.add_bad_request_violation(&violation.field, &violation.description);
                }
            }
            ApiError::FailedPrecondition {
                reason,
                subject,
                description,
            } => {
                details.add_precondition_failure_violation(*reason, subject, description);
            }
            _ => {}
        }
        details.set_error_info(
            error.reason(),
            ERROR_DOMAIN,
            std::collections::HashMap::<String, String>::new(),
        );
        // Internal details stay in the log; the client sees a stable message.
        let message = match &error {
            ApiError::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        };
        Status::with_error_details(error.code(), message, details)
    }
}

/// SQLSTATE classes the storage layer cares about.
pub mod sqlstate {
    pub const UNIQUE_VIOLATION: &str = "23505";
    pub const FOREIGN_KEY_VIOLATION: &str = "23503";
    pub const CHECK_VIOLATION: &str = "23514";
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const DEADLOCK_DETECTED: &str = "40P01";
    pub const QUERY_CANCELED: &str = "57014";
    /// A character the database encoding cannot hold (a NUL in text).
    pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
}

/// Whether a database error is a lost race that a retry of the whole transaction may win.
pub fn is_retryable(error: &sqlx::Error) -> bool {
    matches!(
        error.as_database_error().and_then(|e| e.code()).as_deref(),
        Some(sqlstate::SERIALIZATION_FAILURE) | Some(sqlstate::DEADLOCK_DETECTED)
    )
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::RowNotFound => ApiError::NotFound {
                resource: "row",
                id: String::new(),
            },
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => {
                ApiError::Unavailable(format!("database unavailable: {error}"))
            }
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some(sqlstate::UNIQUE_VIOLATION) => {
                    ApiError::AlreadyExists(format!("already exists ({})", db.message()))
                }
                Some(sqlstate::FOREIGN_KEY_VIOLATION) => ApiError::failed_precondition(
                    "REFERENCED_RESOURCE_MISSING",
                    db.constraint().unwrap_or_default(),
                    db.message().to_string(),
                ),
                Some(sqlstate::SERIALIZATION_FAILURE) | Some(sqlstate::DEADLOCK_DETECTED) => {
                    ApiError::Aborted("concurrent modification, retry the request".into())
                }
                Some(sqlstate::QUERY_CANCELED) => {
                    ApiError::Unavailable("database statement timed out".into())
                }
                // Input that passed validation but cannot be stored (e.g. a NUL character):
                // the request is at fault, and nothing was written.
                Some(sqlstate::CHARACTER_NOT_IN_REPERTOIRE) => {
                    ApiError::invalid("request", "text must not contain NUL characters")
                }
                Some(code) if code.starts_with("08") || code.starts_with("57P") => {
                    ApiError::Unavailable(format!("database unavailable: {}", db.message()))
                }
                _ => ApiError::Internal(format!("database error: {error}")),
            },
            _ => ApiError::Internal(format!("database error: {error}")),
        }
    }
}

/// Result type of handlers and storage functions.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_field_violations() {
        let status: Status = ApiError::invalid("complaint.description", "must not be empty").into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("bad request details");
        assert_eq!(
            bad_request.field_violations[0].field,
            "complaint.description"
        );
        assert!(status.message().contains("must not be empty"));
    }

    #[test]
    fn a_peers_refusal_of_the_callers_request_is_passed_on() {
        let refused: Status = ApiError::invalid("period", "must span at most 1100 days").into();
        match ApiError::from_peer_refusal("complaints", &refused) {
            Some(ApiError::InvalidArgument(violations)) => {
                assert_eq!(violations[0].field, "period");
                assert!(violations[0].description.contains("1100 days"));
            }
            other => panic!("expected the field violation, got {other:?}"),
        }
        let plain = Status::invalid_argument("no details");
        match ApiError::from_peer_refusal("complaints", &plain) {
            Some(ApiError::InvalidArgument(violations)) => {
                assert_eq!(violations[0].field, "request");
                assert_eq!(violations[0].description, "complaints: no details");
            }
            other => panic!("expected a request violation, got {other:?}"),
        }
        let out_of_scope: Status = ApiError::PermissionDenied("property p9".into()).into();
        assert!(matches!(
            ApiError::from_peer_refusal("complaints", &out_of_scope),
            Some(ApiError::PermissionDenied(m)) if m.contains("p9")
        ));
        // The peer's own trouble is not the caller's: no refusal to pass on.
        for status in [
            Status::unavailable("down"),
            Status::internal("bug"),
            Status::deadline_exceeded("slow"),
            Status::resource_exhausted("busy"),
        ] {
            assert!(ApiError::from_peer_refusal("complaints", &status).is_none());
        }
    }

    #[test]
    fn failed_precondition_names_the_reason() {
        let status: Status =
            ApiError::failed_precondition("ILLEGAL_TRANSITION", "complaints/1", "closed").into();
        assert_eq!(status.code(), Code::FailedPrecondition);
        let details = status.get_error_details();
        let failure = details
            .precondition_failure()
            .expect("precondition details");
        assert_eq!(failure.violations[0].r#type, "ILLEGAL_TRANSITION");
        assert_eq!(
            details.error_info().map(|i| i.reason.as_str()),
            Some("ILLEGAL_TRANSITION")
        );
    }

    #[test]
    fn internal_details_do_not_leak() {
        let status: Status = ApiError::internal("secret connection string").into();
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
    }

    #[test]
    fn pool_timeout_is_unavailable() {
        let error: ApiError = sqlx::Error::PoolTimedOut.into();
        assert_eq!(error.code(), Code::Unavailable);
    }
}
