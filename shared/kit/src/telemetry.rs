//! Logs, traces and metrics.
//!
//! `tracing` is the only instrumentation API in the code. [`init`] installs a human or JSON log
//! formatter and, when an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT`), exports
//! spans and metrics over OTLP/gRPC. The W3C trace-context propagator is always installed, so
//! `traceparent` flows through every gRPC hop whether or not spans are exported.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetrySettings};

/// Keeps exporters alive; [`TelemetryGuard::shutdown`] flushes what is buffered.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
}

impl TelemetryGuard {
    /// Flushes and stops the exporters (the last step of a graceful shutdown).
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider {
            if let Err(error) = provider.shutdown() {
                eprintln!("trace exporter shutdown: {error}");
            }
        }
        if let Some(provider) = self.meter_provider {
            if let Err(error) = provider.shutdown() {
                eprintln!("metric exporter shutdown: {error}");
            }
        }
    }
}

fn resource(service_name: &str) -> Resource {
    Resource::builder()
        .with_service_name(service_name.to_string())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Installs the global subscriber, propagator and (when configured) OTLP exporters.
///
/// `tracer_provider` lets tests plug in an in-memory exporter instead of OTLP.
pub fn init(
    service_name: &str,
    settings: &TelemetrySettings,
    tracer_provider: Option<SdkTracerProvider>,
) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log_filter))
        .map_err(|e| anyhow::anyhow!("setting `telemetry.log_filter` is invalid: {e}"))?;
    let fmt_layer = match settings.log_format {
        LogFormat::Human => tracing_subscriber::fmt::layer().with_target(false).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .boxed(),
    };

    let mut guard = TelemetryGuard::default();
    let tracer_provider = match (tracer_provider, settings.otlp_endpoint.as_deref()) {
        (Some(provider), _) => Some(provider),
        (None, Some(endpoint)) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource(service_name))
                    .build(),
            )
        }
        (None, None) => None,
    };
    if let Some(endpoint) = settings.otlp_endpoint.as_deref() {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?;
        let provider = SdkMeterProvider::builder()
            .with_periodic_exporter(exporter)
            .with_resource(resource(service_name))
            .build();
        opentelemetry::global::set_meter_provider(provider.clone());
        guard.meter_provider = Some(provider);
    }

    let otel_layer = tracer_provider.as_ref().map(|provider| {
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracing_opentelemetry::layer().with_tracer(provider.tracer("guestloop"))
    });
    guard.tracer_provider = tracer_provider;
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|e| anyhow::anyhow!("telemetry already initialised: {e}"))?;
    Ok(guard)
}

/// Reads W3C headers from an HTTP header map.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes W3C headers into gRPC metadata.
struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Makes `span` a child of the trace context carried by incoming request headers.
pub fn adopt_remote_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    // Without an exporter installed this is a no-op; with one it links the trace.
    let _ = span.set_parent(parent);
}

/// Adds the current span's trace context to outgoing gRPC metadata.
pub fn inject_current_context(metadata: &mut tonic::metadata::MetadataMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MetadataInjector(metadata))
    });
}

/// The current span's `traceparent` value (empty when there is no sampled trace).
pub fn current_traceparent() -> String {
    let context = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut carrier)
    });
    carrier.remove("traceparent").unwrap_or_default()
}
