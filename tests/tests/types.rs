//! Every common column type survives the trip source → binlog → concord → target, value
//! for value, including NULLs and the extremes of each type.

use concord_e2e::{Concord, ConcordConfig, TestDb};
use std::time::Duration;

const TYPES_DDL: &str = "CREATE TABLE `{db}`.types (
    id INT PRIMARY KEY,
    ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
    mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
    bi BIGINT, biu BIGINT UNSIGNED,
    dec_wide DECIMAL(65,30), dec_money DECIMAL(10,2), f FLOAT, d DOUBLE,
    c CHAR(10), vc VARCHAR(255), t TEXT, mt MEDIUMTEXT,
    b BINARY(4), vb VARBINARY(255), bl BLOB, lb LONGBLOB,
    dt DATE, tm TIME(6), dtm DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, y YEAR,
    e ENUM('small','medium','large'), s SET('a','b','c','d','e','f','g','h','i'),
    bt1 BIT(1), bt64 BIT(64), j JSON
) DEFAULT CHARSET=utf8mb4";

const COLUMNS: &str = "id, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, dec_wide, dec_money, f, d, \
     c, vc, t, mt, b, vb, bl, lb, dt, tm, dtm, ts, y, e, s, bt1, bt64, j";

/// (id, values in COLUMNS order after id) — written as SQL literals on the source.
const ROWS: &[&str] = &[
    // minimums and negative extremes
    "1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0, \
     '-99999999999999999999999999999999999.999999999999999999999999999999', -99999999.99, \
     -3.40282e38, -1.7976931348623157e308, '', '', '', '', x'00000000', x'', x'', x'', \
     '1000-01-01', '-838:59:59.000000', '1000-01-01 00:00:00.000000', '1970-01-01 00:00:01.000000', \
     1901, 'small', '', b'0', b'0', '[]'",
    // maximums
    "2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807, \
     18446744073709551615, \
     '99999999999999999999999999999999999.999999999999999999999999999999', 99999999.99, \
     3.40282e38, 1.7976931348623157e308, 'ten chars!', REPEAT('v', 255), REPEAT('t', 5000), \
     REPEAT('m', 70000), x'FFFFFFFF', x'00FF00FF', REPEAT(x'AB', 1000), REPEAT(x'CD', 100000), \
     '9999-12-31', '838:59:59.000000', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', \
     2155, 'large', 'a,b,c,d,e,f,g,h,i', b'1', x'FFFFFFFFFFFFFFFF', '{\"a\": [1, 2.5, \"x\"], \"b\": null}'",
    // NULL in every nullable column
    "3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
     NULL, NULL, NULL",
    // ordinary values that are easy to get subtly wrong
    "4, 0, 1, -1, 1, -1, 1, -1, 1, -1, 1, '0.000000000000000000000000000001', 0.10, 0.1, 0.1, \
     'a ', '😀 utf8mb4 ünïcödé', 'line1\nline2\ttab \\\\ backslash ''quote''', '漢字', \
     x'00000001', x'0000', x'000102', x'FF', '2024-02-29', '-00:00:00.000001', \
     '2024-02-29 12:34:56.000001', '2024-06-01 12:00:00.123456', 0, 'medium', 'b,i', b'1', b'101', \
     '{\"emoji\": \"😀\", \"n\": 12345678901234567890}'",
    // zero-ish values
    "5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.00, 0, 0, 'x', 'x', 'x', 'x', x'20202020', x'20', \
     x'20', x'20', '2000-01-01', '00:00:00', '2000-01-01 00:00:00', '2000-01-01 00:00:00', \
     2000, 'small', 'a', b'0', b'0', '{}'",
];

#[tokio::test(flavor = "multi_thread")]
async fn every_type_round_trips_value_by_value() {
    let db = TestDb::new("types").await;
    db.both(TYPES_DDL).await;
    let concord = Concord::start(&ConcordConfig::new(&db)).await;

    for row in ROWS {
        db.source(&format!(
            "INSERT INTO `{{db}}`.types ({COLUMNS}) VALUES ({row})"
        ))
        .await;
    }
    // Updates and deletes must carry the same values through before-images too.
    db.source("UPDATE `{db}`.types SET vc = CONCAT(LEFT(vc, 200), '!'), biu = 18446744073709551614 WHERE id = 2")
        .await;
    db.source("INSERT INTO `{db}`.types (id) VALUES (6)").await;
    db.source("DELETE FROM `{db}`.types WHERE id = 6").await;

    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    assert_eq!(
        db.count(true, "types").await,
        ROWS.len(),
        "failed events: {:?}",
        concord.failed_events().await
    );
    // Compare each column on its own so a failure names the column.
    for col in COLUMNS.split(", ") {
        db.assert_same("types", &format!("id, {col}")).await;
    }
    // And the text of a few values, so a systematic error on both reads cannot hide.
    let t = db
        .rows(
            true,
            "types",
            "id, biu, dec_wide, tm, ts, y, s, HEX(bt64), vc",
        )
        .await;
    let text = |r: usize, c: usize| match &t[r][c + 1] {
        mysql_async::Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        mysql_async::Value::NULL => "NULL".into(),
        v => format!("{v:?}"),
    };
    assert_eq!(text(1, 0), "18446744073709551614");
    assert_eq!(
        text(0, 1),
        "-99999999999999999999999999999999999.999999999999999999999999999999"
    );
    assert_eq!(text(0, 2), "-838:59:59.000000");
    assert_eq!(text(3, 2), "-00:00:00.000001");
    assert_eq!(text(1, 3), "2038-01-19 03:14:07.999999");
    assert_eq!(text(3, 4), "0000");
    assert_eq!(text(3, 5), "b,i");
    assert_eq!(text(1, 6), "FFFFFFFFFFFFFFFF");
    assert_eq!(text(3, 7), "😀 utf8mb4 ünïcödé");
    assert_eq!(text(2, 0), "NULL");
    assert!(concord.failed_events().await.is_empty());
}
