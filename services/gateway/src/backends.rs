//! Connections from the gateway to the four backend services.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use guestloop_kit::client::{channel, is_transient, retry_idempotent, AuthedChannel, CallContext};
use guestloop_kit::server::ServiceContext;
use moka::sync::Cache;
use secrecy::SecretString;
use tokio::time::Instant;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Status;

use crate::loyalty_cache::LoyaltyCache;

/// How long the gateway waits for one backend read of a fan-out, retries included.
pub const DEADLINE: Duration = Duration::from_secs(3);

/// A backend request that gives up after [`DEADLINE`].
fn deadline<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(DEADLINE);
    request
}

/// After a read of a backend gave up on transient refusals, how long reads of it are tried
/// once, without retries: a backend that is down costs each fan-out one refused connection,
/// not [`DEADLINE`].
pub const RETRY_PAUSE: Duration = Duration::from_secs(30);

/// Reads from the backends, and which of them gave up on transient refusals lately.
#[derive(Clone, Default)]
pub struct Reads {
    failed: Arc<Mutex<HashMap<&'static str, Instant>>>,
}

impl Reads {
    /// Reads `message` from `backend` with `call` (a read: asking twice changes nothing). A
    /// transient refusal — the backend restarting or its connection being re-established (the
    /// first call after a restart), its concurrency limit, a lost race — is asked again after
    /// 50 ms, then twice as long each time, until an answer, another refusal, or [`DEADLINE`]
    /// after the first attempt: so a blip answers late rather than leaving a part out of a
    /// scorecard. Within [`RETRY_PAUSE`] of a read of `backend` that gave up so, one attempt.
    pub async fn read<C, Req, Resp, F, Fut>(
        &self,
        backend: &'static str,
        client: &C,
        message: &Req,
        call: F,
    ) -> Result<Resp, Status>
    where
        C: Clone,
        Req: Clone,
        F: Fn(C, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let tries = if self.failed_lately(backend) {
            1
        } else {
            u32::MAX
        };
        let attempts = retry_idempotent(tries, || call(client.clone(), deadline(message.clone())));
        let answer = match tokio::time::timeout(DEADLINE, attempts).await {
            Ok(answer) => answer.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer within {} ms",
                DEADLINE.as_millis()
            ))),
        };
        let gave_up = answer.as_ref().err().is_some_and(|status| {
            is_transient(status.code()) || status.code() == tonic::Code::DeadlineExceeded
        });
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        if gave_up {
            failed.insert(backend, Instant::now());
        } else {
            failed.remove(backend);
        }
        answer
    }

    fn failed_lately(&self, backend: &str) -> bool {
        let failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        failed
            .get(backend)
            .is_some_and(|at| at.elapsed() < RETRY_PAUSE)
    }
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
    pub reads: Reads,
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
            reads: Reads::default(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use tonic::Code;

    /// A backend that refuses with each of `codes` in turn, then answers its call count.
    #[derive(Clone)]
    struct Backend {
        calls: Arc<AtomicU32>,
        codes: Arc<Vec<Code>>,
    }

    impl Backend {
        fn refusing(codes: Vec<Code>) -> Self {
            Self {
                calls: Arc::new(AtomicU32::new(0)),
                codes: Arc::new(codes),
            }
        }

        async fn ask(
            self,
            request: tonic::Request<String>,
        ) -> Result<tonic::Response<u32>, Status> {
            assert_eq!(request.get_ref(), "figures", "each attempt asks the same");
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            match self.codes.get(call as usize) {
                Some(code) => Err(Status::new(*code, "refused")),
                None => Ok(tonic::Response::new(call + 1)),
            }
        }

        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    fn ask(
        reads: &Reads,
        name: &'static str,
        backend: &Backend,
    ) -> impl Future<Output = Result<u32, Status>> {
        let (reads, backend) = (reads.clone(), backend.clone());
        async move {
            reads
                .read(name, &backend, &"figures".to_string(), Backend::ask)
                .await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_restarting_answers_late_rather_than_not_at_all() {
        let backend = Backend::refusing(vec![
            Code::Unavailable,
            Code::Unavailable,
            Code::ResourceExhausted,
        ]);
        let started = Instant::now();
        let answer = ask(&Reads::default(), "crm", &backend).await;
        assert_eq!(
            answer.map_err(|s| s.code()),
            Ok(4),
            "the fourth call answers"
        );
        assert_eq!(started.elapsed(), Duration::from_millis(50 + 100 + 200));
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_that_stays_down_is_given_up_at_the_deadline_then_tried_once() {
        let reads = Reads::default();
        let backend = Backend::refusing(vec![Code::Unavailable; 100]);
        let started = Instant::now();
        let answer = ask(&reads, "crm", &backend).await;
        assert_eq!(answer.map_err(|s| s.code()), Err(Code::DeadlineExceeded));
        assert_eq!(started.elapsed(), DEADLINE);
        // At 0, 50, 150, 350, 750, 1550 ms; the next would be at 3150 ms.
        assert_eq!(backend.calls(), 6);

        // Within the pause, one attempt, answered at once; another backend still gets retries.
        let started = Instant::now();
        let answer = ask(&reads, "crm", &backend).await;
        assert_eq!(answer.map_err(|s| s.code()), Err(Code::Unavailable));
        assert_eq!((backend.calls(), started.elapsed()), (7, Duration::ZERO));
        let other = Backend::refusing(vec![Code::Unavailable]);
        assert_eq!(
            ask(&reads, "audit", &other).await.map_err(|s| s.code()),
            Ok(2)
        );

        // After the pause, retries again; an answer ends the pause at once.
        tokio::time::advance(RETRY_PAUSE).await;
        let back = Backend::refusing(vec![Code::Unavailable]);
        assert_eq!(ask(&reads, "crm", &back).await.map_err(|s| s.code()), Ok(2));
        let blip = Backend::refusing(vec![Code::Unavailable]);
        assert_eq!(ask(&reads, "crm", &blip).await.map_err(|s| s.code()), Ok(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_on_the_merits_is_not_asked_again() {
        for code in [
            Code::PermissionDenied,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
            Code::Internal,
        ] {
            let backend = Backend::refusing(vec![code]);
            let answer = ask(&Reads::default(), "crm", &backend).await;
            assert_eq!(answer.map_err(|s| s.code()), Err(code));
            assert_eq!(backend.calls(), 1, "{code:?}");
        }
    }
}
