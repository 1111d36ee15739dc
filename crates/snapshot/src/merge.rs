//! What a chunk writes once the stream owner takes it: its rows, less the keys the stream
//! already wrote after the chunk's snapshot position, with partial row images laid over
//! the rows they updated; and the target's keys in the chunk's scope that the source did
//! not have and the stream did not write, to delete.
//!
//! Invariant (docs/SNAPSHOT.md): applied at the stream owner's position, the result leaves
//! every key of the chunk's scope as the source holds it at that position.

use crate::notes::Noted;
use crate::shape::Shape;
use concord_change::Value;
use std::collections::{HashMap, HashSet};

/// A chunk's writes.
#[derive(Debug, Default, PartialEq)]
pub struct Resolved {
    /// Whole rows to upsert, in the source's column order.
    pub rows: Vec<Vec<Value>>,
    /// Keys to delete, each in the source's primary-key order (as the target gave them).
    pub deletes: Vec<Vec<Value>>,
    /// Rows left to the stream, which wrote them after the snapshot.
    pub left: usize,
}

pub fn resolve(
    shape: &Shape,
    rows: Vec<Vec<Value>>,
    noted: &HashMap<Vec<u8>, Noted>,
    target_keys: &[Vec<Value>],
) -> Resolved {
    let mut out = Resolved::default();
    if noted.is_empty() && target_keys.is_empty() {
        // Nothing happened to the chunk's keys and the target has none of its range (a
        // first copy into an empty table): the rows as read.
        out.rows = rows;
        return out;
    }
    let mut in_chunk: HashSet<Vec<u8>> = HashSet::with_capacity(rows.len());
    for mut row in rows {
        let key = shape.row_key(&row);
        match noted.get(&key) {
            None => out.rows.push(row),
            Some(Noted::Whole) => out.left += 1,
            Some(Noted::Partial(images)) => {
                for image in images {
                    overlay(&mut row, image);
                }
                out.rows.push(row);
            }
        }
        in_chunk.insert(key);
    }
    for key in target_keys {
        let form = shape.key_form(key);
        if !in_chunk.contains(&form) && !noted.contains_key(&form) {
            out.deletes.push(key.clone());
        }
    }
    out
}

/// Sets the columns a partial after-image carries.
fn overlay(row: &mut [Value], image: &[Value]) {
    for (v, new) in row.iter_mut().zip(image) {
        if !new.is_absent() {
            *v = new.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::tests::shape;

    fn row(id: i64, v: &str) -> Vec<Value> {
        vec![Value::Int(id), Value::Text(v.into())]
    }

    #[test]
    fn keys_the_stream_wrote_are_left_partial_images_laid_over_and_extras_deleted() {
        let shape = shape();
        let rows = vec![row(1, "a"), row(2, "b"), row(3, "c")];
        let mut noted = HashMap::new();
        noted.insert(shape.key_form(&[Value::Int(2)]), Noted::Whole);
        noted.insert(
            shape.key_form(&[Value::Int(3)]),
            Noted::Partial(vec![
                vec![Value::Absent, Value::Text("c1".into())],
                vec![Value::Absent, Value::Text("c2".into())],
            ]),
        );
        // Inserted by the stream after the snapshot: on the target, not in the chunk.
        noted.insert(shape.key_form(&[Value::Int(5)]), Noted::Whole);
        let target = vec![
            vec![Value::Int(1)],
            vec![Value::Int(4)],
            vec![Value::Int(5)],
            vec![Value::Int(6)],
        ];
        let r = resolve(&shape, rows, &noted, &target);
        assert_eq!(r.rows, vec![row(1, "a"), row(3, "c2")]);
        assert_eq!(r.left, 1);
        assert_eq!(r.deletes, vec![vec![Value::Int(4)], vec![Value::Int(6)]]);
    }

    #[test]
    fn a_key_read_as_unsigned_from_one_side_matches_the_other() {
        let shape = shape();
        let r = resolve(
            &shape,
            vec![row(7, "x")],
            &HashMap::new(),
            &[vec![Value::UInt(7)]],
        );
        assert!(r.deletes.is_empty(), "{r:?}");
    }
}
