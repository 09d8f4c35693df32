//! report.md and a self-contained report.html in the seed's structure:
//! system details, method, results table, figure, and observations written
//! from the numbers. Everything here reads the analysis, never an engine.

use std::fmt::Write as _;

use crate::analysis::{Analysis, Operation, PointSummary};
use crate::envinfo::Environment;
use crate::plan::SweepPlan;

pub const REPORT_MD: &str = "report.md";
pub const REPORT_HTML: &str = "report.html";

/// Engines from the floor up: each adds layers on top of the one before.
const LADDER: [&str; 4] = ["criu", "runc", "podman", "docker"];

/// The parts of a report, rendered as Markdown or HTML.
pub struct Report<'a> {
    pub plan: &'a SweepPlan,
    pub env: &'a Environment,
    pub analysis: &'a Analysis,
}

fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / 1048576.0)
}

impl Report<'_> {
    fn system(&self) -> Vec<(&'static str, String)> {
        let e = self.env;
        let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
        vec![
            (
                "CPU",
                format!(
                    "{} ({} cores)",
                    or(&e.cpu_model),
                    e.cores.map_or("?".into(), |c| c.to_string())
                ),
            ),
            (
                "Memory",
                e.memory_bytes.map_or("unknown".into(), |b| {
                    format!("{:.1} GiB", b as f64 / 1073741824.0)
                }),
            ),
            ("Operating system", or(&e.distro)),
            ("Kernel", or(&e.kernel)),
            (
                "Docker",
                format!("{} (API {})", or(&e.docker), or(&e.docker_api)),
            ),
            ("containerd", or(&e.containerd)),
            ("runc", or(&e.runc)),
            ("CRIU", or(&e.criu)),
            ("Podman", or(&e.podman)),
            ("ckpt", e.ckpt.clone()),
        ]
    }

    fn method(&self) -> String {
        let p = self.plan;
        let grid: Vec<String> = p.children.iter().map(u32::to_string).collect();
        let order = match p.order {
            crate::plan::Order::Sequential => "sequential".to_string(),
            crate::plan::Order::Shuffled => format!("shuffled (seed {})", p.seed),
        };
        format!(
            "A static program forks N child processes in a fresh `FROM scratch` container (engines: {}; for criu a plain process tree on the host); \
             each child prints its pid every second. For each N in {{{}}}, {} measured trial(s) after {} warm-up trial(s) \
             (recorded, excluded from the statistics), in {} order. One trial: start the container, wait for the \
             program's ready line, checkpoint (timed, wall time seen by the client), stop (timed), restore from the \
             checkpoint (timed), check that the same N+1 pids are alive after the restore, remove the container. \
             Intervals are 95% confidence intervals of the mean (Student t).",
            p.engines.join(", "),
            grid.join(", "),
            p.repeat,
            p.warmup,
            order
        )
    }

    /// Observations written from the numbers, in the seed's order.
    pub fn observations(&self) -> Vec<String> {
        let a = self.analysis;
        let mut out = Vec::new();
        match a.image_sizes.as_slice() {
            [] => {}
            [one] => out.push(format!(
                "The image size stays constant ({}): the number of child processes belongs to the container, not the image.",
                mib(*one as f64)
            )),
            many => out.push(format!(
                "The image size varied between {} and {}.",
                mib(many[0] as f64),
                mib(many[many.len() - 1] as f64)
            )),
        }
        for f in &a.fits {
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
            out.push(format!(
                "{} {} time {growth} with the number of processes: {:.2} ms per process (95% CI {:.2} to {:.2}), \
                 intercept {:.1} ms, R² = {:.3}; {shape}.",
                f.engine,
                f.operation.name(),
                fit.slope,
                fit.slope_ci_low,
                fit.slope_ci_high,
                fit.intercept,
                fit.r_squared
            ));
        }
        for (engine, r) in &a.correlation {
            let strength = match r.abs() {
                x if x >= 0.7 => "strongly",
                x if x >= 0.4 => "moderately",
                _ => "weakly",
            };
            out.push(format!(
                "{engine}: checkpoint and restore times are {strength} correlated across trials (Pearson r = {r:.3}); \
                 much of this is their shared dependence on N, not restore following checkpoint trial by trial."
            ));
        }
        if a.off_fit.is_empty() {
            out.push(
                "No point lies off its fitted line beyond its own confidence interval.".into(),
            );
        }
        for o in &a.off_fit {
            out.push(format!(
                "Anomaly: {} {} at N = {} averaged {:.1} ms where a robust (Theil-Sen) line through the other points predicts {:.1} ms.",
                o.engine,
                o.operation.name(),
                o.children,
                o.mean_ms,
                o.predicted_ms
            ));
        }
        let outliers: usize = a.points.iter().map(|p| p.outliers).sum();
        if outliers > 0 {
            out.push(format!("{outliers} single trial time(s) were outliers within their point (MAD rule); they are kept in the statistics and shown here."));
        }
        out.push(format!(
            "{} trial(s) in all ({} warm-up): {} failed, {} ran but failed verification; {} restore retr(ies) after containerd's transient \
             'content already exists' error and were retried (after 100, 400 and 1500 ms).",
            a.trials, a.warmups, a.failed, a.unverified, a.restore_retries
        ));
        if let Some(o) = &a.overhead {
            out.push(format!(
                "ckpt's own time per trial (outside engine calls and waits): mean {:.2} ms, max {:.2} ms.",
                o.mean, o.max
            ));
        }
        if let (Some(first), Some(last)) = (
            self.checkpoint_sizes().first(),
            self.checkpoint_sizes().last(),
        ) {
            out.push(format!(
                "The checkpoint on disk grows from {} at N = {} to {} at N = {}.",
                mib(first.1),
                first.0,
                mib(last.1),
                last.0
            ));
        }
        out
    }

    fn checkpoint_sizes(&self) -> Vec<(u32, f64)> {
        self.rows(Operation::Checkpoint)
            .iter()
            .filter_map(|p| Some((p.children, p.mean_checkpoint_bytes?)))
            .collect()
    }

    fn rows(&self, op: Operation) -> Vec<&PointSummary> {
        self.analysis
            .points
            .iter()
            .filter(|p| p.operation == op)
            .collect()
    }

    /// The phase table: CRIU's phases and what lies above CRIU.
    fn phase_table(&self) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let header = vec![
            "engine",
            "N",
            "trials",
            "checkpoint (ms)",
            "CRIU freezing",
            "CRIU frozen (downtime)",
            "memdump",
            "memwrite",
            "above CRIU",
            "restore (ms)",
            "CRIU restore",
            "CRIU forking",
            "above CRIU",
        ];
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
                vec![
                    p.engine.clone(),
                    p.children.to_string(),
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
                ]
            })
            .collect();
        (header, rows)
    }

    /// Engines in the data, from the floor (plain CRIU) up.
    fn ladder(&self) -> Vec<&'static str> {
        LADDER
            .iter()
            .copied()
            .filter(|e| self.analysis.points.iter().any(|p| p.engine == *e))
            .collect()
    }

    fn mean_at(&self, engine: &str, op: Operation, children: u32) -> Option<f64> {
        self.analysis
            .points
            .iter()
            .find(|p| p.engine == engine && p.operation == op && p.children == children)
            .map(|p| p.mean_ms)
    }

    /// What each layer adds on top of the one below it, per N: the
    /// difference of the mean times of adjacent engines on the ladder.
    fn layer_table(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let ladder = self.ladder();
        let pairs: Vec<(&str, &str)> = ladder.windows(2).map(|w| (w[1], w[0])).collect();
        let mut header = vec!["N".to_string()];
        for (upper, lower) in &pairs {
            for op in Operation::ALL {
                header.push(format!("{} {upper} − {lower} (ms)", op.name()));
            }
        }
        let mut ns: Vec<u32> = self.analysis.points.iter().map(|p| p.children).collect();
        ns.sort_unstable();
        ns.dedup();
        let rows = ns
            .iter()
            .map(|&n| {
                let mut row = vec![n.to_string()];
                for (upper, lower) in &pairs {
                    for op in Operation::ALL {
                        row.push(
                            match (self.mean_at(upper, op, n), self.mean_at(lower, op, n)) {
                                (Some(u), Some(l)) => format!("{:.1}", u - l),
                                _ => "-".into(),
                            },
                        );
                    }
                }
                row
            })
            .collect();
        (header, rows)
    }

    /// Each engine's per-process slope and intercept.
    fn slope_table(&self) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let header = vec![
            "engine",
            "operation",
            "ms per process",
            "95% CI",
            "intercept (ms)",
            "R²",
        ];
        let rows = self
            .analysis
            .fits
            .iter()
            .map(|f| {
                vec![
                    f.engine.clone(),
                    f.operation.name().to_string(),
                    format!("{:.2}", f.fit.slope),
                    format!("{:.2} to {:.2}", f.fit.slope_ci_low, f.fit.slope_ci_high),
                    format!("{:.1}", f.fit.intercept),
                    format!("{:.3}", f.fit.r_squared),
                ]
            })
            .collect();
        (header, rows)
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
             frozen for {:.1} ms at N = {} and {:.1} ms at N = {}.",
            first.frozen_ms, first.children, last.frozen_ms, last.children
        )
    }

    /// Table rows: engine, N, then checkpoint and restore mean [CI] and sd.
    fn table(&self) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let header = vec![
            "engine",
            "N",
            "trials",
            "checkpoint mean (ms)",
            "95% CI",
            "sd",
            "restore mean (ms)",
            "95% CI",
            "sd",
            "checkpoint size",
            "failed",
        ];
        let restore = self.rows(Operation::Restore);
        let rows = self
            .rows(Operation::Checkpoint)
            .iter()
            .map(|c| {
                let r = restore
                    .iter()
                    .find(|r| r.engine == c.engine && r.children == c.children);
                let cell = |p: Option<&&PointSummary>, f: fn(&PointSummary) -> String| {
                    p.map_or("-".to_string(), |p| f(p))
                };
                vec![
                    c.engine.clone(),
                    c.children.to_string(),
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
                ]
            })
            .collect();
        (header, rows)
    }

    pub fn markdown(&self) -> String {
        let mut md = String::from("# Checkpoint and restore time against the number of child processes\n\n## System details\n\n");
        for (k, v) in self.system() {
            let _ = writeln!(md, "- {k}: {v}");
        }
        let _ = write!(md, "\n## Method\n\n{}\n\n## Results\n\n", self.method());
        let (header, rows) = self.table();
        let _ = writeln!(md, "| {} |", header.join(" | "));
        let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
        for row in rows {
            let _ = writeln!(md, "| {} |", row.join(" | "));
        }
        md.push_str("\n![Checkpoint and restore time against the number of child processes](figure.svg)\n\nFig 1 - means with 95% confidence intervals and the least-squares lines (dashed).\n\n## Where the time goes\n\n");
        let _ = writeln!(md, "{}\n", self.phase_text());
        let (header, rows) = self.phase_table();
        if !rows.is_empty() {
            let _ = writeln!(md, "| {} |", header.join(" | "));
            let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
            for row in rows {
                let _ = writeln!(md, "| {} |", row.join(" | "));
            }
            md.push_str("\n![CRIU's phases under the wall time](phases.svg)\n\nFig 2 - CRIU's phases stacked under each operation's mean wall time (ms).\n");
        }
        if self.ladder().len() > 1 {
            md.push_str("\n## Cost of each layer\n\nWhat each engine adds on top of the one below it (difference of mean times; plain CRIU on a process tree is the floor):\n\n");
            let (header, rows) = self.layer_table();
            md.push_str(&markdown_table(&header, &rows));
            md.push_str("\nEach engine's cost per process (least-squares fit):\n\n");
            let (header, rows) = self.slope_table();
            let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
            md.push_str(&markdown_table(&header, &rows));
        }
        md.push_str("\n## Observations\n\n");
        for (i, o) in self.observations().iter().enumerate() {
            let _ = writeln!(md, "{}. {o}", i + 1);
        }
        md
    }

    pub fn html(&self, svg: &str, phases_svg: Option<&str>) -> String {
        let mut h = String::from(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>ckpt: checkpoint and restore time</title><style>\
             body{font-family:sans-serif;max-width:1000px;margin:2em auto;line-height:1.45;color:#222}\
             table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}\
             th{background:#eee}figure{margin:1em 0}</style></head><body>\n\
             <h1>Checkpoint and restore time against the number of child processes</h1>\n<h2>System details</h2>\n<ul>\n",
        );
        for (k, v) in self.system() {
            let _ = writeln!(h, "<li>{}: {}</li>", escape(k), escape(&v));
        }
        let _ = write!(
            h,
            "</ul>\n<h2>Method</h2>\n<p>{}</p>\n<h2>Results</h2>\n<table>\n<tr>",
            escape(&self.method())
        );
        let (header, rows) = self.table();
        for c in header {
            let _ = write!(h, "<th>{}</th>", escape(c));
        }
        h.push_str("</tr>\n");
        for row in rows {
            h.push_str("<tr>");
            for c in row {
                let _ = write!(h, "<td>{}</td>", escape(&c));
            }
            h.push_str("</tr>\n");
        }
        // The SVG is our own output (plotters escapes its text), so it is
        // inlined as is: the page needs no other file.
        let _ = writeln!(
            h,
            "<figure id=\"figure\">{svg}<figcaption>Fig 1 - means with 95% confidence intervals and the least-squares lines (dashed).</figcaption></figure>"
        );
        let _ = write!(
            h,
            "<h2>Where the time goes</h2>\n<p>{}</p>\n",
            escape(&self.phase_text())
        );
        let (header, rows) = self.phase_table();
        if !rows.is_empty() {
            h.push_str(&html_table(&header, &rows));
        }
        if let Some(phases) = phases_svg {
            let _ = writeln!(
                h,
                "<figure id=\"phases\">{phases}<figcaption>Fig 2 - CRIU's phases stacked under each operation's mean wall time (ms).</figcaption></figure>"
            );
        }
        if self.ladder().len() > 1 {
            h.push_str("<h2>Cost of each layer</h2>\n<p>What each engine adds on top of the one below it (difference of mean times; plain CRIU on a process tree is the floor):</p>\n");
            let (header, rows) = self.layer_table();
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            h.push_str(&html_table(&header, &rows));
            h.push_str("<p>Each engine's cost per process (least-squares fit):</p>\n");
            let (header, rows) = self.slope_table();
            h.push_str(&html_table(&header, &rows));
        }
        h.push_str("<h2>Observations</h2>\n<ol>\n");
        for o in self.observations() {
            let _ = writeln!(h, "<li>{}</li>", escape(&o));
        }
        h.push_str("</ol>\n</body></html>\n");
        h
    }
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

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(
            escape("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
