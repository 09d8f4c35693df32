//! The words every part of ckpt shares: the engines and what each can do,
//! the axes a sweep varies, a grid point, the network choice. This module
//! imports nothing from the rest of the crate, so anything may read it.

use serde::{Deserialize, Serialize};

/// Where daemon-less engines keep their bundles, images and work
/// directories (a tmpfs: nothing survives a reboot, as nothing should).
pub const STATE_ROOT: &str = "/run/ckpt";

/// An engine ckpt can checkpoint through. The serialized names ("docker",
/// ...) are those of plan.json and the records, so old results still read.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Docker Engine API (dockerd, containerd, runc, CRIU)
    Docker,
    /// Podman's service (runc, CRIU), started by ckpt on its own socket
    Podman,
    /// runc with an OCI bundle, no daemon
    Runc,
    /// CRIU alone on a plain process tree, no container
    Criu,
}

/// Where an engine's CRIU statistics (`stats-dump`, `stats-restore`) come
/// from, since not every engine keeps CRIU's work directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsSource {
    /// The engine deletes CRIU's work directory: a `work-dir` line in the
    /// host's /etc/criu/runc.conf makes CRIU leave them elsewhere.
    RuncConf,
    /// runc's `--work-path`, a directory of ckpt's own.
    WorkPath,
    /// CRIU's RPC answer and the work directory ckpt gives it.
    Rpc,
}

/// The annotation `ckpt export` adds to an archive's `spec.dump` to name
/// the engine, and `ckpt inspect` reads: checkpointctl knows only Podman,
/// CRI-O and containerd (and calls every other engine containerd), so ckpt
/// keeps the true one beside them.
pub const ARCHIVE_ENGINE_ANNOTATION: &str = "io.ckpt.engine";

/// How a container moves to another host.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationMethod {
    /// Checkpoint, copy the images, restore (stop-and-copy).
    Copy,
    /// The dump streams memory pages to CRIU's page server at the destination.
    PageServer,
    /// Post-copy: restore first, pages fetched on demand through userfaultfd.
    Lazy,
}

impl MigrationMethod {
    pub const ALL: [MigrationMethod; 3] = [
        MigrationMethod::Copy,
        MigrationMethod::PageServer,
        MigrationMethod::Lazy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MigrationMethod::Copy => "copy",
            MigrationMethod::PageServer => "page-server",
            MigrationMethod::Lazy => "lazy",
        }
    }
}

impl EngineKind {
    /// Every engine, the default first.
    pub const ALL: [EngineKind; 4] = [
        EngineKind::Docker,
        EngineKind::Podman,
        EngineKind::Runc,
        EngineKind::Criu,
    ];

    /// From the layer closest to CRIU up: the order of the report's
    /// "where the time goes" ladder.
    pub const LADDER: [EngineKind; 4] = [
        EngineKind::Criu,
        EngineKind::Runc,
        EngineKind::Podman,
        EngineKind::Docker,
    ];

    /// The name in flags, records and messages.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
            EngineKind::Runc => "runc",
            EngineKind::Criu => "criu",
        }
    }

    /// The engine a name in a record or plan stands for.
    pub fn from_name(name: &str) -> Option<EngineKind> {
        EngineKind::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The names of every engine, for messages.
    pub fn names() -> String {
        EngineKind::ALL.map(EngineKind::name).join(", ")
    }

    /// Whether the workload runs from a container image (criu runs a plain
    /// process tree).
    pub fn has_image(self) -> bool {
        self != EngineKind::Criu
    }

    /// Whether a daemon stands between ckpt and runc.
    pub fn has_daemon(self) -> bool {
        matches!(self, EngineKind::Docker | EngineKind::Podman)
    }

    /// Whether an image filler layer can be added (it needs an image).
    pub fn takes_filler_layer(self) -> bool {
        self.has_image()
    }

    /// Whether the user's own image can be run (it needs an image store).
    pub fn takes_user_image(self) -> bool {
        // runc unpacks the image from Docker's or Podman's storage; the
        // criu engine runs processes on the host, without a root of their own.
        self != EngineKind::Criu
    }

    /// Whether ckpt can ask the engine to checkpoint and restore established
    /// TCP connections (CRIU's --tcp-established).
    pub fn keeps_tcp_connections(self) -> bool {
        self != EngineKind::Docker
    }

    /// Whether the engine calls runc, so needs it installed.
    pub fn uses_runc(self) -> bool {
        self != EngineKind::Criu
    }

    /// Whether checkpoints go to ckpt's tmpfs under [`STATE_ROOT`] (memory),
    /// rather than to a daemon's disk.
    pub fn checkpoints_to_tmpfs(self) -> bool {
        !self.has_daemon()
    }

    /// Whether `--network` changes what the engine does: Docker runs a
    /// network hook at every start and restore for `none`, no other does.
    pub fn network_choice_matters(self) -> bool {
        self == EngineKind::Docker
    }

    /// How long to wait before each retry of a restore that failed with
    /// the engine's known transient error, in ms. Docker's is containerd's
    /// "content ... already exists" (moby#42900): the content store still
    /// holds the checkpoint's blob until its garbage collection runs, so an
    /// immediate retry often fails again and the waits grow.
    pub fn restore_retry_delays_ms(self) -> &'static [u64] {
        match self {
            EngineKind::Docker => &[100, 400, 1500],
            _ => &[],
        }
    }

    /// The number of tasks (processes and threads) the engine lets one
    /// container hold by default, where it sets a limit: Podman's
    /// containers.conf default `pids_limit` is 2048; Docker and runc set
    /// none unless asked; a plain process tree has none.
    pub fn pids_limit(self) -> Option<u64> {
        match self {
            EngineKind::Podman => Some(2048),
            _ => None,
        }
    }

    /// What a trial costs on this engine, roughly, for the estimate printed
    /// before a sweep starts. Fitted to sweeps of N <= 50 on a 2-core VM
    /// (docs/performance.md); at N in the thousands CRIU grows faster than
    /// linearly, so estimates of such plans are low.
    pub fn trial_cost(self) -> TrialCost {
        let (base_s, per_process_s) = match self {
            EngineKind::Docker => (0.8, 0.013),
            EngineKind::Podman => (1.0, 0.013),
            EngineKind::Runc => (0.3, 0.0035),
            EngineKind::Criu => (0.05, 0.003),
        };
        TrialCost {
            base_s,
            per_process_s,
            // Writing, dumping and restoring a MiB of process memory.
            per_mib_s: 0.003,
        }
    }

    /// Where this engine's CRIU statistics come from.
    pub fn stats_source(self) -> StatsSource {
        match self {
            EngineKind::Docker | EngineKind::Podman => StatsSource::RuncConf,
            EngineKind::Runc => StatsSource::WorkPath,
            EngineKind::Criu => StatsSource::Rpc,
        }
    }

    /// Which ways of moving a container to another host the engine allows:
    /// the daemons checkpoint to a directory only, so stop-and-copy.
    pub fn migration_methods(self) -> &'static [MigrationMethod] {
        if self.has_daemon() {
            &[MigrationMethod::Copy]
        } else {
            &MigrationMethod::ALL
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How Docker networks a container. In both the workload has loopback
/// only, in a network namespace of its own; they differ in what Docker does
/// on every start and restore. runc and criu always behave like `Disabled`,
/// and Podman runs no hook for `none`, so for them the choice changes nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// No network (the API's NetworkDisabled, which the CLI cannot ask for):
    /// runc makes the namespace and Docker runs no network hook.
    #[default]
    Disabled,
    /// `--network none`, as the course report's docker CLI loop: Docker's network
    /// controller sets the namespace up through a prestart hook that execs
    /// dockerd (`libnetwork-setkey`) on every start and every restore.
    None,
}

impl Network {
    /// What plans written before the choice existed ran with.
    pub fn before_choice() -> Network {
        Network::None
    }
}

/// The workload parameters of one point of the grid.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Point {
    pub children: u32,
    /// MiB each process writes (and keeps resident).
    pub memory_mib: u32,
    /// Extra threads each process starts.
    pub threads: u32,
    /// Files each process holds open.
    pub files: u32,
    /// MiB of incompressible data in an extra image layer.
    pub filler_mib: u32,
}

/// A parameter a sweep can vary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    Children,
    MemoryMib,
    Threads,
    Files,
    FillerMib,
}

impl Axis {
    pub const ALL: [Axis; 5] = [
        Axis::Children,
        Axis::MemoryMib,
        Axis::Threads,
        Axis::Files,
        Axis::FillerMib,
    ];

    /// The name in flags, records, templates and file names.
    pub fn name(self) -> &'static str {
        match self {
            Axis::Children => "children",
            Axis::MemoryMib => "memory_mib",
            Axis::Threads => "threads",
            Axis::Files => "files",
            Axis::FillerMib => "filler_mib",
        }
    }

    /// The command-line flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            Axis::Children => "--children",
            Axis::MemoryMib => "--memory-mib",
            Axis::Threads => "--threads",
            Axis::Files => "--files",
            Axis::FillerMib => "--image-filler-mib",
        }
    }

    /// The axis title of a figure.
    pub fn title(self) -> &'static str {
        match self {
            Axis::Children => "number of child processes",
            Axis::MemoryMib => "memory written per process (MiB)",
            Axis::Threads => "threads per process",
            Axis::Files => "open files per process",
            Axis::FillerMib => "image filler layer (MiB)",
        }
    }

    /// The unit of a slope "per" this axis.
    pub fn unit(self) -> &'static str {
        match self {
            Axis::Children => "process",
            Axis::MemoryMib | Axis::FillerMib => "MiB",
            Axis::Threads => "thread",
            Axis::Files => "file",
        }
    }

    pub fn of(self, p: &Point) -> u32 {
        match self {
            Axis::Children => p.children,
            Axis::MemoryMib => p.memory_mib,
            Axis::Threads => p.threads,
            Axis::Files => p.files,
            Axis::FillerMib => p.filler_mib,
        }
    }

    pub fn set(self, p: &mut Point, value: u32) {
        match self {
            Axis::Children => p.children = value,
            Axis::MemoryMib => p.memory_mib = value,
            Axis::Threads => p.threads = value,
            Axis::Files => p.files = value,
            Axis::FillerMib => p.filler_mib = value,
        }
    }
}

/// Which image a grid point runs: ckpt's workload with a filler layer of
/// `filler_mib` MiB, or an image the user brings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ImageSpec {
    pub user_image: Option<String>,
    pub filler_mib: u32,
}

/// What to run: the workload's arguments, after the image's entrypoint
/// (ckpt's workload binary) or after `entrypoint` when one is given (a
/// user's command).
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub name: String,
    pub args: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub network: Network,
    /// A network namespace of ckpt's to join instead of a new one (runc:
    /// the spec's namespace path, which CRIU then treats as external).
    pub netns: Option<std::path::PathBuf>,
}

/// A trial's cost model: `base_s + per_process_s x processes + per_mib_s x
/// MiB of process memory`, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrialCost {
    pub base_s: f64,
    pub per_process_s: f64,
    pub per_mib_s: f64,
}

/// How many tasks (processes and threads) this machine lets ckpt start.
#[derive(Debug, Clone, Copy)]
pub struct ProcessLimits {
    /// kernel.pid_max: the highest pid, so the most tasks at once.
    pub pid_max: u64,
    /// kernel.threads-max: the most tasks the kernel allows in all.
    pub threads_max: u64,
    /// RLIMIT_NPROC of this user, when limited.
    pub user_processes: Option<u64>,
    /// Tasks running now, which count against all three.
    pub running: u64,
}

impl ProcessLimits {
    /// How many more tasks can start: the tightest limit less what runs.
    pub fn available(&self) -> u64 {
        let limit = self
            .pid_max
            .min(self.threads_max)
            .min(self.user_processes.unwrap_or(u64::MAX));
        limit.saturating_sub(self.running)
    }
}

/// What this machine can hold, read before a plan is accepted.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    /// MemAvailable: what can be allocated without swapping.
    pub memory_available_mib: u64,
    /// Free space of the tmpfs where runc and CRIU checkpoints go (RAM).
    pub state_free_mib: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_round_trip_and_keep_their_serialized_form() {
        for e in EngineKind::ALL {
            assert_eq!(EngineKind::from_name(e.name()), Some(e));
            assert_eq!(serde_json::to_string(&e).unwrap(), format!("\"{e}\""));
        }
        assert_eq!(EngineKind::from_name("lxc"), None);
        assert_eq!(EngineKind::names(), "docker, podman, runc, criu");
    }

    #[test]
    fn capabilities_follow_the_engine_stack() {
        use EngineKind::*;
        assert!(!Criu.has_image() && !Criu.takes_filler_layer() && !Criu.uses_runc());
        assert!(Runc.has_image() && Runc.takes_user_image() && Runc.checkpoints_to_tmpfs());
        assert!(!EngineKind::Criu.takes_user_image());
        assert!(Docker.takes_user_image() && Podman.has_daemon() && !Docker.checkpoints_to_tmpfs());
        assert_eq!(Docker.migration_methods(), &[MigrationMethod::Copy]);
        assert_eq!(Criu.migration_methods().len(), 3);
        assert_eq!(Runc.stats_source(), StatsSource::WorkPath);
        let mut ladder = EngineKind::LADDER;
        ladder.sort();
        assert_eq!(
            ladder,
            EngineKind::ALL,
            "the ladder holds every engine once"
        );
    }

    #[test]
    fn axes_read_and_write_their_own_field() {
        for (i, axis) in Axis::ALL.into_iter().enumerate() {
            let mut p = Point::default();
            axis.set(&mut p, i as u32 + 1);
            assert_eq!(axis.of(&p), i as u32 + 1);
            let others: u32 = Axis::ALL.iter().map(|a| a.of(&p)).sum();
            assert_eq!(
                others,
                i as u32 + 1,
                "{} touches another field",
                axis.name()
            );
        }
    }
}
