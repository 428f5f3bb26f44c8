//! RFC 9457 problem details: every error the HTTP API returns, including malformed requests
//! that never reach a handler, is an `application/problem+json` document.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, naming the field where one is at fault.
    pub detail: String,
    /// Each invalid field (a query parameter or body field, by its HTTP name) and why; present
    /// on a 400 that names fields.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub detail: String,
}

/// A refusal that becomes a problem document.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub detail: String,
    pub errors: Vec<FieldError>,
}

pub type HttpResult<T> = Result<T, Refusal>;

impl Refusal {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// The refusal with a backend's field names given their HTTP names (`period.end_time` is
    /// the `end` parameter), in the detail and in `errors`. A field under a renamed one keeps
    /// its tail (`rating.csat` → `csat` when `rating` is renamed to the body's root, "").
    pub fn renaming(mut self, names: &[(&str, &str)]) -> Self {
        for (grpc, http) in names {
            for error in &mut self.errors {
                if error.field == *grpc {
                    error.field = (*http).to_string();
                } else if let Some(tail) = error.field.strip_prefix(&format!("{grpc}.")) {
                    error.field = if http.is_empty() {
                        tail.to_string()
                    } else {
                        format!("{http}.{tail}")
                    };
                }
            }
            if !grpc.is_empty() {
                self.detail = self
                    .detail
                    .replace(&format!("{grpc}:"), &format!("{http}:"));
            }
        }
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: format!("https://guestloop.io/problems/{}", self.status.as_u16()),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("error")
                .to_string(),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
        };
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            Json(body),
        )
            .into_response();
        // A busy or restarting backend, or a concurrency limit: the request may be sent again.
        if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        // RFC 9110: a 401 names the scheme that would be accepted.
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// A page size from a query: `None` is `default`; outside 1–`max` is a 400 naming the
/// parameter, instead of a size the backend would quietly change.
pub fn page_size(value: Option<i32>, default: i32, max: i32) -> HttpResult<i32> {
    match value {
        None => Ok(default),
        Some(size) if (1..=max).contains(&size) => Ok(size),
        Some(_) => Err(Refusal::bad_request(format!(
            "page_size: must be between 1 and {max}"
        ))),
    }
}

/// What a `503` or `429` answer asks the client to wait before sending the request again.
const RETRY_AFTER_SECONDS: &str = "1";

/// A backend's gRPC status as the HTTP status a client expects.
impl From<tonic::Status> for Refusal {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        let http = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
            Code::FailedPrecondition => StatusCode::UNPROCESSABLE_ENTITY,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut refusal = Refusal::new(http, status.message().to_string());
        if status.code() == Code::InvalidArgument {
            use tonic_types::StatusExt;
            refusal.errors = status
                .get_details_bad_request()
                .map(|bad| {
                    bad.field_violations
                        .into_iter()
                        .map(|v| FieldError {
                            field: v.field,
                            detail: v.description,
                        })
                        .collect()
                })
                .unwrap_or_default();
        }
        refusal
    }
}

impl From<JsonRejection> for Refusal {
    fn from(rejection: JsonRejection) -> Self {
        let status = match rejection {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        Refusal::new(status, format!("body: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for Refusal {
    fn from(rejection: QueryRejection) -> Self {
        Refusal::bad_request(format!("query: {}", rejection.body_text()))
    }
}

impl From<PathRejection> for Refusal {
    fn from(rejection: PathRejection) -> Self {
        Refusal::bad_request(format!("path: {}", rejection.body_text()))
    }
}

/// The fallback for unknown paths.
pub async fn not_found() -> Refusal {
    Refusal::new(StatusCode::NOT_FOUND, "no such endpoint")
}

/// The fallback for a known path with the wrong method.
pub async fn method_not_allowed() -> Refusal {
    Refusal::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not take that method",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_401_names_the_scheme_and_page_sizes_are_checked() {
        let refused = Refusal::new(StatusCode::UNAUTHORIZED, "no token").into_response();
        assert_eq!(
            refused
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
        assert_eq!(page_size(None, 50, 500).ok(), Some(50));
        assert_eq!(page_size(Some(500), 50, 500).ok(), Some(500));
        for bad in [0, -1, 501] {
            let refusal = page_size(Some(bad), 50, 500).err();
            assert!(
                refusal
                    .is_some_and(|r| r.status == StatusCode::BAD_REQUEST
                        && r.detail.starts_with("page_size")),
                "{bad}"
            );
        }
    }

    #[test]
    fn field_violations_reach_the_problem_under_their_http_names() {
        use tonic_types::StatusExt;
        let status = tonic::Status::with_error_details(
            tonic::Code::InvalidArgument,
            "invalid request: period.end_time: must be after period.start_time",
            tonic_types::ErrorDetails::with_bad_request(vec![tonic_types::FieldViolation::new(
                "period.end_time",
                "must be after period.start_time",
            )]),
        );
        let refusal = Refusal::from(status)
            .renaming(&[("period.start_time", "start"), ("period.end_time", "end")]);
        assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            refusal.errors,
            vec![FieldError {
                field: "end".into(),
                detail: "must be after period.start_time".into()
            }]
        );
        assert_eq!(
            refusal.detail,
            "invalid request: end: must be after period.start_time"
        );
        let nested = Refusal {
            status: StatusCode::BAD_REQUEST,
            detail: String::new(),
            errors: vec![FieldError {
                field: "complaint.description".into(),
                detail: "is required".into(),
            }],
        }
        .renaming(&[("complaint", "")]);
        assert_eq!(nested.errors[0].field, "description");
    }

    #[test]
    fn a_refusal_worth_retrying_says_when() {
        let busy = Refusal::from(tonic::Status::unavailable("crm is restarting")).into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            busy.headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        let limited =
            Refusal::from(tonic::Status::resource_exhausted("at its limit")).into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(limited.headers().contains_key(header::RETRY_AFTER));
        for refused in [
            tonic::Status::invalid_argument("guest_id: must not be empty"),
            tonic::Status::permission_denied("not your property"),
            tonic::Status::aborted("a concurrent change won"),
        ] {
            let answer = Refusal::from(refused).into_response();
            assert!(
                !answer.headers().contains_key(header::RETRY_AFTER),
                "{}",
                answer.status()
            );
        }
    }
}
