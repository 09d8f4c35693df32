//! The seed's Python programs (examples/seed) speak the protocol: each is
//! run for a moment, and the lines it printed are parsed with this crate.
//! Needs python3.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ckpt_protocol::{continuity, Fibonacci, Line, Ready, Role};

/// The longest a program may take to print what the test waits for.
const DEADLINE: Duration = Duration::from_secs(10);

fn seed(script: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/seed")
        .join(script)
}

/// A Python program in its own process group, killed with all the
/// processes it forked when dropped (even when the test fails). It runs
/// unbuffered (`python3 -u`), as the seed's Dockerfile runs it.
struct Program {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Program {
    fn start(script: &str, args: &[&str]) -> Program {
        let mut child = Command::new("python3")
            .arg("-u")
            .arg(seed(script))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("python3 runs (it is required for this test)");
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        // A thread reads, so that the test waits with a deadline.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Program { child, lines }
    }

    /// The first `count` lines, parsed (a line that does not parse fails
    /// the test).
    fn read(&self, count: usize) -> Vec<Line> {
        let end = Instant::now() + DEADLINE;
        (0..count)
            .map(|_| {
                let left = end.saturating_duration_since(Instant::now());
                let text = self
                    .lines
                    .recv_timeout(left)
                    .unwrap_or_else(|e| panic!("no line within {DEADLINE:?}: {e}"));
                Line::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
            })
            .collect()
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions; the group is the
        // one this test created (its leader is our child).
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

#[test]
fn forker_py_prints_a_ready_line_and_its_children_tick() {
    let program = Program::start("forker.py", &["3"]);
    // The children print at once, the parent once all are forked: four
    // whole lines in any order.
    let lines = program.read(4);
    let ready: Vec<&Ready> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Ready(r) => Some(r),
            _ => None,
        })
        .collect();
    let [Ready::Forker(ready)] = ready.as_slice() else {
        panic!("one forker ready line expected: {lines:?}");
    };
    assert_eq!(ready.children, 3);
    assert_eq!(ready.pids.len(), 4, "the parent and three children");
    assert_eq!(ready.pids[0], program.child.id(), "the parent first");
    let mut ticking: Vec<u32> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Tick(t) => {
                assert_eq!((t.role, t.tick), (Role::Child, None), "{t:?}");
                Some(t.pid)
            }
            _ => None,
        })
        .collect();
    ticking.sort_unstable();
    let mut children = ready.pids[1..].to_vec();
    children.sort_unstable();
    assert_eq!(ticking, children);
}

#[test]
fn fib_py_prints_a_ready_line_and_the_fibonacci_sequence() {
    let program = Program::start("fib.py", &["0.01"]);
    let lines = program.read(7);
    assert_eq!(lines[0], Line::Ready(Ready::Fib { pid: None }));
    let steps: Vec<_> = lines[1..]
        .iter()
        .map(|l| match l {
            Line::Fib(step) => *step,
            other => panic!("a fib line expected: {other}"),
        })
        .collect();
    let expected: Vec<_> = Fibonacci::default().take(steps.len()).collect();
    assert_eq!(steps, expected);
    let (before, after) = steps.split_at(steps.len() - 1);
    assert!(continuity(before, after.first().copied()).holds());
}
