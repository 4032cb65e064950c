//! Copying the read models' state: every table of one redb read transaction (a snapshot of all
//! states and checkpoints together) into a new database in the backup.

use std::collections::BTreeMap;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

use super::BackupError;
use crate::store::Position;

/// The checkpoints table of `readmodels::EmbeddedState`: `tenant/slice/name` → the position
/// (16 bytes, big-endian) and the source query.
const CHECKPOINTS: &str = "checkpoints";

fn failed(what: &str, err: impl std::fmt::Display) -> BackupError {
    BackupError::State(format!("{what}: {err}"))
}

/// Copies every table of `db`, as of one instant, into a new database at `dest`; returns each
/// read model's checkpoint position, by `tenant/slice/name`.
pub fn snapshot(db: &Database, dest: &Path) -> Result<BTreeMap<String, Position>, BackupError> {
    let read = db.begin_read().map_err(|e| failed("reading the read-model state", e))?;
    let out = Database::create(dest).map_err(|e| failed(&format!("creating {}", dest.display()), e))?;
    let write = out.begin_write().map_err(|e| failed("writing the copy", e))?;
    let mut checkpoints = BTreeMap::new();
    for handle in read.list_tables().map_err(|e| failed("listing the read-model tables", e))? {
        let name = handle.name().to_string();
        if name == CHECKPOINTS {
            let definition = TableDefinition::<&str, &[u8]>::new(CHECKPOINTS);
            let from = read.open_table(definition).map_err(|e| failed(&name, e))?;
            let mut to = write.open_table(definition).map_err(|e| failed(&name, e))?;
            for entry in from.iter().map_err(|e| failed(&name, e))? {
                let (key, value) = entry.map_err(|e| failed(&name, e))?;
                let position = value.value().get(..16).and_then(|b| b.try_into().ok()).map(u128::from_be_bytes);
                let position = position.ok_or_else(|| failed(&name, format!("the checkpoint of {} does not decode", key.value())))?;
                checkpoints.insert(key.value().to_string(), Position::from_u128(position));
                to.insert(key.value(), value.value()).map_err(|e| failed(&name, e))?;
            }
        } else {
            let definition = TableDefinition::<&[u8], &[u8]>::new(&name);
            let from = read.open_table(definition).map_err(|e| failed(&name, e))?;
            let mut to = write.open_table(definition).map_err(|e| failed(&name, e))?;
            for entry in from.iter().map_err(|e| failed(&name, e))? {
                let (key, value) = entry.map_err(|e| failed(&name, e))?;
                to.insert(key.value(), value.value()).map_err(|e| failed(&name, e))?;
            }
        }
    }
    write.commit().map_err(|e| failed("committing the copy", e))?;
    Ok(checkpoints)
}
