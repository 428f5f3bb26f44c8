//! The one middleware stack every Guestloop server runs, built once here: load shedding, a
//! server span that continues the caller's trace, bearer-token authentication with the service's
//! policy table, and per-RPC request metrics.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use opentelemetry::metrics::{Counter, Histogram};
use opentelemetry::KeyValue;
use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::Status;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::auth::policy::{is_public, Decision, PolicyTable};
use crate::auth::{BearerToken, Principal, TokenVerifier};
use crate::telemetry::adopt_remote_parent;

/// Everything the middleware needs; cheap to clone.
#[derive(Clone)]
pub struct KitLayer {
    inner: Arc<Shared>,
}

struct Shared {
    service: &'static str,
    verifier: TokenVerifier,
    policy: PolicyTable,
    in_flight: Arc<Semaphore>,
    requests: Counter<u64>,
    duration_ms: Histogram<f64>,
}

impl KitLayer {
    pub fn new(
        service: &'static str,
        verifier: TokenVerifier,
        policy: PolicyTable,
        max_concurrent_requests: usize,
    ) -> Self {
        let meter = opentelemetry::global::meter("guestloop");
        Self {
            inner: Arc::new(Shared {
                service,
                verifier,
                policy,
                in_flight: Arc::new(Semaphore::new(max_concurrent_requests)),
                requests: meter
                    .u64_counter("rpc.server.requests")
                    .with_description("gRPC calls handled, by method and status code")
                    .build(),
                duration_ms: meter
                    .f64_histogram("rpc.server.duration")
                    .with_unit("ms")
                    .with_description("time to the response headers, by method and status code")
                    .build(),
            }),
        }
    }
}

impl<S> Layer<S> for KitLayer {
    type Service = KitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KitService {
            inner,
            shared: self.inner.clone(),
        }
    }
}

#[derive(Clone)]
pub struct KitService<S> {
    inner: S,
    shared: Arc<Shared>,
}

fn refuse(status: Status) -> http::Response<Body> {
    status.into_http()
}

/// The bearer token of a request, if it has a well-formed `authorization` header.
fn bearer_token(headers: &http::HeaderMap) -> Result<&str, Status> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?;
    let text = value
        .to_str()
        .map_err(|_| Status::unauthenticated("authorization header is not ASCII"))?;
    text.strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))
}

impl Shared {
    /// Authenticates and authorises one request; on success returns the principal.
    fn admit(
        &self,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Result<(Principal, BearerToken), Status> {
        let token = bearer_token(headers)?;
        let claims = self.verifier.verify(token).map_err(Status::from)?;
        match self.policy.decide(path, claims.role) {
            Decision::Allowed(_) => Ok((Principal { claims }, BearerToken(token.to_string()))),
            Decision::RoleRefused => Err(Status::permission_denied(format!(
                "role {} may not call {path}",
                claims.role
            ))),
            Decision::UnknownMethod => Err(Status::unimplemented(format!(
                "{path} is not a method of this service"
            ))),
        }
    }

    fn record(&self, path: &str, code: &str, started: Instant) {
        let attributes = [
            KeyValue::new("rpc.service", self.service),
            KeyValue::new("rpc.method", path.to_string()),
            KeyValue::new("rpc.grpc.status_code", code.to_string()),
        ];
        self.requests.add(1, &attributes);
        self.duration_ms
            .record(started.elapsed().as_secs_f64() * 1000.0, &attributes);
    }
}

/// The gRPC status code of a response when it is already known from the headers
/// (trailers-only responses); a streamed or successful unary response reports "0".
fn status_code_of(response: &http::Response<Body>) -> String {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0")
        .to_string()
}

impl<S> Service<http::Request<Body>> for KitService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // Take the service that was driven to readiness and leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let path = request.uri().path().to_string();
        let started = Instant::now();

        if is_public(&path) {
            return Box::pin(inner.call(request));
        }
        let Ok(permit) = shared.in_flight.clone().try_acquire_owned() else {
            shared.record(&path, "8", started);
            return Box::pin(async move {
                Ok(refuse(Status::resource_exhausted(
                    "server is at its concurrency limit; retry with backoff",
                )))
            });
        };

        let span = tracing::info_span!(
            "rpc",
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = shared.service,
            rpc.method = %path,
            enduser.id = tracing::field::Empty,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        adopt_remote_parent(&span, request.headers());

        match shared.admit(&path, request.headers()) {
            Ok((principal, token)) => {
                span.record("enduser.id", principal.subject());
                request.extensions_mut().insert(principal);
                request.extensions_mut().insert(token);
            }
            Err(status) => {
                let code = (status.code() as i32).to_string();
                span.record("rpc.grpc.status_code", code.as_str());
                shared.record(&path, &code, started);
                drop(permit);
                return Box::pin(async move { Ok(refuse(status)) });
            }
        }

        Box::pin(
            async move {
                let result = inner.call(request).await;
                drop(permit);
                if let Ok(response) = &result {
                    let code = status_code_of(response);
                    tracing::Span::current().record("rpc.grpc.status_code", code.as_str());
                    shared.record(&path, &code, started);
                }
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_parsing() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(
            bearer_token(&headers).map_err(|s| s.code()),
            Err(tonic::Code::Unauthenticated)
        );
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Basic x"),
        );
        assert!(bearer_token(&headers).is_err());
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer_token(&headers).ok(), Some("abc"));
    }
}
