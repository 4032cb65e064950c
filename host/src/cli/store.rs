//! `counterpoint store check|repair`: the embedded store's log, offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use counterpoint::store::embedded_check::{self, StoreCheck};
use counterpoint::store::EmbeddedStore;

/// The exit code of a check that found damage the store does not open with, and of a repair
/// that was not asked to cut.
const DAMAGED: u8 = 2;

/// The store in the data directory (`DIR/events`), or `DIR` itself when it is one.
fn store_dir(data_dir: &Path) -> PathBuf {
    let events = data_dir.join("events");
    if !events.exists() && data_dir.join("FORMAT").exists() {
        return data_dir.to_path_buf();
    }
    events
}

pub fn check(data_dir: &Path) -> anyhow::Result<ExitCode> {
    let report = embedded_check::check(&store_dir(data_dir))?;
    print(&report);
    if !report.opens() {
        if report.problems.is_empty() {
            out!("damaged: the store does not open; `counterpoint store repair --cut-after-damage` cuts the log at the damage, losing what is listed above");
        } else {
            out!("damaged in a way cutting the log does not fix; the store does not open");
        }
        return Ok(ExitCode::from(DAMAGED));
    }
    if !report.index_files.unsound.is_empty() {
        out!(
            "damaged index files: reads that meet them fail (and a damaged loc block stops the store from opening); \
             `counterpoint store repair` removes them: they are derived, the next open builds them again from their \
             segments, and no event is lost"
        );
        return Ok(ExitCode::from(DAMAGED));
    }
    out!("ok: the store opens{}", if report.cut.is_some() { " (and cuts its torn final write)" } else { "" });
    Ok(ExitCode::SUCCESS)
}

/// Removes unsound index files (nothing is lost); cuts the log only with `cut_after_damage`.
/// One check, under the repair's lock: it verifies every index file, which costs a scan of
/// each sealed segment.
pub fn repair(data_dir: &Path, cut_after_damage: bool) -> anyhow::Result<ExitCode> {
    let dir = store_dir(data_dir);
    let repair = embedded_check::repair(&dir, cut_after_damage)?;
    print(&repair.before);
    for path in &repair.removed_index_files {
        out!("removed {} (the next open builds it again)", path.display());
    }
    if repair.before.cut.as_ref().is_some_and(|cut| !cut.torn) && !cut_after_damage {
        let changed = if repair.removed_index_files.is_empty() { "nothing changed" } else { "the log was not cut" };
        out!("{changed}: run `counterpoint store repair --cut-after-damage` to cut it as above");
        return Ok(ExitCode::from(DAMAGED));
    }
    if repair.before.cut.is_none() && repair.removed_index_files.is_empty() {
        out!("nothing to repair");
        return Ok(ExitCode::SUCCESS);
    }
    for path in &repair.set_aside {
        out!("kept the cut bytes in {}", path.display());
    }
    // The proof that the repair worked: the store opens (and builds the removed index files).
    drop(EmbeddedStore::open(&dir)?);
    out!("repaired: the store opens");
    Ok(ExitCode::SUCCESS)
}

fn print(report: &StoreCheck) {
    out!("store {}", report.dir.display());
    for segment in &report.segments {
        let name = segment.path.file_name().unwrap_or_default().to_string_lossy();
        out!("  {name}: {} bytes, {} valid frames, {} events", segment.bytes, segment.frames, segment.events);
        for (offset, len) in &segment.damage {
            out!("    damaged at byte {offset}: {len} bytes that are not a valid frame");
        }
        if segment.zeroed_tail > 0 {
            out!("    then {} zero bytes the writer wrote ahead of its frames (not damage: the next open cuts them)", segment.zeroed_tail);
        }
        if segment.frames_after_damage > 0 {
            out!("    {} valid frames, {} events after the damage", segment.frames_after_damage, segment.events_after_damage);
        }
    }
    for problem in &report.problems {
        out!("  problem: {problem}");
    }
    out!("  index files and runs: {} sound (each file as its segment gives it, each run's blocks whole)", report.index_files.sound);
    for (path, why) in &report.index_files.rebuilt_at_open {
        out!("  index file {}: {why}; the next open builds it again", path.display());
    }
    if let Some((path, why)) = &report.index_files.open_segment_scanned {
        out!("  index file {}: {why}; the next open removes it and scans the open segment", path.display());
    }
    for (path, why) in &report.index_files.unsound {
        out!("  index file {}: {why}", path.display());
    }
    if let Some(cut) = &report.cut {
        let name = cut.path.file_name().unwrap_or_default().to_string_lossy();
        if cut.torn {
            let after = if cut.frames_lost > 0 { format!(", then {} append(s) of the same flush", cut.frames_lost) } else { String::new() };
            out!(
                "torn final flush in {name} at byte {} ({} bytes{after}): what a crash leaves of a flush never acknowledged \
                 (or damage in the open segment's last 64 KiB), cut when the store opens",
                cut.offset,
                cut.damaged_bytes
            );
            return;
        }
        out!(
            "first damage: {name} byte {} ({} bytes); a repair cuts the log there{} and loses {} append(s), {} event(s):",
            cut.offset,
            cut.damaged_bytes,
            if cut.later_segments.is_empty() { String::new() } else { format!(" and sets aside {} later segments", cut.later_segments.len()) },
            cut.frames_lost,
            cut.events_lost,
        );
        for (tenant, lost) in &cut.tenants_lost {
            out!("  tenant {tenant}: {} event(s), positions {} to {}", lost.events, lost.first, lost.last);
        }
    }
    let kept = if report.cut.as_ref().is_some_and(|cut| !cut.torn) { ", kept by a repair" } else { "" };
    for (tenant, head) in &report.heads {
        out!("  tenant {tenant}: positions 1 to {head}{kept}");
    }
}
