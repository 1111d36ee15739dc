//! MySQL/MariaDB character sets: what a text column's bytes are encoded in, and — for the
//! sets concord can read — an exact codec between those bytes and Unicode text.
//!
//! concord never re-encodes a value on its way from the source to the target: text travels
//! as the bytes the source stored, with the name of their character set, and the *target
//! server* converts when its column uses another set. This module is for the places where
//! concord itself must read the text: showing it (the Kafka envelope, records), and
//! comparing values of two different character sets.
//!
//! Invariant: [`Charset::decode`] returns text only when encoding that text again gives back
//! exactly the same bytes, so text obtained here always stands for the stored bytes.

use encoding_rs::Encoding;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A character set, by its MySQL/MariaDB name (`latin1`, `utf8mb4`, `sjis`, …).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Charset(u8);

/// Every character set of MariaDB 10.11 and MySQL 8, in one list (the index is the id).
const NAMES: [&str; 41] = [
    "armscii8", "ascii", "big5", "binary", "cp1250", "cp1251", "cp1256", "cp1257", "cp850",
    "cp852", "cp866", "cp932", "dec8", "eucjpms", "euckr", "gb18030", "gb2312", "gbk", "geostd8",
    "greek", "hebrew", "hp8", "keybcs2", "koi8r", "koi8u", "latin1", "latin2", "latin5", "latin7",
    "macce", "macroman", "sjis", "swe7", "tis620", "ucs2", "ujis", "utf16", "utf16le", "utf32",
    "utf8mb3", "utf8mb4",
];

/// How concord reads a character set's bytes.
enum Codec {
    Utf8,
    Ascii,
    /// Fixed-width Unicode encodings: code unit size and byte order.
    Utf16Be,
    Utf16Le,
    Utf32Be,
    /// A legacy encoding whose table `encoding_rs` has (the WHATWG encodings).
    Legacy(&'static Encoding),
    /// No codec: compared byte for byte, shown as bytes.
    None,
}

impl Charset {
    pub const UTF8MB4: Charset = Charset(40);
    pub const BINARY: Charset = Charset(3);

    /// The character set called `name` (case-insensitive; `utf8` is MySQL's old name of
    /// `utf8mb3`).
    pub fn from_name(name: &str) -> Option<Charset> {
        let name = name.to_ascii_lowercase();
        let name = if name == "utf8" { "utf8mb3" } else { &name };
        NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Charset(i as u8))
    }

    pub fn name(self) -> &'static str {
        NAMES[usize::from(self.0)]
    }

    /// Whether the stored bytes are UTF-8 (such values travel as [`crate::Value::Text`]).
    pub fn is_utf8(self) -> bool {
        matches!(self.name(), "utf8mb3" | "utf8mb4")
    }

    fn codec(self) -> Codec {
        use encoding_rs::*;
        match self.name() {
            "utf8mb3" | "utf8mb4" => Codec::Utf8,
            "ascii" => Codec::Ascii,
            "ucs2" | "utf16" => Codec::Utf16Be,
            "utf16le" => Codec::Utf16Le,
            "utf32" => Codec::Utf32Be,
            // MySQL's latin1 is Windows-1252 (with the five bytes it leaves undefined
            // mapped to the C1 controls, as WHATWG's table does).
            "latin1" => Codec::Legacy(WINDOWS_1252),
            "latin2" => Codec::Legacy(ISO_8859_2),
            "latin7" => Codec::Legacy(ISO_8859_13),
            "cp1250" => Codec::Legacy(WINDOWS_1250),
            "cp1251" => Codec::Legacy(WINDOWS_1251),
            "cp1256" => Codec::Legacy(WINDOWS_1256),
            "cp1257" => Codec::Legacy(WINDOWS_1257),
            "cp866" => Codec::Legacy(IBM866),
            "greek" => Codec::Legacy(ISO_8859_7),
            "hebrew" => Codec::Legacy(ISO_8859_8),
            "koi8r" => Codec::Legacy(KOI8_R),
            "koi8u" => Codec::Legacy(KOI8_U),
            "macroman" => Codec::Legacy(MACINTOSH),
            "sjis" | "cp932" => Codec::Legacy(SHIFT_JIS),
            "ujis" | "eucjpms" => Codec::Legacy(EUC_JP),
            "euckr" => Codec::Legacy(EUC_KR),
            "gbk" | "gb2312" => Codec::Legacy(GBK),
            "gb18030" => Codec::Legacy(GB18030),
            "big5" => Codec::Legacy(BIG5),
            _ => Codec::None,
        }
    }

    /// The stored bytes as text, if they are valid in this character set and the text
    /// encodes back to exactly these bytes; `None` otherwise (and always for `binary` and
    /// the sets concord has no table for).
    pub fn decode(self, bytes: &[u8]) -> Option<String> {
        let text = match self.codec() {
            Codec::Utf8 => return std::str::from_utf8(bytes).ok().map(str::to_owned),
            Codec::Ascii => return bytes.is_ascii().then(|| ascii(bytes)),
            Codec::Utf16Be => utf16(bytes, u16::from_be_bytes)?,
            Codec::Utf16Le => utf16(bytes, u16::from_le_bytes)?,
            Codec::Utf32Be => utf32(bytes)?,
            Codec::Legacy(enc) => enc
                .decode_without_bom_handling_and_without_replacement(bytes)?
                .into_owned(),
            Codec::None => return None,
        };
        (self.encode(&text).as_deref() == Some(bytes)).then_some(text)
    }

    /// `text` in this character set; `None` if a character has no encoding in it.
    pub fn encode(self, text: &str) -> Option<Vec<u8>> {
        match self.codec() {
            Codec::Utf8 => Some(text.as_bytes().to_vec()),
            Codec::Ascii => text.is_ascii().then(|| text.as_bytes().to_vec()),
            Codec::Utf16Be => Some(text.encode_utf16().flat_map(u16::to_be_bytes).collect()),
            Codec::Utf16Le => Some(text.encode_utf16().flat_map(u16::to_le_bytes).collect()),
            Codec::Utf32Be => Some(
                text.chars()
                    .flat_map(|c| u32::from(c).to_be_bytes())
                    .collect(),
            ),
            Codec::Legacy(enc) => {
                let (bytes, _, unmappable) = enc.encode(text);
                (!unmappable).then(|| bytes.into_owned())
            }
            Codec::None => None,
        }
    }

    /// The placeholder for a value of this character set bound with
    /// [`crate::Value::to_mysql`]: its bytes travel base64-encoded (a server validates a
    /// string parameter as text of the connection's character set, which these bytes are
    /// not) and are relabelled with this set on the server.
    pub fn placeholder(self) -> String {
        format!("CONVERT(FROM_BASE64(?) USING {})", self.name())
    }

    /// The space character in this character set: what CHAR columns are padded with.
    pub fn space(self) -> &'static [u8] {
        match self.codec() {
            Codec::Utf16Be => &[0, 0x20],
            Codec::Utf16Le => &[0x20, 0],
            Codec::Utf32Be => &[0, 0, 0, 0x20],
            _ => b" ",
        }
    }

    /// `bytes` without trailing spaces of this character set (whole characters only).
    pub fn trim_end_spaces(self, mut bytes: &[u8]) -> &[u8] {
        let space = self.space();
        while let Some(rest) = bytes.strip_suffix(space) {
            // A fixed-width set only trims whole characters.
            if rest.len() % space.len() != 0 {
                break;
            }
            bytes = rest;
        }
        bytes
    }
}

fn ascii(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Option<String> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let units = bytes.chunks_exact(2).map(|c| unit([c[0], c[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .ok()
}

fn utf32(bytes: &[u8]) -> Option<String> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    bytes
        .chunks_exact(4)
        .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .collect()
}

impl fmt::Debug for Charset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Charset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Charset {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Charset {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Charset::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown character set `{name}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(name: &str) -> Charset {
        Charset::from_name(name).unwrap()
    }

    #[test]
    fn names_round_trip_and_utf8_is_an_alias() {
        for n in NAMES {
            assert_eq!(cs(n).name(), n);
        }
        assert_eq!(cs("UTF8"), cs("utf8mb3"));
        assert!(Charset::from_name("klingon").is_none());
        assert!(cs("utf8mb4").is_utf8() && !cs("latin1").is_utf8());
    }

    #[test]
    fn decoding_is_exact_or_nothing() {
        assert_eq!(cs("latin1").decode(&[0xE9]).as_deref(), Some("é"));
        assert_eq!(cs("latin1").decode(&[0xC3, 0xA9]).as_deref(), Some("Ã©"));
        assert_eq!(cs("latin1").decode(&[0x81]).as_deref(), Some("\u{81}"));
        assert_eq!(
            cs("utf16").decode(&[0, 0x41, 0, 0x42]).as_deref(),
            Some("AB")
        );
        assert_eq!(cs("utf16le").decode(&[0x41, 0]).as_deref(), Some("A"));
        assert_eq!(cs("utf32").decode(&[0, 1, 0xF6, 0]).as_deref(), Some("😀"));
        assert_eq!(cs("ucs2").decode(&[0, 0x41, 0]), None, "odd length");
        assert_eq!(cs("utf16").decode(&[0xD8, 0x00]), None, "lone surrogate");
        assert_eq!(cs("ascii").decode(&[0x80]), None);
        assert_eq!(cs("binary").decode(b"x"), None);
        assert_eq!(cs("cp1251").decode(&[0xC0]).as_deref(), Some("А"));
        assert_eq!(cs("sjis").decode(&[0x82, 0xA0]).as_deref(), Some("あ"));
        assert_eq!(cs("sjis").decode(&[0x82]), None, "truncated");
        assert_eq!(cs("utf8mb4").decode(&[0xFF]), None);
    }

    #[test]
    fn encoding_inverts_decoding() {
        for (name, text) in [
            ("latin2", "Žluťoučký"),
            ("gbk", "汉字"),
            ("big5", "漢字"),
            ("euckr", "한국어"),
            ("ujis", "日本語"),
            ("koi8r", "Привет"),
            ("greek", "Ελληνικά"),
            ("hebrew", "עברית"),
            ("utf32", "a😀"),
        ] {
            let bytes = cs(name).encode(text).unwrap();
            assert_eq!(cs(name).decode(&bytes).as_deref(), Some(text), "{name}");
        }
        assert_eq!(cs("latin1").encode("😀"), None);
        assert_eq!(cs("ascii").encode("é"), None);
    }

    #[test]
    fn char_padding_is_trimmed_in_whole_characters() {
        assert_eq!(cs("latin1").trim_end_spaces(b"ab  "), b"ab");
        assert_eq!(cs("utf16").trim_end_spaces(&[0, 0x41, 0, 0x20]), &[0, 0x41]);
        // 0x20 0x00 0x20 in utf16 is not a trailing space character.
        assert_eq!(
            cs("utf16").trim_end_spaces(&[0x20, 0x00, 0x20]),
            &[0x20, 0x00, 0x20]
        );
    }
}
