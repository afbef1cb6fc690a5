//! Which parts of a plan ClickHouse runs. datafusion-federation hands this rule each
//! largest subplan whose tables all live in ClickHouse; the rule sends the largest part of
//! it that ClickHouse answers *exactly as DataFusion would* as one SQL statement, and leaves
//! the rest to DataFusion. What it lets through is what [`crate::dialect`] writes correctly:
//! plain columns, literals, comparisons, boolean logic, arithmetic on numbers, the UTC date
//! functions, count/sum/min/max/avg, joins on columns, sort and limit. Anything else (window
//! functions, subquery expressions, casts to times, integer division, ...) stays in the
//! gateway, reading its inputs from ClickHouse.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams};
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{
    Aggregate, Distinct, Expr, ExprSchemable, Extension, Filter, JoinType, LogicalPlan, Operator,
    Projection, SubqueryAlias, col, lit, when,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion_federation::FederatedPlanNode;
use datafusion_federation::sql::SQLFederationPlanner;

use crate::dialect::{date_part_sql, date_trunc_sql, unit_literal};
use crate::executor::ClickHouseExecutor;
use crate::statement::StatementPlanner;

/// Wraps the parts of a ClickHouse-only plan that ClickHouse can run in federated nodes.
#[derive(Debug)]
pub(crate) struct ClickHousePushdownRule {
    /// datafusion-federation's planner, for the parts [`StatementPlanner`] leaves to it.
    pub(crate) planner: Arc<SQLFederationPlanner>,
    pub(crate) executor: ClickHouseExecutor,
    /// 18.16 runs one JOIN per SELECT: deeper joins are sent as nested subqueries.
    pub(crate) single_join_per_select: bool,
}

impl OptimizerRule for ClickHousePushdownRule {
    fn name(&self) -> &str {
        "clickhouse_pushdown"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        self.federate(plan)
    }
}

impl ClickHousePushdownRule {
    fn federate(&self, plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
        if let LogicalPlan::Extension(Extension { node }) = &plan
            && node.name() == "Federated"
        {
            return Ok(Transformed::no(plan));
        }
        if runs_in_clickhouse(&plan)? {
            let mut prepared = null_guard_aggregates(plan)?;
            if self.single_join_per_select {
                prepared = nest_joins(prepared)?;
            }
            // A planner per part: it keeps the part's SQL once written.
            let planner = StatementPlanner::new(self.executor.clone(), Arc::clone(&self.planner));
            let node = FederatedPlanNode::new(prepared, Arc::new(planner));
            return Ok(Transformed::yes(LogicalPlan::Extension(Extension {
                node: Arc::new(node),
            })));
        }
        let split = split_filter(plan)?;
        let transformed = split.transformed;
        let children = split.data.map_children(|child| {
            // A leaf ClickHouse cannot run (there is none today) stays as it is.
            if child.inputs().is_empty() && !matches!(child, LogicalPlan::TableScan(_)) {
                return Ok(Transformed::no(child));
            }
            self.federate(child)
        })?;
        Ok(if transformed {
            Transformed::yes(children.data)
        } else {
            children
        })
    }
}

/// A filter ClickHouse can run only part of, as that part under the rest: the part then
/// goes to ClickHouse with the filter's input. Otherwise a predicate ClickHouse cannot run
/// (`track_uri || 'x' = ...`) would keep the listener's `user_id` and the time range out of
/// the statement too, and ClickHouse would send every listener's rows.
fn split_filter(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Filter(filter) = plan else {
        return Ok(Transformed::no(plan));
    };
    let schema = Arc::clone(filter.input.schema());
    let (runs, stays): (Vec<Expr>, Vec<Expr>) = split_conjunction_owned(filter.predicate.clone())
        .into_iter()
        .partition(|e| expr_ok(e, &schema));
    match (conjunction(runs), conjunction(stays)) {
        (Some(runs), Some(stays)) => {
            let below = LogicalPlan::Filter(Filter::try_new(runs, filter.input)?);
            Ok(Transformed::yes(LogicalPlan::Filter(Filter::try_new(
                stays,
                Arc::new(below),
            )?)))
        }
        _ => Ok(Transformed::no(LogicalPlan::Filter(filter))),
    }
}

/// True if ClickHouse can run the whole of `plan` with DataFusion's semantics.
pub(crate) fn runs_in_clickhouse(plan: &LogicalPlan) -> Result<bool> {
    let mut ok = true;
    plan.apply(|node| {
        let fits = match node {
            // The remote tables take no filters (they stay as Filter nodes), and a fetch is
            // written as LIMIT. A scan is always sent: only ClickHouse can read its table.
            LogicalPlan::TableScan(_) => true,
            LogicalPlan::Projection(p) => exprs_ok(&p.expr, p.input.schema()),
            LogicalPlan::Filter(f) => {
                exprs_ok(std::slice::from_ref(&f.predicate), f.input.schema())
            }
            LogicalPlan::Aggregate(a) => aggregate_ok(a),
            LogicalPlan::Sort(s) => s.expr.iter().all(|e| expr_ok(&e.expr, s.input.schema())),
            LogicalPlan::Limit(l) => {
                matches!(
                    l.get_skip_type(),
                    Ok(datafusion::logical_expr::SkipType::Literal(_))
                ) && matches!(
                    l.get_fetch_type(),
                    Ok(datafusion::logical_expr::FetchType::Literal(_))
                )
            }
            LogicalPlan::Join(j) => {
                matches!(j.join_type, JoinType::Inner | JoinType::Left)
                    && j.on
                        .iter()
                        .all(|(l, r)| matches!(l, Expr::Column(_)) && matches!(r, Expr::Column(_)))
                    && j.filter.as_ref().is_none_or(|f| expr_ok(f, &j.schema))
            }
            LogicalPlan::SubqueryAlias(_) => true,
            LogicalPlan::Distinct(Distinct::All(_)) => true,
            _ => false,
        };
        if !fits {
            ok = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(ok)
}

fn aggregate_ok(a: &Aggregate) -> bool {
    let schema = a.input.schema();
    let grouping_sets = a
        .group_expr
        .iter()
        .any(|e| matches!(e, Expr::GroupingSet(_)));
    !grouping_sets
        && exprs_ok(&a.group_expr, schema)
        && a.aggr_expr.iter().all(|e| {
            let e = match e {
                Expr::Alias(alias) => alias.expr.as_ref(),
                e => e,
            };
            match e {
                Expr::AggregateFunction(AggregateFunction {
                    func,
                    params:
                        AggregateFunctionParams {
                            args,
                            distinct,
                            filter,
                            order_by,
                            null_treatment,
                        },
                }) => {
                    let name = func.name();
                    matches!(name, "count" | "sum" | "min" | "max" | "avg")
                        && (!*distinct || name == "count")
                        && filter.is_none()
                        && order_by.is_empty()
                        && null_treatment.is_none()
                        && exprs_ok(args, schema)
                }
                _ => false,
            }
        })
}

fn exprs_ok(exprs: &[Expr], schema: &DFSchema) -> bool {
    exprs.iter().all(|e| expr_ok(e, schema))
}

fn is_time(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(_, _)
            | DataType::Date32
            | DataType::Date64
            | DataType::Interval(_)
            | DataType::Duration(_)
            | DataType::Time32(_)
            | DataType::Time64(_)
    )
}

/// Literals the dialect writes faithfully.
fn literal_ok(v: &ScalarValue) -> bool {
    match v {
        ScalarValue::Null
        | ScalarValue::Boolean(_)
        | ScalarValue::Utf8(_)
        | ScalarValue::Utf8View(_)
        | ScalarValue::LargeUtf8(_)
        | ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::UInt64(_)
        | ScalarValue::Float32(_)
        | ScalarValue::Float64(_)
        | ScalarValue::Date32(_) => true,
        // Written as milliseconds; a finer literal could round.
        ScalarValue::TimestampMillisecond(_, Some(_))
        | ScalarValue::TimestampSecond(_, Some(_)) => true,
        _ => false,
    }
}

fn expr_ok(expr: &Expr, schema: &DFSchema) -> bool {
    let mut ok = true;
    let _ = expr.apply(|e| {
        let fits = match e {
            Expr::Column(_) | Expr::Alias(_) => true,
            Expr::Literal(v, _) => literal_ok(v),
            Expr::BinaryExpr(b) => match b.op {
                Operator::Eq
                | Operator::NotEq
                | Operator::Lt
                | Operator::LtEq
                | Operator::Gt
                | Operator::GtEq
                | Operator::And
                | Operator::Or => true,
                Operator::Plus | Operator::Minus | Operator::Multiply | Operator::Modulo => {
                    numeric(&b.left, schema) && numeric(&b.right, schema)
                }
                // ClickHouse's `/` is always floating point.
                Operator::Divide => float(&b.left, schema) && float(&b.right, schema),
                _ => false,
            },
            Expr::Not(_)
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::Between(_)
            | Expr::InList(_)
            | Expr::Case(_) => true,
            Expr::Negative(inner) => numeric(inner, schema),
            Expr::Like(l) => l.escape_char.is_none() && !l.case_insensitive,
            Expr::Cast(c) => cast_ok(&c.expr, c.field.data_type(), schema),
            Expr::ScalarFunction(f) => match (f.name(), f.args.as_slice()) {
                ("date_trunc", [unit, t]) => {
                    unit_literal(unit).is_some_and(|u| date_trunc_sql(&u, "x").is_some())
                        && millis(t, schema)
                }
                ("date_part", [field, t]) => {
                    unit_literal(field).is_some_and(|u| date_part_sql(&u, "x").is_some())
                        && millis(t, schema)
                }
                ("lower" | "upper", [_]) => true,
                _ => false,
            },
            _ => false,
        };
        if !fits {
            ok = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    ok
}

fn type_of(e: &Expr, schema: &DFSchema) -> Option<DataType> {
    e.get_type(schema).ok()
}

fn numeric(e: &Expr, schema: &DFSchema) -> bool {
    type_of(e, schema).is_some_and(|t| t.is_numeric())
}

fn float(e: &Expr, schema: &DFSchema) -> bool {
    type_of(e, schema).is_some_and(|t| t.is_floating())
}

/// A timestamp in milliseconds or seconds, which ClickHouse holds as milliseconds.
fn millis(e: &Expr, schema: &DFSchema) -> bool {
    matches!(
        type_of(e, schema),
        Some(DataType::Timestamp(
            TimeUnit::Millisecond | TimeUnit::Second,
            _
        ))
    )
}

/// Casts of numbers mean the same in both engines; casts to or from times do not (a time is
/// milliseconds in ClickHouse). Strings are not parsed in ClickHouse: it evaluates a
/// statement's WHERE over whole granules, other listeners' rows included, and its parse
/// error quotes the value; in the gateway the cast sees the listener's rows only.
fn cast_ok(input: &Expr, to: &DataType, schema: &DFSchema) -> bool {
    let Some(from) = type_of(input, schema) else {
        return false;
    };
    if from == *to {
        return true;
    }
    let integer = |t: &DataType| t.is_numeric() && !t.is_floating();
    !is_time(to)
        && integer(&from)
        && (integer(to) || to.is_floating() || matches!(to, DataType::Utf8))
}

/// ClickHouse's sum/min/max/avg over no rows (or only NULLs) give 0, the type's default or
/// NaN where SQL says NULL; 18.16 has no `-OrNull` combinator. Each is guarded with the
/// count of its argument: `CASE WHEN count(x) = 0 THEN NULL ELSE min(x) END`, written in the
/// projection over the aggregate (one SELECT), or in a new one where there is none.
pub(crate) fn null_guard_aggregates(plan: LogicalPlan) -> Result<LogicalPlan> {
    let guarded = plan
        .transform_down(|node| {
            let LogicalPlan::Projection(p) = &node else {
                return Ok(Transformed::no(node));
            };
            let LogicalPlan::Aggregate(agg) = p.input.as_ref() else {
                return Ok(Transformed::no(node));
            };
            let Some((inner, guards)) = guard(agg)? else {
                return Ok(Transformed::no(node));
            };
            let exprs = p
                .expr
                .iter()
                .zip(p.schema.iter())
                .map(|(e, (q, f))| {
                    let e = e
                        .clone()
                        .transform(|e| match e {
                            Expr::Column(c) => match guards.get(&c) {
                                Some(g) => Ok(Transformed::yes(g.clone())),
                                None => Ok(Transformed::no(Expr::Column(c))),
                            },
                            other => Ok(Transformed::no(other)),
                        })?
                        .data;
                    Ok(match e {
                        Expr::Alias(_) => e,
                        e => e.alias_qualified(q.cloned(), f.name()),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Transformed::yes(LogicalPlan::Projection(
                Projection::try_new(exprs, Arc::new(inner))?,
            )))
        })?
        .data;
    // Aggregates with no projection over them.
    guarded
        .transform_up(|node| {
            let LogicalPlan::Aggregate(agg) = &node else {
                return Ok(Transformed::no(node));
            };
            let Some((inner, guards)) = guard(agg)? else {
                return Ok(Transformed::no(node));
            };
            let exprs = node
                .schema()
                .iter()
                .map(|(q, f)| {
                    let c = Column::new(q.cloned(), f.name());
                    guards
                        .get(&c)
                        .cloned()
                        .unwrap_or(Expr::Column(c))
                        .alias_qualified(q.cloned(), f.name())
                })
                .collect::<Vec<_>>();
            Ok(Transformed::yes(LogicalPlan::Projection(
                Projection::try_new(exprs, Arc::new(inner))?,
            )))
        })
        .map(|t| t.data)
}

/// For an aggregate with sum/min/max/avg not yet guarded: the aggregate with the counts
/// added (`__sluice_nI`), and for each guarded output column the expression that replaces it.
fn guard(agg: &Aggregate) -> Result<Option<(LogicalPlan, HashMap<Column, Expr>)>> {
    let already = agg
        .aggr_expr
        .iter()
        .any(|e| matches!(e, Expr::Alias(a) if a.name.starts_with("__sluice_n")));
    if already {
        return Ok(None);
    }
    let schema = Arc::clone(&agg.schema);
    let n_groups = agg.group_expr.len();
    let mut counts = Vec::new();
    let mut guarded = Vec::new();
    for (i, e) in agg.aggr_expr.iter().enumerate() {
        let inner = match e {
            Expr::Alias(a) => a.expr.as_ref(),
            e => e,
        };
        if let Expr::AggregateFunction(f) = inner
            && matches!(f.func.name(), "sum" | "min" | "max" | "avg")
            && let [arg] = f.params.args.as_slice()
        {
            let name = format!("__sluice_n{i}");
            counts.push(datafusion::functions_aggregate::count::count(arg.clone()).alias(&name));
            guarded.push((n_groups + i, name));
        }
    }
    if counts.is_empty() {
        return Ok(None);
    }
    let mut aggr = agg.aggr_expr.clone();
    aggr.extend(counts);
    let inner = LogicalPlan::Aggregate(Aggregate::try_new(
        Arc::clone(&agg.input),
        agg.group_expr.clone(),
        aggr,
    )?);
    let mut guards = HashMap::new();
    for (index, count) in guarded {
        let (q, f) = schema.qualified_field(index);
        let value = Column::new(q.cloned(), f.name());
        let null = ScalarValue::try_from(f.data_type())?;
        let e = when(col(count).eq(lit(0i64)), lit(null)).otherwise(Expr::Column(value.clone()))?;
        guards.insert(value, e);
    }
    Ok(Some((inner, guards)))
}

fn contains_join(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply(|node| {
        found |= matches!(node, LogicalPlan::Join(_));
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

fn rename_columns(e: Expr, renamed: &HashMap<Column, Column>) -> Result<Transformed<Expr>> {
    e.transform(|e| match e {
        Expr::Column(c) => match renamed.get(&c) {
            Some(new) => Ok(Transformed::yes(Expr::Column(new.clone()))),
            None => Ok(Transformed::no(Expr::Column(c))),
        },
        other => Ok(Transformed::no(other)),
    })
}

/// `plan` as a derived table `__sluice_jN` whose columns have unique names
/// (`<qualifier>_<name>`), and how its columns were renamed.
fn derived_table(plan: LogicalPlan, n: usize) -> Result<(LogicalPlan, HashMap<Column, Column>)> {
    let alias = format!("__sluice_j{n}");
    let mut taken = std::collections::HashSet::new();
    let mut renamed = HashMap::new();
    let mut exprs = Vec::new();
    for (q, f) in plan.schema().iter() {
        let base = match q {
            Some(q) => format!("{}_{}", q.table(), f.name()),
            None => f.name().clone(),
        };
        let mut name = base.clone();
        let mut i = 1;
        while !taken.insert(name.clone()) {
            i += 1;
            name = format!("{base}_{i}");
        }
        let old = Column::new(q.cloned(), f.name());
        exprs.push(Expr::Column(old.clone()).alias(&name));
        renamed.insert(old, Column::new(Some(alias.as_str()), name));
    }
    let projection = LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(plan))?);
    let derived = LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(Arc::new(projection), alias)?);
    Ok((derived, renamed))
}

/// For servers that run one JOIN per SELECT (18.16): each input of a join that itself holds
/// a join becomes a derived table, so `a JOIN b JOIN c` is sent as
/// `(SELECT .. FROM a JOIN b) AS __sluice_j1 JOIN c`. Columns the rewrite renames are
/// renamed in the nodes that read them; the plan's output keeps its names.
pub(crate) fn nest_joins(plan: LogicalPlan) -> Result<LogicalPlan> {
    let original = Arc::clone(plan.schema());
    let mut tables = 0usize;
    let (nested, _) = nest(plan, &mut tables)?;
    if nested.schema().as_ref() == original.as_ref() {
        return Ok(nested);
    }
    let exprs = original
        .iter()
        .enumerate()
        .map(|(i, (q, f))| {
            let (nq, nf) = nested.schema().qualified_field(i);
            Expr::Column(Column::new(nq.cloned(), nf.name())).alias_qualified(q.cloned(), f.name())
        })
        .collect::<Vec<_>>();
    Ok(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::new(nested),
    )?))
}

/// `plan` with joins nested, and how its output columns were renamed.
fn nest(plan: LogicalPlan, tables: &mut usize) -> Result<(LogicalPlan, HashMap<Column, Column>)> {
    let before = Arc::clone(plan.schema());
    // What the inputs renamed is what this node must read under new names.
    let mut renamed = HashMap::new();
    let mut node = plan
        .map_children(|child| {
            let (child, names) = nest(child, tables)?;
            renamed.extend(names);
            Ok(Transformed::yes(child))
        })?
        .data;
    if let LogicalPlan::Join(mut join) = node {
        for side in [&mut join.left, &mut join.right] {
            if contains_join(side) {
                *tables += 1;
                let (derived, names) = derived_table(side.as_ref().clone(), *tables)?;
                *side = Arc::new(derived);
                renamed.extend(names);
            }
        }
        node = LogicalPlan::Join(join);
    }
    if !renamed.is_empty() {
        node = node
            .map_expressions(|e| rename_columns(e, &renamed))?
            .data
            .recompute_schema()?;
    }
    let mut out = HashMap::new();
    for (i, (q, f)) in before.iter().enumerate() {
        let (nq, nf) = node.schema().qualified_field(i);
        if q != nq || f.name() != nf.name() {
            out.insert(
                Column::new(q.cloned(), f.name()),
                Column::new(nq.cloned(), nf.name()),
            );
        }
    }
    Ok((node, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::catalog::MemTable;
    use datafusion::prelude::SessionContext;
    use datafusion::sql::unparser::Unparser;

    use crate::dialect::ClickHouseDialect;

    async fn plan(sql: &str) -> LogicalPlan {
        let ctx = SessionContext::new();
        let table = |cols: &[(&str, DataType)]| {
            let schema = Arc::new(Schema::new(
                cols.iter()
                    .map(|(n, t)| Field::new(*n, t.clone(), false))
                    .collect::<Vec<_>>(),
            ));
            Arc::new(MemTable::try_new(schema, vec![vec![]]).unwrap())
        };
        let ts = sluice_catalog::timestamp_type();
        ctx.register_table(
            "streams",
            table(&[
                ("user_id", DataType::Utf8),
                ("track_uri", DataType::Utf8),
                ("ts", ts),
                ("ms_played", DataType::Int64),
            ]),
        )
        .unwrap();
        ctx.register_table(
            "tracks",
            table(&[
                ("track_uri", DataType::Utf8),
                ("artist_uri", DataType::Utf8),
            ]),
        )
        .unwrap();
        ctx.register_table(
            "artists",
            table(&[("artist_uri", DataType::Utf8), ("genre", DataType::Utf8)]),
        )
        .unwrap();
        let df = ctx.sql(sql).await.unwrap();
        df.into_optimized_plan().unwrap()
    }

    fn unparse(plan: &LogicalPlan) -> String {
        Unparser::new(&ClickHouseDialect)
            .plan_to_sql(plan)
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn two_joins_become_a_derived_table_and_aggregates_are_guarded() {
        let p = plan(
            "SELECT a.genre, count(*) AS plays, sum(s.ms_played) AS played \
             FROM streams s JOIN tracks t ON s.track_uri = t.track_uri \
             JOIN artists a ON t.artist_uri = a.artist_uri \
             WHERE s.ts >= TIMESTAMP '2021-01-01T00:00:00Z' GROUP BY a.genre",
        )
        .await;
        assert!(runs_in_clickhouse(&p).unwrap());
        let schema = Arc::clone(p.schema());
        let prepared = nest_joins(null_guard_aggregates(p).unwrap()).unwrap();
        assert_eq!(prepared.schema(), &schema);
        let sql = unparse(&prepared);
        assert_eq!(sql.matches("JOIN").count(), 2, "{sql}");
        assert!(sql.contains("AS \"__sluice_j1\""), "{sql}");
        assert!(sql.contains("CASE WHEN"), "{sql}");
        assert!(sql.contains("1609459200000"), "{sql}");
    }

    #[tokio::test]
    async fn a_filter_clickhouse_runs_in_part_keeps_the_listener_below() {
        let p = plan(
            "SELECT track_uri FROM streams WHERE user_id = 'u0002' \
             AND track_uri || 'x' = 'y' AND CAST(track_uri AS INT) = 1 AND ms_played > 0",
        )
        .await;
        assert!(!runs_in_clickhouse(&p).unwrap());
        let LogicalPlan::Projection(projection) = p else {
            panic!("a projection on top: {p}");
        };
        let LogicalPlan::Filter(filter) = projection.input.as_ref().clone() else {
            panic!("a filter below the projection: {projection:?}");
        };
        let split = split_filter(LogicalPlan::Filter(filter)).unwrap();
        assert!(split.transformed);
        let LogicalPlan::Filter(above) = split.data else {
            panic!("a filter");
        };
        // The concatenation and the string's parse stay in the gateway...
        let stays = above.predicate.to_string();
        assert!(stays.contains("||") && stays.contains("CAST"), "{stays}");
        assert!(!stays.contains("u0002"), "{stays}");
        // ...over the part ClickHouse runs: the listener and the rest.
        assert!(runs_in_clickhouse(&above.input).unwrap());
        let sent = unparse(&above.input);
        assert!(
            sent.contains("'u0002'") && sent.contains("ms_played"),
            "{sent}"
        );
    }
}
