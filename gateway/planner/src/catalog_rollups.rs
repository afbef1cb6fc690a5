//! Aggregates over `streams` joined with the catalog ("plays per genre in 2019", "my top
//! artist this year") answered from a rollup kept by catalog attributes
//! (`plays_monthly_genre`, `plays_monthly_artist`) for the whole months of their range, and
//! from the raw events, joined as the query joins them, for the days at its edges and after
//! `W`. One final merge combines the pieces, as in [`crate::rollups`].
//!
//! [`CatalogRollupRule`] takes an aggregate whose input is one read of `streams` and reads of
//! catalog tables, combined by inner joins on exactly the catalog's foreign keys the rollup
//! was built with (`streams.track_uri = tracks.track_uri`, `tracks.artist_uri =
//! artists.artist_uri`), through filters, projections and aliases. The rollup is used only
//! where it gives the same answer: the joins are the rollup's own (an event whose track is
//! missing from the catalog is in neither), every grouping key and filter names a column the
//! rollup keeps (`ts` only through functions constant over a month), the time filters are
//! plain ranges, and the measures are ones it keeps (`count(*)`, `sum(ms_played)`,
//! `count(DISTINCT user_id)`, min/max of its keys). Anything else is left to the other rules.

use std::collections::HashMap;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result, TableReference};
use datafusion::functions_aggregate::expr_fn::{max, min};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Aggregate, Expr, JoinType, LogicalPlan, TableScan, TableScanBuilder,
};
use datafusion::optimizer::push_down_filter::replace_cols_by_name;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use sluice_catalog::{RollupDef, STREAMS, TableKind};
use sluice_connector_api::{EventFilter, TimeRange};

use crate::rewrite::rewrite_nodes;
use crate::rollups::{
    AvailableRollup, Measure, Part, RollupChoice, exact_time_bound, keys_qualifier, merge_pieces,
    missing_measure, partial_aggregate, period_misfit, range_filter, rollup_measure, rollup_piece,
    streams_input, whole_periods,
};
use crate::settings::RouteMode;
use crate::streams::{QueryScope, QueryScopeOption, Route, RouteBranch, streams_branches};

const TS: &str = "ts";

/// Reads aggregates over `streams` joined with the catalog from rollups by catalog keys.
#[derive(Debug)]
pub(crate) struct CatalogRollupRule {
    /// The rollups built through joins with the catalog, fewest rows first.
    rollups: Vec<AvailableRollup>,
}

impl CatalogRollupRule {
    pub(crate) fn new(rollups: Vec<AvailableRollup>) -> Self {
        Self { rollups }
    }
}

/// The aggregate's input read down to its tables, every expression written in the columns of
/// those tables (qualified by the table's own name: `streams.ts`, `artists.genre`).
#[derive(Debug, Default)]
struct JoinedInput {
    /// Every filter on the way, and the joins' non-equality conditions.
    predicates: Vec<Expr>,
    /// The joins' equalities, as pairs of columns.
    equalities: Vec<(Column, Column)>,
    /// Catalog tables read, in the order met.
    catalog: Vec<String>,
    /// Reads of `streams` met.
    streams: usize,
}

fn base_column(table: &str, name: &str) -> Expr {
    Expr::Column(Column::new(Some(TableReference::bare(table)), name))
}

/// `e` with every column renamed into the table `table`'s own name.
fn requalify(e: Expr, table: &str) -> Result<Expr> {
    e.transform(|n| match n {
        Expr::Column(c) => Ok(Transformed::yes(base_column(table, &c.name))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

fn resolve(e: &Expr, columns: &HashMap<String, Expr>) -> Option<Expr> {
    replace_cols_by_name(e.clone().unalias(), columns).ok()
}

/// Reads `plan` into `out`, returning its output columns as expressions of the tables' own.
fn read_input(plan: &LogicalPlan, out: &mut JoinedInput) -> Option<HashMap<String, Expr>> {
    if let Some(input) = streams_input(plan) {
        out.streams += 1;
        for p in input.predicates {
            out.predicates.push(requalify(p, STREAMS).ok()?);
        }
        let mut columns = HashMap::new();
        for c in plan.schema().columns() {
            let e = input
                .columns
                .get(&c.flat_name())
                .cloned()
                .unwrap_or_else(|| Expr::Column(c.clone()));
            columns.insert(c.flat_name(), requalify(e, STREAMS).ok()?);
        }
        return Some(columns);
    }
    match plan {
        LogicalPlan::TableScan(scan) => {
            let name = scan.table_name.table();
            let def = sluice_catalog::table(name)?;
            if def.kind != TableKind::Entity || scan.fetch.is_some() {
                return None;
            }
            out.catalog.push(name.to_string());
            for f in &scan.filters {
                out.predicates.push(requalify(f.clone(), name).ok()?);
            }
            Some(
                scan.projected_schema
                    .columns()
                    .into_iter()
                    .map(|c| {
                        let e = base_column(name, &c.name);
                        (c.flat_name(), e)
                    })
                    .collect(),
            )
        }
        LogicalPlan::SubqueryAlias(a) => {
            let below = read_input(&a.input, out)?;
            Some(
                a.input
                    .schema()
                    .iter()
                    .filter_map(|(q, f)| {
                        let e = below.get(&Column::new(q.cloned(), f.name()).flat_name())?;
                        let name = Column::new(Some(a.alias.clone()), f.name()).flat_name();
                        Some((name, e.clone()))
                    })
                    .collect(),
            )
        }
        LogicalPlan::Projection(p) => {
            let below = read_input(&p.input, out)?;
            p.expr
                .iter()
                .zip(p.schema.iter())
                .map(|(e, (q, f))| {
                    let name = Column::new(q.cloned(), f.name()).flat_name();
                    Some((name, resolve(e, &below)?))
                })
                .collect()
        }
        LogicalPlan::Filter(f) => {
            let below = read_input(&f.input, out)?;
            out.predicates.push(resolve(&f.predicate, &below)?);
            Some(below)
        }
        LogicalPlan::Join(j) if j.join_type == JoinType::Inner => {
            let mut columns = read_input(&j.left, out)?;
            columns.extend(read_input(&j.right, out)?);
            for (l, r) in &j.on {
                match (resolve(l, &columns)?, resolve(r, &columns)?) {
                    (Expr::Column(l), Expr::Column(r)) => out.equalities.push((l, r)),
                    (l, r) => out.predicates.push(l.eq(r)),
                }
            }
            if let Some(f) = &j.filter {
                out.predicates.push(resolve(f, &columns)?);
            }
            Some(columns)
        }
        _ => None,
    }
}

/// The joins a rollup was built with: for each catalog table it joins, the equality of the
/// foreign key that reaches it from `streams` or an earlier table.
fn rollup_joins(def: &RollupDef) -> Vec<(Column, Column)> {
    let mut out = Vec::new();
    for (i, to) in def.joins.iter().enumerate() {
        let from_tables = std::iter::once(STREAMS).chain(def.joins[..i].iter().copied());
        for from in from_tables {
            let Some(fk) = sluice_catalog::table(from)
                .and_then(|t| t.foreign_keys.iter().find(|k| k.references_table == *to))
            else {
                continue;
            };
            out.push((
                Column::new(Some(TableReference::bare(from)), fk.column),
                Column::new(Some(TableReference::bare(*to)), fk.references_column),
            ));
            break;
        }
    }
    out
}

/// True if the query reads the catalog tables the rollup was built with, each once.
fn joins_match(def: &RollupDef, input: &JoinedInput) -> bool {
    let mut read: Vec<&str> = input.catalog.iter().map(String::as_str).collect();
    let mut built = def.joins.to_vec();
    read.sort_unstable();
    built.sort_unstable();
    read == built
}

fn same_pair(a: &(Column, Column), b: &(Column, Column)) -> bool {
    (a.0 == b.0 && a.1 == b.1) || (a.0 == b.1 && a.1 == b.0)
}

/// A rollup fitted to one aggregate: every expression of the query rewritten in its columns.
struct Fitted {
    range: TimeRange,
    groups: Vec<Expr>,
    parts: Vec<Part>,
    filters: Vec<Expr>,
}

/// How the query's tables' columns map to a rollup's.
struct ColumnMap<'a> {
    def: &'a RollupDef,
    /// The columns the joins make equal to each column.
    equal: &'a [(Column, Column)],
}

impl ColumnMap<'_> {
    /// The rollup's column for a column of the query's tables, if it keeps one.
    fn column(&self, c: &Column) -> Option<&'static str> {
        let direct = |c: &Column| -> Option<&'static str> {
            let table = c.relation.as_ref()?.table();
            if table == STREAMS {
                return match c.name.as_str() {
                    "user_id" => Some("user_id"),
                    TS => self.def.grain.column(),
                    name => self.def.keys.iter().find(|k| **k == name).copied(),
                };
            }
            self.def
                .catalog_keys
                .iter()
                .find(|k| k.table == table && k.column == c.name)
                .map(|k| k.column)
        };
        direct(c).or_else(|| {
            self.equal.iter().find_map(|(a, b)| match () {
                _ if a == c => direct(b),
                _ if b == c => direct(a),
                _ => None,
            })
        })
    }

    /// `e` written in the rollup's columns; `Err` names the first column it does not keep.
    fn rewrite(&self, e: &Expr) -> std::result::Result<Expr, String> {
        let table = TableReference::bare(self.def.table);
        let mut missing = None;
        let out = e
            .clone()
            .transform(|n| match n {
                Expr::Column(c) => match self.column(&c) {
                    Some(name) => Ok(Transformed::yes(Expr::Column(Column::new(
                        Some(table.clone()),
                        name,
                    )))),
                    None => {
                        missing.get_or_insert_with(|| c.flat_name());
                        Ok(Transformed::no(Expr::Column(c)))
                    }
                },
                other => Ok(Transformed::no(other)),
            })
            .map(|t| t.data)
            .map_err(|e| e.to_string())?;
        match missing {
            Some(c) => Err(format!("it does not keep {c}")),
            None => Ok(out),
        }
    }
}

/// The rollup's answer to the aggregate for the whole periods of its range, or why not.
#[allow(clippy::too_many_arguments)]
fn fit(
    def: &RollupDef,
    input: &JoinedInput,
    groups: &[Expr],
    measures: &[(Measure, Expr)],
    time_filters: &[Expr],
    other_filters: &[Expr],
    wanted: TimeRange,
    w: i64,
) -> std::result::Result<Fitted, String> {
    if !joins_match(def, input) {
        return Err(format!(
            "it is built by joining {}; the query joins {}",
            def.joins.join(", "),
            input.catalog.join(", ")
        ));
    }
    let expected = rollup_joins(def);
    if input.equalities.len() != expected.len()
        || !input
            .equalities
            .iter()
            .all(|e| expected.iter().any(|x| same_pair(e, x)))
    {
        return Err("the query's joins are not the catalog's foreign keys".into());
    }
    if !time_filters.iter().all(exact_time_bound) {
        return Err("a time filter is not a plain range of ts".into());
    }
    let map = ColumnMap {
        def,
        equal: &input.equalities,
    };
    let cold = wanted.before(w);
    if let Some(why) = period_misfit(def.grain, groups, cold, w) {
        return Err(why);
    }
    let range = whole_periods(def.grain, cold, w).ok_or("no whole period before W")?;
    let mut filters = Vec::new();
    for f in other_filters {
        // (The time filters are apart: `streams.ts` is in none of these.)
        if f.column_refs().iter().any(|c| c.name == "ms_played") {
            return Err(format!("filter {f} needs raw events"));
        }
        filters.push(map.rewrite(f)?);
    }
    let groups = groups
        .iter()
        .map(|g| map.rewrite(g))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if let Some(why) = measures.iter().find_map(|(m, _)| missing_measure(def, m)) {
        return Err(why);
    }
    let mut parts = Vec::with_capacity(measures.len());
    for (m, _) in measures {
        parts.push(match m {
            Measure::MinOf(e) => Part::Agg(min(map.rewrite(e)?)),
            Measure::MaxOf(e) => Part::Agg(max(map.rewrite(e)?)),
            Measure::DistinctOf(e) => Part::Key(map.rewrite(e)?),
            m => Part::Agg(rollup_measure(def, m).expect("checked by missing_measure")),
        });
    }
    Ok(Fitted {
        range,
        groups,
        parts,
        filters,
    })
}

/// `plan` with its read of `streams` restricted to `range` (a filter the split of `streams`
/// at `W` then reads like the query's own).
fn restrict_streams(plan: &LogicalPlan, range: TimeRange) -> Result<LogicalPlan> {
    plan.clone()
        .transform_down(|node| {
            let LogicalPlan::TableScan(scan) = &node else {
                return Ok(Transformed::no(node));
            };
            if streams_branches(scan).is_none() {
                return Ok(Transformed::no(node));
            }
            let ts = Expr::Column(Column::new(Some(scan.table_name.clone()), TS));
            let mut filters = scan.filters.clone();
            filters.extend(range_filter(ts, range));
            let restricted: TableScan = TableScanBuilder::from(scan.clone())
                .with_filters(filters)
                .build()?;
            Ok(Transformed::new(
                LogicalPlan::TableScan(restricted),
                true,
                datafusion::common::tree_node::TreeNodeRecursion::Jump,
            ))
        })
        .map(|t| t.data)
}

impl CatalogRollupRule {
    fn rewrite_aggregate(
        &self,
        scope: &QueryScope,
        agg: &Aggregate,
    ) -> Result<Option<LogicalPlan>> {
        // Grouping sets, and the partial aggregates of this rule's own edge pieces (their
        // measures are named `__sluice_m*`; their ranges hold no whole period).
        if agg
            .group_expr
            .iter()
            .any(|g| matches!(g, Expr::GroupingSet(_)))
            || agg
                .aggr_expr
                .iter()
                .any(|e| e.schema_name().to_string().starts_with("__sluice_"))
        {
            return Ok(None);
        }
        let mut input = JoinedInput::default();
        let Some(columns) = read_input(&agg.input, &mut input) else {
            return Ok(None);
        };
        if input.streams != 1 || input.catalog.is_empty() {
            return Ok(None);
        }
        let Some(qualifier) = keys_qualifier(agg) else {
            return Ok(None);
        };
        let Some(groups) = agg
            .group_expr
            .iter()
            .map(|g| resolve(g, &columns))
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        // Each measure with the query's own expression, kept for the raw pieces.
        let mut measures = Vec::with_capacity(agg.aggr_expr.len());
        for a in &agg.aggr_expr {
            let Some(m) = resolve(a, &columns).as_ref().and_then(Measure::read) else {
                return Ok(None);
            };
            measures.push((m, a.clone().unalias()));
        }
        let conjuncts: Vec<Expr> = input
            .predicates
            .iter()
            .flat_map(|p| split_conjunction(p).into_iter().cloned())
            .collect();
        let (time_filters, other_filters): (Vec<Expr>, Vec<Expr>) = conjuncts
            .into_iter()
            .partition(|c| c.column_refs().iter().any(|n| is_streams_ts(n)));
        let wanted = EventFilter::from_filters(
            &time_filters
                .iter()
                .chain(other_filters.iter().filter(|f| {
                    f.column_refs()
                        .iter()
                        .all(|c| c.relation.as_ref().is_some_and(|r| r.table() == STREAMS))
                }))
                .cloned()
                .collect::<Vec<_>>(),
        );
        if wanted.is_empty() {
            return Ok(None);
        }
        let w = scope.watermark_ms;

        let mut choice = RollupChoice {
            used: None,
            passed_over: Vec::new(),
        };
        let mut chosen: Option<(&AvailableRollup, Fitted)> = None;
        for r in &self.rollups {
            let joins_match = joins_match(r.def, &input);
            if let Some((c, _)) = &chosen {
                if joins_match {
                    choice.passed_over.push((
                        r.def.table.into(),
                        format!("{} answers with fewer rows", c.def.table),
                    ));
                }
                continue;
            }
            match fit(
                r.def,
                &input,
                &groups,
                &measures,
                &time_filters,
                &other_filters,
                wanted.time,
                w,
            ) {
                Ok(f) => chosen = Some((r, f)),
                // Only rollups of the same joins say why: the others are for other queries.
                Err(why) if joins_match => choice.passed_over.push((r.def.table.into(), why)),
                Err(_) => {}
            }
        }
        let Some((r, fitted)) = chosen else {
            if !choice.passed_over.is_empty() {
                scope.rollups.lock().expect("rollups lock").push(choice);
            }
            return Ok(None);
        };

        let mut pieces = Vec::new();
        // The edges of the range outside the rollup's whole periods, as the query reads them.
        let edges = [
            TimeRange {
                start_ms: wanted.time.start_ms,
                end_ms: fitted.range.start_ms,
            },
            TimeRange {
                start_ms: fitted.range.end_ms,
                end_ms: wanted.time.end_ms,
            },
        ];
        for edge in edges {
            if (edge.start_ms.is_none() && edge.end_ms.is_none()) || edge.is_empty() {
                continue;
            }
            let plan = restrict_streams(&agg.input, edge)?;
            let keys = agg.group_expr.iter().map(|g| g.clone().unalias()).collect();
            let parts = measures
                .iter()
                .map(|(m, e)| match (m, e) {
                    (
                        Measure::DistinctOf(_),
                        Expr::AggregateFunction(AggregateFunction { params, .. }),
                    ) => Part::Key(params.args[0].clone()),
                    (_, e) => Part::Agg(e.clone()),
                })
                .collect();
            pieces.push(partial_aggregate(plan, keys, parts)?);
        }
        let plan = rollup_piece(r, fitted.range, fitted.filters)?;
        pieces.push(partial_aggregate(plan, fitted.groups, fitted.parts)?);
        scope.routes.lock().expect("routes lock").push(Route {
            branch: RouteBranch::Cold,
            source: r.source.clone(),
            time: fitted.range,
            users: wanted.users.as_ref().map(|u| u.iter().cloned().collect()),
            rollup: Some(r.def.table.to_string()),
        });
        choice.used = Some((r.def.table.to_string(), fitted.range));
        scope.rollups.lock().expect("rollups lock").push(choice);
        let measures: Vec<Measure> = measures.into_iter().map(|(m, _)| m).collect();
        merge_pieces(agg, pieces, &measures, qualifier).map(Some)
    }
}

fn is_streams_ts(c: &Column) -> bool {
    c.name == TS && c.relation.as_ref().is_some_and(|r| r.table() == STREAMS)
}

impl OptimizerRule for CatalogRollupRule {
    fn name(&self) -> &str {
        "sluice_catalog_rollup"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let Some(scope) = QueryScopeOption::of(config) else {
            return Ok(Transformed::no(plan));
        };
        if scope.route == RouteMode::Raw || self.rollups.is_empty() {
            return Ok(Transformed::no(plan));
        }
        rewrite_nodes(plan, |node| match node {
            LogicalPlan::Aggregate(agg) => self.rewrite_aggregate(&scope, agg),
            _ => Ok(None),
        })
    }
}
