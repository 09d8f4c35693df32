//! Protobuf messages of the CRIU image files this crate reads, written from
//! the format's field numbers and types (proto2). Only the fields ckpt uses
//! are declared: prost skips every other field, so newer CRIU versions that
//! add fields decode fine.

use prost::Message;

/// inventory.img: one entry describing the whole dump.
#[derive(Clone, PartialEq, Message)]
pub struct InventoryEntry {
    #[prost(uint32, tag = "1")]
    pub img_version: u32,
    #[prost(bool, optional, tag = "2")]
    pub fdinfo_per_id: Option<bool>,
    #[prost(message, optional, tag = "3")]
    pub root_ids: Option<TaskKobjIdsEntry>,
    #[prost(bool, optional, tag = "4")]
    pub ns_per_id: Option<bool>,
    #[prost(uint64, optional, tag = "8")]
    pub dump_uptime: Option<u64>,
    #[prost(uint32, optional, tag = "9")]
    pub pre_dump_mode: Option<u32>,
    #[prost(string, optional, tag = "13")]
    pub dump_criu_run_id: Option<String>,
}

/// Ids of the kernel objects a task uses (memory, files, namespaces).
#[derive(Clone, PartialEq, Message)]
pub struct TaskKobjIdsEntry {
    #[prost(uint32, tag = "1")]
    pub vm_id: u32,
    #[prost(uint32, tag = "2")]
    pub files_id: u32,
    #[prost(uint32, tag = "3")]
    pub fs_id: u32,
    #[prost(uint32, tag = "4")]
    pub sighand_id: u32,
    #[prost(uint32, optional, tag = "5")]
    pub pid_ns_id: Option<u32>,
}

/// pstree.img: one entry per process.
#[derive(Clone, PartialEq, Message)]
pub struct PstreeEntry {
    #[prost(uint32, tag = "1")]
    pub pid: u32,
    #[prost(uint32, tag = "2")]
    pub ppid: u32,
    #[prost(uint32, tag = "3")]
    pub pgid: u32,
    #[prost(uint32, tag = "4")]
    pub sid: u32,
    #[prost(uint32, repeated, packed = "false", tag = "5")]
    pub threads: Vec<u32>,
}

/// core-<tid>.img: registers and task state of one thread.
#[derive(Clone, PartialEq, Message)]
pub struct CoreEntry {
    #[prost(message, optional, tag = "3")]
    pub tc: Option<TaskCoreEntry>,
    #[prost(message, optional, tag = "4")]
    pub ids: Option<TaskKobjIdsEntry>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TaskCoreEntry {
    #[prost(uint32, tag = "1")]
    pub task_state: u32,
    #[prost(uint32, tag = "2")]
    pub exit_code: u32,
    #[prost(uint32, tag = "3")]
    pub personality: u32,
    #[prost(uint32, tag = "4")]
    pub flags: u32,
    #[prost(uint64, tag = "5")]
    pub blk_sigset: u64,
    #[prost(string, tag = "6")]
    pub comm: String,
}

/// mm-<pid>.img: the address space of one process.
#[derive(Clone, PartialEq, Message)]
pub struct MmEntry {
    #[prost(uint64, tag = "1")]
    pub mm_start_code: u64,
    #[prost(uint64, tag = "2")]
    pub mm_end_code: u64,
    #[prost(uint64, tag = "6")]
    pub mm_start_brk: u64,
    #[prost(uint64, tag = "7")]
    pub mm_brk: u64,
    #[prost(uint32, tag = "12")]
    pub exe_file_id: u32,
    #[prost(message, repeated, tag = "14")]
    pub vmas: Vec<VmaEntry>,
}

/// One memory area.
#[derive(Clone, PartialEq, Message)]
pub struct VmaEntry {
    #[prost(uint64, tag = "1")]
    pub start: u64,
    #[prost(uint64, tag = "2")]
    pub end: u64,
    #[prost(uint64, tag = "3")]
    pub pgoff: u64,
    #[prost(uint64, tag = "4")]
    pub shmid: u64,
    #[prost(uint32, tag = "5")]
    pub prot: u32,
    #[prost(uint32, tag = "6")]
    pub flags: u32,
    #[prost(uint32, tag = "7")]
    pub status: u32,
    #[prost(sint64, tag = "8")]
    pub fd: i64,
}

/// First entry of pagemap-<pid>.img: which pages-<id>.img holds the data.
#[derive(Clone, PartialEq, Message)]
pub struct PagemapHead {
    #[prost(uint32, tag = "1")]
    pub pages_id: u32,
}

/// A run of dumped pages.
#[derive(Clone, PartialEq, Message)]
pub struct PagemapEntry {
    #[prost(uint64, tag = "1")]
    pub vaddr: u64,
    #[prost(uint32, tag = "2")]
    pub nr_pages: u32,
    #[prost(bool, optional, tag = "3")]
    pub in_parent: Option<bool>,
    #[prost(uint32, optional, tag = "4")]
    pub flags: Option<u32>,
}

/// fdinfo-<files_id>.img: one entry per open descriptor.
#[derive(Clone, PartialEq, Message)]
pub struct FdinfoEntry {
    #[prost(uint32, tag = "1")]
    pub id: u32,
    #[prost(uint32, tag = "2")]
    pub flags: u32,
    #[prost(int32, tag = "3")]
    pub kind: i32,
    #[prost(uint32, tag = "4")]
    pub fd: u32,
}

/// files.img: one entry per open file description.
#[derive(Clone, PartialEq, Message)]
pub struct FileEntry {
    #[prost(int32, tag = "1")]
    pub kind: i32,
    #[prost(uint32, tag = "2")]
    pub id: u32,
    #[prost(message, optional, tag = "3")]
    pub reg: Option<RegFileEntry>,
    #[prost(message, optional, tag = "4")]
    pub isk: Option<InetSkEntry>,
    #[prost(message, optional, tag = "16")]
    pub usk: Option<UnixSkEntry>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RegFileEntry {
    #[prost(uint32, tag = "1")]
    pub id: u32,
    #[prost(uint32, tag = "2")]
    pub flags: u32,
    #[prost(uint64, tag = "3")]
    pub pos: u64,
    #[prost(string, tag = "6")]
    pub name: String,
    #[prost(uint64, optional, tag = "8")]
    pub size: Option<u64>,
}

/// An inet (IPv4, IPv6) socket: a `files.img` entry's `isk`, or an entry
/// of `inetsk.img` in images of CRIU before 3.4. Addresses are the
/// kernel's bytes in u32 words as the dumping machine stored them (one word
/// for IPv4, four for IPv6); ports are in host order.
#[derive(Clone, PartialEq, Message)]
pub struct InetSkEntry {
    #[prost(uint32, tag = "1")]
    pub id: u32,
    #[prost(uint32, tag = "2")]
    pub ino: u32,
    #[prost(uint32, tag = "3")]
    pub family: u32,
    #[prost(uint32, tag = "4")]
    pub sock_type: u32,
    #[prost(uint32, tag = "5")]
    pub proto: u32,
    #[prost(uint32, tag = "6")]
    pub state: u32,
    #[prost(uint32, tag = "7")]
    pub src_port: u32,
    #[prost(uint32, tag = "8")]
    pub dst_port: u32,
    #[prost(uint32, tag = "9")]
    pub flags: u32,
    #[prost(uint32, tag = "10")]
    pub backlog: u32,
    #[prost(uint32, repeated, packed = "false", tag = "11")]
    pub src_addr: Vec<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "12")]
    pub dst_addr: Vec<u32>,
    #[prost(bool, optional, tag = "15")]
    pub v6only: Option<bool>,
    #[prost(string, optional, tag = "17")]
    pub ifname: Option<String>,
    #[prost(uint32, optional, tag = "18")]
    pub ns_id: Option<u32>,
    /// 0 none, 1 read, 2 write, 3 both.
    #[prost(int32, optional, tag = "19")]
    pub shutdown: Option<i32>,
}

/// A unix socket: a `files.img` entry's `usk`, or an entry of `unixsk.img`
/// in images of CRIU before 3.4. `peer` is the peer's `ino` (0: none).
#[derive(Clone, PartialEq, Message)]
pub struct UnixSkEntry {
    #[prost(uint32, tag = "1")]
    pub id: u32,
    #[prost(uint32, tag = "2")]
    pub ino: u32,
    #[prost(uint32, tag = "3")]
    pub sock_type: u32,
    #[prost(uint32, tag = "4")]
    pub state: u32,
    #[prost(uint32, tag = "5")]
    pub flags: u32,
    #[prost(uint32, tag = "6")]
    pub uflags: u32,
    #[prost(uint32, tag = "7")]
    pub backlog: u32,
    #[prost(uint32, tag = "8")]
    pub peer: u32,
    /// A path, or an abstract name starting with a NUL byte; empty when
    /// unbound.
    #[prost(bytes = "vec", tag = "11")]
    pub name: Vec<u8>,
    #[prost(int32, optional, tag = "12")]
    pub shutdown: Option<i32>,
    /// The directory a relative name was bound in.
    #[prost(string, optional, tag = "14")]
    pub name_dir: Option<String>,
    #[prost(bool, optional, tag = "15")]
    pub deleted: Option<bool>,
    #[prost(uint32, optional, tag = "16")]
    pub ns_id: Option<u32>,
}

/// stats-dump and stats-restore.
#[derive(Clone, PartialEq, Message)]
pub struct StatsEntry {
    #[prost(message, optional, tag = "1")]
    pub dump: Option<DumpStatsEntry>,
    #[prost(message, optional, tag = "2")]
    pub restore: Option<RestoreStatsEntry>,
}

/// Times in microseconds, counts in pages.
#[derive(Clone, PartialEq, Message, serde::Serialize, serde::Deserialize)]
pub struct DumpStatsEntry {
    #[prost(uint32, tag = "1")]
    pub freezing_time: u32,
    #[prost(uint32, tag = "2")]
    pub frozen_time: u32,
    #[prost(uint32, tag = "3")]
    pub memdump_time: u32,
    #[prost(uint32, tag = "4")]
    pub memwrite_time: u32,
    #[prost(uint64, tag = "5")]
    pub pages_scanned: u64,
    #[prost(uint64, tag = "6")]
    pub pages_skipped_parent: u64,
    #[prost(uint64, tag = "7")]
    pub pages_written: u64,
    #[prost(uint32, optional, tag = "8")]
    pub irmap_resolve: Option<u32>,
    #[prost(uint64, tag = "9")]
    pub pages_lazy: u64,
    #[prost(uint64, optional, tag = "10")]
    pub page_pipes: Option<u64>,
    #[prost(uint64, optional, tag = "11")]
    pub page_pipe_bufs: Option<u64>,
    #[prost(uint64, optional, tag = "12")]
    pub shpages_scanned: Option<u64>,
    #[prost(uint64, optional, tag = "13")]
    pub shpages_skipped_parent: Option<u64>,
    #[prost(uint64, optional, tag = "14")]
    pub shpages_written: Option<u64>,
}

/// Times in microseconds, counts in pages.
#[derive(Clone, PartialEq, Message, serde::Serialize, serde::Deserialize)]
pub struct RestoreStatsEntry {
    #[prost(uint64, tag = "1")]
    pub pages_compared: u64,
    #[prost(uint64, tag = "2")]
    pub pages_skipped_cow: u64,
    #[prost(uint32, tag = "3")]
    pub forking_time: u32,
    #[prost(uint32, tag = "4")]
    pub restore_time: u32,
    #[prost(uint64, optional, tag = "5")]
    pub pages_restored: Option<u64>,
}

/// The kind of an open descriptor (fdinfo's `type`).
pub fn fd_kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "file",
        2 => "pipe",
        3 => "fifo",
        4 => "inet socket",
        5 => "unix socket",
        6 => "eventfd",
        7 => "eventpoll",
        8 => "inotify",
        9 => "signalfd",
        10 => "packet socket",
        11 => "tty",
        12 => "fanotify",
        13 => "netlink socket",
        14 => "namespace",
        15 => "tun",
        16 => "external",
        17 => "timerfd",
        18 => "memfd",
        19 => "bpf map",
        20 => "pidfd",
        _ => "unknown",
    }
}
