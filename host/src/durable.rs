//! Files in the data directory that survive a power cut, not only a crash: the catalog's
//! components and manifests, the tenants created at run time, the read-model state's file.
//!
//! - A file is written whole or not at all: to a temporary file beside it, which is synced,
//!   renamed over the name, and then the directory is synced (a rename is only durable once its
//!   directory is).
//! - A directory made on the way is synced into its parent, for the same reason.
//! - A temporary file a crash left behind (`<name>.tmp-<pid>-<n>`) is removed at the next start
//!   once no live process can still be writing it.
//! - A damaged file is never deleted: it is set aside as `<name>.damaged-<n>`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A temporary file this old is left over, whatever its process id says (process ids are reused,
/// after a reboot above all).
const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

/// Tells apart the temporary files of two writes in one process.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// Syncs a directory, so the entries made in it (created, renamed, removed) survive a power cut.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    std::fs::File::open(dir)?.sync_all()
}

/// `create_dir_all`, then each directory it made is synced into its parent.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let missing: Vec<PathBuf> = dir.ancestors().take_while(|d| !d.as_os_str().is_empty() && !d.exists()).map(Path::to_path_buf).collect();
    std::fs::create_dir_all(dir)?;
    for made in missing.iter().rev() {
        sync_dir(made.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` so that after a crash or a power cut the file holds either them or
/// what it held before, never a part.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dir(dir)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}-{}", std::process::id(), NEXT_TEMP.fetch_add(1, Ordering::Relaxed)));
    let tmp = dir.join(name);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| sync_dir(dir));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Renames a damaged file to `<name>.damaged-<n>` (the first `n` not taken: what an earlier
/// damage left is kept) and syncs its directory; returns the new path.
pub fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let aside = (1..).map(|n| dir.join(format!("{name}.damaged-{n}"))).find(|p| !p.exists()).expect("a free name");
    std::fs::rename(path, &aside)?;
    sync_dir(dir)?;
    Ok(aside)
}

/// The process that wrote a temporary file, from its name: `Some(None)` for the names earlier
/// versions used (`<stem>.tmp<pid>`, `<name>.tmp`), `None` for a file that is not temporary.
fn temp_writer(name: &str) -> Option<Option<u32>> {
    let (_, suffix) = name.rsplit_once(".tmp")?;
    if suffix.is_empty() {
        return Some(None);
    }
    let pid = suffix.strip_prefix('-').map_or(Some(suffix), |rest| rest.split_once('-').map(|(pid, _)| pid))?;
    pid.parse().ok().map(Some)
}

/// Whether process `pid` may still be running (assumed so where `/proc` cannot tell).
fn alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// Removes the temporary files a crash left in `dir` (not below it): those whose process is gone,
/// or that are older than an hour. Returns the files removed; what cannot be removed is logged.
pub fn remove_leftover_temp_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(writer) = temp_writer(&name) else { continue };
        let Ok(meta) = entry.metadata() else { continue };
        let old = meta.modified().ok().and_then(|m| m.elapsed().ok()).is_some_and(|age| age > ABANDONED_AFTER);
        if !meta.is_file() || (writer.is_some_and(alive) && !old) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed.push(entry.path()),
            Err(err) => tracing::warn!(file = %entry.path().display(), "cannot remove a temporary file left by a crash: {err}"),
        }
    }
    if !removed.is_empty() {
        tracing::info!(dir = %dir.display(), files = removed.len(), "removed temporary files left by a crash");
        let _ = sync_dir(dir);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_told_from_others() {
        assert_eq!(temp_writer("slices.json.tmp-123-4"), Some(Some(123)));
        assert_eq!(temp_writer("abc.tmp123"), Some(Some(123)));
        assert_eq!(temp_writer("created.toml.tmp"), Some(None));
        assert_eq!(temp_writer("slices.json"), None);
        assert_eq!(temp_writer("abc.wasm"), None);
        assert_eq!(temp_writer("abc.tmpfoo"), None);
    }
}
