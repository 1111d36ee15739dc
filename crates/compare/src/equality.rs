//! Type-aware equality between a source value (binlog after-image or a row read from the
//! source) and a target value: the rules of `docs/VERIFY.md`.
//!
//! Invariant: two values are equal only if the target stores what the source stores, up
//! to representation — a different DECIMAL scale, a wider integer type, JSON key order or
//! a CHAR column's padding are representation; a changed digit, a case change in a string
//! or a different instant are not. Collations are deliberately not applied: an exact copy
//! has the same characters, so `'Ä'` vs `'A'` is a difference even where the target's
//! collation would call them equal. Text of different character sets is equal when it is
//! the same characters; of one character set, when it is the same bytes.

use concord_change::{utc_datetime, Charset, Value};
use mysql_async::Value as MyValue;
use std::borrow::Cow;

/// Whether `source` and `target` hold the same data for a target column of type
/// `target_type` (`information_schema.COLUMNS.DATA_TYPE`). A source value the change did
/// not carry ([`Value::Absent`], a partial row image) is not compared.
pub fn same(source: &Value, target: &Value, target_type: &str) -> bool {
    // The common cases first, without building canonical forms: integers compare by value,
    // and byte-identical strings are equal under every rule below.
    match (source, target) {
        (Value::Absent, _) => return true,
        (Value::Null, Value::Null) => return true,
        (Value::Null, _) | (_, Value::Null) => return false,
        (Value::Int(a), Value::Int(b)) => return a == b,
        (Value::UInt(a), Value::UInt(b)) => return a == b,
        (Value::Int(i), Value::UInt(u)) | (Value::UInt(u), Value::Int(i)) => {
            return u64::try_from(*i).is_ok_and(|i| i == *u)
        }
        (Value::Text(a), Value::Text(b)) if a == b => return true,
        (Value::Bytes(a), Value::Bytes(b)) if a == b => return true,
        (
            Value::Chars {
                charset: ca,
                bytes: a,
            },
            Value::Chars {
                charset: cb,
                bytes: b,
            },
        ) if ca == cb => {
            return match target_type {
                "char" => ca.trim_end_spaces(a) == ca.trim_end_spaces(b),
                _ => a == b,
            }
        }
        (Value::EnumIndex(a), Value::EnumIndex(b)) => return a == b,
        (Value::SetBits(a), Value::SetBits(b)) => return a == b,
        _ => {}
    }
    let single = target_type == "float"
        || matches!(source, Value::Float(_))
        || matches!(target, Value::Float(_));
    let double = target_type == "double"
        || matches!(source, Value::Double(_))
        || matches!(target, Value::Double(_));
    if single {
        return match (as_f64(source), as_f64(target)) {
            (Some(a), Some(b)) => (a as f32) == (b as f32),
            _ => false,
        };
    }
    if double {
        return match (as_f64(source), as_f64(target)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
    }
    if target_type == "json" || matches!(source, Value::Json(_)) || matches!(target, Value::Json(_))
    {
        if let (Some(a), Some(b)) = (as_json(source), as_json(target)) {
            return a == b;
        }
    }
    match (canon(source), canon(target)) {
        (Canon::Number(a), Canon::Number(b)) => a == b,
        (Canon::Number(n), Canon::Bytes(t)) | (Canon::Bytes(t), Canon::Number(n)) => {
            std::str::from_utf8(&t).ok().and_then(normalize_decimal) == Some(n)
        }
        (Canon::Bytes(a), Canon::Bytes(b)) => {
            let pad = match target_type {
                "char" => Some(b' '),
                "binary" => Some(0),
                _ => None,
            };
            match pad {
                Some(p) => trim_end(&a, p) == trim_end(&b, p),
                None => a == b,
            }
        }
        (Canon::Moment(a), Canon::Moment(b)) => a == b,
        (Canon::Time(a), Canon::Time(b)) => a == b,
        (Canon::EnumIndex(a), Canon::EnumIndex(b)) => a == b,
        // Bytes no codec could read: equal only as the same bytes of the same set.
        (Canon::Stored(ca, a), Canon::Stored(cb, b)) => ca == cb && a == b,
        _ => false,
    }
}

/// Appends a canonical form of a key value to `out`: two key values that [`same`] calls
/// equal get the same bytes, so rows read back can be matched with the keys asked for.
pub fn key_form(v: &Value, ty: &str, out: &mut Vec<u8>) {
    // Integers (most keys) written straight in their canonical form, with no allocation.
    match v {
        Value::Int(i) => {
            use std::io::Write;
            let _ = write!(out, "n{i}\0");
            return;
        }
        Value::UInt(u) => {
            use std::io::Write;
            let _ = write!(out, "n{u}\0");
            return;
        }
        _ => {}
    }
    match canon(v) {
        Canon::Number(n) => {
            out.push(b'n');
            out.extend_from_slice(n.as_bytes());
        }
        Canon::Bytes(b) => {
            out.push(b's');
            let b = match ty {
                "char" => trim_end(&b, b' '),
                "binary" => trim_end(&b, 0),
                _ => &b,
            };
            // Length-prefixed so that composite keys cannot run into each other.
            out.extend_from_slice(&(b.len() as u64).to_be_bytes());
            out.extend_from_slice(b);
        }
        Canon::Moment(m) => out.extend_from_slice(format!("m{m:?}").as_bytes()),
        Canon::Time(t) => out.extend_from_slice(format!("t{t}").as_bytes()),
        Canon::EnumIndex(i) => out.extend_from_slice(format!("e{i}").as_bytes()),
        Canon::Stored(..) | Canon::Other => v.key_bytes(out),
    }
    out.push(0);
}

#[derive(Debug, PartialEq)]
enum Canon<'a> {
    /// An exact number in normal form: no `+`, no leading zeros, no trailing fraction
    /// zeros, `0` for minus zero.
    Number(String),
    Bytes(Cow<'a, [u8]>),
    /// Calendar date and time: (year, month, day, hour, minute, second, micros).
    Moment((u16, u8, u8, u8, u8, u8, u32)),
    /// A TIME as signed microseconds.
    Time(i64),
    /// An ENUM value stored by index without a label (index 0: not the label `''`).
    EnumIndex(u16),
    /// Text of a character set whose bytes concord cannot read as characters.
    Stored(Charset, &'a [u8]),
    Other,
}

fn canon(v: &Value) -> Canon<'_> {
    match v {
        Value::Int(i) => Canon::Number(i.to_string()),
        Value::UInt(u) => Canon::Number(u.to_string()),
        Value::Year(y) => Canon::Number(y.to_string()),
        Value::Decimal(s) => normalize_decimal(s)
            .map(Canon::Number)
            .unwrap_or(Canon::Bytes(Cow::Borrowed(s.as_bytes()))),
        Value::Bit(b) => {
            // BIT(n) is at most 64 bits; its value, not its byte width, is the data.
            let n = b.iter().fold(0u128, |n, &byte| (n << 8) | u128::from(byte));
            Canon::Number(n.to_string())
        }
        Value::Text(s) | Value::Enum(s) | Value::Json(s) => {
            Canon::Bytes(Cow::Borrowed(s.as_bytes()))
        }
        Value::Bytes(b) => Canon::Bytes(Cow::Borrowed(b)),
        // The same characters in another set are the same text.
        Value::Chars { charset, bytes } => match charset.decode(bytes) {
            Some(text) => Canon::Bytes(Cow::Owned(text.into_bytes())),
            None => Canon::Stored(*charset, bytes),
        },
        Value::EnumIndex(i) => Canon::EnumIndex(*i),
        Value::Set(labels) => Canon::Bytes(Cow::Owned(labels.join(",").into_bytes())),
        Value::Date { year, month, day } => Canon::Moment((*year, *month, *day, 0, 0, 0, 0)),
        Value::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        } => Canon::Moment((*year, *month, *day, *hour, *minute, *second, *micros)),
        Value::Timestamp { secs, micros } => {
            if *secs == 0 && *micros == 0 {
                return Canon::Moment((0, 0, 0, 0, 0, 0, 0));
            }
            match utc_datetime(*secs, *micros) {
                Some(MyValue::Date(y, mo, d, h, mi, s, us)) => {
                    Canon::Moment((y, mo, d, h, mi, s, us))
                }
                _ => Canon::Other,
            }
        }
        Value::Time {
            negative,
            hours,
            minutes,
            seconds,
            micros,
        } => {
            let m = ((i64::from(*hours) * 60 + i64::from(*minutes)) * 60 + i64::from(*seconds))
                * 1_000_000
                + i64::from(*micros);
            Canon::Time(if *negative { -m } else { m })
        }
        Value::Null | Value::Absent | Value::SetBits(_) | Value::Float(_) | Value::Double(_) => {
            Canon::Other
        }
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(f64::from(*f)),
        Value::Double(d) => Some(*d),
        Value::Int(i) => Some(*i as f64),
        Value::UInt(u) => Some(*u as f64),
        Value::Decimal(s) | Value::Text(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_json(v: &Value) -> Option<serde_json::Value> {
    match v {
        Value::Json(s) | Value::Text(s) => serde_json::from_str(s).ok(),
        Value::Bytes(b) => serde_json::from_slice(b).ok(),
        _ => None,
    }
}

fn trim_end(b: &[u8], pad: u8) -> &[u8] {
    let end = b.iter().rposition(|&c| c != pad).map_or(0, |i| i + 1);
    &b[..end]
}

/// `"-001.500"` → `"-1.5"`; `None` if `s` is not a plain decimal number.
fn normalize_decimal(s: &str) -> Option<String> {
    let s = s.trim();
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let mut out = String::with_capacity(int.len() + frac.len() + 2);
    if int.is_empty() {
        out.push('0');
    } else {
        out.push_str(int);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    if negative && out != "0" {
        out.insert(0, '-');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn decimals_compare_by_value_not_scale() {
        assert!(same(
            &Value::Decimal("1.50".into()),
            &Value::Decimal("1.500".into()),
            "decimal"
        ));
        assert!(same(
            &Value::Decimal("-0.00".into()),
            &Value::Decimal("0".into()),
            "decimal"
        ));
        assert!(!same(
            &Value::Decimal("1.50".into()),
            &Value::Decimal("1.51".into()),
            "decimal"
        ));
        assert!(same(
            &Value::Int(7),
            &Value::Decimal("7.0".into()),
            "decimal"
        ));
        assert_eq!(normalize_decimal("-001.500").as_deref(), Some("-1.5"));
        assert_eq!(normalize_decimal("1e5"), None);
    }

    #[test]
    fn integers_of_different_widths_and_signs() {
        assert!(same(&Value::UInt(5), &Value::Int(5), "bigint"));
        assert!(!same(&Value::Int(-1), &Value::UInt(u64::MAX), "bigint"));
        assert!(same(&Value::Year(2024), &Value::Int(2024), "year"));
        assert!(!same(&Value::Int(3), &Value::Int(4), "int"));
        assert!(!same(&Value::UInt(3), &Value::Int(-3), "int"));
        assert!(same(&Value::Decimal("3.0".into()), &Value::Int(3), "int"));
    }

    #[test]
    fn floats_compare_at_the_columns_precision() {
        assert!(same(&Value::Float(0.1), &Value::Float(0.1), "float"));
        // A FLOAT column holds 0.1 as the nearest f32; the source's DOUBLE 0.1 rounds to it.
        assert!(same(&Value::Double(0.1), &Value::Float(0.1), "float"));
        assert!(!same(
            &Value::Double(0.1),
            &Value::Double(0.1000001),
            "double"
        ));
        assert!(!same(&Value::Float(1.0), &Value::Float(1.5), "float"));
    }

    #[test]
    fn json_compares_as_documents() {
        assert!(same(
            &Value::Json(r#"{"a": 1, "b": [1, 2]}"#.into()),
            &text(r#"{"b":[1,2],"a":1}"#),
            "longtext"
        ));
        assert!(!same(
            &Value::Json(r#"{"a": 1}"#.into()),
            &Value::Json(r#"{"a": 2}"#.into()),
            "json"
        ));
    }

    #[test]
    fn strings_are_exact_except_char_padding() {
        assert!(same(&text("ab  "), &text("ab"), "char"));
        assert!(!same(&text("ab  "), &text("ab"), "varchar"));
        assert!(!same(&text("Ab"), &text("ab"), "varchar"));
        assert!(same(
            &Value::Bytes(vec![1, 0, 0]),
            &Value::Bytes(vec![1]),
            "binary"
        ));
        assert!(!same(&Value::Null, &text(""), "varchar"));
        assert!(same(&Value::Null, &Value::Null, "varchar"));
    }

    #[test]
    fn timestamps_are_instants_and_dates_are_calendar_values() {
        let ts = Value::Timestamp {
            secs: 1_700_000_000,
            micros: 5,
        };
        let wall = Value::DateTime {
            year: 2023,
            month: 11,
            day: 14,
            hour: 22,
            minute: 13,
            second: 20,
            micros: 5,
        };
        assert!(same(&ts, &wall, "timestamp"));
        assert!(!same(
            &ts,
            &Value::Timestamp {
                secs: 1_700_000_001,
                micros: 5
            },
            "timestamp"
        ));
        assert!(same(
            &Value::Date {
                year: 2024,
                month: 2,
                day: 29
            },
            &Value::DateTime {
                year: 2024,
                month: 2,
                day: 29,
                hour: 0,
                minute: 0,
                second: 0,
                micros: 0
            },
            "datetime"
        ));
    }

    #[test]
    fn bits_sets_and_enums() {
        assert!(same(&Value::Bit(vec![0, 5]), &Value::Bit(vec![5]), "bit"));
        assert!(!same(&Value::Bit(vec![4]), &Value::Bit(vec![5]), "bit"));
        assert!(same(
            &Value::Set(vec!["a".into(), "c".into()]),
            &Value::Set(vec!["a".into(), "c".into()]),
            "set"
        ));
        assert!(same(&Value::Enum("red".into()), &text("red"), "varchar"));
    }

    #[test]
    fn key_forms_agree_where_values_are_the_same() {
        let form = |v: &Value, ty: &str| {
            let mut out = Vec::new();
            key_form(v, ty, &mut out);
            out
        };
        assert_eq!(form(&Value::UInt(5), "int"), form(&Value::Int(5), "int"));
        assert_eq!(
            form(&text("ab "), "char"),
            form(&Value::Bytes(b"ab".to_vec()), "char")
        );
        assert_ne!(form(&text("ab"), "varchar"), form(&text("Ab"), "varchar"));
        assert_ne!(form(&Value::Int(5), "int"), form(&text("5"), "varchar"));
        // Integers take a short cut; it must meet the general form of the same number.
        assert_eq!(
            form(&Value::Int(5), "int"),
            form(&Value::Decimal("5.00".into()), "decimal")
        );
        assert_eq!(
            form(&Value::Int(-7), "int"),
            form(&Value::Decimal("-7".into()), "decimal")
        );
        assert_ne!(form(&Value::Int(-7), "int"), form(&Value::Int(7), "int"));
    }
}
