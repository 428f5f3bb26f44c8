//! `guestloop bench overload`: the gateway's scorecard RPC (demo chain, 90 days, fanned out to
//! complaints, facilities, audit and CRM) first at its saturating load — a closed loop with as many
//! calls in flight as the gateway's concurrency limit — then offered twice that rate in an open
//! loop. Prints goodput against the peak and how fast the excess is refused
//! (RESOURCE_EXHAUSTED from the kit's load shedding).

use std::time::Duration;

use guestloop_kit::auth::TokenIssuer;
use guestloop_kit::config::Settings;
use guestloop_proto::gateway::v1 as pb;
use tonic::Code;

use crate::bench_scorecard::{last_days, quality_client_of, start_suite};
use crate::load::{self, Mode};

pub async fn run(
    settings: Settings,
    limit: usize,
    seconds: u64,
    connections: usize,
) -> anyhow::Result<()> {
    let (suite, _settings) = start_suite(settings, Some(limit)).await?;
    let (gateway, issuer) = (suite.gateway.clone(), suite.issuer.clone());
    // The callers run on a thread and runtime of their own, as if on another machine: the
    // generator's timing then does not wait behind the work of the process's main runtime.
    let callers = std::thread::Builder::new()
        .name("load-generator".into())
        .spawn(move || -> anyhow::Result<()> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(drive(&gateway, &issuer, limit, seconds, connections))
        })?;
    tokio::task::spawn_blocking(move || callers.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the load generator panicked"))??;
    for service in suite.running {
        service.shutdown().await?;
    }
    Ok(())
}

async fn drive(
    gateway: &str,
    issuer: &TokenIssuer,
    limit: usize,
    seconds: u64,
    connections: usize,
) -> anyhow::Result<()> {
    // The callers' HTTP/2 connections, used in turn (a gateway's callers are many apps and
    // dashboards, each with a connection of its own, not one multiplexed pipe).
    let clients: Vec<_> = (0..connections.max(1))
        .map(|_| quality_client_of(gateway, issuer, guestloop_kit::demo::DEMO_CHAIN))
        .collect::<anyhow::Result<_>>()?;
    let clients = std::sync::Arc::new(clients);
    let request = pb::GetScorecardRequest {
        property_ids: Vec::new(),
        region: String::new(),
        period: Some(last_days(90).2),
        ..Default::default()
    };
    // An answer with a part missing is not goodput: count it apart (as DataLoss).
    let call = move |i: u64| {
        let mut client = clients[i as usize % clients.len()].clone();
        let request = request.clone();
        async move {
            match client.get_scorecard(request).await {
                Ok(card) if card.get_ref().missing.is_empty() => Ok(()),
                Ok(_) => Err(Code::DataLoss),
                Err(status) => Err(status.code()),
            }
        }
    };
    // Warm the caches and open every connection, the way steady traffic would.
    for i in 0..connections.max(1) as u64 {
        call(i).await.ok();
    }
    let duration = Duration::from_secs(seconds);
    println!(
        "Gateway GetScorecard (demo chain, 90 days); each service on a runtime of its own (as in \
         its own process); the gateway sheds load above {limit} calls in flight; callers use \
         {connections} HTTP/2 connections in turn. DataLoss = answered with a part missing (not \
         counted as goodput)."
    );
    // Below the limit nothing is refused: where goodput stops growing is the machine's saturation,
    // and a limit far above it only adds queueing (latency) without adding goodput.
    let mut concurrency = 1;
    while concurrency < limit {
        load::run(
            &format!("sweep: closed, {concurrency} in flight"),
            Mode::Closed { concurrency },
            duration / 2,
            call.clone(),
        )
        .await?
        .print();
        concurrency *= 2;
    }
    let peak = load::run(
        &format!("peak: closed, {limit} in flight"),
        Mode::Closed { concurrency: limit },
        duration,
        call.clone(),
    )
    .await?;
    peak.print();
    let rate = 2.0 * peak.goodput();
    let overload = load::run(
        &format!("2x: open, {rate:.0}/s"),
        Mode::Open {
            rate,
            max_in_flight: 16_384,
        },
        duration,
        call,
    )
    .await?;
    overload.print();
    let refused = overload
        .codes
        .get("ResourceExhausted")
        .copied()
        .unwrap_or(0);
    let quantiles = |h: &hdrhistogram::Histogram<u64>| {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            h.value_at_quantile(0.50) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        )
    };
    println!(
        "goodput at 2x = {:.0} % of peak (goal >= 90 %); {refused} refused with RESOURCE_EXHAUSTED \
         (goal < 10 ms): from the scheduled start {}; round trip from the send {}; the \
         generator's own lag (scheduled start to send, every call) {}",
        100.0 * overload.goodput() / peak.goodput().max(1e-9),
        quantiles(&overload.refused_us),
        quantiles(&overload.refused_round_trip_us),
        quantiles(&overload.start_lag_us),
    );
    Ok(())
}
