//! Keeping CRIU's statistics when the engine deletes them.
//!
//! CRIU writes `stats-dump` and `stats-restore` into its work directory,
//! and containerd deletes that directory after every Docker checkpoint. But
//! runc hands CRIU the configuration file `/etc/criu/runc.conf`, whose
//! options win over runc's own; a `work-dir` line there makes CRIU leave its
//! statistics in a directory of ours. The file is host-wide, so the lines
//! ckpt adds carry a marker with its pid, are removed when the run ends, and
//! `ckpt gc` removes those of a run that was killed. An existing `work-dir`
//! setting of the user's is never overridden: then the statistics stay
//! hidden and the report says so.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use criu_image::framing::{self, magic};
use criu_image::messages::StatsEntry;
use criu_image::{DumpStatsEntry, RestoreStatsEntry};

use crate::run::{owner_alive, RunId};

pub const RUNC_CONF: &str = "/etc/criu/runc.conf";
/// Where the work directories of runs live.
pub(crate) const WORK_ROOT: &str = "/run/ckpt/stats";
const MARKER: &str = "# ckpt: added by run";

/// A work directory that CRIU writes its statistics into for this run.
#[derive(Debug)]
pub struct StatsCapture {
    conf: PathBuf,
    dir: PathBuf,
    marker: String,
}

/// The marker line of a run: run id and owner pid, so gc can tell whether
/// the run is still alive.
fn marker(run: &RunId) -> String {
    format!("{MARKER} {} pid {}", run.as_str(), std::process::id())
}

impl StatsCapture {
    /// Points CRIU's work directory at a fresh directory of this run.
    /// Returns None when the user already set a work directory.
    pub fn install(run: &RunId) -> Result<Option<StatsCapture>> {
        Self::install_at(Path::new(RUNC_CONF), Path::new(WORK_ROOT), run)
    }

    fn install_at(conf: &Path, root: &Path, run: &RunId) -> Result<Option<StatsCapture>> {
        let existing = std::fs::read_to_string(conf).unwrap_or_default();
        if existing
            .lines()
            .any(|l| l.trim_start().starts_with("work-dir"))
        {
            return Ok(None);
        }
        let dir = root.join(format!("criu-work-{}", run.as_str()));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        if let Some(parent) = conf.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let marker = marker(run);
        let mut text = existing;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("{marker}\nwork-dir {}\n", dir.display()));
        std::fs::write(conf, text).with_context(|| format!("cannot write {}", conf.display()))?;
        Ok(Some(StatsCapture {
            conf: conf.to_path_buf(),
            dir,
            marker,
        }))
    }

    /// Where CRIU leaves the statistics file `name` during this run.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Removes this run's lines and work directory (again: a no-op).
    pub(crate) fn uninstall(&self) -> Result<()> {
        remove_marked_lines(&self.conf, |line| line == self.marker)?;
        std::fs::remove_dir_all(&self.dir)
            .or_else(ignore_missing)
            .with_context(|| format!("cannot remove {}", self.dir.display()))
    }
}

/// The guard puts the host's file back when the run ends, however it
/// ends (success, error, Ctrl-C); a killed run's lines go with `ckpt gc` or
/// the next run.
impl Drop for StatsCapture {
    fn drop(&mut self) {
        if let Err(e) = self.uninstall() {
            eprintln!(
                "ckpt: error: putting back {} failed: {e:#}; run `ckpt gc`",
                self.conf.display()
            );
        }
    }
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// Removes every marker line matching `is_ours` and the line after it;
/// deletes the file when nothing else remains.
fn remove_marked_lines(conf: &Path, is_ours: impl Fn(&str) -> bool) -> Result<usize> {
    let Ok(text) = std::fs::read_to_string(conf) else {
        return Ok(0);
    };
    let mut kept = Vec::new();
    let mut removed = 0;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if is_ours(line) {
            lines.next();
            removed += 1;
        } else {
            kept.push(line);
        }
    }
    if removed == 0 {
        return Ok(0);
    }
    if kept.iter().all(|l| l.trim().is_empty()) {
        std::fs::remove_file(conf).with_context(|| format!("cannot remove {}", conf.display()))?;
    } else {
        std::fs::write(conf, kept.join("\n") + "\n")
            .with_context(|| format!("cannot write {}", conf.display()))?;
    }
    Ok(removed)
}

/// The pid in a marker line, if it is one.
fn marker_pid(line: &str) -> Option<&str> {
    line.strip_prefix(MARKER)?.split_whitespace().nth(2)
}

/// For `ckpt gc` and the start of every sweep: removes the lines and work
/// directories of runs whose ckpt process is gone. Returns how many runs
/// were cleaned.
pub fn remove_orphans() -> Result<usize> {
    let removed = remove_marked_lines(Path::new(RUNC_CONF), |line| {
        marker_pid(line).is_some_and(|pid| !owner_alive(Some(pid)))
    })?;
    // Work directories of dead runs: those no live marker points to.
    let live = std::fs::read_to_string(RUNC_CONF).unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir(WORK_ROOT) {
        for entry in entries.flatten() {
            let path = entry.path();
            if !live.contains(&path.display().to_string()) {
                std::fs::remove_dir_all(&path).or_else(ignore_missing)?;
            }
        }
    }
    Ok(removed)
}

pub(crate) const STATS_DUMP: &str = "stats-dump";
pub(crate) const STATS_RESTORE: &str = "stats-restore";

/// Where CRIU left the statistics of one checkpoint or restore. An engine
/// returns it from the call; the caller reads it afterwards, so that reading
/// never counts in the call's time. CRIU rewrites the file on every
/// successful call, and a failed call returns no handle, so a handle never
/// points at an earlier call's numbers.
#[derive(Debug, Clone, Default)]
pub struct PhaseStats {
    name: &'static str,
    /// The first readable one holds them: the engine's work directory, or
    /// the run's shared directory when /etc/criu/runc.conf redirected CRIU.
    candidates: Vec<PathBuf>,
}

impl PhaseStats {
    /// `name` in CRIU's work directory `work`, or in the shared capture.
    pub(crate) fn at(
        work: Option<&Path>,
        name: &'static str,
        shared: Option<&StatsCapture>,
    ) -> PhaseStats {
        let candidates = work
            .map(|w| w.join(name))
            .into_iter()
            .chain(shared.map(|s| s.path(name)))
            .collect();
        PhaseStats { name, candidates }
    }

    fn read(&self) -> Option<StatsEntry> {
        let bytes = self.candidates.iter().find_map(|p| std::fs::read(p).ok())?;
        framing::decode_one(&bytes, magic::STATS, self.name).ok()
    }

    /// The statistics file's bytes, as CRIU wrote it.
    pub(crate) fn bytes(&self) -> Option<Vec<u8>> {
        self.candidates.iter().find_map(|p| std::fs::read(p).ok())
    }

    /// CRIU's phases of a dump, when it left them.
    pub(crate) fn dump(&self) -> Option<DumpStatsEntry> {
        self.read()?.dump
    }

    /// CRIU's phases of a restore, when it left them.
    pub(crate) fn restore(&self) -> Option<RestoreStatsEntry> {
        self.read()?.restore
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_appends_and_uninstall_restores_the_users_file() {
        let tmp = tempfile::tempdir().unwrap();
        let conf = tmp.path().join("criu/runc.conf");
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        std::fs::write(&conf, "tcp-established").unwrap();
        let run = RunId::new();
        let capture = StatsCapture::install_at(&conf, tmp.path(), &run)
            .unwrap()
            .unwrap();
        let text = std::fs::read_to_string(&conf).unwrap();
        assert!(
            text.starts_with("tcp-established\n# ckpt: added by run"),
            "{text}"
        );
        assert!(text.contains("work-dir "), "{text}");
        assert!(PhaseStats::at(None, STATS_DUMP, Some(&capture))
            .dump()
            .is_none());
        capture.uninstall().unwrap();
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "tcp-established\n");
    }

    #[test]
    fn a_file_ckpt_created_is_removed_and_a_users_work_dir_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let conf = tmp.path().join("runc.conf");
        let capture = StatsCapture::install_at(&conf, tmp.path(), &RunId::new())
            .unwrap()
            .unwrap();
        capture.uninstall().unwrap();
        assert!(!conf.exists());
        std::fs::write(&conf, "work-dir /mine\n").unwrap();
        assert!(StatsCapture::install_at(&conf, tmp.path(), &RunId::new())
            .unwrap()
            .is_none());
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "work-dir /mine\n");
    }

    #[test]
    fn marker_lines_name_their_pid() {
        let run = RunId::new();
        let line = marker(&run);
        assert_eq!(
            marker_pid(&line),
            Some(std::process::id().to_string().as_str())
        );
        assert_eq!(marker_pid("work-dir /x"), None);
    }
}
