//! CRM's tier lookup on intake. It starts alongside the intake transaction's first reads and is
//! answered within a short deadline; after CRM fails to answer, lookups pause for a few seconds,
//! so a slow or unreachable CRM never holds intake (or the database connection an intake holds)
//! back. Complaints filed without a tier are enriched later by the tier worker.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use guestloop_kit::client::AuthedChannel;
use guestloop_proto::crm::v1::crm_service_client::CrmServiceClient;
use guestloop_proto::crm::v1::GetGuestTierRequest;
use tokio::task::JoinHandle;
use tonic::Request;

/// How long intake waits for CRM, from the start of the lookup.
pub const TIER_DEADLINE: Duration = Duration::from_millis(300);
/// How long lookups pause after CRM did not answer.
pub const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Whether lookups are paused, and until when.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Pause(Option<Instant>);

impl Pause {
    fn allows(self, now: Instant) -> bool {
        self.0.is_none_or(|until| now >= until)
    }

    fn after(outcome: &Outcome, now: Instant) -> Self {
        match outcome {
            Outcome::Answered(_) => Self(None),
            Outcome::Failed => Self(Some(now + PAUSE_AFTER_FAILURE)),
        }
    }
}

enum Outcome {
    /// The tier key, or "" for a guest CRM does not know.
    Answered(String),
    Failed,
}

/// CRM's tier lookups for one complaints service.
#[derive(Debug, Clone)]
pub struct TierSource {
    crm: CrmServiceClient<AuthedChannel>,
    pause: Arc<Mutex<Pause>>,
}

/// A lookup under way; [`PendingTier::answer`] gives its result.
#[derive(Debug)]
pub struct PendingTier(Option<JoinHandle<Option<String>>>);

impl PendingTier {
    /// The guest's tier key ("" for a guest CRM does not know), or `None` when CRM did not
    /// answer in time (the complaint is then enriched later).
    pub async fn answer(self) -> Option<String> {
        match self.0 {
            Some(handle) => handle.await.ok().flatten(),
            None => None,
        }
    }
}

impl TierSource {
    pub fn new(crm: CrmServiceClient<AuthedChannel>) -> Self {
        Self {
            crm,
            pause: Arc::default(),
        }
    }

    fn paused(&self) -> bool {
        self.pause
            .lock()
            .map(|pause| !pause.allows(Instant::now()))
            .unwrap_or(false)
    }

    /// Starts looking up the tier of `guest_id` (nothing for an anonymous complaint or while
    /// lookups pause).
    pub fn start(&self, guest_id: &str, chain_id: &str) -> PendingTier {
        if guest_id.is_empty() {
            return PendingTier(None);
        }
        if self.paused() {
            tracing::debug!(%guest_id, "crm tier lookups paused; complaint accepted without tier");
            return PendingTier(None);
        }
        let source = self.clone();
        let guest_id = guest_id.to_string();
        let chain_id = chain_id.to_string();
        PendingTier(Some(tokio::spawn(async move {
            let outcome = source.ask(&guest_id, &chain_id).await;
            if let Ok(mut pause) = source.pause.lock() {
                *pause = Pause::after(&outcome, Instant::now());
            }
            match outcome {
                Outcome::Answered(tier) => Some(tier),
                Outcome::Failed => None,
            }
        })))
    }

    /// Asks CRM for the tier of `guest_id` as a guest of `chain_id` (another chain's guest is
    /// not found: a complaint never learns another chain's guest's tier).
    async fn ask(&self, guest_id: &str, chain_id: &str) -> Outcome {
        let mut request = Request::new(GetGuestTierRequest {
            guest_id: guest_id.to_string(),
            on_behalf_of_chain: chain_id.to_string(),
        });
        request.set_timeout(TIER_DEADLINE);
        let mut crm = self.crm.clone();
        match tokio::time::timeout(TIER_DEADLINE, crm.get_guest_tier(request)).await {
            Ok(Ok(response)) => Outcome::Answered(response.into_inner().tier),
            Ok(Err(status)) if status.code() == tonic::Code::NotFound => {
                Outcome::Answered(String::new())
            }
            Ok(Err(status)) => {
                tracing::warn!(%guest_id, code = ?status.code(), "crm tier lookup failed; complaint accepted without tier, lookups pause");
                Outcome::Failed
            }
            Err(_) => {
                tracing::warn!(%guest_id, "crm tier lookup timed out; complaint accepted without tier, lookups pause");
                Outcome::Failed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_pauses_lookups_for_a_while_and_an_answer_resumes_them() {
        let start = Instant::now();
        assert!(Pause::default().allows(start));
        let paused = Pause::after(&Outcome::Failed, start);
        assert!(!paused.allows(start));
        assert!(!paused.allows(start + PAUSE_AFTER_FAILURE - Duration::from_millis(1)));
        assert!(paused.allows(start + PAUSE_AFTER_FAILURE));
        let resumed = Pause::after(&Outcome::Answered("vip".into()), start);
        assert!(resumed.allows(start));
        assert_eq!(
            Pause::after(&Outcome::Answered(String::new()), start),
            Pause(None)
        );
    }
}
