//! The machine ckpt runs on: what it records about it (envinfo), its state
//! beside each trial (state) and the checks that say whether each engine
//! can work here (doctor).

pub mod doctor;
pub mod envinfo;
pub mod sockets;
pub(crate) mod state;
