//! The results directory of a sweep: the one place that names its files,
//! creates them private (directory 0700, files 0600: results describe the
//! machine and its processes), appends records as trials end and repairs a
//! line cut by a crash on resume. A crash loses at most the trial in flight.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::plan::SweepPlan;
use super::records::{DoneTrial, TrialRecord};
use crate::host::envinfo::Environment;

/// A file of a results directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFile<'a> {
    /// The sweep's plan, so `--resume` rebuilds the same trials.
    Plan,
    /// The machine and engine versions the sweep ran on.
    Env,
    TrialsCsv,
    TrialsJsonl,
    Summary,
    Analysis,
    ReportMd,
    ReportHtml,
    /// `ckpt compare --output`: the comparison of two sweeps.
    CompareMd,
    CompareJson,
    /// A figure, by stem: `<stem>.svg`.
    Svg(&'a str),
    /// The same figure as `<stem>.png`.
    Png(&'a str),
    /// Every request of a probed move's clients, by trial:
    /// `timeline-<trial>.csv`.
    Timeline(usize),
}

impl ResultFile<'_> {
    /// The file's name inside the directory.
    pub(crate) fn name(&self) -> String {
        match self {
            ResultFile::Plan => "plan.json".into(),
            ResultFile::Env => "env.json".into(),
            ResultFile::TrialsCsv => "trials.csv".into(),
            ResultFile::TrialsJsonl => "trials.jsonl".into(),
            ResultFile::Summary => "summary.csv".into(),
            ResultFile::Analysis => "analysis.json".into(),
            ResultFile::ReportMd => "report.md".into(),
            ResultFile::ReportHtml => "report.html".into(),
            ResultFile::CompareMd => "compare.md".into(),
            ResultFile::CompareJson => "compare.json".into(),
            ResultFile::Svg(stem) => format!("{stem}.svg"),
            ResultFile::Png(stem) => format!("{stem}.png"),
            ResultFile::Timeline(trial) => format!("timeline-{trial}.csv"),
        }
    }
}

/// A results directory (it may not exist yet).
#[derive(Debug, Clone)]
pub struct ResultsDir {
    dir: PathBuf,
}

/// Records read back, and what had to be repaired on the way.
#[derive(Debug, Default)]
pub struct ReadBack {
    pub records: Vec<TrialRecord>,
    /// Lines that could not be parsed (a cut last line after power loss).
    pub dropped_lines: Vec<usize>,
}

impl ResultsDir {
    pub fn new(dir: impl Into<PathBuf>) -> ResultsDir {
        ResultsDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where one of its files is.
    pub fn file(&self, file: ResultFile) -> PathBuf {
        self.dir.join(file.name())
    }

    pub fn has(&self, file: ResultFile) -> bool {
        self.file(file).exists()
    }

    /// Creates the directory (0700) with plan.json and env.json. Refuses a
    /// directory that already holds a sweep: that is what --resume is for,
    /// and overwriting results is never what the user meant.
    pub(crate) fn create(&self, plan: &SweepPlan, env: &Environment) -> Result<()> {
        if self.holds_sweep() {
            bail!(
                "{} already holds a sweep: continue it with `ckpt sweep --resume {}`, or choose another --output",
                self.dir.display(),
                self.dir.display()
            );
        }
        self.create_private()?;
        self.write(ResultFile::Plan, &serde_json::to_vec_pretty(plan)?)?;
        self.write(ResultFile::Env, &serde_json::to_vec_pretty(env)?)
    }

    /// Whether a sweep wrote here (its plan or its records).
    pub(crate) fn holds_sweep(&self) -> bool {
        self.has(ResultFile::Plan) || self.has(ResultFile::TrialsJsonl)
    }

    /// Creates the directory, or makes an existing one, 0700.
    pub(crate) fn create_private(&self) -> Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| {
                format!("cannot create the output directory {}", self.dir.display())
            })?;
        // A pre-existing directory keeps its mode unless we set it.
        let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700));
        Ok(())
    }

    pub(crate) fn read_plan(&self) -> Result<SweepPlan> {
        let path = self.file(ResultFile::Plan);
        let text = std::fs::read(&path).with_context(|| {
            format!(
                "cannot read {}: is {} a ckpt sweep directory?",
                path.display(),
                self.dir.display()
            )
        })?;
        serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a valid sweep plan", path.display()))
    }

    /// The environment the sweep ran in (empty when env.json is missing or
    /// unreadable: the report then says less, nothing fails).
    pub(crate) fn read_env(&self) -> Environment {
        std::fs::read(self.file(ResultFile::Env))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Reads trials.jsonl. Unparseable lines are skipped and reported, never
    /// fatal: a sweep's other results are still good.
    pub(crate) fn read_records(&self) -> Result<ReadBack> {
        let mut records = Vec::new();
        let dropped_lines = self.each_record(|_, record| {
            records.push(record);
            Ok(())
        })?;
        Ok(ReadBack {
            records,
            dropped_lines,
        })
    }

    /// Hands each readable record of trials.jsonl, with its line, to
    /// `visit`, one at a time; returns the numbers of the lines that did
    /// not parse.
    fn each_record(
        &self,
        mut visit: impl FnMut(&str, TrialRecord) -> Result<()>,
    ) -> Result<Vec<usize>> {
        let path = self.file(ResultFile::TrialsJsonl);
        let file = File::open(&path).with_context(|| {
            format!(
                "cannot read {}: is {} a ckpt results directory?",
                path.display(),
                self.dir.display()
            )
        })?;
        let mut dropped = Vec::new();
        for (number, line) in BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(record) => visit(&line, upgraded(record))?,
                Err(_) => dropped.push(number + 1),
            }
        }
        Ok(dropped)
    }

    /// The trials of an interrupted sweep, for resuming it: cut lines are
    /// dropped and both record files rewritten without them, so that new
    /// records are not appended after a broken line; trials.csv is rebuilt
    /// from the JSON lines when it was cut or misses rows, and gets today's
    /// columns when an older ckpt wrote it.
    ///
    /// A crash cuts what a sweep was appending, so it shows at the files'
    /// ends, and an older ckpt's CSV shows in its header: both are seen
    /// before the JSON lines are read, and the one pass over them then
    /// writes the new files. Records are never all held: at 100,000 they
    /// would take 80 MB, and the resumed sweep's report reads them again.
    pub(crate) fn repair_records(&self) -> Result<Resumed> {
        if !self.has(ResultFile::TrialsJsonl) {
            return Ok(Resumed::default());
        }
        let csv = self.csv_rows()?;
        let damaged = csv.as_ref().is_some_and(|c| c.cut || !c.current)
            || !ends_with_newline(&self.file(ResultFile::TrialsJsonl))?;
        let mut resumed = self.resume_pass(damaged)?;
        let csv_rows = csv.as_ref().map(|c| c.complete);
        let csv_differs = csv_rows.is_some_and(|rows| rows != resumed.done.len());
        if !damaged && (csv_differs || !resumed.dropped_lines.is_empty()) {
            // The files disagree where their ends do not show it: a crash
            // between a CSV row and its JSON line, or an edit. A second pass.
            resumed = self.resume_pass(true)?;
        }
        if csv_differs && resumed.dropped_lines.is_empty() {
            eprintln!(
                "ckpt: repaired {}: it held {} complete row(s) for {} record(s); rebuilt from {}",
                ResultFile::TrialsCsv.name(),
                csv_rows.unwrap_or(0),
                resumed.done.len(),
                ResultFile::TrialsJsonl.name()
            );
        }
        Ok(resumed)
    }

    /// One pass over trials.jsonl keeping what resuming needs of each
    /// record; with `rewrite`, its readable lines and their CSV rows also go
    /// to new files that replace both record files at the end.
    fn resume_pass(&self, rewrite: bool) -> Result<Resumed> {
        let mut out = rewrite.then(|| Rewrite::start(self)).transpose()?;
        let mut done = Vec::new();
        let dropped_lines = self.each_record(|line, record| {
            done.push(DoneTrial::from(&record));
            match &mut out {
                Some(out) => out.push(line, &record),
                None => Ok(()),
            }
        })?;
        if let Some(out) = out {
            out.finish(self)?;
        }
        Ok(Resumed {
            done,
            dropped_lines,
        })
    }

    /// What trials.csv holds, read as plain rows (counting needs no
    /// parsing); None when there is none.
    fn csv_rows(&self) -> Result<Option<CsvRows>> {
        let path = self.file(ResultFile::TrialsCsv);
        let Ok(mut reader) = csv::Reader::from_path(&path) else {
            return Ok(None);
        };
        let current = *reader.headers()? == csv_header()?;
        // A row of the wrong length (one cut short) is not complete.
        let (mut complete, mut last_ok) = (0, false);
        for row in reader.byte_records() {
            last_ok = row.is_ok();
            complete += usize::from(last_ok);
        }
        // Rows end with a newline: a last row without one was cut in its
        // last field, which no reader can tell from a short value.
        let cut = !ends_with_newline(&path)?;
        if cut && last_ok {
            complete -= 1;
        }
        Ok(Some(CsvRows {
            complete,
            current,
            cut,
        }))
    }

    /// Appends records to trials.csv and trials.jsonl.
    pub(crate) fn record_writer(&self) -> Result<RecordWriter> {
        let csv_path = self.file(ResultFile::TrialsCsv);
        let has_header = csv_path.metadata().map(|m| m.len() > 0).unwrap_or(false);
        if has_header {
            upgrade_csv(&csv_path)?;
        }
        let csv = csv::WriterBuilder::new()
            .has_headers(!has_header)
            .from_writer(open_append(&csv_path)?);
        let jsonl = open_append(&self.file(ResultFile::TrialsJsonl))?;
        Ok(RecordWriter { csv, jsonl })
    }

    /// Writes a whole file, 0600.
    pub(crate) fn write(&self, file: ResultFile, contents: &[u8]) -> Result<()> {
        let path = self.file(file);
        open_new(&path)?
            .write_all(contents)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Makes a file written by someone else's code (a PNG encoder) 0600.
    pub(crate) fn make_private(&self, file: ResultFile) -> Result<()> {
        let path = self.file(file);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot set the mode of {}", path.display()))
    }
}

/// A record as today's ckpt writes it. Older migration records held the
/// analysis's label (`runc+copy`) in `engine` beside the method, and a 0 in
/// `overhead_ms` that nothing had measured: their engine is the engine
/// again (so the series label is not doubled, `runc@host+copy` when
/// merged) and their overhead unknown.
fn upgraded(mut record: TrialRecord) -> TrialRecord {
    let Some(method) = record.method else {
        return record;
    };
    if let Some(engine) = record.engine.strip_suffix(&format!("+{}", method.name())) {
        record.engine = engine.to_string();
        record.overhead_ms = None;
    }
    record
}

/// The CSV columns of a record, in order.
fn csv_header() -> Result<csv::StringRecord> {
    let spec = super::plan::TrialSpec {
        index: 0,
        engine: 0,
        point: crate::model::Point::default(),
        repetition: 0,
        warmup: false,
        method: None,
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
/// land under an old header. (With trials.jsonl beside it, resuming has
/// already rebuilt it from there.) A row that does not parse is never
/// dropped silently: the file is left as it is and the error names its
/// lines, unless the only such row is a last line cut short by a crash (no
/// newline at the end), which is dropped with a warning.
fn upgrade_csv(path: &Path) -> Result<()> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    if *reader.headers()? == csv_header()? {
        return Ok(());
    }
    let cut = !ends_with_newline(path)?;
    let upgraded = replacement(path);
    let mut writer = csv::Writer::from_writer(open_new(&upgraded)?);
    let copied = copy_rows(&mut reader, cut, |record| {
        writer.serialize(record).context("writing trials.csv")
    })
    .and_then(|dropped| {
        writer.flush().context("flushing trials.csv")?;
        Ok(dropped)
    });
    let dropped = match copied {
        Ok(dropped) => dropped,
        Err(e) => {
            let _ = std::fs::remove_file(&upgraded);
            return Err(e.context(format!(
                "cannot give {} today's columns (it is left as it was)",
                path.display()
            )));
        }
    };
    if let Some(line) = dropped {
        eprintln!(
            "ckpt: warning: dropped line {line} of {}: cut short (no newline at the end of the file)",
            path.display()
        );
    }
    std::fs::rename(&upgraded, path).with_context(|| format!("replacing {}", path.display()))
}

/// Hands every row of an old trials.csv, as today's record, to `write`,
/// but for the last one when `cut`; returns that dropped row's line. Fails,
/// naming the lines, when any other row does not parse.
fn copy_rows(
    reader: &mut csv::Reader<File>,
    cut: bool,
    mut write: impl FnMut(&TrialRecord) -> Result<()>,
) -> Result<Option<u64>> {
    let headers = reader.headers()?.clone();
    let (mut bad, mut last) = (Vec::new(), None);
    // A row behind: the last one is known only at the end.
    let mut held: Option<TrialRecord> = None;
    for row in reader.records() {
        let line = match &row {
            Ok(row) => row.position().map(|p| p.line()),
            Err(e) => e.position().map(|p| p.line()),
        };
        if let Some(record) = held.take() {
            write(&record)?;
        }
        let parsed = row.ok().and_then(|r| r.deserialize(Some(&headers)).ok());
        match parsed {
            Some(record) => held = Some(record),
            None => bad.push(line.unwrap_or(0)),
        }
        last = line;
    }
    let dropped = cut.then_some(last).flatten();
    if !bad.iter().all(|line| Some(*line) == dropped) {
        let lines: Vec<String> = bad.iter().map(u64::to_string).collect();
        bail!(
            "line(s) {} do not parse as trial records, and upgrading would drop them: correct or delete those lines (keep a copy of the file), then run again",
            lines.join(", ")
        );
    }
    if let Some(record) = held.filter(|_| dropped.is_none()) {
        write(&record)?;
    }
    Ok(dropped)
}

/// What resuming needs of the records already written.
#[derive(Debug, Default)]
pub(crate) struct Resumed {
    pub done: Vec<DoneTrial>,
    /// Lines that could not be parsed (a cut last line after power loss).
    pub dropped_lines: Vec<usize>,
}

/// trials.csv read as plain rows.
struct CsvRows {
    /// Rows of the header's length that end with a newline.
    complete: usize,
    /// The header is today's.
    current: bool,
    /// The last row was cut short.
    cut: bool,
}

/// Whether a file is empty or ends with a newline: records are appended a
/// line at a time, so anything else ends in a line cut short.
fn ends_with_newline(path: &Path) -> Result<bool> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    let mut last = [0u8];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(last[0] == b'\n')
}

/// Where the new version of a record file is written before it replaces
/// the old one: `trials.csv.new`.
fn replacement(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".new");
    name.into()
}

/// Both record files written anew beside the old ones, and renamed over
/// them once whole: a crash while repairing leaves the old files, to be
/// repaired again.
struct Rewrite {
    csv: csv::Writer<File>,
    jsonl: BufWriter<File>,
}

impl Rewrite {
    fn start(dir: &ResultsDir) -> Result<Rewrite> {
        let csv = open_new(&replacement(&dir.file(ResultFile::TrialsCsv)))?;
        let jsonl = open_new(&replacement(&dir.file(ResultFile::TrialsJsonl)))?;
        Ok(Rewrite {
            csv: csv::Writer::from_writer(csv),
            jsonl: BufWriter::new(jsonl),
        })
    }

    /// A readable record: its JSON line as it was, its CSV row in today's
    /// columns.
    fn push(&mut self, line: &str, record: &TrialRecord) -> Result<()> {
        self.csv.serialize(record).context("writing trials.csv")?;
        self.jsonl
            .write_all(line.as_bytes())
            .and_then(|()| self.jsonl.write_all(b"\n"))
            .context("writing trials.jsonl")
    }

    fn finish(mut self, dir: &ResultsDir) -> Result<()> {
        self.csv.flush().context("writing trials.csv")?;
        self.jsonl.flush().context("writing trials.jsonl")?;
        for file in [ResultFile::TrialsCsv, ResultFile::TrialsJsonl] {
            let path = dir.file(file);
            std::fs::rename(replacement(&path), &path)
                .with_context(|| format!("replacing {}", path.display()))?;
        }
        Ok(())
    }
}

/// Appends records to both files, flushing after every record.
pub struct RecordWriter {
    csv: csv::Writer<File>,
    jsonl: File,
}

/// Creates a result file 0600, or empties it.
fn open_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Opens a result file for appending, created 0600.
fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open {} for writing", path.display()))
}

impl RecordWriter {
    pub(crate) fn append(&mut self, record: &TrialRecord) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::records::Status;

    pub(crate) fn sample(trial: usize) -> TrialRecord {
        let spec = crate::sweep::plan::TrialSpec {
            index: trial,
            engine: 0,
            point: crate::model::Point {
                children: 5,
                ..Default::default()
            },
            repetition: 0,
            warmup: false,
            method: None,
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
            overhead_ms: Some(0.5),
            status: Status::Ok,
            ..TrialRecord::new("r", &spec, "docker")
        }
    }

    /// A directory with `n` sample records in both files, as a sweep
    /// writes them.
    fn written(n: usize) -> (tempfile::TempDir, ResultsDir) {
        let dir = tempfile::tempdir().unwrap();
        let results = ResultsDir::new(dir.path());
        let mut w = results.record_writer().unwrap();
        (0..n).for_each(|i| w.append(&sample(i)).unwrap());
        (dir, results)
    }

    /// Appends raw text to one of the record files (a crash's leftovers).
    fn append_raw(results: &ResultsDir, file: ResultFile, text: &[u8]) {
        let mut f = OpenOptions::new()
            .append(true)
            .open(results.file(file))
            .unwrap();
        f.write_all(text).unwrap();
    }

    /// A sample's CSV row, without a header.
    fn csv_row(trial: usize) -> Vec<u8> {
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        w.serialize(sample(trial)).unwrap();
        w.into_inner().unwrap()
    }

    fn done(trials: std::ops::Range<usize>) -> Vec<DoneTrial> {
        trials.map(|i| DoneTrial::from(&sample(i))).collect()
    }

    fn csv_rows(results: &ResultsDir) -> usize {
        results.csv_rows().unwrap().unwrap().complete
    }

    #[test]
    fn records_round_trip_and_cut_lines_are_dropped() {
        let (_dir, results) = written(2);
        // Power loss: half a line at the end.
        append_raw(
            &results,
            ResultFile::TrialsJsonl,
            b"{\"run_id\":\"r\",\"tri",
        );
        let back = results.repair_records().unwrap();
        assert_eq!(back.done, done(0..2));
        assert_eq!(back.dropped_lines, vec![3]);

        let again = results.read_records().unwrap();
        assert_eq!(again.records.len(), 2);
        assert!(again.dropped_lines.is_empty(), "the cut line was removed");
        let csv = std::fs::read_to_string(results.file(ResultFile::TrialsCsv)).unwrap();
        assert_eq!(csv.lines().count(), 3, "one header and two rows:\n{csv}");
        assert!(csv.starts_with("run_id,trial,engine,children"));
    }

    #[test]
    fn a_cut_csv_row_is_rebuilt_from_the_json_lines() {
        let (_dir, results) = written(2);
        let csv_path = results.file(ResultFile::TrialsCsv);
        let csv = std::fs::read_to_string(&csv_path).unwrap();
        std::fs::write(&csv_path, &csv[..csv.len() - 20]).unwrap();
        let back = results.repair_records().unwrap();
        assert_eq!(back.done.len(), 2);
        assert_eq!(csv_rows(&results), 2);
    }

    #[test]
    fn an_intact_directory_is_left_as_it_is() {
        let (dir, results) = written(3);
        let files = [ResultFile::TrialsCsv, ResultFile::TrialsJsonl];
        let before = files.map(|f| std::fs::read(results.file(f)).unwrap());
        let back = results.repair_records().unwrap();
        assert_eq!((back.done, back.dropped_lines), (done(0..3), vec![]));
        assert_eq!(
            files.map(|f| std::fs::read(results.file(f)).unwrap()),
            before
        );
        let names = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(names, 2, "no new file is left behind");
    }

    #[test]
    fn a_crash_between_a_csv_row_and_its_json_line_is_repaired() {
        // The row is whole, its JSON line was never written: both files
        // end whole, and only their counts tell.
        let (_dir, results) = written(2);
        append_raw(&results, ResultFile::TrialsCsv, &csv_row(2));
        let back = results.repair_records().unwrap();
        assert_eq!((back.done, back.dropped_lines), (done(0..2), vec![]));
        assert_eq!(csv_rows(&results), 2);

        // The row cut in its last field: of the right length, but without
        // its newline.
        let row = csv_row(2);
        append_raw(&results, ResultFile::TrialsCsv, &row[..row.len() - 1]);
        assert_eq!(csv_rows(&results), 2);
        assert_eq!(results.repair_records().unwrap().done, done(0..2));
        let csv = std::fs::read(results.file(ResultFile::TrialsCsv)).unwrap();
        assert!(csv.ends_with(b"\n") && !results.csv_rows().unwrap().unwrap().cut);
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
        let results = ResultsDir::new(dir.path());
        std::fs::write(
            results.file(ResultFile::TrialsJsonl),
            format!("{OLD_JSON}\n"),
        )
        .unwrap();
        std::fs::write(results.file(ResultFile::TrialsCsv), OLD_CSV).unwrap();
        assert_eq!(results.read_records().unwrap().records.len(), 1);
        let rows = results.csv_rows().unwrap().unwrap();
        assert_eq!((rows.complete, rows.current), (1, false));
    }

    /// A migration record as ckpt wrote it before the method left the
    /// engine column (docs/results/migration), cut to the fields at issue.
    const OLD_MOVE: &str = r#"{"run_id":"r","trial":1,"engine":"runc+lazy","children":0,"repetition":0,"warmup":false,"started_at":"","restore_retries":0,"verified":true,"overhead_ms":0.0,"status":"ok","method":"lazy","downtime_ms":363.4}"#;

    #[test]
    fn an_older_migration_record_reads_with_its_engine_and_no_overhead() {
        let dir = tempfile::tempdir().unwrap();
        let results = ResultsDir::new(dir.path());
        let plain = OLD_JSON.replace("\"overhead_ms\":0.363603", "\"overhead_ms\":0.0");
        let text = format!("{OLD_MOVE}\n{plain}\n");
        std::fs::write(results.file(ResultFile::TrialsJsonl), text).unwrap();
        let records = results.read_records().unwrap().records;
        let moved = &records[0];
        assert_eq!(
            (moved.engine.as_str(), moved.series().as_str()),
            ("runc", "runc+lazy")
        );
        assert_eq!(moved.overhead_ms, None, "its 0 was never measured");
        // A plain trial's 0 is its own, and stays.
        assert_eq!(
            (records[1].series().as_str(), records[1].overhead_ms),
            ("runc", Some(0.0))
        );
    }

    #[test]
    fn an_empty_overhead_in_csv_reads_as_unknown() {
        let mut record = sample(0);
        record.overhead_ms = None;
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.serialize(&record).unwrap();
        let bytes = writer.into_inner().unwrap();
        let back: TrialRecord = csv::Reader::from_reader(bytes.as_slice())
            .deserialize()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(back.overhead_ms, None);
    }

    #[test]
    fn resuming_an_older_sweep_gives_its_csv_todays_columns() {
        let dir = tempfile::tempdir().unwrap();
        let results = ResultsDir::new(dir.path());
        let jsonl = format!("{OLD_JSON}\n");
        std::fs::write(results.file(ResultFile::TrialsJsonl), &jsonl).unwrap();
        std::fs::write(results.file(ResultFile::TrialsCsv), OLD_CSV).unwrap();
        let back = results.repair_records().unwrap();
        assert_eq!(back.done.len(), 1);
        let rows = results.csv_rows().unwrap().unwrap();
        assert_eq!((rows.complete, rows.current), (1, true));
        let csv: Vec<TrialRecord> = csv::Reader::from_path(results.file(ResultFile::TrialsCsv))
            .unwrap()
            .deserialize()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(csv, vec![serde_json::from_str(OLD_JSON).unwrap()]);
        let kept = std::fs::read_to_string(results.file(ResultFile::TrialsJsonl)).unwrap();
        assert_eq!(kept, jsonl, "the JSON lines are kept as they were");
    }

    #[test]
    fn new_columns_are_written_and_an_old_csv_gets_them_before_new_rows() {
        let mut record = sample(1);
        (record.memory_ok, record.threads_ok, record.files_ok) = (Some(true), Some(false), None);
        (record.host_mounts, record.host_load1) = (Some(22), Some(0.5));
        let line = serde_json::to_string(&record).unwrap();
        assert!(
            line.contains(r#""memory_ok":true,"threads_ok":false,"files_ok":null"#),
            "{line}"
        );

        // Resuming a sweep that an older ckpt started.
        let dir = tempfile::tempdir().unwrap();
        let results = ResultsDir::new(dir.path());
        std::fs::write(results.file(ResultFile::TrialsCsv), OLD_CSV).unwrap();
        let mut w = results.record_writer().unwrap();
        w.append(&record).unwrap();
        drop(w);
        let text = std::fs::read_to_string(results.file(ResultFile::TrialsCsv)).unwrap();
        let header = text.lines().next().unwrap();
        assert!(header.contains(",memory_ok,threads_ok,files_ok,"), "{text}");
        assert!(
            header.ends_with(",engine_unreachable,host_memcg_dying,host_mounts,host_netns,host_content_items,\
                host_dockerd_rss_kib,host_dockerd_cpu_ms,host_containerd_rss_kib,host_containerd_cpu_ms,\
                host_mem_available_mib,host_load1,state_ok,setup_ms,check_ms,client_connections,\
                client_kept,client_requests,client_failed,client_unknown,client_reconnects,\
                client_gap_ms,client_p99_in_ms,client_counters_ok"),
            "{text}"
        );
        let rows: Vec<TrialRecord> = csv::Reader::from_reader(text.as_bytes())
            .deserialize()
            .collect::<Result<_, _>>()
            .unwrap();
        let old: TrialRecord = serde_json::from_str(OLD_JSON).unwrap();
        assert_eq!(rows, vec![old, record]);
        // A file already in today's columns is left as it is.
        results.record_writer().unwrap();
        let again = std::fs::read_to_string(results.file(ResultFile::TrialsCsv)).unwrap();
        assert_eq!(again, text);
    }

    /// OLD_CSV with `rows` appended.
    fn old_csv_with(rows: &str) -> (tempfile::TempDir, ResultsDir) {
        let dir = tempfile::tempdir().unwrap();
        let results = ResultsDir::new(dir.path());
        std::fs::write(
            results.file(ResultFile::TrialsCsv),
            format!("{OLD_CSV}{rows}"),
        )
        .unwrap();
        (dir, results)
    }

    fn old_row(trial: usize) -> String {
        OLD_CSV
            .lines()
            .nth(1)
            .unwrap()
            .replacen(",1,runc,", &format!(",{trial},runc,"), 1)
    }

    #[test]
    fn an_old_csv_with_rows_that_do_not_parse_is_not_upgraded() {
        let rows = format!(
            "{}\nnot,a,row\n{}\n{}\n",
            old_row(2),
            old_row(3),
            "x".repeat(5)
        );
        let (_dir, results) = old_csv_with(&rows);
        let path = results.file(ResultFile::TrialsCsv);
        let before = std::fs::read(&path).unwrap();
        let err = format!("{:#}", results.record_writer().err().expect("refused"));
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("line(s) 4, 6 do not parse"), "{err}");
        assert!(err.contains("correct or delete those lines"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "left as it was");
        assert!(!replacement(&path).exists());
    }

    #[test]
    fn a_cut_last_line_of_an_old_csv_is_dropped() {
        // Cut after its last field: it parses, but nothing says it is whole.
        let (_dir, results) = old_csv_with(&format!("{}\n{}", old_row(2), old_row(3)));
        results.record_writer().unwrap();
        let rows: Vec<TrialRecord> = csv::Reader::from_path(results.file(ResultFile::TrialsCsv))
            .unwrap()
            .deserialize()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.iter().map(|r| r.trial).collect::<Vec<_>>(), [1, 2]);

        // Cut in the middle: it does not parse.
        let row = old_row(3);
        let (_dir, results) = old_csv_with(&row[..row.len() / 2]);
        results.record_writer().unwrap();
        let rows = results.csv_rows().unwrap().unwrap();
        assert_eq!((rows.complete, rows.current), (1, true));
    }

    #[test]
    fn result_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let results = ResultsDir::new(dir.path());
        results.record_writer().unwrap().append(&sample(0)).unwrap();
        results.write(ResultFile::Summary, b"x").unwrap();
        for file in [
            ResultFile::TrialsCsv,
            ResultFile::TrialsJsonl,
            ResultFile::Summary,
        ] {
            let mode = std::fs::metadata(results.file(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.name());
        }
    }
}
