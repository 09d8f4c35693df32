//! Memory that a workload writes so that it is resident, and can later check
//! that a restore brought back exactly what was written.

/// A buffer filled from a deterministic generator, so its content can be
/// recomputed and compared after a restore without keeping a second copy.
pub struct Filled {
    words: Vec<u64>,
    seed: u64,
}

const WORDS_PER_MIB: usize = (1 << 20) / 8;

impl Filled {
    pub fn new(mib: u64, seed: u64) -> Filled {
        let len = usize::try_from(mib).unwrap_or(usize::MAX / 8 / WORDS_PER_MIB) * WORDS_PER_MIB;
        let mut words = Vec::with_capacity(len);
        let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
        // Writing every word (not just one per page) makes every page dirty
        // and incompressible, as real application memory would be.
        words.extend((0..len).map(|_| next(&mut state)));
        Filled { words, seed }
    }

    /// A cheap fingerprint of the content (FNV-style fold).
    pub fn checksum(&self) -> u64 {
        self.words.iter().fold(0xcbf2_9ce4_8422_2325, |acc, w| {
            (acc ^ w).wrapping_mul(0x100_0000_01b3)
        })
    }

    /// True when the memory holds what the generator wrote.
    pub fn verify(&self) -> bool {
        let mut state = self.seed ^ 0x9e37_79b9_7f4a_7c15;
        self.words.iter().all(|w| *w == next(&mut state))
    }
}

/// splitmix64: fast, and every output differs, so no page is all zeros.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
