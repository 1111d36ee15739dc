//! Character sets of the source and text to store in each: shared by the character-set
//! tests and the generative test.

/// One character set and text to store in it.
pub struct Case {
    pub charset: &'static str,
    /// Bytes valid in the set that are also valid UTF-8 "by accident" (hex).
    pub accidental: &'static str,
    /// More bytes of the set outside ASCII (hex).
    pub native: &'static str,
    /// Text the set can hold, given as Unicode and converted by the source server.
    pub sample: &'static str,
}

pub const CASES: &[Case] = &[
    Case {
        charset: "latin1",
        accidental: "C3A9",
        native: "E9",
        sample: "déjà vu €",
    },
    Case {
        charset: "latin2",
        accidental: "C3A9",
        native: "E9",
        sample: "Žluťoučký kůň",
    },
    Case {
        charset: "cp1250",
        accidental: "C3A9",
        native: "B9",
        sample: "Łódź ščř",
    },
    Case {
        charset: "cp1251",
        accidental: "D0B0",
        native: "C0",
        sample: "Привет, мир",
    },
    Case {
        charset: "sjis",
        accidental: "C3A9",
        native: "82A0",
        sample: "日本語ｶﾅ",
    },
    Case {
        charset: "cp932",
        accidental: "C3A9",
        native: "8740",
        sample: "日本語①",
    },
    Case {
        charset: "gbk",
        accidental: "C3A9",
        native: "BABA",
        sample: "汉字",
    },
    Case {
        charset: "big5",
        accidental: "C3A9",
        native: "BA7E",
        sample: "漢字",
    },
    Case {
        charset: "euckr",
        accidental: "C3A9",
        native: "C7D1",
        sample: "한국어",
    },
    Case {
        charset: "ujis",
        accidental: "C3A9",
        native: "C6FC",
        sample: "日本語",
    },
    Case {
        charset: "koi8r",
        accidental: "D0B0",
        native: "E9",
        sample: "Привет",
    },
    Case {
        charset: "greek",
        accidental: "C3A9",
        native: "E9",
        sample: "Ελληνικά",
    },
    Case {
        charset: "hebrew",
        accidental: "C3A9",
        native: "E9",
        sample: "עברית",
    },
    Case {
        charset: "utf8mb3",
        accidental: "C3A9",
        native: "E6BCA2",
        sample: "ünï漢",
    },
    Case {
        charset: "utf8mb4",
        accidental: "F09F9880",
        native: "C3A9",
        sample: "😀 ünï",
    },
    Case {
        charset: "ucs2",
        accidental: "C3A9",
        native: "03A9",
        sample: "Ωé漢",
    },
    Case {
        charset: "utf16",
        accidental: "C3A9",
        native: "D83DDE00",
        sample: "😀Ω",
    },
    Case {
        charset: "utf16le",
        accidental: "C3A9",
        native: "3DD800DE",
        sample: "😀Ω",
    },
    Case {
        charset: "utf32",
        accidental: "0000C3A9",
        native: "0001F600",
        sample: "😀Ω",
    },
    Case {
        charset: "ascii",
        accidental: "41",
        native: "7E",
        sample: "plain",
    },
    Case {
        charset: "binary",
        accidental: "C3A9",
        native: "00FF80",
        sample: "bytes",
    },
];

/// Character sets the issue lists that MariaDB 10.11 does not have: MySQL's latin1 *is*
/// Windows-1252, and gb18030 is MySQL-only.
pub const NOT_IN_MARIADB: &[&str] = &["cp1252", "gb18030"];
