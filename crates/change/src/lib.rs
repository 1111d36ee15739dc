//! The change model: what a source row change *is*, independent of where it was read from
//! (the binlog today, a Kafka envelope later) and where it goes (the applier, the verifier).
//!
//! Invariant: a [`Value`] carries everything needed to write the source value back without
//! loss — no decimal goes through a float, no timestamp loses its microseconds, and text
//! keeps the bytes and the character set the source stored it in.

mod charset;
pub mod envelope;
mod position;
mod row;
mod value;

pub use charset::Charset;
pub use position::{Position, PositionParseError};
pub use row::{
    Ddl, LoggedStatement, Op, RowChange, SourceTable, TableName, Transaction, Undecodable,
};
pub use value::{utc_datetime, Value};
