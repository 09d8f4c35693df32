//! What ckpt prints for its user goes to stdout through here, so that a
//! reader that stops early (`ckpt inspect --json | head`) ends the command
//! quietly: Rust ignores SIGPIPE, and `println!` panics on the EPIPE the
//! write then fails with. SIGPIPE stays ignored on purpose: ckpt writes to
//! sockets and to its children's pipes, where a broken pipe is an error to
//! report and clean up after, never a reason to die in the middle of a step.

use std::io::Write;

use anyhow::{Context, Result};

/// The reader of ckpt's stdout closed it: the command stops where it is,
/// cleans up as after any error, and exits quietly.
#[derive(Debug, thiserror::Error)]
#[error("the reader of ckpt's output closed it")]
pub struct StdoutClosed;

/// Writes `text` as it is, and flushes it.
pub fn print(text: &str) -> Result<()> {
    write_to(&mut std::io::stdout().lock(), text)
}

/// Writes `text` and a newline.
pub fn println(text: &str) -> Result<()> {
    print(&format!("{text}\n"))
}

fn write_to(out: &mut impl Write, text: &str) -> Result<()> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        written => written.context("cannot write to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    /// A stdout whose every write fails with the error kind it holds.
    struct Failing(ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(Error::from(self.0))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_reader_is_told_apart_from_a_failed_write() {
        let closed = write_to(&mut Failing(ErrorKind::BrokenPipe), "x").unwrap_err();
        assert!(closed.downcast_ref::<StdoutClosed>().is_some());
        let full = write_to(&mut Failing(ErrorKind::StorageFull), "x").unwrap_err();
        assert!(full.downcast_ref::<StdoutClosed>().is_none());
        assert!(
            full.to_string().contains("cannot write to stdout"),
            "{full}"
        );
        let mut out = Vec::new();
        write_to(&mut out, "x\n").unwrap();
        assert_eq!(out, b"x\n");
    }
}
