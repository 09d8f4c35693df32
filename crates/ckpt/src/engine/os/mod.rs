//! What the engines read from or leave on the operating system: process trees
//! under /proc, per-run state directories, and log files they tail.

pub mod logfile;
pub mod netns;
pub mod proctree;
pub mod rundir;
pub mod sockets;
pub mod status_fd;
