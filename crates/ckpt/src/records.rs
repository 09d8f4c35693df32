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
    /// workload's checksum); None where there was nothing to check or the
    /// workload cannot tell. Records written before `threads_ok` and
    /// `files_ok` existed used this one verdict for all three.
    #[serde(default)]
    pub memory_ok: Option<bool>,
    /// After the restore every process had all its extra threads.
    #[serde(default)]
    pub threads_ok: Option<bool>,
    /// After the restore every process had all its open files.
    #[serde(default)]
    pub files_ok: Option<bool>,
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
            threads_ok: None,
            files_ok: None,
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
        if has_header {
            upgrade_csv(&csv_path)?;
        }
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

/// The CSV columns of a record, in order.
fn csv_header() -> Result<csv::StringRecord> {
    let spec = crate::plan::TrialSpec {
        index: 0,
        engine: 0,
        point: crate::plan::Point::default(),
        repetition: 0,
        warmup: false,
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.serialize(TrialRecord::new("", &spec, ""))?;
    let bytes = writer.into_inner().context("writing a CSV header")?;
    Ok(csv::Reader::from_reader(bytes.as_slice())
        .headers()?
        .clone())
}

/// Rewrites a trials.csv written before a column was added (a resumed
/// sweep of an older ckpt) with today's columns, so that new rows do not
/// land under an old header. Rows that do not parse (a cut last row) are
/// dropped, as when resuming.
fn upgrade_csv(path: &Path) -> Result<()> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    if *reader.headers()? == csv_header()? {
        return Ok(());
    }
    let records: Vec<TrialRecord> = reader.deserialize().filter_map(Result::ok).collect();
    let upgraded = path.with_extension("csv.new");
    let _ = std::fs::remove_file(&upgraded);
    let mut writer = csv::Writer::from_writer(open_append(&upgraded)?);
    for record in &records {
        writer.serialize(record).context("writing trials.csv")?;
    }
    writer.flush().context("flushing trials.csv")?;
    std::fs::rename(&upgraded, path).with_context(|| format!("replacing {}", path.display()))
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

    /// A record as ckpt wrote it before threads_ok and files_ok (from
    /// docs/results/threads-files), in both files.
    const OLD_JSON: &str = r#"{"run_id":"20261127-123600-ba39","trial":1,"engine":"runc","children":1,"memory_mib":0,"threads":64,"files":256,"filler_mib":0,"repetition":0,"warmup":true,"started_at":"2026-11-27T12:36:01.416Z","image_bytes":1645640,"run_ms":35.91325,"ready_ms":6.491012,"checkpoint_ms":184.72589,"stop_ms":7.1191450000000005,"restore_ms":248.027704,"restore_retries":0,"checkpoint_bytes":1850437,"processes_before":2,"processes_after":2,"rss_bytes":3756032,"verified":true,"memory_ok":true,"criu_freezing_ms":4.637,"criu_frozen_ms":140.106,"criu_memdump_ms":3.751,"criu_memwrite_ms":1.658,"criu_pages_scanned":966,"criu_pages_written":380,"criu_forking_ms":0.319,"criu_restore_ms":170.885,"criu_pages_restored":380,"overhead_ms":0.363603,"status":"ok","error":null}"#;
    const OLD_CSV: &str = "run_id,trial,engine,children,memory_mib,threads,files,filler_mib,repetition,warmup,started_at,image_bytes,run_ms,ready_ms,checkpoint_ms,stop_ms,restore_ms,restore_retries,checkpoint_bytes,processes_before,processes_after,rss_bytes,verified,memory_ok,criu_freezing_ms,criu_frozen_ms,criu_memdump_ms,criu_memwrite_ms,criu_pages_scanned,criu_pages_written,criu_forking_ms,criu_restore_ms,criu_pages_restored,overhead_ms,status,error
20261127-123600-ba39,1,runc,1,0,64,256,0,0,true,2026-11-27T12:36:01.416Z,1645640,35.91325,6.491012,184.72589,7.1191450000000005,248.027704,0,1850437,2,2,3756032,true,true,4.637,140.106,3.751,1.658,966,380,0.319,170.885,380,0.363603,ok,
";

    #[test]
    fn records_without_threads_ok_and_files_ok_still_read() {
        let json: TrialRecord = serde_json::from_str(OLD_JSON).unwrap();
        assert_eq!(json.memory_ok, Some(true));
        assert_eq!((json.threads_ok, json.files_ok), (None, None));
        assert_eq!((json.threads, json.files), (64, 256));
        let csv: Vec<TrialRecord> = csv::Reader::from_reader(OLD_CSV.as_bytes())
            .deserialize()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(csv, vec![json]);

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TRIALS_JSONL), format!("{OLD_JSON}\n")).unwrap();
        std::fs::write(dir.path().join(TRIALS_CSV), OLD_CSV).unwrap();
        assert_eq!(read_records(dir.path()).unwrap().records.len(), 1);
        assert_eq!(count_csv_rows(dir.path()), Some(1));
    }

    #[test]
    fn new_columns_are_written_and_an_old_csv_gets_them_before_new_rows() {
        let mut record = sample(1);
        (record.memory_ok, record.threads_ok, record.files_ok) = (Some(true), Some(false), None);
        let line = serde_json::to_string(&record).unwrap();
        assert!(
            line.contains(r#""memory_ok":true,"threads_ok":false,"files_ok":null"#),
            "{line}"
        );

        // Resuming a sweep that an older ckpt started.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TRIALS_CSV), OLD_CSV).unwrap();
        let mut w = RecordWriter::open(dir.path()).unwrap();
        w.append(&record).unwrap();
        drop(w);
        let text = std::fs::read_to_string(dir.path().join(TRIALS_CSV)).unwrap();
        let header = text.lines().next().unwrap();
        assert!(header.contains(",memory_ok,threads_ok,files_ok,"), "{text}");
        let rows: Vec<TrialRecord> = csv::Reader::from_reader(text.as_bytes())
            .deserialize()
            .collect::<Result<_, _>>()
            .unwrap();
        let old: TrialRecord = serde_json::from_str(OLD_JSON).unwrap();
        assert_eq!(rows, vec![old, record]);
        // A file already in today's columns is left as it is.
        RecordWriter::open(dir.path()).unwrap();
        let again = std::fs::read_to_string(dir.path().join(TRIALS_CSV)).unwrap();
        assert_eq!(again, text);
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
