//! `ckpt diff`: what changed between two checkpoints of the same workload.
//! Both are read and decoded by `inspect` (a checkpoint directory or a
//! Podman export archive); this module only sets the two decoded
//! checkpoints side by side: processes added or gone, and per process the
//! memory areas, pages and open files that changed; the sockets added,
//! removed or in another state (`sockets`); the sizes; CRIU's statistics
//! with their deltas.

mod sockets;

use std::path::Path;

use anyhow::{bail, Context, Result};
use criu_image::{Checkpoint, MemoryArea, OpenFile, Process};
use serde::Serialize;

use crate::inspect::{self, human, Inspection};
pub use sockets::{SocketChange, SocketsDiff};

/// A number in A and in B, and B - A.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Change {
    pub a: u64,
    pub b: u64,
    pub delta: i64,
}

impl Change {
    fn of(a: u64, b: u64) -> Change {
        let delta = i128::from(b) - i128::from(a);
        Change {
            a,
            b,
            delta: delta.clamp(i64::MIN.into(), i64::MAX.into()) as i64,
        }
    }

    fn changed(&self) -> bool {
        self.a != self.b
    }
}

/// A process, as the diff names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessRef {
    pub pid: u32,
    pub command: String,
}

/// A memory area present in both (same start) whose size, mode or dumped
/// pages changed.
#[derive(Debug, Clone, Serialize)]
pub struct AreaChange {
    pub start: u64,
    pub mode_a: String,
    pub mode_b: String,
    pub size: Change,
    pub pages_dumped: Change,
}

/// What changed in one process present in both.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessDiff {
    pub pid: u32,
    pub command: String,
    pub threads: Change,
    pub mapped_bytes: Change,
    pub pages_dumped: Change,
    pub bytes_dumped: Change,
    pub areas_added: Vec<MemoryArea>,
    pub areas_removed: Vec<MemoryArea>,
    pub areas_changed: Vec<AreaChange>,
    pub files_added: Vec<OpenFile>,
    pub files_gone: Vec<OpenFile>,
}

impl ProcessDiff {
    fn is_empty(&self) -> bool {
        !self.threads.changed()
            && !self.mapped_bytes.changed()
            && !self.pages_dumped.changed()
            && self.areas_added.is_empty()
            && self.areas_removed.is_empty()
            && self.areas_changed.is_empty()
            && self.files_added.is_empty()
            && self.files_gone.is_empty()
    }
}

/// One of CRIU's statistics in both checkpoints (None where a checkpoint
/// has no statistics file).
#[derive(Debug, Clone, Serialize)]
pub struct Statistic {
    pub name: &'static str,
    /// "ms" or "pages".
    pub unit: &'static str,
    pub a: Option<f64>,
    pub b: Option<f64>,
    pub delta: Option<f64>,
}

/// Everything `ckpt diff` says.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointDiff {
    pub a: String,
    pub b: String,
    pub image_version: Option<u32>,
    pub total_bytes: Change,
    pub pages_bytes: Change,
    pub processes: Change,
    pub processes_added: Vec<ProcessRef>,
    pub processes_gone: Vec<ProcessRef>,
    /// Processes in both whose memory, threads or files changed.
    pub processes_changed: Vec<ProcessDiff>,
    pub processes_unchanged: usize,
    /// None when either checkpoint's sockets are unknown.
    pub sockets: Option<SocketsDiff>,
    pub statistics: Vec<Statistic>,
    /// Parts of both checkpoints that could not be decoded (the same in
    /// both, or the diff is refused).
    pub warnings: Vec<String>,
    /// Nothing differs, statistics included.
    pub unchanged: bool,
}

/// Reads a checkpoint directory or a checkpoint archive. A Docker
/// container is refused: `inspect` would pick its newest checkpoint, and a
/// diff wants to name both exactly.
pub async fn load(target: &str) -> Result<Inspection> {
    if !Path::new(target).exists() {
        bail!(
            "{target} is neither a checkpoint directory nor a checkpoint archive (ckpt diff does not look up Docker containers: give the checkpoint's directory)"
        );
    }
    inspect::inspect(target, None, None).await
}

/// The difference from A to B; an error when they are not of one format
/// (different image versions, or an image that decodes in one only).
pub fn diff(a: &Inspection, b: &Inspection) -> Result<CheckpointDiff> {
    let (ca, cb) = (&a.checkpoint, &b.checkpoint);
    same_format(a, b)?;
    let in_both: Vec<(&Process, &Process)> = ca
        .processes
        .iter()
        .filter_map(|p| Some((p, find(cb, p)?)))
        .collect();
    let changed: Vec<ProcessDiff> = in_both
        .iter()
        .map(|(pa, pb)| process_diff(pa, pb))
        .filter(|d| !d.is_empty())
        .collect();
    let mut d = CheckpointDiff {
        a: a.source.clone(),
        b: b.source.clone(),
        image_version: ca.image_version,
        total_bytes: Change::of(ca.total_bytes, cb.total_bytes),
        pages_bytes: Change::of(ca.pages_bytes, cb.pages_bytes),
        processes: Change::of(ca.processes.len() as u64, cb.processes.len() as u64),
        processes_added: only_in(cb, ca),
        processes_gone: only_in(ca, cb),
        processes_unchanged: in_both.len() - changed.len(),
        processes_changed: changed,
        sockets: sockets::diff(ca.sockets.as_ref(), cb.sockets.as_ref()),
        statistics: statistics(ca, cb),
        warnings: ca.warnings.clone(),
        unchanged: false,
    };
    d.unchanged = !d.total_bytes.changed()
        && d.processes_added.is_empty()
        && d.processes_gone.is_empty()
        && d.processes_changed.is_empty()
        && d.sockets.as_ref().is_none_or(SocketsDiff::is_empty)
        && d.statistics.iter().all(|s| s.a == s.b);
    Ok(d)
}

/// Refuses two checkpoints whose images are not comparable.
fn same_format(a: &Inspection, b: &Inspection) -> Result<()> {
    let (ca, cb) = (&a.checkpoint, &b.checkpoint);
    if ca.image_version != cb.image_version {
        let version = |v: Option<u32>| v.map_or("unknown".into(), |v| v.to_string());
        bail!(
            "the checkpoints are of different formats: {} has CRIU image format version {}, {} has {}; their images do not compare",
            a.source,
            version(ca.image_version),
            b.source,
            version(cb.image_version)
        );
    }
    // What one side could not decode would look gone (or added).
    for (one, other) in [(a, b), (b, a)] {
        if let Some(w) = one
            .checkpoint
            .warnings
            .iter()
            .find(|w| !other.checkpoint.warnings.contains(w))
        {
            bail!(
                "an image of {} does not decode ({w}) where {} has none such: the checkpoints are not of one format",
                one.source,
                other.source
            );
        }
    }
    Ok(())
}

/// The same process in another checkpoint: same pid and command (a pid
/// reused by another program is a process gone and one added).
fn find<'a>(cp: &'a Checkpoint, p: &Process) -> Option<&'a Process> {
    cp.processes
        .iter()
        .find(|q| q.pid == p.pid && q.command == p.command)
}

/// The processes of `one` that `other` lacks.
fn only_in(one: &Checkpoint, other: &Checkpoint) -> Vec<ProcessRef> {
    one.processes
        .iter()
        .filter(|p| find(other, p).is_none())
        .map(|p| ProcessRef {
            pid: p.pid,
            command: p.command.clone(),
        })
        .collect()
}

fn process_diff(a: &Process, b: &Process) -> ProcessDiff {
    let none = criu_image::Memory::default();
    let (ma, mb) = (
        a.memory.as_ref().unwrap_or(&none),
        b.memory.as_ref().unwrap_or(&none),
    );
    let (areas_added, areas_removed, areas_changed) = areas(&ma.areas, &mb.areas);
    let files = |p: &Process| p.files.clone().unwrap_or_default();
    let (fa, fb) = (files(a), files(b));
    ProcessDiff {
        pid: a.pid,
        command: a.command.clone(),
        threads: Change::of(a.threads.len() as u64, b.threads.len() as u64),
        mapped_bytes: Change::of(ma.mapped_bytes, mb.mapped_bytes),
        pages_dumped: Change::of(ma.pages_dumped, mb.pages_dumped),
        bytes_dumped: Change::of(ma.bytes_dumped, mb.bytes_dumped),
        areas_added,
        areas_removed,
        areas_changed,
        files_added: files_missing(&fb, &fa),
        files_gone: files_missing(&fa, &fb),
    }
}

fn size(area: &MemoryArea) -> u64 {
    area.end.saturating_sub(area.start)
}

/// Memory areas matched by their start address: added, removed, and those
/// in both whose size, mode or dumped pages changed.
fn areas(
    a: &[MemoryArea],
    b: &[MemoryArea],
) -> (Vec<MemoryArea>, Vec<MemoryArea>, Vec<AreaChange>) {
    let missing = |one: &[MemoryArea], other: &[MemoryArea]| -> Vec<MemoryArea> {
        one.iter()
            .filter(|x| !other.iter().any(|y| y.start == x.start))
            .cloned()
            .collect()
    };
    let changed = a
        .iter()
        .filter_map(|x| {
            let y = b.iter().find(|y| y.start == x.start)?;
            let change = AreaChange {
                start: x.start,
                mode_a: x.mode.clone(),
                mode_b: y.mode.clone(),
                size: Change::of(size(x), size(y)),
                pages_dumped: Change::of(x.pages_dumped, y.pages_dumped),
            };
            let same = x.mode == y.mode && !change.size.changed() && !change.pages_dumped.changed();
            (!same).then_some(change)
        })
        .collect();
    (missing(b, a), missing(a, b), changed)
}

/// The descriptors of `one` that `other` lacks (same number, kind and path).
fn files_missing(one: &[OpenFile], other: &[OpenFile]) -> Vec<OpenFile> {
    one.iter()
        .filter(|f| {
            !other
                .iter()
                .any(|g| g.fd == f.fd && g.kind == f.kind && g.path == f.path)
        })
        .cloned()
        .collect()
}

/// CRIU keeps times in microseconds; the diff shows milliseconds.
fn ms(us: u32) -> f64 {
    f64::from(us) / 1000.0
}

type DumpRead = fn(&criu_image::DumpStatsEntry) -> f64;
type RestoreRead = fn(&criu_image::RestoreStatsEntry) -> Option<f64>;

/// CRIU's dump and restore statistics side by side, those that either
/// checkpoint has.
fn statistics(a: &Checkpoint, b: &Checkpoint) -> Vec<Statistic> {
    let dump: [(&'static str, &'static str, DumpRead); 6] = [
        ("dump freezing", "ms", |d| ms(d.freezing_time)),
        ("dump frozen", "ms", |d| ms(d.frozen_time)),
        ("dump memdump", "ms", |d| ms(d.memdump_time)),
        ("dump memwrite", "ms", |d| ms(d.memwrite_time)),
        ("dump pages scanned", "pages", |d| d.pages_scanned as f64),
        ("dump pages written", "pages", |d| d.pages_written as f64),
    ];
    let restore: [(&'static str, &'static str, RestoreRead); 3] = [
        ("restore forking", "ms", |r| Some(ms(r.forking_time))),
        ("restore", "ms", |r| Some(ms(r.restore_time))),
        ("restore pages restored", "pages", |r| {
            r.pages_restored.map(|p| p as f64)
        }),
    ];
    let (da, db) = (a.dump_stats.as_ref(), b.dump_stats.as_ref());
    let (ra, rb) = (a.restore_stats.as_ref(), b.restore_stats.as_ref());
    let dumped = dump
        .iter()
        .map(|(name, unit, read)| statistic(name, unit, da.map(read), db.map(read)));
    let restored = restore
        .iter()
        .map(|(name, unit, read)| statistic(name, unit, ra.and_then(read), rb.and_then(read)));
    dumped
        .chain(restored)
        .filter(|s| s.a.is_some() || s.b.is_some())
        .collect()
}

fn statistic(name: &'static str, unit: &'static str, a: Option<f64>, b: Option<f64>) -> Statistic {
    Statistic {
        name,
        unit,
        a,
        b,
        delta: a.zip(b).map(|(x, y)| y - x),
    }
}

/// The diff as JSON.
pub fn to_json(d: &CheckpointDiff) -> Result<String> {
    serde_json::to_string_pretty(d).context("writing the diff as JSON")
}

/// "+4.0 KiB", "-512 B".
fn signed_bytes(delta: i64) -> String {
    let sign = if delta < 0 { '-' } else { '+' };
    format!("{sign}{}", human(delta.unsigned_abs()))
}

fn bytes_change(c: &Change) -> String {
    if c.changed() {
        format!(
            "{} → {} ({})",
            human(c.a),
            human(c.b),
            signed_bytes(c.delta)
        )
    } else {
        format!("{} (no change)", human(c.a))
    }
}

fn count_change(c: &Change) -> String {
    if c.changed() {
        format!("{} → {} ({:+})", c.a, c.b, c.delta)
    } else {
        format!("{} (no change)", c.a)
    }
}

fn statistic_line(s: &Statistic) -> String {
    let value = |v: Option<f64>| match (v, s.unit) {
        (None, _) => "none".to_string(),
        (Some(v), "ms") => format!("{v:.2} ms"),
        (Some(v), unit) => format!("{v:.0} {unit}"),
    };
    let change = match (s.delta, s.unit) {
        (Some(0.0), _) => format!("{} (no change)", value(s.a)),
        (Some(d), "ms") => format!("{} → {} ({d:+.2} ms)", value(s.a), value(s.b)),
        (Some(d), _) => format!("{} → {} ({d:+.0})", value(s.a), value(s.b)),
        (None, _) => format!("{} → {}", value(s.a), value(s.b)),
    };
    format!("CRIU {}: {change}", s.name)
}

fn process_name(pid: u32, command: &str) -> String {
    if command.is_empty() {
        format!("[{pid}]")
    } else {
        format!("[{pid}] {command}")
    }
}

fn area_text(a: &MemoryArea) -> String {
    format!(
        "{:012x}-{:012x} {} {}, {} page(s) dumped",
        a.start,
        a.end,
        a.mode,
        human(size(a)),
        a.pages_dumped
    )
}

fn area_change_text(c: &AreaChange) -> String {
    let mut parts = Vec::new();
    if c.size.changed() {
        parts.push(format!("size {}", bytes_change(&c.size)));
    }
    if c.mode_a != c.mode_b {
        parts.push(format!("mode {} → {}", c.mode_a, c.mode_b));
    }
    if c.pages_dumped.changed() {
        parts.push(format!("pages dumped {}", count_change(&c.pages_dumped)));
    }
    format!("{:012x} {}: {}", c.start, c.mode_a, parts.join(", "))
}

fn file_text(f: &OpenFile) -> String {
    let path = f.path.as_ref().map_or(String::new(), |p| format!(" {p}"));
    format!("fd {} {}{path}", f.fd, f.kind)
}

/// One line per fact that changed in a process.
fn process_lines(p: &ProcessDiff) -> Vec<String> {
    let mut lines = Vec::new();
    if p.threads.changed() {
        lines.push(format!("threads: {}", count_change(&p.threads)));
    }
    if p.mapped_bytes.changed() {
        lines.push(format!("memory mapped: {}", bytes_change(&p.mapped_bytes)));
    }
    if p.pages_dumped.changed() {
        lines.push(format!(
            "pages dumped: {}, {}",
            count_change(&p.pages_dumped),
            bytes_change(&p.bytes_dumped)
        ));
    }
    let listed: [(&str, Vec<String>); 5] = [
        (
            "memory area added",
            p.areas_added.iter().map(area_text).collect(),
        ),
        (
            "memory area removed",
            p.areas_removed.iter().map(area_text).collect(),
        ),
        (
            "memory area changed",
            p.areas_changed.iter().map(area_change_text).collect(),
        ),
        (
            "open file added",
            p.files_added.iter().map(file_text).collect(),
        ),
        (
            "open file gone",
            p.files_gone.iter().map(file_text).collect(),
        ),
    ];
    for (tag, texts) in listed {
        lines.extend(texts.into_iter().map(|t| format!("{tag}: {t}")));
    }
    lines
}

/// Appends lines as branches of a tree at `indent`.
fn branches(out: &mut String, indent: &str, lines: &[String]) {
    for (i, line) in lines.iter().enumerate() {
        let branch = if i + 1 == lines.len() {
            "└─"
        } else {
            "├─"
        };
        out.push_str(&format!("{indent}{branch} {line}\n"));
    }
}

/// The checkpoint-wide facts: format, sizes, processes added and gone,
/// statistics.
fn top_lines(d: &CheckpointDiff) -> Vec<String> {
    let mut lines = vec![
        format!(
            "CRIU image format version: {}",
            d.image_version.map_or("unknown".into(), |v| v.to_string())
        ),
        format!("checkpoint size: {}", bytes_change(&d.total_bytes)),
        format!("memory pages size: {}", bytes_change(&d.pages_bytes)),
        format!("processes: {}", count_change(&d.processes)),
    ];
    let named = |tag: &str, p: &ProcessRef| format!("{tag}: {}", process_name(p.pid, &p.command));
    lines.extend(d.processes_gone.iter().map(|p| named("process gone", p)));
    lines.extend(d.processes_added.iter().map(|p| named("process added", p)));
    lines.extend(sockets::lines(d.sockets.as_ref()));
    lines.extend(d.statistics.iter().map(statistic_line));
    lines
}

/// The human-readable tree: one fact per line, what changed per process
/// under it.
pub fn render(d: &CheckpointDiff) -> String {
    let mut out = format!("A: {}\nB: {}\n", d.a, d.b);
    let in_both = d.processes_unchanged + d.processes_changed.len();
    let mut lines = top_lines(d);
    lines.push(format!(
        "processes changed: {} of the {in_both} in both",
        d.processes_changed.len()
    ));
    branches(&mut out, "", &lines);
    for (i, p) in d.processes_changed.iter().enumerate() {
        let last = i + 1 == d.processes_changed.len();
        out.push_str(&format!(
            "   {} {}\n",
            if last { "└─" } else { "├─" },
            process_name(p.pid, &p.command)
        ));
        let indent = if last { "      " } else { "   │  " };
        branches(&mut out, indent, &process_lines(p));
    }
    for w in &d.warnings {
        out.push_str(&format!("warning (in both): {w}\n"));
    }
    out.push_str(if d.unchanged {
        "no difference: the same processes, memory, open files, sockets, sizes and statistics\n"
    } else {
        "the checkpoints differ\n"
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(start: u64, end: u64, pages_dumped: u64) -> MemoryArea {
        MemoryArea {
            start,
            end,
            mode: "rw-p".into(),
            pages_dumped,
        }
    }

    #[test]
    fn areas_match_by_start_address() {
        let a = [
            area(0x1000, 0x3000, 1),
            area(0x8000, 0x9000, 0),
            area(0xa000, 0xb000, 1),
        ];
        let b = [
            area(0x1000, 0x4000, 1),
            area(0x8000, 0x9000, 0),
            area(0xc000, 0xd000, 0),
        ];
        let (added, removed, changed) = areas(&a, &b);
        assert_eq!(added.iter().map(|x| x.start).collect::<Vec<_>>(), [0xc000]);
        assert_eq!(
            removed.iter().map(|x| x.start).collect::<Vec<_>>(),
            [0xa000]
        );
        assert_eq!(changed.len(), 1, "the unchanged area is not listed");
        assert_eq!((changed[0].start, changed[0].size.delta), (0x1000, 0x1000));
    }

    #[test]
    fn deltas_keep_their_sign_and_never_overflow() {
        assert_eq!(Change::of(10, 4).delta, -6);
        assert_eq!(Change::of(0, u64::MAX).delta, i64::MAX);
        assert_eq!(signed_bytes(-4096), "-4.0 KiB");
        assert_eq!(signed_bytes(512), "+512 B");
    }
}
