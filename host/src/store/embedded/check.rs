//! Checking and repairing a damaged log, offline (`counterpoint store check` / `store repair`).
//!
//! The store cuts a torn final frame by itself when it opens: that frame was never
//! acknowledged. Damage anywhere else stops it from opening, because cutting there would drop
//! acknowledged appends. `check` says, without changing anything, where the damage is and what
//! a cut would lose; `repair` cuts the log at the first damage only when asked, keeping the
//! cut bytes beside the segment (`<segment>.log.damaged-<offset>`) and setting later segments
//! aside the same way, so that the log stays a prefix with dense positions.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use super::log::{list_segments, scan_bytes, scan_segment, segment_path, Damage, Item, RecoveredFrame, SegmentKind};
use super::disk::{try_lock_patiently, Disk, RealDisk};
use super::checkpoint::{chain_files, described_end};
use super::segment_index::{index_path, verify, verify_file, IndexFileState};
use super::{index_run, readable_format, sync_dir, FORMAT_PREFIX, FORMAT_VERSION};
use crate::store::{StoreError, Tenant};

/// What `check` found in an embedded store's directory.
#[derive(Clone, Debug)]
pub struct StoreCheck {
    pub dir: PathBuf,
    pub segments: Vec<SegmentCheck>,
    /// The first damage, where a repair would cut, and what cutting there loses.
    pub cut: Option<Cut>,
    /// Each tenant's last position before the cut (what the store holds after a repair).
    pub heads: BTreeMap<String, u64>,
    /// What no cut fixes: a missing segment, an unknown format, a frame that passes its
    /// checksum but does not decode, positions that jump before any damage.
    pub problems: Vec<String>,
    /// The index files of the segments before any damage, each checked against its segment.
    pub index_files: IndexFiles,
}

/// What `check` found of the sealed segments' index files and of the runs merged from them.
/// They are derived: no event is lost with any of them.
#[derive(Clone, Debug, Default)]
pub struct IndexFiles {
    /// Segments' files identical to the index their segment gives, and runs whose every block
    /// passes its checksum.
    pub sound: usize,
    /// Files the next open builds again by itself, and why: another index format or segment
    /// length, a damaged trailer or meta.
    pub rebuilt_at_open: Vec<(PathBuf, String)>,
    /// The first of the open segment's checkpoint files that does not describe the segment, and
    /// why: the next open removes it with every later one and scans the segment from where
    /// those before it end (checkpoint.rs).
    pub open_segment_scanned: Option<(PathBuf, String)>,
    /// Files that differ from the index their segment gives where only a read would find it (a
    /// damaged block), or that cannot be read, and why: `repair` removes them, and the next open
    /// builds them again.
    pub unsound: Vec<(PathBuf, String)>,
}

impl IndexFiles {
    fn record(&mut self, path: PathBuf, state: IndexFileState) {
        match state {
            IndexFileState::Sound => self.sound += 1,
            IndexFileState::Missing => {}
            IndexFileState::RebuiltAtOpen(why) => self.rebuilt_at_open.push((path, why.to_string())),
            IndexFileState::Unsound(why) => self.unsound.push((path, why.to_string())),
        }
    }
}

/// One segment file.
#[derive(Clone, Debug)]
pub struct SegmentCheck {
    pub number: u32,
    pub path: PathBuf,
    pub bytes: u64,
    /// Valid frames (appends) and their events before the log's first damage.
    pub frames: u64,
    pub events: u64,
    /// Every run of bytes that is not a valid frame: (offset, length).
    pub damage: Vec<(u64, u64)>,
    /// Valid frames and events in this segment after the log's first damage.
    pub frames_after_damage: u64,
    pub events_after_damage: u64,
    /// Zeros after the last frame: what the writer wrote ahead of its frames in the open
    /// segment, which a crash left (writer.rs). Not damage; the next open cuts them.
    pub zeroed_tail: u64,
}

/// Where a repair cuts the log, and what it loses.
#[derive(Clone, Debug)]
pub struct Cut {
    pub segment: u32,
    pub path: PathBuf,
    pub offset: u64,
    /// The damaged bytes at the cut (up to the next valid frame, or the end of the segment).
    pub damaged_bytes: u64,
    /// A torn final flush: in the last segment, nothing valid follows, or only frames within
    /// one flush's reach (log.rs); the store cuts it itself when it opens. The frames it cuts
    /// were never acknowledged.
    pub torn: bool,
    /// Whole segments after the cut, set aside by a repair.
    pub later_segments: Vec<u32>,
    /// Valid appends (frames) and events after the cut: lost by a repair.
    pub frames_lost: u64,
    pub events_lost: u64,
    /// Per tenant, the positions lost: events and the first and last position.
    pub tenants_lost: BTreeMap<String, LostPositions>,
}

#[derive(Clone, Debug, Default)]
pub struct LostPositions {
    pub events: u64,
    pub first: u64,
    pub last: u64,
}

impl StoreCheck {
    /// Whether the store opens as it is (a torn final write is cut when it opens).
    pub fn opens(&self) -> bool {
        self.problems.is_empty() && self.cut.as_ref().is_none_or(|cut| cut.torn)
    }
}

/// What `repair` did.
#[derive(Clone, Debug)]
pub struct Repair {
    /// What the log looked like before: `cut` is what was cut and lost.
    pub before: StoreCheck,
    /// The files holding the bytes taken out of the log.
    pub set_aside: Vec<PathBuf>,
    /// The unsound index files removed (the next open builds them again).
    pub removed_index_files: Vec<PathBuf>,
}

/// The index files of the segments that the runs in `dir` cover, by the runs' names: searches go
/// through the runs instead (those files serve merges, `store check`, and the locations of
/// long posting lists' events).
pub fn covered_index_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    // All segments but the open one are sealed; a run named beyond them covers nothing.
    let sealed = list_segments(&RealDisk, dir)?.len().saturating_sub(1) as u32;
    let mut covered: Vec<u32> = index_run::named_coverage(&RealDisk, dir, sealed).into_iter().collect();
    covered.sort_unstable();
    Ok(covered.into_iter().map(|segment| index_path(dir, segment)).collect())
}

/// Checks the store in `dir` without changing anything. Refuses while a process has it open
/// (its log may be mid-write).
pub fn check(dir: &Path) -> Result<StoreCheck, StoreError> {
    let dir = store_dir(dir)?;
    let _lock = lock_shared(&dir)?;
    check_locked(&dir)
}

/// Removes the unsound index files (derived: the next open builds them again) and, when `cut`,
/// cuts the log at its first damage, keeping what is cut beside it. A torn final flush is cut
/// without `cut`, as an open would cut it: its frames were never acknowledged. Without damage
/// it removes only those files. Refuses when the log has problems a cut does not fix.
pub fn repair(dir: &Path, cut: bool) -> Result<Repair, StoreError> {
    let dir = store_dir(dir)?;
    let _lock = RealDisk.lock(&dir)?;
    let before = check_locked(&dir)?;
    if !before.problems.is_empty() {
        return Err(StoreError::Corrupt {
            dir: dir.clone(),
            detail: format!("cutting the log does not fix this: {}", before.problems.join("; ")),
        });
    }
    let io = |what: &str, e| StoreError::io(what, e);
    let mut removed_index_files = Vec::new();
    for (path, _) in &before.index_files.unsound {
        std::fs::remove_file(path).map_err(|e| io("removing an unsound index file", e))?;
        removed_index_files.push(path.clone());
    }
    if !removed_index_files.is_empty() {
        sync_dir(&RealDisk, &dir)?;
    }
    let cut = match &before.cut {
        Some(damage) if cut || damage.torn => damage,
        _ => return Ok(Repair { before, set_aside: Vec::new(), removed_index_files }),
    };
    let mut set_aside = Vec::new();

    // The index files of the segments cut or set aside go first: they are derived, the next
    // open builds what is missing, and none may outlive its segment to describe a new one that
    // takes its number.
    for number in std::iter::once(cut.segment).chain(cut.later_segments.iter().copied()) {
        let chain = chain_files(&RealDisk, &dir, number).map_err(|e| io("listing the data directory", e))?;
        for (_, path) in chain {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("removing a segment's index file", e)),
                _ => {}
            }
        }
    }
    // So do the runs that cover any of them.
    for (first, last) in index_run::runs_in(&RealDisk, &dir).map_err(|e| io("listing the data directory", e))? {
        if last >= cut.segment {
            std::fs::remove_file(index_run::run_path(&dir, first, last)).map_err(|e| io("removing an index run", e))?;
        }
    }
    sync_dir(&RealDisk, &dir)?;

    // The order keeps every interruption repairable by running repair again: first a synced
    // copy of the cut bytes, then later segments renamed away from the highest down (the log
    // never has a gap), then the cut itself.
    let aside = aside_path(&cut.path, cut.offset);
    let tmp = aside.with_extension("tmp");
    {
        let mut segment = File::open(&cut.path).map_err(|e| io("opening the damaged segment", e))?;
        let mut bytes = Vec::new();
        std::io::Seek::seek(&mut segment, std::io::SeekFrom::Start(cut.offset))
            .and_then(|_| segment.read_to_end(&mut bytes))
            .map_err(|e| io("reading the damaged segment", e))?;
        let mut copy = File::create(&tmp).map_err(|e| io("saving the cut bytes", e))?;
        copy.write_all(&bytes).and_then(|()| copy.sync_all()).map_err(|e| io("saving the cut bytes", e))?;
        std::fs::rename(&tmp, &aside).map_err(|e| io("saving the cut bytes", e))?;
        sync_dir(&RealDisk, &dir)?;
    }
    set_aside.push(aside);
    for &number in cut.later_segments.iter().rev() {
        let path = segment_path(&dir, number);
        let to = aside_path(&path, 0);
        std::fs::rename(&path, &to).map_err(|e| io("setting a later segment aside", e))?;
        sync_dir(&RealDisk, &dir)?;
        set_aside.push(to);
    }
    let segment = OpenOptions::new().write(true).open(&cut.path).map_err(|e| io("opening the damaged segment", e))?;
    segment.set_len(cut.offset).and_then(|()| segment.sync_all()).map_err(|e| io("cutting the damaged segment", e))?;
    tracing::warn!(segment = %cut.path.display(), offset = cut.offset, events_lost = cut.events_lost, "cut the log at its first damage");
    Ok(Repair { before, set_aside, removed_index_files })
}

/// Where the bytes cut from `segment` at `offset` are kept (a `.N` suffix is added when an
/// earlier repair already used the name).
pub fn aside_path(segment: &Path, offset: u64) -> PathBuf {
    let mut name = segment.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".damaged-{offset}"));
    let path = segment.with_file_name(&name);
    // Never overwrite what an earlier repair kept.
    (1..).map(|n| if n == 1 { path.clone() } else { PathBuf::from(format!("{}.{n}", path.display())) }).find(|p| !p.exists()).expect("a free name")
}

/// The message of the error that stops the store from opening on damage.
pub(super) fn damage_report(path: &Path, damage: &Damage) -> String {
    let after = match damage.next_frame {
        Some(next) => format!("{} damaged bytes, then valid frames again from byte {next}", damage.len()),
        None => format!("{} damaged bytes to the end of a segment that is not the last", damage.len()),
    };
    format!(
        "log segment {} is damaged at byte {} ({after}); this is not a write torn by a crash, and cutting it off \
         would lose acknowledged appends, so the store does not open. `counterpoint store check` says what follows \
         the damage; `counterpoint store repair --cut-after-damage` cuts the log there and keeps the cut bytes",
        path.display(),
        damage.offset
    )
}

/// `dir` itself when it holds a store, else an error naming it.
fn store_dir(dir: &Path) -> Result<PathBuf, StoreError> {
    let dir = dir.canonicalize().map_err(|e| StoreError::io(&format!("opening {}", dir.display()), e))?;
    let has_log = !list_segments(&RealDisk, &dir).map_err(|e| StoreError::io("listing the log", e))?.is_empty();
    if !has_log && !dir.join("FORMAT").exists() {
        return Err(StoreError::InvalidInput(format!("{} holds no event store", dir.display())));
    }
    Ok(dir)
}

/// A shared lock on the directory: no store has it open while we look.
fn lock_shared(dir: &Path) -> Result<Option<File>, StoreError> {
    let path = dir.join("LOCK");
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(&format!("opening {}", path.display()), e)),
    };
    match try_lock_patiently(&file, File::try_lock_shared) {
        Ok(None) => Ok(Some(file)),
        Ok(Some(pid)) => Err(StoreError::Locked { dir: dir.to_path_buf(), pid }),
        Err(e) => Err(StoreError::io(&format!("locking {}", path.display()), e)),
    }
}

fn check_locked(dir: &Path) -> Result<StoreCheck, StoreError> {
    let mut report = StoreCheck {
        dir: dir.to_path_buf(),
        segments: Vec::new(),
        cut: None,
        heads: BTreeMap::new(),
        problems: Vec::new(),
        index_files: IndexFiles::default(),
    };
    match std::fs::read_to_string(dir.join("FORMAT")) {
        // The format before this one is upgraded by the next open.
        Ok(text) if readable_format(&text).is_some() => {}
        Ok(text) => report.problems.push(format!("FORMAT says {:?}; this build reads {FORMAT_PREFIX}{FORMAT_VERSION}", text.trim())),
        Err(e) => report.problems.push(format!("FORMAT cannot be read: {e}")),
    }
    let numbers = list_segments(&RealDisk, dir).map_err(|e| StoreError::io("listing the log", e))?;
    let mut last_torn = false;
    for (expected, &number) in numbers.iter().enumerate() {
        if number as usize != expected {
            report.problems.push(format!("log segment {expected} is missing"));
            break;
        }
        let path = segment_path(dir, number);
        let file = File::open(&path).map_err(|e| StoreError::io(&format!("opening {}", path.display()), e))?;
        let bytes = file.metadata().map_err(|e| StoreError::io(&format!("reading {}", path.display()), e))?.len();
        report.segments.push(SegmentCheck {
            number,
            path: path.clone(),
            bytes,
            frames: 0,
            events: 0,
            damage: Vec::new(),
            frames_after_damage: 0,
            events_after_damage: 0,
            zeroed_tail: 0,
        });
        let mut items = Vec::new();
        let kind = if expected + 1 == numbers.len() { SegmentKind::Open } else { SegmentKind::Sealed };
        let walked = walk_segment(BufReader::with_capacity(1 << 20, file), bytes, number, kind, |item| items.push(item));
        for item in items {
            record(&mut report, number, item);
        }
        match walked {
            Ok(walked) => {
                report.segments.last_mut().expect("the segment walked").zeroed_tail = walked.zeroed_tail;
                last_torn = walked.torn;
            }
            Err(e) => report.problems.push(format!("{}: {e}", path.display())),
        }
    }
    if let Some(cut) = &mut report.cut {
        let last = report.segments.last().map(|s| s.number);
        cut.later_segments = report.segments.iter().map(|s| s.number).filter(|&n| n > cut.segment).collect();
        // The first damage is the last segment's: torn if that segment's scan says so.
        cut.torn = Some(cut.segment) == last && last_torn;
    }
    // A repair removes the index files of the segments it cuts or sets aside, so only those
    // before the first damage are checked.
    let first_damaged = report.cut.as_ref().map_or(u32::MAX, |cut| cut.segment);
    let open_segment = report.segments.last().map(|s| s.number);
    for segment in report.segments.iter().filter(|s| s.number < first_damaged) {
        if Some(segment.number) == open_segment {
            check_checkpoints(dir, segment, &mut report.index_files)?;
            continue;
        }
        // The next open builds any that is missing.
        let (path, state) = (index_path(dir, segment.number), verify(&RealDisk, dir, segment.number, segment.bytes));
        report.index_files.record(path, state);
    }
    // Runs of merged index files, over the segments before any damage.
    let sealed: Vec<u64> = report.segments.iter().filter(|s| s.number < first_damaged).map(|s| s.bytes).collect();
    let sealed = &sealed[..sealed.len().min(report.segments.len().saturating_sub(1))];
    for run in index_run::runs_in(&RealDisk, dir).map_err(|e| StoreError::io("listing the data directory", e))? {
        let (path, state) = index_run::verify(&RealDisk, dir, run, sealed);
        report.index_files.record(path, state);
    }
    Ok(report)
}

/// The open segment's checkpoint files (checkpoint.rs), each describing what the segment held
/// when it was written, in the chain's order: the first that the next open would not take, and
/// why, since the open removes it with every later one and scans the segment from there.
fn check_checkpoints(dir: &Path, segment: &SegmentCheck, files: &mut IndexFiles) -> Result<(), StoreError> {
    let chain = chain_files(&RealDisk, dir, segment.number).map_err(|e| StoreError::io("listing the data directory", e))?;
    let mut end = 0;
    for (from, path) in chain {
        let state = match described_end(&RealDisk, &path, segment.number, from, end, segment.bytes) {
            // Only the first file can be missing (the others are found by listing): no chain.
            Ok(None) => continue,
            Ok(Some(to)) => Ok((to, verify_file(&RealDisk, dir, path.clone(), segment.number, from, to))),
            Err(err) => Err(err.to_string()),
        };
        match state {
            Ok((to, IndexFileState::Sound)) => {
                files.sound += 1;
                end = to;
            }
            Ok((_, IndexFileState::RebuiltAtOpen(why))) => {
                files.open_segment_scanned = Some((path, why.to_string()));
                break;
            }
            Ok((_, state)) => {
                files.record(path, state);
                break;
            }
            Err(why) => {
                files.open_segment_scanned = Some((path, why));
                break;
            }
        }
    }
    Ok(())
}

/// What walking a segment found besides its frames and damage.
struct Walked {
    /// Zeros after the last frame (written ahead by the writer), if it ends in them.
    zeroed_tail: u64,
    /// Its first damage is a flush torn by a crash ([`Damage::is_torn_flush`]; open segment only).
    torn: bool,
}

/// Every frame and every damaged run of one segment, in order.
fn walk_segment(reader: impl Read, len: u64, number: u32, kind: SegmentKind, mut on_item: impl FnMut(Item)) -> Result<Walked, String> {
    let scan = scan_segment(reader, len, number, kind, |offset, frame| {
        on_item(Item::Frame { offset, frame });
        Ok(())
    })?;
    let Some(damage) = scan.damage else { return Ok(Walked { zeroed_tail: len - scan.valid_len, torn: false }) };
    on_item(Item::Damage { offset: damage.offset, len: damage.len() });
    if let Some(next) = damage.next_frame {
        scan_bytes(&damage.rest[(next - damage.offset) as usize..], next, number, on_item);
    }
    Ok(Walked { zeroed_tail: 0, torn: kind == SegmentKind::Open && damage.is_torn_flush() })
}

fn record(report: &mut StoreCheck, number: u32, item: Item) {
    let segment = report.segments.last_mut().expect("the segment being walked");
    match item {
        Item::Damage { offset, len } => {
            segment.damage.push((offset, len));
            if report.cut.is_none() {
                report.cut = Some(Cut {
                    segment: number,
                    path: segment.path.clone(),
                    offset,
                    damaged_bytes: len,
                    torn: false,
                    later_segments: Vec::new(),
                    frames_lost: 0,
                    events_lost: 0,
                    tenants_lost: BTreeMap::new(),
                });
            }
        }
        Item::Frame { offset, frame } => {
            let RecoveredFrame { tenant, first, events, .. } = frame;
            let count = events.len() as u64;
            match &mut report.cut {
                None => {
                    segment.frames += 1;
                    segment.events += count;
                    let head = report.heads.entry(tenant.clone()).or_default();
                    if first != head.saturating_add(1) || Tenant::new(tenant.clone()).is_err() {
                        report.problems.push(format!(
                            "{} at byte {offset}: tenant {tenant:?}'s positions jump from {head} to {first}",
                            segment.path.display()
                        ));
                    }
                    *head = first.saturating_add(count).saturating_sub(1);
                }
                Some(cut) => {
                    segment.frames_after_damage += 1;
                    segment.events_after_damage += count;
                    cut.frames_lost += 1;
                    cut.events_lost += count;
                    let lost = cut.tenants_lost.entry(tenant).or_insert(LostPositions { events: 0, first, last: 0 });
                    lost.events += count;
                    lost.first = lost.first.min(first);
                    lost.last = lost.last.max(first.saturating_add(count).saturating_sub(1));
                }
            }
        }
    }
}
