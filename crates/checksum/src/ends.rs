//! Where the next chunk ends.
//!
//! Two ways. In general the chunk's last key is the `n`th key after the previous chunk,
//! which the source finds by walking the primary key (`LIMIT 1 OFFSET n-1`) — a scan of
//! `n` index entries on the source alone, before either server hashes. When the key is one
//! integer column and its values are dense, the end is computed instead: `after + n /
//! density`, and the servers start hashing at once.
//!
//! Invariant: a computed chunk never spans more than twice the rows asked for — the key is
//! unique, so a span of `w` key values holds at most `w` rows, and the span is capped at
//! `2n`. Where keys are sparse (under half of the values used) the walk is used, so sparse
//! tables do not turn into many tiny chunks.

use super::chunk::ChunkSql;
use super::table::Sides;
use concord_change::Value;
use concord_compare::sql_value::from_sql;
use mysql_async::prelude::Queryable;
use mysql_async::{Params, Pool, Row};

/// Below this many rows per key value, chunk ends are found by walking the key.
const DENSE: f64 = 0.5;

/// Integer key types whose values the chunk ends can be computed over.
fn is_integer(data_type: &str) -> bool {
    matches!(
        data_type,
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint"
    )
}

fn as_int(v: &Value) -> Option<i128> {
    match v {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        _ => None,
    }
}

fn int_value(i: i128) -> Value {
    match i64::try_from(i) {
        Ok(i) => Value::Int(i),
        Err(_) => Value::UInt(u64::try_from(i).unwrap_or(u64::MAX)),
    }
}

/// Picks each chunk's end for one table's run.
#[derive(Debug)]
pub(crate) struct ChunkEnds {
    /// Set when the key is one integer column on both servers.
    int: Option<IntKey>,
}

#[derive(Debug)]
struct IntKey {
    /// Rows per key value, as the last measured chunk found it.
    density: f64,
    /// The source's smallest key, when the run started.
    min: Option<i128>,
    /// The source's largest key when last read (read again before ending the run, so
    /// rows inserted meanwhile at the end of the key space are chunked too).
    max: Option<i128>,
}

impl ChunkEnds {
    /// `estimate` is the source's estimate of the table's rows (0 when unknown).
    pub async fn new(
        source: &Pool,
        sides: &Sides,
        estimate: u64,
    ) -> Result<Self, mysql_async::Error> {
        let integer_key = |t: &concord_schema_cache::TargetTable| {
            t.primary_key.len() == 1
                && t.column(&t.primary_key[0])
                    .is_some_and(|c| is_integer(&c.data_type))
        };
        if !integer_key(&sides.source) || !integer_key(&sides.target) {
            return Ok(Self { int: None });
        }
        let (min, max) = extent(source, &sides.source_sql).await?;
        let density = match (min, max) {
            (Some(lo), Some(hi)) if estimate > 0 => estimate as f64 / (hi - lo + 1) as f64,
            _ => 0.0,
        };
        Ok(Self {
            int: Some(IntKey {
                density: density.min(1.0),
                min,
                max,
            }),
        })
    }

    /// The last key of the chunk that starts after `after` and should hold about `rows`
    /// rows; `None` runs the chunk to the end of the key space.
    pub async fn next(
        &mut self,
        source: &Pool,
        sides: &Sides,
        after: Option<&[Value]>,
        rows: u64,
    ) -> Result<Option<Vec<Value>>, mysql_async::Error> {
        if let Some(int) = self.int.as_mut().filter(|i| i.density >= DENSE) {
            let start = match after {
                Some(key) => as_int(&key[0]),
                // An empty table when the run began: one open chunk covers it.
                None => match int.min {
                    Some(min) => Some(min - 1),
                    None => return Ok(None),
                },
            };
            // (A saved key that is not an integer — the key's type changed since the run
            // was saved — is walked from instead.)
            let Some(start) = start else {
                return walk(source, sides, after, rows).await;
            };
            let through = start + span(int.density, rows);
            if int.max.is_none_or(|m| through >= m) {
                int.max = extent(source, &sides.source_sql).await?.1;
                if int.max.is_none_or(|m| through >= m) {
                    return Ok(None);
                }
            }
            return Ok(Some(vec![int_value(through)]));
        }
        walk(source, sides, after, rows).await
    }

    /// Learns the key density from a chunk `(after, through]` that held `rows` rows.
    pub fn observe(&mut self, after: Option<&[Value]>, through: Option<&[Value]>, rows: u64) {
        let Some(int) = self.int.as_mut() else {
            return;
        };
        let lo = match after {
            Some(k) => as_int(&k[0]),
            None => int.min.map(|m| m - 1),
        };
        let hi = through.and_then(|k| as_int(&k[0]));
        if let (Some(lo), Some(hi)) = (lo, hi) {
            if hi > lo {
                int.density = (rows as f64 / (hi - lo) as f64).min(1.0);
            }
        }
    }
}

/// How many key values a chunk of about `rows` rows spans at `density` rows per value.
fn span(density: f64, rows: u64) -> i128 {
    let rows = rows.max(1) as i128;
    ((rows as f64 / density).ceil() as i128).clamp(1, 2 * rows)
}

/// The source's smallest and largest key (an index lookup each).
async fn extent(
    source: &Pool,
    sql: &ChunkSql,
) -> Result<(Option<i128>, Option<i128>), mysql_async::Error> {
    let mut conn = source.get_conn().await?;
    let row: Option<Row> = conn.exec_first(sql.key_extent(), ()).await?;
    let int = |v: Option<mysql_async::Value>| v.and_then(|v| as_int(&from_sql(v, "bigint")));
    Ok(match row {
        Some(r) => {
            let mut values = r.unwrap().into_iter();
            (int(values.next()), int(values.next()))
        }
        None => (None, None),
    })
}

/// The key of the `n`th row after `after`, found by walking the key on the source; `None`
/// when fewer than `n` rows are left.
async fn walk(
    source: &Pool,
    sides: &Sides,
    after: Option<&[Value]>,
    n: u64,
) -> Result<Option<Vec<Value>>, mysql_async::Error> {
    let (text, params) = sides.source_sql.boundary(after, n);
    let mut conn = source.get_conn().await?;
    let row: Option<Row> = conn.exec_first(text, Params::Positional(params)).await?;
    Ok(row.map(|r| {
        r.unwrap()
            .into_iter()
            .zip(&sides.source.primary_key)
            .map(|(v, k)| {
                let ty = sides
                    .source
                    .column(k)
                    .map(|c| c.data_type.as_str())
                    .unwrap_or_default();
                from_sql(v, ty)
            })
            .collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(density: f64, min: i128, max: i128) -> ChunkEnds {
        ChunkEnds {
            int: Some(IntKey {
                density,
                min: Some(min),
                max: Some(max),
            }),
        }
    }

    #[test]
    fn density_is_learned_from_the_span_and_the_rows_of_a_chunk() {
        let mut e = ends(1.0, 1, 1000);
        // The first chunk starts below the smallest key.
        e.observe(None, Some(&[Value::Int(100)]), 50);
        assert_eq!(e.int.as_ref().unwrap().density, 0.5);
        e.observe(Some(&[Value::Int(100)]), Some(&[Value::UInt(300)]), 200);
        assert_eq!(e.int.as_ref().unwrap().density, 1.0);
        // An open end teaches nothing.
        e.observe(Some(&[Value::Int(300)]), None, 7);
        assert_eq!(e.int.as_ref().unwrap().density, 1.0);
    }

    #[test]
    fn a_span_holds_the_rows_asked_for_at_most_twice_over() {
        assert_eq!(span(1.0, 1000), 1000);
        assert_eq!(span(0.8, 1000), 1250);
        assert_eq!(span(0.5, 1000), 2000);
        assert_eq!(span(0.1, 1000), 2000);
        assert_eq!(span(1.0, 0), 1);
    }

    #[test]
    fn keys_past_i64_stay_unsigned() {
        assert_eq!(int_value(5), Value::Int(5));
        assert_eq!(int_value(i128::from(u64::MAX)), Value::UInt(u64::MAX));
        assert_eq!(as_int(&Value::UInt(u64::MAX)), Some(i128::from(u64::MAX)));
        assert_eq!(as_int(&Value::Text("7".into())), None);
    }
}
