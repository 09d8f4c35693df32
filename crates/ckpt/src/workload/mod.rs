//! The in-container workload programs (crate `ckpt-workload`): where the
//! static binary is, the build context of its `FROM scratch` image, and
//! reading the lines it prints (defined in crate `ckpt-protocol`).

pub mod template;

use std::path::{Path, PathBuf};

pub use ckpt_protocol::{continuity, Continuity, FibStep, Role, StateReport, StateVerdict, Tick};

use anyhow::{bail, Context, Result};

use crate::model::{Axis, Network, Point, RunSpec};

/// A workload that the user brings: an image, a command template over the
/// swept parameters, and how to tell that it is ready and still right.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UserWorkload {
    pub image: String,
    /// The command, with `{children}`, `{memory_mib}`, ... placeholders.
    pub cmd: String,
    /// A log line matching this means ready; without it, `ready_delay_ms`.
    pub ready_pattern: Option<String>,
    pub ready_delay_ms: u64,
    /// How long to wait for the ready pattern before the trial fails.
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout_ms: u64,
    /// A log line matching this after the restore verifies the trial;
    /// without it, "still running" is all that is checked.
    pub check_pattern: Option<String>,
    /// Run inside the container once it is ready (to load data).
    #[serde(default)]
    pub setup_cmd: Option<String>,
    /// Run inside the container before the checkpoint and after the
    /// restore: the program's own account of its state.
    #[serde(default)]
    pub check_cmd: Option<String>,
    /// The after-restore output of check_cmd must match this, instead of
    /// equalling the before-checkpoint output.
    #[serde(default)]
    pub check_expect: Option<String>,
}

fn default_ready_timeout() -> u64 {
    60_000
}

/// What a sweep runs: ckpt's forker, or a user's image and command.
#[derive(Debug, Clone)]
pub enum Workload {
    Forker,
    User {
        template: crate::workload::template::Template,
        /// A log line matching this means ready; otherwise `delay`.
        ready: Option<regex::Regex>,
        delay: std::time::Duration,
        timeout: std::time::Duration,
        /// A new log line matching this after the restore verifies it.
        check: Option<regex::Regex>,
        /// Run inside the container once it is ready.
        setup: Option<crate::workload::template::Template>,
        /// The program's own check of its state, before and after.
        state: Option<StateCheck>,
    },
}

/// The program's own check of its state: a command run inside the
/// container before the checkpoint and after the restore.
#[derive(Debug, Clone)]
pub struct StateCheck {
    pub cmd: crate::workload::template::Template,
    /// The after-output must match this; without it, it must equal the
    /// before-output.
    pub expect: Option<regex::Regex>,
}

impl StateCheck {
    /// The check `--check-cmd` (and `--check-expect`) describe, parsed.
    pub fn new(cmd: &str, expect: Option<&str>) -> Result<StateCheck> {
        let expect = expect
            .map(|t| {
                regex::Regex::new(t).with_context(|| {
                    format!("--check-expect '{t}' is not a valid regular expression")
                })
            })
            .transpose()?;
        Ok(StateCheck {
            cmd: crate::workload::template::Template::parse_for("--check-cmd", cmd)?,
            expect,
        })
    }

    /// The command as run in a container that is no grid point of ckpt's.
    pub fn argv(&self) -> Vec<String> {
        self.cmd.render(&crate::model::Point::default())
    }

    /// Whether the state after the restore is the state before it; on
    /// `false`, a message quoting both outputs (shortened).
    pub fn compare(&self, before: &str, after: &str) -> Result<(), String> {
        let holds = match &self.expect {
            Some(pattern) => pattern.is_match(after),
            None => before == after,
        };
        if holds {
            return Ok(());
        }
        let wanted = match &self.expect {
            Some(pattern) => format!("a match of '{pattern}'"),
            None => format!("'{}' as before the checkpoint", shorten(before)),
        };
        Err(format!(
            "the program's check (--check-cmd) changed: after the restore it printed '{}', wanted {wanted}",
            shorten(after)
        ))
    }
}

/// At most 200 characters of a command's output, on one line.
pub(crate) fn shorten(text: &str) -> String {
    let flat = text.trim().replace('\n', " | ");
    match flat.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &flat[..cut]),
        None => flat,
    }
}

impl Workload {
    /// The workload a plan names (`None`: ckpt's forker), with its
    /// template and patterns checked against the axes the plan varies.
    pub fn new(user: Option<&UserWorkload>, swept: &[Axis]) -> Result<Workload> {
        let Some(user) = user else {
            return Ok(Workload::Forker);
        };
        let pattern = |flag: &str, text: &Option<String>| -> Result<Option<regex::Regex>> {
            text.as_deref()
                .map(|t| {
                    regex::Regex::new(t)
                        .with_context(|| format!("{flag} '{t}' is not a valid regular expression"))
                })
                .transpose()
        };
        let template = crate::workload::template::Template::parse(&user.cmd)?;
        if let Some(unused) = swept.iter().copied().find(|a| !template.uses(*a)) {
            bail!(
                "{} varies, but --cmd does not use {{{}}}: every point would run the same command",
                unused.flag(),
                unused.name()
            );
        }
        let command = |flag: &str, text: &Option<String>| {
            text.as_deref()
                .map(|t| crate::workload::template::Template::parse_for(flag, t))
                .transpose()
        };
        if user.check_expect.is_some() && user.check_cmd.is_none() {
            bail!("--check-expect matches the output of --check-cmd: give --check-cmd too");
        }
        let state =
            command("--check-cmd", &user.check_cmd)?.map(|cmd| StateCheck { cmd, expect: None });
        let state = match (state, pattern("--check-expect", &user.check_expect)?) {
            (Some(s), expect) => Some(StateCheck { expect, ..s }),
            (None, _) => None,
        };
        Ok(Workload::User {
            template,
            ready: pattern("--ready-pattern", &user.ready_pattern)?,
            delay: std::time::Duration::from_millis(user.ready_delay_ms),
            timeout: std::time::Duration::from_millis(user.ready_timeout_ms),
            check: pattern("--check-pattern", &user.check_pattern)?,
            setup: command("--setup-cmd", &user.setup_cmd)?,
            state,
        })
    }

    /// The container to start at one grid point.
    pub(crate) fn run_spec(
        &self,
        name: String,
        point: &Point,
        interval_ms: u64,
        network: Network,
    ) -> RunSpec {
        match self {
            Workload::Forker => RunSpec {
                name,
                args: forker_args(point, interval_ms),
                entrypoint: None,
                network,
                netns: None,
            },
            Workload::User { template, .. } => {
                let mut argv = template.render(point);
                let rest = argv.split_off(1);
                RunSpec {
                    name,
                    args: rest,
                    entrypoint: Some(argv),
                    network,
                    netns: None,
                }
            }
        }
    }
}

/// Path of the workload binary inside the image.
pub(crate) const BINARY_IN_IMAGE: &str = "/ckpt-workload";

/// Finds the statically linked workload binary: `$CKPT_WORKLOAD`, next to
/// the ckpt executable, or where `scripts/build` puts it in a checkout.
pub(crate) fn locate_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("CKPT_WORKLOAD") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!(
            "CKPT_WORKLOAD points to {}, which is not a file: build it with scripts/build",
            path.display()
        );
    }
    let exe = std::env::current_exe().context("cannot find the ckpt executable's path")?;
    let candidates = binary_candidates(&exe);
    candidates.iter().find(|p| p.is_file()).cloned().with_context(|| {
        format!(
            "the static workload binary 'ckpt-workload' was not found (looked at {}): run scripts/build, or set CKPT_WORKLOAD",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

fn binary_candidates(exe: &Path) -> Vec<PathBuf> {
    let dir = exe.parent().unwrap_or(Path::new("."));
    // target/{debug,release}/ckpt (or target/debug/deps/test-binary) ->
    // target/x86_64-unknown-linux-gnu/release/ckpt-workload, the static
    // build, first: a `cargo build --workspace` also leaves a dynamically
    // linked target/debug/ckpt-workload, which cannot run in a FROM scratch
    // image. Next to the executable last, for an installed ckpt.
    let mut out: Vec<PathBuf> = dir
        .ancestors()
        .take(3)
        .map(|up| up.join("x86_64-unknown-linux-gnu/release/ckpt-workload"))
        .collect();
    out.push(dir.join("ckpt-workload"));
    out
}

/// A tar build context: a Dockerfile and the workload binary.
pub fn build_context(binary: &Path) -> Result<Vec<u8>> {
    let mut tar = context_head(binary, 0)?;
    tar.finish()?;
    Ok(tar.into_inner()?)
}

/// Path of the filler layer's file inside the image.
pub(crate) const FILLER_IN_IMAGE: &str = "/ckpt-filler";
const MIB: usize = 1 << 20;

/// The Dockerfile and the workload binary of a build context whose image
/// gets a filler layer of `filler_mib` MiB; the archive is left open for
/// the filler.
fn context_head(binary: &Path, filler_mib: u32) -> Result<tar::Builder<Vec<u8>>> {
    let bytes = std::fs::read(binary)
        .with_context(|| format!("cannot read the workload binary {}", binary.display()))?;
    let filler = if filler_mib > 0 {
        format!("COPY ckpt-filler {FILLER_IN_IMAGE}\n")
    } else {
        String::new()
    };
    let dockerfile = format!(
        "FROM scratch\nCOPY ckpt-workload {BINARY_IN_IMAGE}\n{filler}ENTRYPOINT [\"{BINARY_IN_IMAGE}\"]\n"
    );
    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, "Dockerfile", dockerfile.as_bytes(), 0o644)?;
    append(&mut tar, "ckpt-workload", &bytes, 0o755)?;
    Ok(tar)
}

/// A build context as a stream of chunks: the filler (up to a GiB or
/// more) is generated one MiB at a time while the daemon reads it, so ckpt
/// never holds it in memory.
pub(crate) fn build_context_stream(
    binary: &Path,
    filler_mib: u32,
) -> Result<impl futures_util::Stream<Item = bytes::Bytes> + Send + 'static> {
    use futures_util::StreamExt;
    let head = context_head(binary, filler_mib)?.into_inner()?;
    // `into_inner` on an unfinished builder writes the end-of-archive
    // blocks; they are cut off and written after the filler instead.
    let head = head[..head.len() - 1024].to_vec();
    let mut filler_header = Vec::new();
    if filler_mib > 0 {
        let mut header = tar::Header::new_gnu();
        header.set_path("ckpt-filler")?;
        header.set_size(filler_mib as u64 * MIB as u64);
        header.set_mode(0o644);
        header.set_cksum();
        filler_header = header.as_bytes().to_vec();
    }
    // Whole MiBs are a multiple of the 512-byte block: no padding needed.
    let start = futures_util::stream::iter([head, filler_header].map(bytes::Bytes::from));
    let filler =
        futures_util::stream::iter(0..filler_mib).map(|i| bytes::Bytes::from(filler_mib_chunk(i)));
    let end = futures_util::stream::iter([bytes::Bytes::from(vec![0u8; 1024])]);
    Ok(start.chain(filler).chain(end))
}

/// One MiB of incompressible bytes (splitmix64), different for each MiB so
/// that no layer compression or deduplication can shrink the filler.
pub(crate) fn filler_mib_chunk(index: u32) -> Vec<u8> {
    let mut state = u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed;
    let mut out = Vec::with_capacity(MIB);
    while out.len() < MIB {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

/// Writes the filler file (for engines whose image is a directory).
pub(crate) fn write_filler(path: &Path, filler_mib: u32) -> Result<()> {
    use std::io::Write;
    let mut file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    for i in 0..filler_mib {
        file.write_all(&filler_mib_chunk(i))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn append(tar: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8], mode: u32) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_cksum();
    tar.append_data(&mut header, name, data)?;
    Ok(())
}

/// True for the workload's `ready` line.
pub fn is_ready(text: &str) -> bool {
    ckpt_protocol::Ready::parse(text).is_ok()
}

/// True for a Fibonacci line.
pub(crate) fn is_fib(text: &str) -> bool {
    FibStep::parse(text).is_ok()
}

/// The Fibonacci lines among `lines`, in order.
pub(crate) fn fib_steps(lines: &[String]) -> Vec<FibStep> {
    lines
        .iter()
        .filter_map(|l| FibStep::parse(l).ok())
        .collect()
}

/// Arguments for the Fibonacci printer.
pub(crate) fn fib_args(interval_ms: u64) -> Vec<String> {
    vec![
        "fib".into(),
        "--interval-ms".into(),
        interval_ms.to_string(),
    ]
}

/// Arguments for the forker at one grid point.
pub fn forker_args(point: &Point, interval_ms: u64) -> Vec<String> {
    let mut args = vec!["forker".to_string()];
    for (flag, value) in [
        ("--children", u64::from(point.children)),
        ("--memory-mib", u64::from(point.memory_mib)),
        ("--threads", u64::from(point.threads)),
        ("--files", u64::from(point.files)),
        ("--interval-ms", interval_ms),
    ] {
        args.push(flag.into());
        args.push(value.to_string());
    }
    args
}

/// The pids a forker announced in its ready line (parent first).
pub(crate) fn ready_pids(line: &str) -> Option<Vec<u32>> {
    match ckpt_protocol::Ready::parse(line).ok()? {
        ckpt_protocol::Ready::Forker(ready) => Some(ready.pids),
        ckpt_protocol::Ready::Fib { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as the workload and the Python seed print them (copied from
    /// container logs), read through ckpt-protocol.
    #[test]
    fn reads_the_workloads_lines_and_ignores_noise() {
        assert!(is_ready("ckpt ready workload=fib pid=1"));
        assert!(is_ready("ckpt ready workload=fib"));
        assert!(!is_ready("ckpt fib index=0 value=0"));
        assert!(!is_ready("hello world"));
        assert!(is_fib("ckpt fib index=7 value=13"));
        assert!(!is_fib("ckpt fib index=7"));
        let lines = [
            "ckpt ready workload=fib pid=1",
            "ckpt fib index=0 value=0",
            "noise",
            "ckpt fib index=1 value=1",
        ]
        .map(String::from);
        assert_eq!(
            fib_steps(&lines),
            vec![
                FibStep { index: 0, value: 0 },
                FibStep { index: 1, value: 1 }
            ]
        );
        let report =
            StateReport::parse("ckpt memory pid=7 ok=true memory=true threads=16 files=64")
                .unwrap();
        assert_eq!((report.pid, report.threads, report.files), (7, 16, 64));
    }

    #[test]
    fn reads_pids_from_ready_line() {
        let line = "ckpt ready workload=forker children=2 memory_mib=0 threads=0 files=0 checksum=cbf29ce484222325 pids=1,7,8";
        assert_eq!(ready_pids(line), Some(vec![1, 7, 8]));
        let python = "ckpt ready workload=forker children=2 pids=1,7,8";
        assert_eq!(ready_pids(python), Some(vec![1, 7, 8]));
        assert_eq!(ready_pids("ckpt ready workload=forker pids=1,x"), None);
        assert_eq!(ready_pids("ckpt ready workload=fib pid=1"), None);
    }

    #[test]
    fn filler_is_incompressible_and_distinct_per_mib() {
        let a = filler_mib_chunk(0);
        assert_eq!(a.len(), MIB);
        assert_ne!(a, filler_mib_chunk(1));
        let mut seen = [false; 256];
        a.iter().for_each(|b| seen[*b as usize] = true);
        assert!(seen.iter().all(|s| *s), "every byte value occurs");
    }

    #[tokio::test]
    async fn streamed_context_is_a_valid_tar_with_the_filler() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("ckpt-workload");
        std::fs::write(&bin, b"\x7fELF").unwrap();
        let chunks: Vec<bytes::Bytes> = build_context_stream(&bin, 2).unwrap().collect().await;
        let whole: Vec<u8> = chunks.concat();
        let mut archive = tar::Archive::new(whole.as_slice());
        let entries: Vec<(String, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.size())
            })
            .collect();
        assert_eq!(entries[2], ("ckpt-filler".to_string(), 2 * MIB as u64));
        assert_eq!(entries.len(), 3);
    }

    #[test]
    fn build_context_holds_dockerfile_and_binary() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("ckpt-workload");
        std::fs::write(&bin, b"\x7fELF").unwrap();
        let tar_bytes = build_context(&bin).unwrap();
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["Dockerfile", "ckpt-workload"]);
    }
}
