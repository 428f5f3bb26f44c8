//! The gateway's HTTP/JSON side (port 8080 by default), for mobile apps, staff apps, BI and load
//! balancers. A thin façade over the gRPC services: each request is authenticated with the same
//! bearer JWT, forwarded with the caller's token (so every backend enforces the caller's own
//! scope), and errors come back as RFC 9457 problem details.
//!
//! Every route is declared with its OpenAPI description next to the handler, and the router is
//! built from those declarations, so `/openapi.json` lists exactly what is served.

mod bi;
mod engineering;
mod guest;
mod problem;
pub mod schemas;
mod staff;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use guestloop_kit::auth::{Claims, Role, TokenVerifier};
use guestloop_kit::client::{channel, AuthedChannel, CallContext};
use guestloop_kit::config::Settings;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use problem::{HttpResult, Problem, Refusal};

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    verifier: TokenVerifier,
    gateway: Channel,
    complaints: Channel,
    crm: Channel,
    facilities: Channel,
    audit: Channel,
}

impl HttpState {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(settings.server.request_timeout_ms);
        Ok(Self {
            verifier: TokenVerifier::from_settings(&settings.auth)?,
            gateway: channel(&settings.endpoint_for("gateway"), timeout)?,
            complaints: channel(&settings.endpoint_for("complaints"), timeout)?,
            crm: channel(&settings.endpoint_for("crm"), timeout)?,
            facilities: channel(&settings.endpoint_for("facilities"), timeout)?,
            audit: channel(&settings.endpoint_for("audit"), timeout)?,
        })
    }

    /// The channel to a service whose event log can be exported.
    fn feed(&self, service: &str) -> Option<&Channel> {
        match service {
            "complaints" => Some(&self.complaints),
            "crm" => Some(&self.crm),
            "facilities" => Some(&self.facilities),
            "audit" => Some(&self.audit),
            _ => None,
        }
    }
}

/// The caller's verified claims and token; extracting it refuses requests without a valid one.
pub struct Caller {
    claims: Claims,
    token: String,
}

impl FromRequestParts<HttpState> for Caller {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> HttpResult<Self> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // The scheme is case-insensitive (RFC 9110 §11.1).
            .and_then(|v| v.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    "missing authorization: Bearer <token>",
                )
            })?;
        let claims = state
            .verifier
            .verify(token)
            .map_err(|e| Refusal::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
        Ok(Self {
            claims,
            token: token.to_string(),
        })
    }
}

impl Caller {
    /// A channel to a backend that carries the caller's token.
    fn channel(&self, raw: &Channel) -> HttpResult<AuthedChannel> {
        let context = CallContext::with_token(&SecretString::from(self.token.clone()))
            .map_err(|e| Refusal::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
        Ok(InterceptedService::new(raw.clone(), context))
    }

    /// Refuses guest tokens (staff endpoints).
    fn staff(&self) -> HttpResult<()> {
        if self.claims.role == Role::Guest {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "this endpoint is for staff tokens",
            ));
        }
        Ok(())
    }

    /// The guest id of a guest token; other tokens are refused.
    fn guest_id(&self) -> HttpResult<String> {
        match (self.claims.role, &self.claims.guest_id) {
            (Role::Guest, Some(id)) => Ok(id.clone()),
            _ => Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "this endpoint is for guest tokens",
            )),
        }
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Guestloop gateway HTTP API",
        description = "Guest apps, staff apps and BI over HTTP/JSON. Every endpoint except /healthz and \
            /openapi.json takes a bearer JWT (the same tokens as gRPC) and is limited to the caller's chain \
            and property scope. Errors are RFC 9457 problem documents (application/problem+json)."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "guest", description = "For guest apps: the caller's own complaints and loyalty account"),
        (name = "staff", description = "For staff apps at a property"),
        (name = "bi", description = "Scorecards, trends and event-log exports for BI consumers"),
        (name = "ops", description = "Liveness and the API description")
    )
)]
struct ApiDoc;

/// The routes and the OpenAPI document built from the same declarations.
fn routes() -> (Router<HttpState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(bi::healthz))
        .routes(routes!(bi::scorecard))
        .routes(routes!(bi::trend))
        .routes(routes!(staff::complaints))
        .routes(routes!(staff::complaint))
        .routes(routes!(guest::my_complaints, guest::file_complaint))
        .routes(routes!(guest::rate))
        .routes(routes!(guest::my_loyalty))
        .routes(routes!(staff::arrival_brief))
        .routes(routes!(staff::act_on_complaint))
        .routes(routes!(staff::work_queue))
        .routes(routes!(engineering::work_orders))
        .routes(routes!(engineering::act_on_work_order))
        .routes(routes!(engineering::inspections))
        .routes(routes!(guest::my_ledger))
        .routes(routes!(bi::events))
        .split_for_parts()
}

/// The OpenAPI 3.1 document of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

/// The HTTP routes, `/openapi.json` among them.
pub fn router(state: HttpState) -> Router {
    let (router, api) = routes();
    let document = std::sync::Arc::new(api);
    router
        .route("/dashboard", get(dashboard))
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move { Json(document.as_ref().clone()) }
            }),
        )
        .method_not_allowed_fallback(problem::method_not_allowed)
        .fallback(problem::not_found)
        .with_state(state)
}

/// The quality managers' dashboard: one self-contained page (no CDN), which reads the token from
/// the URL fragment (`#token=...`, never sent to the server) or asks for one, and calls the API.
async fn dashboard() -> impl axum::response::IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../assets/dashboard.html"),
    )
}

/// Serves HTTP on `addr` until `stop` becomes true; returns the bound address and the task.
pub async fn serve(
    addr: SocketAddr,
    state: HttpState,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for the gateway HTTP API: {e}"))?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.changed().await;
        };
        if let Err(error) = axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "gateway HTTP server failed");
        }
    });
    Ok((local, task))
}
