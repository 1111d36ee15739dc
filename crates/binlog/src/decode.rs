//! Turns binlog rows (as `mysql_common` parses them) into [`concord_change::Value`]s.
//!
//! Invariant: decoding is driven by the column's *binlog* type and metadata, never by
//! guessing from the bytes — the same bytes are text in a utf8mb4 column and binary in a
//! VARBINARY one.

use concord_change::{SourceTable, TableName, Value};
use mysql_async::binlog::events::{OptionalMetadataField, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::Value as MyValue;
use std::sync::Arc;

/// MySQL's id of the `binary` character set: such a column holds bytes, not text.
const BINARY_CHARSET: u16 = 63;

/// How to decode one column.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnKind {
    Signed,
    /// Signed MEDIUMINT: mysql_common 0.37 does not sign-extend -8388608, so the decoder
    /// does it.
    SignedMedium,
    Unsigned,
    Float,
    Double,
    Decimal,
    Year,
    Date,
    DateTime,
    Time,
    Timestamp,
    Bit,
    Enum(Vec<String>),
    Set(Vec<String>),
    Text,
    Binary,
    Json,
}

/// A table as one TABLE_MAP event described it, with decoders for its columns.
#[derive(Clone, Debug)]
pub struct TableInfo {
    pub source: Arc<SourceTable>,
    pub kinds: Vec<ColumnKind>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("column `{column}` ({kind:?}): unexpected value {value}")]
    Unexpected {
        column: String,
        kind: ColumnKind,
        value: String,
    },
    #[error("column `{column}`: {message}")]
    Invalid { column: String, message: String },
    #[error("row has {got} columns, table map has {expected}: the source must use binlog_row_image=FULL")]
    Partial { got: usize, expected: usize },
}

impl TableInfo {
    /// Builds the decoders from the table map and the columns of a parsed row (which carry
    /// the names, primary-key flags, signedness and character sets from FULL metadata).
    pub fn new(tme: &TableMapEvent<'_>, row: &BinlogRow) -> Self {
        let (mut enums, mut sets) = (Vec::new(), Vec::new());
        for field in tme.iter_optional_meta().flatten() {
            match field {
                OptionalMetadataField::EnumStrValue(v) => {
                    for labels in v.iter_values().flatten() {
                        enums.push(
                            labels
                                .values()
                                .iter()
                                .map(|l| l.value().into_owned())
                                .collect(),
                        );
                    }
                }
                OptionalMetadataField::SetStrValue(v) => {
                    for labels in v.iter_values().flatten() {
                        sets.push(
                            labels
                                .values()
                                .iter()
                                .map(|l| l.value().into_owned())
                                .collect(),
                        );
                    }
                }
                _ => {}
            }
        }
        let (mut enums, mut sets) = (enums.into_iter(), sets.into_iter());

        let mut columns = Vec::new();
        let mut primary_key = Vec::new();
        let mut kinds = Vec::new();
        for (i, col) in row.columns_ref().iter().enumerate() {
            columns.push(col.name_str().into_owned());
            if col.flags().contains(ColumnFlags::PRI_KEY_FLAG) {
                primary_key.push(i);
            }
            let unsigned = col.flags().contains(ColumnFlags::UNSIGNED_FLAG);
            let binary = col.character_set() == BINARY_CHARSET;
            kinds.push(kind_of(
                col.column_type(),
                unsigned,
                binary,
                &mut enums,
                &mut sets,
            ));
        }
        TableInfo {
            source: Arc::new(SourceTable {
                name: TableName::new(tme.database_name(), tme.table_name()),
                columns,
                primary_key,
            }),
            kinds,
        }
    }

    /// Decodes one row image into values aligned with `source.columns`.
    pub fn decode(&self, row: BinlogRow) -> Result<Vec<Value>, DecodeError> {
        if row.len() != self.kinds.len() {
            return Err(DecodeError::Partial {
                got: row.len(),
                expected: self.kinds.len(),
            });
        }
        row.unwrap()
            .into_iter()
            .enumerate()
            .map(|(i, v)| decode_value(&self.source.columns[i], &self.kinds[i], v))
            .collect()
    }
}

fn kind_of(
    ty: ColumnType,
    unsigned: bool,
    binary: bool,
    enums: &mut impl Iterator<Item = Vec<String>>,
    sets: &mut impl Iterator<Item = Vec<String>>,
) -> ColumnKind {
    use ColumnType::*;
    match ty {
        MYSQL_TYPE_INT24 if !unsigned => ColumnKind::SignedMedium,
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG
        | MYSQL_TYPE_LONGLONG => {
            if unsigned {
                ColumnKind::Unsigned
            } else {
                ColumnKind::Signed
            }
        }
        MYSQL_TYPE_FLOAT => ColumnKind::Float,
        MYSQL_TYPE_DOUBLE => ColumnKind::Double,
        MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL => ColumnKind::Decimal,
        MYSQL_TYPE_YEAR => ColumnKind::Year,
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => ColumnKind::Date,
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => ColumnKind::DateTime,
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => ColumnKind::Time,
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => ColumnKind::Timestamp,
        MYSQL_TYPE_BIT => ColumnKind::Bit,
        MYSQL_TYPE_ENUM => ColumnKind::Enum(enums.next().unwrap_or_default()),
        MYSQL_TYPE_SET => ColumnKind::Set(sets.next().unwrap_or_default()),
        MYSQL_TYPE_JSON => ColumnKind::Json,
        MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_STRING
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
            if !binary =>
        {
            ColumnKind::Text
        }
        _ => ColumnKind::Binary,
    }
}

fn decode_value(column: &str, kind: &ColumnKind, v: BinlogValue<'_>) -> Result<Value, DecodeError> {
    let v = match v {
        BinlogValue::Value(v) => v,
        BinlogValue::Jsonb(j) => {
            let json: serde_json::Value = j
                .parse()
                .map_err(|e| DecodeError::Invalid {
                    column: column.into(),
                    message: format!("binary JSON: {e}"),
                })?
                .into();
            return Ok(Value::Json(json.to_string()));
        }
        BinlogValue::JsonDiff(_) => {
            return Err(DecodeError::Invalid {
                column: column.into(),
                message: "partial JSON update: the source must use binlog_row_value_options=''"
                    .into(),
            })
        }
    };
    if v == MyValue::NULL {
        return Ok(Value::Null);
    }
    let unexpected = |v: &MyValue| DecodeError::Unexpected {
        column: column.into(),
        kind: kind.clone(),
        value: format!("{v:?}"),
    };
    Ok(match (kind, v) {
        (ColumnKind::Signed, MyValue::Int(i)) => Value::Int(i),
        (ColumnKind::SignedMedium, MyValue::Int(i)) if i >= 1 << 23 => Value::Int(i - (1 << 24)),
        (ColumnKind::SignedMedium, MyValue::Int(i)) => Value::Int(i),
        (ColumnKind::Unsigned, MyValue::Int(i)) if i >= 0 => Value::UInt(i as u64),
        (ColumnKind::Unsigned, MyValue::UInt(u)) => Value::UInt(u),
        (ColumnKind::Float, MyValue::Float(f)) => Value::Float(f),
        (ColumnKind::Double, MyValue::Double(f)) => Value::Double(f),
        (ColumnKind::Decimal, MyValue::Bytes(b)) => Value::Decimal(utf8(column, b)?),
        // The decoder prints YEAR as 1900 + stored byte, so the zero year arrives as 1900.
        (ColumnKind::Year, MyValue::Bytes(b)) => match utf8(column, b)?.parse::<u16>() {
            Ok(1900) => Value::Year(0),
            Ok(y) => Value::Year(y),
            Err(_) => {
                return Err(DecodeError::Invalid {
                    column: column.into(),
                    message: "YEAR is not a number".into(),
                })
            }
        },
        (ColumnKind::Year, MyValue::Int(y)) => Value::Year(y as u16),
        (ColumnKind::Date, MyValue::Date(y, m, d, ..)) => Value::Date {
            year: y,
            month: m,
            day: d,
        },
        (ColumnKind::DateTime, MyValue::Date(y, mo, d, h, mi, s, us)) => Value::DateTime {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
            micros: us,
        },
        (ColumnKind::Time, MyValue::Time(neg, days, h, m, s, us)) => Value::Time {
            negative: neg,
            hours: days * 24 + u32::from(h),
            minutes: m,
            seconds: s,
            micros: us,
        },
        (ColumnKind::Timestamp, MyValue::Bytes(b)) => parse_timestamp(column, &utf8(column, b)?)?,
        (ColumnKind::Timestamp, MyValue::Int(secs)) => Value::Timestamp { secs, micros: 0 },
        (ColumnKind::Bit, MyValue::Bytes(b)) => Value::Bit(b),
        (ColumnKind::Enum(labels), MyValue::Int(i)) => Value::Enum(enum_label(column, labels, i)?),
        (ColumnKind::Set(labels), MyValue::Bytes(b)) => Value::Set(set_labels(column, labels, &b)?),
        (ColumnKind::Json, MyValue::Bytes(b)) => Value::Json(utf8(column, b)?),
        (ColumnKind::Text, MyValue::Bytes(b)) => match String::from_utf8(b) {
            Ok(s) => Value::Text(s),
            Err(e) => Value::Bytes(e.into_bytes()),
        },
        (ColumnKind::Binary, MyValue::Bytes(b)) => Value::Bytes(b),
        (_, v) => return Err(unexpected(&v)),
    })
}

fn utf8(column: &str, b: Vec<u8>) -> Result<String, DecodeError> {
    String::from_utf8(b).map_err(|_| DecodeError::Invalid {
        column: column.into(),
        message: "expected ASCII text from the decoder".into(),
    })
}

fn parse_timestamp(column: &str, s: &str) -> Result<Value, DecodeError> {
    let bad = || DecodeError::Invalid {
        column: column.into(),
        message: format!("TIMESTAMP `{s}` is not SECONDS[.MICROS]"),
    };
    let (secs, micros) = match s.split_once('.') {
        Some((a, b)) => (a, b.parse::<u32>().map_err(|_| bad())?),
        None => (s, 0),
    };
    Ok(Value::Timestamp {
        secs: secs.parse().map_err(|_| bad())?,
        micros,
    })
}

/// ENUM values are 1-based indexes into the labels; 0 is the empty "error" value MySQL
/// stores for an invalid string in non-strict mode.
pub(crate) fn enum_label(
    column: &str,
    labels: &[String],
    index: i64,
) -> Result<String, DecodeError> {
    if index == 0 {
        return Ok(String::new());
    }
    labels
        .get((index - 1) as usize)
        .cloned()
        .ok_or_else(|| DecodeError::Invalid {
            column: column.into(),
            message: format!(
                "ENUM index {index} but the table map lists {} labels (binlog_row_metadata=FULL needed)",
                labels.len()
            ),
        })
}

/// SET values are a little-endian bitmask over the labels.
pub(crate) fn set_labels(
    column: &str,
    labels: &[String],
    mask: &[u8],
) -> Result<Vec<String>, DecodeError> {
    let mut out = Vec::new();
    for (byte_idx, byte) in mask.iter().enumerate() {
        for bit in 0..8 {
            if byte & (1 << bit) != 0 {
                let i = byte_idx * 8 + bit;
                let label = labels.get(i).ok_or_else(|| DecodeError::Invalid {
                    column: column.into(),
                    message: format!(
                        "SET bit {i} but the table map lists {} labels",
                        labels.len()
                    ),
                })?;
                out.push(label.clone());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn set_bitmask_maps_to_labels_in_order() {
        let l = labels(&["a", "b", "c", "d", "e", "f", "g", "h", "i"]);
        assert_eq!(
            set_labels("s", &l, &[0b0000_0101, 0b1]).unwrap(),
            labels(&["a", "c", "i"])
        );
        assert_eq!(set_labels("s", &l, &[0]).unwrap(), Vec::<String>::new());
        assert!(set_labels("s", &l[..2], &[0b100]).is_err());
    }

    #[test]
    fn enum_index_is_one_based_and_zero_is_empty() {
        let l = labels(&["small", "large"]);
        assert_eq!(enum_label("e", &l, 2).unwrap(), "large");
        assert_eq!(enum_label("e", &l, 0).unwrap(), "");
        assert!(enum_label("e", &l, 3).is_err());
    }

    #[test]
    fn timestamps_keep_microseconds() {
        assert_eq!(
            parse_timestamp("t", "1700000000.000042").unwrap(),
            Value::Timestamp {
                secs: 1_700_000_000,
                micros: 42
            }
        );
        assert_eq!(
            parse_timestamp("t", "0").unwrap(),
            Value::Timestamp { secs: 0, micros: 0 }
        );
        assert!(parse_timestamp("t", "x.1").is_err());
    }

    #[test]
    fn values_decode_by_column_kind() {
        let d = |k: ColumnKind, v: MyValue| decode_value("c", &k, BinlogValue::Value(v));
        assert_eq!(
            d(ColumnKind::Unsigned, MyValue::UInt(u64::MAX)).unwrap(),
            Value::UInt(u64::MAX)
        );
        assert_eq!(
            d(ColumnKind::Unsigned, MyValue::Int(7)).unwrap(),
            Value::UInt(7)
        );
        assert_eq!(
            d(ColumnKind::SignedMedium, MyValue::Int(8_388_608)).unwrap(),
            Value::Int(-8_388_608)
        );
        assert_eq!(
            d(ColumnKind::SignedMedium, MyValue::Int(8_388_607)).unwrap(),
            Value::Int(8_388_607)
        );
        assert_eq!(
            d(ColumnKind::SignedMedium, MyValue::Int(-1)).unwrap(),
            Value::Int(-1)
        );
        assert_eq!(
            d(ColumnKind::Year, MyValue::Bytes(b"1900".to_vec())).unwrap(),
            Value::Year(0)
        );
        assert_eq!(
            d(ColumnKind::Year, MyValue::Bytes(b"2155".to_vec())).unwrap(),
            Value::Year(2155)
        );
        assert_eq!(
            d(ColumnKind::Text, MyValue::Bytes("😀".as_bytes().to_vec())).unwrap(),
            Value::Text("😀".into())
        );
        assert_eq!(
            d(ColumnKind::Binary, MyValue::Bytes(vec![0xff])).unwrap(),
            Value::Bytes(vec![0xff])
        );
        assert_eq!(d(ColumnKind::Decimal, MyValue::NULL).unwrap(), Value::Null);
        assert!(d(ColumnKind::Date, MyValue::Int(3)).is_err());
    }
}
