//! Compiled code cached on disk, so a restart does not recompile: one file per component and
//! engine configuration, ending with the SHA-256 of the rest. Compiled code is run as it is read:
//! wasmtime checks its header, not its code, so a bit flipped on disk would run. A file that does
//! not match its checksum (damaged, cut short by a crash, or written by an earlier version) is
//! removed and the component compiled again.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Bytes of the checksum after the compiled code.
const CHECKSUM: usize = 32;

pub(super) struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompileCache {
    pub fn new(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        crate::durable::create_dir(dir)?;
        crate::durable::remove_leftover_temp_files(dir);
        // Compiled code is only valid for the same wasmtime build and configuration.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(CompileCache { dir: dir.to_path_buf(), engine_key: format!("{:016x}", hasher.finish()) })
    }

    fn path(&self, wasm_hash: &str) -> PathBuf {
        self.dir.join(format!("{wasm_hash}-{}.cwasm", self.engine_key))
    }

    /// The cached compilation of the component whose bytes hash to `wasm_hash`, if any.
    pub fn get(&self, engine: &Engine, wasm_hash: &str) -> Option<Component> {
        let path = self.path(wasm_hash);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
            Err(err) => {
                tracing::warn!(path = %path.display(), "cannot read a compile cache entry: {err}");
                return None;
            }
        };
        let unusable = |why: &dyn std::fmt::Display| {
            tracing::warn!(path = %path.display(), "ignoring an unusable compile cache entry (compiling again): {why}");
            let _ = std::fs::remove_file(&path);
            None
        };
        let Some(split) = bytes.len().checked_sub(CHECKSUM) else { return unusable(&"shorter than its checksum") };
        let (code, checksum) = bytes.split_at(split);
        if Sha256::digest(code).as_slice() != checksum {
            return unusable(&"its checksum does not match: damaged or cut short");
        }
        // SAFETY: the bytes are exactly what `put` below wrote from `Component::serialize` of this
        // very engine configuration (the key includes its compatibility hash; the checksum shows
        // the file is unchanged), in a directory that belongs to this host. wasmtime checks the
        // header and refuses a mismatch.
        match unsafe { Component::deserialize(engine, code) } {
            Ok(component) => Some(component),
            Err(err) => unusable(&err),
        }
    }

    /// Forgets the compilation of a component no one runs any more.
    pub fn remove(&self, wasm_hash: &str) {
        let path = self.path(wasm_hash);
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), "could not remove a compile cache entry: {err}");
            }
            _ => {}
        }
    }

    pub fn put(&self, wasm_hash: &str, component: &Component) {
        let path = self.path(wasm_hash);
        let written = component.serialize().map_err(|e| std::io::Error::other(e.to_string())).and_then(|mut bytes| {
            let checksum = Sha256::digest(&bytes);
            bytes.extend_from_slice(&checksum);
            crate::durable::write(&path, &bytes)
        });
        if let Err(err) = written {
            tracing::warn!(path = %path.display(), "could not cache compiled code: {err}");
        }
    }
}
