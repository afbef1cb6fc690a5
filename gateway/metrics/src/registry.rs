use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Sluice's own registry, so nothing else in the process adds to what `/metrics` shows.
static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    // From half a millisecond (a hot-window read) to half a minute (a long export).
    let buckets = vec![
        0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
    ];
    register(
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
            .expect("valid metric"),
    )
}

fn gauge(name: &str, help: &str) -> IntGauge {
    register(IntGauge::new(name, help).expect("valid metric"))
}

/// Scans of a source that ran, by `source` (`memory`, `parquet`, `redis`, `clickhouse`)
/// and `branch` (`hot`, `cold`, `catalog`). A query whose plan rules a branch out does
/// not scan it.
pub static SOURCE_SCANS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "sluice_source_scans_total",
        "Scans of a source that ran",
        &["source", "branch"],
    )
});

/// Rows a source returned to the gateway, by `source` and `branch`.
pub static SOURCE_ROWS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "sluice_source_rows_total",
        "Rows a source returned to the gateway",
        &["source", "branch"],
    )
});

/// Bytes (Arrow, in memory) a source returned to the gateway, by `source` and `branch`.
pub static SOURCE_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "sluice_source_bytes_total",
        "Bytes of Arrow data a source returned to the gateway",
        &["source", "branch"],
    )
});

/// Time from the start of a scan to its last batch, by `source` and `branch`.
pub static SOURCE_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram(
        "sluice_source_duration_seconds",
        "Time a source scan took, from its start to its last batch",
        &["source", "branch"],
    )
});

/// Reads of a rollup in place of raw events, by `rollup`.
pub static ROLLUP_READS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "sluice_rollup_reads_total",
        "Queries that read a rollup in place of raw events",
        &["rollup"],
    )
});

/// Statements planned by `outcome`: `hit` (a kept routed plan reused, no planning) or
/// `miss` (planned; kept for next time when it may be reused).
pub static PLAN_CACHE: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "sluice_plan_cache_total",
        "Statements that reused a kept routed plan (hit) or were planned (miss)",
        &["outcome"],
    )
});

/// Physical plans (operators) of queries by `outcome`: `hit` (a kept physical plan reset
/// and run again) or `miss` (planned from the routed plan).
pub static PHYSICAL_PLAN_CACHE: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "sluice_physical_plan_cache_total",
        "Queries that ran a kept physical plan again (hit) or planned one (miss)",
        &["outcome"],
    )
});

/// Queries by `outcome` (`ok`, `failed`, `refused`, `cancelled`, `timeout`,
/// `too_many_rows`, `client_gone`, `busy`) and `route` (the branches read: `hot`, `cold`,
/// `rollup`, joined by `+`; `none` when nothing of `streams` was read or the query did not
/// run).
pub static QUERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "sluice_queries_total",
        "Queries by outcome and route",
        &["outcome", "route"],
    )
});

/// Query wall time from execution start to the last row sent, by `outcome` and `route`.
pub static QUERY_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram(
        "sluice_query_duration_seconds",
        "Query wall time, from execution start to the last row sent",
        &["outcome", "route"],
    )
});

/// Queries running now (from the start of their result stream to its end).
pub static ACTIVE_QUERIES: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("sluice_active_queries", "Queries running now"));

/// Operator memory (sorts, joins, aggregates) reserved by running queries, in bytes.
pub static MEMORY_POOL_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "sluice_memory_pool_bytes",
        "Operator memory reserved by running queries",
    )
});

/// The limit of [`MEMORY_POOL_BYTES`] (`[server] memory_pool_mb`); 0 when unlimited.
pub static MEMORY_POOL_LIMIT_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "sluice_memory_pool_limit_bytes",
        "Limit of the operator memory of all queries together (0: none)",
    )
});

/// Resident memory of the process, read when scraped.
static RESIDENT_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "sluice_process_resident_memory_bytes",
        "Resident memory of the process",
    )
});

/// Whether the process takes new queries: false before it serves and while it drains.
static READY: AtomicBool = AtomicBool::new(false);
static READY_GAUGE: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "sluice_ready",
        "1 while new queries are taken, 0 while draining",
    )
});

/// Marks the process ready for queries (`/readyz` answers 200) or not (503).
pub fn set_ready(ready: bool) {
    READY.store(ready, Ordering::SeqCst);
    READY_GAUGE.set(i64::from(ready));
}

/// Whether `/readyz` answers 200.
pub fn is_ready() -> bool {
    READY.load(Ordering::SeqCst)
}

/// Resident set size from `/proc/self/statm` (Linux); None elsewhere.
fn resident_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Everything registered, in the Prometheus text format.
pub fn render() -> String {
    // Register each, so the first scrape already knows them (labelled series appear once
    // used).
    LazyLock::force(&SOURCE_SCANS);
    LazyLock::force(&SOURCE_ROWS);
    LazyLock::force(&SOURCE_BYTES);
    LazyLock::force(&SOURCE_SECONDS);
    LazyLock::force(&ROLLUP_READS);
    LazyLock::force(&PLAN_CACHE);
    LazyLock::force(&PHYSICAL_PLAN_CACHE);
    LazyLock::force(&QUERIES);
    LazyLock::force(&QUERY_SECONDS);
    LazyLock::force(&ACTIVE_QUERIES);
    LazyLock::force(&MEMORY_POOL_BYTES);
    LazyLock::force(&MEMORY_POOL_LIMIT_BYTES);
    READY_GAUGE.set(i64::from(is_ready()));
    if let Some(bytes) = resident_bytes() {
        RESIDENT_BYTES.set(bytes);
    }
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
        QUERY_SECONDS
            .with_label_values(&["ok", "hot"])
            .observe(0.003);
        ACTIVE_QUERIES.inc();
        let text = render();
        assert!(text.contains(r#"sluice_source_scans_total{branch="hot",source="redis"} 1"#));
        assert!(text.contains(r#"sluice_source_rows_total{branch="hot",source="redis"} 7"#));
        assert!(text.contains("# TYPE sluice_query_duration_seconds histogram"));
        assert!(text.contains(
            r#"sluice_query_duration_seconds_bucket{outcome="ok",route="hot",le="0.005"} 1"#
        ));
        assert!(text.contains(
            r#"sluice_query_duration_seconds_bucket{outcome="ok",route="hot",le="0.002"} 0"#
        ));
        assert!(text.contains("sluice_active_queries 1"));
        assert!(text.contains("sluice_process_resident_memory_bytes "));
        assert!(text.contains("sluice_ready 0"));
    }
}
