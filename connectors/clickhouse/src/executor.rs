//! datafusion-federation's `SQLExecutor` for ClickHouse: runs the SQL unparsed from a
//! federated subplan and streams its rows back as Arrow.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::{Result, exec_err};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::optimizer::optimizer::Optimizer;
use datafusion::physical_plan::PhysicalExpr;
use datafusion::sql::unparser::dialect::Dialect;
use datafusion_federation::sql::{
    AstAnalyzer, SQLExecutor, SQLFederationPlanner, SQLFederationProvider,
};
use tracing::debug;

use crate::arrow::arrow_type;
use crate::client::ClickHouseClient;
use crate::cluster::Shards;
use crate::dialect::ClickHouseDialect;
use crate::pushdown::ClickHousePushdownRule;

/// Runs federated SQL on one ClickHouse database: on the server `url` names, or on a
/// cluster, a listener's statement on that listener's shard ([`Shards::route`]).
#[derive(Debug, Clone)]
pub struct ClickHouseExecutor {
    client: ClickHouseClient,
    shards: Option<Arc<Shards>>,
    context: String,
}

impl ClickHouseExecutor {
    pub(crate) fn new(client: ClickHouseClient, shards: Option<Arc<Shards>>) -> Self {
        let context = format!("clickhouse {}", client.endpoint());
        Self {
            client,
            shards,
            context,
        }
    }

    /// The federation provider every ClickHouse table of this database shares: its
    /// optimizer decides what ClickHouse runs ([`ClickHousePushdownRule`]).
    pub fn federation_provider(self) -> Arc<SQLFederationProvider> {
        let single_join_per_select = self.client.version().single_join_per_select();
        let rule = ClickHousePushdownRule {
            planner: Arc::new(SQLFederationPlanner::new(Arc::new(self.clone()))),
            executor: self.clone(),
            single_join_per_select,
        };
        Arc::new(SQLFederationProvider {
            optimizer: Arc::new(Optimizer::with_rules(vec![Arc::new(rule)])),
            executor: Arc::new(self),
        })
    }
}

#[async_trait]
impl SQLExecutor for ClickHouseExecutor {
    fn name(&self) -> &str {
        "clickhouse"
    }

    fn compute_context(&self) -> Option<String> {
        Some(self.context.clone())
    }

    fn dialect(&self) -> Arc<dyn Dialect> {
        Arc::new(ClickHouseDialect)
    }

    fn ast_analyzer(&self) -> Option<AstAnalyzer> {
        Some(Box::new(|mut statement| {
            crate::rewrite::rewrite(&mut statement);
            Ok(statement)
        }))
    }

    fn execute(
        &self,
        query: &str,
        schema: SchemaRef,
        _filters: &[Arc<dyn PhysicalExpr>],
    ) -> Result<SendableRecordBatchStream> {
        if let Some(shards) = &self.shards
            && let Some((shard, statement)) = shards.route(query)
        {
            let client = &shards.clients()[shard];
            debug!(user_id = %statement.user_id, shard = shard + 1, endpoint = client.endpoint(),
                "a listener's statement, sent to its shard");
            return Ok(client.query_arrow(statement.sql, schema));
        }
        Ok(self.client.query_arrow(query.to_string(), schema))
    }

    async fn table_names(&self) -> Result<Vec<String>> {
        let text = self
            .client
            .text(
                "SELECT name FROM system.tables WHERE database = currentDatabase()",
                "list tables",
            )
            .await?;
        Ok(text.lines().map(str::to_string).collect())
    }

    async fn get_table_schema(&self, table_name: &str) -> Result<SchemaRef> {
        let escaped = table_name.trim_matches('"').replace('\'', "\\'");
        let text = self
            .client
            .text(
                &format!(
                    "SELECT name, type FROM system.columns \
                     WHERE database = currentDatabase() AND table = '{escaped}'"
                ),
                "describe table",
            )
            .await?;
        let mut fields = Vec::new();
        for line in text.lines() {
            let Some((name, ty)) = line.split_once('\t') else {
                continue;
            };
            let parsed = clickhouse::native::DataTypeNode::new(ty).ok();
            let Some((dt, nullable)) = parsed.as_ref().and_then(arrow_type) else {
                return exec_err!(
                    "ClickHouse at {}: column {name:?} of {table_name} has type {ty}, which Sluice cannot map to Arrow",
                    self.client.endpoint()
                );
            };
            fields.push(Field::new(name, dt, nullable));
        }
        if fields.is_empty() {
            return exec_err!(
                "ClickHouse at {}: no table {table_name}",
                self.client.endpoint()
            );
        }
        Ok(Arc::new(Schema::new(fields)))
    }
}
