//! End-to-end: the real server over Flight SQL with arrow-flight's clients.

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetCrossReference, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetXdbcTypeInfo, SqlInfo,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    Ticket,
};
use futures::TryStreamExt;
use prost::Message;
use sluice_tests::SluiceServer;
use tonic::Code;
use tonic::transport::Channel;

async fn channel(server: &SluiceServer) -> Channel {
    Channel::from_shared(server.url())
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

async fn logged_in(server: &SluiceServer, user: &str) -> FlightSqlServiceClient<Channel> {
    let mut client = FlightSqlServiceClient::new(channel(server).await);
    client.handshake(user, user).await.expect("handshake");
    client
}

async fn rows(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> usize {
    let mut n = 0;
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("ticket");
        let batches: Vec<_> = client
            .do_get(ticket)
            .await
            .expect("do_get")
            .try_collect()
            .await
            .expect("stream");
        n += batches.iter().map(|b| b.num_rows()).sum::<usize>();
    }
    n
}

#[tokio::test]
async fn every_rpc_without_credentials_is_unauthenticated() {
    let server = SluiceServer::start();
    let mut raw = FlightServiceClient::new(channel(&server).await);
    let descriptor = FlightDescriptor::new_cmd(b"x".to_vec());
    let codes = vec![
        (
            "ListFlights",
            raw.list_flights(Criteria::default())
                .await
                .err()
                .map(|s| s.code()),
        ),
        (
            "GetFlightInfo",
            raw.get_flight_info(descriptor.clone())
                .await
                .err()
                .map(|s| s.code()),
        ),
        (
            "PollFlightInfo",
            raw.poll_flight_info(descriptor.clone())
                .await
                .err()
                .map(|s| s.code()),
        ),
        (
            "GetSchema",
            raw.get_schema(descriptor.clone())
                .await
                .err()
                .map(|s| s.code()),
        ),
        (
            "DoGet",
            raw.do_get(Ticket::new(b"x".to_vec()))
                .await
                .err()
                .map(|s| s.code()),
        ),
        (
            "DoPut",
            raw.do_put(futures::stream::iter([FlightData::default()]))
                .await
                .err()
                .map(|s| s.code()),
        ),
        (
            "DoExchange",
            raw.do_exchange(futures::stream::iter([FlightData::default()]))
                .await
                .err()
                .map(|s| s.code()),
        ),
        (
            "DoAction",
            raw.do_action(Action::new("CloseSession", ""))
                .await
                .err()
                .map(|s| s.code()),
        ),
        (
            "ListActions",
            raw.list_actions(Empty {}).await.err().map(|s| s.code()),
        ),
    ];
    for (rpc, code) in codes {
        assert_eq!(code, Some(Code::Unauthenticated), "{rpc}");
    }
    // A wrong password fails the handshake itself.
    let mut client = FlightSqlServiceClient::new(channel(&server).await);
    let err = client.handshake("u0001", "nope").await.unwrap_err();
    assert!(
        err.to_string().contains("invalid user name or password"),
        "{err}"
    );
}

#[tokio::test]
async fn queries_metadata_and_get_schema() {
    let server = SluiceServer::start();
    let mut client = logged_in(&server, "u0001").await;
    let info = client
        .execute(
            "SELECT * FROM streams WHERE ts >= now() - INTERVAL '30 days'".into(),
            None,
        )
        .await
        .unwrap();
    assert!(rows(&mut client, info).await > 10);

    let info = client
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
        ])
        .await
        .unwrap();
    assert_eq!(rows(&mut client, info).await, 2);
    let info = client.get_sql_info(vec![]).await.unwrap();
    assert!(rows(&mut client, info).await > 20, "no ids: every info");

    let pk = CommandGetPrimaryKeys {
        catalog: None,
        db_schema: None,
        table: "artists".into(),
    };
    let info = client.get_primary_keys(pk).await.unwrap();
    assert_eq!(rows(&mut client, info).await, 1);
    let imported = CommandGetImportedKeys {
        catalog: None,
        db_schema: None,
        table: "tracks".into(),
    };
    let info = client.get_imported_keys(imported).await.unwrap();
    assert_eq!(rows(&mut client, info).await, 2);
    let cross = CommandGetCrossReference {
        pk_catalog: None,
        pk_db_schema: None,
        pk_table: "tracks".into(),
        fk_catalog: None,
        fk_db_schema: None,
        fk_table: "streams".into(),
    };
    let info = client.get_cross_reference(cross).await.unwrap();
    assert_eq!(rows(&mut client, info).await, 1);
    let info = client
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    assert!(rows(&mut client, info).await >= 7);

    // GetSchema of a statement, without running it.
    use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
    let cmd = CommandStatementQuery {
        query: "SELECT ts, ms_played FROM streams".into(),
        transaction_id: None,
    };
    let descriptor = FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
    let mut raw = client.inner().clone();
    let mut request = tonic::Request::new(descriptor);
    let token = client.token().expect("token").clone();
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let schema = raw.get_schema(request).await.unwrap().into_inner();
    let schema = arrow::datatypes::Schema::try_from(&schema).expect("schema bytes");
    let names: Vec<_> = schema.fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, vec!["ts", "ms_played"]);
}

#[tokio::test]
async fn cancel_flight_info_stops_a_planned_query() {
    let server = SluiceServer::start();
    let mut client = logged_in(&server, "analyst").await;
    let info = client
        .execute("SELECT count(*) FROM streams".into(), None)
        .await
        .unwrap();
    let request = CancelFlightInfoRequest::new(info.clone());
    let result: Vec<_> = client
        .do_action(Action::new("CancelFlightInfo", request.encode_to_vec()))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let result = arrow_flight::CancelFlightInfoResult::decode(result[0].body.clone()).unwrap();
    assert_eq!(result.status, arrow_flight::CancelStatus::Cancelled as i32);
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let err = match client.do_get(ticket).await {
        Err(e) => e.to_string(),
        Ok(stream) => stream
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err()
            .to_string(),
    };
    assert!(err.contains("unknown or expired query ticket"), "{err}");
}

#[tokio::test]
async fn session_options_round_trip() {
    let server = SluiceServer::start();
    let mut client = logged_in(&server, "u0002").await;
    // SET through SQL is visible to GetSessionOptions.
    client
        .execute_update("SET datafusion.execution.batch_size = 123".into(), None)
        .await
        .unwrap();
    let result: Vec<_> = client
        .do_action(Action::new("GetSessionOptions", Vec::<u8>::new()))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&result[0].body).to_string();
    assert!(
        text.contains("datafusion.execution.batch_size") && text.contains("123"),
        "{text}"
    );
    assert!(text.contains("sluice"), "catalog option: {text}");
}

/// Flight's `SetSessionOptionsRequest` / `Result`, as much of them as the test needs
/// (arrow-flight does not generate them).
mod set_session_options {
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Value {
        #[prost(string, optional, tag = "1")]
        pub(super) string_value: Option<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Request {
        #[prost(map = "string, message", tag = "1")]
        pub(super) session_options: HashMap<String, Value>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Error {
        #[prost(int32, tag = "1")]
        pub(super) value: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Result {
        #[prost(map = "string, message", tag = "1")]
        pub(super) errors: HashMap<String, Error>,
    }
}

#[tokio::test]
async fn set_session_options_tells_a_wrong_name_from_a_wrong_value() {
    use set_session_options::{Request, Result, Value};
    let server = SluiceServer::start();
    let mut client = logged_in(&server, "u0002").await;
    let options = [
        ("sluice.route", "raw"),
        ("sluice.freshness", "stale"),
        ("sluice.watermark", "0"),
        ("datafusion.catalog.information_schema", "true"),
        ("datafusion.execution.batch_size", "lots"),
        ("datafusion.execution.no_such_option", "1"),
    ];
    let request = Request {
        session_options: options
            .iter()
            .map(|(k, v)| {
                let value = Value {
                    string_value: Some(v.to_string()),
                };
                (k.to_string(), value)
            })
            .collect(),
    };
    let action = Action::new("SetSessionOptions", request.encode_to_vec());
    let result: Vec<_> = client
        .do_action(action)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let errors = Result::decode(&*result[0].body).unwrap().errors;
    let mut errors: Vec<(String, i32)> = errors.into_iter().map(|(k, e)| (k, e.value)).collect();
    errors.sort();
    // SetSessionOptionsResult.ErrorValue: 1 = INVALID_NAME, 2 = INVALID_VALUE.
    assert_eq!(
        errors,
        vec![
            ("datafusion.catalog.information_schema".to_string(), 1),
            ("datafusion.execution.batch_size".to_string(), 2),
            ("datafusion.execution.no_such_option".to_string(), 1),
            ("sluice.freshness".to_string(), 2),
            ("sluice.watermark".to_string(), 1),
        ]
    );
}
