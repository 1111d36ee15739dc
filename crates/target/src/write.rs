//! One key-level write to the target and the change it comes from: what the statements in
//! [`crate::sql`] are built from, for the replicator's batches and for repairs alike.

use concord_change::{RowChange, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// Insert the after-image, or overwrite the row with that key (only the columns the
    /// image carries, when it is partial).
    Upsert,
    /// Delete the row with the before-image's key.
    Delete,
    /// Set the columns a partial after-image carries on the row with the before-image's
    /// key (the key may be among them: the row moves).
    Update,
    /// Set the whole after-image on the row with the before-image's key: a key change of a
    /// table other tables' foreign keys cascade from, so that the target's engine carries
    /// the new key to the children as the source's did (a delete and an insert would
    /// cascade a delete). An upsert when the target lacks the row.
    Move,
}

/// One key-level write, pointing at the change it came from.
#[derive(Clone, Copy, Debug)]
pub struct Write<'a> {
    pub kind: WriteKind,
    pub change: &'a RowChange,
}

impl<'a> Write<'a> {
    /// The image whose values are written: the after-image for upserts and updates.
    pub fn image(&self) -> &'a [Value] {
        let img = match self.kind {
            WriteKind::Upsert | WriteKind::Update | WriteKind::Move => self.change.after.as_deref(),
            WriteKind::Delete => self.change.before.as_deref(),
        };
        img.unwrap_or(&[])
    }

    /// The image that finds the row on the target: the before-image for deletes and
    /// updates.
    pub fn key_image(&self) -> &'a [Value] {
        let img = match self.kind {
            WriteKind::Upsert => self.change.after.as_deref(),
            WriteKind::Update | WriteKind::Move | WriteKind::Delete => {
                self.change.before.as_deref()
            }
        };
        img.unwrap_or(&[])
    }

    /// Whether the write needs a statement of its own: a partial image names only its
    /// columns, and an ENUM index 0 is set by a fix-up after the statement, which must not
    /// run after a later write of the same row in the same statement.
    pub fn alone(&self) -> bool {
        self.kind == WriteKind::Move
            || self.is_partial()
            || (self.kind != WriteKind::Delete && self.image().contains(&Value::EnumIndex(0)))
    }

    /// Whether the image written lacks columns (a partial row image): such a write sets
    /// only some columns, so it neither overrides nor is overridden by other writes.
    pub fn is_partial(&self) -> bool {
        match self.kind {
            WriteKind::Update => true,
            WriteKind::Upsert | WriteKind::Move => self.image().iter().any(Value::is_absent),
            WriteKind::Delete => false,
        }
    }

    /// The bytes of the key this write finds its row by (its key image's key columns).
    pub fn key_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        for &i in &self.change.table.primary_key {
            self.key_image()[i].key_bytes(&mut out);
        }
        out
    }
}
