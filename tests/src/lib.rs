//! Helpers shared by the integration tests and their helper binaries.

pub mod crash {
    //! The crash test's event layout, shared by the test and its child process.

    pub const WRITERS: usize = 16;

    /// The tag that identifies one append.
    pub fn append_tag(cycle: u64, writer: usize, seq: u64) -> String {
        format!("append:{cycle}-{writer}-{seq}")
    }

    /// The data of event `j` of `count` of an append: self-describing, of varying length.
    pub fn event_data(tag: &str, j: usize, count: usize, seq: u64) -> Vec<u8> {
        let unit = format!("{tag}#{j}/{count}|");
        unit.repeat(1 + (seq as usize * 37) % 200).into_bytes()
    }

    /// Parses `event_data`'s first unit back: (tag, j, count).
    pub fn parse_data(data: &[u8]) -> Option<(String, usize, usize)> {
        let text = std::str::from_utf8(data).ok()?;
        let unit = text.split('|').next()?;
        let (tag, rest) = unit.split_once('#')?;
        let (j, count) = rest.split_once('/')?;
        let expected = format!("{unit}|");
        if text.len() % expected.len() != 0 || text.split('|').filter(|s| !s.is_empty()).any(|s| format!("{s}|") != expected) {
            return None;
        }
        Some((tag.to_string(), j.parse().ok()?, count.parse().ok()?))
    }
}
