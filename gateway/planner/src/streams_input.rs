//! A read of `streams` under an aggregate or a join, seen through the filters, projections
//! and aliases above its scan: its predicates and its output columns written in the scan's
//! own columns ([`streams_input`]). The rules that rewrite aggregates over `streams` start
//! from it.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::Column;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan, TableScan};
use datafusion::optimizer::push_down_filter::replace_cols_by_name;
use sluice_connector_api::EventSource;

use crate::streams::streams_branches;

pub(crate) const TS: &str = "ts";
pub(crate) const MS_PLAYED: &str = "ms_played";
/// Columns of `streams` that every rollup keeps (with its own keys).
pub(crate) const USER: &str = "user_id";

/// True if `e` reads no column but `user_id` and `track_uri` (what every rollup keeps).
pub(crate) fn only_keys(e: &Expr) -> bool {
    columns_of(e).iter().all(|c| c == USER || c == "track_uri")
}

/// The names of the columns `e` reads.
pub(crate) fn columns_of(e: &Expr) -> Vec<String> {
    let mut out = Vec::new();
    let _ = e.apply(|n| {
        if let Expr::Column(c) = n {
            out.push(c.name.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

/// The aggregate's input, read down to its scan of `streams`: the scan and every filter and
/// projection in between, with all expressions written in the scan's columns.
pub(crate) struct StreamsInput {
    pub(crate) scan: TableScan,
    pub(crate) cold: Arc<dyn EventSource>,
    pub(crate) hot: Arc<dyn EventSource>,
    /// Every filter on the way, in the scan's columns.
    pub(crate) predicates: Vec<Expr>,
    /// Maps a column of the aggregate's input (by flat name) to an expression of the scan.
    pub(crate) columns: HashMap<String, Expr>,
}

pub(crate) fn streams_input(plan: &LogicalPlan) -> Option<StreamsInput> {
    let mut chain = Vec::new();
    let mut node = plan;
    let (scan, (cold, hot)) = loop {
        match node {
            LogicalPlan::Filter(_) | LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) => {
                chain.push(node);
                node = node.inputs()[0];
            }
            LogicalPlan::TableScan(scan) => {
                let branches = streams_branches(scan)?;
                if scan.fetch.is_some() {
                    return None;
                }
                break (scan.clone(), branches);
            }
            _ => return None,
        }
    };
    let mut predicates = scan.filters.clone();
    let mut columns: HashMap<String, Expr> = HashMap::new();
    let resolve = |e: Expr, columns: &HashMap<String, Expr>| -> Option<Expr> {
        if columns.is_empty() {
            Some(e)
        } else {
            replace_cols_by_name(e, columns).ok()
        }
    };
    for node in chain.into_iter().rev() {
        match node {
            LogicalPlan::Filter(f) => {
                predicates.push(resolve(f.predicate.clone(), &columns)?);
            }
            LogicalPlan::Projection(p) => {
                let mut next = HashMap::new();
                for (e, (q, f)) in p.expr.iter().zip(p.schema.iter()) {
                    let resolved = resolve(e.clone().unalias(), &columns)?;
                    next.insert(Column::new(q.cloned(), f.name()).flat_name(), resolved);
                }
                columns = next;
            }
            LogicalPlan::SubqueryAlias(a) => {
                let mut next = HashMap::new();
                for (q, f) in a.input.schema().iter() {
                    let below = Column::new(q.cloned(), f.name());
                    let resolved = columns
                        .get(&below.flat_name())
                        .cloned()
                        .unwrap_or(Expr::Column(below));
                    next.insert(
                        Column::new(Some(a.alias.clone()), f.name()).flat_name(),
                        resolved,
                    );
                }
                columns = next;
            }
            _ => return None,
        }
    }
    Some(StreamsInput {
        scan,
        cold,
        hot,
        predicates,
        columns,
    })
}

/// True if `plan` reads one scan of `streams` (through filters, projections and aliases) and
/// returns only its key columns or expressions of them: what a rollup can also give.
pub(crate) fn streams_keys_only(plan: &LogicalPlan) -> bool {
    let Some(input) = streams_input(plan) else {
        return false;
    };
    plan.schema().columns().into_iter().all(|c| {
        let e = input
            .columns
            .get(&c.flat_name())
            .cloned()
            .unwrap_or(Expr::Column(c));
        only_keys(&e)
    })
}
