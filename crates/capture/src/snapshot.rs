//! The capture as a snapshot's stream owner (docs/SNAPSHOT.md): between two source
//! transactions it publishes the chunks whose snapshot position it has passed — rows as
//! `op = "r"` envelopes, target keys the source lacks as `op = "d"` — keyed like every
//! change of those keys, so on each partition they come after every change before that
//! position and before every change after it. A chunk counts as written once the broker
//! acknowledged all of its messages.
//!
//! Invariant: a chunk's messages are handed to the producer only between two whole
//! transactions, never inside a fragmented one.

use crate::acks::Pending;
use crate::error::CaptureError;
use crate::publish::{now_ms, Publisher};
use concord_change::envelope::{message_key, Envelope, SourceInfo, TxnInfo};
use concord_change::{Op, Position, RowChange, Value};
use concord_schema_cache::SchemaCache;
use concord_snapshot::{keys_in_scope, not_written_rows, Notes, Outcome, ReadyChunk};
use mysql_async::Pool;
use rdkafka::producer::FutureRecord;
use tokio::sync::mpsc;

/// What the capture needs to publish chunks: the notes, and the target (whose keys in a
/// chunk's scope decide the deletes).
pub(crate) struct ChunkPublisher {
    pub notes: Notes,
    target: Pool,
    schema: SchemaCache,
}

impl ChunkPublisher {
    pub fn new(notes: Notes, target: Pool, schema: SchemaCache) -> Self {
        Self {
            notes,
            target,
            schema,
        }
    }

    /// Publishes the chunks read at or before `at` (the end of the last whole transaction
    /// published), handing each one's messages to the acknowledger.
    pub async fn publish_ready(
        &self,
        publisher: &Publisher,
        at: Option<&Position>,
        acks: &mpsc::Sender<Pending>,
    ) -> Result<(), CaptureError> {
        let Some(at) = at else { return Ok(()) };
        for mut chunk in self.notes.take_ready(at) {
            if let Some(why) = chunk.spoiled.take() {
                chunk.finish(Outcome::Spoiled(why));
                continue;
            }
            let (keys, target) = match self.target_keys(&chunk).await {
                Ok(k) => k,
                Err(why) => {
                    chunk.finish(Outcome::Spoiled(why));
                    continue;
                }
            };
            let mut resolved = chunk.resolve(&keys);
            let deletes = std::mem::take(&mut resolved.deletes);
            resolved.deletes = match self
                .not_written(&chunk, &target, &resolved.rows, deletes)
                .await
            {
                Ok(d) => d,
                Err(why) => {
                    chunk.finish(Outcome::Spoiled(why));
                    continue;
                }
            };
            let (copied, deleted) = (resolved.rows.len() as u64, resolved.deletes.len() as u64);
            let changes = chunk_changes(&chunk, resolved.rows, resolved.deletes);
            let mut pending = publisher.publish_chunk(&chunk, &changes).await?;
            pending.on_acked = Some(Box::new(move || {
                chunk.finish(Outcome::Written { copied, deleted })
            }));
            if acks.send(pending).await.is_err() {
                break; // the acknowledger stopped; its error is reported by the capture
            }
        }
        Ok(())
    }

    async fn not_written(
        &self,
        chunk: &ReadyChunk,
        target: &concord_schema_cache::TargetTable,
        rows: &[Vec<Value>],
        deletes: Vec<Vec<Value>>,
    ) -> Result<Vec<Vec<Value>>, String> {
        if deletes.is_empty() {
            return Ok(deletes);
        }
        let mut conn = self
            .target
            .get_conn()
            .await
            .map_err(|e| format!("connecting to the target: {e}"))?;
        not_written_rows(&mut conn, &chunk.spec.shape, target, rows, deletes)
            .await
            .map_err(|e| format!("reading the target's keys: {e}"))
    }

    async fn target_keys(
        &self,
        chunk: &ReadyChunk,
    ) -> Result<
        (
            Vec<Vec<Value>>,
            std::sync::Arc<concord_schema_cache::TargetTable>,
        ),
        String,
    > {
        let shape = &chunk.spec.shape;
        let target = self
            .schema
            .get(&shape.target)
            .await
            .map_err(|e| format!("reading the target's columns: {e}"))?
            .ok_or_else(|| format!("the target has no table {}", shape.target))?;
        let mut conn = self
            .target
            .get_conn()
            .await
            .map_err(|e| format!("connecting to the target: {e}"))?;
        let keys = keys_in_scope(&mut conn, &chunk.spec, &target)
            .await
            .map_err(|e| format!("reading the target's keys: {e}"))?;
        Ok((keys, target))
    }
}

/// A chunk's rows as `r` changes and its deletes as `d` changes (a key-only before-image).
fn chunk_changes(
    chunk: &ReadyChunk,
    rows: Vec<Vec<Value>>,
    deletes: Vec<Vec<Value>>,
) -> Vec<RowChange> {
    let table = chunk.spec.shape.change_table.clone();
    let origin = Position::new(format!("snapshot:{}", chunk.spec.job), chunk.spec.seq);
    let now = (now_ms() / 1000) as u32;
    let width = table.columns.len();
    let mut out = Vec::with_capacity(rows.len() + deletes.len());
    for row in rows {
        out.push(RowChange {
            table: table.clone(),
            op: Op::Read,
            before: None,
            after: Some(row),
            position: origin.clone(),
            row_index: out.len() as u32,
            commit_ts: now,
        });
    }
    for key in deletes {
        let mut image = vec![Value::Absent; width];
        for (&i, v) in table.primary_key.iter().zip(key) {
            image[i] = v;
        }
        out.push(RowChange {
            table: table.clone(),
            op: Op::Delete,
            before: Some(image),
            after: None,
            position: origin.clone(),
            row_index: out.len() as u32,
            commit_ts: now,
        });
    }
    out
}

impl Publisher {
    /// Hands a chunk's changes to the producer; their `source` names the chunk
    /// (`snapshot:<job>`, the chunk's number, the row's index) and, as the transaction's
    /// end, the binlog position the rows were read at.
    async fn publish_chunk(
        &self,
        chunk: &ReadyChunk,
        changes: &[RowChange],
    ) -> Result<Pending, CaptureError> {
        let permit = self.permits(changes.len()).await;
        let now = now_ms();
        let mut deliveries = Vec::with_capacity(changes.len());
        for (index, change) in changes.iter().enumerate() {
            let source = SourceInfo {
                file: change.position.file.to_string(),
                pos: change.position.pos,
                row: change.row_index,
                gtid: None,
                ts_ms: now,
                db: change.table.name.db.clone(),
                table: change.table.name.table.clone(),
                server_id: self.server_id(),
                txn: TxnInfo {
                    end_file: chunk.at.file.to_string(),
                    end_pos: chunk.at.pos,
                    index: index as u32,
                    total: changes.len() as u32,
                },
            };
            let payload = Envelope::encode(change, &source, now);
            let key = message_key(change);
            let topic = self.topic_for(&source.db, &source.table);
            let record = FutureRecord::to(&topic)
                .key(key.as_slice())
                .payload(payload.as_slice());
            let future = self.send(record, &chunk.at).await?;
            deliveries.push((topic, chunk.at.clone(), future));
        }
        Ok(Pending {
            end: None,
            resume_from: None,
            commit_ts: (now / 1000) as u32,
            deliveries,
            _unacked: permit,
            on_acked: None,
        })
    }
}
