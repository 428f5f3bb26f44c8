//! Calling other Guestloop services: channels with deadlines, a service token, and the current
//! trace context on every call.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::telemetry::inject_current_context;

/// Adds `authorization` and `traceparent` to every outgoing call.
#[derive(Clone)]
pub struct CallContext {
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallContext")
    }
}

impl CallContext {
    pub fn with_token(token: &SecretString) -> anyhow::Result<Self> {
        let value = format!("Bearer {}", token.expose_secret())
            .parse()
            .map_err(|_| anyhow::anyhow!("service token is not valid header text"))?;
        Ok(Self {
            authorization: Some(value),
        })
    }

    pub fn anonymous() -> Self {
        Self {
            authorization: None,
        }
    }
}

impl Interceptor for CallContext {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        inject_current_context(request.metadata_mut());
        Ok(request)
    }
}

/// A channel with the call context applied.
pub type AuthedChannel = InterceptedService<Channel, CallContext>;

/// A lazily connecting channel: the caller starts even when the peer is down.
pub fn channel(url: &str, call_timeout: Duration) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| anyhow::anyhow!("endpoint `{url}` is not a valid URI: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(call_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}

/// Runs an idempotent call, retrying (with backoff) only when the peer is UNAVAILABLE.
pub async fn retry_idempotent<T, F, Fut>(attempts: u32, mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let mut delay = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match call().await {
            Err(status) if status.code() == Code::Unavailable && attempt < attempts => {
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}
