//! One report from the runs of several hosts (`ckpt report DIR1 DIR2 ...
//! --output DIR`). A host is a category beside the engine: each record's
//! engine is labelled `<engine>@<host>`, so every host has its own points,
//! fits, lines in the figures and drift, and the analysis and the figures
//! need not know about hosts. The runs must have measured the same thing:
//! the same swept axes, the same values on the axes held fixed, the same
//! workload and network; engines, values along the swept axes, repetitions
//! and order may differ.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::report::Run;
use crate::analysis::Analysis;
use crate::host::envinfo::Environment;
use crate::model::{Axis, Network};
use crate::sweep::plan::SweepPlan;
use crate::sweep::records::TrialRecord;
use crate::sweep::results::ResultsDir;

/// One results directory to merge.
struct Source {
    dir: PathBuf,
    plan: SweepPlan,
    env: Environment,
    records: Vec<TrialRecord>,
}

impl Source {
    fn read(dir: &Path) -> Result<Source> {
        let results = ResultsDir::new(dir);
        Ok(Source {
            plan: results.read_plan()?,
            env: results.read_env(),
            records: super::read_records(&results)?,
            dir: dir.to_path_buf(),
        })
    }

    /// The directory's own name, which names the host when env.json does
    /// not (directories of an older ckpt).
    fn name(&self) -> String {
        self.dir.file_name().map_or_else(
            || self.dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    fn hostname(&self) -> String {
        let host = self.env.host.as_ref();
        host.and_then(|h| h.hostname.clone())
            .unwrap_or_else(|| self.name())
    }
}

/// Writes into `out` the summary, analysis, figures and report of the
/// runs in `dirs` together; with one directory, its own report. Refuses
/// runs that measured different things, saying what differs, and an
/// `out` that holds a sweep (its report would be overwritten).
pub fn write_merged(dirs: &[PathBuf], out: &ResultsDir) -> Result<Analysis> {
    if out.holds_sweep() {
        bail!(
            "{} holds a sweep's own records; write the merged report into a directory of its own",
            out.path().display()
        );
    }
    let sources: Vec<Source> = dirs
        .iter()
        .map(|d| Source::read(d))
        .collect::<Result<_>>()?;
    check_compatible(&sources)?;
    out.create_private()?;
    if let [one] = &sources[..] {
        let timelines = ResultsDir::new(&one.dir);
        let provenance = (&one.plan, &one.env, &[][..]);
        return super::write_report(out, &one.records, provenance, Some(&timelines));
    }
    let labels = host_labels(&sources);
    let mut records = Vec::new();
    let mut runs = Vec::new();
    for (source, host) in sources.iter().zip(&labels) {
        records.extend(source.records.iter().map(|r| TrialRecord {
            engine: format!("{}@{host}", r.engine),
            ..r.clone()
        }));
        runs.push(Run {
            host: host.clone(),
            dir: source.dir.display().to_string(),
            env: source.env.clone(),
            plan: source.plan.clone(),
            trials: source.records.len(),
        });
    }
    let plan = merged_plan(&sources);
    // No one machine: the report describes each in its table of hosts.
    // Nor one directory of timelines: no figure of the stall.
    let provenance = (&plan, &Environment::default(), &runs[..]);
    super::write_report(out, &records, provenance, None)
}

/// A label per source: its hostname (or directory name), made unique in
/// the order given (`vm`, `vm-2`): two runs of one host stay apart.
fn host_labels(sources: &[Source]) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for source in sources {
        let base = source.hostname();
        let mut label = base.clone();
        let mut k = 1;
        while labels.contains(&label) {
            k += 1;
            label = format!("{base}-{k}");
        }
        labels.push(label);
    }
    labels
}

/// The plan the report describes: the first run's, with every engine and
/// every value along each axis of all the runs.
fn merged_plan(sources: &[Source]) -> SweepPlan {
    let union = |axis: Axis| {
        let mut values: Vec<u32> = sources
            .iter()
            .flat_map(|s| s.plan.values(axis).to_vec())
            .collect();
        values.sort_unstable();
        values.dedup();
        values
    };
    let mut engines = Vec::new();
    for engine in sources.iter().flat_map(|s| &s.plan.engines) {
        if !engines.contains(engine) {
            engines.push(*engine);
        }
    }
    SweepPlan {
        engines,
        children: union(Axis::Children),
        memory_mib: union(Axis::MemoryMib),
        threads: union(Axis::Threads),
        files: union(Axis::Files),
        filler_mib: union(Axis::FillerMib),
        ..sources[0].plan.clone()
    }
}

/// Refuses runs that did not measure the same thing, naming each difference.
fn check_compatible(sources: &[Source]) -> Result<()> {
    let first = &sources[0];
    let differences: Vec<String> = sources[1..]
        .iter()
        .flat_map(|other| differences(first, other))
        .collect();
    if differences.is_empty() {
        return Ok(());
    }
    bail!(
        "these runs did not measure the same thing, so they cannot share one report:\n  {}",
        differences.join("\n  ")
    )
}

/// What `b` measured differently from `a`.
fn differences(a: &Source, b: &Source) -> Vec<String> {
    let (an, bn) = (a.dir.display(), b.dir.display());
    let (a_swept, b_swept) = (a.plan.swept_axes(), b.plan.swept_axes());
    let mut out = Vec::new();
    if a_swept != b_swept {
        out.push(format!(
            "swept axes: {an} sweeps {}, {bn} sweeps {}",
            axis_names(&a_swept),
            axis_names(&b_swept)
        ));
    }
    for axis in Axis::ALL {
        let (av, bv) = (a.plan.values(axis), b.plan.values(axis));
        if av.len() == 1 && bv.len() == 1 && av != bv {
            out.push(format!(
                "{}: {an} holds it at {}, {bn} at {}",
                axis.name(),
                av[0],
                bv[0]
            ));
        }
    }
    if a.plan.workload != b.plan.workload {
        out.push(format!(
            "workload: {an} runs {}, {bn} runs {}",
            workload_name(&a.plan),
            workload_name(&b.plan)
        ));
    }
    if a.plan.network != b.plan.network {
        out.push(format!(
            "network: {an} ran Docker's containers with --network {}, {bn} with --network {}",
            network_flag(a.plan.network),
            network_flag(b.plan.network)
        ));
    }
    out
}

fn axis_names(axes: &[Axis]) -> String {
    if axes.is_empty() {
        return "nothing".into();
    }
    let names: Vec<&str> = axes.iter().map(|a| a.name()).collect();
    names.join(" and ")
}

/// The network as `ckpt sweep --network` spells it.
fn network_flag(network: Network) -> &'static str {
    match network {
        Network::Disabled => "disabled",
        Network::None => "none",
    }
}

fn workload_name(plan: &SweepPlan) -> String {
    match &plan.workload {
        None => "ckpt's forker".into(),
        Some(user) => format!("`{}` in {}", user.cmd, user.image),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::envinfo::HostId;

    fn source(dir: &str, hostname: Option<&str>) -> Source {
        Source {
            dir: PathBuf::from(dir),
            plan: crate::sweep::tests::plan(),
            env: Environment {
                host: hostname.map(|h| HostId {
                    hostname: Some(h.into()),
                    machine: None,
                }),
                ..Environment::default()
            },
            records: Vec::new(),
        }
    }

    #[test]
    fn hosts_are_named_once_each() {
        let sources = [
            source("/r/a", Some("vm")),
            source("/r/b", Some("vm")),
            source("/r/old-run", None),
            source("/r/c", Some("box")),
        ];
        assert_eq!(host_labels(&sources), ["vm", "vm-2", "old-run", "box"]);
    }

    #[test]
    fn says_what_the_runs_measured_differently() {
        let a = source("/r/a", None);
        let mut b = source("/r/b", None);
        assert!(differences(&a, &b).is_empty());
        b.plan.children = vec![1, 10, 50, 100];
        assert!(
            differences(&a, &b).is_empty(),
            "values along a swept axis may differ"
        );
        b.plan.memory_mib = vec![64];
        b.plan.network = Network::None;
        assert_eq!(
            differences(&a, &b),
            [
                "memory_mib: /r/a holds it at 0, /r/b at 64",
                "network: /r/a ran Docker's containers with --network disabled, /r/b with --network none"
            ]
        );
        b.plan.children = vec![1];
        b.plan.threads = vec![0, 16];
        assert_eq!(
            differences(&a, &b)[0],
            "swept axes: /r/a sweeps children, /r/b sweeps threads"
        );
        let merged = merged_plan(&[a, source("/r/c", None)]);
        assert_eq!(merged.children, [1, 3]);
    }
}
