//! What a cascade changed. The target's engine carries a parent row's delete or key change
//! to the child rows of cascading foreign keys (the binlog does not log those changes), so
//! the verifier checks the children too: for each parent key a round deletes or moves
//! away from, the child rows that still reference it, and for each key a parent moves to
//! under `ON UPDATE CASCADE`, the child rows that reference the new key — read on both
//! sides. Every child row found on either side becomes an expectation (the target row is
//! the source's row now, or absent with it), so the usual comparison and source recheck
//! decide, and only a confirmed difference is recorded.
//!
//! Children a `SET NULL` or `SET DEFAULT` moved away cannot be told afterwards (they no
//! longer name the parent): the checksum covers them.

use crate::check::Checker;
use concord_change::{Op, SourceTable, TableName, Value};
use concord_compare::rows::key_of;
use concord_compare::{CompareError, Expectation, Item, Side};
use concord_schema_cache::{Cascade, RefAction, TargetTable};
use concord_target::Stream;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Child rows to look at: those whose foreign-key columns hold one of `keys`.
struct Probe<'a> {
    cascade: Cascade,
    keys: Vec<Vec<Value>>,
    /// The parent change the probe comes from, for the expectations' stream and origin.
    item: &'a Item,
}

impl Checker {
    /// Expectations for the child rows of the cascading foreign keys of the parents the
    /// round's `items` delete or move, by the child's target table.
    pub(crate) async fn cascade_expectations(
        &self,
        items: &[Item],
    ) -> Result<HashMap<TableName, Vec<Expectation>>, CompareError> {
        let mut probes: Vec<Probe<'_>> = Vec::new();
        let mut parents: HashMap<TableName, Option<Arc<TargetTable>>> = HashMap::new();
        for item in items {
            let c = &item.change;
            let moves_key = c.op == Op::Update && c.changes_key();
            if c.op != Op::Delete && !moves_key {
                continue;
            }
            let name = self.filter.target_name(&c.table.name);
            if !parents.contains_key(&name) {
                let t = self.compare.target_schema.get(&name).await?;
                parents.insert(name.clone(), t);
            }
            let Some(parent) = parents[&name].clone() else {
                continue;
            };
            for cascade in &parent.cascades {
                let acts = match c.op {
                    Op::Delete => cascade.on_delete != RefAction::Restrict,
                    _ => cascade.on_update != RefAction::Restrict,
                };
                // No child may reference the key the parent left…
                if let Some(old) = image_key(c.before.as_deref(), &c.table, cascade) {
                    if acts {
                        probes.push(Probe {
                            cascade: cascade.clone(),
                            keys: vec![old],
                            item,
                        });
                    }
                }
                // …and the children an ON UPDATE CASCADE moved are where the source's are.
                if moves_key && cascade.on_update == RefAction::Cascade {
                    if let Some(new) = image_key(c.after.as_deref(), &c.table, cascade) {
                        probes.push(Probe {
                            cascade: cascade.clone(),
                            keys: vec![new],
                            item,
                        });
                    }
                }
            }
        }
        // One read per foreign key and side, for all the round's keys of it.
        let mut merged: Vec<Probe<'_>> = Vec::new();
        for p in probes {
            match merged.iter_mut().find(|m| m.cascade == p.cascade) {
                Some(m) => m.keys.extend(p.keys),
                None => merged.push(p),
            }
        }
        let mut out: HashMap<TableName, Vec<Expectation>> = HashMap::new();
        let mut seen: HashSet<(TableName, Vec<u8>)> = HashSet::new();
        for probe in merged {
            self.probe(probe, &mut out, &mut seen).await?;
        }
        Ok(out)
    }

    /// Reads one probe's child rows on both sides and adds an expectation for each.
    async fn probe(
        &self,
        probe: Probe<'_>,
        out: &mut HashMap<TableName, Vec<Expectation>>,
        seen: &mut HashSet<(TableName, Vec<u8>)>,
    ) -> Result<(), CompareError> {
        let child = &probe.cascade.child;
        // Only children concord replicates are its to check.
        let Some(source_name) = self.filter.source_of(child) else {
            return Ok(());
        };
        let (Some(target), Some(source)) = (
            self.compare.target_schema.get(child).await?,
            self.compare.source_schema.get(&source_name).await?,
        ) else {
            return Ok(());
        };
        let by = &probe.cascade.child_columns;
        if by.iter().any(|c| source.column(c).is_none()) {
            return Ok(());
        }
        let on_target = self
            .compare
            .read_rows_by(Side::Target, &target, by, &probe.keys)
            .await?;
        let on_source = self
            .compare
            .read_rows_by(Side::Source, &source, by, &probe.keys)
            .await?;
        let table = Arc::new(SourceTable {
            name: source_name,
            columns: source.columns.iter().map(|c| c.name.clone()).collect(),
            primary_key: source
                .primary_key
                .iter()
                .filter_map(|k| source.columns.iter().position(|c| c.name == *k))
                .collect(),
        });
        let stream = child_stream(
            &probe.item.stream,
            &probe.item.change.table.name,
            &table.name,
        );
        let list = out.entry(child.clone()).or_default();
        // Keys in the source's primary-key order (what an expectation holds), with the
        // canonical form in the target's, to take each row once.
        let mut add = |key: Vec<Value>, after: Option<Vec<Value>>| {
            let Some(target_key) = in_target_order(&table, &target, &key) else {
                return;
            };
            if seen.insert((child.clone(), key_of(&target, &target_key))) {
                list.push(Expectation {
                    source: table.clone(),
                    key,
                    after,
                    stream: stream.clone(),
                    origin: probe.item.origin.clone(),
                    changes: 0,
                });
            }
        };
        for row in on_source.values() {
            let key = table.primary_key.iter().map(|&i| row[i].clone()).collect();
            add(key, Some(row.clone()));
        }
        // Rows only the target has: they must not be there.
        for row in on_target.values() {
            let key: Option<Vec<Value>> = table
                .primary_key
                .iter()
                .map(|&i| {
                    let j = target
                        .columns
                        .iter()
                        .position(|c| c.name.eq_ignore_ascii_case(&table.columns[i]))?;
                    Some(row[j].clone())
                })
                .collect();
            if let Some(key) = key {
                add(key, None);
            }
        }
        Ok(())
    }
}

/// The values of the cascade's parent columns in a parent image, in the foreign key's
/// column order; `None` if the image lacks one.
fn image_key(
    image: Option<&[Value]>,
    parent: &SourceTable,
    cascade: &Cascade,
) -> Option<Vec<Value>> {
    let image = image?;
    cascade
        .parent_columns
        .iter()
        .map(|name| {
            let i = parent.column_index(name)?;
            let v = image.get(i)?;
            (!v.is_absent() && !v.is_null()).then(|| v.clone())
        })
        .collect()
}

/// Key values given in `source.primary_key` order, in `target.primary_key` order.
fn in_target_order(
    source: &SourceTable,
    target: &TargetTable,
    key: &[Value],
) -> Option<Vec<Value>> {
    target
        .primary_key
        .iter()
        .map(|k| {
            let i = source.column_index(k)?;
            let at = source.primary_key.iter().position(|&p| p == i)?;
            Some(key[at].clone())
        })
        .collect()
}

/// The stream a child's rows travel in: the binlog (direct mode), or — kafka mode — every
/// partition of the child table's topic (a child row's partition follows its own key, not
/// its parent's). Topics are named after the table in `per_table` mode
/// (`<topic>.<db>.<table>`), else there is the one topic.
fn child_stream(parent_stream: &Stream, parent: &TableName, child: &TableName) -> Stream {
    match parent_stream {
        Stream::Partition { topic, .. } | Stream::Topic(topic) => {
            let suffix = format!(".{}.{}", parent.db, parent.table);
            let topic = match topic.strip_suffix(&suffix) {
                Some(base) => format!("{base}.{}.{}", child.db, child.table),
                None => topic.clone(),
            };
            Stream::Topic(topic)
        }
        Stream::Binlog => Stream::Binlog,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_childs_stream_is_its_own_tables_topic() {
        let parent = TableName::new("shop", "orders");
        let child = TableName::new("shop", "lines");
        let partition = |topic: &str| Stream::Partition {
            topic: topic.into(),
            partition: 3,
        };
        assert_eq!(
            child_stream(&partition("concord.changes"), &parent, &child),
            Stream::Topic("concord.changes".into())
        );
        assert_eq!(
            child_stream(&partition("cdc.shop.orders"), &parent, &child),
            Stream::Topic("cdc.shop.lines".into())
        );
        assert_eq!(
            child_stream(&Stream::Binlog, &parent, &child),
            Stream::Binlog
        );
    }
}
