//! `GetSuiteStatus`: asks every backend for its event-feed status, in parallel, each with its
//! own deadline, and reports what it found — an unreachable backend is reported, not hidden.

use std::time::{Duration, Instant};

use futures::future::join_all;
use guestloop_proto::common::v1::event_feed_client::EventFeedClient;
use guestloop_proto::common::v1::GetFeedStatusRequest;
use guestloop_proto::gateway::v1 as pb;
use guestloop_proto::gateway::v1::gateway_service_server::GatewayService;
use guestloop_proto::gateway::v1::{BackendStatus, GetSuiteStatusRequest, GetSuiteStatusResponse};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::Backends;

const BACKEND_DEADLINE: Duration = Duration::from_secs(2);

pub struct Api {
    backends: Backends,
    pool: sqlx::PgPool,
}

impl Api {
    pub fn new(backends: Backends, pool: sqlx::PgPool) -> Self {
        Self { backends, pool }
    }
}

/// Calls every backend and collects one status per backend.
pub async fn suite_status(backends: &Backends) -> Vec<BackendStatus> {
    let calls = backends.all().map(|(name, endpoint, channel)| {
        let endpoint = endpoint.to_string();
        async move {
            let started = Instant::now();
            let mut request = Request::new(GetFeedStatusRequest {});
            request.set_timeout(BACKEND_DEADLINE);
            let result = EventFeedClient::new(channel).get_feed_status(request).await;
            let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            match result {
                Ok(response) => BackendStatus {
                    service: name.to_string(),
                    endpoint,
                    reachable: true,
                    event_head_position: response.into_inner().head_position,
                    error: String::new(),
                    latency_ms,
                },
                Err(status) => BackendStatus {
                    service: name.to_string(),
                    endpoint,
                    reachable: false,
                    event_head_position: 0,
                    error: format!("{:?}: {}", status.code(), status.message()),
                    latency_ms,
                },
            }
        }
        .instrument(tracing::info_span!("backend_status", backend = name))
    });
    join_all(calls).await
}

#[tonic::async_trait]
impl GatewayService for Api {
    async fn get_suite_status(
        &self,
        _request: Request<GetSuiteStatusRequest>,
    ) -> Result<Response<GetSuiteStatusResponse>, Status> {
        let backends = suite_status(&self.backends).await;
        Ok(Response::new(GetSuiteStatusResponse {
            backends,
            check_time: Some(guestloop_kit::time::to_timestamp(chrono::Utc::now())),
        }))
    }

    async fn get_scorecard(
        &self,
        request: Request<pb::GetScorecardRequest>,
    ) -> Result<Response<pb::Scorecard>, Status> {
        Ok(Response::new(
            crate::scorecard::get(&self.backends, &self.pool, request).await?,
        ))
    }

    async fn get_arrival_brief(
        &self,
        request: Request<pb::GetArrivalBriefRequest>,
    ) -> Result<Response<pb::ArrivalBrief>, Status> {
        Ok(Response::new(
            crate::brief::get(&self.backends, request).await?,
        ))
    }

    async fn get_score_trend(
        &self,
        request: Request<pb::GetScoreTrendRequest>,
    ) -> Result<Response<pb::ScoreTrend>, Status> {
        Ok(Response::new(
            crate::trend::get(&self.backends, &self.pool, request).await?,
        ))
    }

    async fn get_score_weights(
        &self,
        request: Request<pb::GetScoreWeightsRequest>,
    ) -> Result<Response<pb::ScoreWeights>, Status> {
        let principal = guestloop_kit::auth::principal(&request)?;
        let weights = crate::scorecard::weights(&self.pool, principal.chain_id()).await?;
        Ok(Response::new(pb::ScoreWeights {
            weights: weights
                .into_iter()
                .map(|w| pb::ScoreWeight {
                    kpi: w.kpi,
                    weight: w.weight,
                    target: w.target,
                    floor: w.floor,
                })
                .collect(),
        }))
    }

    async fn update_score_weights(
        &self,
        request: Request<pb::UpdateScoreWeightsRequest>,
    ) -> Result<Response<pb::ScoreWeights>, Status> {
        let principal = guestloop_kit::auth::principal(&request)?.clone();
        // The weights score every property of the chain.
        principal.require_whole_chain("the composite score's weights")?;
        let weights: Vec<crate::sqs::Weight> = request
            .into_inner()
            .weights
            .into_iter()
            .map(|w| crate::sqs::Weight {
                kpi: w.kpi,
                weight: w.weight,
                target: w.target,
                floor: w.floor,
            })
            .collect();
        crate::sqs::validate(&weights)
            .map_err(|why| guestloop_kit::ApiError::invalid("weights", why))?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(guestloop_kit::ApiError::from)?;
        // Updates of one chain's weights take turns, so two at once leave one whole set (the
        // later), never a mix of both or a duplicate-key failure.
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended('gateway.score_weights:' || $1, 0))",
        )
        .bind(principal.chain_id())
        .execute(&mut *tx)
        .await
        .map_err(guestloop_kit::ApiError::from)?;
        sqlx::query("DELETE FROM score_weights WHERE chain_id = $1")
            .bind(principal.chain_id())
            .execute(&mut *tx)
            .await
            .map_err(guestloop_kit::ApiError::from)?;
        for w in &weights {
            sqlx::query("INSERT INTO score_weights (chain_id, kpi, weight, target, floor) VALUES ($1, $2, $3, $4, $5)")
                .bind(principal.chain_id())
                .bind(&w.kpi)
                .bind(w.weight)
                .bind(w.target)
                .bind(w.floor)
                .execute(&mut *tx)
                .await
                .map_err(guestloop_kit::ApiError::from)?;
        }
        tx.commit().await.map_err(guestloop_kit::ApiError::from)?;
        Ok(Response::new(pb::ScoreWeights {
            weights: weights
                .into_iter()
                .map(|w| pb::ScoreWeight {
                    kpi: w.kpi,
                    weight: w.weight,
                    target: w.target,
                    floor: w.floor,
                })
                .collect(),
        }))
    }
}
