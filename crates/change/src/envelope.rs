//! The change envelope: how one row change travels as a Kafka message (JSON, modelled on
//! Debezium's `before`/`after`/`source`/`op`/`ts_ms`), and how it is read back.
//!
//! Invariant: `decode(encode(c)) == c` for every change concord can read — values are
//! written losslessly (DECIMAL and BIGINT UNSIGNED exactly, temporal values with
//! microseconds, binary as base64) and each message names its columns' types, so a reader
//! needs no schema registry. `docs/FORMAT.md` is the reader's documentation of this file.

use crate::{Charset, Op, Position, RowChange, SourceTable, TableName, Value};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use std::sync::Arc;

/// The envelope format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Where a change sits in its source transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnInfo {
    /// Resume point after the whole transaction (end of its commit event).
    pub end_file: String,
    pub end_pos: u64,
    /// This change's index in the transaction, from 0.
    pub index: u32,
    /// Number of changes of included tables in the transaction.
    pub total: u32,
}

/// The `source` block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub file: String,
    pub pos: u64,
    pub row: u32,
    pub gtid: Option<String>,
    /// Source commit time, ms since the epoch (second precision, as in the binlog).
    pub ts_ms: u64,
    pub db: String,
    pub table: String,
    pub server_id: u32,
    pub txn: TxnInfo,
}

/// The `schema` block: enough to decode the values without a registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchemaInfo {
    pub columns: Vec<String>,
    pub types: Vec<String>,
    pub primary_key: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    version: u32,
    op: Op,
    ts_ms: u64,
    before: Option<Map<String, Json>>,
    after: Option<Map<String, Json>>,
    source: SourceInfo,
    schema: SchemaInfo,
    /// The images may lack columns (the source logged a MINIMAL or NOBLOB row image): a
    /// column missing from an image was not logged. Without it, every column must be
    /// there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    partial: bool,
}

/// A decoded envelope.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    pub change: RowChange,
    pub source: SourceInfo,
}

/// What a message on the change topic holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Change(Envelope),
    Truncate(Truncate),
}

impl Message {
    pub fn decode(bytes: &[u8]) -> Result<Message, EnvelopeError> {
        match Envelope::decode(bytes) {
            Ok(e) => Ok(Message::Change(e)),
            Err(e) => match Truncate::decode(bytes) {
                Some(t) => t.map(Message::Truncate),
                None => Err(e),
            },
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("not a change envelope (JSON): {0}")]
    NotJson(String),
    #[error("envelope format version {0} is not supported (this build reads {FORMAT_VERSION})")]
    Version(u32),
    #[error("column `{column}`: {message}")]
    Value { column: String, message: String },
    #[error("envelope is inconsistent: {0}")]
    Shape(String),
}

impl Envelope {
    /// Encodes a change. `types` come from the values themselves (a NULL's type is taken
    /// from the other image, or `null` when unknown, which decodes to NULL either way).
    pub fn encode(change: &RowChange, source: &SourceInfo, now_ms: u64) -> Vec<u8> {
        let t = &change.table;
        let types: Vec<String> = (0..t.columns.len())
            .map(|i| {
                column_type(
                    change.before.as_ref().map(|v| &v[i]),
                    change.after.as_ref().map(|v| &v[i]),
                )
            })
            .collect();
        let mut partial = false;
        let mut image = |img: &Option<Vec<Value>>| {
            img.as_ref().map(|vals| {
                t.columns
                    .iter()
                    .zip(vals)
                    .zip(&types)
                    .filter(|((_, v), _)| {
                        partial |= v.is_absent();
                        !v.is_absent()
                    })
                    .map(|((c, v), ty)| (c.clone(), to_json(v, ty)))
                    .collect::<Map<_, _>>()
            })
        };
        let before = image(&change.before);
        let after = image(&change.after);
        let wire = Wire {
            version: FORMAT_VERSION,
            op: change.op,
            ts_ms: now_ms,
            before,
            after,
            source: source.clone(),
            schema: SchemaInfo {
                columns: t.columns.clone(),
                types,
                primary_key: t
                    .primary_key
                    .iter()
                    .map(|&i| t.columns[i].clone())
                    .collect(),
            },
            partial,
        };
        serde_json::to_vec(&wire).expect("envelopes always serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        // One parse straight into the wire form on the hot path; only a message that does
        // not fit it is parsed again, loosely, to say why.
        let wire: Wire = match serde_json::from_slice(bytes) {
            Ok(w) => w,
            Err(e) => return Err(Self::why_unreadable(bytes, e)),
        };
        if wire.version != FORMAT_VERSION {
            return Err(EnvelopeError::Version(wire.version));
        }
        let s = &wire.schema;
        if s.types.len() != s.columns.len() {
            return Err(EnvelopeError::Shape(
                "schema.types and schema.columns differ in length".into(),
            ));
        }
        let primary_key = s
            .primary_key
            .iter()
            .map(|k| {
                s.columns.iter().position(|c| c == k).ok_or_else(|| {
                    EnvelopeError::Shape(format!("primary key column `{k}` is not a column"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let table = Arc::new(SourceTable {
            name: TableName::new(wire.source.db.clone(), wire.source.table.clone()),
            columns: s.columns.clone(),
            primary_key,
        });
        let partial = wire.partial;
        let image = |img: Option<Map<String, Json>>| -> Result<Option<Vec<Value>>, EnvelopeError> {
            let Some(mut img) = img else { return Ok(None) };
            s.columns
                .iter()
                .zip(&s.types)
                .map(|(c, ty)| {
                    let Some(v) = img.remove(c) else {
                        return if partial {
                            Ok(Value::Absent)
                        } else {
                            Err(EnvelopeError::Value {
                                column: c.clone(),
                                message: "missing from the image".into(),
                            })
                        };
                    };
                    from_json(ty, v).map_err(|message| EnvelopeError::Value {
                        column: c.clone(),
                        message,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        };
        let before = image(wire.before)?;
        let after = image(wire.after)?;
        let consistent = match wire.op {
            Op::Insert | Op::Read => before.is_none() && after.is_some(),
            Op::Update => before.is_some() && after.is_some(),
            Op::Delete => before.is_some() && after.is_none(),
        };
        if !consistent {
            return Err(EnvelopeError::Shape(format!(
                "op {:?} with these images",
                wire.op
            )));
        }
        Ok(Envelope {
            change: RowChange {
                table,
                op: wire.op,
                before,
                after,
                position: Position::new(wire.source.file.clone(), wire.source.pos),
                row_index: wire.source.row,
                commit_ts: (wire.source.ts_ms / 1000) as u32,
            },
            source: wire.source,
        })
    }
}

/// The message key: `db.table` followed by the JSON array of the row's primary-key values
/// (after-image for inserts and updates — where a partial image lacks a key column, the
/// before-image's — before-image for deletes), e.g. `shop.orders[42]`.
pub fn message_key(change: &RowChange) -> Vec<u8> {
    let key: Vec<Json> = change
        .key()
        .unwrap_or_default()
        .iter()
        .map(|v| to_json(v, &column_type(None, Some(v))))
        .collect();
    let mut out = change.table.name.to_string().into_bytes();
    out.extend(serde_json::to_vec(&key).expect("keys serialize"));
    out
}

/// Splits an update that moved a row to a new primary key into a delete of the old key
/// and an insert of the new one, so each key's changes stay on that key's partition (as
/// Debezium does). Other changes pass through. A key move with a partial after-image
/// cannot be split — the insert would lack the columns the image does not carry — so the
/// caller must check [`RowChange::is_partial`] first.
pub fn split_key_change(change: &RowChange) -> Vec<RowChange> {
    if change.op != Op::Update || !change.changes_key() {
        return vec![change.clone()];
    }
    vec![
        RowChange {
            op: Op::Delete,
            after: None,
            ..change.clone()
        },
        RowChange {
            op: Op::Insert,
            before: None,
            ..change.clone()
        },
    ]
}

impl Envelope {
    /// The reason a message did not deserialize as a version-1 envelope: not JSON, another
    /// version, or the wrong shape.
    fn why_unreadable(bytes: &[u8], shape_error: serde_json::Error) -> EnvelopeError {
        let probe: Json = match serde_json::from_slice(bytes) {
            Ok(p) => p,
            Err(e) => return EnvelopeError::NotJson(e.to_string()),
        };
        match probe.get("version").and_then(Json::as_u64) {
            Some(v) if v != u64::from(FORMAT_VERSION) => EnvelopeError::Version(v as u32),
            Some(_) => EnvelopeError::Shape(shape_error.to_string()),
            None => EnvelopeError::Shape("no `version` field".into()),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null | Value::Absent => "null",
        Value::Int(_) => "int",
        Value::UInt(_) => "uint",
        Value::Float(_) => "float",
        Value::Double(_) => "double",
        Value::Decimal(_) => "decimal",
        Value::Text(_) => "text",
        Value::Chars { .. } => "text:",
        Value::Bytes(_) => "bytes",
        Value::Date { .. } => "date",
        Value::DateTime { .. } => "datetime",
        Value::Time { .. } => "time",
        Value::Timestamp { .. } => "timestamp",
        Value::Year(_) => "year",
        Value::Enum(_) => "enum",
        // Without a label, the stored number: a JSON number under the same type, so the
        // two images of a column share a type.
        Value::EnumIndex(_) => "enum",
        Value::Set(_) => "set",
        Value::SetBits(_) => "set",
        Value::Bit(_) => "bit",
        Value::Json(_) => "json",
    }
}

/// A column's type in the message, from its values in both images (a NULL's type is taken
/// from the other image, or `null` when unknown, which decodes to NULL either way).
/// Text in a character set other than UTF-8 is `text:<charset>` and travels as text when
/// both values decode exactly, else `bytes:<charset>` and travels as base64.
fn column_type(before: Option<&Value>, after: Option<&Value>) -> String {
    let present = || {
        [after, before]
            .into_iter()
            .flatten()
            .filter(|v| !v.is_null() && !v.is_absent())
    };
    // Text of another set wins over UTF-8 text in the other image (a utf8 column with
    // bytes that are not UTF-8): both then travel under the set's type.
    let known = present()
        .find(|v| matches!(v, Value::Chars { .. }))
        .or_else(|| present().next());
    let Some(v) = known else {
        return "null".to_owned();
    };
    if let Value::Chars { charset, .. } = v {
        let readable = [before, after].into_iter().flatten().all(|v| match v {
            Value::Chars { charset: c, bytes } => c == charset && charset.decode(bytes).is_some(),
            Value::Text(s) => charset.encode(s).is_some(),
            _ => true,
        });
        let kind = if readable { "text" } else { "bytes" };
        return format!("{kind}:{charset}");
    }
    type_name(v).to_owned()
}

/// A value as JSON, for a column of message type `ty` (see [`column_type`]).
fn to_json(v: &Value, ty: &str) -> Json {
    match v {
        Value::Null | Value::Absent => Json::Null,
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::Float(f) => {
            serde_json::Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number)
        }
        Value::Double(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        // Under another set's type UTF-8 text travels as that set's text or bytes.
        Value::Text(s) if ty.starts_with("bytes:") => Json::String(B64.encode(s.as_bytes())),
        Value::Decimal(s) | Value::Text(s) | Value::Enum(s) => Json::String(s.clone()),
        Value::Bytes(b) | Value::Bit(b) => Json::String(B64.encode(b)),
        Value::Chars { charset, bytes } => match charset.decode(bytes) {
            Some(text) if ty.starts_with("text:") => Json::String(text),
            _ => Json::String(B64.encode(bytes)),
        },
        Value::EnumIndex(i) => Json::from(*i),
        Value::SetBits(b) => Json::from(*b),
        Value::Date { year, month, day } => Json::String(format!("{year:04}-{month:02}-{day:02}")),
        Value::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        } => Json::String(format!(
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micros:06}"
        )),
        Value::Time {
            negative,
            hours,
            minutes,
            seconds,
            micros,
        } => Json::String(format!(
            "{}{hours:02}:{minutes:02}:{seconds:02}.{micros:06}",
            if *negative { "-" } else { "" }
        )),
        Value::Timestamp { secs, micros } => Json::String(timestamp_text(*secs, *micros)),
        Value::Year(y) => Json::from(*y),
        Value::Set(labels) => Json::String(labels.join(",")),
        // MySQL's JSON type is a document: embed it. (MariaDB's JSON is text and arrives
        // as `text`, byte for byte.)
        Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| Json::String(s.clone())),
    }
}

/// The zero TIMESTAMP has no instant; it is spelled like MySQL spells it.
const ZERO_TIMESTAMP: &str = "0000-00-00T00:00:00.000000Z";

/// TIMESTAMP values as RFC 3339 UTC with microseconds, e.g. `2024-06-01T12:00:00.123456Z`.
fn timestamp_text(secs: i64, micros: u32) -> String {
    if secs == 0 && micros == 0 {
        return ZERO_TIMESTAMP.to_owned();
    }
    match chrono::DateTime::from_timestamp(secs, micros * 1000) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => format!("{secs}.{micros:06}"),
    }
}

fn from_json(ty: &str, v: Json) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    if let Some((kind, name)) = ty.split_once(':') {
        let charset =
            Charset::from_name(name).ok_or_else(|| format!("unknown character set `{name}`"))?;
        let text = v
            .as_str()
            .ok_or_else(|| format!("expected a string for {ty}, got {v}"))?;
        let bytes = match kind {
            "text" => charset
                .encode(text)
                .ok_or_else(|| format!("text that has no encoding in {charset}"))?,
            "bytes" => B64
                .decode(text.as_bytes())
                .map_err(|e| format!("base64: {e}"))?,
            _ => return Err(format!("unknown type `{ty}`")),
        };
        return Ok(Value::Chars { charset, bytes });
    }
    let s = |v: &Json| {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("expected a string for {ty}, got {v}"))
    };
    let num = |t: &str, s: &str| -> Result<u32, String> {
        s.parse().map_err(|_| format!("`{s}` in a {t}"))
    };
    Ok(match ty {
        "int" => Value::Int(
            v.as_i64()
                .ok_or_else(|| format!("expected an integer, got {v}"))?,
        ),
        "uint" => Value::UInt(
            v.as_u64()
                .ok_or_else(|| format!("expected an unsigned integer, got {v}"))?,
        ),
        "float" => Value::Float(
            v.as_f64()
                .ok_or_else(|| format!("expected a number, got {v}"))? as f32,
        ),
        "double" => Value::Double(
            v.as_f64()
                .ok_or_else(|| format!("expected a number, got {v}"))?,
        ),
        "decimal" => Value::Decimal(s(&v)?),
        "text" => Value::Text(s(&v)?),
        "enum" if v.is_number() => Value::EnumIndex(
            v.as_u64()
                .and_then(|i| u16::try_from(i).ok())
                .ok_or_else(|| format!("expected an ENUM index, got {v}"))?,
        ),
        "enum" => Value::Enum(s(&v)?),
        "set" if v.is_number() => Value::SetBits(
            v.as_u64()
                .ok_or_else(|| format!("expected a SET bitmask, got {v}"))?,
        ),
        "bytes" | "bit" => {
            let b = B64
                .decode(s(&v)?.as_bytes())
                .map_err(|e| format!("base64: {e}"))?;
            if ty == "bit" {
                Value::Bit(b)
            } else {
                Value::Bytes(b)
            }
        }
        "date" => {
            let text = s(&v)?;
            let p: Vec<&str> = text.split('-').collect();
            let [y, m, d] = p.as_slice() else {
                return Err(format!("`{text}` is not YYYY-MM-DD"));
            };
            Value::Date {
                year: num("date", y)? as u16,
                month: num("date", m)? as u8,
                day: num("date", d)? as u8,
            }
        }
        "datetime" => {
            let text = s(&v)?;
            let (date, time) = text
                .split_once('T')
                .ok_or_else(|| format!("`{text}` is not a datetime"))?;
            let Value::Date { year, month, day } = from_json("date", Json::String(date.into()))?
            else {
                unreachable!()
            };
            let Value::Time {
                hours,
                minutes,
                seconds,
                micros,
                ..
            } = from_json("time", Json::String(time.into()))?
            else {
                unreachable!()
            };
            Value::DateTime {
                year,
                month,
                day,
                hour: hours as u8,
                minute: minutes,
                second: seconds,
                micros,
            }
        }
        "time" => {
            let text = s(&v)?;
            let (negative, rest) = match text.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, text.as_str()),
            };
            let (hms, frac) = rest.split_once('.').unwrap_or((rest, "0"));
            let p: Vec<&str> = hms.split(':').collect();
            let [h, m, sec] = p.as_slice() else {
                return Err(format!("`{text}` is not [-]HH:MM:SS.ffffff"));
            };
            Value::Time {
                negative,
                hours: num("time", h)?,
                minutes: num("time", m)? as u8,
                seconds: num("time", sec)? as u8,
                micros: num("time", frac)?,
            }
        }
        "timestamp" => {
            let text = s(&v)?;
            if text == ZERO_TIMESTAMP {
                Value::Timestamp { secs: 0, micros: 0 }
            } else {
                let t = chrono::DateTime::parse_from_rfc3339(&text)
                    .map_err(|e| format!("`{text}` is not an RFC 3339 UTC time: {e}"))?;
                Value::Timestamp {
                    secs: t.timestamp(),
                    micros: t.timestamp_subsec_micros(),
                }
            }
        }
        "year" => Value::Year(
            v.as_u64()
                .ok_or_else(|| format!("expected a year, got {v}"))? as u16,
        ),
        "set" => {
            let text = s(&v)?;
            Value::Set(if text.is_empty() {
                Vec::new()
            } else {
                text.split(',').map(str::to_owned).collect()
            })
        }
        "json" => Value::Json(match v {
            Json::String(s) => s,
            other => other.to_string(),
        }),
        other => return Err(format!("unknown type `{other}`")),
    })
}

mod truncate;
pub use truncate::Truncate;

#[cfg(test)]
mod tests;
