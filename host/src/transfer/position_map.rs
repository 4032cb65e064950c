//! Old positions to new ones: kept in memory as runs (both sides counting up by one) to rewrite
//! the host's records, and written out as the mapping file for clients that stored positions.

use std::io::Write;

use crate::store::{Position, Tenant};

/// One tenant's positions, old to new, in order.
#[derive(Debug, Default)]
pub struct PositionMap {
    /// `(old, new, len)`: old + i maps to new + i for i below len.
    runs: Vec<(u128, u128, u128)>,
}

impl PositionMap {
    /// Adds the next pair; both must be past every earlier one.
    pub fn push(&mut self, old: Position, new: Position) {
        let (old, new) = (old.get(), new.get());
        if let Some((o, n, len)) = self.runs.last_mut()
            && *o + *len == old
            && *n + *len == new
        {
            *len += 1;
            return;
        }
        self.runs.push((old, new, 1));
    }

    /// The last old position mapped.
    pub fn last_old(&self) -> Option<Position> {
        self.runs.last().map(|(o, _, len)| Position::from_u128(o + len - 1))
    }

    /// The new position of the last event at or before `old` (`ZERO` before the first): what
    /// "everything up to `old`" means on the new log.
    pub fn floor(&self, old: Position) -> Position {
        let old = old.get();
        let i = self.runs.partition_point(|(o, _, _)| *o <= old);
        match i.checked_sub(1).map(|i| self.runs[i]) {
            None => Position::ZERO,
            Some((o, n, len)) => Position::from_u128(n + (old - o).min(len - 1)),
        }
    }

    /// How many runs it holds (memory is about 48 bytes each).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }
}

/// The mapping file: a header line, then `tenant<TAB>old<TAB>new` per event, in log order.
pub struct MappingFile<W: Write> {
    out: W,
}

impl<W: Write> MappingFile<W> {
    pub const HEADER: &'static str = "tenant\told_position\tnew_position";

    pub fn new(mut out: W) -> std::io::Result<Self> {
        writeln!(out, "{}", Self::HEADER)?;
        Ok(MappingFile { out })
    }

    pub fn pair(&mut self, tenant: &Tenant, old: Position, new: Position) -> std::io::Result<()> {
        writeln!(self.out, "{tenant}\t{old}\t{new}")
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_maps_every_old_position_to_the_last_event_at_or_before_it() {
        let mut map = PositionMap::default();
        let p = Position::from_u128;
        for (old, new) in [(3, 100), (4, 101), (5, 102), (9, 103), (10, 200)] {
            map.push(p(old), p(new));
        }
        assert_eq!(map.runs(), 3);
        let cases = [(0, 0), (2, 0), (3, 100), (5, 102), (6, 102), (8, 102), (9, 103), (10, 200), (11, 200), (u128::MAX, 200)];
        for (old, new) in cases {
            assert_eq!(map.floor(p(old)), p(new), "old {old}");
        }
        assert_eq!(map.last_old(), Some(p(10)));
    }
}
