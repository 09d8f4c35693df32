//! The workload protocol: the lines a program inside a ckpt container
//! prints so that ckpt can wait on facts and check what a restore brought
//! back, written and parsed by this one definition.
//!
//! Every line is `ckpt <kind> key=value ...`, one line per event, with no
//! spaces inside a value:
//!
//! ```text
//! ckpt ready workload=fib pid=1
//! ckpt ready workload=forker children=2 memory_mib=16 threads=3 files=5 checksum=00c0ffee00c0ffee pids=1,7,8
//! ckpt fib index=7 value=13
//! ckpt parent pid=1 tick=4
//! ckpt child pid=7 tick=4
//! ckpt memory pid=7 ok=true memory=true threads=3 files=5
//! ckpt memcpy mib=256 mib_per_s=9876.5
//! ```
//!
//! The static workload (`ckpt-workload`) prints these lines through the
//! types' [`Display`](std::fmt::Display); ckpt reads them with [`Line::parse`]
//! (or the `parse` of one type). The seed's Python programs
//! (`examples/seed/*.py`) print a subset: their `ready` lines carry fewer
//! fields and their child lines no tick, which is why those fields are
//! optional here. Keys a parser does not know are ignored, so an older ckpt
//! still reads a newer workload's lines.
//!
//! The pure checks on these lines live here too: the Fibonacci continuity
//! after a restore ([`continuity`]) and the verdict on the forker's state
//! reports ([`StateVerdict::judge`]).
//!
//! Standard library only: the crate is linked into the static workload
//! binary that is copied into `FROM scratch` images.

use std::fmt;
use std::str::FromStr;

/// The first word of every protocol line.
pub const PREFIX: &str = "ckpt";

/// Any line of the protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Ready(Ready),
    Fib(FibStep),
    Tick(Tick),
    State(StateReport),
    Memcpy(Memcpy),
}

impl Line {
    /// Parses one line of output. Lines that are not the protocol's give
    /// [`ParseError::NotProtocol`]; protocol lines with a missing or bad
    /// field give the other errors.
    pub fn parse(text: &str) -> Result<Line, ParseError> {
        let fields = Fields::split(text)?;
        Ok(match fields.kind {
            Ready::KIND => Line::Ready(Ready::from_fields(&fields)?),
            FibStep::KIND => Line::Fib(FibStep::from_fields(&fields)?),
            "parent" | "child" => Line::Tick(Tick::from_fields(&fields)?),
            StateReport::KIND => Line::State(StateReport::from_fields(&fields)?),
            Memcpy::KIND => Line::Memcpy(Memcpy::from_fields(&fields)?),
            other => return Err(ParseError::UnknownKind(other.to_string())),
        })
    }

    /// The line's kind: its second word.
    pub fn kind(&self) -> &'static str {
        match self {
            Line::Ready(_) => Ready::KIND,
            Line::Fib(_) => FibStep::KIND,
            Line::Tick(t) => t.role.kind(),
            Line::State(_) => StateReport::KIND,
            Line::Memcpy(_) => Memcpy::KIND,
        }
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Ready(l) => l.fmt(f),
            Line::Fib(l) => l.fmt(f),
            Line::Tick(l) => l.fmt(f),
            Line::State(l) => l.fmt(f),
            Line::Memcpy(l) => l.fmt(f),
        }
    }
}

/// Why a line could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The first word is not `ckpt`: other output, not the protocol.
    NotProtocol,
    /// `ckpt` and nothing after it.
    MissingKind,
    /// A kind this protocol does not define.
    UnknownKind(String),
    /// A line of another kind than the one asked for.
    WrongKind {
        expected: &'static str,
        found: String,
    },
    /// A word after the kind that is not `key=value`.
    NotKeyValue(String),
    /// The same key twice.
    DuplicateKey(String),
    MissingField(&'static str),
    InvalidValue {
        key: &'static str,
        value: String,
    },
    /// A `ready` line of a workload this protocol does not define.
    UnknownWorkload(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotProtocol => write!(f, "not a line of the workload protocol"),
            ParseError::MissingKind => write!(f, "'{PREFIX}' without a kind"),
            ParseError::UnknownKind(k) => write!(f, "unknown kind '{k}'"),
            ParseError::WrongKind { expected, found } => {
                write!(f, "a '{found}' line, not a '{expected}' line")
            }
            ParseError::NotKeyValue(w) => write!(f, "'{w}' is not key=value"),
            ParseError::DuplicateKey(k) => write!(f, "'{k}' appears twice"),
            ParseError::MissingField(k) => write!(f, "no '{k}' field"),
            ParseError::InvalidValue { key, value } => write!(f, "{key}: '{value}' is not valid"),
            ParseError::UnknownWorkload(w) => write!(f, "unknown workload '{w}'"),
        }
    }
}

impl std::error::Error for ParseError {}

/// The words of a protocol line: its kind and its `key=value` pairs.
struct Fields<'a> {
    kind: &'a str,
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Fields<'a> {
    fn split(text: &'a str) -> Result<Fields<'a>, ParseError> {
        let mut words = text.split_whitespace();
        if words.next() != Some(PREFIX) {
            return Err(ParseError::NotProtocol);
        }
        let kind = words.next().ok_or(ParseError::MissingKind)?;
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for word in words {
            let (key, value) = word
                .split_once('=')
                .filter(|(key, _)| !key.is_empty())
                .ok_or_else(|| ParseError::NotKeyValue(word.to_string()))?;
            if pairs.iter().any(|(seen, _)| *seen == key) {
                return Err(ParseError::DuplicateKey(key.to_string()));
            }
            pairs.push((key, value));
        }
        Ok(Fields { kind, pairs })
    }

    /// The fields of a line that must be of kind `kind`.
    fn of_kind(text: &'a str, kind: &'static str) -> Result<Fields<'a>, ParseError> {
        let fields = Fields::split(text)?;
        if fields.kind != kind {
            return Err(ParseError::WrongKind {
                expected: kind,
                found: fields.kind.to_string(),
            });
        }
        Ok(fields)
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn optional_with<T>(
        &self,
        key: &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ParseError> {
        self.get(key)
            .map(|value| {
                parse(value).ok_or_else(|| ParseError::InvalidValue {
                    key,
                    value: value.to_string(),
                })
            })
            .transpose()
    }

    fn optional<T: FromStr>(&self, key: &'static str) -> Result<Option<T>, ParseError> {
        self.optional_with(key, |v| v.parse().ok())
    }

    fn required<T: FromStr>(&self, key: &'static str) -> Result<T, ParseError> {
        self.optional(key)?.ok_or(ParseError::MissingField(key))
    }
}

/// The workload is set up and may be checkpointed from now on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// `ckpt ready workload=fib pid=P`; the Python seed prints no pid.
    Fib { pid: Option<u32> },
    /// `ckpt ready workload=forker children=N ... pids=P,C1,C2`.
    Forker(ForkerReady),
}

/// The forker's ready line: every child has set up what it holds.
///
/// The static workload prints every field; the Python seed only
/// `children` and `pids`, and workloads before threads and files existed
/// printed `memory_mib` and `checksum` without them. A field that is
/// `None` is left out of the line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForkerReady {
    pub children: u32,
    /// Memory each process wrote.
    pub memory_mib: Option<u64>,
    /// Extra threads in each process.
    pub threads: Option<u32>,
    /// Open files in each process.
    pub files: Option<u32>,
    /// Checksum of the parent's memory (printed as 16 hex digits).
    pub checksum: Option<u64>,
    /// Every process, the parent first.
    pub pids: Vec<u32>,
}

impl Ready {
    const KIND: &'static str = "ready";

    pub fn parse(text: &str) -> Result<Ready, ParseError> {
        Ready::from_fields(&Fields::of_kind(text, Ready::KIND)?)
    }

    fn from_fields(fields: &Fields) -> Result<Ready, ParseError> {
        match fields.required::<String>("workload")?.as_str() {
            "fib" => Ok(Ready::Fib {
                pid: fields.optional("pid")?,
            }),
            "forker" => Ok(Ready::Forker(ForkerReady {
                children: fields.required("children")?,
                memory_mib: fields.optional("memory_mib")?,
                threads: fields.optional("threads")?,
                files: fields.optional("files")?,
                checksum: fields.optional_with("checksum", parse_hex)?,
                pids: fields
                    .optional_with("pids", parse_pids)?
                    .ok_or(ParseError::MissingField("pids"))?,
            })),
            other => Err(ParseError::UnknownWorkload(other.to_string())),
        }
    }

    /// The processes the workload announced (the parent first); just the
    /// fib printer's own pid, when it said it.
    pub fn pids(&self) -> Vec<u32> {
        match self {
            Ready::Fib { pid } => pid.iter().copied().collect(),
            Ready::Forker(f) => f.pids.clone(),
        }
    }
}

fn parse_hex(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

fn parse_pids(text: &str) -> Option<Vec<u32>> {
    text.split(',').map(|p| p.parse().ok()).collect()
}

impl fmt::Display for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX} {} workload=", Ready::KIND)?;
        match self {
            Ready::Fib { pid } => {
                write!(f, "fib")?;
                if let Some(pid) = pid {
                    write!(f, " pid={pid}")?;
                }
                Ok(())
            }
            Ready::Forker(r) => {
                write!(f, "forker children={}", r.children)?;
                if let Some(m) = r.memory_mib {
                    write!(f, " memory_mib={m}")?;
                }
                if let Some(t) = r.threads {
                    write!(f, " threads={t}")?;
                }
                if let Some(n) = r.files {
                    write!(f, " files={n}")?;
                }
                if let Some(c) = r.checksum {
                    write!(f, " checksum={c:016x}")?;
                }
                write!(f, " pids=")?;
                for (i, pid) in r.pids.iter().enumerate() {
                    let comma = if i > 0 { "," } else { "" };
                    write!(f, "{comma}{pid}")?;
                }
                Ok(())
            }
        }
    }
}

/// One number of the Fibonacci printer: `ckpt fib index=I value=V`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FibStep {
    pub index: u64,
    /// F(index), with wrapping addition past F(186) (the Python seed's
    /// unbounded integers no longer parse from there).
    pub value: u128,
}

impl FibStep {
    const KIND: &'static str = "fib";

    pub fn parse(text: &str) -> Result<FibStep, ParseError> {
        FibStep::from_fields(&Fields::of_kind(text, FibStep::KIND)?)
    }

    fn from_fields(fields: &Fields) -> Result<FibStep, ParseError> {
        Ok(FibStep {
            index: fields.required("index")?,
            value: fields.required("value")?,
        })
    }
}

impl fmt::Display for FibStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX} {} index={} value={}",
            FibStep::KIND,
            self.index,
            self.value
        )
    }
}

/// The Fibonacci sequence as the printer prints it: F(0) = 0 first, with
/// the wrapping addition that [`continuity`] expects.
#[derive(Debug, Clone)]
pub struct Fibonacci {
    index: u64,
    current: u128,
    next: u128,
}

impl Default for Fibonacci {
    fn default() -> Fibonacci {
        Fibonacci {
            index: 0,
            current: 0,
            next: 1,
        }
    }
}

impl Iterator for Fibonacci {
    type Item = FibStep;

    fn next(&mut self) -> Option<FibStep> {
        let step = FibStep {
            index: self.index,
            value: self.current,
        };
        self.index = self.index.checked_add(1)?;
        (self.current, self.next) = (self.next, self.current.wrapping_add(self.next));
        Some(step)
    }
}

/// The verdict on a restored Fibonacci printer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Continuity {
    /// The first number after the restore follows the last one before.
    Continues {
        last_before: FibStep,
        first_after: FibStep,
    },
    /// The sequence started over (index 0 after the restore).
    Restarted {
        last_before: FibStep,
        first_after: FibStep,
    },
    /// Numbers were skipped or repeated.
    Broken {
        last_before: FibStep,
        first_after: FibStep,
    },
    /// Not enough output to judge.
    Unknown(String),
}

impl Continuity {
    pub fn holds(&self) -> bool {
        matches!(self, Continuity::Continues { .. })
    }
}

/// Judges continuity from the steps printed before the checkpoint and the
/// first step printed after the restore. Checks both the index and the
/// value, which must be the Fibonacci successor (with the workload's
/// wrapping addition).
pub fn continuity(before: &[FibStep], first_after: Option<FibStep>) -> Continuity {
    let (Some(&last), Some(first)) = (before.last(), first_after) else {
        return Continuity::Unknown(
            "no Fibonacci line before the checkpoint or after the restore".into(),
        );
    };
    let expected_value = match before.len() {
        1 => 1, // F(0) = 0 is followed by F(1) = 1
        n => before[n - 2].value.wrapping_add(last.value),
    };
    let (last_before, first_after) = (last, first);
    if first.index == last.index + 1 && first.value == expected_value {
        Continuity::Continues {
            last_before,
            first_after,
        }
    } else if first.index == 0 && last.index != 0 {
        Continuity::Restarted {
            last_before,
            first_after,
        }
    } else {
        Continuity::Broken {
            last_before,
            first_after,
        }
    }
}

/// Which of the forker's processes prints a tick line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Parent,
    Child,
}

impl Role {
    /// The line kind of this role's ticks.
    pub fn kind(self) -> &'static str {
        match self {
            Role::Parent => "parent",
            Role::Child => "child",
        }
    }
}

/// A forker process is alive: `ckpt child pid=P tick=T t_us=U` (or
/// `parent`), `t_us` the wall clock in microseconds since the epoch, so
/// that the gap a migration makes in the ticks can be measured across two
/// hosts' logs. The Python seed's children print no tick; older workloads
/// no time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub role: Role,
    pub pid: u32,
    pub tick: Option<u64>,
    pub at_us: Option<u64>,
}

impl Tick {
    pub fn parse(text: &str) -> Result<Tick, ParseError> {
        let fields = Fields::split(text)?;
        if !matches!(fields.kind, "parent" | "child") {
            return Err(ParseError::WrongKind {
                expected: "parent or child",
                found: fields.kind.to_string(),
            });
        }
        Tick::from_fields(&fields)
    }

    fn from_fields(fields: &Fields) -> Result<Tick, ParseError> {
        Ok(Tick {
            role: if fields.kind == "parent" {
                Role::Parent
            } else {
                Role::Child
            },
            pid: fields.required("pid")?,
            tick: fields.optional("tick")?,
            at_us: fields.optional("t_us")?,
        })
    }
}

impl fmt::Display for Tick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX} {} pid={}", self.role.kind(), self.pid)?;
        if let Some(tick) = self.tick {
            write!(f, " tick={tick}")?;
        }
        if let Some(at) = self.at_us {
            write!(f, " t_us={at}")?;
        }
        Ok(())
    }
}

/// What one of the forker's processes says when asked to check itself
/// (SIGUSR1): `ckpt memory pid=P ok=B memory=B threads=T files=F`, with
/// its extra threads and its open files counted after the restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateReport {
    pub pid: u32,
    /// The process's own verdict against what it was started with.
    pub ok: bool,
    /// The memory's checksum matches what the process wrote.
    pub memory: bool,
    /// Threads besides the main one.
    pub threads: u32,
    pub files: u32,
}

impl StateReport {
    const KIND: &'static str = "memory";

    pub fn parse(text: &str) -> Result<StateReport, ParseError> {
        StateReport::from_fields(&Fields::of_kind(text, StateReport::KIND)?)
    }

    fn from_fields(fields: &Fields) -> Result<StateReport, ParseError> {
        Ok(StateReport {
            pid: fields.required("pid")?,
            ok: fields.required("ok")?,
            memory: fields.required("memory")?,
            threads: fields.required("threads")?,
            files: fields.required("files")?,
        })
    }

    /// What did not come back, against the point the process was started
    /// with; empty when everything did.
    pub fn problems(&self, threads: u32, files: u32) -> Vec<String> {
        let mut out = Vec::new();
        if !self.memory {
            out.push("memory differs from what it wrote".to_string());
        }
        if self.threads != threads {
            out.push(format!("{} of {threads} extra threads", self.threads));
        }
        if self.files != files {
            out.push(format!("{} of {files} open files", self.files));
        }
        out
    }
}

impl fmt::Display for StateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX} {} pid={} ok={} memory={} threads={} files={}",
            StateReport::KIND,
            self.pid,
            self.ok,
            self.memory,
            self.threads,
            self.files
        )
    }
}

/// The verdict on a restored forker from its processes' state reports:
/// memory, threads and files judged separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateVerdict {
    /// Every process found its memory intact.
    pub memory: bool,
    /// Every process has all its extra threads.
    pub threads: bool,
    /// Every process has all its open files.
    pub files: bool,
    /// What did not come back, in words; None when everything did.
    pub problem: Option<String>,
}

impl StateVerdict {
    /// Judges the reports against the processes that should have answered
    /// (`pids`) and what each was started with. When the reports come
    /// from other processes than `pids`, nothing counts as confirmed.
    pub fn judge(reports: &[StateReport], pids: &[u32], threads: u32, files: u32) -> StateVerdict {
        let bad: Vec<String> = reports
            .iter()
            .filter_map(|r| {
                let problems = r.problems(threads, files);
                (!problems.is_empty()).then(|| format!("pid {}: {}", r.pid, problems.join(", ")))
            })
            .collect();
        let answered: Vec<u32> = reports.iter().map(|r| r.pid).collect();
        let all_answered = same_set(pids, &answered);
        let every = |good: &dyn Fn(&StateReport) -> bool| all_answered && reports.iter().all(good);
        StateVerdict {
            memory: every(&|r| r.memory),
            threads: every(&|r| r.threads == threads),
            files: every(&|r| r.files == files),
            problem: if !bad.is_empty() {
                Some(format!("after the restore, {}", bad.join("; ")))
            } else if !all_answered {
                Some(format!(
                    "memory checks came from pids {answered:?}, expected {pids:?}"
                ))
            } else {
                None
            },
        }
    }

    /// Everything came back.
    pub fn holds(&self) -> bool {
        self.memory && self.threads && self.files
    }
}

fn same_set(a: &[u32], b: &[u32]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

/// The machine's memory copy bandwidth: `ckpt memcpy mib=M mib_per_s=R`,
/// the rate printed with one decimal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Memcpy {
    pub mib: u64,
    pub mib_per_s: f64,
}

impl Memcpy {
    const KIND: &'static str = "memcpy";

    pub fn parse(text: &str) -> Result<Memcpy, ParseError> {
        Memcpy::from_fields(&Fields::of_kind(text, Memcpy::KIND)?)
    }

    fn from_fields(fields: &Fields) -> Result<Memcpy, ParseError> {
        Ok(Memcpy {
            mib: fields.required("mib")?,
            mib_per_s: fields.required("mib_per_s")?,
        })
    }
}

impl fmt::Display for Memcpy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX} {} mib={} mib_per_s={:.1}",
            Memcpy::KIND,
            self.mib,
            self.mib_per_s
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forker_ready() -> ForkerReady {
        ForkerReady {
            children: 2,
            memory_mib: Some(16),
            threads: Some(3),
            files: Some(5),
            checksum: Some(0x00c0_ffee_0000_0042),
            pids: vec![1, 7, 8],
        }
    }

    fn every_kind() -> Vec<Line> {
        vec![
            Line::Ready(Ready::Fib { pid: Some(1) }),
            Line::Ready(Ready::Fib { pid: None }),
            Line::Ready(Ready::Forker(forker_ready())),
            Line::Ready(Ready::Forker(ForkerReady {
                children: 0,
                pids: vec![4242],
                ..ForkerReady::default()
            })),
            Line::Fib(FibStep {
                index: 186,
                value: u128::MAX,
            }),
            Line::Tick(Tick {
                role: Role::Parent,
                pid: 1,
                tick: Some(4),
                at_us: Some(1_795_000_000_123_456),
            }),
            Line::Tick(Tick {
                role: Role::Child,
                pid: 7,
                tick: None,
                at_us: None,
            }),
            Line::State(StateReport {
                pid: 7,
                ok: false,
                memory: true,
                threads: 15,
                files: 64,
            }),
            Line::Memcpy(Memcpy {
                mib: 256,
                mib_per_s: 9876.5,
            }),
        ]
    }

    #[test]
    fn every_line_round_trips() {
        for line in every_kind() {
            let text = line.to_string();
            assert_eq!(Line::parse(&text), Ok(line.clone()), "{text}");
            assert!(text.starts_with("ckpt "), "{text}");
            assert_eq!(text.split_whitespace().nth(1), Some(line.kind()));
            assert!(!text.contains('\n'), "{text}");
        }
    }

    #[test]
    fn each_type_parses_its_own_kind_only() {
        let ready = Ready::Forker(forker_ready());
        assert_eq!(Ready::parse(&ready.to_string()), Ok(ready));
        let step = FibStep {
            index: 7,
            value: 13,
        };
        assert_eq!(FibStep::parse(&step.to_string()), Ok(step));
        assert_eq!(
            StateReport::parse(&step.to_string()),
            Err(ParseError::WrongKind {
                expected: "memory",
                found: "fib".into()
            })
        );
        assert!(matches!(
            Tick::parse("ckpt fib index=1 value=1"),
            Err(ParseError::WrongKind { .. })
        ));
        assert!(matches!(
            Memcpy::parse("ckpt ready workload=fib"),
            Err(ParseError::WrongKind { .. })
        ));
    }

    /// The lines exactly as the workload printed them before this crate
    /// (`say(format_args!(...))` in ckpt-workload) and as the Python seed
    /// prints them: they parse, and the static workload's ones are written
    /// back byte for byte.
    #[test]
    fn todays_lines_parse_and_are_written_byte_for_byte() {
        let (pid, tick, index, current) = (7u32, 3u64, 5u64, 5u128);
        let (children, memory_mib, threads, files) = (2u32, 16u64, 3u32, 5u32);
        let (checksum, list) = (0xcbf2_9ce4_8422_2325u64, "1,7,8");
        let (ok, memory, extra) = (true, true, 3u32);
        let (mib, rate) = (256usize, 12345.678f64);
        let workload = [
            format!("ckpt ready workload=fib pid={pid}"),
            format!("ckpt fib index={index} value={current}"),
            format!(
                "ckpt ready workload=forker children={} memory_mib={} threads={} files={} checksum={:016x} pids={}",
                children, memory_mib, threads, files, checksum, list
            ),
            format!("ckpt parent pid={pid} tick={tick}"),
            format!("ckpt child pid={pid} tick={tick}"),
            format!("ckpt memory pid={pid} ok={ok} memory={memory} threads={extra} files={files}"),
            format!("ckpt memcpy mib={mib} mib_per_s={:.1}", rate),
            // Literal copies, as they appear in a container's log.
            "ckpt ready workload=forker children=2 memory_mib=0 threads=0 files=0 checksum=cbf29ce484222325 pids=1,7,8".into(),
            "ckpt memory pid=8 ok=false memory=false threads=15 files=64".into(),
            "ckpt fib index=12 value=144".into(),
            "ckpt memcpy mib=256 mib_per_s=10240.0".into(),
        ];
        for text in &workload {
            let line = Line::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(&line.to_string(), text);
        }
        // The Python seed (examples/seed), and the forker's ready line
        // before threads and files existed.
        let others = [
            "ckpt ready workload=fib",
            "ckpt ready workload=forker children=3 pids=10,11,12,13",
            "ckpt child pid=11",
            "ckpt ready workload=forker children=1 memory_mib=8 checksum=00000000000000ff pids=1,7",
        ];
        for text in others {
            let line = Line::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(line.to_string(), text);
        }
        let Ok(Line::Ready(ready)) = Line::parse(others[1]) else {
            panic!("not a ready line");
        };
        assert_eq!(ready.pids(), vec![10, 11, 12, 13]);
    }

    #[test]
    fn fields_in_another_order_extra_keys_and_spacing_are_accepted() {
        let line = Line::parse("  ckpt fib value=13   index=7 since=now\r\n").unwrap();
        assert_eq!(
            line,
            Line::Fib(FibStep {
                index: 7,
                value: 13
            })
        );
    }

    #[test]
    fn malformed_lines_are_rejected() {
        use ParseError::*;
        let cases: &[(&str, ParseError)] = &[
            ("", NotProtocol),
            ("hello world", NotProtocol),
            ("ckpt: done", NotProtocol),
            ("ckptfib index=1 value=1", NotProtocol),
            ("ckpt", MissingKind),
            ("ckpt sweep run=1", UnknownKind("sweep".into())),
            ("ckpt fib index=1 value", NotKeyValue("value".into())),
            ("ckpt fib index=1 =1", NotKeyValue("=1".into())),
            (
                "ckpt fib index=1 index=2 value=1",
                DuplicateKey("index".into()),
            ),
            ("ckpt fib index=1", MissingField("value")),
            (
                "ckpt fib index=-1 value=1",
                InvalidValue {
                    key: "index",
                    value: "-1".into(),
                },
            ),
            (
                "ckpt fib index=1 value=340282366920938463463374607431768211456",
                InvalidValue {
                    key: "value",
                    value: "340282366920938463463374607431768211456".into(),
                },
            ),
            ("ckpt ready pid=1", MissingField("workload")),
            ("ckpt ready workload=web", UnknownWorkload("web".into())),
            (
                "ckpt ready workload=forker pids=1",
                MissingField("children"),
            ),
            (
                "ckpt ready workload=forker children=1",
                MissingField("pids"),
            ),
            (
                "ckpt ready workload=forker children=1 pids=1,x",
                InvalidValue {
                    key: "pids",
                    value: "1,x".into(),
                },
            ),
            (
                "ckpt ready workload=forker children=0 pids=",
                InvalidValue {
                    key: "pids",
                    value: "".into(),
                },
            ),
            (
                "ckpt ready workload=forker children=0 checksum=xyz pids=1",
                InvalidValue {
                    key: "checksum",
                    value: "xyz".into(),
                },
            ),
            ("ckpt child tick=1", MissingField("pid")),
            // Before threads and files were counted, a state report said
            // only ok: it cannot be judged field by field.
            ("ckpt memory pid=7 ok=true", MissingField("memory")),
            (
                "ckpt memory pid=7 ok=yes memory=true threads=0 files=0",
                InvalidValue {
                    key: "ok",
                    value: "yes".into(),
                },
            ),
            ("ckpt memcpy mib=256", MissingField("mib_per_s")),
        ];
        for (text, error) in cases {
            assert_eq!(Line::parse(text).as_ref(), Err(error), "{text:?}");
        }
        assert_eq!(
            MissingField("pids").to_string(),
            "no 'pids' field",
            "errors read as sentences"
        );
    }

    #[test]
    fn fibonacci_wraps_as_continuity_expects() {
        let first: Vec<u128> = Fibonacci::default().take(8).map(|s| s.value).collect();
        assert_eq!(first, [0, 1, 1, 2, 3, 5, 8, 13]);
        let steps: Vec<FibStep> = Fibonacci::default().take(200).collect();
        assert_eq!(
            steps[186].value,
            332_825_110_087_067_562_321_196_029_789_634_457_848
        );
        for i in 1..steps.len() - 1 {
            assert!(continuity(&steps[..=i], Some(steps[i + 1])).holds(), "{i}");
        }
    }

    fn steps(values: &[(u64, u128)]) -> Vec<FibStep> {
        values
            .iter()
            .map(|&(index, value)| FibStep { index, value })
            .collect()
    }

    #[test]
    fn continuity_accepts_successor_only() {
        let before = steps(&[(3, 2), (4, 3), (5, 5)]);
        assert!(continuity(&before, Some(FibStep { index: 6, value: 8 })).holds());
        assert!(matches!(
            continuity(&before, Some(FibStep { index: 0, value: 0 })),
            Continuity::Restarted { .. }
        ));
        // A gap, a repeat, and a right index with a wrong value.
        for bad in [(7, 13), (5, 5), (6, 9)] {
            let verdict = continuity(
                &before,
                Some(FibStep {
                    index: bad.0,
                    value: bad.1,
                }),
            );
            assert!(matches!(verdict, Continuity::Broken { .. }), "{bad:?}");
        }
        assert!(matches!(continuity(&[], None), Continuity::Unknown(_)));
        let first = steps(&[(0, 0)]);
        assert!(continuity(&first, Some(FibStep { index: 1, value: 1 })).holds());
    }

    fn report(text: &str) -> StateReport {
        StateReport::parse(text).unwrap()
    }

    #[test]
    fn state_reports_name_what_did_not_come_back() {
        let whole = report("ckpt memory pid=7 ok=true memory=true threads=16 files=64");
        assert_eq!((whole.pid, whole.threads, whole.files), (7, 16, 64));
        assert!(whole.problems(16, 64).is_empty());
        let broken = report("ckpt memory pid=8 ok=false memory=false threads=15 files=64");
        assert_eq!(
            broken.problems(16, 64),
            vec![
                "memory differs from what it wrote",
                "15 of 16 extra threads"
            ]
        );
        assert_eq!(
            whole.problems(16, 65),
            vec!["64 of 65 open files".to_string()]
        );
    }

    #[test]
    fn state_verdict_judges_memory_threads_and_files_apart() {
        let good = [
            report("ckpt memory pid=1 ok=true memory=true threads=2 files=3"),
            report("ckpt memory pid=7 ok=true memory=true threads=2 files=3"),
        ];
        let whole = StateVerdict::judge(&good, &[7, 1], 2, 3);
        assert!(whole.holds());
        assert_eq!(whole.problem, None);

        let threads_lost = [
            good[0],
            report("ckpt memory pid=7 ok=false memory=true threads=1 files=3"),
        ];
        let verdict = StateVerdict::judge(&threads_lost, &[1, 7], 2, 3);
        assert_eq!(
            (verdict.memory, verdict.threads, verdict.files),
            (true, false, true)
        );
        assert!(!verdict.holds());
        assert_eq!(
            verdict.problem.as_deref(),
            Some("after the restore, pid 7: 1 of 2 extra threads")
        );

        let files_and_memory = [report(
            "ckpt memory pid=1 ok=false memory=false threads=2 files=0",
        )];
        let verdict = StateVerdict::judge(&files_and_memory, &[1], 2, 3);
        assert_eq!(
            (verdict.memory, verdict.threads, verdict.files),
            (false, true, false)
        );
        assert_eq!(
            verdict.problem.as_deref(),
            Some("after the restore, pid 1: memory differs from what it wrote, 0 of 3 open files")
        );

        // An answer from a process that should not be there, none from one
        // that should: nothing is confirmed.
        let verdict = StateVerdict::judge(&good, &[1, 8], 2, 3);
        assert_eq!(
            (verdict.memory, verdict.threads, verdict.files),
            (false, false, false)
        );
        assert_eq!(
            verdict.problem.as_deref(),
            Some("memory checks came from pids [1, 7], expected [1, 8]")
        );
    }
}
