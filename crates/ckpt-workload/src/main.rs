//! The programs that run inside ckpt's containers.
//!
//! One static binary with a sub-command per workload, so one `FROM scratch`
//! image serves every experiment. Every line a workload prints starts with
//! `ckpt ` and carries `key=value` fields, so the runner waits on facts
//! (a `ready` line) instead of fixed sleeps, and can check the state a
//! restored program carries on from.
//!
//!   ckpt-workload fib [--interval-ms MS]
//!   ckpt-workload forker --children N [--interval-ms MS] [--memory-mib M]
//!
//! Nothing here holds state CRIU cannot carry: no sockets, no timers that
//! refer to wall-clock deadlines, only memory, pipes to stdout and children.

use std::io::Write;
use std::process::exit;
use std::thread::sleep;
use std::time::Duration;

mod memory;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        usage("missing workload name");
    };
    let options = Options::parse(rest).unwrap_or_else(|e| usage(&e));
    install_sigterm_handler();
    match command.as_str() {
        "fib" => fib(&options),
        "forker" => forker(&options),
        other => usage(&format!("unknown workload '{other}'")),
    }
}

fn usage(problem: &str) -> ! {
    eprintln!("ckpt-workload: {problem}");
    eprintln!("usage: ckpt-workload fib [--interval-ms MS]");
    eprintln!("       ckpt-workload forker --children N [--interval-ms MS] [--memory-mib M]");
    exit(2)
}

struct Options {
    interval: Duration,
    children: u32,
    memory_mib: u64,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options {
            interval: Duration::from_millis(4000),
            children: 0,
            memory_mib: 0,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let number: u64 = value
                .parse()
                .map_err(|_| format!("{flag}: '{value}' is not a whole number"))?;
            match flag.as_str() {
                "--interval-ms" if number > 0 => options.interval = Duration::from_millis(number),
                "--interval-ms" => return Err("--interval-ms must be above 0".into()),
                "--children" => {
                    options.children =
                        u32::try_from(number).map_err(|_| "--children is too large".to_string())?
                }
                "--memory-mib" => options.memory_mib = number,
                _ => return Err(format!("unknown option '{flag}'")),
            }
        }
        Ok(options)
    }
}

/// Prints one protocol line and flushes it at once: the runner reads the
/// container's log as a stream and must see each line when it happens.
fn say(line: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the log reader went away) is not a reason to stop.
    let _ = writeln!(out, "ckpt {line}");
    let _ = out.flush();
}

/// The seed's first program: the next Fibonacci number every interval.
/// The index makes continuity checkable: after a restore the first index
/// must follow the last one printed before the checkpoint.
fn fib(options: &Options) -> ! {
    say(format_args!(
        "ready workload=fib pid={}",
        std::process::id()
    ));
    let (mut current, mut next): (u128, u128) = (0, 1);
    let mut index: u64 = 0;
    loop {
        say(format_args!("fib index={index} value={current}"));
        // Wrapping keeps the program alive past F(186); the checker uses the
        // same wrapping rule.
        (current, next) = (next, current.wrapping_add(next));
        index += 1;
        sleep(options.interval);
    }
}

/// The seed's second program: N child processes that each print their pid
/// periodically. The parent announces `ready` once every child runs.
fn forker(options: &Options) -> ! {
    let memory = memory::Filled::new(options.memory_mib, 0);
    let mut pids = vec![std::process::id()];
    for index in 1..=options.children {
        // SAFETY: the process is single-threaded here, so the child may run
        // arbitrary code after fork.
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => {
                eprintln!(
                    "ckpt-workload: fork failed: {}",
                    std::io::Error::last_os_error()
                );
                exit(1);
            }
            0 => child(options, index),
            pid => pids.push(pid as u32),
        }
    }
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    say(format_args!(
        "ready workload=forker children={} memory_mib={} checksum={:016x} pids={}",
        options.children,
        options.memory_mib,
        memory.checksum(),
        list.join(",")
    ));
    report_forever("parent", options, &memory)
}

fn child(options: &Options, index: u32) -> ! {
    // Each child writes its own memory so that it is resident, not shared
    // copy-on-write with the parent.
    let memory = memory::Filled::new(options.memory_mib, u64::from(index));
    report_forever("child", options, &memory)
}

/// Prints pid, tick and whether the memory still holds what was written.
fn report_forever(role: &str, options: &Options, memory: &memory::Filled) -> ! {
    let pid = std::process::id();
    let mut tick: u64 = 0;
    loop {
        sleep(options.interval);
        tick += 1;
        let intact = memory.verify();
        say(format_args!(
            "{role} pid={pid} tick={tick} memory_ok={intact}"
        ));
    }
}

/// PID 1 in a container ignores signals it has no handler for, so without
/// this `docker stop` would wait for its timeout and then SIGKILL.
fn install_sigterm_handler() {
    extern "C" fn on_term(_: libc::c_int) {
        // SAFETY: _exit is async-signal-safe. Children die with the PID
        // namespace when PID 1 exits.
        unsafe { libc::_exit(0) }
    }
    let handler = on_term as extern "C" fn(libc::c_int);
    // SAFETY: installing a handler that only calls an async-signal-safe
    // function.
    unsafe {
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
}
