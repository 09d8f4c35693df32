//! What the engines read from or leave on the operating system: process trees
//! under /proc, per-run state directories, log files they tail, and a lock
//! among ckpt processes.

pub(crate) mod iface;
pub(crate) mod lock;
pub mod logfile;
pub mod netns;
pub mod proctree;
pub mod rundir;
pub mod sockets;
pub mod status_fd;
