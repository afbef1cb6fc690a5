//! The connector against a real, private ClickHouse (Debian's `clickhouse-server`, started by
//! `tests/servers/clickhouse.py` on free loopback ports, stopped by process id): the Arrow
//! types of every ClickHouse type the schema uses, a clear error for one it cannot map,
//! a time limit, and an abandoned result killing its query on the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Field, Float64Type, Int64Type, Schema, TimeUnit,
    TimestampMillisecondType, UInt8Type, UInt64Type,
};
use futures::StreamExt;
use sluice_connector_clickhouse::{ClickHouseClient, ClickHouseConfig};
use sluice_tests::PrivateClickHouse;

async fn client(server: &PrivateClickHouse, timeout_ms: u64) -> ClickHouseClient {
    let mut config = ClickHouseConfig::new(&server.url);
    config.database = "default".into();
    config.query_timeout_ms = timeout_ms;
    ClickHouseClient::connect(config).await.expect("connects")
}

async fn collect(
    client: &ClickHouseClient,
    sql: &str,
    fields: Vec<Field>,
) -> datafusion::error::Result<Vec<RecordBatch>> {
    let mut stream = client.query_arrow(sql.to_string(), Arc::new(Schema::new(fields)));
    let mut out = Vec::new();
    while let Some(batch) = stream.next().await {
        out.push(batch?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_private_server() {
    let server = PrivateClickHouse::start();
    let ch = client(&server, 2_000).await;
    assert!(ch.version().major >= 18, "{}", ch.version());

    // Every type the schema uses, read into the Arrow type the plan asks for.
    let ms = TimeUnit::Millisecond;
    let utc = Some(Arc::from("UTC"));
    let batches = collect(
        &ch,
        "SELECT toUInt8(7) AS u8, toInt64(-5) AS i64, toUInt64(1546300800123) AS ts_ms, \
         2.5 AS f, 'x' AS s, toFixedString('ab', 2) AS fs, toDate('2019-01-02') AS d, \
         toDateTime(1546300800, 'UTC') AS dt, CAST(NULL AS Nullable(String)) AS ns, \
         toNullable(toInt32(3)) AS n3, ['a', 'b'] AS arr, count() AS c, \
         toLowCardinality('lc') AS lc",
        vec![
            Field::new("u8", DataType::UInt8, false),
            Field::new("i64", DataType::Int64, false),
            Field::new("ts_ms", DataType::Timestamp(ms, utc.clone()), false),
            Field::new("f", DataType::Float64, false),
            Field::new("s", DataType::Utf8, false),
            Field::new("fs", DataType::Utf8, false),
            Field::new("d", DataType::Date32, false),
            Field::new("dt", DataType::Timestamp(ms, utc.clone()), false),
            Field::new("ns", DataType::Utf8, true),
            Field::new("n3", DataType::Int64, true),
            Field::new(
                "arr",
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, false))),
                false,
            ),
            Field::new("c", DataType::Int64, false),
            Field::new("lc", DataType::Utf8, false),
        ],
    )
    .await
    .expect("every type maps");
    let b = &batches[0];
    assert_eq!(b.num_rows(), 1);
    assert_eq!(b.column(0).as_primitive::<UInt8Type>().value(0), 7);
    assert_eq!(b.column(1).as_primitive::<Int64Type>().value(0), -5);
    assert_eq!(
        b.column(2)
            .as_primitive::<TimestampMillisecondType>()
            .value(0),
        1_546_300_800_123
    );
    assert_eq!(b.column(3).as_primitive::<Float64Type>().value(0), 2.5);
    assert_eq!(b.column(4).as_string::<i32>().value(0), "x");
    assert_eq!(b.column(5).as_string::<i32>().value(0), "ab");
    assert_eq!(b.column(6).as_primitive::<Date32Type>().value(0), 17_898);
    assert_eq!(
        b.column(7)
            .as_primitive::<TimestampMillisecondType>()
            .value(0),
        1_546_300_800_000
    );
    assert!(b.column(8).is_null(0));
    assert_eq!(b.column(9).as_primitive::<Int64Type>().value(0), 3);
    let list = b.column(10).as_list::<i32>().value(0);
    assert_eq!(
        list.as_string::<i32>().iter().flatten().collect::<Vec<_>>(),
        ["a", "b"]
    );

    // A type with no mapping is an error naming the column, never a value.
    let err = collect(
        &ch,
        "SELECT toDecimal32(1.5, 2) AS price",
        vec![Field::new("price", DataType::Float64, false)],
    )
    .await
    .expect_err("Decimal is not mapped");
    let message = err.to_string();
    assert!(
        message.contains("\"price\"") && message.contains("Decimal"),
        "{message}"
    );

    // A result of many blocks, each read whole across the server's small HTTP chunks.
    let many = |to: u64| {
        format!(
            "SELECT number AS n, concat('track:', toString(number)) AS uri \
             FROM system.numbers WHERE throwIf(number = {to}) = 0 LIMIT 300000"
        )
    };
    let fields = || {
        vec![
            Field::new("n", DataType::UInt64, false),
            Field::new("uri", DataType::Utf8, false),
        ]
    };
    let batches = collect(&ch, &many(u64::MAX), fields())
        .await
        .expect("many blocks");
    assert!(batches.len() > 1, "{} batches", batches.len());
    let mut next = 0u64;
    for b in &batches {
        let (n, uri) = (b.column(0).as_primitive::<UInt64Type>(), b.column(1));
        for (i, n) in n.values().iter().enumerate() {
            assert_eq!(*n, next);
            assert_eq!(uri.as_string::<i32>().value(i), format!("track:{n}"));
            next += 1;
        }
    }
    assert_eq!(next, 300_000);

    // ClickHouse failing after it has sent blocks appends its exception to the body: the
    // error carries ClickHouse's message.
    let mut stream = ch.query_arrow(many(250_000), Arc::new(Schema::new(fields())));
    let mut rows_before = 0;
    let err = loop {
        match stream.next().await.expect("an error before the end") {
            Ok(b) => rows_before += b.num_rows(),
            Err(e) => break e,
        }
    };
    assert!(rows_before > 0, "the error came before any block");
    assert!(err.to_string().contains("throwIf"), "{err}");

    // A query past the time limit fails in about that time, naming ClickHouse.
    let started = Instant::now();
    let err = collect(
        &ch,
        "SELECT sleep(3) AS s",
        vec![Field::new("s", DataType::UInt8, false)],
    )
    .await
    .expect_err("too slow");
    assert!(
        started.elapsed() < Duration::from_millis(2_900),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("ClickHouse at"), "{err}");

    // A result dropped part way (a client that cancelled) stops its query on the server.
    let ch = client(&server, 60_000).await;
    let mut stream = ch.query_arrow(
        "SELECT number FROM system.numbers".to_string(),
        Arc::new(Schema::new(vec![Field::new(
            "number",
            DataType::UInt64,
            false,
        )])),
    );
    stream
        .next()
        .await
        .expect("a first block")
        .expect("no error");
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let running = ch
            .text(
                "SELECT count() FROM system.processes WHERE query_id LIKE 'sluice-%' \
                 AND query LIKE '%system.numbers%' AND query NOT LIKE '%system.processes%'",
                "processes",
            )
            .await
            .expect("processes");
        if running == "0" {
            break;
        }
        assert!(Instant::now() < deadline, "the abandoned query still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_and_named() {
    let mut config = ClickHouseConfig::new("http://127.0.0.1:9");
    config.connect_timeout_ms = 500;
    let err = ClickHouseClient::connect(config)
        .await
        .expect_err("nothing listens there");
    assert!(err.is_unavailable(), "{err}");
    assert!(
        err.to_string().contains("ClickHouse at http://127.0.0.1:9"),
        "{err}"
    );
}
