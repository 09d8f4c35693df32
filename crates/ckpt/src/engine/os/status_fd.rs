//! CRIU's readiness signal for a lazy-pages dump: CRIU writes a byte to its
//! `--status-fd` once its page server listens, while the dump goes on
//! serving pages. The child gets the pipe's write end as fd 3.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// The fd number the child sees the pipe's write end as.
pub(crate) const STATUS_FD: i32 = 3;

/// Starts `command` with a status pipe on fd 3 and waits until the child
/// writes to it (or exits, or `timeout` passes).
pub(crate) async fn spawn_until_ready(
    command: &mut tokio::process::Command,
    timeout: Duration,
    what: &str,
) -> Result<tokio::process::Child> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two fds it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot make a status pipe");
    }
    // SAFETY: both fds were just created and are owned here alone.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let write_fd = writer.as_raw_fd();
    // SAFETY: dup2 is async-signal-safe; the duplicate has no CLOEXEC, so
    // the child keeps it as fd 3 across exec.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(write_fd, STATUS_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("{what}: cannot start it"))?;
    drop(writer);
    let mut reader = std::fs::File::from(reader);
    let read = tokio::task::spawn_blocking(move || reader.read(&mut [0u8; 1]));
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(Ok(1))) => Ok(child),
        Ok(Ok(Ok(_))) => {
            let status = child.wait().await?;
            bail!("{what} ended ({status}) before it was ready")
        }
        Ok(Ok(Err(e))) => Err(anyhow!("{what}: reading its status pipe: {e}")),
        Ok(Err(e)) => Err(anyhow!("{what}: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            bail!("{what} was not ready within {} s", timeout.as_secs())
        }
    }
}
