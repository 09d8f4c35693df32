//! Keeping CRIU's statistics when the engine deletes them.
//!
//! CRIU writes `stats-dump` and `stats-restore` into its work directory,
//! and containerd deletes that directory after every Docker checkpoint. But
//! runc hands CRIU the configuration file `/etc/criu/runc.conf`, whose
//! options win over runc's own; a `work-dir` line there makes CRIU leave its
//! statistics in a directory of ours. The file is host-wide, so the lines
//! ckpt adds carry a marker with its pid and start time, are removed when
//! the run ends, and `ckpt gc` removes those of a run that was killed. An
//! existing `work-dir` setting of the user's is never overridden: then the
//! statistics stay hidden and the report says so. Another ckpt run's line
//! (the line after its marker) is never taken for the user's.
//!
//! Concurrent ckpt runs change the file one at a time (an exclusive lock on
//! `runc.conf.ckpt-lock` beside it, held from reading to writing), and a
//! change is written to a temporary file in the same directory and renamed
//! over it: no run loses another's lines, and CRIU never reads half a file.
//! With two runs' lines CRIU follows the last one (its options parse in
//! order), so runs that overlap may see each other's statistics.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use criu_image::framing::{self, magic};
use criu_image::messages::StatsEntry;
use criu_image::{DumpStatsEntry, RestoreStatsEntry};

use super::os::lock::FileLock;
use crate::run::{owner_alive, owner_record, RunId};

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

/// The marker line of a run: run id and owner ("pid starttime"), so gc can
/// tell whether the run is still alive.
fn marker(run: &RunId) -> String {
    format!("{MARKER} {} pid {}", run.as_str(), owner_record())
}

impl StatsCapture {
    /// Points CRIU's work directory at a fresh directory of this run.
    /// Returns None when the user already set a work directory.
    pub fn install(run: &RunId) -> Result<Option<StatsCapture>> {
        Self::install_at(Path::new(RUNC_CONF), Path::new(WORK_ROOT), run)
    }

    fn install_at(conf: &Path, root: &Path, run: &RunId) -> Result<Option<StatsCapture>> {
        if let Some(parent) = conf.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let dir = root.join(format!("criu-work-{}", run.as_str()));
        let marker = marker(run);
        let installed = edit(conf, |text| {
            if users_lines(text).any(|l| l.trim_start().starts_with("work-dir")) {
                return Ok((None, false));
            }
            // Made under the lock: gc removes the directories no line names.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let mut text = text.to_string();
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!("{marker}\nwork-dir {}\n", dir.display()));
            Ok((Some(text), true))
        })?;
        Ok(installed.then(|| StatsCapture {
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

/// The lock every ckpt process takes to change `conf`: `<conf>.ckpt-lock`.
fn lock_path(conf: &Path) -> PathBuf {
    let mut name = conf.as_os_str().to_owned();
    name.push(".ckpt-lock");
    name.into()
}

/// Changes `conf` under ckpt's lock: `change` gets its text (empty when
/// there is none) and returns the new text (None: leave it as it is) and
/// a result. A text left blank removes the file.
fn edit<T>(conf: &Path, change: impl FnOnce(&str) -> Result<(Option<String>, T)>) -> Result<T> {
    let _lock = FileLock::exclusive(&lock_path(conf))?;
    let text = match std::fs::read_to_string(conf) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", conf.display())),
    };
    let (new, result) = change(&text)?;
    match new {
        Some(new) if new.trim().is_empty() => std::fs::remove_file(conf)
            .or_else(ignore_missing)
            .with_context(|| format!("cannot remove {}", conf.display()))?,
        Some(new) => replace(conf, &new)?,
        None => {}
    }
    Ok(result)
}

/// Writes `text` to a temporary file beside `conf` (with its mode) and
/// renames it over `conf`; a symbolic link's target is what is replaced.
fn replace(conf: &Path, text: &str) -> Result<()> {
    let target = std::fs::canonicalize(conf).unwrap_or_else(|_| conf.to_path_buf());
    let name = target.file_name().context("a file name")?.to_string_lossy();
    let new = target.with_file_name(format!(".{name}.ckpt-new"));
    let mode = std::fs::metadata(&target).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    let written = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(&new)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&new, &target));
    if written.is_err() {
        let _ = std::fs::remove_file(&new);
    }
    written.with_context(|| format!("cannot write {}", target.display()))
}

/// The lines of `text` that are the user's: not a ckpt run's marker line,
/// nor the line after one.
fn users_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut after_marker = false;
    text.lines().filter(move |line| {
        let ours = after_marker || line.starts_with(MARKER);
        after_marker = line.starts_with(MARKER) && !after_marker;
        !ours
    })
}

/// `text` without the marker lines matching `is_ours` and the line after
/// each; and how many markers went.
fn without_marked_lines(text: &str, is_ours: impl Fn(&str) -> bool) -> (String, usize) {
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
    (kept.join("\n") + "\n", removed)
}

/// Removes every marker line matching `is_ours` and the line after it;
/// deletes the file when nothing else remains.
fn remove_marked_lines(conf: &Path, is_ours: impl Fn(&str) -> bool) -> Result<usize> {
    if !conf.parent().is_some_and(Path::is_dir) {
        return Ok(0);
    }
    edit(conf, |text| {
        let (kept, removed) = without_marked_lines(text, is_ours);
        Ok(((removed > 0).then_some(kept), removed))
    })
}

/// The owner in a marker line ("pid starttime", or a pid alone in the
/// lines of older versions), if it is one.
fn marker_owner(line: &str) -> Option<&str> {
    let (_, owner) = line.strip_prefix(MARKER)?.split_once(" pid ")?;
    Some(owner.trim())
}

/// For `ckpt gc` and the start of every sweep: removes the lines and work
/// directories of runs whose ckpt process is gone. Returns how many runs
/// were cleaned.
pub fn remove_orphans() -> Result<usize> {
    remove_orphans_at(Path::new(RUNC_CONF), Path::new(WORK_ROOT))
}

fn remove_orphans_at(conf: &Path, root: &Path) -> Result<usize> {
    // Nothing of ckpt's: no lock is taken (nor its file made) on a host
    // where ckpt never changed the file.
    let marked = std::fs::read_to_string(conf).is_ok_and(|t| t.contains(MARKER));
    let no_dirs = std::fs::read_dir(root).map_or(true, |mut d| d.next().is_none());
    if !conf.parent().is_some_and(Path::is_dir) || (!marked && no_dirs) {
        return Ok(0);
    }
    edit(conf, |text| {
        let (kept, removed) = without_marked_lines(text, |line| {
            marker_owner(line).is_some_and(|owner| !owner_alive(Some(owner)))
        });
        // Work directories of dead runs: those no live marker points to
        // (a run makes its directory under the lock, with its line).
        if let Ok(entries) = std::fs::read_dir(root) {
            for entry in entries.flatten() {
                let path = entry.path();
                if !kept.contains(&path.display().to_string()) {
                    std::fs::remove_dir_all(&path).or_else(ignore_missing)?;
                }
            }
        }
        Ok(((removed > 0).then_some(kept), removed))
    })
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
    fn marker_lines_name_their_owner() {
        let run = RunId::new();
        let line = marker(&run);
        assert_eq!(marker_owner(&line), Some(owner_record().as_str()));
        assert_eq!(marker_owner("# ckpt: added by run r pid 12"), Some("12"));
        assert_eq!(marker_owner("work-dir /x"), None);
    }

    /// Two run ids that differ.
    fn two_runs() -> (RunId, RunId) {
        let a = RunId::new();
        let b = std::iter::repeat_with(RunId::new)
            .find(|b| *b != a)
            .unwrap();
        (a, b)
    }

    #[test]
    fn another_runs_work_dir_is_not_taken_for_the_users() {
        let tmp = tempfile::tempdir().unwrap();
        let conf = tmp.path().join("runc.conf");
        std::fs::write(&conf, "tcp-established\n").unwrap();
        let (a, b) = two_runs();
        let first = StatsCapture::install_at(&conf, tmp.path(), &a).unwrap();
        let second = StatsCapture::install_at(&conf, tmp.path(), &b).unwrap();
        let (first, second) = (
            first.unwrap(),
            second.expect("a ckpt line is not the user's"),
        );
        let text = std::fs::read_to_string(&conf).unwrap();
        assert!(
            text.contains(&first.marker) && text.contains(&second.marker),
            "{text}"
        );
        assert_eq!(users_lines(&text).collect::<Vec<_>>(), ["tcp-established"]);
        first.uninstall().unwrap();
        let text = std::fs::read_to_string(&conf).unwrap();
        assert!(
            !text.contains(&first.marker) && text.contains(&second.marker),
            "{text}"
        );
        second.uninstall().unwrap();
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "tcp-established\n");
        // Only the lock and the file: no temporary file is left.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2);
    }

    #[test]
    fn two_runs_changing_the_file_at_once_keep_each_others_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let conf = tmp.path().join("criu/runc.conf");
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        std::fs::write(&conf, "tcp-established\n").unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let (a, b) = two_runs();
        let writers: Vec<_> = [a, b]
            .into_iter()
            .map(|run| {
                let (conf, root, barrier) =
                    (conf.clone(), tmp.path().to_path_buf(), barrier.clone());
                // Problems are collected, not panicked on: a thread that
                // stopped would leave the other waiting at the barrier.
                std::thread::spawn(move || {
                    let mut problems = Vec::new();
                    for _ in 0..40 {
                        barrier.wait();
                        let capture = StatsCapture::install_at(&conf, &root, &run);
                        barrier.wait();
                        // Both runs' lines, whoever wrote last.
                        let text = std::fs::read_to_string(&conf).unwrap_or_default();
                        match &capture {
                            Ok(Some(c)) if text.contains(&c.marker) => {}
                            other => problems.push(format!("{other:?} in:\n{text}")),
                        }
                        if text.matches(MARKER).count() != 2 {
                            problems.push(format!("not both runs' lines:\n{text}"));
                        }
                        barrier.wait();
                        if let Ok(Some(capture)) = capture {
                            capture
                                .uninstall()
                                .unwrap_or_else(|e| problems.push(e.to_string()));
                        }
                    }
                    problems
                })
            })
            .collect();
        for writer in writers {
            let problems = writer.join().unwrap();
            assert!(problems.is_empty(), "{}", problems.join("\n"));
        }
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "tcp-established\n");
    }

    #[test]
    fn gc_takes_back_the_lines_and_directories_of_dead_runs_only() {
        let tmp = tempfile::tempdir().unwrap();
        let (conf, root) = (tmp.path().join("runc.conf"), tmp.path().join("stats"));
        let live = crate::run::testing::FakeCkpt::start();
        let dead = crate::run::testing::dead_pid();
        let live_dir = root.join("criu-work-live");
        let dead_dir = root.join("criu-work-dead");
        std::fs::create_dir_all(&live_dir).unwrap();
        std::fs::create_dir_all(&dead_dir).unwrap();
        let live_lines = format!(
            "{MARKER} live pid {}\nwork-dir {}\n",
            live.record(),
            live_dir.display()
        );
        let text = format!(
            "tcp-established\n{MARKER} dead pid {dead}\nwork-dir {}\n{live_lines}",
            dead_dir.display()
        );
        std::fs::write(&conf, text).unwrap();
        assert_eq!(remove_orphans_at(&conf, &root).unwrap(), 1);
        let kept = std::fs::read_to_string(&conf).unwrap();
        assert_eq!(kept, format!("tcp-established\n{live_lines}"));
        assert!(live_dir.exists() && !dead_dir.exists());

        // A host where ckpt never wrote: not even the lock is made.
        let clean = tempfile::tempdir().unwrap();
        let conf = clean.path().join("runc.conf");
        std::fs::write(&conf, "tcp-established\n").unwrap();
        assert_eq!(
            remove_orphans_at(&conf, &clean.path().join("stats")).unwrap(),
            0
        );
        assert!(!lock_path(&conf).exists());
    }

    #[test]
    fn the_file_keeps_its_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let conf = tmp.path().join("runc.conf");
        std::fs::write(&conf, "tcp-established\n").unwrap();
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o640)).unwrap();
        let capture = StatsCapture::install_at(&conf, tmp.path(), &RunId::new()).unwrap();
        let mode = std::fs::metadata(&conf).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        drop(capture);
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "tcp-established\n");
    }
}
