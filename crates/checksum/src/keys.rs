//! Checking a given set of keys of one table — the rows a batch recovery's time window
//! changed — instead of a key range. Each page of keys is read on both servers at a
//! consistent point: the source rows, the source's position, the replicator past it, the
//! target rows; rows that differ go through the source recheck, as a chunk's do.
//!
//! Invariant: the keys are checked in the order given, and the run (scope, as for a range)
//! saves the last key of every finished page, so a resumed check given the same keys
//! starts after it — no key is skipped, none of a finished page checked twice.

use crate::metrics;
use crate::table::{confirm, Sides, TableReport};
use crate::{describe, require_replicator, stream_of, ChecksumError};
use concord_change::{TableName, Value};
use concord_compare::rows::key_of;
use concord_compare::{differences, CompareError, Comparer, Side};
use concord_config::Config;
use concord_control::{ChecksumRun, Mismatch};
use std::time::{Duration, Instant};

/// Keys per page: one read of each side, one recheck.
const PAGE: usize = 1_000;

/// Checks the rows of `table` with `keys` (each in the source's primary-key order) for
/// batch recovery job `job`, calling `on_page` after each page. With `record` off,
/// confirmed differences are returned instead of recorded; recorded, they are marked as
/// the job's.
pub async fn check_keys(
    config: &Config,
    table: &TableName,
    keys: &[Vec<Value>],
    job: i64,
    record: bool,
    on_page: &mut (dyn FnMut(&ChecksumRun) + Send),
) -> Result<(TableReport, Vec<Mismatch>), ChecksumError> {
    let mut checker = Comparer::connect(config).await?;
    checker.record = record;
    checker.batch_job = Some(job);
    let scope = crate::batch_scope(job);
    let scope = scope.as_str();
    require_replicator(config, &checker.replica).await?;
    let filter = config.tables.filter();
    let started = Instant::now();
    let mut report = TableReport::new(table.clone());
    let mut backoff = Duration::from_millis(200);
    loop {
        let sides = match describe(&checker, &filter, table).await {
            Ok(sides) => sides,
            Err(problem) => {
                report.problem = Some(problem);
                break;
            }
        };
        match check_pages(config, &checker, &sides, keys, scope, &mut report, on_page).await {
            Ok(()) => break,
            Err(e) if e.is_transient() => {
                tracing::warn!(%table, error = %e, retry_in = ?backoff, "key check interrupted; resuming after its last page");
                checker.refresh_after(&e).await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.replicator.max_backoff);
            }
            Err(e) => {
                report.problem = Some(e.to_string());
                break;
            }
        }
    }
    report.elapsed = started.elapsed();
    let found = std::mem::take(&mut report.found);
    Ok((report, found))
}

/// The pages from where the run stands to the end of `keys`.
async fn check_pages(
    config: &Config,
    checker: &Comparer,
    sides: &Sides,
    keys: &[Vec<Value>],
    scope: &str,
    report: &mut TableReport,
    on_page: &mut (dyn FnMut(&ChecksumRun) + Send),
) -> Result<(), CompareError> {
    let name = &sides.source.name;
    let label = name.to_string();
    let stream = stream_of(config, name);
    let mut run = checker.control.checksum_run_in(name, scope, false).await?;
    let start = match run
        .last_key
        .as_deref()
        .map(serde_json::from_str::<Vec<Value>>)
    {
        None => 0,
        Some(Ok(last)) => {
            let last = key_of(&sides.source, &last);
            keys.iter()
                .position(|k| key_of(&sides.source, k) == last)
                .map_or(0, |i| i + 1)
        }
        Some(Err(e)) => {
            tracing::warn!(table = %name, error = %e, "saved key unreadable; checking the keys from the start");
            0
        }
    };
    if keys.is_empty() || start >= keys.len() {
        checker.control.finish_checksum(&run).await?;
        return Ok(());
    }
    for page in keys[start..].chunks(PAGE) {
        crate::pace::wait_until_quiet(&checker.source, config.checksum.max_threads_running)
            .await
            .map_err(|e| concord_compare::sql(Side::Source, name, e))?;
        let found = differing(checker, sides, &stream, page).await?;
        if !found.is_empty() {
            confirm(checker, sides, found, report, &mut run).await?;
            run.chunks_differ += 1;
        }
        run.chunks += 1;
        run.rows += page.len() as i64;
        run.last_key = page
            .last()
            .map(|k| serde_json::to_string(k).expect("values serialize"));
        metrics::CHECKSUM_ROWS
            .with_label_values(&[&label])
            .inc_by(page.len() as u64);
        checker.control.save_checksum_progress(&run).await?;
        report.rows = run.rows as u64;
        report.chunks = run.chunks as u64;
        report.chunks_differ = run.chunks_differ as u64;
        report.mismatches = run.mismatches as u64;
        on_page(&run);
    }
    checker.control.finish_checksum(&run).await?;
    Ok(())
}

/// The rows of `page` that differ between the servers at a consistent point, as
/// expectations for the source recheck (the source row, or none where only the target has
/// it).
async fn differing(
    checker: &Comparer,
    sides: &Sides,
    stream: &concord_target::Stream,
    page: &[Vec<Value>],
) -> Result<Vec<concord_compare::Expectation>, CompareError> {
    let name = &sides.source.name;
    let source = checker.read_rows(Side::Source, &sides.source, page).await?;
    let origin = checker.source_position(name).await?;
    checker
        .replica
        .wait_applied(&origin, stream, checker.poll)
        .await?;
    let in_target_order: Vec<Vec<Value>> =
        page.iter().map(|k| sides.key_in_target_order(k)).collect();
    let target = checker
        .read_rows(Side::Target, &sides.target, &in_target_order)
        .await?;
    let mut out = Vec::new();
    for (key, target_key) in page.iter().zip(&in_target_order) {
        let s = source.get(&key_of(&sides.source, key));
        let t = target.get(&key_of(&sides.target, target_key));
        if differences(
            &sides.shared,
            s.map(Vec::as_slice),
            &sides.target,
            t.map(Vec::as_slice),
        )
        .is_some()
        {
            out.push(sides.expectation(key.clone(), s.cloned(), stream, &origin));
        }
    }
    Ok(out)
}
