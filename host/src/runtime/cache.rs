//! Compiled code cached on disk, so a restart does not recompile: one file per component and
//! engine configuration.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

pub(super) struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompileCache {
    pub fn new(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
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
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `put` below from `Component::serialize` of this very
        // engine configuration (the key includes its compatibility hash), in a directory that
        // belongs to this host. wasmtime checks the header and refuses a mismatch.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(path = %path.display(), "ignoring an unusable compile cache entry: {err}");
                let _ = std::fs::remove_file(&path);
                None
            }
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
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(err) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(path = %path.display(), "could not cache compiled code: {err}");
        }
    }
}
