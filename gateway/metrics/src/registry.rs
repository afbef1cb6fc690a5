use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Sluice's own registry, so nothing else in the process adds to what `/metrics` shows.
static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

/// Scans of a source that ran, by `source` (`memory`, `parquet`, `redis`, ...) and
/// `branch` (`hot`, `cold`). A query whose plan rules a branch out does not scan it.
pub static SOURCE_SCANS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new("sluice_source_scans_total", "Scans of a source that ran"),
            &["source", "branch"],
        )
        .expect("valid metric"),
    )
});

/// Rows a source returned to the gateway, by `source` and `branch`.
pub static SOURCE_ROWS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "sluice_source_rows_total",
                "Rows a source returned to the gateway",
            ),
            &["source", "branch"],
        )
        .expect("valid metric"),
    )
});

/// Queries by `outcome` (`ok`, `error`, `cancelled`).
pub static QUERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new("sluice_queries_total", "Queries by outcome"),
            &["outcome"],
        )
        .expect("valid metric"),
    )
});

/// Query wall time from execution start to the last row sent, by `outcome`.
pub static QUERY_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new("sluice_query_duration_seconds", "Query wall time").buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
                30.0,
            ]),
            &["outcome"],
        )
        .expect("valid metric"),
    )
});

/// Everything registered, in the Prometheus text format.
pub fn render() -> String {
    // Register each, so the first scrape already knows them (series appear once used).
    LazyLock::force(&SOURCE_SCANS);
    LazyLock::force(&SOURCE_ROWS);
    LazyLock::force(&QUERIES);
    LazyLock::force(&QUERY_SECONDS);
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&REGISTRY.gather(), &mut out)
        .expect("text encoding of gathered metrics");
    String::from_utf8(out).expect("the text format is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_text_format() {
        SOURCE_SCANS.with_label_values(&["redis", "hot"]).inc();
        SOURCE_ROWS.with_label_values(&["redis", "hot"]).inc_by(7);
        QUERY_SECONDS.with_label_values(&["ok"]).observe(0.003);
        let text = render();
        assert!(text.contains(r#"sluice_source_scans_total{branch="hot",source="redis"} 1"#));
        assert!(text.contains(r#"sluice_source_rows_total{branch="hot",source="redis"} 7"#));
        assert!(text.contains("# TYPE sluice_query_duration_seconds histogram"));
        assert!(
            text.contains(r#"sluice_query_duration_seconds_bucket{outcome="ok",le="0.005"} 1"#)
        );
        assert!(
            text.contains(r#"sluice_query_duration_seconds_bucket{outcome="ok",le="0.002"} 0"#)
        );
    }
}
