//! "System details" and "Method": the machine or hosts, workload, grid, runs.

use super::{strings, Block, Report, Run};
use crate::model::Axis;

/// The table of a merged report's runs.
const RUN_COLUMNS: [&str; 7] = [
    "host",
    "directory",
    "engines",
    "measured per point",
    "warm-ups per point",
    "order",
    "records",
];

/// The table of hosts of a merged report.
const MACHINE_COLUMNS: [&str; 13] = [
    "host",
    "machine",
    "CPU",
    "cores",
    "memory",
    "OS",
    "kernel",
    "Docker",
    "containerd",
    "runc",
    "CRIU",
    "Podman",
    "ckpt",
];

impl Report<'_> {
    /// The machine as bullets, or with several hosts a row per host.
    pub(super) fn system_block(&self) -> Block {
        if self.runs.is_empty() {
            return Block::Bullets(self.system());
        }
        let header = strings(&MACHINE_COLUMNS);
        let rows = self.runs.iter().map(host_row).collect();
        Block::Table(header, rows)
    }

    fn system(&self) -> Vec<String> {
        let e = self.env;
        let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
        let mut lines = vec![
            format!(
                "CPU: {} ({} cores)",
                or(&e.cpu_model),
                e.cores.map_or("?".into(), |c| c.to_string())
            ),
            format!(
                "Memory: {}",
                e.memory_bytes.map_or("unknown".into(), |b| {
                    format!("{:.1} GiB", b as f64 / 1073741824.0)
                })
            ),
            format!("Operating system: {}", or(&e.distro)),
            format!("Kernel: {}", or(&e.kernel)),
            format!("Docker: {} (API {})", or(&e.docker), or(&e.docker_api)),
            format!("containerd: {}", or(&e.containerd)),
            format!("runc: {}", or(&e.runc)),
            format!("CRIU: {}", or(&e.criu)),
            format!("Podman: {}", or(&e.podman)),
            format!("ckpt: {}", e.ckpt),
        ];
        // Measured only for sweeps that hold memory, the yardstick of their
        // throughput; elsewhere the line would only say "not measured".
        if let Some(m) = e.memcpy_mib_per_s {
            lines.insert(
                2,
                format!("Memory copy bandwidth (memcpy of 256 MiB, best of 5): {m:.0} MiB/s"),
            );
        }
        lines
    }

    fn workload_text(&self) -> String {
        let p = self.plan;
        match &p.workload {
            Some(user) => format!(
                "The image `{}` runs `{}` (placeholders filled per point) in a fresh container (engines: {}). It counts as ready {}; \
                 after the restore ckpt checks that the same processes run{}.",
                user.image,
                user.cmd,
                p.engines.iter().map(|e| e.name()).collect::<Vec<_>>().join(", "),
                user.ready_pattern.as_ref().map_or(
                    format!("{} ms after it starts", user.ready_delay_ms),
                    |r| format!("when a log line matches `{r}`")
                ),
                user.check_pattern.as_ref().map_or(String::new(), |c| format!(
                    " and that a new log line matches `{c}`"
                ))
            ),
            None => format!(
                "A static program forks N child processes in a fresh `FROM scratch` container (engines: {}; for criu a plain process tree \
                 on the host); each process writes its own memory (memory_mib, pseudo-random so it is resident and incompressible), \
                 starts extra threads and opens files as the point says, and prints its pid every second. The image may carry a filler \
                 layer of incompressible data (filler_mib). After the restore ckpt checks that the same N+1 pids are alive and, when \
                 the processes hold memory, asks each to recompute its checksum (SIGUSR1) and waits for all the verdicts.",
                p.engines.iter().map(|e| e.name()).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// How many trials ran per point, and in which order; with several
    /// hosts, where to find that per run.
    fn repetitions_text(&self) -> String {
        let p = self.plan;
        if !self.runs.is_empty() {
            return format!(
                "The runs of {} hosts are merged: every engine's label carries its host (`docker@host`), so each host has its \
                 own points, fits, lines in the figures and drift. Each run's measured and warm-up trials per point (warm-ups \
                 recorded, excluded from the statistics) and its order are in the table below.",
                self.runs.len()
            );
        }
        let order = match p.order {
            crate::sweep::plan::Order::Sequential => "sequential".to_string(),
            crate::sweep::plan::Order::Shuffled => format!("shuffled (seed {})", p.seed),
        };
        format!(
            "Per point {} measured trial(s) after {} warm-up trial(s) (recorded, excluded from the statistics), in {order} order.",
            p.repeat, p.warmup
        )
    }

    /// A row per host's run: where it is, what it ran, how many trials.
    pub(super) fn runs_table(&self) -> Block {
        let header = strings(&RUN_COLUMNS);
        let rows = self
            .runs
            .iter()
            .map(|r| {
                let engines: Vec<&str> = r.plan.engines.iter().map(|e| e.name()).collect();
                vec![
                    r.host.clone(),
                    r.dir.clone(),
                    engines.join(", "),
                    r.plan.repeat.to_string(),
                    r.plan.warmup.to_string(),
                    format!("{:?}", r.plan.order).to_lowercase(),
                    r.trials.to_string(),
                ]
            })
            .collect();
        Block::Table(header, rows)
    }

    pub(super) fn method(&self) -> String {
        let p = self.plan;
        let grid: Vec<String> = Axis::ALL
            .iter()
            .filter(|a| p.values(**a).len() > 1 || p.values(**a).iter().any(|v| *v != 0))
            .map(|a| {
                let values: Vec<String> = p.values(*a).iter().map(u32::to_string).collect();
                format!("{} in {{{}}}", a.name(), values.join(", "))
            })
            .collect();
        format!(
            "{} The grid: {} (every combination). {} One trial: start the container, wait until the workload is ready, \
             checkpoint (timed, wall time seen by the client), stop (timed), restore from the checkpoint (timed), verify, \
             remove the container.{}{} Intervals are 95% confidence intervals of the mean (Student t).",
            self.workload_text(),
            grid.join("; "),
            self.repetitions_text(),
            self.network_text(),
            self.link_text()
        )
    }

    /// The link that migration trials crossed, when the sweep migrated.
    fn link_text(&self) -> String {
        if self.plan.migrate.is_empty() {
            return String::new();
        }
        match &self.plan.link_rate {
            Some(rate) => format!(
                " Migration trials crossed a veth link shaped to {rate} in each direction (tc's tbf, 1 MB burst; no delay added)."
            ),
            None => " Migration trials crossed an unshaped veth link.".into(),
        }
    }

    /// How Docker's containers were networked, when Docker took part: the
    /// choice moves every start and restore by Docker's network hook.
    fn network_text(&self) -> &'static str {
        if !self.plan.engines.iter().any(|e| e.network_choice_matters()) {
            return "";
        }
        match self.plan.network {
            crate::model::Network::Disabled => {
                " Docker's containers run with networking disabled (loopback only, in a namespace of their own, as with runc): \
                 Docker runs no network hook at start and restore."
            }
            crate::model::Network::None => {
                " Docker's containers run with `--network none`: Docker's network hook runs at every start and restore."
            }
        }
    }
}

/// A host's machine, for the table of hosts.
fn host_row(run: &Run) -> Vec<String> {
    let e = &run.env;
    let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
    let machine = e.host.as_ref().and_then(|h| h.machine.clone());
    vec![
        run.host.clone(),
        or(&machine),
        or(&e.cpu_model),
        e.cores.map_or("?".into(), |c| c.to_string()),
        e.memory_bytes.map_or("unknown".into(), |b| {
            format!("{:.1} GiB", b as f64 / 1073741824.0)
        }),
        or(&e.distro),
        or(&e.kernel),
        or(&e.docker),
        or(&e.containerd),
        or(&e.runc),
        or(&e.criu),
        or(&e.podman),
        e.ckpt.clone(),
    ]
}
