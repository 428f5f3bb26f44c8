//! Connections from the gateway to the four backend services.

use guestloop_kit::client::AuthedChannel;
use guestloop_kit::server::ServiceContext;

/// The backend services the gateway fans out to, by short name.
pub const BACKENDS: [&str; 4] = ["complaints", "crm", "facilities", "audit"];

/// One lazily connected channel per backend, carrying the gateway's service token.
#[derive(Clone)]
pub struct Backends {
    channels: Vec<(&'static str, String, AuthedChannel)>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("count", &self.channels.len())
            .finish()
    }
}

impl Backends {
    pub fn connect(context: &ServiceContext) -> anyhow::Result<Self> {
        let channels = BACKENDS
            .iter()
            .map(|name| {
                Ok((
                    *name,
                    context.settings.endpoint_for(name),
                    context.peer(name)?,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { channels })
    }

    /// `(name, endpoint, channel)` for every backend.
    pub fn all(&self) -> impl Iterator<Item = (&'static str, &str, AuthedChannel)> + '_ {
        self.channels
            .iter()
            .map(|(name, endpoint, channel)| (*name, endpoint.as_str(), channel.clone()))
    }
}
