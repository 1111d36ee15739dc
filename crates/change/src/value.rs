//! Column values as concord carries them between the source and the target.
//!
//! Each variant keeps the source's own representation (DECIMAL as its exact text, TIMESTAMP
//! as UTC epoch seconds + microseconds, ENUM/SET as labels, text in a character set other
//! than UTF-8 as its stored bytes) so that writing a value back, or comparing it later,
//! never depends on a lossy conversion.

use crate::Charset;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Datelike, Timelike};
use mysql_async::Value as MyValue;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One column value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Value {
    Null,
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    /// Exact decimal text as the server printed it, scale included (`"1.50"`).
    Decimal(String),
    /// Character data from a utf8mb3/utf8mb4 column.
    Text(String),
    /// Character data in any other character set: the bytes as the source stored them.
    /// The target server converts them when its column has another set.
    Chars {
        charset: Charset,
        #[serde(with = "b64")]
        bytes: Vec<u8>,
    },
    /// Binary data (BINARY, VARBINARY, BLOB).
    Bytes(#[serde(with = "b64")] Vec<u8>),
    Date {
        year: u16,
        month: u8,
        day: u8,
    },
    DateTime {
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
        micros: u32,
    },
    /// TIME, which is a duration: up to ±838:59:59.999999.
    Time {
        negative: bool,
        hours: u32,
        minutes: u8,
        seconds: u8,
        micros: u32,
    },
    /// TIMESTAMP as UTC seconds since the epoch; `0.0` is the zero timestamp.
    Timestamp {
        secs: i64,
        micros: u32,
    },
    Year(u16),
    Enum(String),
    /// An ENUM value stored by index with no label: 0, the "error value" a non-strict
    /// session stores for an invalid string (it reads as `''` but is not the label `''`).
    EnumIndex(u16),
    Set(Vec<String>),
    /// A SET value with bits the column's definition has no label for: the bitmask.
    SetBits(u64),
    /// BIT(n), big-endian, `ceil(n/8)` bytes.
    Bit(#[serde(with = "b64")] Vec<u8>),
    /// JSON document text (MariaDB's JSON is LONGTEXT).
    Json(String),
    /// Not in this row image: the source logged a partial image (`binlog_row_image` MINIMAL
    /// or NOBLOB) without this column. Never written, never compared.
    Absent,
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Value::Absent)
    }

    /// The character set of text that is not UTF-8; such a value is bound as its bytes and
    /// the statement must say which set they are in.
    pub fn charset(&self) -> Option<Charset> {
        match self {
            Value::Chars { charset, .. } => Some(*charset),
            _ => None,
        }
    }

    /// The value to bind as a statement parameter on a MySQL-family target whose session
    /// time zone is UTC (`SET time_zone = '+00:00'`), which the applier guarantees.
    /// [`Value::Chars`] binds its bytes base64-encoded: the placeholder must be its
    /// character set's [`Charset::placeholder`]. ENUM and SET values without labels bind
    /// as their stored number.
    pub fn to_mysql(&self) -> MyValue {
        match self {
            // Absent values are never bound (writes name only the columns an image has).
            Value::Null | Value::Absent => MyValue::NULL,
            Value::Int(v) => MyValue::Int(*v),
            Value::UInt(v) => MyValue::UInt(*v),
            Value::Float(v) => MyValue::Float(*v),
            Value::Double(v) => MyValue::Double(*v),
            Value::Decimal(s) | Value::Text(s) | Value::Enum(s) | Value::Json(s) => {
                MyValue::Bytes(s.as_bytes().to_vec())
            }
            Value::Bytes(b) | Value::Bit(b) => MyValue::Bytes(b.clone()),
            Value::Chars { bytes, .. } => MyValue::Bytes(B64.encode(bytes).into_bytes()),
            Value::EnumIndex(i) => MyValue::UInt(u64::from(*i)),
            Value::SetBits(b) => MyValue::UInt(*b),
            Value::Date { year, month, day } => MyValue::Date(*year, *month, *day, 0, 0, 0, 0),
            Value::DateTime {
                year,
                month,
                day,
                hour,
                minute,
                second,
                micros,
            } => MyValue::Date(*year, *month, *day, *hour, *minute, *second, *micros),
            Value::Time {
                negative,
                hours,
                minutes,
                seconds,
                micros,
            } => MyValue::Time(
                *negative,
                hours / 24,
                (hours % 24) as u8,
                *minutes,
                *seconds,
                *micros,
            ),
            Value::Timestamp { secs, micros } => timestamp_to_mysql(*secs, *micros),
            Value::Year(y) => MyValue::UInt(u64::from(*y)),
            Value::Set(labels) => MyValue::Bytes(labels.join(",").into_bytes()),
        }
    }

    /// A stable byte encoding used to recognise the *same* key twice (exact equality, not
    /// collation equality — callers must only use it where exact equality is enough).
    pub fn key_bytes(&self, out: &mut Vec<u8>) {
        // The usual key types get a tagged binary form; the rest the serde_json of the
        // tagged enum, which starts with `{` or `"` — never one of these tags.
        match self {
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(&i.to_be_bytes());
            }
            Value::UInt(u) => {
                out.push(b'u');
                out.extend_from_slice(&u.to_be_bytes());
            }
            Value::Text(s) => {
                out.push(b't');
                out.extend_from_slice(&(s.len() as u64).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Value::Bytes(b) => {
                out.push(b'b');
                out.extend_from_slice(&(b.len() as u64).to_be_bytes());
                out.extend_from_slice(b);
            }
            Value::Chars { charset, bytes } => {
                out.push(b'c');
                out.extend_from_slice(charset.name().as_bytes());
                out.push(0);
                out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
                out.extend_from_slice(bytes);
            }
            _ => serde_json::to_writer(&mut *out, self).expect("values always serialize"),
        }
        out.push(0);
    }
}

fn timestamp_to_mysql(secs: i64, micros: u32) -> MyValue {
    if secs == 0 && micros == 0 {
        return MyValue::Date(0, 0, 0, 0, 0, 0, 0);
    }
    // Out of chrono's range cannot come from a real TIMESTAMP column; keep the raw number
    // so the target rejects it visibly rather than storing a wrong time.
    utc_datetime(secs, micros)
        .unwrap_or_else(|| MyValue::Bytes(format!("{secs}.{micros:06}").into_bytes()))
}

/// An instant (seconds since the epoch + microseconds) as a DATETIME parameter in UTC, for
/// a session whose time zone is UTC; `None` outside the representable range.
pub fn utc_datetime(secs: i64, micros: u32) -> Option<MyValue> {
    let t = DateTime::from_timestamp(secs, micros * 1000)?;
    Some(MyValue::Date(
        t.year() as u16,
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
        micros,
    ))
}

mod b64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_binds_as_utc_datetime() {
        let v = Value::Timestamp {
            secs: 1_700_000_000,
            micros: 123_456,
        };
        assert_eq!(
            v.to_mysql(),
            MyValue::Date(2023, 11, 14, 22, 13, 20, 123_456)
        );
        assert_eq!(
            Value::Timestamp { secs: 0, micros: 0 }.to_mysql(),
            MyValue::Date(0, 0, 0, 0, 0, 0, 0)
        );
    }

    #[test]
    fn long_time_splits_into_days() {
        let v = Value::Time {
            negative: true,
            hours: 838,
            minutes: 59,
            seconds: 59,
            micros: 999_999,
        };
        assert_eq!(v.to_mysql(), MyValue::Time(true, 34, 22, 59, 59, 999_999));
    }

    #[test]
    fn serde_round_trip_keeps_every_variant() {
        let values = vec![
            Value::Null,
            Value::UInt(u64::MAX),
            Value::Int(i64::MIN),
            Value::Decimal("-12345678901234567890.123456789012345678901234567890".into()),
            Value::Bytes(vec![0, 255, 10]),
            Value::Set(vec!["a".into(), "c".into()]),
            Value::Bit(vec![1, 0]),
            Value::Chars {
                charset: Charset::from_name("latin1").unwrap(),
                bytes: vec![0xE9, 0],
            },
            Value::EnumIndex(0),
            Value::SetBits(1 << 40),
            Value::Absent,
            Value::Double(f64::MAX),
            Value::Float(-1.5),
        ];
        let json = serde_json::to_string(&values).unwrap();
        let back: Vec<Value> = serde_json::from_str(&json).unwrap();
        assert_eq!(values, back);
    }

    #[test]
    fn key_bytes_distinguish_types_and_values() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        Value::Int(1).key_bytes(&mut a);
        Value::UInt(1).key_bytes(&mut b);
        assert_ne!(a, b);
        let (mut c, mut d) = (Vec::new(), Vec::new());
        Value::Text("x".into()).key_bytes(&mut c);
        Value::Text("x".into()).key_bytes(&mut d);
        assert_eq!(c, d);
        let key = |vs: &[Value]| {
            let mut out = Vec::new();
            vs.iter().for_each(|v| v.key_bytes(&mut out));
            out
        };
        // Composite keys cannot run into each other, nor text into bytes or other types.
        assert_ne!(
            key(&[Value::Text("a\0".into()), Value::Text("b".into())]),
            key(&[Value::Text("a".into()), Value::Text("\0b".into())])
        );
        assert_ne!(
            key(&[Value::Text("x".into())]),
            key(&[Value::Bytes(b"x".to_vec())])
        );
        assert_ne!(key(&[Value::Int(7)]), key(&[Value::Decimal("7".into())]));
        assert_ne!(key(&[Value::Int(-1)]), key(&[Value::Int(1)]));
    }
}
