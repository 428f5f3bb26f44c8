//! Authentication at the edge of every service: missing, expired, forged and unsigned tokens
//! are UNAUTHENTICATED; roles outside a method's policy are PERMISSION_DENIED; health and
//! reflection need no token.

use guestloop_kit::auth::Role;
use guestloop_proto::common::v1::diagnostics_client::DiagnosticsClient;
use guestloop_proto::common::v1::event_feed_client::EventFeedClient;
use guestloop_proto::common::v1::{GetFeedStatusRequest, WhoAmIRequest};
use guestloop_testkit::{spawn_service, TokenBuilder};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[tokio::test]
async fn tokens_are_checked_before_any_handler_runs() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;

    // No token at all.
    let mut anonymous = DiagnosticsClient::new(service.channel().await?);
    let status = anonymous
        .who_am_i(WhoAmIRequest {})
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated);

    // Expired.
    let expired = TokenBuilder::new(Role::Agent).mint_expired()?;
    let mut client = DiagnosticsClient::new(service.channel_with_token(&expired).await?);
    let status = client
        .who_am_i(WhoAmIRequest {})
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // Signed with another secret.
    let forged = {
        let settings = guestloop_kit::config::AuthSettings {
            hs256_secret: Some(secrecy::SecretString::from(
                "another-secret-another-secret-0000".to_string(),
            )),
            ..Default::default()
        };
        let issuer = guestloop_kit::auth::TokenIssuer::from_settings(&settings).expect("issuer");
        issuer.mint(guestloop_testkit::test_claims(
            Role::ChainAdmin,
            guestloop_kit::auth::PropertyScope::all(),
        ))?
    };
    let mut client = DiagnosticsClient::new(service.channel_with_token(&forged).await?);
    let status = client
        .who_am_i(WhoAmIRequest {})
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated);

    // alg=none: a valid token with its header replaced and its signature removed.
    let valid = TokenBuilder::new(Role::ChainAdmin).mint()?;
    let payload = valid.split('.').nth(1).expect("payload part");
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    let mut client = DiagnosticsClient::new(service.channel_with_token(&unsigned).await?);
    let status = client
        .who_am_i(WhoAmIRequest {})
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated);

    // A valid token is accepted and the service sees who is calling.
    let mut client = DiagnosticsClient::new(service.channel_with_token(&valid).await?);
    let me = client.who_am_i(WhoAmIRequest {}).await?.into_inner();
    assert_eq!(me.role, "chain_admin");
    assert_eq!(me.service, "crm");
    assert!(me.all_properties);

    service.shutdown().await
}

#[tokio::test]
async fn roles_outside_the_policy_are_refused() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_facilities::DEFINITION).await?;
    // Reading the event feed is for services and chain-level staff, not for a property agent.
    let agent = TokenBuilder::new(Role::Agent).properties(&["p1"]).mint()?;
    let mut feed = EventFeedClient::new(service.channel_with_token(&agent).await?);
    let status = feed
        .get_feed_status(GetFeedStatusRequest {})
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied);

    let guest = TokenBuilder::new(Role::Guest).guest("g-1").mint()?;
    let mut feed = EventFeedClient::new(service.channel_with_token(&guest).await?);
    let status = feed
        .get_feed_status(GetFeedStatusRequest {})
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied);

    let admin = TokenBuilder::new(Role::ChainAdmin).mint()?;
    let mut feed = EventFeedClient::new(service.channel_with_token(&admin).await?);
    let status = feed
        .get_feed_status(GetFeedStatusRequest {})
        .await?
        .into_inner();
    assert_eq!(status.service, "facilities");
    service.shutdown().await
}

#[tokio::test]
async fn health_and_reflection_need_no_token() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_audit::DEFINITION).await?;
    let mut health = HealthClient::new(service.channel().await?);
    for name in ["", "guestloop.audit.v1.AuditService"] {
        let response = health
            .check(HealthCheckRequest {
                service: name.into(),
            })
            .await?
            .into_inner();
        assert_eq!(response.status, 1, "SERVING for `{name}`");
    }
    service.shutdown().await
}
