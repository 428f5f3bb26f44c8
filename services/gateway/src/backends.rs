//! Connections from the gateway to the four backend services.

use std::time::Duration;

use guestloop_kit::client::{channel, AuthedChannel, CallContext};
use guestloop_kit::server::ServiceContext;
use moka::sync::Cache;
use secrecy::SecretString;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::loyalty_cache::LoyaltyCache;

/// How long the gateway waits for one backend call of a fan-out.
pub const DEADLINE: Duration = Duration::from_secs(3);

/// A backend request that gives up after [`DEADLINE`].
pub fn deadline<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(DEADLINE);
    request
}

/// The backend services the gateway fans out to, by short name.
pub const BACKENDS: [&str; 4] = ["complaints", "crm", "facilities", "audit"];

/// One lazily connected channel per backend: with the gateway's service token (for its own
/// calls), or with the caller's token (so each backend enforces the caller's own scope); and
/// what the gateway reuses of their answers for a short time.
#[derive(Clone)]
pub struct Backends {
    channels: Vec<(&'static str, String, AuthedChannel, Channel)>,
    regions: Cache<String, String>,
    pub loyalty: LoyaltyCache,
}

/// How long a property's region (from its complaints settings) is reused before it is read again.
const REGION_TTL: Duration = Duration::from_secs(60);
/// Regions kept at most.
const REGION_CAPACITY: u64 = 100_000;

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("count", &self.channels.len())
            .finish()
    }
}

impl Backends {
    pub fn connect(context: &ServiceContext) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(context.settings.server.request_timeout_ms);
        let channels = BACKENDS
            .iter()
            .map(|name| {
                let url = context.settings.endpoint_for(name);
                let raw = channel(&url, timeout)?;
                Ok((*name, url, context.peer(name)?, raw))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            channels,
            regions: Cache::builder()
                .max_capacity(REGION_CAPACITY)
                .time_to_live(REGION_TTL)
                .build(),
            loyalty: LoyaltyCache::new(Duration::from_secs(
                context.settings.scorecard.loyalty_max_age_seconds,
            )),
        })
    }

    /// `(name, endpoint, channel)` for every backend, with the gateway's own token.
    pub fn all(&self) -> impl Iterator<Item = (&'static str, &str, AuthedChannel)> + '_ {
        self.channels
            .iter()
            .map(|(name, endpoint, channel, _)| (*name, endpoint.as_str(), channel.clone()))
    }

    /// A channel to `service` that carries the caller's token.
    pub fn as_caller(&self, service: &str, token: &str) -> anyhow::Result<AuthedChannel> {
        let (_, _, _, raw) = self
            .channels
            .iter()
            .find(|(name, ..)| *name == service)
            .ok_or_else(|| anyhow::anyhow!("unknown backend {service}"))?;
        let context = CallContext::with_token(&SecretString::from(token.to_string()))?;
        Ok(InterceptedService::new(raw.clone(), context))
    }

    /// A channel to `service` that carries the gateway's own (service) token, for aggregate
    /// figures the gateway has already checked the caller may see.
    pub fn as_gateway(&self, service: &str) -> anyhow::Result<AuthedChannel> {
        self.channels
            .iter()
            .find(|(name, ..)| *name == service)
            .map(|(_, _, channel, _)| channel.clone())
            .ok_or_else(|| anyhow::anyhow!("unknown backend {service}"))
    }

    /// A property's region if read within the last minute.
    pub fn cached_region(&self, property: &str) -> Option<String> {
        self.regions.get(property)
    }

    pub fn remember_region(&self, property: &str, region: &str) {
        self.regions
            .insert(property.to_string(), region.to_string());
    }
}
