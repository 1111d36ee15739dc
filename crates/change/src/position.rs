//! Binlog coordinates. A position always names the *next* byte to read, so "resume from
//! this position" never re-reads the event that produced it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// A binlog file name and byte offset.
///
/// The file name is shared: every change carries its position, and a clone must not
/// allocate.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    pub file: Arc<str>,
    pub pos: u64,
}

impl Position {
    pub fn new(file: impl Into<Arc<str>>, pos: u64) -> Self {
        Self {
            file: file.into(),
            pos,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a binlog position; expected FILE:POS, e.g. mysql-bin.000003:1234")]
pub struct PositionParseError(pub String);

impl FromStr for Position {
    type Err = PositionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (file, pos) = s
            .rsplit_once(':')
            .ok_or_else(|| PositionParseError(s.to_owned()))?;
        let pos: u64 = pos.parse().map_err(|_| PositionParseError(s.to_owned()))?;
        if file.is_empty() || pos < 4 {
            return Err(PositionParseError(s.to_owned()));
        }
        Ok(Position::new(file, pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        let p: Position = "mysql-bin.000012:4567".parse().unwrap();
        assert_eq!(p, Position::new("mysql-bin.000012", 4567));
        assert_eq!(p.to_string(), "mysql-bin.000012:4567");
    }

    #[test]
    fn rejects_missing_or_bad_offset() {
        assert!("mysql-bin.000012".parse::<Position>().is_err());
        assert!("mysql-bin.000012:abc".parse::<Position>().is_err());
        assert!(":99".parse::<Position>().is_err());
        assert!("f:0".parse::<Position>().is_err());
    }
}
