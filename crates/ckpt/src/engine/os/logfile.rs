//! Output of workloads that write to a log file (runc and plain CRIU have
//! no daemon that keeps logs): reading it whole, and waiting for a line.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A pipe whose reading end a thread copies into `path` (appending) until
/// every writer is gone. Give the writer to a process as its stdout/stderr.
pub(crate) fn pump_into(path: &Path) -> Result<std::io::PipeWriter> {
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let (mut reader, writer) = std::io::pipe()?;
    std::thread::spawn(move || {
        // Ends at end-of-file, when the last process holding the writer exits.
        let _ = std::io::copy(&mut reader, &mut log);
    });
    Ok(writer)
}

/// Every complete line of the file (a partial last line is left out).
pub(crate) fn lines(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read(path)
        .with_context(|| format!("cannot read the output log {}", path.display()))?;
    let text = String::from_utf8_lossy(&text);
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    Ok(complete.lines().map(str::to_string).collect())
}

/// Polls the file until it holds a line matching `wanted` after `skip`
/// earlier matches. Polling every few milliseconds costs nothing next to
/// a container start and needs no inotify plumbing. `ended` says how the
/// program ended once it has (None while it runs): a program that dies
/// is reported at once, not after the timeout.
pub(crate) async fn wait_for_line(
    path: &Path,
    skip: usize,
    wanted: &(dyn Fn(&str) -> bool + Sync),
    timeout: Duration,
    ended: impl Fn() -> Option<String>,
) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let all = lines(path).unwrap_or_default();
        if let Some(line) = all.iter().filter(|l| wanted(l)).nth(skip) {
            return Ok(line.clone());
        }
        if let Some(how) = ended() {
            // Its last words may still be on their way to the file.
            let all = lines(path).unwrap_or_default();
            bail!(
                "the program ended before printing the expected line ({how}); its last lines: {}",
                tail(&all)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {:.1} s waiting for the expected line; the last lines were: {}",
                timeout.as_secs_f64(),
                tail(&all)
            );
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return "(none)".into();
    }
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finds_the_nth_match_and_ignores_a_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        std::fs::write(&path, "ckpt fib index=0\nckpt fib index=1\nckpt fib ind").unwrap();
        let is_fib = |l: &str| l.starts_with("ckpt fib");
        let second = wait_for_line(&path, 1, &is_fib, Duration::from_secs(1), || None)
            .await
            .unwrap();
        assert_eq!(second, "ckpt fib index=1");
        let third = wait_for_line(&path, 2, &is_fib, Duration::from_millis(50), || None).await;
        assert!(format!("{:#}", third.unwrap_err()).contains("timed out"));
        let dead = wait_for_line(&path, 2, &is_fib, Duration::from_secs(5), || {
            Some("it exited with status 1".into())
        })
        .await;
        let said = format!("{:#}", dead.unwrap_err());
        assert!(
            said.contains("ended") && said.contains("status 1"),
            "{said}"
        );
        assert!(said.contains("ckpt fib index=1"), "its last lines: {said}");
    }
}
