//! The scorecard's loyalty part, reused for a short time.
//!
//! CRM computes the loyalty summary from every stay and ledger entry of the guests in scope:
//! members, staying and repeat guests are distinct guests over an arbitrary set of properties and
//! period, which no additive rollup can hold. For a chain with a million stays that takes most of
//! a second, while the rest of a scorecard is served from rollups in tens of milliseconds. So
//! scorecards of the same caller role, chain and properties whose period starts and ends fall in
//! the same `max_age`-long windows share one computation for up to `max_age`. Concurrent
//! requests for a key that is being computed wait for that one computation. Failures are not
//! kept. The summary carries when it was computed and the exact period it covers.
//!
//! A rolling period ("the last 90 days", asked again and again by a dashboard) moves into the
//! next windows as time passes. Then the summary of the neighbouring earlier windows, while it
//! is still within `max_age`, is served at once and the new one is computed in the background,
//! so a polling dashboard does not wait for CRM once per window.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use guestloop_kit::auth::Role;
use guestloop_proto::gateway::v1 as pb;
use moka::future::Cache;

/// Summaries kept at most: one per dashboard scope and period in use is plenty.
const CAPACITY: u64 = 1_024;

/// What makes two scorecards' loyalty parts the same computation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    chain: String,
    role: Role,
    properties: Vec<String>,
    start_window: i64,
    end_window: i64,
}

impl Key {
    /// The key of a request for `properties` over `[start, end)`. Bounds in the same `max_age`
    /// window (counted from the Unix epoch) share a key; `max_age` must be positive.
    pub fn new(
        chain: &str,
        role: Role,
        properties: &[String],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        max_age: Duration,
    ) -> Self {
        let width = i64::try_from(max_age.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let mut properties = properties.to_vec();
        properties.sort();
        properties.dedup();
        Self {
            chain: chain.to_string(),
            role,
            properties,
            start_window: start.timestamp_millis().div_euclid(width),
            end_window: end.timestamp_millis().div_euclid(width),
        }
    }

    /// The keys of the same request one window earlier: both bounds, or either one alone (when
    /// the period's length is not a whole number of windows, its bounds cross at different
    /// times).
    fn earlier(&self) -> [Key; 3] {
        let shifted = |start: i64, end: i64| Key {
            start_window: self.start_window - start,
            end_window: self.end_window - end,
            ..self.clone()
        };
        [shifted(1, 1), shifted(1, 0), shifted(0, 1)]
    }
}

/// Loyalty summaries by [`Key`], each kept for at most `max_age` after it was computed.
#[derive(Clone)]
pub struct LoyaltyCache {
    max_age: Duration,
    /// `None` when `max_age` is zero: every scorecard asks CRM.
    cache: Option<Cache<Key, pb::LoyaltySummary>>,
}

impl LoyaltyCache {
    pub fn new(max_age: Duration) -> Self {
        let cache = (!max_age.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(max_age)
                .build()
        });
        Self { max_age, cache }
    }

    /// The summary for `properties` over `[start, end)` as `role` of `chain` sees it: a kept
    /// one if computed for the same key within `max_age`; else, for a period that moved on by a
    /// window, the earlier one while `compute` runs in the background; else what `compute`
    /// returns. Only successes are kept.
    pub async fn get_or_compute<F>(
        &self,
        chain: &str,
        role: Role,
        properties: &[String],
        (start, end): (DateTime<Utc>, DateTime<Utc>),
        compute: F,
    ) -> Result<pb::LoyaltySummary, String>
    where
        F: Future<Output = Result<pb::LoyaltySummary, String>> + Send + 'static,
    {
        let Some(cache) = &self.cache else {
            return compute.await;
        };
        let key = Key::new(chain, role, properties, start, end, self.max_age);
        if let Some(kept) = cache.get(&key).await {
            return Ok(kept);
        }
        for earlier in key.earlier() {
            if let Some(kept) = cache.get(&earlier).await {
                let cache = cache.clone();
                tokio::spawn(async move {
                    // Requests arriving meanwhile wait on this same computation.
                    if let Err(why) = cache.try_get_with(key, compute).await {
                        tracing::warn!(error = %why, "loyalty summary not refreshed");
                    }
                });
                return Ok(kept);
            }
        }
        cache
            .try_get_with(key, compute)
            .await
            .map_err(|why| why.as_ref().clone())
    }
}

impl std::fmt::Debug for LoyaltyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoyaltyCache")
            .field("max_age", &self.max_age)
            .field("entries", &self.cache.as_ref().map(Cache::entry_count))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use chrono::TimeZone;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0).single().unwrap_or_default()
    }

    fn props(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    const MINUTE: Duration = Duration::from_secs(60);
    const ROLE: Role = Role::ChainQualityManager;

    #[test]
    fn bounds_in_the_same_windows_share_a_key() {
        let p = props(&["p1", "p2"]);
        let a = Key::new("c", ROLE, &p, at(600), at(6_000), MINUTE);
        assert_eq!(a, Key::new("c", ROLE, &p, at(659), at(6_059), MINUTE));
        // The property list is a set.
        let reordered = props(&["p2", "p1", "p2"]);
        assert_eq!(
            a,
            Key::new("c", ROLE, &reordered, at(600), at(6_000), MINUTE)
        );
    }

    #[test]
    fn anything_else_that_differs_makes_another_key() {
        let p = props(&["p1"]);
        let a = Key::new("c", ROLE, &p, at(600), at(6_000), MINUTE);
        assert_ne!(a, Key::new("c", ROLE, &p, at(660), at(6_000), MINUTE));
        assert_ne!(a, Key::new("c", ROLE, &p, at(600), at(6_060), MINUTE));
        assert_ne!(a, Key::new("d", ROLE, &p, at(600), at(6_000), MINUTE));
        assert_ne!(
            a,
            Key::new("c", Role::Supervisor, &p, at(600), at(6_000), MINUTE)
        );
        assert_ne!(
            a,
            Key::new("c", ROLE, &props(&["p1", "p2"]), at(600), at(6_000), MINUTE)
        );
        // Before the epoch, windows still split at multiples of the width.
        assert_ne!(
            Key::new("c", ROLE, &p, at(-1), at(0), MINUTE),
            Key::new("c", ROLE, &p, at(0), at(0), MINUTE)
        );
    }

    fn summary(members: i64) -> pb::LoyaltySummary {
        pb::LoyaltySummary {
            members,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn reused_within_the_windows_and_failures_are_not_kept() {
        let cache = LoyaltyCache::new(MINUTE);
        let p = props(&["p1"]);
        let period = (at(600), at(6_000));
        let failed = cache
            .get_or_compute("c", ROLE, &p, period, async {
                Err("crm: Unavailable".to_string())
            })
            .await;
        assert_eq!(failed, Err("crm: Unavailable".to_string()));
        let first = cache
            .get_or_compute("c", ROLE, &p, period, async { Ok(summary(7)) })
            .await;
        assert_eq!(first.map(|s| s.members), Ok(7), "the failure was not kept");
        let again = cache
            .get_or_compute("c", ROLE, &p, (at(610), at(6_010)), async {
                Ok(summary(8))
            })
            .await;
        assert_eq!(again.map(|s| s.members), Ok(7), "reused within the window");
        let other = cache
            .get_or_compute("c", ROLE, &p, (at(780), at(6_180)), async {
                Ok(summary(9))
            })
            .await;
        assert_eq!(other.map(|s| s.members), Ok(9), "other windows");
    }

    #[tokio::test]
    async fn a_rolling_period_gets_the_earlier_summary_while_its_own_is_computed() {
        let cache = LoyaltyCache::new(MINUTE);
        let p = props(&["p1"]);
        let first = cache
            .get_or_compute("c", ROLE, &p, (at(600), at(6_000)), async {
                Ok(summary(7))
            })
            .await;
        assert_eq!(first.map(|s| s.members), Ok(7));
        // One window later: the earlier summary at once, the new one computed meanwhile.
        let moved = (at(660), at(6_060));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let served = cache
            .get_or_compute("c", ROLE, &p, moved, async move {
                let _ = tx.send(());
                Ok(summary(9))
            })
            .await;
        assert_eq!(served.map(|s| s.members), Ok(7), "served the earlier one");
        rx.await.ok();
        let mut fresh = Ok(summary(0));
        for _ in 0..100 {
            fresh = cache
                .get_or_compute("c", ROLE, &p, moved, async { Ok(summary(10)) })
                .await;
            if fresh.as_ref().map(|s| s.members) == Ok(9) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(fresh.map(|s| s.members), Ok(9), "then its own");
        // Only the end moved on (a period that is not a whole number of windows long).
        let end_only = cache
            .get_or_compute("c", ROLE, &p, (at(660), at(6_120)), async {
                Ok(summary(11))
            })
            .await;
        assert_eq!(end_only.map(|s| s.members), Ok(9));
        // Two windows on is not the same rolling period any more: asked and awaited.
        let far = cache
            .get_or_compute("c", ROLE, &p, (at(780), at(6_180)), async {
                Ok(summary(12))
            })
            .await;
        assert_eq!(far.map(|s| s.members), Ok(12));
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_computation() {
        let cache = LoyaltyCache::new(MINUTE);
        let calls = Arc::new(AtomicUsize::new(0));
        let p = props(&["p1"]);
        let ask = || {
            let calls = calls.clone();
            cache.get_or_compute("c", ROLE, &p, (at(600), at(6_000)), async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(summary(5))
            })
        };
        let answers = futures::future::join_all((0..8).map(|_| ask())).await;
        assert!(answers
            .iter()
            .all(|a| a.as_ref().map(|s| s.members) == Ok(5)));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "computed once");
    }

    #[tokio::test]
    async fn zero_age_asks_every_time() {
        let cache = LoyaltyCache::new(Duration::ZERO);
        let p = props(&["p1"]);
        for members in 1..=3 {
            let got = cache
                .get_or_compute("c", ROLE, &p, (at(600), at(6_000)), async move {
                    Ok(summary(members))
                })
                .await;
            assert_eq!(got.map(|s| s.members), Ok(members));
        }
    }

    #[tokio::test]
    async fn entries_expire_after_max_age() {
        let cache = LoyaltyCache::new(Duration::from_millis(50));
        let p = props(&["p1"]);
        // A wide period window is not needed: both calls use the same bounds.
        let period = (at(600), at(6_000));
        let first = cache
            .get_or_compute("c", ROLE, &p, period, async { Ok(summary(1)) })
            .await;
        assert_eq!(first.map(|s| s.members), Ok(1));
        tokio::time::sleep(Duration::from_millis(120)).await;
        let later = cache
            .get_or_compute("c", ROLE, &p, period, async { Ok(summary(2)) })
            .await;
        assert_eq!(later.map(|s| s.members), Ok(2), "expired and asked again");
    }
}
