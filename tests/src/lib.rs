//! Helpers shared by the integration tests and their helper binaries.

pub mod crash {
    //! The crash test's event layout, shared by the test and its child process.

    pub const WRITERS: usize = 16;
    /// Writers that race to append to one tag under a condition, so that some are refused.
    pub const RACERS: usize = 4;
    /// The tag the racers append to, in every cycle.
    pub const RACE_TAG: &str = "race";
    /// Small segments, so that the log rolls to a new segment every few batches and kills land
    /// during rolls too.
    pub const SEGMENT_BYTES: u32 = 64 << 10;

    /// The store's options in the child and the test: small segments, and the open segment's
    /// index checkpointed each time it grows 8 KiB, so that kills land while one is written.
    pub fn options() -> counterpoint::store::EmbeddedOptions {
        counterpoint::store::EmbeddedOptions {
            segment_bytes: SEGMENT_BYTES,
            checkpoint_every_bytes: 8 << 10,
            checkpoint_interval: std::time::Duration::ZERO,
            ..Default::default()
        }
    }

    /// The tag that identifies one racer's append.
    pub fn race_tag(cycle: u64, racer: usize, seq: u64) -> String {
        format!("race:{cycle}-{racer}-{seq}")
    }

    /// A racer's event data: the position of the last race event it saw (0 for none), which its
    /// condition says is still the last one when its append lands.
    pub fn race_data(after: u64) -> Vec<u8> {
        format!("after {after}").into_bytes()
    }

    pub fn parse_race_data(data: &[u8]) -> Option<u64> {
        std::str::from_utf8(data).ok()?.strip_prefix("after ")?.parse().ok()
    }

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

pub mod slices {
    //! Real compiled slices for the end-to-end tests, loaded once per test binary.

    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex, OnceLock};

    use counterpoint::runtime::{Runtime, RuntimeConfig, Slice};

    /// The workspace's target directory (where `just slices` puts the components).
    pub fn target_dir() -> PathBuf {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
    }

    /// The compiled component of slice crate `name`.
    pub fn wasm_path(name: &str) -> PathBuf {
        let path = target_dir().join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")));
        assert!(path.exists(), "{} is missing: build the slices first (`just slices`)", path.display());
        path
    }

    pub fn wasm(name: &str) -> Vec<u8> {
        std::fs::read(wasm_path(name)).expect("read component")
    }

    /// One runtime for the whole test binary, with compiled code cached under target/.
    pub fn runtime() -> Runtime {
        static RUNTIME: OnceLock<Runtime> = OnceLock::new();
        RUNTIME
            .get_or_init(|| {
                let config = RuntimeConfig { cache_dir: Some(target_dir().join("test-compile-cache")), ..Default::default() };
                Runtime::new(config).expect("runtime")
            })
            .clone()
    }

    /// Slice crate `name`, loaded once.
    pub async fn slice(name: &str) -> Arc<Slice> {
        static LOADED: OnceLock<Mutex<HashMap<String, Arc<Slice>>>> = OnceLock::new();
        let loaded = LOADED.get_or_init(Default::default);
        if let Some(slice) = loaded.lock().unwrap().get(name) {
            return slice.clone();
        }
        let slice = Arc::new(runtime().load(wasm(name)).await.unwrap_or_else(|e| panic!("loading {name}: {e}")));
        loaded.lock().unwrap().entry(name.to_string()).or_insert(slice).clone()
    }
}

pub mod chain {
    //! The chain tests' event layout, shared by the tests and their child process.

    /// Tasks extending the one chain at once.
    pub const CHAINERS: usize = 16;
    pub const CHAIN_TAG: &str = "chain";

    /// Link `n`'s data: its number, one more than the link it was decided on.
    pub fn link_data(n: u64) -> Vec<u8> {
        format!("link {n}").into_bytes()
    }

    pub fn parse_link(data: &[u8]) -> Option<u64> {
        std::str::from_utf8(data).ok()?.strip_prefix("link ")?.parse().ok()
    }
}
