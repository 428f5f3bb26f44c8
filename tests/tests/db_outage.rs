//! A service outlives its database: while PostgreSQL is down it reports NOT_SERVING and answers
//! UNAVAILABLE (no panic, no restart), and it serves again once PostgreSQL is back.

use std::time::Duration;

use guestloop_kit::auth::Role;
use guestloop_kit::embedded_pg::{EmbeddedPostgres, Lifetime};
use guestloop_kit::ports::free_port;
use guestloop_proto::common::v1::event_feed_client::EventFeedClient;
use guestloop_proto::common::v1::GetFeedStatusRequest;
use guestloop_testkit::{test_settings, TokenBuilder};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

async fn wait_for_health(
    health: &mut HealthClient<tonic::transport::Channel>,
    wanted: ServingStatus,
) -> anyhow::Result<()> {
    for _ in 0..100 {
        let status = health
            .check(HealthCheckRequest {
                service: "guestloop.crm.v1.CrmService".into(),
            })
            .await?
            .into_inner()
            .status;
        if status == wanted as i32 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("health never became {wanted:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_survives_a_database_outage() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!(
        "guestloop-outage-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let port = free_port()?;
    let database = EmbeddedPostgres::start(&dir.join("data"), port, Lifetime::Managed).await?;

    let mut settings = test_settings();
    settings.database.acquire_timeout_ms = 500;
    let settings = std::sync::Arc::new(settings);
    let service = guestloop_kit::server::start(
        &guestloop_crm::DEFINITION,
        settings,
        &database.url(),
        ([127, 0, 0, 1], 0).into(),
    )
    .await?;
    let url = format!("http://{}", service.local_addr);
    let channel = tonic::transport::Channel::from_shared(url)?
        .connect()
        .await?;
    let mut health = HealthClient::new(channel.clone());
    let token = TokenBuilder::new(Role::Service).mint()?;
    let context =
        guestloop_kit::client::CallContext::with_token(&secrecy::SecretString::from(token))?;
    let mut feed = EventFeedClient::new(tonic::service::interceptor::InterceptedService::new(
        channel, context,
    ));

    wait_for_health(&mut health, ServingStatus::Serving).await?;
    feed.get_feed_status(GetFeedStatusRequest {}).await?;

    database.stop().await?;
    wait_for_health(&mut health, ServingStatus::NotServing).await?;
    let status = feed
        .get_feed_status(GetFeedStatusRequest {})
        .await
        .expect_err("database is down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    let database = EmbeddedPostgres::start(&dir.join("data"), port, Lifetime::Managed).await?;
    wait_for_health(&mut health, ServingStatus::Serving).await?;
    let back = feed
        .get_feed_status(GetFeedStatusRequest {})
        .await?
        .into_inner();
    assert_eq!(back.service, "crm");

    service.shutdown().await?;
    database.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
