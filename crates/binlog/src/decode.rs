//! Turns binlog rows (as `mysql_common` parses them) into [`concord_change::Value`]s.
//!
//! Invariants: decoding is driven by the column's *binlog* type and metadata, never by
//! guessing from the bytes — the same bytes are text in a utf8mb4 column, latin1 text in a
//! latin1 one and binary in a VARBINARY one; and text keeps the bytes the source stored,
//! with the column's character set from the table map (never re-encoded here).

use concord_change::{Charset, SourceTable, TableName, Value};
use mysql_async::binlog::events::{OptionalMetaExtractor, OptionalMetadataField, TableMapEvent};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_async::Value as MyValue;
use mysql_common::io::ParseBuf;
use std::collections::HashMap;
use std::sync::Arc;

/// The source server's collation ids and the character set of each
/// (`information_schema.COLLATIONS`): the table map names a column's collation by id.
pub type Collations = HashMap<u16, Charset>;

/// MySQL's id of the `binary` collation: such a column holds bytes, not text.
const BINARY_COLLATION: u16 = 63;

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
    /// The labels, decoded from the column's character set; `None` for a label that has
    /// no exact text (its values travel as their index).
    Enum(Vec<Option<String>>),
    Set(Vec<Option<String>>),
    Text(Charset),
    Binary,
    Json,
    /// A character column whose collation id the source did not list: its values cannot be
    /// read without guessing, so they are refused (recorded), never altered.
    UnknownCollation(u16),
}

/// A table as one TABLE_MAP event described it, with decoders for its columns.
#[derive(Clone, Debug)]
pub struct TableInfo {
    pub source: Arc<SourceTable>,
    pub kinds: Vec<ColumnKind>,
    /// How each column's values are laid out in a rows event (read once per table map).
    wire: Vec<Wire>,
}

/// A column's binlog type, its table-map metadata and signedness: what parsing one of its
/// values takes.
#[derive(Clone, Debug)]
struct Wire {
    ty: ColumnType,
    meta: Vec<u8>,
    unsigned: bool,
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
    #[error("row image has {got} columns, its column bitmap names {expected}")]
    Partial { got: usize, expected: usize },
    #[error("table map: {0}")]
    TableMap(String),
}

impl TableInfo {
    /// Builds the decoders from a table map and its optional metadata (FULL row metadata:
    /// column names, primary key, signedness, character sets, ENUM/SET labels).
    pub fn new(tme: &TableMapEvent<'_>, collations: &Collations) -> Result<Self, DecodeError> {
        let bad = |e: std::io::Error| DecodeError::TableMap(e.to_string());
        let meta = OptionalMetaExtractor::new(tme.iter_optional_meta()).map_err(bad)?;
        let (mut enums, mut sets) = labels(tme, collations)?;
        let mut signedness = meta.iter_signedness();
        let mut charsets = meta.iter_charset();
        let mut names = meta.iter_column_name();
        let primary_key = meta
            .iter_primary_key()
            .map(|k| k.map(|i| i as usize))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;

        let count = tme.columns_count() as usize;
        let mut columns = Vec::with_capacity(count);
        let mut kinds = Vec::with_capacity(count);
        let mut wire = Vec::with_capacity(count);
        for i in 0..count {
            let ty = tme
                .get_column_type(i)
                .map_err(|e| DecodeError::TableMap(format!("column {i}: {e}")))?
                .ok_or_else(|| DecodeError::TableMap(format!("column {i} has no type")))?;
            let name = match names.next() {
                Some(n) => n.map_err(bad)?.name().into_owned(),
                None => format!("@{}", i + 1),
            };
            let unsigned = ty.is_numeric_type() && signedness.next().unwrap_or(false);
            let collation = if ty.is_character_type() {
                charsets.next().transpose().map_err(bad)?
            } else {
                None
            };
            kinds.push(kind_of(
                ty, unsigned, collation, collations, &mut enums, &mut sets,
            ));
            columns.push(name);
            wire.push(Wire {
                ty,
                meta: tme.get_column_metadata(i).unwrap_or(&[]).to_vec(),
                unsigned,
            });
        }
        Ok(TableInfo {
            source: Arc::new(SourceTable {
                name: TableName::new(tme.database_name(), tme.table_name()),
                columns,
                primary_key,
            }),
            kinds,
            wire,
        })
    }

    /// Parses one row image at `buf` and decodes it into values aligned with
    /// `source.columns`; `present` is the image's column bitmap (the others are
    /// [`Value::Absent`]); `shared`: a MySQL partial-update event's after-image, which
    /// begins with the value options. The values are read with mysql_common's value parser,
    /// driven by this table map's column types and metadata read once, and turned into
    /// change-model values straight from the event's bytes.
    ///
    /// The outer error is a parse error (the image's end is unknown: nothing after it can
    /// be read); the inner one a value that cannot be decoded (the image was read whole,
    /// the next one can be).
    pub fn decode_image<'a>(
        &'a self,
        buf: &mut ParseBuf<'a>,
        present: &[bool],
        shared: bool,
    ) -> std::io::Result<Result<Vec<Value>, DecodeError>> {
        let mut partial = if shared {
            partial_json(buf, &self.wire)?
        } else {
            None
        };
        let count = present.iter().filter(|p| **p).count();
        let nulls: &[u8] = buf.parse(count.div_ceil(8))?;
        let mut out = Vec::with_capacity(self.kinds.len());
        let mut first_error = None;
        let mut image_index = 0;
        for (i, (kind, wire)) in self.kinds.iter().zip(&self.wire).enumerate() {
            let is_partial = wire.ty == ColumnType::MYSQL_TYPE_JSON
                && partial
                    .as_mut()
                    .is_some_and(|bits| bits.next().unwrap_or(false));
            if !present.get(i).copied().unwrap_or(false) {
                out.push(Value::Absent);
                continue;
            }
            let null = nulls[image_index / 8] & (1 << (image_index % 8)) != 0;
            image_index += 1;
            if null {
                out.push(Value::Null);
                continue;
            }
            let raw: BinlogValue<'_> =
                buf.parse((wire.ty, wire.meta.as_slice(), wire.unsigned, is_partial))?;
            match decode_value(&self.source.columns[i], kind, raw) {
                Ok(v) => out.push(v),
                Err(e) => {
                    first_error.get_or_insert(e);
                    out.push(Value::Absent);
                }
            }
        }
        Ok(match first_error {
            None => Ok(out),
            Some(e) => Err(e),
        })
    }
}

/// The value options of a partial-update after-image (MySQL's `binlog_row_value_options =
/// PARTIAL_JSON`): which JSON columns carry a diff rather than a document, one bit per JSON
/// column of the table in column order.
fn partial_json(
    buf: &mut ParseBuf<'_>,
    wire: &[Wire],
) -> std::io::Result<Option<std::vec::IntoIter<bool>>> {
    use mysql_async::binlog::row::BinlogRowValueOptions;
    use mysql_common::misc::raw::int::{LenEnc, RawInt};
    let options = *buf.parse::<RawInt<LenEnc>>(())?;
    if options & BinlogRowValueOptions::PARTIAL_JSON_UPDATES as u64 == 0 {
        return Ok(None);
    }
    let json = wire
        .iter()
        .filter(|w| w.ty == ColumnType::MYSQL_TYPE_JSON)
        .count();
    let bits: &[u8] = buf.parse(json.div_ceil(8))?;
    Ok(Some(
        (0..json)
            .map(|i| bits[i / 8] & (1 << (i % 8)) != 0)
            .collect::<Vec<_>>()
            .into_iter(),
    ))
}

/// The ENUM and SET labels of the table map, in column order, decoded in each column's
/// character set.
type Labels = std::vec::IntoIter<Vec<Option<String>>>;

fn labels(
    tme: &TableMapEvent<'_>,
    collations: &Collations,
) -> Result<(Labels, Labels), DecodeError> {
    let bad = |e: std::io::Error| DecodeError::TableMap(e.to_string());
    let meta = OptionalMetaExtractor::new(tme.iter_optional_meta()).map_err(bad)?;
    // One character set per ENUM or SET column, in column order.
    let mut charsets = meta.iter_enum_and_set_charset();
    let mut enum_sets = Vec::new();
    let mut set_sets = Vec::new();
    for i in 0..tme.columns_count() as usize {
        match tme.get_column_type(i) {
            Ok(Some(ColumnType::MYSQL_TYPE_ENUM)) => {
                enum_sets.push(next_charset(&mut charsets, collations)?)
            }
            Ok(Some(ColumnType::MYSQL_TYPE_SET)) => {
                set_sets.push(next_charset(&mut charsets, collations)?)
            }
            _ => {}
        }
    }
    let label = |cs: Option<Charset>, raw: &[u8]| cs.and_then(|cs| cs.decode(raw));
    let (mut enums, mut sets) = (Vec::new(), Vec::new());
    let (mut enum_cs, mut set_cs) = (enum_sets.into_iter(), set_sets.into_iter());
    for field in tme.iter_optional_meta() {
        match field.map_err(bad)? {
            OptionalMetadataField::EnumStrValue(v) => {
                for column in v.iter_values() {
                    let column = column.map_err(bad)?;
                    let cs = enum_cs.next().flatten();
                    enums.push(
                        column
                            .values()
                            .iter()
                            .map(|l| label(cs, l.value_raw()))
                            .collect(),
                    );
                }
            }
            OptionalMetadataField::SetStrValue(v) => {
                for column in v.iter_values() {
                    let column = column.map_err(bad)?;
                    let cs = set_cs.next().flatten();
                    sets.push(
                        column
                            .values()
                            .iter()
                            .map(|l| label(cs, l.value_raw()))
                            .collect(),
                    );
                }
            }
            _ => {}
        }
    }
    Ok((enums.into_iter(), sets.into_iter()))
}

fn next_charset(
    charsets: &mut impl Iterator<Item = std::io::Result<u16>>,
    collations: &Collations,
) -> Result<Option<Charset>, DecodeError> {
    let id = charsets
        .next()
        .transpose()
        .map_err(|e| DecodeError::TableMap(e.to_string()))?;
    Ok(id.and_then(|id| collations.get(&id).copied()))
}

fn kind_of(
    ty: ColumnType,
    unsigned: bool,
    collation: Option<u16>,
    collations: &Collations,
    enums: &mut Labels,
    sets: &mut Labels,
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
        | MYSQL_TYPE_LONG_BLOB => match collation {
            None | Some(BINARY_COLLATION) => ColumnKind::Binary,
            Some(id) => match collations.get(&id) {
                Some(cs) if *cs == Charset::BINARY => ColumnKind::Binary,
                Some(cs) => ColumnKind::Text(*cs),
                None => ColumnKind::UnknownCollation(id),
            },
        },
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
        (ColumnKind::Enum(labels), MyValue::Int(i)) => enum_value(labels, i),
        (ColumnKind::Set(labels), MyValue::Bytes(b)) => set_value(labels, &b),
        (ColumnKind::Json, MyValue::Bytes(b)) => Value::Json(utf8(column, b)?),
        (ColumnKind::Text(cs), MyValue::Bytes(b)) if cs.is_utf8() => match String::from_utf8(b) {
            Ok(s) => Value::Text(s),
            // Not valid UTF-8 after all: keep the bytes, labelled, rather than alter them.
            Err(e) => Value::Chars {
                charset: *cs,
                bytes: e.into_bytes(),
            },
        },
        (ColumnKind::Text(cs), MyValue::Bytes(b)) => Value::Chars {
            charset: *cs,
            bytes: b,
        },
        (ColumnKind::UnknownCollation(id), _) => {
            return Err(DecodeError::Invalid {
                column: column.into(),
                message: format!(
                    "collation id {id} is not in the source's information_schema.COLLATIONS"
                ),
            })
        }
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

/// ENUM values are 1-based indexes into the labels. Index 0 — the "error value" a
/// non-strict session stores for an invalid string — and an index without a readable label
/// travel as the index itself, so the target stores the same value.
pub(crate) fn enum_value(labels: &[Option<String>], index: i64) -> Value {
    let label = usize::try_from(index)
        .ok()
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| labels.get(i))
        .and_then(Option::as_ref);
    match label {
        Some(l) => Value::Enum(l.clone()),
        None => Value::EnumIndex(index.clamp(0, i64::from(u16::MAX)) as u16),
    }
}

/// SET values are a little-endian bitmask over the labels. A bit without a readable label
/// makes the whole value travel as its bitmask.
pub(crate) fn set_value(labels: &[Option<String>], mask: &[u8]) -> Value {
    let mut out = Vec::new();
    for (byte_idx, byte) in mask.iter().enumerate() {
        for bit in 0..8 {
            if byte & (1 << bit) != 0 {
                match labels.get(byte_idx * 8 + bit).and_then(Option::as_ref) {
                    Some(label) => out.push(label.clone()),
                    None => return Value::SetBits(mask_bits(mask)),
                }
            }
        }
    }
    Value::Set(out)
}

fn mask_bits(mask: &[u8]) -> u64 {
    mask.iter()
        .take(8)
        .enumerate()
        .fold(0, |acc, (i, b)| acc | (u64::from(*b) << (8 * i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[&str]) -> Vec<Option<String>> {
        v.iter().map(|s| Some(s.to_string())).collect()
    }

    fn set(v: &[&str]) -> Value {
        Value::Set(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn set_bitmask_maps_to_labels_in_order() {
        let l = labels(&["a", "b", "c", "d", "e", "f", "g", "h", "i"]);
        assert_eq!(set_value(&l, &[0b0000_0101, 0b1]), set(&["a", "c", "i"]));
        assert_eq!(set_value(&l, &[0]), set(&[]));
        // A bit the definition has no label for: the stored bitmask travels as it is.
        assert_eq!(set_value(&l[..2], &[0b101]), Value::SetBits(5));
        assert_eq!(set_value(&l, &[0, 0b10]), Value::SetBits(0x200));
    }

    #[test]
    fn enum_index_is_one_based_and_zero_is_its_own_value() {
        let l = labels(&["", "large"]);
        assert_eq!(enum_value(&l, 2), Value::Enum("large".into()));
        // Index 1 is the label '' — not the same stored value as index 0.
        assert_eq!(enum_value(&l, 1), Value::Enum(String::new()));
        assert_eq!(enum_value(&l, 0), Value::EnumIndex(0));
        assert_eq!(enum_value(&l, 3), Value::EnumIndex(3));
        assert_eq!(
            enum_value(&[None], 1),
            Value::EnumIndex(1),
            "unreadable label"
        );
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
            d(
                ColumnKind::Text(Charset::UTF8MB4),
                MyValue::Bytes("😀".as_bytes().to_vec())
            )
            .unwrap(),
            Value::Text("😀".into())
        );
        let latin1 = Charset::from_name("latin1").unwrap();
        assert_eq!(
            d(ColumnKind::Text(latin1), MyValue::Bytes(vec![0xC3, 0xA9])).unwrap(),
            Value::Chars {
                charset: latin1,
                bytes: vec![0xC3, 0xA9]
            },
            "latin1 bytes stay latin1 bytes, even when they look like UTF-8"
        );
        assert!(d(ColumnKind::UnknownCollation(999), MyValue::Bytes(vec![1])).is_err());
        assert_eq!(
            d(ColumnKind::Binary, MyValue::Bytes(vec![0xff])).unwrap(),
            Value::Bytes(vec![0xff])
        );
        assert_eq!(d(ColumnKind::Decimal, MyValue::NULL).unwrap(), Value::Null);
        assert!(d(ColumnKind::Date, MyValue::Int(3)).is_err());
    }
}
