//! report.md and a self-contained report.html in the seed's structure:
//! system details, method, results table, figures, what drives the time,
//! and observations written from the numbers. The report is built once as
//! a list of blocks and rendered twice (Markdown, HTML), so both always
//! say the same. Everything here reads the analysis, never an engine.

mod drivers;
mod method;
mod migration;
mod observations;
mod phases;
mod render;
mod results;
mod steadiness;

use crate::analysis::{Analysis, Operation, PointSummary};
use crate::host::envinfo::Environment;
use crate::model::Axis;
use crate::output::plot::Figure;
use crate::sweep::plan::SweepPlan;

pub(crate) use steadiness::steadiness_sentences;

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
    /// Every request of one probed move per method and point.
    pub stall: Option<&'a crate::output::stall::StallFigure>,
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
        if let Some(note) = self.lazy_throughput_note() {
            out.push(Block::Para(note));
        }
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
}

/// A table's header from its titles.
fn strings(titles: &[&str]) -> Vec<String> {
    titles.iter().map(|t| t.to_string()).collect()
}

/// What the sections' tests share: a plan and a report without figures.
#[cfg(test)]
mod fixtures {
    use super::Report;
    use crate::analysis::Analysis;
    use crate::host::envinfo::Environment;
    use crate::model::EngineKind;
    use crate::sweep::plan::{Order, SweepPlan};

    /// The plan that made `drivers::tests::records`.
    pub(super) fn plan() -> SweepPlan {
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
            link_rate: None,
            probe: None,
            probe_rto_min_ms: None,
            tcp_established: false,
            writable_rootfs: false,
        }
    }

    /// A report without figures.
    pub(super) fn bare<'a>(
        plan: &'a SweepPlan,
        env: &'a Environment,
        analysis: &'a Analysis,
    ) -> Report<'a> {
        Report {
            plan,
            env,
            runs: &[],
            analysis,
            figures: &[],
            phases_svg: None,
            stall: None,
            drift_svg: None,
        }
    }
}
