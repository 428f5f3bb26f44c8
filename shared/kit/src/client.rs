//! Calling other Guestloop services: channels with deadlines, a service token, and the current
//! trace context on every call.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::auth::TokenIssuer;
use crate::telemetry::inject_current_context;

/// Adds `authorization` and `traceparent` to every outgoing call.
#[derive(Clone)]
pub struct CallContext {
    authorization: Authorization,
}

/// Where a call's bearer token comes from.
#[derive(Clone)]
enum Authorization {
    None,
    /// A token given as is (a caller's own token, or a configured service token).
    Fixed(MetadataValue<Ascii>),
    /// This service's own token, minted again before it expires.
    Renewed(Arc<RenewedToken>),
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallContext")
    }
}

fn bearer(token: &str) -> anyhow::Result<MetadataValue<Ascii>> {
    format!("Bearer {token}")
        .parse()
        .map_err(|_| anyhow::anyhow!("token is not valid header text"))
}

impl CallContext {
    pub fn with_token(token: &SecretString) -> anyhow::Result<Self> {
        Ok(Self {
            authorization: Authorization::Fixed(bearer(token.expose_secret())?),
        })
    }

    /// Calls as `service`, with tokens from `issuer`: a new one is minted once three quarters of
    /// the current one's lifetime have passed, so a long-running service keeps calling its peers
    /// (and keeps its event-feed subscriptions) after its first token expires.
    pub fn renewing(issuer: TokenIssuer, service: &str) -> anyhow::Result<Self> {
        Ok(Self {
            authorization: Authorization::Renewed(Arc::new(RenewedToken::new(issuer, service)?)),
        })
    }

    pub fn anonymous() -> Self {
        Self {
            authorization: Authorization::None,
        }
    }

    /// The `authorization` header this context sends at `now` (Unix seconds).
    fn header_at(&self, now: i64) -> Option<MetadataValue<Ascii>> {
        match &self.authorization {
            Authorization::None => None,
            Authorization::Fixed(value) => Some(value.clone()),
            Authorization::Renewed(token) => Some(token.header_at(now)),
        }
    }
}

/// A service token and when to mint the next one.
struct RenewedToken {
    issuer: TokenIssuer,
    service: String,
    current: RwLock<Minted>,
}

#[derive(Clone)]
struct Minted {
    header: MetadataValue<Ascii>,
    renew_at: i64,
}

impl RenewedToken {
    fn new(issuer: TokenIssuer, service: &str) -> anyhow::Result<Self> {
        let current = Self::mint(&issuer, service, chrono::Utc::now().timestamp())?;
        Ok(Self {
            issuer,
            service: service.to_string(),
            current: RwLock::new(current),
        })
    }

    fn mint(issuer: &TokenIssuer, service: &str, now: i64) -> anyhow::Result<Minted> {
        let header = bearer(&issuer.service_token_at(service, now)?)?;
        Ok(Minted {
            header,
            renew_at: now.saturating_add(issuer.ttl_seconds().saturating_mul(3) / 4),
        })
    }

    fn header_at(&self, now: i64) -> MetadataValue<Ascii> {
        let current = match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if now < current.renew_at {
            return current.header;
        }
        match Self::mint(&self.issuer, &self.service, now) {
            Ok(next) => {
                let mut slot = match self.current.write() {
                    Ok(slot) => slot,
                    Err(poisoned) => poisoned.into_inner(),
                };
                *slot = next.clone();
                next.header
            }
            // Signing with a key that signed before does not fail; should it, the current
            // token is still valid for a quarter of its lifetime and the next call tries again.
            Err(error) => {
                tracing::warn!(service = %self.service, %error, "cannot renew the service token");
                current.header
            }
        }
    }
}

impl Interceptor for CallContext {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = self.header_at(chrono::Utc::now().timestamp()) {
            request.metadata_mut().insert("authorization", value);
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

/// Whether an idempotent call that failed with `code` may be sent again as it was: the peer
/// could not be reached or is restarting (UNAVAILABLE), turned the call away at its concurrency
/// limit (RESOURCE_EXHAUSTED), or lost a race and asks for the call again (ABORTED). A call past
/// its deadline may still be running, and every other status would be answered the same again.
pub fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::ResourceExhausted | Code::Aborted
    )
}

/// The longest wait between two attempts of [`retry_idempotent`].
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Runs an idempotent call up to `attempts` times, waiting 50 ms after the first failure and
/// twice as long after each next one (at most [`MAX_RETRY_DELAY`]), while it fails with a
/// [transient](is_transient) status. Only for calls whose repetition applies no effect twice.
pub async fn retry_idempotent<T, F, Fut>(attempts: u32, mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let mut delay = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match call().await {
            Err(status) if is_transient(status.code()) && attempt < attempts => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::TokenVerifier;
    use crate::config::AuthSettings;

    fn token_of(header: &MetadataValue<Ascii>) -> anyhow::Result<String> {
        let text = header.to_str()?;
        Ok(text
            .strip_prefix("Bearer ")
            .ok_or_else(|| anyhow::anyhow!("not a bearer header: {text}"))?
            .to_string())
    }

    #[tokio::test(start_paused = true)]
    async fn only_transient_failures_are_retried_and_only_so_often() {
        let calls = std::cell::Cell::new(0u32);
        let answer = |codes: Vec<Code>| {
            calls.set(0);
            let codes = std::cell::RefCell::new(codes.into_iter());
            let calls = &calls;
            retry_idempotent(4, move || {
                calls.set(calls.get() + 1);
                let next = codes.borrow_mut().next();
                async move {
                    match next {
                        Some(code) => Err(Status::new(code, "refused")),
                        None => Ok(()),
                    }
                }
            })
        };
        let transient = [Code::Unavailable, Code::ResourceExhausted, Code::Aborted];
        assert!(answer(transient.to_vec()).await.is_ok());
        assert_eq!(calls.get(), 4, "three failures, then the answer");
        let gave_up = answer(vec![Code::Unavailable; 4]).await;
        assert_eq!(gave_up.map_err(|s| s.code()), Err(Code::Unavailable));
        assert_eq!(calls.get(), 4, "at most the attempts asked for");
        for code in [
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::DeadlineExceeded,
            Code::Internal,
        ] {
            let refused = answer(vec![code]).await;
            assert_eq!(refused.map_err(|s| s.code()), Err(code));
            assert_eq!(calls.get(), 1, "{code:?} is not sent again");
        }
    }

    #[test]
    fn service_token_is_renewed_before_it_expires() -> anyhow::Result<()> {
        let settings = AuthSettings {
            hs256_secret: Some(SecretString::from(
                "0123456789abcdef0123456789abcdef".to_string(),
            )),
            token_ttl_seconds: 3_600,
            ..AuthSettings::default()
        };
        let issuer =
            TokenIssuer::from_settings(&settings).ok_or_else(|| anyhow::anyhow!("no issuer"))?;
        let verifier = TokenVerifier::from_settings(&settings)?;
        let context = CallContext::renewing(issuer, "crm")?;
        let now = chrono::Utc::now().timestamp();
        let header = |at: i64| {
            context
                .header_at(at)
                .ok_or_else(|| anyhow::anyhow!("no authorization header"))
        };

        let first = header(now)?;
        // Within three quarters of the lifetime the same token is sent.
        assert_eq!(header(now + 2_000)?, first);
        // After that a new one, valid for a full lifetime from then.
        let renewed = header(now + 2_701)?;
        assert_ne!(renewed, first);
        let (old, new) = (
            verifier.verify(&token_of(&first)?)?,
            verifier.verify(&token_of(&renewed)?)?,
        );
        assert_eq!(new.sub, "service:crm");
        assert!(new.exp >= old.exp + 2_700, "{} vs {}", new.exp, old.exp);
        // The renewed token is kept until its own renewal time.
        assert_eq!(header(now + 3_000)?, renewed);
        assert_ne!(header(now + 2_701 + 2_701)?, renewed);
        Ok(())
    }

    #[test]
    fn fixed_and_anonymous_contexts_send_what_they_were_given() -> anyhow::Result<()> {
        let fixed = CallContext::with_token(&SecretString::from("abc".to_string()))?;
        let now = chrono::Utc::now().timestamp();
        let sent = fixed
            .header_at(now)
            .ok_or_else(|| anyhow::anyhow!("no authorization header"))?;
        assert_eq!(token_of(&sent)?, "abc");
        assert_eq!(
            fixed.header_at(now + 1_000_000),
            fixed.header_at(now),
            "a given token is never replaced"
        );
        assert!(CallContext::anonymous().header_at(now).is_none());
        Ok(())
    }
}
