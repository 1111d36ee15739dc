//! How values reach a page: every value becomes plain text (the template escapes it),
//! long text is cut with a way to see it whole, binary and text the page cannot show as
//! characters are shown as hex, and rows are laid side by side with their differences
//! marked.

use concord_change::Value;
use concord_control::NamedRow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The navigation bar's facts, on every page.
#[derive(Clone, Debug)]
pub struct Nav {
    pub user: String,
    pub role: &'static str,
    pub csrf: String,
    pub active: &'static str,
}

/// One option of a filter, and whether it is chosen.
#[derive(Clone, Debug)]
pub struct Choice {
    pub name: &'static str,
    pub on: bool,
}

/// `names` as choices, `on` saying which are chosen.
pub fn choices(names: &[&'static str], on: impl Fn(&str) -> bool) -> Vec<Choice> {
    names
        .iter()
        .map(|n| Choice { name: n, on: on(n) })
        .collect()
}

/// Characters of a value shown before it is cut.
pub const SHOWN: usize = 120;

/// One value as shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    /// A CSS class: `null`, `hex`, `absent`, `none` (no row) or `text`.
    pub class: &'static str,
    /// Cut to [`SHOWN`] characters; `len` is the whole length.
    pub cut: bool,
    pub len: usize,
}

impl Cell {
    fn new(text: String, class: &'static str, whole: bool) -> Self {
        let len = text.chars().count();
        if whole || len <= SHOWN {
            return Self {
                text,
                class,
                cut: false,
                len,
            };
        }
        Self {
            text: text.chars().take(SHOWN).collect(),
            class,
            cut: true,
            len,
        }
    }

    /// The cell of a row that does not exist.
    pub fn no_row() -> Self {
        Self::new("(no row)".into(), "none", true)
    }
}

/// `v` as text and the class it is shown with.
pub fn value_text(v: &Value) -> (String, &'static str) {
    match v {
        Value::Null => ("NULL".into(), "null"),
        Value::Int(i) => (i.to_string(), "text"),
        Value::UInt(u) => (u.to_string(), "text"),
        Value::Float(f) => (f.to_string(), "text"),
        Value::Double(d) => (d.to_string(), "text"),
        Value::Decimal(d) => (d.clone(), "text"),
        Value::Text(s) | Value::Json(s) | Value::Enum(s) => (s.clone(), "text"),
        Value::Chars { charset, bytes } => match charset.decode(bytes) {
            Some(s) => (s, "text"),
            None => (hex(bytes), "hex"),
        },
        Value::Bytes(b) => (hex(b), "hex"),
        Value::Bit(b) => (
            format!(
                "b'{}'",
                b.iter().map(|x| format!("{x:08b}")).collect::<String>()
            ),
            "hex",
        ),
        Value::Date { year, month, day } => (format!("{year:04}-{month:02}-{day:02}"), "text"),
        Value::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        } => (
            format!(
                "{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}{}",
                fraction(*micros)
            ),
            "text",
        ),
        Value::Time {
            negative,
            hours,
            minutes,
            seconds,
            micros,
        } => (
            format!(
                "{}{hours:02}:{minutes:02}:{seconds:02}{}",
                if *negative { "-" } else { "" },
                fraction(*micros)
            ),
            "text",
        ),
        Value::Timestamp { secs, micros } => (timestamp(*secs, *micros), "text"),
        Value::Year(y) => (y.to_string(), "text"),
        Value::EnumIndex(i) => (format!("(enum index {i}, no label)"), "hex"),
        Value::Set(items) => (items.join(","), "text"),
        Value::SetBits(bits) => (format!("(set bits {bits:#x})"), "hex"),
        Value::Absent => ("(not in the row image)".into(), "absent"),
    }
}

fn fraction(micros: u32) -> String {
    if micros == 0 {
        String::new()
    } else {
        format!(".{micros:06}")
    }
}

fn timestamp(secs: i64, micros: u32) -> String {
    if secs == 0 && micros == 0 {
        return "0000-00-00 00:00:00".into();
    }
    let at = if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, micros * 1000)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    };
    humantime::format_rfc3339_micros(at)
        .to_string()
        .replace('T', " ")
        .replace(".000000Z", " UTC")
        .replace('Z', " UTC")
}

/// Bytes as `0x…` hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// A value as a cell; `whole`: never cut.
pub fn cell(v: &Value, whole: bool) -> Cell {
    let (text, class) = value_text(v);
    Cell::new(text, class, whole)
}

/// A key as one line: `id=7, region=eu` (each value as [`value_text`] shows it).
pub fn key_text(key: &[(String, Value)]) -> String {
    key.iter()
        .map(|(c, v)| format!("{c}={}", value_text(v).0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One column of rows laid side by side.
#[derive(Clone, Debug)]
pub struct DiffRow {
    pub column: String,
    pub expected: Option<Cell>,
    pub source: Cell,
    pub target: Cell,
    /// Source and target hold different values (or the record named this column).
    pub differs: bool,
    /// Some cell is cut: the page links to itself with this column whole.
    pub cut: bool,
}

/// The rows side by side, columns in the source's order (then the target's own, then the
/// expectation's). `whole`: the columns to show uncut; `flagged`: columns the record
/// names as differing.
pub fn diff(
    expected: Option<&NamedRow>,
    source: Option<&NamedRow>,
    target: Option<&NamedRow>,
    flagged: &[String],
    whole: &[String],
) -> Vec<DiffRow> {
    let mut columns: Vec<&str> = Vec::new();
    for row in [source, target, expected].into_iter().flatten() {
        for (c, _) in row {
            if !columns.iter().any(|x| x.eq_ignore_ascii_case(c)) {
                columns.push(c);
            }
        }
    }
    let find = |row: Option<&NamedRow>, c: &str| -> Option<Value> {
        row.and_then(|r| {
            r.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(c))
                .map(|(_, v)| v.clone())
        })
    };
    columns
        .into_iter()
        .map(|c| {
            let full = whole.iter().any(|w| w.eq_ignore_ascii_case(c));
            let side = |row: Option<&NamedRow>| match (row, find(row, c)) {
                (None, _) => Cell::no_row(),
                (Some(_), Some(v)) => cell(&v, full),
                (Some(_), None) => Cell::new("(no such column)".into(), "absent", true),
            };
            let (s, t) = (find(source, c), find(target, c));
            let differs = (source.is_some() != target.is_some())
                || s != t
                || flagged.iter().any(|f| f.eq_ignore_ascii_case(c));
            let expected = expected.map(|_| side(expected));
            let (source, target) = (side(source), side(target));
            let cut = source.cut || target.cut || expected.as_ref().is_some_and(|e| e.cut);
            DiffRow {
                column: c.to_owned(),
                expected,
                source,
                target,
                differs,
                cut,
            }
        })
        .collect()
}

/// A time in ms since the epoch, as `2026-12-04 01:23:45 UTC`.
pub fn at(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let t = UNIX_EPOCH + Duration::from_millis(ms as u64);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC")
}

/// How long ago `ms` was, roughly: `3m 20s ago`.
pub fn ago(ms: i64) -> String {
    if ms <= 0 {
        return "never".into();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let secs = ((now - ms).max(0) / 1000) as u64;
    let d = Duration::from_secs(if secs > 3600 { secs / 60 * 60 } else { secs });
    format!("{} ago", humantime::format_duration(d))
}

/// The error and every cause below it, as one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, Value)]) -> NamedRow {
        pairs
            .iter()
            .map(|(c, v)| (c.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn values_are_text_and_binary_is_hex() {
        assert_eq!(value_text(&Value::Null), ("NULL".into(), "null"));
        assert_eq!(
            value_text(&Value::Bytes(vec![0, 0xff, b'<'])),
            ("0x00FF3C".into(), "hex")
        );
        assert_eq!(
            value_text(&Value::Text("<script>".into())).0,
            "<script>",
            "escaping is the template's"
        );
        let long = "x".repeat(500);
        let c = cell(&Value::Text(long.clone()), false);
        assert!(c.cut && c.text.len() == SHOWN && c.len == 500);
        assert_eq!(cell(&Value::Text(long), true).text.len(), 500);
        assert_eq!(
            value_text(&Value::Timestamp {
                secs: 1_764_806_400,
                micros: 0
            })
            .0,
            "2025-12-04 00:00:00 UTC"
        );
    }

    #[test]
    fn rows_side_by_side_mark_what_differs() {
        let s = row(&[
            ("id", Value::Int(1)),
            ("total", Value::Decimal("10.00".into())),
        ]);
        let t = row(&[
            ("id", Value::Int(1)),
            ("total", Value::Decimal("9.00".into())),
        ]);
        let d = diff(None, Some(&s), Some(&t), &[], &[]);
        assert_eq!(d.len(), 2);
        assert!(!d[0].differs && d[1].differs);
        let missing = diff(None, Some(&s), None, &[], &[]);
        assert!(missing
            .iter()
            .all(|r| r.differs && r.target.class == "none"));
    }
}
