//! When a rollup kept by catalog attributes (`plays_monthly_genre`, `plays_monthly_artist`)
//! answers an aggregate over `streams` joined with the catalog, for the whole months of its
//! range ([`fit`]). The aggregate's input is read down to its tables ([`read_input`]): one
//! read of `streams` and reads of catalog tables, combined by inner joins, through filters,
//! projections and aliases. The rollup gives the same answer only where the joins are
//! exactly the catalog's foreign keys the rollup was built with (`streams.track_uri =
//! tracks.track_uri`, `tracks.artist_uri = artists.artist_uri`: an event whose track is
//! missing from the catalog is in neither), every grouping key and filter names a column the
//! rollup keeps (`ts` only through functions constant over a month), the time filters are
//! plain ranges, and the measures are ones it keeps (`count(*)`, `sum(ms_played)`,
//! `count(DISTINCT user_id)`, min/max of its keys).

use std::collections::HashMap;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result, TableReference};
use datafusion::functions_aggregate::expr_fn::{max, min};
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan};
use datafusion::optimizer::push_down_filter::replace_cols_by_name;
use sluice_catalog::{RollupDef, STREAMS, TableKind};
use sluice_connector_api::TimeRange;

use crate::partial_aggregate::{Measure, Part};
use crate::rollups::{
    exact_time_bound, missing_measure, period_misfit, rollup_measure, whole_periods,
};
use crate::streams_input::{TS, streams_input};

/// The aggregate's input read down to its tables, every expression written in the columns of
/// those tables (qualified by the table's own name: `streams.ts`, `artists.genre`).
#[derive(Debug, Default)]
pub(crate) struct JoinedInput {
    /// Every filter on the way, and the joins' non-equality conditions.
    pub(crate) predicates: Vec<Expr>,
    /// The joins' equalities, as pairs of columns.
    pub(crate) equalities: Vec<(Column, Column)>,
    /// Catalog tables read, in the order met.
    pub(crate) catalog: Vec<String>,
    /// Reads of `streams` met.
    pub(crate) streams: usize,
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

/// `e` (its alias dropped) written in the columns `columns` maps its own to.
pub(crate) fn resolve(e: &Expr, columns: &HashMap<String, Expr>) -> Option<Expr> {
    replace_cols_by_name(e.clone().unalias(), columns).ok()
}

/// Reads `plan` into `out`, returning its output columns as expressions of the tables' own.
pub(crate) fn read_input(
    plan: &LogicalPlan,
    out: &mut JoinedInput,
) -> Option<HashMap<String, Expr>> {
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
pub(crate) fn joins_match(def: &RollupDef, input: &JoinedInput) -> bool {
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
pub(crate) struct Fitted {
    pub(crate) range: TimeRange,
    pub(crate) groups: Vec<Expr>,
    pub(crate) parts: Vec<Part>,
    pub(crate) filters: Vec<Expr>,
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
pub(crate) fn fit(
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
