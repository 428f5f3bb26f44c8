//! `guestloop bench overload`: the gateway's scorecard RPC (demo chain, 90 days, fanned out to
//! complaints, facilities, audit and CRM) first at its saturating load — a closed loop with as many
//! calls in flight as the gateway's concurrency limit — then offered twice that rate in an open
//! loop. Prints goodput against the peak and how fast the excess is refused
//! (RESOURCE_EXHAUSTED from the kit's load shedding).

use std::time::Duration;

use guestloop_kit::config::Settings;
use guestloop_proto::common::v1::TimeRange;
use guestloop_proto::gateway::v1 as pb;
use tonic::Code;

use crate::bench_scorecard::{quality_client, start_suite};
use crate::load::{self, Mode};

pub async fn run(settings: Settings, limit: usize, seconds: u64) -> anyhow::Result<()> {
    let (suite, _settings) = start_suite(settings, Some(limit)).await?;
    let client = quality_client(&suite, guestloop_kit::demo::DEMO_CHAIN)?;
    let end = chrono::Utc::now();
    let request = pb::GetScorecardRequest {
        property_ids: Vec::new(),
        region: String::new(),
        period: Some(TimeRange {
            start_time: Some(guestloop_kit::time::to_timestamp(
                end - chrono::Duration::days(90),
            )),
            end_time: Some(guestloop_kit::time::to_timestamp(end)),
        }),
        ..Default::default()
    };
    // An answer with a part missing is not goodput: count it apart (as DataLoss).
    let call = move |_| {
        let mut client = client.clone();
        let request = request.clone();
        async move {
            match client.get_scorecard(request).await {
                Ok(card) if card.get_ref().missing.is_empty() => Ok(()),
                Ok(_) => Err(Code::DataLoss),
                Err(status) => Err(status.code()),
            }
        }
    };
    // Warm the caches the way steady traffic would.
    call(0).await.ok();
    let duration = Duration::from_secs(seconds);
    println!(
        "Gateway GetScorecard (demo chain, 90 days); each service on a runtime of its own (as in \
         its own process); the gateway sheds load above {limit} calls in flight. DataLoss = answered \
         with a part missing (not counted as goodput)."
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
    println!(
        "goodput at 2x = {:.0} % of peak (goal >= 90 %); {refused} refused with RESOURCE_EXHAUSTED, \
         refusal latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (goal < 10 ms)",
        100.0 * overload.goodput() / peak.goodput().max(1e-9),
        overload.refused_us.value_at_quantile(0.50) as f64 / 1000.0,
        overload.refused_us.value_at_quantile(0.99) as f64 / 1000.0,
        overload.refused_us.max() as f64 / 1000.0,
    );
    for service in suite.running {
        service.shutdown().await?;
    }
    Ok(())
}
