//! One record per trial: everything measured, with the trial's place in the
//! plan. `results` writes them (CSV for people and spreadsheets, JSON lines
//! for programs) and reads them back.

use serde::{Deserialize, Serialize};

use crate::model::MigrationMethod;

use crate::host::state::HostState;

/// Outcome of one trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every step succeeded and the restored container was verified.
    Ok,
    /// Every step ran but verification found a difference.
    Unverified,
    /// A step failed; `error` says which and why.
    Failed,
}

/// Everything measured in one trial. Times are milliseconds of wall time
/// seen by the client; `None` where the step did not run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    pub run_id: String,
    pub trial: usize,
    pub engine: String,
    pub children: u32,
    #[serde(default)]
    pub memory_mib: u32,
    #[serde(default)]
    pub threads: u32,
    #[serde(default)]
    pub files: u32,
    #[serde(default)]
    pub filler_mib: u32,
    pub repetition: u32,
    pub warmup: bool,
    pub started_at: String,
    pub image_bytes: Option<u64>,
    /// Create and start the container.
    pub run_ms: Option<f64>,
    /// From start until the workload printed its ready line.
    pub ready_ms: Option<f64>,
    pub checkpoint_ms: Option<f64>,
    pub stop_ms: Option<f64>,
    pub restore_ms: Option<f64>,
    /// Restores retried after containerd's transient error (0 to 3).
    pub restore_retries: u32,
    pub checkpoint_bytes: Option<u64>,
    pub processes_before: Option<u32>,
    pub processes_after: Option<u32>,
    /// Resident memory of the container's processes before the checkpoint.
    #[serde(default)]
    pub rss_bytes: Option<u64>,
    /// The same pids were alive after the restore as before.
    pub verified: bool,
    /// After the restore every process found its memory intact (the
    /// workload's checksum); None where there was nothing to check or the
    /// workload cannot tell. Records written before `threads_ok` and
    /// `files_ok` existed used this one verdict for all three.
    #[serde(default)]
    pub memory_ok: Option<bool>,
    /// After the restore every process had all its extra threads.
    #[serde(default)]
    pub threads_ok: Option<bool>,
    /// After the restore every process had all its open files.
    #[serde(default)]
    pub files_ok: Option<bool>,
    /// CRIU's own phases (from stats-dump / stats-restore), where the
    /// engine keeps them. Freezing plus frozen is CRIU's share of the
    /// checkpoint; frozen is the application's downtime during the dump.
    pub criu_freezing_ms: Option<f64>,
    pub criu_frozen_ms: Option<f64>,
    pub criu_memdump_ms: Option<f64>,
    pub criu_memwrite_ms: Option<f64>,
    pub criu_pages_scanned: Option<u64>,
    pub criu_pages_written: Option<u64>,
    pub criu_forking_ms: Option<f64>,
    /// CRIU's whole restore, forking included.
    pub criu_restore_ms: Option<f64>,
    pub criu_pages_restored: Option<u64>,
    /// ckpt's own time in the trial: everything but engine calls and waits.
    /// None where it was not measured (migration trials; older records of
    /// them held a 0 that meant the same).
    #[serde(default)]
    pub overhead_ms: Option<f64>,
    pub status: Status,
    pub error: Option<String>,
    /// A migration trial's method (empty for checkpoint/restore on one host).
    #[serde(default)]
    pub method: Option<MigrationMethod>,
    /// From the checkpoint request to the destination's "restored".
    #[serde(default)]
    pub downtime_ms: Option<f64>,
    /// Until the source is gone and the last page has arrived.
    #[serde(default)]
    pub total_ms: Option<f64>,
    /// Bytes that crossed the link between the two hosts.
    #[serde(default)]
    pub bytes_sent: Option<u64>,
    /// The longest pause between the workload's ticks (every 10 ms) across
    /// the move: what its users saw.
    #[serde(default)]
    pub gap_ms: Option<f64>,
    /// A failed trial whose engine did not answer right after the failure
    /// (a daemon died): the failure says nothing about checkpointing, so a
    /// resumed sweep runs the trial again; this record stays.
    #[serde(default)]
    pub engine_unreachable: bool,
    /// The host's state at the end of the trial (host::state), read in
    /// ckpt's own time: what can make an engine slower over a long run.
    /// None in records written before ckpt read it, or where it could not
    /// be read. Memory cgroups removed but not yet freed by the kernel.
    #[serde(default)]
    pub host_memcg_dying: Option<u64>,
    /// Mounts (lines of /proc/self/mountinfo).
    #[serde(default)]
    pub host_mounts: Option<u64>,
    /// Network namespace files (/run/docker/netns, /run/netns).
    #[serde(default)]
    pub host_netns: Option<u64>,
    /// Blobs in containerd's content stores.
    #[serde(default)]
    pub host_content_items: Option<u64>,
    #[serde(default)]
    pub host_dockerd_rss_kib: Option<u64>,
    /// dockerd's CPU time since it started (user + system).
    #[serde(default)]
    pub host_dockerd_cpu_ms: Option<u64>,
    #[serde(default)]
    pub host_containerd_rss_kib: Option<u64>,
    #[serde(default)]
    pub host_containerd_cpu_ms: Option<u64>,
    #[serde(default)]
    pub host_mem_available_mib: Option<u64>,
    /// 1-minute load average.
    #[serde(default)]
    pub host_load1: Option<f64>,
    /// The program's own check (--check-cmd) said the same after the
    /// restore as before the checkpoint; None when no check was asked.
    #[serde(default)]
    pub state_ok: Option<bool>,
    /// How long --setup-cmd took (outside every timed step).
    #[serde(default)]
    pub setup_ms: Option<f64>,
    /// How long --check-cmd took, before and after together (outside
    /// every timed step).
    #[serde(default)]
    pub check_ms: Option<f64>,
    /// What the clients of a service moved with them saw (`--probe`):
    /// their connections, those kept throughout, requests and how many
    /// failed or were lost, reconnects, the longest wait for a reply, the
    /// 99th percentile of the requests overlapping the move, and whether
    /// every redis counter held each answered INCR once.
    #[serde(default)]
    pub client_connections: Option<u32>,
    #[serde(default)]
    pub client_kept: Option<u32>,
    #[serde(default)]
    pub client_requests: Option<u64>,
    #[serde(default)]
    pub client_failed: Option<u64>,
    #[serde(default)]
    pub client_unknown: Option<u64>,
    #[serde(default)]
    pub client_reconnects: Option<u32>,
    #[serde(default)]
    pub client_gap_ms: Option<f64>,
    #[serde(default)]
    pub client_p99_in_ms: Option<f64>,
    #[serde(default)]
    pub client_counters_ok: Option<bool>,
}

/// What resuming needs of a record: whether its trial still has to run.
/// A resumed sweep keeps this (16 bytes) instead of the record (about 700),
/// so that its closing report, which reads every record again, does not
/// find them all in memory twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoneTrial {
    pub trial: usize,
    pub status: Status,
    pub engine_unreachable: bool,
}

impl From<&TrialRecord> for DoneTrial {
    fn from(record: &TrialRecord) -> DoneTrial {
        DoneTrial {
            trial: record.trial,
            status: record.status,
            engine_unreachable: record.engine_unreachable,
        }
    }
}

/// A host-state column of the records, by name, and its value as a number
/// (for correlating it with time).
pub(crate) type HostColumn = (&'static str, fn(&TrialRecord) -> Option<f64>);

/// Every host-state column, in the records' order.
pub(crate) const HOST_COLUMNS: [HostColumn; 10] = [
    ("host_memcg_dying", |r| number(r.host_memcg_dying)),
    ("host_mounts", |r| number(r.host_mounts)),
    ("host_netns", |r| number(r.host_netns)),
    ("host_content_items", |r| number(r.host_content_items)),
    ("host_dockerd_rss_kib", |r| number(r.host_dockerd_rss_kib)),
    ("host_dockerd_cpu_ms", |r| number(r.host_dockerd_cpu_ms)),
    ("host_containerd_rss_kib", |r| {
        number(r.host_containerd_rss_kib)
    }),
    ("host_containerd_cpu_ms", |r| {
        number(r.host_containerd_cpu_ms)
    }),
    ("host_mem_available_mib", |r| {
        number(r.host_mem_available_mib)
    }),
    ("host_load1", |r| r.host_load1),
];

fn number(count: Option<u64>) -> Option<f64> {
    count.map(|v| v as f64)
}

impl TrialRecord {
    /// A record with nothing measured yet (status failed until a trial
    /// says otherwise).
    pub(crate) fn new(
        run_id: &str,
        spec: &crate::sweep::plan::TrialSpec,
        engine: &str,
    ) -> TrialRecord {
        TrialRecord {
            run_id: run_id.to_string(),
            trial: spec.index,
            engine: engine.to_string(),
            children: spec.point.children,
            memory_mib: spec.point.memory_mib,
            threads: spec.point.threads,
            files: spec.point.files,
            filler_mib: spec.point.filler_mib,
            repetition: spec.repetition,
            warmup: spec.warmup,
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            image_bytes: None,
            run_ms: None,
            ready_ms: None,
            checkpoint_ms: None,
            stop_ms: None,
            restore_ms: None,
            restore_retries: 0,
            checkpoint_bytes: None,
            processes_before: None,
            processes_after: None,
            rss_bytes: None,
            verified: false,
            memory_ok: None,
            threads_ok: None,
            files_ok: None,
            criu_freezing_ms: None,
            criu_frozen_ms: None,
            criu_memdump_ms: None,
            criu_memwrite_ms: None,
            criu_pages_scanned: None,
            criu_pages_written: None,
            criu_forking_ms: None,
            criu_restore_ms: None,
            criu_pages_restored: None,
            overhead_ms: None,
            status: Status::Failed,
            error: None,
            engine_unreachable: false,
            method: spec.method,
            downtime_ms: None,
            total_ms: None,
            bytes_sent: None,
            gap_ms: None,
            host_memcg_dying: None,
            host_mounts: None,
            host_netns: None,
            host_content_items: None,
            host_dockerd_rss_kib: None,
            host_dockerd_cpu_ms: None,
            host_containerd_rss_kib: None,
            host_containerd_cpu_ms: None,
            host_mem_available_mib: None,
            host_load1: None,
            state_ok: None,
            setup_ms: None,
            check_ms: None,
            client_connections: None,
            client_kept: None,
            client_requests: None,
            client_failed: None,
            client_unknown: None,
            client_reconnects: None,
            client_gap_ms: None,
            client_p99_in_ms: None,
            client_counters_ok: None,
        }
    }

    /// Keeps the host's state beside the trial's times.
    pub(crate) fn set_host(&mut self, state: &HostState) {
        self.host_memcg_dying = state.memcg_dying;
        self.host_mounts = state.mounts;
        self.host_netns = state.netns;
        self.host_content_items = state.content_items;
        self.host_dockerd_rss_kib = state.dockerd.map(|d| d.rss_kib);
        self.host_dockerd_cpu_ms = state.dockerd.map(|d| d.cpu_ms);
        self.host_containerd_rss_kib = state.containerd.map(|d| d.rss_kib);
        self.host_containerd_cpu_ms = state.containerd.map(|d| d.cpu_ms);
        self.host_mem_available_mib = state.mem_available_mib;
        self.host_load1 = state.load1;
    }

    /// The grid point this trial measured.
    pub(crate) fn point(&self) -> crate::model::Point {
        crate::model::Point {
            children: self.children,
            memory_mib: self.memory_mib,
            threads: self.threads,
            files: self.files,
            filler_mib: self.filler_mib,
        }
    }

    /// A migration's measurements: the dump and the destination's restore
    /// as checkpoint and restore, its downtime, total time and bytes, and
    /// the destination's check.
    pub(crate) fn fill_from_migration(&mut self, m: &crate::migrate::Migration) {
        let phase = |name: &str| m.phases.iter().find(|p| p.name == name).map(|p| p.ms);
        self.checkpoint_ms = phase("checkpoint");
        self.stop_ms = phase("stop");
        self.restore_ms = phase("restore");
        self.downtime_ms = Some(m.downtime_ms);
        self.total_ms = Some(m.total_ms);
        self.bytes_sent = Some(m.bytes_sent);
        self.checkpoint_bytes = m.checkpoint_bytes;
        if let Some(d) = &m.criu_dump {
            self.fill_dump_stats(d);
        }
        if let Some(r) = &m.criu_restore {
            self.fill_restore_stats(r);
        }
        self.processes_before = Some(m.processes_before as u32);
        self.gap_ms = m.gap_ms;
        self.state_ok = m.state_ok;
        if let Some(c) = &m.client {
            self.fill_client(c);
        }
        if let crate::migrate::wire::Message::Verified {
            processes,
            memory_ok,
            threads_ok,
            files_ok,
            problem,
            ..
        } = &m.check
        {
            self.processes_after = Some(*processes as u32);
            (self.memory_ok, self.threads_ok, self.files_ok) = (*memory_ok, *threads_ok, *files_ok);
            self.error = problem.clone();
        }
        if m.state_ok == Some(false) {
            self.error = m.state_problem.clone();
        }
        self.verified = m.verified();
        self.status = if self.verified {
            Status::Ok
        } else {
            Status::Unverified
        };
    }

    /// What the probe's clients saw.
    fn fill_client(&mut self, c: &crate::probe::ProbeSummary) {
        self.client_connections = Some(c.connections as u32);
        self.client_kept = Some(c.connections_kept as u32);
        self.client_requests = Some(c.requests as u64);
        self.client_failed = Some(c.requests_failed as u64);
        self.client_unknown = Some(c.requests_unknown as u64);
        self.client_reconnects = Some(c.reconnects);
        self.client_gap_ms = Some(c.gap_ms);
        self.client_p99_in_ms = c.inside.p99_ms;
        self.client_counters_ok = c.counters_ok;
    }

    /// CRIU's phases of a dump (it counts in microseconds).
    pub(crate) fn fill_dump_stats(&mut self, d: &criu_image::DumpStatsEntry) {
        self.criu_freezing_ms = Some(us_to_ms(d.freezing_time));
        self.criu_frozen_ms = Some(us_to_ms(d.frozen_time));
        self.criu_memdump_ms = Some(us_to_ms(d.memdump_time));
        self.criu_memwrite_ms = Some(us_to_ms(d.memwrite_time));
        self.criu_pages_scanned = Some(d.pages_scanned);
        self.criu_pages_written = Some(d.pages_written);
    }

    /// CRIU's phases of a restore.
    pub(crate) fn fill_restore_stats(&mut self, r: &criu_image::RestoreStatsEntry) {
        self.criu_forking_ms = Some(us_to_ms(r.forking_time));
        self.criu_restore_ms = Some(us_to_ms(r.restore_time));
        self.criu_pages_restored = r.pages_restored;
    }

    /// The series the analysis puts this trial in: the engine, and its
    /// migration method when it has one (`runc+copy`), so that moves by
    /// each method and plain checkpoints stay apart. Older migration
    /// records already held the method in `engine`: it is not added twice.
    pub fn series(&self) -> String {
        match self.method {
            Some(m) if !self.engine.ends_with(&format!("+{}", m.name())) => {
                format!("{}+{}", self.engine, m.name())
            }
            _ => self.engine.clone(),
        }
    }

    /// True for trials that count in the statistics.
    pub(crate) fn measured_ok(&self) -> bool {
        !self.warmup && self.status == Status::Ok
    }
}
/// CRIU counts in microseconds.
fn us_to_ms(us: u32) -> f64 {
    f64::from(us) / 1000.0
}
