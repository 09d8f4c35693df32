//! The grid of trials: which parameter values, how many repetitions, which
//! warm-up trials, and in which order they run.

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::model::{
    Axis, Capacity, EngineKind, MigrationMethod, Network, Point, ProcessLimits, STATE_ROOT,
};
use crate::workload::UserWorkload;

/// The seed's grid: 1, 5, 10, ..., 50 child processes.
pub const DEFAULT_CHILDREN: &str = "1,5..50:5";

/// The most values one axis may hold. A grid is a product of its axes, so
/// even this many on one axis is a plan of days; more is a typing mistake.
pub const MAX_VALUES_PER_AXIS: u64 = 100_000;

/// The most trials a plan may hold, however long the user accepts to wait:
/// the trial list lives in memory while the sweep runs.
pub const MAX_TRIALS: u128 = 1_000_000;

/// Values and ranges as the user typed them (`1,5..50:5`), kept unexpanded
/// until they are checked: `1..100000000` costs nothing to parse, to bound
/// or to refuse. `A..B` includes both ends and steps by 1; `A..B:S` steps
/// by S. Values below `min`, empty and descending ranges are refused,
/// because they are always a typing mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueSpec {
    text: String,
    /// (first, last, step) of each item, `last` on the step.
    items: Vec<(u32, u32, u32)>,
}

impl ValueSpec {
    pub fn parse(spec: &str, min: u32) -> Result<ValueSpec> {
        let mut items = Vec::new();
        for item in spec.split(',').map(str::trim) {
            if item.is_empty() {
                bail!("'{spec}' has an empty item: write values such as 1,5..50:5");
            }
            items.push(parse_item(item).with_context(|| format!("in '{spec}'"))?);
        }
        if let Some(low) = items.iter().map(|i| i.0).find(|v| *v < min) {
            bail!("'{spec}' contains {low}: every value must be at least {min}");
        }
        Ok(ValueSpec {
            text: spec.to_string(),
            items,
        })
    }

    /// The largest value.
    pub fn max(&self) -> u32 {
        self.items.iter().map(|i| i.1).max().unwrap_or(0)
    }

    /// How many values, counting a value twice where items overlap (an
    /// upper bound, without expanding anything).
    pub fn count_upper(&self) -> u64 {
        self.items
            .iter()
            .map(|(first, last, step)| u64::from((last - first) / step) + 1)
            .sum()
    }

    /// The values, sorted and free of duplicates; refused past
    /// [`MAX_VALUES_PER_AXIS`].
    pub fn expand(&self) -> Result<Vec<u32>> {
        let count = self.count_upper();
        if count > MAX_VALUES_PER_AXIS {
            bail!(
                "'{}' holds {count} values; at most {MAX_VALUES_PER_AXIS} per axis: use a step (A..B:STEP)",
                self.text
            );
        }
        let mut values: Vec<u32> = self
            .items
            .iter()
            .flat_map(|&(first, last, step)| (first..=last).step_by(step as usize))
            .collect();
        values.sort_unstable();
        values.dedup();
        Ok(values)
    }
}

/// Parses and expands a list of values and ranges (see [`ValueSpec`]).
pub fn parse_values(spec: &str, min: u32) -> Result<Vec<u32>> {
    ValueSpec::parse(spec, min)?.expand()
}

fn parse_item(item: &str) -> Result<(u32, u32, u32)> {
    let number = |text: &str| -> Result<u32> {
        text.trim()
            .parse()
            .with_context(|| format!("'{text}' is not a whole number"))
    };
    let Some((start, rest)) = item.split_once("..") else {
        let value = number(item)?;
        return Ok((value, value, 1));
    };
    let (end, step) = match rest.split_once(':') {
        Some((end, step)) => (number(end)?, number(step)?),
        None => (number(rest)?, 1),
    };
    let start = number(start)?;
    if step == 0 {
        bail!("the step of '{item}' is 0");
    }
    if end < start {
        bail!("'{item}' is descending: write the smaller value first");
    }
    // The last value the steps land on, so `max` is a value of the range.
    Ok((start, start + (end - start) / step * step, step))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Point after point, as the course report did.
    Sequential,
    /// Interleaved at random, so that drift over time cannot pose as a trend.
    Shuffled,
}

fn zero() -> Vec<u32> {
    vec![0]
}

/// Everything that defines a sweep; saved as plan.json so `--resume` can
/// rebuild the very same list of trials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPlan {
    /// Engines compared in this sweep; their trials are interleaved.
    pub engines: Vec<EngineKind>,
    pub children: Vec<u32>,
    #[serde(default = "zero")]
    pub memory_mib: Vec<u32>,
    #[serde(default = "zero")]
    pub threads: Vec<u32>,
    #[serde(default = "zero")]
    pub files: Vec<u32>,
    #[serde(default = "zero")]
    pub filler_mib: Vec<u32>,
    /// None: ckpt's own forker.
    #[serde(default)]
    pub workload: Option<UserWorkload>,
    pub repeat: u32,
    pub warmup: u32,
    pub order: Order,
    /// How Docker networks the containers (plans from before the choice ran
    /// with `none`).
    #[serde(default = "Network::before_choice")]
    pub network: Network,
    /// Seed of the shuffle, so a resumed sweep keeps the same order.
    pub seed: u64,
    /// Empty: every trial checkpoints and restores on this host. Else every
    /// trial moves its container to a throwaway host by one of these
    /// methods, a category of the grid like the engine.
    #[serde(default)]
    pub migrate: Vec<MigrationMethod>,
    /// The rate (tc's syntax, `1gbit`) the migration trials' link is
    /// shaped to; None: unshaped.
    #[serde(default)]
    pub link_rate: Option<String>,
    /// With --migrate and --image: the probe that keeps the service busy
    /// across every move (`KIND:PORT`), and its clients' minimum
    /// retransmission timeout in ms (None: the kernel's).
    #[serde(default)]
    pub probe: Option<String>,
    #[serde(default)]
    pub probe_rto_min_ms: Option<u64>,
    /// Checkpoint and restore established TCP connections (CRIU's
    /// --tcp-established): runc and podman; Docker's API has no such option.
    #[serde(default)]
    pub tcp_established: bool,
    /// runc: the program's root filesystem writable (read-only by default).
    #[serde(default)]
    pub writable_rootfs: bool,
}

/// Refuses, before anything is expanded or created, a grid whose largest
/// point starts more tasks than this machine or an engine allows. ckpt's
/// forker runs `children + 1` processes of `threads + 1` tasks each.
pub fn check_process_limits(
    children_max: u32,
    threads_max: u32,
    engines: &[EngineKind],
    limits: &ProcessLimits,
) -> Result<()> {
    let processes = u64::from(children_max) + 1;
    let tasks = processes * (u64::from(threads_max) + 1);
    if tasks > limits.available() {
        bail!(
            "the largest point runs {tasks} tasks ({processes} processes x {} threads each), but this machine lets {} more start (kernel.pid_max {}, kernel.threads-max {}, user process limit {}, {} running now): lower --children or --threads",
            u64::from(threads_max) + 1,
            limits.available(),
            limits.pid_max,
            limits.threads_max,
            limits
                .user_processes
                .map_or("unlimited".to_string(), |u| u.to_string()),
            limits.running
        );
    }
    for engine in engines {
        if let Some(limit) = engine.pids_limit().filter(|l| tasks > *l) {
            bail!(
                "the largest point runs {tasks} tasks, but {engine} limits a container to {limit} (its default pids limit): lower --children or --threads, or drop {engine} from --engine"
            );
        }
    }
    Ok(())
}

/// One trial of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialSpec {
    /// Position in the plan; identifies the trial on resume.
    pub index: usize,
    /// Index into the plan's engines.
    pub engine: usize,
    pub point: Point,
    /// Repetition number within the point (warm-ups count separately).
    pub repetition: u32,
    pub warmup: bool,
    /// The migration method of a migration trial.
    #[serde(default)]
    pub method: Option<MigrationMethod>,
}

impl SweepPlan {
    pub fn validate(&self) -> Result<()> {
        for axis in Axis::ALL {
            if self.values(axis).is_empty() {
                bail!(
                    "the grid is empty: give at least one value to {}",
                    axis.flag()
                );
            }
        }
        if self.repeat == 0 {
            bail!("--repeat must be at least 1");
        }
        if self.engines.is_empty() {
            bail!("no engine: give at least one to --engine");
        }
        self.check_migration()?;
        let trials = self.trial_count();
        if trials > MAX_TRIALS {
            bail!(
                "the plan holds {trials} trials; ckpt runs at most {MAX_TRIALS} in one sweep: use fewer values or repetitions, or split the grid into several sweeps"
            );
        }
        let imageless: Vec<&str> = self
            .engines
            .iter()
            .filter(|e| !e.takes_user_image())
            .map(|e| e.name())
            .collect();
        if let Some(w) = self.workload.as_ref().filter(|w| w.image.is_empty()) {
            if let Some(e) = self.engines.iter().find(|e| **e != EngineKind::Criu) {
                bail!(
                    "--cmd '{}' without --image runs a process tree on the host, which only the criu engine does: give --image for {e}, or use --engine criu",
                    w.cmd
                );
            }
        } else if self.workload.is_some() && !imageless.is_empty() {
            bail!(
                "--image runs on the docker, podman and runc engines ({} take(s) no image: it runs processes on the host): drop {} from --engine",
                imageless.join(", "),
                imageless.join(", ")
            );
        }
        if let Some(e) = self.engines.iter().find(|e| !e.takes_filler_layer()) {
            if self.filler_mib.iter().any(|f| *f > 0) {
                bail!("--image-filler-mib needs an image, and the {e} engine runs the workload without one: drop {e} from --engine");
            }
        }
        if self.tcp_established {
            if let Some(e) = self.engines.iter().find(|e| !e.keeps_tcp_connections()) {
                bail!("--tcp-established: the {e} engine cannot checkpoint established connections (Docker's API has no such option, and a tcp-established line in /etc/criu/runc.conf would apply to every container on the host): use runc or podman");
            }
            if self.workload.is_none() {
                bail!("--tcp-established is for your own program (--image): ckpt's workload holds no connection");
            }
            if !self.migrate.is_empty() {
                bail!("--tcp-established with --migrate is not built: a move's connections need a network both hosts share (`ckpt migrate --probe` makes one); drop one of the two");
            }
        }
        if self.writable_rootfs && !self.engines.contains(&EngineKind::Runc) {
            bail!("--writable-rootfs is for the runc engine (Docker's and Podman's containers have a writable layer already, criu's programs the host's files): add runc to --engine or drop it");
        }
        if self.filler_mib.iter().any(|f| *f > 0) && self.workload.is_some() {
            bail!("--image-filler-mib adds a layer to ckpt's own workload image; with --image, build the sizes you want into your images");
        }
        Ok(())
    }

    /// Refuses a grid whose largest point cannot fit in this machine's
    /// memory, before anything starts. While one container runs the
    /// previous one is still being removed, so two may be resident at once;
    /// runc and CRIU also write their checkpoints to a tmpfs (memory).
    pub fn check_capacity(&self, capacity: &Capacity) -> Result<()> {
        if self.workload.is_some() {
            // A user's program writes what it writes: ckpt cannot know.
            return Ok(());
        }
        let largest = self
            .points()
            .iter()
            .map(|p| (u64::from(p.children) + 1) * u64::from(p.memory_mib))
            .max()
            .unwrap_or(0);
        let processes = u64::from(self.children.iter().copied().max().unwrap_or(0)) + 1;
        let memory = self.memory_mib.iter().copied().max().unwrap_or(0);
        let needed = 2 * largest;
        if needed > capacity.memory_available_mib * 9 / 10 {
            bail!(
                "the largest point needs about {needed} MiB of memory ({processes} processes x {memory} MiB, and the previous trial's container while it is removed), but this machine has {} MiB available: lower --memory-mib or --children",
                capacity.memory_available_mib
            );
        }
        let on_tmpfs = self.engines.iter().any(|e| e.checkpoints_to_tmpfs());
        if on_tmpfs && largest > capacity.state_free_mib * 9 / 10 {
            bail!(
                "runc and criu write checkpoints to {} (a tmpfs with {} MiB free), and the largest point's checkpoint is about {largest} MiB: lower --memory-mib or --children, or use the docker or podman engine",
                STATE_ROOT,
                capacity.state_free_mib
            );
        }
        Ok(())
    }

    pub(crate) fn values(&self, axis: Axis) -> &[u32] {
        match axis {
            Axis::Children => &self.children,
            Axis::MemoryMib => &self.memory_mib,
            Axis::Threads => &self.threads,
            Axis::Files => &self.files,
            Axis::FillerMib => &self.filler_mib,
        }
    }

    /// The migration methods a trial can have: none when not migrating.
    fn methods(&self) -> Vec<Option<MigrationMethod>> {
        if self.migrate.is_empty() {
            vec![None]
        } else {
            self.migrate.iter().copied().map(Some).collect()
        }
    }

    /// Refuses migration methods an engine cannot do, before anything runs.
    fn check_migration(&self) -> Result<()> {
        for engine in &self.engines {
            for method in &self.migrate {
                if !engine.migration_methods().contains(method) {
                    bail!(
                        "--migrate {}: the {engine} engine cannot migrate that way (it checkpoints into its daemon's own storage: stop-and-copy only); use --migrate copy, or runc/criu for page-server and lazy",
                        method.name()
                    );
                }
                if *engine == EngineKind::Criu && *method == MigrationMethod::Lazy {
                    bail!("--migrate lazy on the criu engine needs a destination on another machine (the frozen source and the restored tree would want the same pids)");
                }
            }
        }
        if let (false, Some(user)) = (self.migrate.is_empty(), &self.workload) {
            if self.engines.contains(&EngineKind::Criu) {
                bail!("--migrate with --image moves your program in a container (runc, docker, podman), as `ckpt migrate --image` does; the criu engine moves ckpt's own workload");
            }
            if user.check_pattern.is_some() {
                bail!("--check-pattern reads the program's log, which a move leaves at the source: use --check-cmd with --migrate");
            }
        }
        if let Some(probe) = &self.probe {
            probe
                .parse::<crate::probe::ProbeSpec>()
                .with_context(|| format!("--probe {probe}"))?;
            if self.migrate.is_empty() || self.workload.is_none() {
                bail!("--probe keeps a service busy across moves: give --migrate and your service (--image, --cmd); trials in place are not probed");
            }
        }
        if let Some(rate) = &self.link_rate {
            if self.migrate.is_empty() {
                bail!(
                    "--link-rate shapes the link that migration trials cross: give --migrate too"
                );
            }
            crate::migrate::link::parse_rate(rate).context("--link-rate")?;
        }
        Ok(())
    }

    /// How many trials the plan holds, from the axes' lengths (nothing is
    /// expanded, so an absurd plan costs nothing to count).
    pub fn trial_count(&self) -> u128 {
        let points: u128 = Axis::ALL
            .iter()
            .map(|a| self.values(*a).len() as u128)
            .product();
        points
            * self.engines.len() as u128
            * self.migrate.len().max(1) as u128
            * u128::from(self.repeat + self.warmup)
    }

    /// The plan's wall time as each engine's cost model predicts it. The
    /// model is linear in processes and memory, so its sum over the grid
    /// needs only each axis's count and sum, never the list of points.
    pub fn estimate(&self) -> std::time::Duration {
        let count = |a: Axis| self.values(a).len() as f64;
        let points: f64 = Axis::ALL.iter().map(|a| count(*a)).product();
        let processes: f64 = self.children.iter().map(|n| f64::from(*n) + 1.0).sum();
        let memory: f64 = self.memory_mib.iter().map(|m| f64::from(*m)).sum();
        let rest = points / (count(Axis::Children) * count(Axis::MemoryMib));
        let runs = f64::from(self.repeat + self.warmup) * self.migrate.len().max(1) as f64;
        let seconds: f64 = self
            .engines
            .iter()
            .map(|e| {
                let c = e.trial_cost();
                let per_grid = c.base_s * points
                    + c.per_process_s * processes * count(Axis::MemoryMib) * rest
                    + c.per_mib_s * processes * memory * rest;
                per_grid * runs
            })
            .sum();
        let moved = self.link_seconds_per_mib() * processes * memory * rest * runs;
        let seconds = seconds + moved * self.engines.len() as f64;
        std::time::Duration::from_secs_f64(seconds.min(1e12))
    }

    /// What every MiB of a migration trial's memory adds: it crosses a link
    /// shaped to --link-rate once, whatever the method (the page server and
    /// post-copy move it too, in or after the dump). None without a rate.
    fn link_seconds_per_mib(&self) -> f64 {
        let rate = match (&self.migrate.is_empty(), &self.link_rate) {
            (false, Some(rate)) => crate::migrate::link::parse_rate(rate).unwrap_or(f64::INFINITY),
            _ => return 0.0,
        };
        f64::from(1u32 << 20) * 8.0 / rate
    }

    /// The axes with more than one value.
    pub fn swept_axes(&self) -> Vec<Axis> {
        Axis::ALL
            .into_iter()
            .filter(|a| self.values(*a).len() > 1)
            .collect()
    }

    /// Every point of the grid: the product of all axes' values, the
    /// first axis (children) varying slowest.
    pub(crate) fn points(&self) -> Vec<Point> {
        let mut points = vec![Point::default()];
        for axis in Axis::ALL {
            points = points
                .iter()
                .flat_map(|p| {
                    self.values(axis).iter().map(move |v| {
                        let mut q = *p;
                        axis.set(&mut q, *v);
                        q
                    })
                })
                .collect();
        }
        points
    }

    /// Every (point, repetition, engine) of one kind (warm-up or measured),
    /// engines interleaved within each repetition.
    fn grid(&self, warmup: bool) -> Vec<TrialSpec> {
        let reps = if warmup { self.warmup } else { self.repeat };
        let mut out = Vec::new();
        for point in self.points() {
            for repetition in 0..reps {
                for engine in 0..self.engines.len() {
                    for method in self.methods() {
                        out.push(TrialSpec {
                            index: 0,
                            engine,
                            point,
                            repetition,
                            warmup,
                            method,
                        });
                    }
                }
            }
        }
        out
    }

    /// Every trial in run order. Sequential: each point's warm-ups, then
    /// its repetitions, the engines taking turns. Shuffled: all warm-ups
    /// first, then every measured trial in a random order fixed by `seed`.
    pub fn trials(&self) -> Vec<TrialSpec> {
        let mut trials: Vec<TrialSpec> = match self.order {
            Order::Sequential => {
                let (warm, measured) = (self.grid(true), self.grid(false));
                self.points()
                    .into_iter()
                    .flat_map(|p| {
                        let w = warm.iter().filter(move |t| t.point == p);
                        w.chain(measured.iter().filter(move |t| t.point == p))
                            .copied()
                    })
                    .collect()
            }
            Order::Shuffled => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
                let mut warm = self.grid(true);
                let mut measured = self.grid(false);
                warm.shuffle(&mut rng);
                measured.shuffle(&mut rng);
                warm.into_iter().chain(measured).collect()
            }
        };
        for (index, trial) in trials.iter_mut().enumerate() {
            trial.index = index;
        }
        trials
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_grid() {
        assert_eq!(
            parse_values(DEFAULT_CHILDREN, 1).unwrap(),
            vec![1, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
        );
        assert_eq!(parse_values("3", 1).unwrap(), vec![3]);
        assert_eq!(parse_values("1..3", 1).unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_values("10,1,10", 1).unwrap(), vec![1, 10]);
        // A step that does not land on the end stops before it.
        assert_eq!(parse_values("1..10:4", 1).unwrap(), vec![1, 5, 9]);
    }

    #[test]
    fn refuses_bad_grids() {
        for bad in ["", "1,,2", "0", "0..5", "5..1", "1..5:0", "x", "1..y", "-3"] {
            assert!(parse_values(bad, 1).is_err(), "'{bad}' should be refused");
        }
        let err = format!("{:#}", parse_values("5..1", 1).unwrap_err());
        assert_eq!(
            parse_values("0,64..256:64", 0).unwrap(),
            vec![0, 64, 128, 192, 256]
        );
        assert!(err.contains("descending"), "{err}");
    }

    fn plan(order: Order) -> SweepPlan {
        SweepPlan {
            engines: vec![EngineKind::Docker],
            children: vec![1, 5, 10],
            memory_mib: vec![0],
            threads: vec![0],
            files: vec![0],
            filler_mib: vec![0],
            workload: None,
            repeat: 3,
            warmup: 1,
            order,
            network: Network::Disabled,
            seed: 7,
            migrate: Vec::new(),
            link_rate: None,
            probe: None,
            probe_rto_min_ms: None,
            tcp_established: false,
            writable_rootfs: false,
        }
    }

    #[test]
    fn sequential_plan_runs_point_after_point() {
        let trials = plan(Order::Sequential).trials();
        assert_eq!(trials.len(), 12);
        assert!(trials[0].warmup && trials[0].point.children == 1);
        assert!(!trials[1].warmup && trials[1].point.children == 1);
        assert!(trials[4].warmup && trials[4].point.children == 5);
        assert!(trials.iter().enumerate().all(|(i, t)| t.index == i));
    }

    #[test]
    fn shuffled_plan_is_a_stable_permutation_with_warmups_first() {
        let a = plan(Order::Shuffled).trials();
        let b = plan(Order::Shuffled).trials();
        assert_eq!(a, b, "the same seed gives the same order");
        assert!(a[..3].iter().all(|t| t.warmup));
        assert!(a[3..].iter().all(|t| !t.warmup));
        let mut seq: Vec<_> = plan(Order::Sequential)
            .trials()
            .iter()
            .map(|t| (t.point, t.repetition, t.warmup))
            .collect();
        let mut shuf: Vec<_> = a
            .iter()
            .map(|t| (t.point, t.repetition, t.warmup))
            .collect();
        seq.sort_unstable();
        shuf.sort_unstable();
        assert_eq!(seq, shuf, "shuffling neither adds nor drops trials");
        let children: Vec<u32> = a[3..].iter().map(|t| t.point.children).collect();
        assert_ne!(children, {
            let mut sorted = children.clone();
            sorted.sort_unstable();
            sorted
        });
    }

    #[test]
    fn engines_take_turns_within_a_point() {
        let mut p = plan(Order::Sequential);
        p.engines = vec![EngineKind::Docker, EngineKind::Runc, EngineKind::Criu];
        let trials = p.trials();
        assert_eq!(trials.len(), 36);
        let first: Vec<(usize, bool)> = trials[..6].iter().map(|t| (t.engine, t.warmup)).collect();
        assert_eq!(
            first,
            vec![
                (0, true),
                (1, true),
                (2, true),
                (0, false),
                (1, false),
                (2, false)
            ]
        );
        for e in 0..3 {
            assert_eq!(trials.iter().filter(|t| t.engine == e).count(), 12);
        }
    }

    #[test]
    fn grids_over_two_axes_hold_every_combination() {
        let mut p = plan(Order::Sequential);
        p.children = vec![1, 10];
        p.memory_mib = vec![0, 64, 256];
        assert_eq!(p.swept_axes(), vec![Axis::Children, Axis::MemoryMib]);
        let points = p.points();
        assert_eq!(points.len(), 6);
        assert_eq!((points[0].children, points[0].memory_mib), (1, 0));
        assert_eq!((points[2].children, points[2].memory_mib), (1, 256));
        assert_eq!((points[3].children, points[3].memory_mib), (10, 0));
        // 6 points x (1 warm-up + 3 repetitions).
        assert_eq!(p.trials().len(), 24);
    }

    #[test]
    fn old_plans_without_the_new_axes_still_read() {
        let old = r#"{"engines":["docker"],"children":[1,5],"repeat":2,"warmup":1,"order":"sequential","seed":3}"#;
        let p: SweepPlan = serde_json::from_str(old).unwrap();
        assert_eq!(p.memory_mib, vec![0]);
        assert_eq!(p.points().len(), 2);
        // They ran Docker with --network none; a resume must too.
        assert_eq!(p.network, Network::None);
    }

    #[test]
    fn the_network_choice_survives_plan_json_for_resume() {
        let mut p = plan(Order::Sequential);
        p.network = Network::None;
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(r#""network":"none""#), "{json}");
        let back: SweepPlan = serde_json::from_str(&json).unwrap();
        assert_eq!(back.network, Network::None);
        p.network = Network::Disabled;
        let back: SweepPlan = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back.network, Network::Disabled);
    }

    #[test]
    fn memory_beyond_the_machine_is_refused_with_the_figures() {
        let mut p = plan(Order::Sequential);
        p.children = vec![1, 50];
        p.memory_mib = vec![0, 1024];
        let small = Capacity {
            memory_available_mib: 20_000,
            state_free_mib: 10_000,
        };
        let err = format!("{:#}", p.check_capacity(&small).unwrap_err());
        assert!(
            err.contains("104448 MiB") && err.contains("20000 MiB"),
            "{err}"
        );
        p.children = vec![1, 4];
        p.check_capacity(&small).unwrap();
        p.engines = vec![EngineKind::Runc];
        p.memory_mib = vec![1024];
        let tight = Capacity {
            memory_available_mib: 20_000,
            state_free_mib: 2_000,
        };
        let err = format!("{:#}", p.check_capacity(&tight).unwrap_err());
        assert!(err.contains("tmpfs"), "{err}");
    }

    #[test]
    fn engines_that_cannot_run_a_feature_are_refused() {
        let mut p = plan(Order::Sequential);
        p.engines = vec![EngineKind::Docker, EngineKind::Criu];
        p.filler_mib = vec![0, 100];
        assert!(format!("{:#}", p.validate().unwrap_err()).contains("criu"));
        p.filler_mib = vec![0];
        p.workload = Some(UserWorkload {
            image: "x".into(),
            cmd: "x".into(),
            ready_pattern: None,
            ready_delay_ms: 1,
            ready_timeout_ms: 1,
            check_pattern: None,
            setup_cmd: None,
            check_cmd: None,
            check_expect: None,
        });
        assert!(format!("{:#}", p.validate().unwrap_err()).contains("drop criu"));
        p.engines = vec![EngineKind::Podman, EngineKind::Runc];
        p.validate().unwrap();
    }

    #[test]
    fn absurd_ranges_are_bounded_without_being_expanded() {
        let huge = ValueSpec::parse("1..100000000", 0).unwrap();
        assert_eq!(huge.max(), 100_000_000);
        assert_eq!(huge.count_upper(), 100_000_000);
        let err = format!("{:#}", huge.expand().unwrap_err());
        assert!(err.contains("100000000 values"), "{err}");
        let stepped = ValueSpec::parse("1..10:4,3", 1).unwrap();
        assert_eq!((stepped.max(), stepped.count_upper()), (9, 4));
        assert_eq!(stepped.expand().unwrap(), vec![1, 3, 5, 9]);
    }

    fn limits() -> ProcessLimits {
        ProcessLimits {
            pid_max: 4_194_304,
            threads_max: 100_000,
            user_processes: None,
            running: 300,
        }
    }

    #[test]
    fn points_beyond_the_kernels_limits_are_refused_with_the_figures() {
        let err = check_process_limits(100_000_000, 0, &[EngineKind::Criu], &limits())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("100000001 tasks") && err.contains("kernel.threads-max 100000"),
            "{err}"
        );
        check_process_limits(5000, 0, &[EngineKind::Criu], &limits()).unwrap();
        // 1000 processes of 3 tasks: more than Podman's default pids limit.
        let err = check_process_limits(999, 2, &[EngineKind::Podman], &limits())
            .unwrap_err()
            .to_string();
        assert!(err.contains("podman limits a container to 2048"), "{err}");
    }

    #[test]
    fn the_estimate_sums_the_cost_model_over_the_grid() {
        let mut p = plan(Order::Sequential);
        p.engines = vec![EngineKind::Criu];
        p.children = parse_values("1..5000", 0).unwrap();
        (p.repeat, p.warmup) = (1, 0);
        assert_eq!(p.trial_count(), 5000);
        let hours = p.estimate().as_secs_f64() / 3600.0;
        // About half a day: 5000 x 0.05 s + 0.003 s x (2 + ... + 5001).
        assert!((9.0..12.0).contains(&hours), "{hours}");
        // The same sum as point by point.
        let c = EngineKind::Criu.trial_cost();
        let by_point: f64 = p
            .points()
            .iter()
            .map(|q| c.base_s + c.per_process_s * f64::from(q.children + 1))
            .sum();
        assert!((p.estimate().as_secs_f64() - by_point).abs() < 1e-6 * by_point);
    }

    #[test]
    fn a_migration_plan_counts_its_memory_at_the_link_rate() {
        let mut p = plan(Order::Sequential);
        p.engines = vec![EngineKind::Runc];
        p.children = vec![0, 1];
        p.memory_mib = vec![0, 512];
        (p.repeat, p.warmup) = (5, 1);
        p.migrate = vec![crate::model::MigrationMethod::Copy];
        let unshaped = p.estimate().as_secs_f64();
        p.link_rate = Some("1gbit".into());
        let shaped = p.estimate().as_secs_f64();
        // (1 + 2) processes x 512 MiB cross 6 times at 1 Gbit/s: 3 x 512 x
        // 2^20 x 8 / 10^9 x 6 = 77.3 s.
        assert!(
            (shaped - unshaped - 77.3).abs() < 0.1,
            "{shaped} {unshaped}"
        );
    }

    #[test]
    fn plans_past_the_trial_cap_are_refused() {
        let mut p = plan(Order::Sequential);
        p.children = (1..=1000).collect();
        p.memory_mib = (0..1000).collect();
        assert_eq!(p.trial_count(), 4_000_000);
        let err = format!("{:#}", p.validate().unwrap_err());
        assert!(err.contains("4000000 trials"), "{err}");
    }

    #[test]
    fn migration_methods_are_a_category_and_checked_against_the_engines() {
        let mut p = plan(Order::Sequential);
        p.engines = vec![EngineKind::Runc, EngineKind::Criu];
        p.migrate = vec![MigrationMethod::Copy, MigrationMethod::PageServer];
        p.validate().unwrap();
        // 3 points x (1 warm-up + 3) x 2 engines x 2 methods.
        assert_eq!(p.trial_count(), 48);
        assert_eq!(p.trials().len(), 48);
        assert_eq!(
            p.trials()
                .iter()
                .filter(|t| t.method == Some(MigrationMethod::PageServer))
                .count(),
            24
        );
        p.migrate.push(MigrationMethod::Lazy);
        assert!(format!("{:#}", p.validate().unwrap_err()).contains("criu"));
        // Docker moves by stop-and-copy only.
        p.engines = vec![EngineKind::Docker];
        p.migrate = vec![MigrationMethod::Copy];
        p.validate().unwrap();
        p.migrate = vec![MigrationMethod::PageServer];
        assert!(format!("{:#}", p.validate().unwrap_err()).contains("docker"));
        // Plans written before migration existed read as plans without it.
        let old = r#"{"engines":["docker"],"children":[1],"repeat":1,"warmup":0,"order":"sequential","seed":3}"#;
        let old: SweepPlan = serde_json::from_str(old).unwrap();
        assert!(old.migrate.is_empty() && old.trials().iter().all(|t| t.method.is_none()));
        assert_eq!(old.link_rate, None);
    }

    #[test]
    fn a_link_rate_needs_migration_and_tc_syntax() {
        let mut p = plan(Order::Sequential);
        p.engines = vec![EngineKind::Runc];
        p.link_rate = Some("1gbit".into());
        let err = format!("{:#}", p.validate().unwrap_err());
        assert!(err.contains("--migrate"), "{err}");
        p.migrate = vec![MigrationMethod::Copy, MigrationMethod::Lazy];
        p.validate().unwrap();
        p.link_rate = Some("fast".into());
        let err = format!("{:#}", p.validate().unwrap_err());
        assert!(err.contains("--link-rate") && err.contains("gbit"), "{err}");
    }

    #[test]
    fn validation() {
        let mut p = plan(Order::Sequential);
        p.repeat = 0;
        assert!(p.validate().is_err());
        p.repeat = 1;
        p.engines.clear();
        assert!(p.validate().is_err());
        p.engines.push(EngineKind::Docker);
        p.children.clear();
        assert!(p.validate().is_err());
    }
}
