use std::collections::BTreeSet;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, utils::split_conjunction};

/// A half-open time range `[start_ms, end_ms)`; `None` is unbounded on that side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeRange {
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
}

impl TimeRange {
    /// True if no timestamp can fall in the range.
    pub fn is_empty(&self) -> bool {
        matches!((self.start_ms, self.end_ms), (Some(s), Some(e)) if s >= e)
    }

    /// Narrows to timestamps `>= ms`.
    pub fn at_or_after(mut self, ms: i64) -> Self {
        self.start_ms = Some(self.start_ms.map_or(ms, |s| s.max(ms)));
        self
    }

    /// Narrows to timestamps `< ms`.
    pub fn before(mut self, ms: i64) -> Self {
        self.end_ms = Some(self.end_ms.map_or(ms, |e| e.min(ms)));
        self
    }

    pub fn contains(&self, ms: i64) -> bool {
        self.start_ms.is_none_or(|s| ms >= s) && self.end_ms.is_none_or(|e| ms < e)
    }
}

/// The listeners and time range a scan of `streams` is restricted to, read from the filters
/// DataFusion pushes into a table provider. Anything it does not understand is ignored (the
/// result is then wider, never narrower), so a source that prunes with it stays correct as
/// long as DataFusion re-applies the filters (`TableProviderFilterPushDown::Inexact`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// `None`: any listener.
    pub users: Option<BTreeSet<String>>,
    pub time: TimeRange,
}

impl EventFilter {
    /// Reads `user_id = '..'`, `user_id IN (..)` and comparisons of `ts` with timestamp
    /// literals out of a conjunction of filters.
    pub fn from_filters(filters: &[Expr]) -> Self {
        let mut out = Self::default();
        for f in filters {
            for e in split_conjunction(f) {
                out.absorb(e);
            }
        }
        out
    }

    /// True if no event can match.
    pub fn is_empty(&self) -> bool {
        self.time.is_empty() || self.users.as_ref().is_some_and(|u| u.is_empty())
    }

    /// True if events of `user` may match.
    pub fn admits_user(&self, user: &str) -> bool {
        self.users.as_ref().is_none_or(|u| u.contains(user))
    }

    fn restrict_users(&mut self, users: BTreeSet<String>) {
        self.users = Some(match self.users.take() {
            None => users,
            Some(prev) => prev.intersection(&users).cloned().collect(),
        });
    }

    fn absorb(&mut self, e: &Expr) {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (column, op, value) = match (column_name(left), column_name(right)) {
                    (Some(c), None) => (c, *op, right.as_ref()),
                    (None, Some(c)) => match op.swap() {
                        Some(swapped) => (c, swapped, left.as_ref()),
                        None => return,
                    },
                    _ => return,
                };
                match column {
                    "user_id" if op == Operator::Eq => {
                        if let Some(u) = string_literal(value) {
                            self.restrict_users(BTreeSet::from([u]));
                        }
                    }
                    "ts" => {
                        if let Some(ms) = timestamp_ms(value) {
                            self.time = match op {
                                Operator::Eq => {
                                    self.time.at_or_after(ms).before(ms.saturating_add(1))
                                }
                                Operator::Gt => self.time.at_or_after(ms.saturating_add(1)),
                                Operator::GtEq => self.time.at_or_after(ms),
                                Operator::Lt => self.time.before(ms),
                                Operator::LtEq => self.time.before(ms.saturating_add(1)),
                                _ => self.time,
                            };
                        }
                    }
                    _ => {}
                }
            }
            Expr::InList(list) if !list.negated && column_name(&list.expr) == Some("user_id") => {
                let users: Option<BTreeSet<String>> =
                    list.list.iter().map(string_literal).collect();
                if let Some(users) = users {
                    self.restrict_users(users);
                }
            }
            // A filter folded to false (or NULL) keeps nothing: `user_id = 'a' AND user_id = 'b'`.
            Expr::Literal(ScalarValue::Boolean(Some(false) | None), _) => {
                self.restrict_users(BTreeSet::new());
            }
            Expr::Between(b) if !b.negated && column_name(&b.expr) == Some("ts") => {
                if let (Some(lo), Some(hi)) = (timestamp_ms(&b.low), timestamp_ms(&b.high)) {
                    self.time = self.time.at_or_after(lo).before(hi.saturating_add(1));
                }
            }
            _ => {}
        }
    }
}

fn column_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        _ => None,
    }
}

fn string_literal(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s.clone()),
        _ => None,
    }
}

/// A timestamp literal in milliseconds. Sub-millisecond literals are rounded so that the
/// range only ever widens: a bound is a filter hint, the exact filter is re-applied.
fn timestamp_ms(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else { return None };
    match v {
        ScalarValue::TimestampMillisecond(Some(ms), _) => Some(*ms),
        ScalarValue::TimestampSecond(Some(s), _) => s.checked_mul(1000),
        ScalarValue::TimestampMicrosecond(Some(us), _) => Some(us.div_euclid(1000)),
        ScalarValue::TimestampNanosecond(Some(ns), _) => Some(ns.div_euclid(1_000_000)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(ms: i64) -> Expr {
        lit(ScalarValue::TimestampMillisecond(
            Some(ms),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn reads_user_and_half_open_range() {
        let f = EventFilter::from_filters(&[
            col("user_id").eq(lit("u0001")),
            col("ts").gt_eq(ts(100)).and(col("ts").lt(ts(200))),
        ]);
        assert_eq!(f.users, Some(BTreeSet::from(["u0001".to_string()])));
        assert_eq!(
            f.time,
            TimeRange {
                start_ms: Some(100),
                end_ms: Some(200)
            }
        );
        assert!(f.admits_user("u0001") && !f.admits_user("u0002"));
    }

    #[test]
    fn literal_on_the_left_and_between() {
        let f = EventFilter::from_filters(&[
            ts(100).lt_eq(col("ts")),
            col("ts").between(ts(0), ts(150)),
        ]);
        assert_eq!(
            f.time,
            TimeRange {
                start_ms: Some(100),
                end_ms: Some(151)
            }
        );
    }

    #[test]
    fn contradictions_are_empty() {
        let f = EventFilter::from_filters(&[col("ts").lt(ts(100)), col("ts").gt_eq(ts(100))]);
        assert!(f.is_empty());
        let f =
            EventFilter::from_filters(&[col("user_id").eq(lit("a")), col("user_id").eq(lit("b"))]);
        assert!(f.is_empty());
    }

    #[test]
    fn unknown_predicates_widen_never_narrow() {
        let f = EventFilter::from_filters(&[
            col("user_id").eq(lit("a")).or(col("user_id").eq(lit("b"))),
            col("ms_played").gt(lit(5)),
        ]);
        assert_eq!(f, EventFilter::default());
    }
}
