//! One guest request is one trace: a call into the gateway that fans out to a backend shares
//! its trace id across both services (W3C trace context over gRPC).

use std::time::Duration;

use guestloop_kit::auth::Role;
use guestloop_kit::config::TelemetrySettings;
use guestloop_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use guestloop_proto::gateway::v1::GetSuiteStatusRequest;
use guestloop_testkit::{spawn_service, spawn_service_with, test_settings, TokenBuilder};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

fn method_of(span: &SpanData) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == "rpc.method")
        .map(|kv| kv.value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_the_gateway_is_one_trace_across_services() -> anyhow::Result<()> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let telemetry = TelemetrySettings {
        log_filter: "warn,guestloop=info".into(),
        ..TelemetrySettings::default()
    };
    let guard =
        guestloop_kit::telemetry::init("guestloop-test", &telemetry, Some(provider.clone()))?;
    // `init` installs a filter from `log_filter`; spans at INFO pass it.

    let complaints = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut settings = test_settings();
    settings
        .endpoints
        .insert("complaints".into(), complaints.url());
    for unreachable in ["crm", "facilities", "audit"] {
        settings
            .endpoints
            .insert(unreachable.into(), "http://127.0.0.1:9".into());
    }
    let gateway = spawn_service_with(&guestloop_gateway::DEFINITION, settings, None).await?;

    let token = TokenBuilder::new(Role::ChainAdmin).mint()?;
    let mut client = GatewayServiceClient::new(gateway.channel_with_token(&token).await?);
    let status = client
        .get_suite_status(GetSuiteStatusRequest {})
        .await?
        .into_inner();
    let complaints_status = status
        .backends
        .iter()
        .find(|b| b.service == "complaints")
        .ok_or_else(|| anyhow::anyhow!("complaints missing from the suite status"))?;
    assert!(complaints_status.reachable, "{complaints_status:?}");
    assert!(status
        .backends
        .iter()
        .filter(|b| b.service != "complaints")
        .all(|b| !b.reachable));

    // Spans end a moment after the response is written.
    let mut spans = Vec::new();
    for _ in 0..50 {
        let _ = provider.force_flush();
        spans = exporter.get_finished_spans()?;
        let done = spans
            .iter()
            .any(|s| method_of(s).is_some_and(|m| m.contains("GetFeedStatus")))
            && spans
                .iter()
                .any(|s| method_of(s).is_some_and(|m| m.contains("GetSuiteStatus")));
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gateway_span = spans
        .iter()
        .find(|s| method_of(s).is_some_and(|m| m.contains("GatewayService/GetSuiteStatus")))
        .ok_or_else(|| anyhow::anyhow!("no gateway server span among {} spans", spans.len()))?;
    let backend_span = spans
        .iter()
        .find(|s| method_of(s).is_some_and(|m| m.contains("EventFeed/GetFeedStatus")))
        .ok_or_else(|| anyhow::anyhow!("no complaints server span"))?;
    assert_eq!(
        gateway_span.span_context.trace_id(),
        backend_span.span_context.trace_id(),
        "the backend span continues the gateway's trace"
    );
    assert_ne!(
        gateway_span.span_context.span_id(),
        backend_span.span_context.span_id()
    );
    // The backend's server span hangs below a span of the gateway's trace, not at the root.
    assert!(backend_span.parent_span_id != opentelemetry::trace::SpanId::INVALID);

    gateway.shutdown().await?;
    complaints.shutdown().await?;
    guard.shutdown();
    Ok(())
}
