//! `sluice.information_schema`: the tables and columns clients can query, with the
//! descriptions agents read to write SQL. Built once from the logical model.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{MemTable, MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::error::Result;
use sluice_catalog::{CATALOG, SCHEMA, TableDef};

/// Name of the schema.
pub(crate) const INFORMATION_SCHEMA: &str = "information_schema";

/// A table as metadata calls list it (GetTables, `information_schema.tables`).
#[derive(Debug, Clone)]
pub struct ListedTable {
    pub catalog: &'static str,
    pub schema_name: &'static str,
    pub name: &'static str,
    /// `BASE TABLE` or `VIEW`.
    pub table_type: &'static str,
    pub description: &'static str,
    pub schema: SchemaRef,
    /// One per field of `schema`.
    pub column_descriptions: Vec<&'static str>,
}

type Described = ListedTable;

fn tables_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table_catalog", DataType::Utf8, false),
        Field::new("table_schema", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("table_type", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
    ]))
}

fn columns_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table_catalog", DataType::Utf8, false),
        Field::new("table_schema", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("ordinal_position", DataType::UInt64, false),
        Field::new("data_type", DataType::Utf8, false),
        Field::new("is_nullable", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
    ]))
}

fn data_table(t: &TableDef) -> Described {
    Described {
        catalog: CATALOG,
        schema_name: SCHEMA,
        table_type: "BASE TABLE",
        name: t.name,
        description: t.description,
        schema: t.schema(),
        column_descriptions: t.columns.iter().map(|c| c.description).collect(),
    }
}

/// SQL spelling of an Arrow type, as clients expect in `data_type`.
pub fn sql_type_name(t: &DataType) -> String {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        other => other.to_string(),
    }
}

/// Every table clients can query: the data tables, then `information_schema`'s.
pub fn listed_tables() -> Vec<ListedTable> {
    let meta_tables = [
        Described {
            catalog: CATALOG,
            schema_name: INFORMATION_SCHEMA,
            table_type: "VIEW",
            name: "tables",
            description: "Every table clients can query, with what it holds.",
            schema: tables_schema(),
            column_descriptions: vec![
                "Catalog of the table.",
                "Schema of the table.",
                "Table name.",
                "BASE TABLE or VIEW.",
                "What the table holds.",
            ],
        },
        Described {
            catalog: CATALOG,
            schema_name: INFORMATION_SCHEMA,
            table_type: "VIEW",
            name: "columns",
            description: "Every column of every table, with its type and meaning.",
            schema: columns_schema(),
            column_descriptions: vec![
                "Catalog of the table.",
                "Schema of the table.",
                "Table name.",
                "Column name.",
                "1-based position in the table.",
                "SQL type.",
                "YES if the column may be NULL.",
                "What the column means.",
            ],
        },
    ];
    sluice_catalog::tables()
        .iter()
        .map(data_table)
        .chain(meta_tables)
        .collect()
}

/// The `information_schema` schema provider.
pub(crate) fn information_schema() -> Result<Arc<dyn SchemaProvider>> {
    let listed = listed_tables();
    let all: Vec<(&str, &str, &Described)> = listed
        .iter()
        .map(|d| (d.schema_name, d.table_type, d))
        .collect();

    let str_col = |f: &dyn Fn(&(&str, &str, &Described)) -> String| -> Arc<StringArray> {
        Arc::new(StringArray::from_iter_values(all.iter().map(f)))
    };
    let tables = RecordBatch::try_new(
        tables_schema(),
        vec![
            str_col(&|_| CATALOG.to_string()),
            str_col(&|t| t.0.to_string()),
            str_col(&|t| t.2.name.to_string()),
            str_col(&|t| t.1.to_string()),
            str_col(&|t| t.2.description.to_string()),
        ],
    )?;

    let mut rows: Vec<(&str, &str, String, u64, String, &str, &str)> = Vec::new();
    for (schema, _, d) in &all {
        for (i, f) in d.schema.fields().iter().enumerate() {
            rows.push((
                schema,
                d.name,
                f.name().clone(),
                i as u64 + 1,
                sql_type_name(f.data_type()),
                if f.is_nullable() { "YES" } else { "NO" },
                d.column_descriptions[i],
            ));
        }
    }
    let columns = RecordBatch::try_new(
        columns_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|_| CATALOG))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.2.as_str()),
            )),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.3))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.4.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.5))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.6))),
        ],
    )?;

    let provider = MemorySchemaProvider::new();
    for (name, batch) in [("tables", tables), ("columns", columns)] {
        let table: Arc<dyn TableProvider> =
            Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?);
        provider.register_table(name.to_string(), table)?;
    }
    Ok(Arc::new(provider))
}
