//! Feeds arbitrary bytes to the decoder as each kind of image file: the
//! first byte picks the file, the rest is its content. Any panic, overflow
//! or oversized allocation is a bug.
#![no_main]

use criu_image::{Checkpoint, MemFiles};
use libfuzzer_sys::fuzz_target;

/// A valid one-process pstree.img, so the other files get decoded too.
const PSTREE: &[u8] = &[
    0x19, 0x43, 0x56, 0x54, 0x30, 0x30, 0x27, 0x50, 0x0a, 0x00, 0x00, 0x00, 0x08, 0x01, 0x10, 0x00, 0x18, 0x01,
    0x20, 0x01, 0x28, 0x01,
];

/// A valid ids-1.img naming files_id 0, so fdinfo-0.img is reached.
const IDS: &[u8] = &[
    0x19, 0x43, 0x56, 0x54, 0x30, 0x20, 0x43, 0x54, 0x08, 0x00, 0x00, 0x00, 0x08, 0x01, 0x10, 0x00, 0x18, 0x01,
    0x20, 0x01,
];

/// New names go at the end: a corpus file's first byte picks by index.
const NAMES: [&str; 12] = [
    "pstree.img",
    "inventory.img",
    "core-1.img",
    "ids-1.img",
    "mm-1.img",
    "pagemap-1.img",
    "fdinfo-0.img",
    "files.img",
    "stats-dump",
    "stats-restore",
    "inetsk.img",
    "unixsk.img",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, content)) = data.split_first() else { return };
    let name = NAMES[usize::from(pick) % NAMES.len()];
    let mut files = MemFiles::default();
    for (fixed, bytes) in [("pstree.img", PSTREE), ("ids-1.img", IDS)] {
        if name != fixed {
            files.insert(fixed, Some(bytes.to_vec()), bytes.len() as u64);
        }
    }
    files.insert(name, Some(content.to_vec()), content.len() as u64);
    let _ = Checkpoint::decode(&files);
});
