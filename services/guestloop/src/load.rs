//! A gRPC load generator: closed loop (N calls in flight) or open loop (a fixed arrival rate),
//! latencies in an HDR histogram, every status code counted.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tonic::Code;

/// How load is offered.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// `concurrency` workers, each sending the next call when the previous one returns.
    Closed { concurrency: usize },
    /// Calls start at `rate` per second regardless of how fast they finish (at most
    /// `max_in_flight` outstanding); latency counts from the scheduled start, so a stalled
    /// server shows up in the percentiles instead of hiding (no coordinated omission).
    Open { rate: f64, max_in_flight: usize },
}

/// What a run measured.
#[derive(Debug)]
pub struct Report {
    pub label: String,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
    /// Latency of the calls refused with RESOURCE_EXHAUSTED (load shedding) alone, counted like
    /// `latency_us` (in an open loop: from the scheduled start).
    pub refused_us: Histogram<u64>,
    /// The same refusals' round trip alone: from the moment the call was actually sent to its
    /// answer. In an open loop this leaves out how late the generator itself started the call
    /// (it shares the machine with the servers); in a closed loop it equals `refused_us`.
    pub refused_round_trip_us: Histogram<u64>,
    /// How late the open-loop generator sent its calls after their scheduled start (zero in a
    /// closed loop).
    pub start_lag_us: Histogram<u64>,
    pub codes: BTreeMap<String, u64>,
    /// Calls the open-loop generator could not start because `max_in_flight` were outstanding.
    pub dropped: u64,
}

impl Report {
    pub fn ok(&self) -> u64 {
        self.codes.get("Ok").copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.codes.values().sum()
    }

    /// Successful calls per second.
    pub fn goodput(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile_ms(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn print(&self) {
        println!(
            "{:<28} {:>9.0} ok/s  p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  max {:>7.2} ms  calls {}  {}{}",
            self.label,
            self.goodput(),
            self.percentile_ms(0.50),
            self.percentile_ms(0.90),
            self.percentile_ms(0.99),
            self.percentile_ms(0.999),
            self.latency_us.max() as f64 / 1000.0,
            self.total(),
            self.codes
                .iter()
                .map(|(code, n)| format!("{code}={n}"))
                .collect::<Vec<_>>()
                .join(" "),
            if self.dropped > 0 { format!("  not started {}", self.dropped) } else { String::new() },
        );
    }
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn code_name(code: Code) -> String {
    format!("{code:?}")
}

/// Runs `call` under `mode` for `duration`. `call(i)` performs the i-th call and returns its
/// gRPC outcome.
pub async fn run<F, Fut>(
    label: &str,
    mode: Mode,
    duration: Duration,
    call: F,
) -> anyhow::Result<Report>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Code>> + Send + 'static,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let deadline = started + duration;
    // (latency as counted by the mode, round trip from the actual send, start lag, outcome)
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<(u64, u64, u64, Code)>();
    let mut dropped = 0;
    match mode {
        Mode::Closed { concurrency } => {
            let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let mut workers = Vec::new();
            for _ in 0..concurrency.max(1) {
                let call = call.clone();
                let sender = sender.clone();
                let counter = counter.clone();
                workers.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let begun = Instant::now();
                        let code = match call(i).await {
                            Ok(()) => Code::Ok,
                            Err(code) => code,
                        };
                        let taken = micros(begun.elapsed());
                        if sender.send((taken, taken, 0, code)).is_err() {
                            return;
                        }
                    }
                }));
            }
            for worker in workers {
                worker.await?;
            }
        }
        Mode::Open {
            rate,
            max_in_flight,
        } => {
            let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
            let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
            let mut i: u64 = 0;
            let mut tasks = Vec::new();
            loop {
                let scheduled = started + interval.mul_f64(i as f64);
                if scheduled >= deadline {
                    break;
                }
                tokio::time::sleep_until(scheduled.into()).await;
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    dropped += 1;
                    i += 1;
                    continue;
                };
                let call = call.clone();
                let sender = sender.clone();
                let index = i;
                tasks.push(tokio::spawn(async move {
                    let sent = Instant::now();
                    let lag = micros(sent.saturating_duration_since(scheduled));
                    let code = match call(index).await {
                        Ok(()) => Code::Ok,
                        Err(code) => code,
                    };
                    drop(permit);
                    let _ = sender.send((
                        micros(scheduled.elapsed()),
                        micros(sent.elapsed()),
                        lag,
                        code,
                    ));
                }));
                i += 1;
            }
            for task in tasks {
                task.await?;
            }
        }
    }
    drop(sender);
    let elapsed = started.elapsed();
    let mut latency_us = new_histogram()?;
    let mut refused_us = new_histogram()?;
    let mut refused_round_trip_us = new_histogram()?;
    let mut start_lag_us = new_histogram()?;
    let mut codes = BTreeMap::new();
    while let Some((micros, round_trip, lag, code)) = receiver.recv().await {
        latency_us.saturating_record(micros.max(1));
        start_lag_us.saturating_record(lag.max(1));
        if code == Code::ResourceExhausted {
            refused_us.saturating_record(micros.max(1));
            refused_round_trip_us.saturating_record(round_trip.max(1));
        }
        *codes.entry(code_name(code)).or_insert(0) += 1;
    }
    Ok(Report {
        label: label.to_string(),
        elapsed,
        latency_us,
        refused_us,
        refused_round_trip_us,
        start_lag_us,
        codes,
        dropped,
    })
}
