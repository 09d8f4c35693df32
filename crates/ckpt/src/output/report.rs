//! report.md and a self-contained report.html in the seed's structure:
//! system details, method, results table, figures, what drives the time,
//! and observations written from the numbers. The report is built once as
//! a list of blocks and rendered twice (Markdown, HTML), so both always
//! say the same. Everything here reads the analysis, never an engine.

use std::fmt::Write as _;

use crate::analysis::drift::{self, Drift};
use crate::analysis::{self, Analysis, Operation, OperationFit, PointSummary};
use crate::host::envinfo::Environment;
use crate::model::{Axis, EngineKind};
use crate::output::plot::{capitalised, Figure};
use crate::sweep::plan::SweepPlan;

/// An engine's retry waits as prose: "100, 400 and 1500".
fn retry_delays_text(engine: EngineKind) -> String {
    match engine.restore_retry_delays_ms() {
        [] => "no".into(),
        [only] => only.to_string(),
        [rest @ .., last] => {
            let rest: Vec<String> = rest.iter().map(u64::to_string).collect();
            format!("{} and {last}", rest.join(", "))
        }
    }
}

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

/// The steadiness table.
const DRIFT_COLUMNS: [&str; 8] = [
    "engine",
    "operation",
    "trials",
    "drift (% per 100 trials)",
    "95% CI",
    "change over the run",
    "moved with it",
    "verdict",
];

/// One host's run in a report merged from several (`ckpt report DIR1
/// DIR2 ...`): its records' engines carry `@<host>`.
pub struct Run {
    pub host: String,
    pub dir: String,
    pub env: Environment,
    pub plan: SweepPlan,
    /// Records, warm-ups and failures included.
    pub trials: usize,
}

/// The parts of a report, rendered as Markdown or HTML.
pub struct Report<'a> {
    pub plan: &'a SweepPlan,
    /// The machine; empty in a merged report (see `runs`).
    pub env: &'a Environment,
    /// Each host's run of a merged report; empty for one directory.
    pub runs: &'a [Run],
    pub analysis: &'a Analysis,
    /// The figures written next to the report (inlined in the HTML).
    pub figures: &'a [Figure],
    pub phases_svg: Option<&'a str>,
    pub drift_svg: Option<&'a str>,
}

/// One piece of the report.
enum Block {
    Heading(String),
    Para(String),
    Bullets(Vec<String>),
    Numbered(Vec<String>),
    Table(Vec<String>, Vec<Vec<String>>),
    /// A figure file (stem), its caption, and its SVG for the HTML.
    Figure(String, String, String),
}

/// An effect smaller than this share of the time at the low end of the
/// range counts as no effect, even when it is statistically significant.
const NEGLIGIBLE: f64 = 0.05;

fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / 1048576.0)
}

impl Report<'_> {
    fn title(&self) -> String {
        let titles: Vec<&str> = self.analysis.swept.iter().map(|a| a.title()).collect();
        format!(
            "Checkpoint and restore time against {}",
            titles.join(" and ")
        )
    }

    /// The machine as bullets, or with several hosts a row per host.
    fn system_block(&self) -> Block {
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
    fn runs_table(&self) -> Block {
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

    fn method(&self) -> String {
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
             remove the container.{} Intervals are 95% confidence intervals of the mean (Student t).",
            self.workload_text(),
            grid.join("; "),
            self.repetitions_text(),
            self.network_text()
        )
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

    /// Observations written from the numbers, in the seed's order.
    pub(crate) fn observations(&self) -> Vec<String> {
        let a = self.analysis;
        let mut out: Vec<String> = self.image_size_sentence().into_iter().collect();
        out.extend(a.fits.iter().map(|f| self.fit_sentence(f)));
        out.extend(
            a.correlation
                .iter()
                .map(|(e, r)| correlation_sentence(e, *r)),
        );
        out.extend(self.off_fit_sentences());
        out.extend(self.outlier_sentence());
        out.extend(
            steadiness_sentences(&a.drift)
                .iter()
                .map(|s| format!("{}.", capitalised(s))),
        );
        out.push(self.trials_sentence());
        out.extend(self.memory_check_sentence());
        out.extend(self.overhead_sentence());
        out.extend(self.checkpoint_size_sentence());
        out
    }

    /// Whether the image size changed; nothing when no trial measured it.
    fn image_size_sentence(&self) -> Option<String> {
        match self.analysis.image_sizes.as_slice() {
            [] => None,
            [one] => Some(format!(
                "The image size stays constant ({}): the processes, their memory and files belong to the container, not the image.",
                mib(*one as f64)
            )),
            many => Some(format!(
                "The image size varied between {} and {}.",
                mib(many[0] as f64),
                mib(many[many.len() - 1] as f64)
            )),
        }
    }

    /// One sentence per point off its line, or one saying there is none.
    fn off_fit_sentences(&self) -> Vec<String> {
        let a = self.analysis;
        if a.off_fit.is_empty() {
            return vec![
                "No point lies off its fitted line beyond its own confidence interval.".into(),
            ];
        }
        a.off_fit
            .iter()
            .map(|o| format!(
                "Anomaly: {} {} at {} averaged {:.1} ms where a robust (Theil-Sen) line along {} through the other points predicts {:.1} ms.",
                o.engine,
                o.operation.name(),
                a.label(&o.point),
                o.mean_ms,
                o.axis.name(),
                o.predicted_ms
            ))
            .collect()
    }

    fn outlier_sentence(&self) -> Option<String> {
        let outliers: usize = self.analysis.points.iter().map(|p| p.outliers).sum();
        (outliers > 0).then(|| format!("{outliers} single trial time(s) were outliers within their point (MAD rule); they are kept in the statistics and shown here."))
    }

    /// How many trials ran, failed and were retried.
    fn trials_sentence(&self) -> String {
        let a = self.analysis;
        format!(
            "{} trial(s) in all ({} warm-up): {} failed, {} ran but failed verification; {} restore retr(ies) after containerd's transient \
             'content already exists' error (Docker retries after {} ms).",
            a.trials,
            a.warmups,
            a.failed,
            a.unverified,
            a.restore_retries,
            retry_delays_text(EngineKind::Docker)
        )
    }

    /// Nothing when no trial checked the memory (the processes held none).
    fn memory_check_sentence(&self) -> Option<String> {
        let (checked, intact) = self.memory_checks();
        (checked > 0).then(|| format!(
            "Memory check after the restore: {intact} of {checked} trial(s) found every process's memory intact (checksum recomputed)."
        ))
    }

    fn overhead_sentence(&self) -> Option<String> {
        self.analysis.overhead.as_ref().map(|o| {
            format!(
                "ckpt's own time per trial (outside engine calls and waits): mean {:.2} ms, max {:.2} ms.",
                o.mean, o.max
            )
        })
    }

    /// The checkpoint size at the first and the last point.
    fn checkpoint_size_sentence(&self) -> Option<String> {
        let sizes = self.checkpoint_sizes();
        let (first, last) = (sizes.first()?, sizes.last()?);
        Some(format!(
            "The checkpoint on disk ranges from {} at {} to {} at {}.",
            mib(first.1),
            first.0,
            mib(last.1),
            last.0
        ))
    }

    fn memory_checks(&self) -> (usize, usize) {
        self.rows(Operation::Checkpoint)
            .iter()
            .fold((0, 0), |(c, i), p| {
                (c + p.memory_checked, i + p.memory_intact)
            })
    }

    /// One fit in words: direction, size per unit of the axis, fit quality.
    fn fit_sentence(&self, f: &OperationFit) -> String {
        let fit = &f.fit;
        let growth = if fit.slope_ci_low > 0.0 {
            "grows"
        } else if fit.slope_ci_high < 0.0 {
            "falls"
        } else {
            "shows no significant trend"
        };
        let shape = if fit.r_squared >= 0.9 {
            "a line fits it well"
        } else if fit.r_squared >= 0.5 {
            "a line explains part of the variation"
        } else {
            "a line explains little of the variation"
        };
        let at = self.analysis.label_except(&f.at, f.axis);
        let at = if at.is_empty() {
            String::new()
        } else {
            format!(" (at {at})")
        };
        format!(
            "{} {} time{at} {growth} with the {}: {:.3} ms per {} (95% CI {:.3} to {:.3}), intercept {:.1} ms, R² = {:.3}; {shape}.",
            f.engine,
            f.operation.name(),
            f.axis.title(),
            fit.slope,
            f.axis.unit(),
            fit.slope_ci_low,
            fit.slope_ci_high,
            fit.intercept,
            fit.r_squared
        )
    }

    /// Whether an axis drives an operation's time, said from one fit: the
    /// slope must be significant and the change over the swept range
    /// more than a few per cent.
    fn verdict(&self, f: &OperationFit) -> String {
        let fit = &f.fit;
        let change = f.relative_change();
        let significant = fit.slope_ci_low > 0.0 || fit.slope_ci_high < 0.0;
        let (low, high) = (f.low_ms, f.high_ms);
        let at = self.analysis.label_except(&f.at, f.axis);
        let at = if at.is_empty() {
            String::new()
        } else {
            format!(" (at {at})")
        };
        let range = format!(
            "measured {low:.0} ms at {} = {} and {high:.0} ms at {} ({:+.0}%)",
            f.axis.name(),
            f.x_min,
            f.x_max,
            100.0 * change
        );
        let name = format!("the {} {} time{at}", f.engine, f.operation.name());
        if significant && change.abs() >= NEGLIGIBLE {
            format!(
                "{} drives {name}: {:.3} ms per {} (95% CI {:.3} to {:.3}), {range}.",
                capitalised(f.axis.title()),
                fit.slope,
                f.axis.unit(),
                fit.slope_ci_low,
                fit.slope_ci_high
            )
        } else if significant {
            format!(
                "{} barely moves {name}: the slope ({:.4} ms per {}) is significant but small, {range}.",
                capitalised(f.axis.title()),
                fit.slope,
                f.axis.unit()
            )
        } else {
            format!(
                "{} does not drive {name}: the slope's 95% CI ({:.4} to {:.4} ms per {}) includes 0, {range}.",
                capitalised(f.axis.title()),
                fit.slope_ci_low,
                fit.slope_ci_high,
                f.axis.unit()
            )
        }
    }

    fn checkpoint_sizes(&self) -> Vec<(String, f64)> {
        self.rows(Operation::Checkpoint)
            .iter()
            .filter_map(|p| Some((self.analysis.label(&p.point()), p.mean_checkpoint_bytes?)))
            .collect()
    }

    fn rows(&self, op: Operation) -> Vec<&PointSummary> {
        self.analysis
            .points
            .iter()
            .filter(|p| p.operation == op)
            .collect()
    }

    /// The swept coordinates of a point, one cell per swept axis.
    fn point_cells(&self, point: &crate::model::Point) -> Vec<String> {
        self.analysis
            .swept
            .iter()
            .map(|a| a.of(point).to_string())
            .collect()
    }

    fn point_header(&self) -> Vec<String> {
        self.analysis
            .swept
            .iter()
            .map(|a| match a {
                Axis::Children => "N".to_string(),
                other => other.name().to_string(),
            })
            .collect()
    }

    /// The phase table: CRIU's phases and what lies above CRIU.
    fn phase_table(&self) -> Block {
        let mut header = vec!["engine".to_string()];
        header.extend(self.point_header());
        header.extend(
            [
                "trials",
                "checkpoint (ms)",
                "CRIU freezing",
                "CRIU frozen (downtime)",
                "memdump (incl. memwrite)",
                "memwrite",
                "above CRIU",
                "restore (ms)",
                "CRIU restore",
                "CRIU forking",
                "above CRIU",
            ]
            .map(String::from),
        );
        let share = |part: f64, whole: f64| {
            if whole > 0.0 {
                format!("{part:.1} ({:.0}%)", 100.0 * part / whole)
            } else {
                format!("{part:.1}")
            }
        };
        let rows = self
            .analysis
            .phases
            .iter()
            .map(|p| {
                let mut row = vec![p.engine.clone()];
                row.extend(self.point_cells(&p.point));
                row.extend([
                    p.n.to_string(),
                    format!("{:.1}", p.checkpoint_ms),
                    format!("{:.1}", p.freezing_ms),
                    format!("{:.1}", p.frozen_ms),
                    format!("{:.1}", p.memdump_ms),
                    format!("{:.1}", p.memwrite_ms),
                    share(p.checkpoint_above_criu_ms, p.checkpoint_ms),
                    format!("{:.1}", p.restore_ms),
                    format!("{:.1}", p.criu_restore_ms),
                    format!("{:.1}", p.forking_ms),
                    share(p.restore_above_criu_ms, p.restore_ms),
                ]);
                row
            })
            .collect();
        Block::Table(header, rows)
    }

    /// Engines in the data, from the floor (plain CRIU) up.
    fn ladder(&self) -> Vec<&'static str> {
        EngineKind::LADDER
            .map(EngineKind::name)
            .into_iter()
            .filter(|e| self.analysis.points.iter().any(|p| p.engine == *e))
            .collect()
    }

    fn mean_at(&self, engine: &str, op: Operation, point: &crate::model::Point) -> Option<f64> {
        self.analysis
            .points
            .iter()
            .find(|p| p.engine == engine && p.operation == op && p.point() == *point)
            .map(|p| p.mean_ms)
    }

    /// What each layer adds on top of the one below it, per point: the
    /// difference of the mean times of adjacent engines on the ladder.
    fn layer_table(&self) -> Block {
        let ladder = self.ladder();
        let pairs: Vec<(&str, &str)> = ladder.windows(2).map(|w| (w[1], w[0])).collect();
        let mut header = self.point_header();
        for (upper, lower) in &pairs {
            for op in Operation::ALL {
                header.push(format!("{} {upper} − {lower} (ms)", op.name()));
            }
        }
        let mut points: Vec<crate::model::Point> =
            self.analysis.points.iter().map(|p| p.point()).collect();
        points.sort_unstable();
        points.dedup();
        let rows = points
            .iter()
            .map(|point| {
                let mut row = self.point_cells(point);
                for (upper, lower) in &pairs {
                    for op in Operation::ALL {
                        row.push(
                            match (
                                self.mean_at(upper, op, point),
                                self.mean_at(lower, op, point),
                            ) {
                                (Some(u), Some(l)) => format!("{:.1}", u - l),
                                _ => "-".into(),
                            },
                        );
                    }
                }
                row
            })
            .collect();
        Block::Table(header, rows)
    }

    /// Every fit: engine, operation, axis, what was held fixed, slope.
    fn slope_table(&self) -> Block {
        let header = strings(&[
            "engine",
            "operation",
            "axis",
            "others held at",
            "ms per unit",
            "95% CI",
            "intercept (ms)",
            "R²",
            "change over the range",
        ]);
        let rows = self
            .analysis
            .fits
            .iter()
            .map(|f| {
                let at = self.analysis.label_except(&f.at, f.axis);
                vec![
                    f.engine.clone(),
                    f.operation.name().to_string(),
                    format!("{} (per {})", f.axis.name(), f.axis.unit()),
                    if at.is_empty() { "-".into() } else { at },
                    format!("{:.3}", f.fit.slope),
                    format!("{:.3} to {:.3}", f.fit.slope_ci_low, f.fit.slope_ci_high),
                    format!("{:.1}", f.fit.intercept),
                    format!("{:.3}", f.fit.r_squared),
                    format!("{:+.0}%", 100.0 * f.relative_change()),
                ]
            })
            .collect();
        Block::Table(header, rows)
    }

    /// Checkpoint size against resident memory, and throughput.
    fn derived_table(&self) -> Block {
        let mut header = vec!["engine".to_string()];
        header.extend(self.point_header());
        header.extend(
            [
                "resident memory",
                "checkpoint size",
                "size / resident",
                "throughput (MiB/s of wall time)",
                "throughput (MiB/s of CRIU memdump)",
                "share of memcpy bandwidth",
            ]
            .map(String::from),
        );
        let bandwidth = self.env.memcpy_mib_per_s;
        let rows = self
            .rows(Operation::Checkpoint)
            .iter()
            .map(|p| {
                let mut row = vec![p.engine.clone()];
                row.extend(self.point_cells(&p.point()));
                let ratio = match (p.mean_checkpoint_bytes, p.mean_rss_bytes) {
                    (Some(c), Some(r)) if r > 0.0 => format!("{:.2}", c / r),
                    _ => "-".into(),
                };
                let rate = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
                let best = p.criu_throughput_mib_s.or(p.throughput_mib_s);
                row.extend([
                    p.mean_rss_bytes.map_or("-".into(), mib),
                    p.mean_checkpoint_bytes.map_or("-".into(), mib),
                    ratio,
                    rate(p.throughput_mib_s),
                    rate(p.criu_throughput_mib_s),
                    match (best, bandwidth) {
                        (Some(t), Some(b)) if b > 0.0 => format!("{:.1}%", 100.0 * t / b),
                        _ => "-".into(),
                    },
                ]);
                row
            })
            .collect();
        Block::Table(header, rows)
    }

    /// How checkpoint size follows resident memory, over all points.
    fn size_text(&self) -> Option<String> {
        let pairs: Vec<(f64, f64)> = self
            .rows(Operation::Checkpoint)
            .iter()
            .filter_map(|p| Some((p.mean_rss_bytes?, p.mean_checkpoint_bytes?)))
            .collect();
        let (xs, ys): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
        let f = analysis::fit(&xs, &ys)?;
        Some(format!(
            "Checkpoint size against resident memory over the points: {:.3} bytes of checkpoint per resident byte (95% CI {:.3} to {:.3}), \
             plus {} fixed, R² = {:.3}. A slope near 1 means CRIU writes out what the processes hold resident, no more and no less.",
            f.slope,
            f.slope_ci_low,
            f.slope_ci_high,
            mib(f.intercept),
            f.r_squared
        ))
    }

    /// One paragraph on where the time goes, from the phase means.
    fn phase_text(&self) -> String {
        let phases = &self.analysis.phases;
        if phases.is_empty() {
            return "No trial carries CRIU's own statistics: the engine deleted CRIU's work directory \
                    (and /etc/criu/runc.conf could not redirect it), so the time cannot be split between CRIU \
                    and the layers above it."
                .into();
        }
        let total =
            |f: fn(&crate::analysis::PhaseSummary) -> f64| phases.iter().map(f).sum::<f64>();
        let ck_above = 100.0 * total(|p| p.checkpoint_above_criu_ms) / total(|p| p.checkpoint_ms);
        let rs_above = 100.0 * total(|p| p.restore_above_criu_ms) / total(|p| p.restore_ms);
        let (first, last) = (&phases[0], &phases[phases.len() - 1]);
        format!(
            "Averaged over the points, {ck_above:.0}% of the checkpoint's wall time and {rs_above:.0}% of the restore's \
             lie above CRIU (daemon, containerd, runc and client), the rest is CRIU's own work. The application was \
             frozen for {:.1} ms at {} and {:.1} ms at {}.",
            first.frozen_ms,
            self.analysis.label(&first.point),
            last.frozen_ms,
            self.analysis.label(&last.point)
        )
    }

    /// Table rows: engine, point, then checkpoint and restore mean [CI] and sd.
    fn table(&self) -> Block {
        let mut header = vec!["engine".to_string()];
        header.extend(self.point_header());
        header.extend(
            [
                "trials",
                "checkpoint mean (ms)",
                "95% CI",
                "sd",
                "restore mean (ms)",
                "95% CI",
                "sd",
                "checkpoint size",
                "failed",
            ]
            .map(String::from),
        );
        let restore = self.rows(Operation::Restore);
        let rows = self
            .rows(Operation::Checkpoint)
            .iter()
            .map(|c| {
                let r = restore
                    .iter()
                    .find(|r| r.engine == c.engine && r.point() == c.point());
                let cell = |p: Option<&&PointSummary>, f: fn(&PointSummary) -> String| {
                    p.map_or("-".to_string(), |p| f(p))
                };
                let mut row = vec![c.engine.clone()];
                row.extend(self.point_cells(&c.point()));
                row.extend([
                    c.n.to_string(),
                    format!("{:.1}", c.mean_ms),
                    format!("{:.1} to {:.1}", c.ci95_low_ms, c.ci95_high_ms),
                    format!("{:.1}", c.sd_ms),
                    cell(r, |p| format!("{:.1}", p.mean_ms)),
                    cell(r, |p| {
                        format!("{:.1} to {:.1}", p.ci95_low_ms, p.ci95_high_ms)
                    }),
                    cell(r, |p| format!("{:.1}", p.sd_ms)),
                    c.mean_checkpoint_bytes.map_or("-".into(), mib),
                    c.failed.to_string(),
                ]);
                row
            })
            .collect();
        Block::Table(header, rows)
    }

    /// "Migration": downtime, total time and bytes per method and point,
    /// and how downtime grows with memory.
    fn migration_blocks(&self) -> Vec<Block> {
        let header = strings(&[
            "engine+method",
            "N",
            "MiB per process",
            "n",
            "downtime (ms)",
            "95% CI",
            "total (ms)",
            "MB on the link",
        ]);
        let rows = self
            .analysis
            .migrations
            .iter()
            .map(|m| {
                vec![
                    m.engine.clone(),
                    m.children.to_string(),
                    m.memory_mib.to_string(),
                    m.downtime.n.to_string(),
                    format!("{:.1}", m.downtime.mean),
                    format!("{:.1}..{:.1}", m.downtime.ci_low, m.downtime.ci_high),
                    format!("{:.1}", m.total.mean),
                    format!("{:.1}", m.bytes_mean / 1e6),
                ]
            })
            .collect();
        let growth: Vec<String> = self
            .analysis
            .downtime_fits
            .iter()
            .map(|f| {
                format!(
                    "{}: downtime grows by {:.0} ms per GiB (from {:.0} ms)",
                    f.engine, f.ms_per_gib, f.intercept_ms
                )
            })
            .collect();
        let mut out = vec![
            Block::Heading("Migration".into()),
            Block::Para(
                "Every trial moved its container to a throwaway host (a network namespace joined by a veth pair, mutual TLS) \
                 and the destination checked its processes, memory, threads and files. Downtime runs on the source's clock \
                 from the checkpoint request to the destination's \"restored\"; total until the source is gone and the last \
                 page has arrived (they differ for post-copy); bytes are the link's counters, both directions. In this \
                 section and in the tables above, a method's checkpoint is its dump and its restore is the destination's."
                    .into(),
            ),
            Block::Table(header, rows),
        ];
        if !growth.is_empty() {
            out.push(Block::Bullets(growth));
        }
        out
    }

    /// "Steadiness": how each engine's times moved over the run, a row per
    /// engine and operation, and the figure.
    fn steadiness_blocks(&self) -> Vec<Block> {
        let mut out = vec![
            Block::Heading("Steadiness".into()),
            Block::Para(format!(
                "Whether the machine stayed the same over the run: each measured trial's time divided by its point's mean \
                 (1.0: as fast as its point on average), against the trial's place among its engine's measured trials in the \
                 order they started, and a least-squares line through them. The drift is the line's slope per 100 trials; \
                 the change over the run is what it rises from the first trial to the last. Times drift when the slope's 95% \
                 confidence interval excludes 0 and the change is at least {:.0}%; with fewer than {} trials there is no \
                 verdict. Drift that a shuffled order spreads over every point widens their intervals; a sequential order \
                 hides it in the points' means. Beside each trial ckpt records the host's state (the `host_` columns of the \
                 records); the column whose correlation with the relative time is largest is named when |r| >= {:.1} \
                 (the daemons' CPU times only ever grow, so they follow the run's order whatever the cause).",
                drift::NOTABLE_CHANGE_PCT,
                drift::MIN_TRIALS,
                drift::MOVED_WITH_R
            )),
            self.drift_table(),
        ];
        if let Some(svg) = self.drift_svg {
            let number = self.figures.len() + 1 + usize::from(self.phases_svg.is_some());
            out.push(Block::Figure(
                crate::output::plot::DRIFT.into(),
                format!("Fig {number} - each measured trial's time over its point's mean, in the order the trials ran{} (dashed: the fitted lines; solid black: 1.0, the point's mean).", self.drift_dots_text()),
                svg.to_string(),
            ));
        }
        out
    }

    /// What a dot of the drift figure is when it is not one trial.
    fn drift_dots_text(&self) -> String {
        match crate::output::plot::drift_run_length(&self.analysis.drift) {
            1 => String::new(),
            run => format!("; each dot is the mean of {run} consecutive trials"),
        }
    }

    /// A row per engine and operation: drift, its interval, the change
    /// over the run, the host column that moved with it, the verdict.
    fn drift_table(&self) -> Block {
        let header = strings(&DRIFT_COLUMNS);
        let rows = self
            .analysis
            .drift
            .iter()
            .map(|d| {
                let mut row = vec![
                    d.engine.clone(),
                    d.operation.name().to_string(),
                    d.relative.len().to_string(),
                ];
                row.extend(match &d.fit {
                    Some(f) => [
                        format!("{:+.1}", f.per_100_pct),
                        format!(
                            "{:+.1} to {:+.1}",
                            f.per_100_ci_low_pct, f.per_100_ci_high_pct
                        ),
                        format!("{:+.1}%", f.change_pct),
                    ],
                    None => ["-", "-", "-"].map(String::from),
                });
                row.push(
                    d.moved_with()
                        .map_or("-".into(), |h| format!("{} (r = {:.2})", h.column, h.r)),
                );
                row.push(drift_verdict(d).into());
                row
            })
            .collect();
        Block::Table(header, rows)
    }

    /// The figures against each axis (and the heat map), numbered.
    /// Each figure goes under the section it belongs to; they are numbered
    /// in the order `plot` made them.
    fn figure_blocks(&self, in_section: impl Fn(&Figure) -> bool) -> Vec<Block> {
        self.figures
            .iter()
            .enumerate()
            .filter(|(_, f)| in_section(f))
            .map(|(i, f)| {
                Block::Figure(
                    f.stem.clone(),
                    format!("Fig {} - {}.", i + 1, f.caption),
                    f.svg.clone(),
                )
            })
            .collect()
    }

    /// "What drives the time": one verdict per fit.
    fn drivers(&self) -> Vec<String> {
        self.analysis.fits.iter().map(|f| self.verdict(f)).collect()
    }

    /// The verdicts in one sentence per axis, for checkpoint time: on
    /// which engines (and fixed values) the axis drives it, and on which
    /// it does not.
    fn driver_summary(&self) -> Vec<String> {
        self.analysis
            .swept
            .iter()
            .map(|axis| {
                let fits: Vec<&OperationFit> = self
                    .analysis
                    .fits
                    .iter()
                    .filter(|f| f.axis == *axis && f.operation == Operation::Checkpoint)
                    .collect();
                let drives = |f: &&&OperationFit| {
                    (f.fit.slope_ci_low > 0.0 || f.fit.slope_ci_high < 0.0)
                        && f.relative_change().abs() >= NEGLIGIBLE
                };
                let yes = fits.iter().filter(drives).count();
                let verdict = match (yes, fits.len()) {
                    (_, 0) => "could not be judged (too few trials for a fit)".to_string(),
                    (0, n) => format!("does not drive checkpoint time (0 of {n} fits)"),
                    (y, n) if y == n => format!("drives checkpoint time ({n} of {n} fits)"),
                    (y, n) => {
                        format!("drives checkpoint time in {y} of {n} fits, not in the others")
                    }
                };
                format!("In short: {} {verdict}.", axis.title())
            })
            .collect()
    }

    /// The whole report, in order.
    fn blocks(&self) -> Vec<Block> {
        let mut out = vec![
            Block::Heading("System details".into()),
            self.system_block(),
            Block::Heading("Method".into()),
            Block::Para(self.method()),
        ];
        if !self.runs.is_empty() {
            out.push(self.runs_table());
        }
        out.extend([Block::Heading("Results".into()), self.table()]);
        out.extend(self.figure_blocks(|f| f.stem != crate::output::plot::SIZE));
        if !self.analysis.fits.is_empty() {
            out.push(Block::Heading("What drives the time".into()));
            out.push(Block::Para(format!(
                "For each swept parameter, a least-squares line of time against it with the other parameters held fixed. \
                 A parameter drives the time when the slope's 95% confidence interval excludes 0 and the measured mean time changes \
                 by at least {:.0}% over the swept range.",
                100.0 * NEGLIGIBLE
            )));
            out.push(Block::Bullets(self.driver_summary()));
            out.push(Block::Bullets(self.drivers()));
            out.push(self.slope_table());
        }
        out.push(Block::Heading("Checkpoint size and throughput".into()));
        if let Some(text) = self.size_text() {
            out.push(Block::Para(text));
        }
        out.push(self.derived_table());
        out.extend(self.figure_blocks(|f| f.stem == crate::output::plot::SIZE));
        out.push(Block::Heading("Where the time goes".into()));
        out.push(Block::Para(self.phase_text()));
        if let Some(svg) = self.phases_svg {
            out.push(self.phase_table());
            out.push(Block::Figure(
                crate::output::plot::PHASES.into(),
                format!(
                    "Fig {} - CRIU's phases stacked under each operation's mean wall time (ms).",
                    self.figures.len() + 1
                ),
                svg.to_string(),
            ));
        }
        if self.ladder().len() > 1 {
            out.push(Block::Heading("Cost of each layer".into()));
            out.push(Block::Para("What each engine adds on top of the one below it (difference of mean times; plain CRIU on a process tree is the floor):".into()));
            out.push(self.layer_table());
        }
        if !self.analysis.migrations.is_empty() {
            out.extend(self.migration_blocks());
        }
        if !self.analysis.drift.is_empty() {
            out.extend(self.steadiness_blocks());
        }
        out.push(Block::Heading("Observations".into()));
        out.push(Block::Numbered(self.observations()));
        out
    }

    pub(crate) fn markdown(&self) -> String {
        let mut md = format!("# {}\n", self.title());
        for block in self.blocks() {
            md.push('\n');
            match block {
                Block::Heading(t) => {
                    let _ = writeln!(md, "## {t}");
                }
                Block::Para(t) => {
                    let _ = writeln!(md, "{t}");
                }
                Block::Bullets(items) => items.iter().for_each(|i| {
                    let _ = writeln!(md, "- {i}");
                }),
                Block::Numbered(items) => items.iter().enumerate().for_each(|(n, i)| {
                    let _ = writeln!(md, "{}. {i}", n + 1);
                }),
                Block::Table(header, rows) => md.push_str(&markdown_table(&header, &rows)),
                Block::Figure(stem, caption, _) => {
                    let _ = writeln!(md, "![{caption}]({stem}.svg)\n\n{caption}");
                }
            }
        }
        md
    }

    pub(crate) fn html(&self) -> String {
        let mut h = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>ckpt: {}</title><style>\
             body{{font-family:sans-serif;max-width:1000px;margin:2em auto;line-height:1.45;color:#222}}\
             table{{border-collapse:collapse;font-size:0.9em}}td,th{{border:1px solid #bbb;padding:3px 8px;text-align:right}}\
             th{{background:#eee}}figure{{margin:1em 0}}</style></head><body>\n<h1>{}</h1>\n",
            escape(&self.title()),
            escape(&self.title())
        );
        for block in self.blocks() {
            match block {
                Block::Heading(t) => {
                    let _ = writeln!(h, "<h2>{}</h2>", escape(&t));
                }
                Block::Para(t) => {
                    let _ = writeln!(h, "<p>{}</p>", escape(&t));
                }
                Block::Bullets(items) => h.push_str(&html_list("ul", &items)),
                Block::Numbered(items) => h.push_str(&html_list("ol", &items)),
                Block::Table(header, rows) => {
                    let header: Vec<&str> = header.iter().map(String::as_str).collect();
                    h.push_str(&html_table(&header, &rows));
                }
                // The SVG is our own output (plotters escapes its text), so
                // it is inlined as is: the page needs no other file.
                Block::Figure(stem, caption, svg) => {
                    let _ = writeln!(
                        h,
                        "<figure id=\"{}\">{svg}<figcaption>{}</figcaption></figure>",
                        escape(&stem),
                        escape(&caption)
                    );
                }
            }
        }
        h.push_str("</body></html>\n");
        h
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

/// One engine's operation in a word or three.
fn drift_verdict(d: &Drift) -> &'static str {
    match &d.fit {
        None => "too few trials to tell",
        Some(f) if f.drifting => "drifting",
        Some(_) => "no drift detected",
    }
}

/// What the run's steadiness says, in sentences that start in lower case
/// (they also end `ckpt: warning: ` on the terminal): one per drifting
/// engine and operation; or that times were steady; or that there were
/// too few trials to tell; nothing without measured trials.
pub(crate) fn steadiness_sentences(drifts: &[Drift]) -> Vec<String> {
    let drifting: Vec<String> = drifts
        .iter()
        .filter(|d| d.drifting())
        .filter_map(drift_sentence)
        .collect();
    if !drifting.is_empty() {
        return drifting;
    }
    if drifts.iter().any(|d| d.fit.is_some()) {
        vec![format!(
            "times were steady over the run (no drift beyond {:.0}% detected)",
            drift::NOTABLE_CHANGE_PCT
        )]
    } else if drifts.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "too few measured trials per engine (fewer than {}) to tell whether times drifted over the run",
            drift::MIN_TRIALS
        )]
    }
}

/// "the machine was not steady: docker checkpoint times rose by 26% ...".
fn drift_sentence(d: &Drift) -> Option<String> {
    let f = d.fit.as_ref()?;
    let direction = if f.change_pct > 0.0 { "rose" } else { "fell" };
    let moved = match d.moved_with() {
        Some(h) => format!("; {} moved with it (r = {:.2})", h.column, h.r),
        None if !d.host.is_empty() => format!(
            "; none of the recorded host state moved with it (|r| < {:.1})",
            drift::MOVED_WITH_R
        ),
        None => String::new(),
    };
    Some(format!(
        "the machine was not steady: {} {} times {direction} by {:.0}% over the run ({:+.1}% per 100 trials, 95% CI {:+.1}..{:+.1}){moved}",
        d.engine,
        d.operation.name(),
        f.change_pct.abs(),
        f.per_100_pct,
        f.per_100_ci_low_pct,
        f.per_100_ci_high_pct
    ))
}

/// How strongly an engine's checkpoint and restore times go together.
fn correlation_sentence(engine: &str, r: f64) -> String {
    let strength = match r.abs() {
        x if x >= 0.7 => "strongly",
        x if x >= 0.4 => "moderately",
        _ => "weakly",
    };
    // A sweep makes both times grow with the same parameters, so a
    // correlation says little about single trials; the sentence says so.
    let why = if r >= 0.4 {
        "; much of this is their shared dependence on the swept parameters, not restore following checkpoint trial by trial"
    } else {
        ""
    };
    format!(
        "{engine}: checkpoint and restore times are {strength} correlated across trials (Pearson r = {r:.3}){why}."
    )
}

fn html_list(tag: &str, items: &[String]) -> String {
    let mut h = format!("<{tag}>\n");
    for i in items {
        let _ = writeln!(h, "<li>{}</li>", escape(i));
    }
    let _ = writeln!(h, "</{tag}>");
    h
}

fn markdown_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut md = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for row in rows {
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
    md
}

fn html_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut h = String::from("<table>\n<tr>");
    for c in header {
        let _ = write!(h, "<th>{}</th>", escape(c));
    }
    h.push_str("</tr>\n");
    for row in rows {
        h.push_str("<tr>");
        for c in row {
            let _ = write!(h, "<td>{}</td>", escape(c));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    h
}

/// A table's header from its titles.
fn strings(titles: &[&str]) -> Vec<String> {
    titles.iter().map(|t| t.to_string()).collect()
}

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Point;
    use crate::sweep::plan::{Order, TrialSpec};
    use crate::sweep::records::{Status, TrialRecord};

    /// Checkpoint time grows 10 ms per MiB of memory and ignores the
    /// filler; a little noise so that the intervals are honest.
    fn records() -> Vec<TrialRecord> {
        let mut out = Vec::new();
        for memory in [0u32, 100, 200] {
            for filler in [0u32, 500, 1000] {
                for (rep, noise) in [-2.0, 0.0, 2.0].into_iter().enumerate() {
                    let point = Point {
                        children: 1,
                        memory_mib: memory,
                        filler_mib: filler,
                        ..Point::default()
                    };
                    let spec = TrialSpec {
                        index: out.len(),
                        engine: 0,
                        point,
                        repetition: rep as u32,
                        warmup: false,
                        method: None,
                    };
                    let ms = 100.0 + 10.0 * f64::from(memory) + noise;
                    out.push(TrialRecord {
                        checkpoint_ms: Some(ms),
                        restore_ms: Some(ms),
                        checkpoint_bytes: Some(u64::from(memory) << 20),
                        rss_bytes: Some((u64::from(memory) + 1) << 20),
                        image_bytes: Some(u64::from(filler) << 20),
                        status: Status::Ok,
                        verified: true,
                        ..TrialRecord::new("r", &spec, "docker")
                    });
                }
            }
        }
        out
    }

    /// The plan that made `records`.
    fn plan() -> SweepPlan {
        SweepPlan {
            engines: vec![EngineKind::Docker],
            children: vec![1],
            memory_mib: vec![0, 100, 200],
            threads: vec![0],
            files: vec![0],
            filler_mib: vec![0, 500, 1000],
            workload: None,
            repeat: 3,
            warmup: 0,
            order: Order::Shuffled,
            network: crate::model::Network::Disabled,
            seed: 1,
            migrate: Vec::new(),
        }
    }

    #[test]
    fn says_what_drives_the_time_and_what_does_not() {
        let analysis = crate::analysis::analyse(&records());
        assert_eq!(analysis.swept, vec![Axis::MemoryMib, Axis::FillerMib]);
        let plan = plan();
        let env = Environment::default();
        let report = bare(&plan, &env, &analysis);
        let drivers = report.drivers();
        let memory: Vec<&String> = drivers.iter().filter(|d| d.starts_with("Memory")).collect();
        let filler: Vec<&String> = drivers
            .iter()
            .filter(|d| d.starts_with("Image filler"))
            .collect();
        assert_eq!((memory.len(), filler.len()), (6, 6), "{drivers:#?}");
        assert!(
            memory
                .iter()
                .all(|d| d.contains(" drives ") && d.contains("10.000 ms per MiB")),
            "{memory:#?}"
        );
        assert!(
            filler.iter().all(|d| d.contains("does not drive")),
            "{filler:#?}"
        );
        let md = report.markdown();
        assert!(md.contains("| docker | 100 | 500 |"), "{md}");
        assert!(
            md.contains("1.000 bytes of checkpoint per resident byte"),
            "{md}"
        );
        // Both renderings come from the same blocks.
        let html = report.html();
        assert!(html.contains("<h2>What drives the time</h2>"));
        assert!(html.contains(&escape(&drivers[0])));
        // The method names how Docker's containers were networked.
        assert!(md.contains("networking disabled"), "{md}");
        let none = SweepPlan {
            network: crate::model::Network::None,
            ..plan.clone()
        };
        let report = Report {
            plan: &none,
            ..report
        };
        assert!(report.method().contains("`--network none`"));
    }

    /// A report without figures.
    fn bare<'a>(plan: &'a SweepPlan, env: &'a Environment, analysis: &'a Analysis) -> Report<'a> {
        Report {
            plan,
            env,
            runs: &[],
            analysis,
            figures: &[],
            phases_svg: None,
            drift_svg: None,
        }
    }

    /// The report of `records` with the seed's plan, in Markdown.
    fn markdown_of(records: &[TrialRecord]) -> String {
        let analysis = crate::analysis::analyse(records);
        let plan = SweepPlan {
            children: vec![1, 5, 10, 15, 20],
            memory_mib: vec![0],
            filler_mib: vec![0],
            repeat: 12,
            ..plan()
        };
        let env = Environment::default();
        let report = Report {
            drift_svg: Some("<svg/>"),
            ..bare(&plan, &env, &analysis)
        };
        report.markdown()
    }

    #[test]
    fn warns_about_drift_and_names_the_host_column_that_moved_with_it() {
        use crate::analysis::drift::tests::records as run;
        let steady = markdown_of(&run(60, |_| 1.0));
        assert!(steady.contains("## Steadiness"), "{steady}");
        assert!(
            steady.contains("Times were steady over the run (no drift beyond 5% detected)."),
            "{steady}"
        );
        assert!(!steady.contains("not steady"), "{steady}");
        assert!(steady.contains("](drift.svg)"), "{steady}");
        assert!(
            !steady.contains("consecutive"),
            "a dot is a trial: {steady}"
        );
        let long = markdown_of(&run(1000, |_| 1.0));
        assert!(
            long.contains("each dot is the mean of 3 consecutive trials"),
            "{long}"
        );

        let rising = markdown_of(&run(60, |x| 1.0 + 0.3 * x));
        let sentence = rising
            .lines()
            .find(|l| l.contains("The machine was not steady: docker checkpoint times rose by 2"))
            .unwrap_or_else(|| panic!("{rising}"));
        assert!(
            sentence.contains("per 100 trials, 95% CI +")
                && sentence.ends_with("); host_mounts moved with it (r = 0.99)."),
            "{sentence}"
        );
        assert!(
            rising.contains("| docker | checkpoint | 60 | +4"),
            "{rising}"
        );
        assert!(rising.contains("| drifting |"), "{rising}");

        let few = markdown_of(&run(7, |x| 1.0 + 0.3 * x));
        assert!(few.contains("too few trials to tell"), "{few}");
        assert!(few.contains("Too few measured trials per engine"), "{few}");
        assert!(!few.contains("not steady"), "{few}");
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            escape("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
