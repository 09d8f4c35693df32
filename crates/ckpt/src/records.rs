//! One record per trial, appended and flushed as each trial ends, as CSV
//! (for people and spreadsheets) and JSON lines (for programs). A crash
//! loses at most the trial in flight; a line cut by power loss is dropped
//! and reported when the records are read back.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const TRIALS_CSV: &str = "trials.csv";
pub const TRIALS_JSONL: &str = "trials.jsonl";

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
    /// workload's checksum) and its threads and open files all there; None
    /// where there was nothing to check or the workload cannot tell.
    #[serde(default)]
    pub memory_ok: Option<bool>,
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
    pub overhead_ms: f64,
    pub status: Status,
    pub error: Option<String>,
}

impl TrialRecord {
    /// A record with nothing measured yet (status failed until a trial
    /// says otherwise).
    pub fn new(run_id: &str, spec: &crate::plan::TrialSpec, engine: &str) -> TrialRecord {
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
            criu_freezing_ms: None,
            criu_frozen_ms: None,
            criu_memdump_ms: None,
            criu_memwrite_ms: None,
            criu_pages_scanned: None,
            criu_pages_written: None,
            criu_forking_ms: None,
            criu_restore_ms: None,
            criu_pages_restored: None,
            overhead_ms: 0.0,
            status: Status::Failed,
            error: None,
        }
    }

    /// The grid point this trial measured.
    pub fn point(&self) -> crate::plan::Point {
        crate::plan::Point {
            children: self.children,
            memory_mib: self.memory_mib,
            threads: self.threads,
            files: self.files,
            filler_mib: self.filler_mib,
        }
    }

    /// True for trials that count in the statistics.
    pub fn measured_ok(&self) -> bool {
        !self.warmup && self.status == Status::Ok
    }
}

/// Appends records to both files, flushing after every record.
pub struct RecordWriter {
    csv: csv::Writer<File>,
    jsonl: File,
}

/// Opens a result file for appending, created 0600: records can describe
/// memory-derived data, and results are the user's, not the world's.
fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open {} for writing", path.display()))
}

impl RecordWriter {
    pub fn open(dir: &Path) -> Result<RecordWriter> {
        let csv_path = dir.join(TRIALS_CSV);
        let has_header = csv_path.metadata().map(|m| m.len() > 0).unwrap_or(false);
        let csv = csv::WriterBuilder::new()
            .has_headers(!has_header)
            .from_writer(open_append(&csv_path)?);
        let jsonl = open_append(&dir.join(TRIALS_JSONL))?;
        Ok(RecordWriter { csv, jsonl })
    }

    pub fn append(&mut self, record: &TrialRecord) -> Result<()> {
        self.csv.serialize(record).context("writing trials.csv")?;
        self.csv.flush().context("flushing trials.csv")?;
        let mut line = serde_json::to_string(record)?;
        line.push('\n');
        self.jsonl
            .write_all(line.as_bytes())
            .context("writing trials.jsonl")?;
        self.jsonl.flush().context("flushing trials.jsonl")?;
        Ok(())
    }
}

/// Records read back, and what had to be repaired on the way.
#[derive(Debug, Default)]
pub struct ReadBack {
    pub records: Vec<TrialRecord>,
    /// Lines that could not be parsed (a cut last line after power loss).
    pub dropped_lines: Vec<usize>,
}

/// Reads trials.jsonl. Unparseable lines are skipped and reported, never
/// fatal: a sweep's other results are still good.
pub fn read_records(dir: &Path) -> Result<ReadBack> {
    let path = dir.join(TRIALS_JSONL);
    let file = File::open(&path).with_context(|| {
        format!(
            "cannot read {}: is {} a ckpt results directory?",
            path.display(),
            dir.display()
        )
    })?;
    let mut back = ReadBack::default();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(record) => back.records.push(record),
            Err(_) => back.dropped_lines.push(number + 1),
        }
    }
    Ok(back)
}

/// Complete data rows of trials.csv (a row cut short does not count).
pub fn count_csv_rows(dir: &Path) -> Option<usize> {
    let mut reader = csv::Reader::from_path(dir.join(TRIALS_CSV)).ok()?;
    Some(
        reader
            .deserialize::<TrialRecord>()
            .filter(Result::is_ok)
            .count(),
    )
}

/// Rewrites both record files from `records`, dropping cut lines. Used on
/// resume so that new records are not appended after a broken line.
pub fn rewrite(dir: &Path, records: &[TrialRecord]) -> Result<()> {
    for name in [TRIALS_CSV, TRIALS_JSONL] {
        let path = dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    let mut writer = RecordWriter::open(dir)?;
    records.iter().try_for_each(|r| writer.append(r))
}

/// Writes a whole file 0600 (summary, env, plan).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample(trial: usize) -> TrialRecord {
        let spec = crate::plan::TrialSpec {
            index: trial,
            engine: 0,
            point: crate::plan::Point {
                children: 5,
                ..Default::default()
            },
            repetition: 0,
            warmup: false,
        };
        TrialRecord {
            started_at: "2026-01-01T00:00:00Z".into(),
            image_bytes: Some(1),
            run_ms: Some(1.0),
            ready_ms: Some(1.0),
            checkpoint_ms: Some(200.0),
            stop_ms: Some(1.0),
            restore_ms: Some(300.0),
            checkpoint_bytes: Some(4096),
            processes_before: Some(6),
            processes_after: Some(6),
            verified: true,
            overhead_ms: 0.5,
            status: Status::Ok,
            ..TrialRecord::new("r", &spec, "docker")
        }
    }

    #[test]
    fn records_round_trip_and_cut_lines_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = RecordWriter::open(dir.path()).unwrap();
        w.append(&sample(0)).unwrap();
        w.append(&sample(1)).unwrap();
        drop(w);
        // Power loss: half a line at the end.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(TRIALS_JSONL))
            .unwrap();
        f.write_all(b"{\"run_id\":\"r\",\"tri").unwrap();
        let back = read_records(dir.path()).unwrap();
        assert_eq!(back.records, vec![sample(0), sample(1)]);
        assert_eq!(back.dropped_lines, vec![3]);

        rewrite(dir.path(), &back.records).unwrap();
        let again = read_records(dir.path()).unwrap();
        assert_eq!(again.records.len(), 2);
        assert!(again.dropped_lines.is_empty());
        let csv = std::fs::read_to_string(dir.path().join(TRIALS_CSV)).unwrap();
        assert_eq!(csv.lines().count(), 3, "one header and two rows:\n{csv}");
        assert!(csv.starts_with("run_id,trial,engine,children"));
    }

    #[test]
    fn result_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        RecordWriter::open(dir.path())
            .unwrap()
            .append(&sample(0))
            .unwrap();
        let mode = std::fs::metadata(dir.path().join(TRIALS_CSV))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
