//! The tools and resources an agent sees, as rmcp's `ServerHandler`. Each tool call is made
//! with the caller's credential (the HTTP request's, or on stdio the environment's), so it is
//! that principal's: its scope, limits and audit.

use std::fmt;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Extensions, Implementation, ListResourcesResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::info;

use crate::capped::{Caps, Cut};
use crate::error::Error;
use crate::gateway::{Answer, FlightTransport, Gateway};
use crate::guide::{GUIDE, INSTRUCTIONS, page};

/// The credential of an HTTP request, left in its extensions once checked.
#[derive(Debug, Clone)]
pub(crate) struct Credential(pub(crate) String);

/// The MCP server: Sluice's tools over a [`Gateway`].
#[derive(Clone)]
pub struct SluiceTools<T> {
    gateway: Gateway<T>,
    caps: Caps,
    /// The credential of every call on stdio (HTTP calls carry their own).
    fixed_credential: Option<String>,
    tool_router: ToolRouter<Self>,
}

impl<T> fmt::Debug for SluiceTools<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SluiceTools")
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub(crate) struct TableArgs {
    /// The table's name, as list_tables gives it (e.g. "streams").
    table: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub(crate) struct QueryArgs {
    /// One SQL SELECT statement (DataFusion's dialect, PostgreSQL-like).
    sql: String,
    /// The most rows to return (default 200; the server's ceiling applies).
    max_rows: Option<u64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub(crate) struct ExplainArgs {
    /// The SQL statement whose route to describe; it is not run.
    sql: String,
}

/// The text a model sees for a failed call, and the error flag.
fn failed(e: &Error) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(e.to_string())])
}

fn answered(text: String, structured: Value) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(structured);
    result
}

#[tool_router]
impl<T: FlightTransport> SluiceTools<T> {
    /// The tools over `gateway`, capped by `caps`; `fixed_credential` is the `authorization`
    /// value of every call when the transport carries none (stdio).
    pub fn new(gateway: Gateway<T>, caps: Caps, fixed_credential: Option<String>) -> Self {
        Self {
            gateway,
            caps,
            fixed_credential,
            tool_router: Self::tool_router(),
        }
    }

    fn credential(&self, extensions: &Extensions) -> Result<String, Error> {
        extensions
            .get::<hyper::http::request::Parts>()
            .and_then(|p| p.extensions.get::<Credential>())
            .map(|c| c.0.clone())
            .or_else(|| self.fixed_credential.clone())
            .ok_or_else(|| Error::Arguments("no credential came with this call".into()))
    }

    #[tool(
        description = "List the tables you can query, with what each holds. Tables marked \
                       per_listener hold one listener's rows each; as a listener's agent you \
                       see only that listener's. Call this first, then describe_table."
    )]
    async fn list_tables(&self, extensions: Extensions) -> CallToolResult {
        let run = async {
            let auth = self.credential(&extensions)?;
            let tables = self.gateway.tables(&auth).await?;
            let text = tables
                .iter()
                .map(|t| {
                    let scope = if t.per_listener {
                        " [per listener]"
                    } else {
                        ""
                    };
                    format!("{}{scope}: {}", t.name, t.description)
                })
                .collect::<Vec<_>>()
                .join("\n");
            Ok::<_, Error>(answered(text, json!({ "tables": tables })))
        };
        let result = run.await.unwrap_or_else(|e| failed(&e));
        info!(tool = "list_tables", error = ?result.is_error, "mcp tool call");
        result
    }

    #[tool(
        description = "Describe one table: its columns with types and descriptions, its keys \
                       (how it joins other tables), and a few example rows you may see."
    )]
    async fn describe_table(
        &self,
        Parameters(args): Parameters<TableArgs>,
        extensions: Extensions,
    ) -> CallToolResult {
        let run = async {
            let auth = self.credential(&extensions)?;
            let tables = self.gateway.tables(&auth).await?;
            let Some(table) = tables.iter().find(|t| t.name == args.table) else {
                return Err(Error::UnknownTable {
                    table: args.table.clone(),
                    known: tables
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            let (primary, foreign) = self.gateway.keys(&auth, &table.name).await?;
            let examples = self
                .gateway
                .query(
                    &auth,
                    &format!("SELECT * FROM \"{}\" LIMIT 3", table.name),
                    3,
                    self.caps.max_bytes,
                )
                .await?;
            let mut text = format!("{}: {}\ncolumns:", table.name, table.description);
            for c in &table.columns {
                let null = if c.nullable { ", nullable" } else { "" };
                text.push_str(&format!(
                    "\n  {} ({}{null}): {}",
                    c.name, c.type_name, c.description
                ));
            }
            if !primary.is_empty() {
                text.push_str(&format!("\nprimary key: {}", primary.join(", ")));
            }
            for fk in &foreign {
                text.push_str(&format!("\n{} references {}", fk.column, fk.references));
            }
            text.push_str(&format!("\nexample rows:\n{}", examples.rows.text_table()));
            Ok(answered(
                text,
                json!({
                    "table": table,
                    "columns": table.columns,
                    "primary_key": primary,
                    "foreign_keys": foreign,
                    "example_rows": examples.rows.rows,
                }),
            ))
        };
        let result = run.await.unwrap_or_else(|e| failed(&e));
        info!(tool = "describe_table", table = %args.table, error = ?result.is_error, "mcp tool call");
        result
    }

    #[tool(
        description = "Run one SQL SELECT and get its rows (as a text table and as JSON), \
                       capped at max_rows (default 200) and about 64 KiB: 'truncated' says \
                       when rows were left out, so aggregate or add LIMIT rather than page \
                       through raw rows. Times are UTC; streams.ts is when a play started. \
                       The manifest says as of when the answer is (watermark), which \
                       sources and rollups answered it, and its freshness."
    )]
    async fn query(
        &self,
        Parameters(args): Parameters<QueryArgs>,
        extensions: Extensions,
    ) -> CallToolResult {
        let asked = args
            .max_rows
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let rows = asked
            .unwrap_or(self.caps.default_rows)
            .min(self.caps.max_rows);
        let run = async {
            let auth = self.credential(&extensions)?;
            let answer = self
                .gateway
                .query(&auth, &args.sql, rows, self.caps.max_bytes)
                .await?;
            Ok::<_, Error>(query_result(&answer, asked, rows, self.caps))
        };
        let result = run.await.unwrap_or_else(|e| failed(&e));
        info!(tool = "query", max_rows = rows, error = ?result.is_error, "mcp tool call");
        result
    }

    #[tool(
        description = "Say, in words, how Sluice would answer a SQL statement without running \
                       it: as of which watermark, which sources (recent events, long-range \
                       history) and which rollups it reads, for which time ranges."
    )]
    async fn explain(
        &self,
        Parameters(args): Parameters<ExplainArgs>,
        extensions: Extensions,
    ) -> CallToolResult {
        let run = async {
            let auth = self.credential(&extensions)?;
            let route = self.gateway.explain(&auth, &args.sql).await?;
            Ok::<_, Error>(answered(route.clone(), json!({ "route": route })))
        };
        let result = run.await.unwrap_or_else(|e| failed(&e));
        info!(tool = "explain", error = ?result.is_error, "mcp tool call");
        result
    }
}

/// `query`'s result: the rows, whether and why they were cut, and the manifest.
fn query_result(answer: &Answer, asked: Option<usize>, rows: usize, caps: Caps) -> CallToolResult {
    let capped = &answer.rows;
    let truncated = match capped.cut {
        None => None,
        Some(Cut::Rows(n)) => Some(format!(
            "truncated: more rows than the {n} returned; aggregate, filter or add LIMIT (or \
             ask for up to max_rows = {})",
            caps.max_rows
        )),
        Some(Cut::Bytes(n)) => Some(format!(
            "truncated: the rows passed {n} bytes after {} rows; select fewer columns or \
             aggregate",
            capped.rows.len()
        )),
    };
    let clamped = asked
        .filter(|&a| a > rows)
        .map(|a| format!("max_rows {a} is above this server's ceiling; returned at most {rows}"));
    let manifest = answer.manifest.as_ref().map(summary);
    let mut text = capped.text_table();
    text.push_str(&format!("\n({} rows)", capped.rows.len()));
    for line in [&truncated, &clamped].into_iter().flatten() {
        text.push('\n');
        text.push_str(line);
    }
    if let Some(m) = &manifest {
        text.push_str(&format!("\n{}", m["text"].as_str().unwrap_or_default()));
    }
    let columns: Vec<Value> = capped
        .schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    answered(
        text,
        json!({
            "columns": columns,
            "rows": capped.rows,
            "row_count": capped.rows.len(),
            "truncated": capped.cut.is_some(),
            "truncated_reason": truncated,
            "max_rows_note": clamped,
            "manifest": manifest,
        }),
    )
}

/// The manifest's parts an agent needs, and a sentence of them.
fn summary(m: &Value) -> Value {
    let list = |key: &str| -> Vec<String> {
        m[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let watermark = m["watermark"].as_str().unwrap_or_default().to_string();
    let freshness = m["freshness"].as_str().unwrap_or_default().to_string();
    let sources = list("sources");
    let rollups = list("rollups");
    let text = format!(
        "as of W = {watermark} (freshness {freshness}); sources: {}; rollups: {}",
        if sources.is_empty() {
            "none".to_string()
        } else {
            sources.join(", ")
        },
        if rollups.is_empty() {
            "none".to_string()
        } else {
            rollups.join(", ")
        },
    );
    json!({
        "watermark": watermark,
        "freshness": freshness,
        "route": m["route"],
        "sources": sources,
        "rollups": rollups,
        "reads": m["reads"],
        "text": text,
    })
}

#[tool_handler(router = self.tool_router)]
impl<T: FlightTransport> ServerHandler for SluiceTools<T> {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("sluice", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(
            GUIDE
                .iter()
                .map(|p| {
                    Resource::new(p.uri, p.name)
                        .with_description(p.description)
                        .with_mime_type("text/markdown")
                })
                .collect(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        match page(&request.uri) {
            Some(p) => {
                Ok(ReadResourceResult::new(vec![ResourceContents::text(p.text, p.uri)]).into())
            }
            None => Err(ErrorData::resource_not_found(
                format!(
                    "no resource {}; there are: {}",
                    request.uri,
                    GUIDE.iter().map(|p| p.uri).collect::<Vec<_>>().join(", ")
                ),
                None,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_summary_says_as_of_when_and_from_where() {
        let m = json!({
            "watermark_ms": 0, "watermark": "2026-12-01T00:00:00Z", "route": "auto",
            "freshness": "live", "sources": ["clickhouse", "redis"],
            "rollups": ["plays_daily"], "reads": [], "rollups_passed_over": []
        });
        let s = summary(&m);
        assert_eq!(
            s["text"],
            "as of W = 2026-12-01T00:00:00Z (freshness live); sources: clickhouse, redis; \
             rollups: plays_daily"
        );
    }

    #[test]
    fn every_guide_page_is_found_by_its_uri() {
        for p in GUIDE {
            assert_eq!(page(p.uri).map(|f| f.name), Some(p.name));
            assert!(p.text.starts_with("# "));
        }
        assert!(page("sluice://guide/nothing").is_none());
    }
}
