//! Aggregates over `streams`, split by where their rows live: a partial aggregate per piece
//! (the hot branch, the raw cold events, and a rollup for the part of the cold range it
//! covers exactly), one final merge over their union. Each partial runs where its rows are
//! (ClickHouse gets it as SQL through federation), so only per-group rows move, and a rollup
//! answers whole days (or the whole history) instead of its raw events.
//!
//! The rewrite ([`AggregateSplitRule`]) takes an aggregate whose input is filters and
//! projections over one scan of `streams`, with aggregates that merge exactly:
//! `count(*)`, `sum(ms_played)`, `min`/`max` of `ts` or of a key column, and
//! `count(DISTINCT <key>)` (the key is kept in the partials' groups, so nothing is
//! approximated). Anything else is left to [`crate::streams`] whole.
//!
//! A rollup ([`sluice_catalog::rollups`]) is used only where it gives the same answer: every
//! time filter is a range with millisecond bounds, other filters name only the rollup's keys,
//! grouping uses `ts` only through functions constant over a UTC day (`date_trunc` to a day or
//! coarser, `date_part` of a day or coarser), and the measures are ones the rollup keeps. The
//! partial days at the range's edges and the day of `W` are read raw.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, Result, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::expr_fn::{count, count_distinct, max, min, sum};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Expr, LogicalPlan, LogicalPlanBuilder, Operator, TableScan,
    TableScanBuilder, col, lit,
};
use datafusion::optimizer::push_down_filter::replace_cols_by_name;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use sluice_catalog::{RollupDef, RollupGrain};
use sluice_connector_api::{EventFilter, EventSource, TimeRange};

use crate::rewrite::rewrite_nodes;
use crate::settings::{Freshness, RouteMode};
use crate::source_reads::CountedTable;
use crate::streams::{
    QueryScope, QueryScopeOption, Route, RouteBranch, branch_plan, streams_branches, ts_literal,
};

const TS: &str = "ts";
const MS_PLAYED: &str = "ms_played";
/// Columns of `streams` that every rollup keeps (with its own keys).
const USER: &str = "user_id";

/// A rollup the planner may read, with the cold store's table for it.
#[derive(Debug, Clone)]
pub(crate) struct AvailableRollup {
    pub(crate) def: &'static RollupDef,
    pub(crate) table: Arc<dyn TableProvider>,
    /// Whether the table is read through federation (counted there) or by the gateway.
    pub(crate) federated: bool,
    pub(crate) source: String,
}

/// Splits aggregates over `streams` into per-piece partials, using rollups where exact.
#[derive(Debug)]
pub(crate) struct AggregateSplitRule {
    rollups: Vec<AvailableRollup>,
}

impl AggregateSplitRule {
    pub(crate) fn new(rollups: Vec<AvailableRollup>) -> Self {
        Self { rollups }
    }
}

/// One aggregate of the query, as it merges.
#[derive(Debug, Clone)]
pub(crate) enum Measure {
    /// `count(*)` or `count(<non-null column>)`.
    Plays,
    /// `sum(ms_played)`.
    MsPlayed,
    /// `min(ts)`, `max(ts)`.
    FirstTs,
    LastTs,
    /// `min(e)` / `max(e)` of an expression of key columns.
    MinOf(Expr),
    MaxOf(Expr),
    /// `count(DISTINCT e)` of an expression of key columns.
    DistinctOf(Expr),
}

impl Measure {
    pub(crate) fn read(e: &Expr) -> Option<Self> {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = e else {
            return None;
        };
        if params.filter.is_some() || !params.order_by.is_empty() || params.args.len() != 1 {
            return None;
        }
        let arg = &params.args[0];
        let name = func.name();
        let column = match arg {
            Expr::Column(c) => Some(c.name.as_str()),
            _ => None,
        };
        match (name, params.distinct) {
            ("count", true) if only_keys(arg) => Some(Measure::DistinctOf(arg.clone())),
            ("count", false) => match arg {
                // Every column of `streams` is non-null, so counting one counts rows.
                Expr::Literal(v, _) if !v.is_null() => Some(Measure::Plays),
                Expr::Column(_) => Some(Measure::Plays),
                _ => None,
            },
            ("sum", false) if column == Some(MS_PLAYED) => Some(Measure::MsPlayed),
            ("min", _) if column == Some(TS) => Some(Measure::FirstTs),
            ("max", _) if column == Some(TS) => Some(Measure::LastTs),
            ("min", _) if only_keys(arg) => Some(Measure::MinOf(arg.clone())),
            ("max", _) if only_keys(arg) => Some(Measure::MaxOf(arg.clone())),
            _ => None,
        }
    }
}

/// True if `e` reads no column but `user_id` and `track_uri` (what every rollup keeps).
fn only_keys(e: &Expr) -> bool {
    columns_of(e).iter().all(|c| c == USER || c == "track_uri")
}

fn columns_of(e: &Expr) -> Vec<String> {
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
    scan: TableScan,
    cold: Arc<dyn EventSource>,
    hot: Arc<dyn EventSource>,
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

/// A function of `ts` constant over every UTC period of `grain` (a day or a calendar month),
/// so a rollup's period start gives the same value as each of the period's events.
fn period_constant(e: &Expr, grain: RollupGrain) -> bool {
    let Expr::ScalarFunction(f) = e else {
        return false;
    };
    let [
        Expr::Literal(ScalarValue::Utf8(Some(unit)) | ScalarValue::Utf8View(Some(unit)), _),
        Expr::Column(c),
    ] = f.args.as_slice()
    else {
        return false;
    };
    let unit = unit.to_ascii_lowercase();
    let (trunc, part): (&[&str], &[&str]) = match grain {
        RollupGrain::Day { .. } => (
            &["day", "week", "month", "quarter", "year"],
            &["year", "quarter", "month", "week", "day", "doy", "dow"],
        ),
        RollupGrain::Month { .. } => (&["month", "quarter", "year"], &["year", "quarter", "month"]),
        RollupGrain::AllTime => (&[], &[]),
    };
    c.name == TS
        && match f.func.name() {
            "date_trunc" => trunc.contains(&unit.as_str()),
            "date_part" | "datepart" => part.contains(&unit.as_str()),
            _ => false,
        }
}

/// True if `e` reads `ts` only through [`period_constant`] functions and no `ms_played`.
fn period_grain_expr(e: &Expr, grain: RollupGrain) -> bool {
    let mut ok = true;
    let _ = e.apply(|n| {
        if period_constant(n, grain) {
            return Ok(TreeNodeRecursion::Jump);
        }
        if let Expr::Column(c) = n
            && (c.name == TS || c.name == MS_PLAYED)
        {
            ok = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    ok
}

/// A timestamp literal in whole milliseconds.
fn exact_ms(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else { return None };
    match v {
        ScalarValue::TimestampMillisecond(Some(ms), _) => Some(*ms),
        ScalarValue::TimestampSecond(Some(s), _) => s.checked_mul(1000),
        ScalarValue::TimestampMicrosecond(Some(us), _) if us % 1000 == 0 => Some(us / 1000),
        ScalarValue::TimestampNanosecond(Some(ns), _) if ns % 1_000_000 == 0 => {
            Some(ns / 1_000_000)
        }
        _ => None,
    }
}

fn is_ts(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == TS)
}

/// True if the conjunct is exactly a bound on `ts` (what [`EventFilter`] reads as a range).
pub(crate) fn exact_time_bound(e: &Expr) -> bool {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            matches!(
                op,
                Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq | Operator::Eq
            ) && ((is_ts(left) && exact_ms(right).is_some())
                || (is_ts(right) && exact_ms(left).is_some()))
        }
        Expr::Between(b) => {
            !b.negated
                && is_ts(&b.expr)
                && exact_ms(&b.low).is_some()
                && exact_ms(&b.high).is_some()
        }
        _ => false,
    }
}

/// Why the rollups were or were not used, for EXPLAIN and the result manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RollupChoice {
    /// The rollup read, with the range of `ts` it answered.
    pub(crate) used: Option<(String, TimeRange)>,
    /// Each rollup not read, with the reason.
    pub(crate) passed_over: Vec<(String, String)>,
}

/// What a rollup cannot answer in this aggregate, if anything.
fn rollup_misfit(
    def: &RollupDef,
    measures: &[Measure],
    groups: &[Expr],
    other_filters: &[Expr],
    exact_range: Option<TimeRange>,
    cold: TimeRange,
    w: i64,
) -> Option<String> {
    let Some(range) = exact_range else {
        return Some("a time filter is not a plain range of ts".into());
    };
    if let Some(f) = other_filters.iter().find(|f| !only_keys(f)) {
        return Some(format!("filter {f} needs raw events"));
    }
    if let Some(why) = measures.iter().find_map(|m| missing_measure(def, m)) {
        return Some(why);
    }
    match def.grain {
        RollupGrain::AllTime => {
            if groups
                .iter()
                .any(|g| columns_of(g).iter().any(|c| c != USER && c != "track_uri"))
            {
                return Some("the query groups by time".into());
            }
            if range.start_ms.is_some() || cold.end_ms != Some(w) {
                return Some("it covers only the whole history before W".into());
            }
        }
        RollupGrain::Day { .. } | RollupGrain::Month { .. } => {
            return period_misfit(def.grain, groups, cold, w);
        }
    }
    None
}

/// Why a rollup cannot give one of the measures it reads from its own columns, if it cannot.
pub(crate) fn missing_measure(def: &RollupDef, m: &Measure) -> Option<String> {
    let what = match m {
        Measure::MsPlayed if def.ms_played.is_none() => "sum(ms_played)",
        Measure::FirstTs if def.first_ts.is_none() => "min(ts)",
        Measure::LastTs if def.last_ts.is_none() => "max(ts)",
        _ => return None,
    };
    Some(format!("it does not keep {what}"))
}

/// What a rollup of days or months cannot answer: grouping by time finer than its grain, or
/// a range without one whole period.
pub(crate) fn period_misfit(
    grain: RollupGrain,
    groups: &[Expr],
    cold: TimeRange,
    w: i64,
) -> Option<String> {
    let period = match grain {
        RollupGrain::Month { .. } => "month",
        _ => "day",
    };
    if let Some(g) = groups.iter().find(|g| !period_grain_expr(g, grain)) {
        return Some(format!("grouping by {g} is finer than a {period}"));
    }
    if whole_periods(grain, cold, w).is_none() {
        return Some(format!("the range holds no whole {period} before W"));
    }
    None
}

/// The whole UTC periods of `grain` (days or calendar months) inside `cold` (a range before
/// `w`), if any; the whole range for a rollup without time.
pub(crate) fn whole_periods(grain: RollupGrain, cold: TimeRange, w: i64) -> Option<TimeRange> {
    if grain == RollupGrain::AllTime {
        return (!cold.is_empty()).then_some(cold);
    }
    let periods = TimeRange {
        start_ms: cold.start_ms.map(|s| grain.next_period_start(s)),
        end_ms: Some(grain.period_start(cold.end_ms.unwrap_or(w).min(w))),
    };
    (!periods.is_empty()).then_some(periods)
}

pub(crate) fn range_filter(column: Expr, range: TimeRange) -> Option<Expr> {
    let mut parts = Vec::new();
    if let Some(s) = range.start_ms {
        parts.push(column.clone().gt_eq(ts_literal(s)));
    }
    if let Some(e) = range.end_ms {
        parts.push(column.lt(ts_literal(e)));
    }
    conjunction(parts)
}

impl AggregateSplitRule {
    fn split(&self, scope: &QueryScope, agg: &Aggregate) -> Result<Option<LogicalPlan>> {
        let Some(input) = streams_input(&agg.input) else {
            return Ok(None);
        };
        let resolve = |e: &Expr| -> Result<Expr> {
            if input.columns.is_empty() {
                Ok(e.clone())
            } else {
                replace_cols_by_name(e.clone(), &input.columns)
            }
        };
        if agg
            .group_expr
            .iter()
            .any(|g| matches!(g, Expr::GroupingSet(_)))
        {
            return Ok(None);
        }
        let Some(qualifier) = keys_qualifier(agg) else {
            return Ok(None);
        };
        let groups = agg
            .group_expr
            .iter()
            .map(|g| resolve(&g.clone().unalias()))
            .collect::<Result<Vec<_>>>()?;
        let mut measures = Vec::with_capacity(agg.aggr_expr.len());
        for a in &agg.aggr_expr {
            match Measure::read(&resolve(&a.clone().unalias())?) {
                Some(m) => measures.push(m),
                None => return Ok(None),
            }
        }

        let w = scope.watermark_ms;
        let wanted = EventFilter::from_filters(&input.predicates);
        if wanted.is_empty() {
            return Ok(None);
        }
        let conjuncts: Vec<Expr> = input
            .predicates
            .iter()
            .flat_map(|p| split_conjunction(p).into_iter().cloned())
            .collect();
        let (time_filters, other_filters): (Vec<Expr>, Vec<Expr>) = conjuncts
            .iter()
            .cloned()
            .partition(|c| columns_of(c).iter().any(|n| n == TS));
        let exact_range = time_filters
            .iter()
            .all(exact_time_bound)
            .then_some(wanted.time);
        let cold = wanted.time.before(w);
        let hot = wanted.time.at_or_after(w);
        let read_hot = !hot.is_empty() && scope.freshness == Freshness::Live;

        let mut choice = RollupChoice {
            used: None,
            passed_over: Vec::new(),
        };
        let mut rollup: Option<(&AvailableRollup, TimeRange)> = None;
        if !cold.is_empty() {
            for r in &self.rollups {
                if let Some((chosen, _)) = &rollup {
                    choice.passed_over.push((
                        r.def.table.into(),
                        format!("{} answers with fewer rows", chosen.def.table),
                    ));
                    continue;
                }
                match rollup_misfit(
                    r.def,
                    &measures,
                    &groups,
                    &other_filters,
                    exact_range,
                    cold,
                    w,
                ) {
                    Some(why) => choice.passed_over.push((r.def.table.into(), why)),
                    None => {
                        let days =
                            whole_periods(r.def.grain, cold, w).expect("checked by rollup_misfit");
                        rollup = Some((r, days));
                    }
                }
            }
        }
        let pieces_without_rollup = usize::from(!cold.is_empty()) + usize::from(read_hot);
        if rollup.is_none() && pieces_without_rollup < 2 {
            // One branch: the whole aggregate goes to it as it is.
            return Ok(None);
        }

        // The partial aggregate of every piece: keys k0.., distinct keys d0.., measures m0..
        let mut pieces: Vec<LogicalPlan> = Vec::new();
        let full_scan = TableScanBuilder::new(
            input.scan.table_name.clone(),
            Arc::clone(&input.scan.source),
        )
        .with_filters(input.predicates.clone())
        .build()?;
        let ts_col = Expr::Column(Column::new(Some(input.scan.table_name.clone()), TS));
        let mut routes = Vec::new();
        let mut raw_piece = |branch: RouteBranch, range: TimeRange| -> Result<()> {
            let source = match branch {
                RouteBranch::Cold => &input.cold,
                RouteBranch::Hot => &input.hot,
            };
            let bounds = range_filter(ts_col.clone(), range).unwrap_or(lit(true));
            let plan = branch_plan(&full_scan, source, branch, bounds)?;
            pieces.push(partial(
                plan,
                &groups,
                &measures,
                &input.scan.table_name,
                None,
            )?);
            routes.push(Route {
                branch,
                source: source.name().to_string(),
                time: range,
                users: wanted.users.as_ref().map(|u| u.iter().cloned().collect()),
                rollup: None,
            });
            Ok(())
        };
        match rollup {
            None => {
                if !cold.is_empty() {
                    raw_piece(RouteBranch::Cold, cold)?;
                }
            }
            Some((_, days)) => {
                // The partial days at the edges of the cold range, raw.
                if let Some(s) = cold.start_ms
                    && days.start_ms.is_some_and(|d| s < d)
                {
                    raw_piece(
                        RouteBranch::Cold,
                        TimeRange {
                            start_ms: Some(s),
                            end_ms: days.start_ms,
                        },
                    )?;
                }
                let cold_end = cold.end_ms.unwrap_or(w);
                if days.end_ms.is_some_and(|d| d < cold_end) {
                    raw_piece(
                        RouteBranch::Cold,
                        TimeRange {
                            start_ms: days.end_ms,
                            end_ms: Some(cold_end),
                        },
                    )?;
                }
            }
        }
        if read_hot {
            raw_piece(RouteBranch::Hot, hot)?;
        }
        if let Some((r, days)) = rollup {
            // The filters on keys apply to the rollup's columns of the same names.
            let filters = other_filters
                .iter()
                .map(|f| rename_columns(f.clone(), &input.scan.table_name, r.def.table, |n| n))
                .collect::<Result<Vec<_>>>()?;
            let plan = rollup_piece(r, days, filters)?;
            pieces.push(partial(
                plan,
                &groups,
                &measures,
                &input.scan.table_name,
                Some(r),
            )?);
            routes.push(Route {
                branch: RouteBranch::Cold,
                source: r.source.clone(),
                time: days,
                users: wanted.users.as_ref().map(|u| u.iter().cloned().collect()),
                rollup: Some(r.def.table.to_string()),
            });
            choice.used = Some((r.def.table.to_string(), days));
        }
        scope.routes.lock().expect("routes lock").extend(routes);
        if !self.rollups.is_empty() {
            scope.rollups.lock().expect("rollups lock").push(choice);
        }

        merge_pieces(agg, pieces, &measures, qualifier).map(Some)
    }
}

/// The one qualifier of the aggregate's keys (the final merge is a derived table of that
/// name), or `Some(None)` if none has one; `None` (leave the aggregate alone) for keys named
/// under two qualifiers, or twice.
pub(crate) fn keys_qualifier(agg: &Aggregate) -> Option<Option<TableReference>> {
    let mut qualifier: Option<TableReference> = None;
    let mut seen = std::collections::HashSet::new();
    for (q, f) in agg.schema.iter().take(agg.group_expr.len()) {
        if !seen.insert(f.name().clone()) || f.name().starts_with("__sluice_") {
            return None;
        }
        match (q, &qualifier) {
            (Some(q), Some(prev)) if q != prev => return None,
            (Some(q), None) => qualifier = Some(q.clone()),
            _ => {}
        }
    }
    Some(qualifier)
}

/// The final merge of the pieces' partial aggregates (see [`partial_aggregate`]), named as
/// `agg` was: keys keep their names under the qualifier the query uses for them (a derived
/// table of that name, so the SQL sent for a plan above this one can still say
/// `streams.track_uri`; the measures take that qualifier too, and are still found by their
/// names alone).
pub(crate) fn merge_pieces(
    agg: &Aggregate,
    pieces: Vec<LogicalPlan>,
    measures: &[Measure],
    qualifier: Option<TableReference>,
) -> Result<LogicalPlan> {
    let groups_len = agg.group_expr.len();
    let mut pieces = pieces.into_iter();
    let first = pieces.next().expect("at least one piece");
    let union = pieces
        .try_fold(LogicalPlanBuilder::from(first), |b, p| b.union(p))?
        .build()?;
    let merges = measures
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let c = col(format!("__sluice_m{i}"));
            let merged = match m {
                Measure::Plays => sum(c),
                Measure::MsPlayed => sum(c),
                Measure::FirstTs | Measure::MinOf(_) => min(c),
                Measure::LastTs | Measure::MaxOf(_) => max(c),
                Measure::DistinctOf(_) => count_distinct(c),
            };
            merged.alias(format!("__sluice_f{i}"))
        })
        .collect::<Vec<_>>();
    let keys = agg
        .schema
        .iter()
        .take(groups_len)
        .enumerate()
        .map(|(i, (_, f))| col(format!("__sluice_k{i}")).alias(f.name()))
        .collect::<Vec<_>>();
    let merged = LogicalPlanBuilder::from(union)
        .aggregate(keys, merges)?
        .build()?;
    let outputs = merged.schema().columns();
    let named = outputs
        .into_iter()
        .zip(std::iter::repeat_n(None, groups_len).chain(measures.iter().map(Some)))
        .map(|(c, m)| match m {
            // A count over no rows is 0, not NULL.
            Some(Measure::Plays) => coalesce(vec![Expr::Column(c), lit(0i64)]),
            _ => Expr::Column(c),
        })
        .zip(agg.schema.iter())
        .map(|(e, (q, f))| match &qualifier {
            Some(_) => e.alias(f.name()),
            None => e.alias_qualified(q.cloned(), f.name()),
        })
        .collect::<Vec<_>>();
    let mut named = LogicalPlanBuilder::from(merged).project(named)?;
    if let Some(q) = qualifier {
        // Last, so that the SQL sent for a plan above (a join on `s.track_uri`) finds the
        // name: an alias inside a projection does not carry its table's name there.
        named = named.alias(q)?;
    }
    named.build()
}

/// The partial aggregate over one piece: keys `__sluice_k*`, then one `__sluice_m*` per
/// measure (a `count(DISTINCT e)` keeps `e` as a key there). The expressions name the
/// columns of `streams` (as `streams`); on a rollup piece they are renamed to its columns.
fn partial(
    plan: LogicalPlan,
    groups: &[Expr],
    measures: &[Measure],
    streams: &TableReference,
    rollup: Option<&AvailableRollup>,
) -> Result<LogicalPlan> {
    let to_piece = |e: Expr| -> Result<Expr> {
        let Some(r) = rollup else { return Ok(e) };
        rename_columns(e, streams, r.def.table, |name| match r.def.grain.column() {
            Some(column) if name == TS => column,
            _ => name,
        })
    };
    let stream_col = |n: &str| Expr::Column(Column::new(Some(streams.clone()), n));
    let keys = groups
        .iter()
        .map(|g| to_piece(g.clone()))
        .collect::<Result<Vec<_>>>()?;
    let mut parts = Vec::with_capacity(measures.len());
    for m in measures {
        let part = match (m, rollup) {
            (Measure::Plays, None) => Part::Agg(count(lit(1i64))),
            (Measure::MsPlayed, None) => Part::Agg(sum(stream_col(MS_PLAYED))),
            (Measure::FirstTs, None) => Part::Agg(min(stream_col(TS))),
            (Measure::LastTs, None) => Part::Agg(max(stream_col(TS))),
            (Measure::MinOf(e), _) => Part::Agg(min(to_piece(e.clone())?)),
            (Measure::MaxOf(e), _) => Part::Agg(max(to_piece(e.clone())?)),
            (Measure::DistinctOf(e), _) => Part::Key(to_piece(e.clone())?),
            (m, Some(r)) => Part::Agg(rollup_measure(r.def, m).expect("checked by rollup_misfit")),
        };
        parts.push(part);
    }
    partial_aggregate(plan, keys, parts)
}

/// A measure read from a rollup's columns: the sum of its counts and times, the min or max
/// of its first and last times. `None` if the rollup does not keep it.
pub(crate) fn rollup_measure(def: &RollupDef, m: &Measure) -> Option<Expr> {
    let column = |name: Option<&str>| -> Option<Expr> {
        Some(Expr::Column(Column::new(
            Some(TableReference::bare(def.table)),
            name?,
        )))
    };
    Some(match m {
        Measure::Plays => sum(column(Some(def.plays))?),
        Measure::MsPlayed => sum(column(def.ms_played)?),
        Measure::FirstTs => min(column(def.first_ts)?),
        Measure::LastTs => max(column(def.last_ts)?),
        _ => return None,
    })
}

/// What a piece's partial aggregate computes for one measure.
pub(crate) enum Part {
    /// An aggregate the final merge combines (see [`merge_pieces`]).
    Agg(Expr),
    /// A `count(DISTINCT e)`'s `e`, kept as a key; the final merge counts its values.
    Key(Expr),
}

/// The partial aggregate of `plan` by `keys`, with one part per measure, as the final merge
/// reads it: keys `__sluice_k0..`, then `__sluice_m0..` in measure order (a distinct key in its
/// measure's place).
pub(crate) fn partial_aggregate(
    plan: LogicalPlan,
    mut keys: Vec<Expr>,
    parts: Vec<Part>,
) -> Result<LogicalPlan> {
    let groups = keys.len();
    let measures = parts.len();
    // Keys are grouped on as they are and renamed by the projection that follows (by
    // position): an alias inside GROUP BY makes the SQL unparser reorder the columns.
    let mut key_names: Vec<String> = (0..groups).map(|i| format!("__sluice_k{i}")).collect();
    let mut aggs = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    for (i, part) in parts.into_iter().enumerate() {
        let name = format!("__sluice_m{i}");
        match part {
            Part::Agg(e) => {
                aggs.push(e.alias(&name));
                columns.push(name);
            }
            Part::Key(e) => {
                keys.push(e);
                key_names.push(name);
            }
        }
    }
    let grouped = LogicalPlanBuilder::from(plan)
        .aggregate(keys, aggs)?
        .build()?;
    let outputs = grouped.schema().columns();
    let (key_cols, agg_cols) = outputs.split_at(key_names.len());
    let mut named: Vec<(String, Expr)> = key_names
        .into_iter()
        .zip(key_cols.iter().cloned().map(Expr::Column))
        .chain(
            columns
                .into_iter()
                .zip(agg_cols.iter().cloned().map(Expr::Column)),
        )
        .collect();
    let order = (0..groups)
        .map(|i| format!("__sluice_k{i}"))
        .chain((0..measures).map(|i| format!("__sluice_m{i}")));
    let mut exprs: Vec<Expr> = Vec::with_capacity(named.len());
    for name in order {
        let at = named
            .iter()
            .position(|(n, _)| *n == name)
            .expect("every key and measure is named");
        let (n, e) = named.remove(at);
        exprs.push(e.alias(n));
    }
    LogicalPlanBuilder::from(grouped).project(exprs)?.build()
}

/// `e` with the columns of `from` (or unqualified ones) renamed into `to`.
fn rename_columns(
    e: Expr,
    from: &TableReference,
    to: &str,
    rename: impl Fn(&str) -> &str,
) -> Result<Expr> {
    let to = TableReference::bare(to);
    e.transform(|n| match n {
        Expr::Column(c) if c.relation.as_ref().is_none_or(|r| r == from) => Ok(Transformed::yes(
            Expr::Column(Column::new(Some(to.clone()), rename(&c.name))),
        )),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// A rollup's rows for `days` (or all of them), filtered like the query's events: `filters`
/// are the query's filters on keys, written in the rollup's columns.
pub(crate) fn rollup_piece(
    r: &AvailableRollup,
    days: TimeRange,
    mut filters: Vec<Expr>,
) -> Result<LogicalPlan> {
    let name = TableReference::bare(r.def.table);
    let table: Arc<dyn TableProvider> = if r.federated {
        Arc::clone(&r.table)
    } else {
        Arc::new(CountedTable::new(Arc::clone(&r.table), &r.source, "cold"))
    };
    if let Some(column) = r.def.grain.column()
        && let Some(f) = range_filter(Expr::Column(Column::new(Some(name.clone()), column)), days)
    {
        filters.push(f);
    }
    let mut builder = LogicalPlanBuilder::scan(name, provider_as_source(table), None)?;
    if let Some(p) = conjunction(filters) {
        builder = builder.filter(p)?;
    }
    builder.build()
}

impl OptimizerRule for AggregateSplitRule {
    fn name(&self) -> &str {
        "sluice_aggregate_split"
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
        if scope.route == RouteMode::Raw {
            return Ok(Transformed::no(plan));
        }
        rewrite_nodes(plan, |node| match node {
            LogicalPlan::Aggregate(agg) => self.split(&scope, agg),
            _ => Ok(None),
        })
    }
}
