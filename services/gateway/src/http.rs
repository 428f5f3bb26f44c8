//! The gateway's HTTP/JSON side (port 8080 by default), for mobile apps, BI and load balancers.

use std::net::SocketAddr;

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The HTTP routes.
pub fn router() -> Router {
    Router::new().route("/healthz", get(healthz))
}

/// Serves HTTP on `addr` until `stop` becomes true; returns the bound address and the task.
pub async fn serve(
    addr: SocketAddr,
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
        if let Err(error) = axum::serve(listener, router())
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "gateway HTTP server failed");
        }
    });
    Ok((local, task))
}
