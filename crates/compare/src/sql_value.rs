//! Rows read with SQL, as change-model values: so that a row read from the target (or the
//! source) can be compared with a binlog after-image, and shown in a mismatch record in the
//! same form as the change that led to it.
//!
//! Invariants: the connection that read the value had `time_zone = '+00:00'`, so a
//! TIMESTAMP arrives as its UTC wall time and becomes the instant it is; text arrives as
//! utf8mb4 (the server converts), unless it was read as its stored bytes
//! (`CAST(col AS BINARY)`) and the caller says in which character set they are.

use chrono::NaiveDate;
use concord_change::{Charset, Value};
use mysql_async::Value as MyValue;

/// Converts one value read with the binary protocol from a column whose
/// `information_schema.COLUMNS.DATA_TYPE` is `data_type`, as utf8mb4 text.
pub fn from_sql(v: MyValue, data_type: &str) -> Value {
    from_sql_in(v, data_type, None)
}

/// As [`from_sql`]; `stored`: text was read as its stored bytes, in this character set.
pub fn from_sql_in(v: MyValue, data_type: &str, stored: Option<Charset>) -> Value {
    match v {
        MyValue::NULL => Value::Null,
        MyValue::Int(i) => match data_type {
            "year" => Value::Year(i as u16),
            _ => Value::Int(i),
        },
        MyValue::UInt(u) => match data_type {
            "year" => Value::Year(u as u16),
            _ => Value::UInt(u),
        },
        MyValue::Float(f) => Value::Float(f),
        MyValue::Double(d) => match data_type {
            "float" => Value::Float(d as f32),
            _ => Value::Double(d),
        },
        MyValue::Bytes(b) => match stored {
            Some(cs) => stored_text(b, data_type, cs),
            None => bytes(b, data_type),
        },
        MyValue::Date(y, mo, d, h, mi, s, us) => {
            let wall = Value::DateTime {
                year: y,
                month: mo,
                day: d,
                hour: h,
                minute: mi,
                second: s,
                micros: us,
            };
            match data_type {
                "date" => Value::Date {
                    year: y,
                    month: mo,
                    day: d,
                },
                // Not a valid calendar time: keep what was read, it will differ visibly.
                "timestamp" => timestamp(y, mo, d, h, mi, s, us).unwrap_or(wall),
                _ => wall,
            }
        }
        MyValue::Time(negative, days, h, mi, s, us) => Value::Time {
            negative,
            hours: days * 24 + u32::from(h),
            minutes: mi,
            seconds: s,
            micros: us,
        },
    }
}

fn bytes(b: Vec<u8>, data_type: &str) -> Value {
    let text = |b: Vec<u8>| match String::from_utf8(b) {
        Ok(s) => Value::Text(s),
        Err(e) => Value::Bytes(e.into_bytes()),
    };
    match data_type {
        "decimal" => match String::from_utf8(b) {
            Ok(s) => Value::Decimal(s),
            Err(e) => Value::Bytes(e.into_bytes()),
        },
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => Value::Bytes(b),
        "bit" => Value::Bit(b),
        "enum" => match String::from_utf8(b) {
            Ok(s) => Value::Enum(s),
            Err(e) => Value::Bytes(e.into_bytes()),
        },
        "set" => match String::from_utf8(b) {
            Ok(s) if s.is_empty() => Value::Set(Vec::new()),
            Ok(s) => Value::Set(s.split(',').map(str::to_owned).collect()),
            Err(e) => Value::Bytes(e.into_bytes()),
        },
        "json" => match String::from_utf8(b) {
            Ok(s) => Value::Json(s),
            Err(e) => Value::Bytes(e.into_bytes()),
        },
        // Integers, floats and the like arrive as text only through the text protocol;
        // keep the text, which the comparison reads as a number.
        _ => text(b),
    }
}

/// Character data read as its stored bytes in `cs` (not UTF-8).
fn stored_text(b: Vec<u8>, data_type: &str, cs: Charset) -> Value {
    let labels = |b: Vec<u8>| cs.decode(&b).ok_or(b);
    match data_type {
        "enum" => match labels(b) {
            Ok(s) => Value::Enum(s),
            Err(bytes) => Value::Chars { charset: cs, bytes },
        },
        "set" => match labels(b) {
            Ok(s) if s.is_empty() => Value::Set(Vec::new()),
            Ok(s) => Value::Set(s.split(',').map(str::to_owned).collect()),
            Err(bytes) => Value::Chars { charset: cs, bytes },
        },
        _ => Value::Chars {
            charset: cs,
            bytes: b,
        },
    }
}

/// A TIMESTAMP read in a UTC session as the instant it is; `None` if the wall time is not
/// a valid calendar time.
#[allow(clippy::too_many_arguments)]
fn timestamp(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, us: u32) -> Option<Value> {
    if y == 0 && mo == 0 && d == 0 {
        return Some(Value::Timestamp { secs: 0, micros: 0 });
    }
    let secs = NaiveDate::from_ymd_opt(i32::from(y), u32::from(mo), u32::from(d))?
        .and_hms_opt(u32::from(h), u32::from(mi), u32::from(s))?
        .and_utc()
        .timestamp();
    Some(Value::Timestamp { secs, micros: us })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_in_utc_become_instants() {
        assert_eq!(
            from_sql(
                MyValue::Date(2023, 11, 14, 22, 13, 20, 123_456),
                "timestamp"
            ),
            Value::Timestamp {
                secs: 1_700_000_000,
                micros: 123_456
            }
        );
        assert_eq!(
            from_sql(MyValue::Date(0, 0, 0, 0, 0, 0, 0), "timestamp"),
            Value::Timestamp { secs: 0, micros: 0 }
        );
    }

    #[test]
    fn text_kinds_follow_the_column_type() {
        assert_eq!(
            from_sql(MyValue::Bytes(b"1.50".to_vec()), "decimal"),
            Value::Decimal("1.50".into())
        );
        assert_eq!(
            from_sql(MyValue::Bytes(b"a,c".to_vec()), "set"),
            Value::Set(vec!["a".into(), "c".into()])
        );
        assert_eq!(
            from_sql(MyValue::Bytes(vec![0xff, 0]), "varchar"),
            Value::Bytes(vec![0xff, 0])
        );
        assert_eq!(
            from_sql(MyValue::Time(true, 34, 22, 59, 59, 1), "time"),
            Value::Time {
                negative: true,
                hours: 838,
                minutes: 59,
                seconds: 59,
                micros: 1
            }
        );
    }
}
