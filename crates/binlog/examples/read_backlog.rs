//! The reader alone, for `bench/reader.sh`: reads the source's binlog from one position to
//! another through [`BinlogReader`] — decoding every row of every table and assembling
//! transactions, applying nothing — and prints one JSON line: transactions, row changes,
//! wall seconds and the process's CPU seconds.
//!
//! Usage: read_backlog URL FROM_FILE:POS TO_FILE:POS [SERVER_ID]

/// As the concord binary runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use concord_binlog::{
    check_settings, BinlogReader, FragmentBound, ReaderEvent, ReaderOptions, Resume,
};
use concord_change::Position;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: read_backlog URL FROM_FILE:POS TO_FILE:POS [SERVER_ID]");
        std::process::exit(2);
    }
    let opts = mysql_async::Opts::from_url(&args[1]).expect("a mysql:// URL");
    let from: Position = args[2].parse().expect("FROM as FILE:POS");
    let to: Position = args[3].parse().expect("TO as FILE:POS");
    let server_id: u32 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(7321);
    let mut conn = mysql_async::Conn::new(opts.clone()).await.expect("connect");
    let server = check_settings(&mut conn).await.expect("source settings");
    drop(conn);
    let reader = BinlogReader::new(
        ReaderOptions {
            opts,
            server_id,
            heartbeat: Duration::from_secs(1),
            include: Arc::new(|_| true),
            max_backoff: Duration::from_secs(1),
            fragment: FragmentBound {
                rows: 5000,
                bytes: 4 << 20,
            },
        },
        server,
    );
    let (tx, mut rx) = concord_binlog::queue(4096, 8 << 20);
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let reading = tokio::spawn(async move { reader.run(Resume::at(from), tx).await });
    let (mut transactions, mut rows) = (0u64, 0u64);
    while let Some(event) = rx.recv().await {
        match event {
            ReaderEvent::Transaction(t) => {
                transactions += 1;
                rows += t.changes.len() as u64;
                if t.end >= to {
                    break;
                }
            }
            ReaderEvent::Fragment(f) => rows += f.changes.len() as u64,
            ReaderEvent::CaughtUp { position, .. } if position >= to => break,
            ReaderEvent::CaughtUp { .. } => {}
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    reading.abort();
    println!(
        "{{\"transactions\": {transactions}, \"rows\": {rows}, \"wall_s\": {wall:.3}, \"cpu_s\": {cpu:.2}}}"
    );
}
