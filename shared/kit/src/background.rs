//! Periodic background work, run the same way by every service: a step runs at once, again at
//! once while it keeps finding work, otherwise after `period`, and stops at shutdown. Failures
//! are logged and retried on the next tick; they never end the loop.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use crate::ApiResult;

/// Runs `step` every `period` until `stop` turns true. `step` returns how many items it handled.
pub async fn every<F, Fut>(
    name: &'static str,
    period: Duration,
    mut stop: watch::Receiver<bool>,
    mut step: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ApiResult<usize>>,
{
    loop {
        if *stop.borrow() {
            return;
        }
        match step().await {
            // Work was found: look again at once in case more is waiting.
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(worker = name, %error, "background step failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::ApiError;

    #[tokio::test]
    async fn repeats_while_busy_survives_errors_and_stops() {
        let (tx, rx) = watch::channel(false);
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let worker = tokio::spawn(every("test", Duration::from_millis(5), rx, move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0..=2 => Ok(1),
                    3 => Err(ApiError::internal("boom")),
                    _ => Ok(0),
                }
            }
        }));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(
            calls.load(Ordering::SeqCst) >= 5,
            "the loop went on after an error"
        );
        tx.send(true).ok();
        tokio::time::timeout(Duration::from_secs(2), worker)
            .await
            .expect("the loop stops at shutdown")
            .ok();
    }
}
