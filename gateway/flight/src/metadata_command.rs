//! The metadata commands (catalogs, schemas, tables, keys, SqlInfo, type info) as one
//! table: each command's schema, for its FlightInfo and GetSchema, and its one batch, for
//! its DoGet. The service answers all of them through [`MetadataCommand`].

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::sql::{
    Command, CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas,
    CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo,
    CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo, ProstMessageExt,
};
use arrow_flight::{FlightDescriptor, FlightInfo};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use tonic::{Response, Status};

use crate::error::{Error, Result};
use crate::flight_info::flight_info;
use crate::metadata::{self, KeyFilter, SQL_INFO, XDBC_TYPES};
use crate::service::DoGetStream;

/// A Flight SQL metadata command.
pub(crate) enum MetadataCommand {
    Catalogs(CommandGetCatalogs),
    DbSchemas(CommandGetDbSchemas),
    Tables(CommandGetTables),
    TableTypes(CommandGetTableTypes),
    SqlInfo(CommandGetSqlInfo),
    PrimaryKeys(CommandGetPrimaryKeys),
    ExportedKeys(CommandGetExportedKeys),
    ImportedKeys(CommandGetImportedKeys),
    CrossReference(CommandGetCrossReference),
    XdbcTypeInfo(CommandGetXdbcTypeInfo),
}

impl MetadataCommand {
    /// The metadata command `command` is, if it is one.
    pub(crate) fn of(command: Command) -> Option<Self> {
        Some(match command {
            Command::CommandGetCatalogs(c) => Self::Catalogs(c),
            Command::CommandGetDbSchemas(c) => Self::DbSchemas(c),
            Command::CommandGetTables(c) => Self::Tables(c),
            Command::CommandGetTableTypes(c) => Self::TableTypes(c),
            Command::CommandGetSqlInfo(c) => Self::SqlInfo(c),
            Command::CommandGetPrimaryKeys(c) => Self::PrimaryKeys(c),
            Command::CommandGetExportedKeys(c) => Self::ExportedKeys(c),
            Command::CommandGetImportedKeys(c) => Self::ImportedKeys(c),
            Command::CommandGetCrossReference(c) => Self::CrossReference(c),
            Command::CommandGetXdbcTypeInfo(c) => Self::XdbcTypeInfo(c),
            _ => return None,
        })
    }

    /// The schema of the command's result.
    pub(crate) fn schema(&self) -> SchemaRef {
        match self {
            Self::Catalogs(_) => metadata::catalogs_schema(),
            Self::DbSchemas(_) => metadata::db_schemas_schema(),
            Self::Tables(c) => metadata::tables_schema(c.include_schema),
            Self::TableTypes(_) => metadata::table_types_schema(),
            Self::SqlInfo(_) => SQL_INFO.schema(),
            Self::PrimaryKeys(_) => metadata::primary_keys_schema(),
            Self::ExportedKeys(_) | Self::ImportedKeys(_) | Self::CrossReference(_) => {
                metadata::foreign_keys_schema()
            }
            Self::XdbcTypeInfo(_) => XDBC_TYPES.schema(),
        }
    }

    /// The command's FlightInfo: its ticket is the command itself.
    pub(crate) fn flight_info(self, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>> {
        let schema = self.schema();
        let ticket = match self {
            Self::Catalogs(c) => c.as_any(),
            Self::DbSchemas(c) => c.as_any(),
            Self::Tables(c) => c.as_any(),
            Self::TableTypes(c) => c.as_any(),
            Self::SqlInfo(c) => c.as_any(),
            Self::PrimaryKeys(c) => c.as_any(),
            Self::ExportedKeys(c) => c.as_any(),
            Self::ImportedKeys(c) => c.as_any(),
            Self::CrossReference(c) => c.as_any(),
            Self::XdbcTypeInfo(c) => c.as_any(),
        };
        Ok(Response::new(flight_info(&schema, ticket, descriptor)?))
    }

    /// The command's result, streamed as its one batch.
    pub(crate) fn answer(self) -> Result<Response<DoGetStream>> {
        let batch = self.batch()?;
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(batch.schema())
            .build(futures::stream::once(async move { Ok(batch) }))
            .map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
    }

    fn batch(self) -> Result<RecordBatch> {
        let encode = |e: arrow_flight::error::FlightError| Error::Encode(e.to_string());
        match self {
            Self::Catalogs(c) => metadata::catalogs(c),
            Self::DbSchemas(c) => metadata::db_schemas(c),
            Self::Tables(c) => metadata::tables_result(c),
            Self::TableTypes(c) => metadata::table_types(c),
            Self::SqlInfo(c) => SQL_INFO.record_batch(c.info).map_err(encode),
            Self::PrimaryKeys(c) => metadata::primary_keys(&c.catalog, &c.db_schema, &c.table),
            Self::ExportedKeys(c) => {
                metadata::foreign_keys(&c.catalog, &c.db_schema, KeyFilter::Exported(&c.table))
            }
            Self::ImportedKeys(c) => {
                metadata::foreign_keys(&c.catalog, &c.db_schema, KeyFilter::Imported(&c.table))
            }
            Self::CrossReference(c) => {
                // Both sides live in sluice.public; a reference elsewhere matches nothing.
                let same_place = c.pk_catalog == c.fk_catalog && c.pk_db_schema == c.fk_db_schema;
                let catalog = if same_place {
                    c.fk_catalog.clone()
                } else {
                    Some(String::new())
                };
                let filter = KeyFilter::Cross {
                    pk: &c.pk_table,
                    fk: &c.fk_table,
                };
                metadata::foreign_keys(&catalog, &c.fk_db_schema, filter)
            }
            Self::XdbcTypeInfo(c) => XDBC_TYPES.record_batch(c.data_type).map_err(encode),
        }
    }
}
