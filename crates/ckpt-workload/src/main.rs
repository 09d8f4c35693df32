//! The programs that run inside ckpt's containers.
//!
//! One static binary with a sub-command per workload, so one `FROM scratch`
//! image serves every experiment. Every line a workload prints is a line of
//! the workload protocol (crate `ckpt-protocol`): `ckpt ` and `key=value`
//! fields, so the runner waits on facts (a `ready` line) instead of fixed
//! sleeps, and can check the state a restored program carries on from.
//!
//!   ckpt-workload fib [--interval-ms MS]
//!   ckpt-workload forker --children N [--interval-ms MS] [--memory-mib M]
//!                        [--threads T] [--files F]
//!   ckpt-workload memcpy [--memory-mib M]
//!
//! On SIGUSR1 the forker's parent passes the signal to its children and
//! every process checks that its memory still holds what it wrote and that
//! its threads and open files are all there, and says so
//! (`ckpt memory pid=P ok=true memory=true threads=T files=F`): the check
//! after a restore.
//!
//! Nothing here holds state CRIU cannot carry: no sockets, no timers that
//! refer to wall-clock deadlines, only memory, pipes to stdout and children.

use std::io::Write;
use std::process::exit;

use ckpt_protocol::{Fibonacci, ForkerReady, Memcpy, Ready, Role, StateReport, Tick};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod memory;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        usage("missing workload name");
    };
    let options = Options::parse(rest).unwrap_or_else(|e| usage(&e));
    install_signal_handlers();
    match command.as_str() {
        "fib" => fib(&options),
        "forker" => forker(&options),
        "memcpy" => memcpy(&options),
        other => usage(&format!("unknown workload '{other}'")),
    }
}

fn usage(problem: &str) -> ! {
    eprintln!("ckpt-workload: {problem}");
    eprintln!("usage: ckpt-workload fib [--interval-ms MS]");
    eprintln!("       ckpt-workload forker --children N [--interval-ms MS] [--memory-mib M] [--threads T] [--files F]");
    eprintln!("       ckpt-workload memcpy [--memory-mib M]");
    exit(2)
}

struct Options {
    interval: Duration,
    children: u32,
    memory_mib: u64,
    threads: u32,
    files: u32,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options {
            interval: Duration::from_millis(4000),
            children: 0,
            memory_mib: 0,
            threads: 0,
            files: 0,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let number: u64 = value
                .parse()
                .map_err(|_| format!("{flag}: '{value}' is not a whole number"))?;
            let small = || u32::try_from(number).map_err(|_| format!("{flag} is too large"));
            match flag.as_str() {
                "--interval-ms" if number > 0 => options.interval = Duration::from_millis(number),
                "--interval-ms" => return Err("--interval-ms must be above 0".into()),
                "--children" => options.children = small()?,
                "--memory-mib" => options.memory_mib = number,
                "--threads" => options.threads = small()?,
                "--files" => options.files = small()?,
                _ => return Err(format!("unknown option '{flag}'")),
            }
        }
        Ok(options)
    }
}

/// Prints one protocol line and flushes it at once: the runner reads the
/// container's log as a stream and must see each line when it happens.
fn say(line: &dyn std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the log reader went away) is not a reason to stop.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The seed's first program: the next Fibonacci number every interval.
/// The index makes continuity checkable: after a restore the first index
/// must follow the last one printed before the checkpoint.
fn fib(options: &Options) -> ! {
    say(&Ready::Fib {
        pid: Some(std::process::id()),
    });
    // Wrapping keeps the program alive past F(186); the checker uses the
    // same wrapping rule.
    for step in Fibonacci::default() {
        say(&step);
        std::thread::sleep(options.interval);
    }
    // Only after 2^64 numbers.
    exit(0)
}

/// The seed's second program: N child processes that each print their pid
/// periodically. The parent announces `ready` once every child has set up
/// its memory, files and threads, so a checkpoint never catches a process
/// half-way through filling its memory.
fn forker(options: &Options) -> ! {
    let (ready_read, ready_write) = pipe();
    let mut pids = vec![std::process::id()];
    for index in 1..=options.children {
        // SAFETY: the process is single-threaded here (threads start after
        // the forks), so the child may run arbitrary code after fork.
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => fail("fork"),
            0 => {
                close(ready_read);
                let held = Held::set_up(options, u64::from(index));
                // One byte says "ready"; the pipe is closed before any
                // checkpoint, so CRIU never sees it.
                // SAFETY: writing one byte from a valid buffer to our fd.
                if unsafe { libc::write(ready_write, [1u8].as_ptr().cast(), 1) } != 1 {
                    fail("telling the parent it is ready");
                }
                close(ready_write);
                report_forever(Role::Child, options, &held, &[])
            }
            pid => pids.push(pid as u32),
        }
    }
    close(ready_write);
    let held = Held::set_up(options, 0);
    wait_for_children(ready_read, options.children);
    close(ready_read);
    say(&Ready::Forker(ForkerReady {
        children: options.children,
        memory_mib: Some(options.memory_mib),
        threads: Some(options.threads),
        files: Some(options.files),
        checksum: Some(held.memory.checksum()),
        pids: pids.clone(),
    }));
    report_forever(Role::Parent, options, &held, &pids[1..])
}

fn fail(what: &str) -> ! {
    eprintln!(
        "ckpt-workload: {what} failed: {}",
        std::io::Error::last_os_error()
    );
    exit(1)
}

fn pipe() -> (libc::c_int, libc::c_int) {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into the array it is given.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        fail("pipe");
    }
    (fds[0], fds[1])
}

fn close(fd: libc::c_int) {
    // SAFETY: closing an fd this process owns and no longer uses.
    unsafe { libc::close(fd) };
}

/// Reads one byte per child; end of file first means a child died.
fn wait_for_children(fd: libc::c_int, children: u32) {
    let mut left = children as usize;
    let mut buf = [0u8; 64];
    while left > 0 {
        // SAFETY: reading into a buffer of the given length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len().min(left)) };
        match n {
            n if n > 0 => left -= n as usize,
            0 => {
                eprintln!("ckpt-workload: a child died before it was ready");
                exit(1)
            }
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => fail("waiting for the children"),
        }
    }
}

/// What one process holds for the experiment: resident memory, open files
/// and threads.
struct Held {
    memory: memory::Filled,
    _files: Vec<std::fs::File>,
}

impl Held {
    fn set_up(options: &Options, seed: u64) -> Held {
        // Each process writes its own memory so that it is resident, not
        // shared copy-on-write with the parent.
        let memory = memory::Filled::new(options.memory_mib, seed);
        // The program's own file: it exists in every image and on the host.
        let files = (0..options.files)
            .map(|_| std::fs::File::open("/proc/self/exe").unwrap_or_else(|_| fail("open")))
            .collect();
        for _ in 0..options.threads {
            std::thread::spawn(idle_thread);
        }
        Held {
            memory,
            _files: files,
        }
    }
}

/// An extra thread: it only sleeps, with SIGUSR1 blocked so the request
/// to check memory always reaches the main thread.
fn idle_thread() {
    // SAFETY: building a signal set and changing this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Set by SIGUSR1: check the memory and say whether it is intact.
static CHECK_REQUESTED: AtomicBool = AtomicBool::new(false);

/// Prints pid and tick every interval, and answers memory checks at once.
fn report_forever(role: Role, options: &Options, held: &Held, children: &[u32]) -> ! {
    let pid = std::process::id();
    let mut tick: u64 = 0;
    let mut next = Instant::now() + options.interval;
    loop {
        sleep_until(next);
        if CHECK_REQUESTED.swap(false, Ordering::SeqCst) {
            for child in children {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(*child as libc::pid_t, libc::SIGUSR1) };
            }
            let memory = held.memory.verify();
            let (threads, files) = (threads_now(), files_now());
            // All of it must have come back: the memory, every thread and
            // every open file.
            let ok = memory && threads == 1 + options.threads && files == options.files;
            say(&StateReport {
                pid,
                ok,
                memory,
                threads: threads.saturating_sub(1),
                files,
            });
        }
        if Instant::now() >= next {
            tick += 1;
            next += options.interval;
            say(&Tick {
                role,
                pid,
                tick: Some(tick),
                at_us: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_micros() as u64),
            });
        }
    }
}

/// Threads of this process, the main one included.
fn threads_now() -> u32 {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count() as u32)
}

/// Open files that are this program's own executable (what `--files`
/// opens).
fn files_now() -> u32 {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    std::fs::read_dir("/proc/self/fd").map_or(0, |fds| {
        fds.flatten()
            .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == exe))
            .count() as u32
    })
}

/// Sleeps until `deadline` or until a signal arrives (std's sleep would
/// resume after the signal; a memory check must not wait for the tick).
fn sleep_until(deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    let request = libc::timespec {
        tv_sec: left.as_secs() as libc::time_t,
        tv_nsec: left.subsec_nanos() as libc::c_long,
    };
    // SAFETY: nanosleep reads the request; no remainder is asked for.
    unsafe { libc::nanosleep(&request, std::ptr::null_mut()) };
}

/// This machine's memory copy bandwidth: copies a buffer of
/// `--memory-mib` MiB (default 256) five times and prints the best rate.
/// ckpt runs it as a separate process so that the buffers never count in
/// its own memory.
fn memcpy(options: &Options) -> ! {
    let mib = if options.memory_mib == 0 {
        256
    } else {
        options.memory_mib
    } as usize;
    let source: Vec<u8> = (0..mib << 20).map(|i| (i * 7 + i / 4096) as u8).collect();
    let mut target = vec![0u8; mib << 20];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        target.copy_from_slice(&source);
        std::hint::black_box(&mut target);
        best = best.min(started.elapsed().as_secs_f64());
    }
    say(&Memcpy {
        mib: mib as u64,
        mib_per_s: mib as f64 / best,
    });
    exit(0)
}

/// PID 1 in a container ignores signals it has no handler for, so without
/// this `docker stop` would wait for its timeout and then SIGKILL.
fn install_signal_handlers() {
    extern "C" fn on_usr1(_: libc::c_int) {
        CHECK_REQUESTED.store(true, Ordering::SeqCst);
    }
    let usr1 = on_usr1 as extern "C" fn(libc::c_int);
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
        libc::signal(libc::SIGUSR1, usr1 as libc::sighandler_t);
    }
}
