//! The Flight SQL calls behind the tools, each made with the caller's credential: the
//! tables with their descriptions (GetTables with schemas), a table's keys (GetPrimaryKeys,
//! GetImportedKeys), a statement's rows up to the caps, with its manifest (the FlightInfo's
//! `app_metadata`), and EXPLAIN's route row.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::ipc::convert::try_schema_from_ipc_buffer;
use arrow_flight::FlightInfo;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetTables};
use bytes::Bytes;
use futures::TryStreamExt;
use serde::Serialize;
use sluice_catalog::TableKind;
use tonic::codegen::{Body, StdError};

use crate::capped::{CappedRows, read_capped};
use crate::error::{Error, Result};

/// A transport a Flight SQL client can call through: a tonic `Channel` to a running gateway,
/// or the gateway's own Flight service, called in-process.
pub trait FlightTransport:
    tonic::client::GrpcService<
        tonic::body::Body,
        Error: Into<StdError>,
        ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
        Future: Send,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> FlightTransport for T where
    T: tonic::client::GrpcService<
            tonic::body::Body,
            Error: Into<StdError>,
            ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
            Future: Send,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// The gateway the tools ask, through Flight SQL.
#[derive(Debug, Clone)]
pub struct Gateway<T> {
    client: FlightSqlServiceClient<T>,
}

/// A table as `list_tables` and `describe_table` show it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TableInfo {
    pub(crate) name: String,
    pub(crate) description: String,
    /// Rows belong to one listener each; a listener sees only its own.
    pub(crate) per_listener: bool,
    #[serde(skip)]
    pub(crate) columns: Vec<ColumnInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ColumnInfo {
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) type_name: String,
    pub(crate) nullable: bool,
    pub(crate) description: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ForeignKeyInfo {
    pub(crate) column: String,
    pub(crate) references: String,
}

/// A statement's answer within the caps, and how it was computed.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) rows: CappedRows,
    /// The manifest the gateway sent (`W`, route, sources, rollups, reads), if any.
    pub(crate) manifest: Option<serde_json::Value>,
}

const USER_AGENT: &str = concat!("sluice-mcp/", env!("CARGO_PKG_VERSION"));
const REMARKS: &str = "ARROW:FLIGHT:SQL:REMARKS";
const TYPE_NAME: &str = "ARROW:FLIGHT:SQL:TYPE_NAME";

impl<T: FlightTransport> Gateway<T> {
    /// The gateway reached through `transport`.
    pub fn new(transport: T) -> Self {
        let inner = arrow_flight::flight_service_client::FlightServiceClient::new(transport)
            .max_decoding_message_size(64 * 1024 * 1024);
        Self {
            client: FlightSqlServiceClient::new_from_inner(inner),
        }
    }

    /// A client sending `authorization` on every call, and `user-agent` saying the call is
    /// an MCP tool's (the audit record's `client`).
    fn as_caller(&self, authorization: &str) -> FlightSqlServiceClient<T> {
        let mut client = self.client.clone();
        client.set_header("authorization", authorization);
        client.set_header("user-agent", USER_AGENT);
        client
    }

    /// The tables the caller can query, with their columns.
    pub(crate) async fn tables(&self, authorization: &str) -> Result<Vec<TableInfo>> {
        let mut client = self.as_caller(authorization);
        let info = client
            .get_tables(CommandGetTables {
                catalog: None,
                db_schema_filter_pattern: None,
                table_name_filter_pattern: None,
                table_types: vec![],
                include_schema: true,
            })
            .await?;
        let batches = fetch_all(&mut client, info).await?;
        let mut tables = Vec::new();
        for batch in &batches {
            let names = string_column(batch, "table_name")?;
            let schemas = batch
                .column_by_name("table_schema")
                .ok_or_else(|| Error::Answer("GetTables without table_schema".into()))?
                .as_binary::<i32>();
            for row in 0..batch.num_rows() {
                let name = names.value(row).to_string();
                let schema = try_schema_from_ipc_buffer(schemas.value(row))?;
                tables.push(table_info(name, &schema));
            }
        }
        Ok(tables)
    }

    /// `table`'s primary key columns and foreign keys.
    pub(crate) async fn keys(
        &self,
        authorization: &str,
        table: &str,
    ) -> Result<(Vec<String>, Vec<ForeignKeyInfo>)> {
        let mut client = self.as_caller(authorization);
        let info = client
            .get_primary_keys(CommandGetPrimaryKeys {
                catalog: None,
                db_schema: None,
                table: table.to_string(),
            })
            .await?;
        let mut primary = Vec::new();
        for batch in fetch_all(&mut client, info).await? {
            let columns = string_column(&batch, "column_name")?;
            primary.extend((0..batch.num_rows()).map(|r| columns.value(r).to_string()));
        }
        let info = client
            .get_imported_keys(CommandGetImportedKeys {
                catalog: None,
                db_schema: None,
                table: table.to_string(),
            })
            .await?;
        let mut foreign = Vec::new();
        for batch in fetch_all(&mut client, info).await? {
            let fk = string_column(&batch, "fk_column_name")?;
            let pk_table = string_column(&batch, "pk_table_name")?;
            let pk = string_column(&batch, "pk_column_name")?;
            foreign.extend((0..batch.num_rows()).map(|r| ForeignKeyInfo {
                column: fk.value(r).to_string(),
                references: format!("{}.{}", pk_table.value(r), pk.value(r)),
            }));
        }
        Ok((primary, foreign))
    }

    /// `sql`'s first `rows` rows within `bytes` bytes, and its manifest. The rest of the
    /// result is never read: the stream is dropped, which stops the query in the gateway.
    pub(crate) async fn query(
        &self,
        authorization: &str,
        sql: &str,
        rows: usize,
        bytes: usize,
    ) -> Result<Answer> {
        let mut client = self.as_caller(authorization);
        let info = client.execute(sql.to_string(), None).await?;
        let manifest = serde_json::from_slice(&info.app_metadata).ok();
        let schema: SchemaRef = info.clone().try_decode_schema()?.into();
        let stream = do_get(&mut client, &info).await?;
        let rows = read_capped(schema, stream, rows, bytes).await?;
        Ok(Answer { rows, manifest })
    }

    /// The route `sql` would take, in words (EXPLAIN's `sluice_route` row).
    pub(crate) async fn explain(&self, authorization: &str, sql: &str) -> Result<String> {
        let mut client = self.as_caller(authorization);
        let info = client.execute(format!("EXPLAIN {sql}"), None).await?;
        let batches = fetch_all(&mut client, info).await?;
        for batch in &batches {
            let kinds = string_column(batch, "plan_type")?;
            let plans = string_column(batch, "plan")?;
            if let Some(row) = (0..batch.num_rows()).find(|&r| kinds.value(r) == "sluice_route") {
                return Ok(plans.value(row).to_string());
            }
        }
        Err(Error::Answer("EXPLAIN gave no sluice_route row".into()))
    }
}

async fn do_get<T: FlightTransport>(
    client: &mut FlightSqlServiceClient<T>,
    info: &FlightInfo,
) -> Result<FlightRecordBatchStream> {
    let ticket = info
        .endpoint
        .first()
        .and_then(|e| e.ticket.clone())
        .ok_or_else(|| Error::Answer("a FlightInfo without a ticket".into()))?;
    Ok(client.do_get(ticket).await?)
}

/// Every batch of a (small, metadata) result.
async fn fetch_all<T: FlightTransport>(
    client: &mut FlightSqlServiceClient<T>,
    info: FlightInfo,
) -> Result<Vec<RecordBatch>> {
    let stream = do_get(client, &info).await?;
    Ok(stream.try_collect::<Vec<_>>().await?)
}

fn string_column<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<std::borrow::Cow<'a, arrow::array::StringArray>> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| Error::Answer(format!("no column {name} in the gateway's answer")))?;
    match column.data_type() {
        DataType::Utf8 => Ok(std::borrow::Cow::Borrowed(column.as_string::<i32>())),
        _ => {
            let cast = arrow::compute::cast(column, &DataType::Utf8)?;
            Ok(std::borrow::Cow::Owned(cast.as_string::<i32>().clone()))
        }
    }
}

/// A table from its GetTables schema: descriptions are the Flight SQL remarks.
fn table_info(name: String, schema: &Schema) -> TableInfo {
    let per_listener = sluice_catalog::table(&name)
        .map(|t| t.kind == TableKind::UserKeyed)
        .unwrap_or(false);
    TableInfo {
        description: schema.metadata().get(REMARKS).cloned().unwrap_or_default(),
        per_listener,
        columns: schema
            .fields()
            .iter()
            .map(|f| ColumnInfo {
                name: f.name().clone(),
                type_name: f
                    .metadata()
                    .get(TYPE_NAME)
                    .cloned()
                    .unwrap_or_else(|| f.data_type().to_string()),
                nullable: f.is_nullable(),
                description: f.metadata().get(REMARKS).cloned().unwrap_or_default(),
            })
            .collect(),
        name,
    }
}
