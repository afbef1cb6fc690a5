//! `ORDER BY ... LIMIT k` over the union of `streams`' branches: each branch returns only its
//! own first `k` rows, and the gateway sorts at most `k` rows per branch. The first `k` of a
//! union are among the first `k` of each of its inputs, so the answer is the same; a cold
//! branch in ClickHouse gets the sort and the limit in its SQL ("my first stream" moves one
//! row, not the listener's history).
//!
//! [`TopKSplitRule`] runs after [`super::streams_split`] made the union. It looks through
//! projections and aliases that only rename columns (above the union, and in each branch,
//! where the sort goes below them), and leaves a branch alone if it already has a sort
//! keeping `k` rows or fewer (so the rule applies once).

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, Result, plan_err};
use datafusion::logical_expr::{Expr, LogicalPlan, Sort, SortExpr, SubqueryAlias, Union};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::rewrite::rewrite_nodes;

/// Puts a copy of a top-k sort (a `Sort` with a fetch) on every input of the union below it.
#[derive(Debug, Default)]
pub(crate) struct TopKSplitRule;

/// `e` with each column of `schema` replaced by `below(i)`, `i` its position; `None` if a
/// column is not in `schema` or `below` has nothing for it.
fn by_position(e: &Expr, schema: &DFSchema, below: impl Fn(usize) -> Option<Expr>) -> Option<Expr> {
    e.clone()
        .transform(|n| {
            let Expr::Column(c) = &n else {
                return Ok(Transformed::no(n));
            };
            match below(schema.index_of_column(c)?) {
                Some(b) => Ok(Transformed::yes(b)),
                None => plan_err!("{c} is not a renamed column"),
            }
        })
        .ok()
        .map(|t| t.data)
}

/// `e` over `plan`'s output (a projection of columns, or an alias) written over its input.
fn through(e: &Expr, plan: &LogicalPlan) -> Option<Expr> {
    by_position(e, plan.schema(), |i| match plan {
        LogicalPlan::Projection(p) => Some(p.expr[i].clone().unalias_nested().data),
        LogicalPlan::SubqueryAlias(a) => Some(Expr::Column(Column::from(
            a.input.schema().qualified_field(i),
        ))),
        _ => None,
    })
}

/// `e` over the union's output, written over input `input` (same columns by position).
fn into_input(e: &Expr, union: &Union, input: &LogicalPlan) -> Option<Expr> {
    by_position(e, &union.schema, |i| {
        Some(Expr::Column(Column::from(
            input.schema().qualified_field(i),
        )))
    })
}

fn only_renames(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Projection(p) => p
            .expr
            .iter()
            .all(|e| matches!(e.clone().unalias_nested().data, Expr::Column(_))),
        LogicalPlan::SubqueryAlias(_) => true,
        _ => false,
    }
}

/// `input` with a sort keeping its first `k` rows by `keys` (written over `input`'s output),
/// placed below the projections that only rename (so the SQL sent for a remote branch is a
/// plain `SELECT ... ORDER BY ... LIMIT k`); `None` if it already keeps `k` rows or fewer.
fn with_top_k(
    input: &Arc<LogicalPlan>,
    keys: Vec<SortExpr>,
    k: usize,
) -> Result<Option<LogicalPlan>> {
    let below = match input.as_ref() {
        LogicalPlan::Sort(Sort { fetch: Some(n), .. }) if *n <= k => return Ok(None),
        LogicalPlan::Projection(p) if only_renames(input) => Some(&p.input),
        LogicalPlan::SubqueryAlias(a) => Some(&a.input),
        _ => None,
    };
    if let Some(below) = below {
        let mapped = keys
            .iter()
            .map(|s| through(&s.expr, input).map(|expr| SortExpr { expr, ..s.clone() }))
            .collect::<Option<Vec<_>>>();
        if let Some(mapped) = mapped {
            return match with_top_k(below, mapped, k)? {
                Some(sorted) => Ok(Some(
                    input.with_new_exprs(input.expressions(), vec![sorted])?,
                )),
                None => Ok(None),
            };
        }
    }
    let sorted = LogicalPlan::Sort(Sort {
        expr: keys,
        input: Arc::clone(input),
        fetch: Some(k),
    });
    // Under the name its columns already have: the SQL unparser writes a sort with a
    // projection above it as a derived table, which the projection's `streams.ts` must find.
    let qualifiers = input
        .schema()
        .iter()
        .map(|(q, _)| q.cloned())
        .collect::<HashSet<_>>();
    match qualifiers.into_iter().collect::<Vec<_>>().as_slice() {
        [Some(name)] => Ok(Some(LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(
            Arc::new(sorted),
            name.clone(),
        )?))),
        _ => Ok(Some(sorted)),
    }
}

impl TopKSplitRule {
    fn split(&self, sort: &Sort) -> Result<Option<LogicalPlan>> {
        let Some(k) = sort.fetch else {
            return Ok(None);
        };
        // Down to the union, with the sort keys rewritten at each step.
        let mut chain = Vec::new();
        let mut keys: Vec<Expr> = sort.expr.iter().map(|s| s.expr.clone()).collect();
        let mut node = sort.input.as_ref();
        let union = loop {
            match node {
                LogicalPlan::Union(u) => break u,
                n if only_renames(n) => {
                    let Some(k) = keys.iter().map(|e| through(e, n)).collect() else {
                        return Ok(None);
                    };
                    keys = k;
                    chain.push(n);
                    node = n.inputs()[0];
                }
                _ => return Ok(None),
            }
        };
        let mut changed = false;
        let mut inputs = Vec::with_capacity(union.inputs.len());
        for input in &union.inputs {
            let Some(expr) = sort
                .expr
                .iter()
                .zip(&keys)
                .map(|(s, key)| {
                    into_input(key, union, input).map(|expr| SortExpr { expr, ..s.clone() })
                })
                .collect::<Option<Vec<_>>>()
            else {
                return Ok(None);
            };
            match with_top_k(input, expr, k)? {
                Some(sorted) => {
                    changed = true;
                    inputs.push(Arc::new(sorted));
                }
                None => inputs.push(Arc::clone(input)),
            }
        }
        if !changed {
            return Ok(None);
        }
        let mut rebuilt = LogicalPlan::Union(Union {
            inputs,
            schema: Arc::clone(&union.schema),
        });
        for n in chain.into_iter().rev() {
            rebuilt = n.with_new_exprs(n.expressions(), vec![rebuilt])?;
        }
        Ok(Some(LogicalPlan::Sort(Sort {
            expr: sort.expr.clone(),
            input: Arc::new(rebuilt),
            fetch: sort.fetch,
        })))
    }
}

impl OptimizerRule for TopKSplitRule {
    fn name(&self) -> &str {
        "sluice_top_k_split"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        rewrite_nodes(plan, |node| match node {
            LogicalPlan::Sort(sort) => self.split(sort),
            _ => Ok(None),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::testing::logical;
    use crate::tests::{analyst, engine};

    #[tokio::test]
    async fn a_top_k_over_the_branches_is_copied_onto_each() {
        let plan = logical(
            &engine(),
            &analyst(),
            "SELECT track_uri, ts FROM streams ORDER BY ts LIMIT 2",
            "sluice_top_k_split",
        )
        .await;
        let top_k = |p: &str| {
            p.lines()
                .filter(|l| l.contains("Sort: ") && l.contains("fetch=2"))
                .count()
        };
        // The query's own, then one on each branch of the union.
        assert_eq!((top_k(&plan.before), top_k(&plan.after)), (1, 3), "{plan}");
    }
}
