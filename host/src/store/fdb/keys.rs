//! The key layout of one tenant's log, and positions as versionstamps.
//!
//! Under the tenant's subspace `("counterpoint", <deployment prefix>, <tenant>)`:
//!
//! ```text
//! h                                   head: versionstamp of the newest event (12 bytes)
//! e <vs:12> <chunk:u16 BE>            an event's record, split into chunks of at most CHUNK bytes
//! t <pack(type)> <vs:12>              type index            (empty values)
//! g <pack(tag)> <vs:12>               tag index
//! x <pack((type, tag))> <vs:12>       type+tag index
//! c t <pack(type)> / c g <pack(tag)>  approximate entry counts (atomic adds, i64 LE)
//! n                                   the number of events in the log (atomic adds, i64 LE)
//! i <version:u64 BE> <id:16>          an append's id: tells a retried append whether it committed;
//!                                     `version` is the cluster's read version when it was made
//! ```
//!
//! `vs` is the 10-byte commit versionstamp followed by the event's 2-byte index within its
//! append, so keys sort in log order and every index is ordered by position.

use foundationdb::tuple::{pack, Subspace};

use crate::store::{Position, Tenant};

/// The largest value written to one key: FDB values are at most 100,000 bytes.
pub(super) const CHUNK: usize = 90_000;
/// FDB's key size limit (10,000 bytes).
pub(super) const MAX_KEY: usize = 10_000;
/// A versionstamp with its user version.
pub(super) const VS_LEN: usize = 12;

pub(super) type Vs = [u8; VS_LEN];

/// The position of a complete versionstamp: its 12 bytes big-endian, so order is preserved.
pub(super) fn position(vs: &Vs) -> Position {
    let mut wide = [0u8; 16];
    wide[4..].copy_from_slice(vs);
    Position::from_u128(u128::from_be_bytes(wide))
}

/// The versionstamp of `position`, or `None` when it is beyond every versionstamp (> 96 bits):
/// nothing can be after it.
pub(super) fn versionstamp(position: Position) -> Option<Vs> {
    let bytes = position.get().to_be_bytes();
    if bytes[..4] != [0; 4] {
        return None;
    }
    Some(bytes[4..].try_into().expect("12 bytes"))
}

/// The trailing versionstamp of an index or event key.
pub(super) fn vs_at(key: &[u8], offset: usize) -> Option<Vs> {
    key.get(offset..offset + VS_LEN)?.try_into().ok()
}

/// The first key after every key that starts with `prefix` (FDB's `strinc`).
pub(crate) fn strinc(prefix: &[u8]) -> Vec<u8> {
    let mut key = prefix.to_vec();
    while let Some(&last) = key.last() {
        if last == 0xff {
            key.pop();
        } else {
            *key.last_mut().expect("non-empty") += 1;
            return key;
        }
    }
    // Only 0xff bytes: nothing sorts after it in the user keyspace.
    vec![0xff]
}

/// The keys of one tenant.
#[derive(Clone, Debug)]
pub(super) struct TenantKeys {
    root: Vec<u8>,
}

impl TenantKeys {
    pub fn new(deployment: &str, tenant: &Tenant) -> Self {
        let space = Subspace::from(("counterpoint", deployment)).subspace(&tenant.as_str());
        TenantKeys { root: space.into_bytes() }
    }

    fn with(&self, tag: &[u8], rest: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.root.len() + tag.len() + rest.len() + VS_LEN + 4);
        key.extend_from_slice(&self.root);
        key.extend_from_slice(tag);
        key.extend_from_slice(rest);
        key
    }

    pub fn head(&self) -> Vec<u8> {
        self.with(b"h", &[])
    }

    /// The prefix of every event record.
    pub fn events(&self) -> Vec<u8> {
        self.with(b"e", &[])
    }

    /// The prefix of the chunks of the event at `vs`.
    pub fn event(&self, vs: &Vs) -> Vec<u8> {
        self.with(b"e", vs)
    }

    pub fn by_type(&self, event_type: &str) -> Vec<u8> {
        self.with(b"t", &pack(&event_type))
    }

    pub fn by_tag(&self, tag: &str) -> Vec<u8> {
        self.with(b"g", &pack(&tag))
    }

    pub fn by_type_tag(&self, event_type: &str, tag: &str) -> Vec<u8> {
        self.with(b"x", &pack(&(event_type, tag)))
    }

    pub fn type_count(&self, event_type: &str) -> Vec<u8> {
        self.with(b"ct", &pack(&event_type))
    }

    pub fn tag_count(&self, tag: &str) -> Vec<u8> {
        self.with(b"cg", &pack(&tag))
    }

    /// The number of events in the log.
    pub fn count(&self) -> Vec<u8> {
        self.with(b"n", &[])
    }

    /// The prefix of append ids; ids sort by the cluster version they were made at.
    pub fn append_ids(&self) -> Vec<u8> {
        self.with(b"i", &[])
    }

    pub fn append_id(&self, version: u64, id: u128) -> Vec<u8> {
        let mut key = self.append_ids();
        key.extend_from_slice(&version.to_be_bytes());
        key.extend_from_slice(&id.to_be_bytes());
        key
    }
}

/// `prefix`, a versionstamp placeholder with user version `index`, then `suffix`, then the
/// 4-byte little-endian offset of the placeholder that `SetVersionstampedKey` expects.
pub(super) fn versionstamped_key(prefix: &[u8], index: u16, suffix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + VS_LEN + suffix.len() + 4);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&[0; 10]);
    key.extend_from_slice(&index.to_be_bytes());
    key.extend_from_slice(suffix);
    let offset = u32::try_from(prefix.len()).expect("keys are far below 4 GiB");
    key.extend_from_slice(&offset.to_le_bytes());
    key
}

/// A value that becomes the commit versionstamp with user version `index` (12 bytes), for
/// `SetVersionstampedValue`.
pub(super) fn versionstamped_value(index: u16) -> Vec<u8> {
    let mut value = Vec::with_capacity(VS_LEN + 4);
    value.extend_from_slice(&[0; 10]);
    value.extend_from_slice(&index.to_be_bytes());
    value.extend_from_slice(&0u32.to_le_bytes());
    value
}

/// The versionstamp of a committed transaction (10 bytes) with user version `index`.
pub(super) fn complete(commit: &[u8; 10], index: u16) -> Vs {
    let mut vs = [0u8; VS_LEN];
    vs[..10].copy_from_slice(commit);
    vs[10..].copy_from_slice(&index.to_be_bytes());
    vs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_versionstamps_round_trip_in_order() {
        let a = complete(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0], 3);
        let b = complete(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0], 4);
        let c = complete(&[0, 0, 0, 0, 0, 0, 0, 2, 0, 0], 0);
        assert!(position(&a) < position(&b) && position(&b) < position(&c));
        assert_eq!(versionstamp(position(&c)), Some(c));
        assert_eq!(versionstamp(Position::from_u128(u128::MAX)), None);
        assert_eq!(versionstamp(Position::ZERO), Some([0; VS_LEN]));
    }

    #[test]
    fn strinc_skips_trailing_ff() {
        assert_eq!(strinc(b"ab"), b"ac".to_vec());
        assert_eq!(strinc(&[1, 0xff, 0xff]), vec![2]);
    }

    #[test]
    fn placeholders_point_at_the_versionstamp() {
        let key = versionstamped_key(b"pre", 7, b"s");
        assert_eq!(&key[key.len() - 4..], &3u32.to_le_bytes());
        assert_eq!(&key[3..15], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
    }
}
