//! Decoding of CRIU checkpoint images.
//!
//! A checkpoint is a set of named files (`inventory.img`, `pstree.img`,
//! `core-<tid>.img`, `mm-<pid>.img`, `pagemap-<pid>.img`, `pages-<n>.img`,
//! `fdinfo-<id>.img`, `files.img`, `tcp-stream-<ino>.img`, and the
//! statistics `stats-dump` and `stats-restore`). This crate turns their
//! bytes into a [`Checkpoint`]: the process tree with commands, memory
//! areas, pages dumped, open files, sockets, and the dump and restore
//! statistics.
//!
//! It does no I/O of its own: callers hand it the files through the
//! [`Files`] trait (a directory, an archive, memory). Every error names the
//! file and the byte offset where decoding failed; nothing panics on bad
//! input and no allocation is sized by a number read from a file.

pub mod framing;
pub mod messages;
pub mod sockets;

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use framing::magic;
pub use messages::{DumpStatsEntry, RestoreStatsEntry};
pub use sockets::{Socket, Sockets};

/// What went wrong, where.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {kind} (at byte offset {offset})")]
pub struct Error {
    pub file: String,
    pub offset: usize,
    pub kind: ErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("the file ends early: an entry of {wanted} bytes was announced, {available} remain")]
    Truncated { wanted: usize, available: usize },
    #[error(
        "wrong magic number {found:#010x}, expected {expected:#010x}: not this kind of CRIU image"
    )]
    Magic { expected: u32, found: u32 },
    #[error("the protobuf message does not decode: {0}")]
    Protobuf(prost::DecodeError),
    #[error("the image holds no entry")]
    Empty,
    #[error("the file is missing: this is not a CRIU checkpoint (or not a whole one)")]
    Missing,
}

impl Error {
    fn new(file: &str, offset: usize, kind: ErrorKind) -> Error {
        Error {
            file: file.to_string(),
            offset,
            kind,
        }
    }
    pub(crate) fn truncated(file: &str, offset: usize, wanted: usize, available: usize) -> Error {
        Error::new(file, offset, ErrorKind::Truncated { wanted, available })
    }
    pub(crate) fn magic(file: &str, offset: usize, expected: u32, found: u32) -> Error {
        Error::new(file, offset, ErrorKind::Magic { expected, found })
    }
    pub(crate) fn protobuf(file: &str, offset: usize, e: prost::DecodeError) -> Error {
        Error::new(file, offset, ErrorKind::Protobuf(e))
    }
    pub(crate) fn empty(file: &str) -> Error {
        Error::new(file, 0, ErrorKind::Empty)
    }
    fn missing(file: &str) -> Error {
        Error::new(file, 0, ErrorKind::Missing)
    }
}

/// The files of one checkpoint, by name. Large files (pages, root
/// filesystem diffs) need only report their size.
pub trait Files {
    /// The whole content of a file, when it is present and was loaded.
    fn get(&self, name: &str) -> Option<&[u8]>;
    /// Every file name with its size in bytes.
    fn sizes(&self) -> Vec<(String, u64)>;
}

/// Files held in memory: name -> (content if loaded, size).
#[derive(Debug, Default, Clone)]
pub struct MemFiles {
    pub files: BTreeMap<String, (Option<Vec<u8>>, u64)>,
}

impl MemFiles {
    pub fn insert(&mut self, name: &str, content: Option<Vec<u8>>, size: u64) {
        self.files.insert(name.to_string(), (content, size));
    }

    /// The size of a file, when present.
    pub fn size(&self, name: &str) -> Option<u64> {
        self.files.get(name).map(|(_, s)| *s)
    }
}

impl Files for MemFiles {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name)?.0.as_deref()
    }
    fn sizes(&self) -> Vec<(String, u64)> {
        self.files
            .iter()
            .map(|(n, (_, s))| (n.clone(), *s))
            .collect()
    }
}

/// Whether a file's content is needed to decode a checkpoint (everything
/// but the raw memory pages).
pub fn needs_content(name: &str) -> bool {
    !(name.starts_with("pages-") && name.ends_with(".img"))
}

/// A task's state as CRIU records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Alive,
    Dead,
    Stopped,
    Zombie,
    Unknown,
}

impl TaskState {
    fn from_raw(raw: u32) -> TaskState {
        match raw {
            1 => TaskState::Alive,
            2 => TaskState::Dead,
            3 => TaskState::Stopped,
            6 => TaskState::Zombie,
            _ => TaskState::Unknown,
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskState::Alive => "alive",
            TaskState::Dead => "dead",
            TaskState::Stopped => "stopped",
            TaskState::Zombie => "zombie",
            TaskState::Unknown => "unknown",
        })
    }
}

/// One memory area of a process.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryArea {
    pub start: u64,
    pub end: u64,
    /// `rwx` with `-` for a missing right, then `p` (private) or `s` (shared).
    pub mode: String,
    /// Pages of this area that the dump wrote.
    pub pages_dumped: u64,
}

/// A process's memory as dumped.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    pub areas: Vec<MemoryArea>,
    /// Size of all mapped areas.
    pub mapped_bytes: u64,
    /// Pages written into this checkpoint (not those left in a parent).
    pub pages_dumped: u64,
    pub bytes_dumped: u64,
    /// Pages that a parent (pre-dump) image holds.
    pub pages_in_parent: u64,
}

/// One open descriptor.
#[derive(Debug, Clone, Serialize)]
pub struct OpenFile {
    pub fd: u32,
    pub kind: &'static str,
    /// The path of a regular file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    pub threads: Vec<u32>,
    pub command: String,
    pub state: TaskState,
    pub memory: Option<Memory>,
    pub files: Option<Vec<OpenFile>>,
}

/// A decoded checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Checkpoint {
    pub image_version: Option<u32>,
    pub criu_run_id: Option<String>,
    /// Processes in the order of pstree.img (parents before children).
    pub processes: Vec<Process>,
    /// Bytes of all files of the checkpoint.
    pub total_bytes: u64,
    /// Bytes of the memory pages files.
    pub pages_bytes: u64,
    /// Inet and unix sockets, packet and netlink sockets counted; None when
    /// files.img is missing or does not decode.
    pub sockets: Option<Sockets>,
    pub dump_stats: Option<DumpStatsEntry>,
    pub restore_stats: Option<RestoreStatsEntry>,
    /// Parts that could not be decoded; the rest is still shown.
    pub warnings: Vec<String>,
}

/// The page size CRIU dumps in (x86-64).
pub const PAGE_SIZE: u64 = 4096;

impl Checkpoint {
    /// Decodes a checkpoint. pstree.img is required (without it this is
    /// not a checkpoint); a broken per-process file becomes a warning and
    /// the process is shown without that part.
    pub fn decode(files: &dyn Files) -> Result<Checkpoint, Error> {
        let pstree_bytes = files
            .get("pstree.img")
            .ok_or_else(|| Error::missing("pstree.img"))?;
        let tree: Vec<messages::PstreeEntry> =
            framing::decode_all(pstree_bytes, magic::PSTREE, "pstree.img")?;
        let inventory = match files.get("inventory.img") {
            Some(bytes) => Some(framing::decode_one::<messages::InventoryEntry>(
                bytes,
                magic::INVENTORY,
                "inventory.img",
            )?),
            None => None,
        };
        let mut warnings = Vec::new();
        let shared_files = decode_optional(files, "files.img", &mut warnings, |b, n| {
            framing::decode_all::<messages::FileEntry>(b, magic::FILES, n)
        });
        let processes = tree
            .iter()
            .map(|entry| process(files, entry, shared_files.as_deref(), &mut warnings))
            .collect();
        let sockets = sockets::decode(files, shared_files.as_deref(), &mut warnings);
        let (total_bytes, pages_bytes) = sizes(files);
        let dump_stats = stats(files, "stats-dump", &mut warnings).and_then(|s| s.dump);
        let restore_stats = stats(files, "stats-restore", &mut warnings).and_then(|s| s.restore);
        Ok(Checkpoint {
            image_version: inventory.as_ref().map(|i| i.img_version),
            criu_run_id: inventory.and_then(|i| i.dump_criu_run_id),
            processes,
            total_bytes,
            pages_bytes,
            sockets,
            dump_stats,
            restore_stats,
            warnings,
        })
    }

    /// Children of `pid`, in tree order.
    pub fn children(&self, pid: u32) -> impl Iterator<Item = &Process> {
        self.processes
            .iter()
            .filter(move |p| p.ppid == pid && p.pid != pid)
    }

    /// Processes whose parent is not in the checkpoint (normally one).
    pub fn roots(&self) -> impl Iterator<Item = &Process> {
        self.processes.iter().filter(|p| {
            !self
                .processes
                .iter()
                .any(|q| q.pid == p.ppid && q.pid != p.pid)
        })
    }
}

/// Bytes of all files, and of the memory pages files.
fn sizes(files: &dyn Files) -> (u64, u64) {
    let sizes = files.sizes();
    let sum = |pages_only: bool| {
        sizes
            .iter()
            .filter(|(n, _)| !pages_only || !needs_content(n))
            .map(|(_, s)| *s)
            .fold(0u64, u64::saturating_add)
    };
    (sum(false), sum(true))
}

/// Decodes an optional file; a broken one becomes a warning.
fn decode_optional<T>(
    files: &dyn Files,
    name: &str,
    warnings: &mut Vec<String>,
    decode: impl FnOnce(&[u8], &str) -> Result<T, Error>,
) -> Option<T> {
    let bytes = files.get(name)?;
    match decode(bytes, name) {
        Ok(value) => Some(value),
        Err(e) => {
            warnings.push(e.to_string());
            None
        }
    }
}

fn stats(
    files: &dyn Files,
    name: &str,
    warnings: &mut Vec<String>,
) -> Option<messages::StatsEntry> {
    decode_optional(files, name, warnings, |b, n| {
        framing::decode_one::<messages::StatsEntry>(b, magic::STATS, n)
    })
}

fn process(
    files: &dyn Files,
    entry: &messages::PstreeEntry,
    shared_files: Option<&[messages::FileEntry]>,
    warnings: &mut Vec<String>,
) -> Process {
    let pid = entry.pid;
    let core = decode_optional(files, &format!("core-{pid}.img"), warnings, |b, n| {
        framing::decode_one::<messages::CoreEntry>(b, magic::CORE, n)
    });
    let tc = core.as_ref().and_then(|c| c.tc.as_ref());
    let memory = decode_optional(files, &format!("mm-{pid}.img"), warnings, |b, n| {
        framing::decode_one::<messages::MmEntry>(b, magic::MM, n)
    })
    .map(|mm| memory(files, pid, &mm, warnings));
    // The kernel-object ids sit in core-<pid>.img in old images and in
    // ids-<pid>.img in newer ones.
    let ids = core.as_ref().and_then(|c| c.ids.clone()).or_else(|| {
        decode_optional(files, &format!("ids-{pid}.img"), warnings, |b, n| {
            framing::decode_one::<messages::TaskKobjIdsEntry>(b, magic::IDS, n)
        })
    });
    let open = ids
        .as_ref()
        .and_then(|ids| {
            decode_optional(
                files,
                &format!("fdinfo-{}.img", ids.files_id),
                warnings,
                |b, n| framing::decode_all::<messages::FdinfoEntry>(b, magic::FDINFO, n),
            )
        })
        .map(|fds| open_files(&fds, shared_files));
    Process {
        pid,
        ppid: entry.ppid,
        pgid: entry.pgid,
        sid: entry.sid,
        threads: entry.threads.clone(),
        command: tc.map(|t| t.comm.clone()).unwrap_or_default(),
        state: tc.map_or(TaskState::Unknown, |t| TaskState::from_raw(t.task_state)),
        memory,
        files: open,
    }
}

fn memory(
    files: &dyn Files,
    pid: u32,
    mm: &messages::MmEntry,
    warnings: &mut Vec<String>,
) -> Memory {
    let name = format!("pagemap-{pid}.img");
    let runs: Vec<messages::PagemapEntry> = decode_optional(files, &name, warnings, |b, n| {
        // The first entry is the head naming the pages file; runs follow.
        let entries = framing::entries(b, magic::PAGEMAP, n)?;
        entries
            .iter()
            .skip(1)
            .map(|e| framing::decode(*e, n))
            .collect::<Result<Vec<_>, _>>()
    })
    .unwrap_or_default();
    // Every sum saturates: the numbers come from the file, and a corrupt
    // one must not overflow (the fuzzer found that it did).
    let mut out = Memory::default();
    for run in &runs {
        let pages = u64::from(run.nr_pages);
        if run.in_parent == Some(true) {
            out.pages_in_parent = out.pages_in_parent.saturating_add(pages);
        } else {
            out.pages_dumped = out.pages_dumped.saturating_add(pages);
        }
    }
    out.bytes_dumped = out.pages_dumped.saturating_mul(PAGE_SIZE);
    out.areas = mm
        .vmas
        .iter()
        .map(|vma| {
            let pages_dumped = runs
                .iter()
                .filter(|r| r.in_parent != Some(true))
                .map(|r| overlap_pages(vma.start, vma.end, r.vaddr, u64::from(r.nr_pages)))
                .fold(0u64, u64::saturating_add);
            MemoryArea {
                start: vma.start,
                end: vma.end,
                mode: mode(vma.prot, vma.flags),
                pages_dumped,
            }
        })
        .collect();
    out.mapped_bytes = mm
        .vmas
        .iter()
        .map(|v| v.end.saturating_sub(v.start))
        .fold(0u64, u64::saturating_add);
    out
}

/// Pages of a run [vaddr, vaddr + n pages) that fall in [start, end).
fn overlap_pages(start: u64, end: u64, vaddr: u64, pages: u64) -> u64 {
    let run_end = vaddr.saturating_add(pages.saturating_mul(PAGE_SIZE));
    let lo = start.max(vaddr);
    let hi = end.min(run_end);
    hi.saturating_sub(lo) / PAGE_SIZE
}

/// `r-xp` style mode from mmap's PROT_* and MAP_* bits.
fn mode(prot: u32, flags: u32) -> String {
    const PROT_READ: u32 = 1;
    const PROT_WRITE: u32 = 2;
    const PROT_EXEC: u32 = 4;
    const MAP_SHARED: u32 = 1;
    let bit = |b: u32, c: char| if prot & b != 0 { c } else { '-' };
    let mut s = String::with_capacity(4);
    s.push(bit(PROT_READ, 'r'));
    s.push(bit(PROT_WRITE, 'w'));
    s.push(bit(PROT_EXEC, 'x'));
    s.push(if flags & MAP_SHARED != 0 { 's' } else { 'p' });
    s
}

fn open_files(
    fds: &[messages::FdinfoEntry],
    shared: Option<&[messages::FileEntry]>,
) -> Vec<OpenFile> {
    fds.iter()
        .map(|fd| OpenFile {
            fd: fd.fd,
            kind: messages::fd_kind_name(fd.kind),
            path: shared
                .and_then(|all| all.iter().find(|f| f.id == fd.id))
                .and_then(|f| f.reg.as_ref())
                .map(|r| r.name.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use framing::{frame, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC};
    use prost::Message;

    fn pstree(entries: &[(u32, u32)]) -> Vec<u8> {
        let msgs: Vec<Vec<u8>> = entries
            .iter()
            .map(|&(pid, ppid)| {
                messages::PstreeEntry {
                    pid,
                    ppid,
                    pgid: 1,
                    sid: 1,
                    threads: vec![pid],
                }
                .encode_to_vec()
            })
            .collect();
        frame(&[IMG_COMMON_MAGIC, magic::PSTREE], &msgs)
    }

    #[test]
    fn decodes_a_hand_made_tree_with_memory_and_stats() {
        let mut files = MemFiles::default();
        let tree = pstree(&[(1, 0), (7, 1), (8, 1)]);
        files.insert("pstree.img", Some(tree.clone()), tree.len() as u64);
        let core = messages::CoreEntry {
            tc: Some(messages::TaskCoreEntry {
                task_state: 1,
                comm: "forker".into(),
                ..Default::default()
            }),
            ids: Some(messages::TaskKobjIdsEntry {
                files_id: 3,
                ..Default::default()
            }),
        };
        let core = frame(&[IMG_COMMON_MAGIC, magic::CORE], &[core.encode_to_vec()]);
        files.insert("core-1.img", Some(core), 10);
        let mm = messages::MmEntry {
            vmas: vec![messages::VmaEntry {
                start: 0x1000,
                end: 0x5000,
                prot: 3,
                flags: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        files.insert(
            "mm-1.img",
            Some(frame(&[IMG_COMMON_MAGIC, magic::MM], &[mm.encode_to_vec()])),
            10,
        );
        let head = messages::PagemapHead { pages_id: 1 }.encode_to_vec();
        let run = messages::PagemapEntry {
            vaddr: 0x2000,
            nr_pages: 2,
            in_parent: None,
            flags: None,
        }
        .encode_to_vec();
        files.insert(
            "pagemap-1.img",
            Some(frame(&[IMG_COMMON_MAGIC, magic::PAGEMAP], &[head, run])),
            10,
        );
        files.insert("pages-1.img", None, 8192);
        let stats = messages::StatsEntry {
            dump: Some(messages::DumpStatsEntry {
                frozen_time: 1234,
                pages_written: 2,
                ..Default::default()
            }),
            restore: None,
        };
        files.insert(
            "stats-dump",
            Some(frame(
                &[IMG_SERVICE_MAGIC, magic::STATS],
                &[stats.encode_to_vec()],
            )),
            10,
        );

        let cp = Checkpoint::decode(&files).unwrap();
        assert_eq!(cp.processes.len(), 3);
        assert_eq!(cp.roots().map(|p| p.pid).collect::<Vec<_>>(), vec![1]);
        assert_eq!(
            cp.children(1).map(|p| p.pid).collect::<Vec<_>>(),
            vec![7, 8]
        );
        let root = &cp.processes[0];
        assert_eq!(
            (root.command.as_str(), root.state),
            ("forker", TaskState::Alive)
        );
        let mem = root.memory.as_ref().unwrap();
        assert_eq!(
            (mem.pages_dumped, mem.bytes_dumped, mem.mapped_bytes),
            (2, 8192, 0x4000)
        );
        assert_eq!(mem.areas[0].mode, "rw-p");
        assert_eq!(mem.areas[0].pages_dumped, 2);
        assert_eq!(cp.pages_bytes, 8192);
        assert_eq!(cp.dump_stats.as_ref().unwrap().frozen_time, 1234);
        assert!(cp.warnings.is_empty(), "{:?}", cp.warnings);
        // Children without core/mm files are still listed.
        assert!(cp.processes[1].memory.is_none());
    }

    #[test]
    fn missing_pstree_means_not_a_checkpoint() {
        let err = Checkpoint::decode(&MemFiles::default()).unwrap_err();
        assert!(matches!(err.kind, ErrorKind::Missing));
        assert_eq!(err.file, "pstree.img");
    }

    #[test]
    fn a_broken_per_process_file_is_a_warning() {
        let mut files = MemFiles::default();
        let tree = pstree(&[(1, 0)]);
        files.insert("pstree.img", Some(tree), 1);
        files.insert("mm-1.img", Some(vec![1, 2, 3, 4, 5, 6, 7, 8]), 8);
        let cp = Checkpoint::decode(&files).unwrap();
        assert_eq!(cp.warnings.len(), 1);
        assert!(cp.warnings[0].contains("mm-1.img"), "{:?}", cp.warnings);
    }

    #[test]
    fn unknown_fields_are_skipped() {
        let mut bytes = messages::PstreeEntry {
            pid: 5,
            ppid: 1,
            pgid: 5,
            sid: 5,
            threads: vec![5],
        }
        .encode_to_vec();
        // Field 99, varint 1: a field from a future CRIU.
        bytes.extend_from_slice(&[0x98, 0x06, 0x01]);
        let data = frame(&[IMG_COMMON_MAGIC, magic::PSTREE], &[bytes]);
        let tree: Vec<messages::PstreeEntry> =
            framing::decode_all(&data, magic::PSTREE, "pstree.img").unwrap();
        assert_eq!(tree[0].pid, 5);
    }

    /// Found by the fuzzer: areas whose sizes add up past u64::MAX.
    #[test]
    fn huge_areas_do_not_overflow() {
        let mut files = MemFiles::default();
        files.insert("pstree.img", Some(pstree(&[(1, 0)])), 1);
        let huge = messages::VmaEntry {
            start: 0,
            end: u64::MAX,
            ..Default::default()
        };
        let mm = messages::MmEntry {
            vmas: vec![huge.clone(), huge],
            ..Default::default()
        };
        files.insert(
            "mm-1.img",
            Some(frame(&[IMG_COMMON_MAGIC, magic::MM], &[mm.encode_to_vec()])),
            1,
        );
        let head = messages::PagemapHead { pages_id: 1 }.encode_to_vec();
        let run = messages::PagemapEntry {
            vaddr: 0,
            nr_pages: u32::MAX,
            in_parent: None,
            flags: None,
        };
        let runs: Vec<Vec<u8>> = std::iter::once(head)
            .chain((0..3).map(|_| run.encode_to_vec()))
            .collect();
        files.insert(
            "pagemap-1.img",
            Some(frame(&[IMG_COMMON_MAGIC, magic::PAGEMAP], &runs)),
            1,
        );
        files.insert("pages-1.img", None, u64::MAX);
        files.insert("pages-2.img", None, u64::MAX);
        let cp = Checkpoint::decode(&files).unwrap();
        let mem = cp.processes[0].memory.as_ref().unwrap();
        assert_eq!(mem.mapped_bytes, u64::MAX);
        assert_eq!(mem.pages_dumped, 3 * u64::from(u32::MAX));
        assert_eq!(cp.pages_bytes, u64::MAX);
    }

    #[test]
    fn overlap_counts_pages_inside_an_area() {
        assert_eq!(overlap_pages(0x1000, 0x3000, 0x0, 4), 2);
        assert_eq!(overlap_pages(0x1000, 0x3000, 0x5000, 4), 0);
        assert_eq!(
            overlap_pages(0, u64::MAX, u64::MAX - 10, u32::MAX as u64),
            0
        );
    }
}
