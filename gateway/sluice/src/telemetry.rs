//! Logs and traces: log lines to stderr (filtered by `SLUICE_LOG`), and, when
//! `[telemetry] otlp_endpoint` is set, the same spans (each query with its phases) exported
//! to an OpenTelemetry collector over OTLP/HTTP.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::TelemetrySection;

/// Flushes the spans not yet exported when dropped (at exit).
#[derive(Debug)]
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("sluice: flushing traces: {e}");
        }
    }
}

/// Installs the log (and, with an endpoint, trace) subscriber for the whole process. Call
/// outside any async runtime: the exporter's HTTP client runs on a thread of its own.
pub(crate) fn init(section: Option<&TelemetrySection>) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let provider = match section.and_then(|s| s.otlp_endpoint.as_deref().map(|e| (s, e))) {
        Some((section, endpoint)) => Some(provider(section, endpoint)?),
        None => None,
    };
    let traces = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("sluice")));
    tracing_subscriber::registry()
        .with(filter)
        .with(log)
        .with(traces)
        .init();
    if let (Some(section), Some(_)) = (section, &provider) {
        tracing::info!(
            endpoint = section.otlp_endpoint.as_deref().unwrap_or_default(),
            "exporting traces over OTLP/HTTP"
        );
    }
    Ok(Telemetry { provider })
}

fn provider(section: &TelemetrySection, endpoint: &str) -> Result<SdkTracerProvider, String> {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "[telemetry] otlp_endpoint = {endpoint:?}: expected an http:// address of an \
             OTLP/HTTP collector, e.g. http://127.0.0.1:4318"
        ));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .with_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| format!("[telemetry] otlp_endpoint = {endpoint:?}: {e}"))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(section.service_name.clone())
                .build(),
        )
        .build())
}
