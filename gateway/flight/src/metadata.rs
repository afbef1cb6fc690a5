//! Answers to the Flight SQL metadata commands, built from the logical model with
//! arrow-flight's `metadata` builders where it has them, so the result schemas are the
//! reference ones.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow_flight::sql::metadata::{
    GetCatalogsBuilder, GetDbSchemasBuilder, GetTablesBuilder, SqlInfoData, SqlInfoDataBuilder,
    XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetTableTypes, CommandGetTables, Nullable,
    Searchable, SqlInfo, SqlNullOrdering, SqlSupportedCaseSensitivity, SqlSupportedTransaction,
    XdbcDataType,
};
use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray, UInt8Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sluice_catalog::{CATALOG, tables};
use sluice_planner::{ListedTable, listed_tables, sql_type_name};

use crate::error::{Error, Result};

fn arrow(e: impl std::fmt::Display) -> Error {
    Error::Encode(e.to_string())
}

/// The SqlInfo answers, built once.
pub(crate) static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Sluice");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, true);
    // Admins append events to `streams`; SQL stays read-only.
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    // Quoted identifiers keep their case and match exactly; the enum has no such value.
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityUnknown as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(SqlInfo::SqlMaxColumnsInTable, 0i64);
    b.append(SqlInfo::SqlMaxStatements, 1i64);
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    // What BI tools ask at connect (the JDBC driver's DatabaseMetaData: an id left out is a
    // NullPointerException in driver 18.x). Bitmasks have bit n for value n of the enum.
    b.append(SqlInfo::SqlSupportsConvert, convertible());
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    // GROUP BY columns beyond the SELECT list, and unrelated to it.
    b.append(SqlInfo::SqlSupportedGroupBy, 0b11i32);
    // Core grammar; ANSI-92 entry level; full outer joins (an enum value, not a bitmask).
    b.append(SqlInfo::SqlSupportedGrammar, 0b010i32);
    b.append(SqlInfo::SqlAnsi92SupportedLevel, 0b001i32);
    b.append(SqlInfo::SqlOuterJoinsSupportLevel, 2i32);
    b.append(SqlInfo::SqlSchemasSupportedActions, 0i32);
    b.append(SqlInfo::SqlCatalogsSupportedActions, 0i32);
    b.append(SqlInfo::SqlSupportedPositionedCommands, 0i32);
    // Subqueries in comparisons, EXISTS and IN (not quantified ANY/ALL); correlated ones too.
    b.append(SqlInfo::SqlSupportedSubqueries, 0b0111i32);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(SqlInfo::SqlSupportedUnions, 0b11i32);
    // No set limit (0), as JDBC means it.
    for max in [
        SqlInfo::SqlMaxBinaryLiteralLength,
        SqlInfo::SqlMaxCharLiteralLength,
        SqlInfo::SqlMaxColumnNameLength,
        SqlInfo::SqlMaxColumnsInGroupBy,
        SqlInfo::SqlMaxColumnsInIndex,
        SqlInfo::SqlMaxColumnsInOrderBy,
        SqlInfo::SqlMaxColumnsInSelect,
        SqlInfo::SqlMaxConnections,
        SqlInfo::SqlMaxCursorNameLength,
        SqlInfo::SqlMaxIndexLength,
        SqlInfo::SqlDbSchemaNameLength,
        SqlInfo::SqlMaxProcedureNameLength,
        SqlInfo::SqlMaxCatalogNameLength,
        SqlInfo::SqlMaxRowSize,
        SqlInfo::SqlMaxStatementLength,
        SqlInfo::SqlMaxTableNameLength,
        SqlInfo::SqlMaxTablesInSelect,
        SqlInfo::SqlMaxUsernameLength,
    ] {
        b.append(max, 0i64);
    }
    b.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, false);
    // No transactions: isolation "none", no levels.
    b.append(SqlInfo::SqlDefaultTransactionIsolation, 0i64);
    b.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0i32);
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, false);
    // Forward-only, read-only results.
    b.append(SqlInfo::SqlSupportedResultSetTypes, 0b0010i32);
    for concurrency in [
        SqlInfo::SqlSupportedConcurrenciesForResultSetUnspecified,
        SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly,
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollSensitive,
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollInsensitive,
    ] {
        b.append(concurrency, 0b010i32);
    }
    b.append(
        SqlInfo::SqlKeywords,
        &["EXPLAIN", "DESCRIBE", "SET"] as &[&str],
    );
    b.append(
        SqlInfo::SqlNumericFunctions,
        &[
            "abs", "ceil", "floor", "round", "power", "sqrt", "ln", "log10",
        ] as &[&str],
    );
    b.append(
        SqlInfo::SqlStringFunctions,
        &[
            "lower", "upper", "length", "substr", "concat", "trim", "replace",
        ] as &[&str],
    );
    b.append(
        SqlInfo::SqlDatetimeFunctions,
        &[
            "now",
            "date_trunc",
            "date_part",
            "extract",
            "to_timestamp",
            "date_bin",
        ] as &[&str],
    );
    b.build().expect("static SqlInfo is valid")
});

/// `SQL_SUPPORTS_CONVERT`: for each type (`SqlSupportsConvert`), those `CAST` turns it into.
fn convertible() -> std::collections::BTreeMap<i32, Vec<i32>> {
    use arrow_flight::sql::SqlSupportsConvert as C;
    let numbers = [
        C::SqlConvertBigint,
        C::SqlConvertDecimal,
        C::SqlConvertFloat,
        C::SqlConvertInteger,
        C::SqlConvertNumeric,
        C::SqlConvertReal,
        C::SqlConvertSmallint,
        C::SqlConvertTinyint,
    ];
    let texts = [
        C::SqlConvertChar,
        C::SqlConvertVarchar,
        C::SqlConvertLongvarchar,
    ];
    let ids = |types: &[C]| types.iter().map(|t| *t as i32).collect::<Vec<_>>();
    let mut map = std::collections::BTreeMap::new();
    let mut numbers_to = numbers.to_vec();
    numbers_to.extend(texts);
    numbers_to.push(C::SqlConvertBit);
    for n in numbers.iter().chain([&C::SqlConvertBit]) {
        map.insert(*n as i32, ids(&numbers_to));
    }
    let mut texts_to = numbers_to.clone();
    texts_to.extend([C::SqlConvertDate, C::SqlConvertTimestamp, C::SqlConvertTime]);
    for t in texts {
        map.insert(t as i32, ids(&texts_to));
    }
    let mut times_to = texts.to_vec();
    times_to.extend([C::SqlConvertDate, C::SqlConvertTimestamp]);
    map.insert(C::SqlConvertTimestamp as i32, ids(&times_to));
    map.insert(C::SqlConvertDate as i32, ids(&times_to));
    map
}

fn xdbc(
    type_name: &str,
    data_type: DataType,
    sql_type: XdbcDataType,
    literal: Option<&str>,
    searchable: Searchable,
    precision: Option<i32>,
) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: type_name.to_string(),
        data_type: sql_type,
        column_size: precision,
        literal_prefix: literal.map(str::to_string),
        literal_suffix: literal.map(str::to_string),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: data_type == DataType::Utf8,
        searchable,
        unsigned_attribute: Some(false),
        fixed_prec_scale: false,
        auto_increment: Some(false),
        local_type_name: Some(type_name.to_string()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: sql_type,
        datetime_subcode: None,
        num_prec_radix: None,
        interval_precision: None,
    }
}

/// The SQL types Sluice's tables and results use.
pub(crate) static XDBC_TYPES: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    let full = Searchable::Full;
    let basic = Searchable::Basic;
    let mut b = XdbcTypeInfoDataBuilder::new();
    for info in [
        xdbc(
            "BOOLEAN",
            DataType::Boolean,
            XdbcDataType::XdbcBit,
            None,
            basic,
            Some(1),
        ),
        xdbc(
            "INTEGER",
            DataType::Int32,
            XdbcDataType::XdbcInteger,
            None,
            basic,
            Some(10),
        ),
        xdbc(
            "BIGINT",
            DataType::Int64,
            XdbcDataType::XdbcBigint,
            None,
            basic,
            Some(19),
        ),
        xdbc(
            "DOUBLE",
            DataType::Float64,
            XdbcDataType::XdbcDouble,
            None,
            basic,
            Some(15),
        ),
        xdbc(
            "VARCHAR",
            DataType::Utf8,
            XdbcDataType::XdbcVarchar,
            Some("'"),
            full,
            None,
        ),
        xdbc(
            "DATE",
            DataType::Date32,
            XdbcDataType::XdbcDate,
            Some("'"),
            basic,
            None,
        ),
        xdbc(
            "TIMESTAMP",
            DataType::Null,
            XdbcDataType::XdbcTimestamp,
            Some("'"),
            basic,
            None,
        ),
    ] {
        b.append(info);
    }
    b.build().expect("static type info is valid")
});

pub(crate) fn catalogs(cmd: CommandGetCatalogs) -> Result<RecordBatch> {
    let mut b = cmd.into_builder();
    b.append(CATALOG);
    b.build().map_err(arrow)
}

pub(crate) fn catalogs_schema() -> SchemaRef {
    GetCatalogsBuilder::new().schema()
}

pub(crate) fn db_schemas(cmd: CommandGetDbSchemas) -> Result<RecordBatch> {
    let mut b = cmd.into_builder();
    let mut seen = Vec::new();
    for t in listed_tables() {
        if !seen.contains(&t.schema_name) {
            seen.push(t.schema_name);
            b.append(t.catalog, t.schema_name);
        }
    }
    b.build().map_err(arrow)
}

pub(crate) fn db_schemas_schema() -> SchemaRef {
    GetDbSchemasBuilder::new(None::<String>, None::<String>).schema()
}

/// A table's schema with the Flight SQL column metadata JDBC and ADBC read (remarks are the
/// column descriptions).
fn described_schema(t: &ListedTable) -> Schema {
    let fields: Vec<Field> = t
        .schema
        .fields()
        .iter()
        .zip(&t.column_descriptions)
        .map(|(f, description)| {
            let metadata = HashMap::from([
                (
                    "ARROW:FLIGHT:SQL:CATALOG_NAME".to_string(),
                    t.catalog.to_string(),
                ),
                (
                    "ARROW:FLIGHT:SQL:DB_SCHEMA_NAME".to_string(),
                    t.schema_name.to_string(),
                ),
                (
                    "ARROW:FLIGHT:SQL:TABLE_NAME".to_string(),
                    t.name.to_string(),
                ),
                (
                    "ARROW:FLIGHT:SQL:TYPE_NAME".to_string(),
                    sql_type_name(f.data_type()),
                ),
                (
                    "ARROW:FLIGHT:SQL:REMARKS".to_string(),
                    description.to_string(),
                ),
                ("ARROW:FLIGHT:SQL:IS_READ_ONLY".to_string(), "1".to_string()),
                (
                    "ARROW:FLIGHT:SQL:IS_SEARCHABLE".to_string(),
                    "1".to_string(),
                ),
                (
                    "ARROW:FLIGHT:SQL:IS_AUTO_INCREMENT".to_string(),
                    "0".to_string(),
                ),
                (
                    "ARROW:FLIGHT:SQL:IS_CASE_SENSITIVE".to_string(),
                    if f.data_type() == &DataType::Utf8 {
                        "1"
                    } else {
                        "0"
                    }
                    .to_string(),
                ),
            ]);
            f.as_ref().clone().with_metadata(metadata)
        })
        .collect();
    Schema::new_with_metadata(
        fields,
        HashMap::from([(
            "ARROW:FLIGHT:SQL:REMARKS".to_string(),
            t.description.to_string(),
        )]),
    )
}

pub(crate) fn tables_result(cmd: CommandGetTables) -> Result<RecordBatch> {
    let mut b: GetTablesBuilder = cmd.into_builder();
    for t in listed_tables() {
        b.append(
            t.catalog,
            t.schema_name,
            t.name,
            t.table_type,
            &described_schema(&t),
        )
        .map_err(arrow)?;
    }
    b.build().map_err(arrow)
}

pub(crate) fn tables_schema(include_schema: bool) -> SchemaRef {
    GetTablesBuilder::new(
        None::<String>,
        None::<String>,
        None::<String>,
        Vec::<String>::new(),
        include_schema,
    )
    .schema()
}

pub(crate) fn table_types(cmd: CommandGetTableTypes) -> Result<RecordBatch> {
    let mut b = cmd.into_builder();
    b.append("BASE TABLE");
    b.append("VIEW");
    b.build().map_err(arrow)
}

pub(crate) fn table_types_schema() -> SchemaRef {
    CommandGetTableTypes {}.into_builder().schema()
}

/// Whether a table reference from a metadata command (catalog and schema optional) names
/// `sluice.public.<table>`.
fn names_public(catalog: &Option<String>, schema: &Option<String>) -> bool {
    catalog.as_deref().is_none_or(|c| c == CATALOG)
        && schema
            .as_deref()
            .is_none_or(|s| s == sluice_catalog::SCHEMA)
}

pub(crate) fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

pub(crate) fn primary_keys(
    catalog: &Option<String>,
    schema: &Option<String>,
    table: &str,
) -> Result<RecordBatch> {
    let rows: Vec<(&str, &str, i32)> = if names_public(catalog, schema) {
        tables()
            .iter()
            .filter(|t| t.name == table)
            .flat_map(|t| {
                t.primary_key
                    .iter()
                    .enumerate()
                    .map(move |(i, c)| (t.name, *c, i as i32 + 1))
            })
            .collect()
    } else {
        vec![]
    };
    let n = rows.len();
    RecordBatch::try_new(
        primary_keys_schema(),
        vec![
            Arc::new(StringArray::from(vec![CATALOG; n])),
            Arc::new(StringArray::from(vec![sluice_catalog::SCHEMA; n])),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| format!("{}_pkey", r.0)),
            )),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .map_err(arrow)
}

pub(crate) fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// Which foreign keys to list.
pub(crate) enum KeyFilter<'a> {
    /// Keys of this (foreign) table: GetImportedKeys.
    Imported(&'a str),
    /// Keys referencing this (primary) table: GetExportedKeys.
    Exported(&'a str),
    /// Keys from the foreign table to the primary table: GetCrossReference.
    Cross { pk: &'a str, fk: &'a str },
}

pub(crate) fn foreign_keys(
    catalog: &Option<String>,
    schema: &Option<String>,
    filter: KeyFilter<'_>,
) -> Result<RecordBatch> {
    // (pk_table, pk_column, fk_table, fk_column)
    let mut rows: Vec<(&str, &str, &str, &str)> = Vec::new();
    if names_public(catalog, schema) {
        for t in tables() {
            for k in &t.foreign_keys {
                let keep = match filter {
                    KeyFilter::Imported(fk) => t.name == fk,
                    KeyFilter::Exported(pk) => k.references_table == pk,
                    KeyFilter::Cross { pk, fk } => t.name == fk && k.references_table == pk,
                };
                if keep {
                    rows.push((k.references_table, k.references_column, t.name, k.column));
                }
            }
        }
    }
    rows.sort();
    let n = rows.len();
    let constant = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v; n])) };
    let column = |values: Vec<String>| -> ArrayRef { Arc::new(StringArray::from(values)) };
    // UpdateDeleteRules::NoAction
    let no_action = || -> ArrayRef { Arc::new(UInt8Array::from(vec![3u8; n])) };
    RecordBatch::try_new(
        foreign_keys_schema(),
        vec![
            constant(CATALOG),
            constant(sluice_catalog::SCHEMA),
            column(rows.iter().map(|r| r.0.to_string()).collect()),
            column(rows.iter().map(|r| r.1.to_string()).collect()),
            constant(CATALOG),
            constant(sluice_catalog::SCHEMA),
            column(rows.iter().map(|r| r.2.to_string()).collect()),
            column(rows.iter().map(|r| r.3.to_string()).collect()),
            Arc::new(Int32Array::from(vec![1; n])),
            column(
                rows.iter()
                    .map(|r| format!("{}_{}_fkey", r.2, r.3))
                    .collect(),
            ),
            column(rows.iter().map(|r| format!("{}_pkey", r.0)).collect()),
            no_action(),
            no_action(),
        ],
    )
    .map_err(arrow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_carry_descriptions_as_remarks() {
        let t = listed_tables()
            .into_iter()
            .find(|t| t.name == "streams")
            .unwrap();
        let s = described_schema(&t);
        let ts = s.field_with_name("ts").unwrap();
        assert!(ts.metadata()["ARROW:FLIGHT:SQL:REMARKS"].contains("UTC"));
        assert_eq!(
            ts.metadata()["ARROW:FLIGHT:SQL:TYPE_NAME"],
            "TIMESTAMP WITH TIME ZONE"
        );
    }

    #[test]
    fn keys() {
        let pk = primary_keys(&None, &None, "tracks").unwrap();
        assert_eq!(pk.num_rows(), 1);
        let none = primary_keys(&Some("other".into()), &None, "tracks").unwrap();
        assert_eq!(none.num_rows(), 0);
        let imported = foreign_keys(&None, &None, KeyFilter::Imported("tracks")).unwrap();
        assert_eq!(imported.num_rows(), 2, "artist and album");
        let exported = foreign_keys(&None, &None, KeyFilter::Exported("artists")).unwrap();
        assert_eq!(
            exported.num_rows(),
            3,
            "from tracks, albums and plays_monthly_artist"
        );
        let cross = foreign_keys(
            &None,
            &None,
            KeyFilter::Cross {
                pk: "tracks",
                fk: "streams",
            },
        )
        .unwrap();
        assert_eq!(cross.num_rows(), 1);
    }

    #[test]
    fn static_infos_build() {
        assert!(SQL_INFO.record_batch([]).unwrap().num_rows() > 20);
        assert!(XDBC_TYPES.record_batch(None).unwrap().num_rows() >= 7);
    }
}
