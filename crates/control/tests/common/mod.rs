//! What the control store's integration tests share.

use concord_change::{Position, TableName, Value};
use concord_control::{ColumnDiff, Detector, Mismatch, MismatchKind};

/// A checksum's record of a difference in column `v` of `table`'s row `id`.
pub fn record(table: &TableName, id: i64) -> Mismatch {
    Mismatch {
        table: table.clone(),
        key: vec![("id".into(), Value::Int(id))],
        kind: MismatchKind::ColumnsDiffer,
        columns: vec![ColumnDiff {
            column: "v".into(),
            source: Value::Int(1),
            target: Value::Int(2),
        }],
        position: Position::new("mysql-bin.000001", 4),
        detected_by: Detector::Checksum,
        expected: None,
        source_row: None,
        target_row: None,
    }
}
