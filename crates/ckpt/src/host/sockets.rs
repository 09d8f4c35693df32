//! Whether CRIU here can checkpoint a program that holds TCP sockets: the
//! doctor's "sockets" check. A real service holds a listening socket and
//! connected ones; CRIU 4.1.1 on Linux >= 6.16 cannot dump any inet socket
//! (it reads SO_PASSCRED and SO_PASSSEC, which the kernel now refuses on
//! them), so this is tried for real rather than inferred from versions.
//!
//! The check starts `ckpt hold-sockets` (a listener and a connection to it,
//! bytes going round every few milliseconds) in a throwaway network
//! namespace, dumps it with `criu dump --tcp-established`, restores it in
//! the same namespace, and waits until bytes flow again over the restored
//! connection.

use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::engine::os::netns::ScratchNetns;
use crate::engine::os::rundir;

/// How long the holder lives on its own: a ckpt killed mid-check leaves
/// nothing running for longer (and `ckpt gc` removes the namespace).
const HOLDER_LIFETIME: Duration = Duration::from_secs(30);
/// Time between two round trips over the held connection.
const ROUND_TRIP_EVERY: Duration = Duration::from_millis(10);
/// How long each step of the check may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The patch scripts/setup applies for it (docs/real-programs.md).
pub const SOCKET_PATCH: &str = "criu-4.1.1-socket-opts.patch";

/// `ckpt hold-sockets`: listens on loopback, connects to itself, and sends
/// a byte each way every few milliseconds, printing `n COUNT` after each
/// round trip; any failure prints `error ...` and exits non-zero.
pub fn hold_sockets() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot listen on 127.0.0.1")?;
    let mut client = TcpStream::connect(listener.local_addr()?).context("cannot connect")?;
    let (mut server, _) = listener.accept().context("cannot accept")?;
    let mut out = std::io::stdout();
    writeln!(out, "ready")?;
    let started = Instant::now();
    let mut count = 0u64;
    let mut byte = [0u8; 1];
    while started.elapsed() < HOLDER_LIFETIME {
        client.write_all(b"c")?;
        server.read_exact(&mut byte)?;
        server.write_all(b"s")?;
        client.read_exact(&mut byte)?;
        if byte != *b"s" {
            bail!("the connection returned {byte:?}, not what was sent");
        }
        count += 1;
        writeln!(out, "n {count}")?;
        out.flush()?;
        std::thread::sleep(ROUND_TRIP_EVERY);
    }
    Ok(())
}

/// The doctor's check: Ok(detail) or Err((detail, fix)).
pub fn check() -> Result<String, (String, String)> {
    let fix = || {
        format!(
            "run scripts/setup as root (it builds CRIU with {SOCKET_PATCH}), or install CRIU >= 4.2"
        )
    };
    match dump_and_restore() {
        Ok(took) => Ok(format!(
            "a listening and a connected TCP socket dumped and restored with --tcp-established ({} ms), the connection carried on",
            took.as_millis()
        )),
        Err(e) => {
            let text = format!("{e:#}");
            let why = if text.contains("1:16 opt") || text.contains("1:34 opt") {
                " (this CRIU reads SO_PASSCRED/SO_PASSSEC on inet sockets, which Linux >= 6.16 refuses)"
            } else {
                ""
            };
            Err((
                format!("CRIU cannot checkpoint a program holding TCP sockets{why}: {text}"),
                fix(),
            ))
        }
    }
}

fn dump_and_restore() -> Result<Duration> {
    let netns = ScratchNetns::create("sockcheck")?;
    // Under the criu engine's run directories: `ckpt gc` removes it when a
    // killed ckpt left it.
    let dir = rundir::create_named("criu", &format!("sockcheck-{}", std::process::id()))?;
    let outcome = dump_and_restore_in(&netns, &dir);
    // Removing the namespace kills the restored holder, which is no child
    // of ckpt's any more (CRIU restored it detached).
    drop(netns);
    let _ = rundir::remove(&dir);
    outcome
}

fn dump_and_restore_in(netns: &ScratchNetns, dir: &Path) -> Result<Duration> {
    let out = dir.join("holder.out");
    let images = dir.join("images");
    rundir::make_private_dir(&images)?;
    let mut holder = start_holder(netns, &out)?;
    let dumped = (|| -> Result<Instant> {
        wait_for_count(&out, 1)?;
        let started = Instant::now();
        criu_in(
            netns,
            &["dump", "-t", &holder.id().to_string()],
            &images,
            "dump",
        )?;
        Ok(started)
    })();
    if dumped.is_err() {
        let _ = holder.kill();
    }
    // Reaped before the restore: a zombie would hold the pid CRIU restores.
    let _ = holder.wait();
    let started = dumped?;
    let before = last_count(&out);
    criu_in(netns, &["restore", "-d"], &images, "restore")?;
    let took = started.elapsed();
    wait_for_count(&out, before + 5).context("after the restore")?;
    Ok(took)
}

/// Starts the holder in its own session (CRIU dumps whole sessions only
/// with --shell-job otherwise), its output into `out`.
fn start_holder(netns: &ScratchNetns, out: &Path) -> Result<std::process::Child> {
    let exe = std::env::current_exe().context("cannot find the ckpt executable")?;
    let log = std::fs::File::create(out)?;
    let mut command = Command::new("nsenter");
    command
        .arg(netns.nsenter_arg())
        .arg("--")
        .arg(exe)
        .arg("hold-sockets")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    // nsenter execs the holder in place: the child's pid is the holder's.
    command.spawn().context("cannot start nsenter")
}

/// Runs CRIU inside the namespace (nsenter joins only the network
/// namespace: `ip netns exec` would also make a mount namespace, which CRIU
/// would then try to dump).
fn criu_in(netns: &ScratchNetns, args: &[&str], images: &Path, what: &str) -> Result<()> {
    let log = format!("{what}.log");
    let status = Command::new("nsenter")
        .arg(netns.nsenter_arg())
        .arg("--")
        .arg("criu")
        .args(args)
        .args(["--tcp-established", "-D"])
        .arg(images)
        .args(["-o", &log, "-v2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run criu through nsenter")?;
    if !status.success() {
        bail!(
            "criu {what} failed: {}",
            crate::engine::criu::criu_log_errors(&images.join(log))
        );
    }
    Ok(())
}

/// The holder's last round-trip count (0 before any).
fn last_count(out: &Path) -> u64 {
    let Ok(file) = std::fs::File::open(out) else {
        return 0;
    };
    std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.strip_prefix("n ").and_then(|n| n.trim().parse().ok()))
        .last()
        .unwrap_or(0)
}

/// Waits until the holder has counted `at_least` round trips; fails at once
/// when it reports an error, and after STEP_TIMEOUT.
fn wait_for_count(out: &Path, at_least: u64) -> Result<()> {
    let started = Instant::now();
    loop {
        if last_count(out) >= at_least {
            return Ok(());
        }
        let text = std::fs::read_to_string(out).unwrap_or_default();
        if let Some(error) = text.lines().find(|l| l.contains("rror")) {
            bail!("the socket holder failed: {error}");
        }
        if started.elapsed() > STEP_TIMEOUT {
            bail!(
                "the held connection carried no bytes for {} s (reached {} round trips, wanted {at_least})",
                STEP_TIMEOUT.as_secs(),
                last_count(out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
