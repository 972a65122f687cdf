//! A tiny deterministic random source (SplitMix64), so a seed reproduces a run exactly.

/// SplitMix64: fast, tiny, good enough for fault injection and ids. Not for cryptography.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The SplitMix64 finaliser: a good 64-bit hash of `z`.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An id like the API's (`req_011CT...`): a prefix and 24 base-62 characters derived from `n`.
pub(crate) fn id(prefix: &str, n: u64) -> String {
    let mut out = String::with_capacity(prefix.len() + 24);
    out.push_str(prefix);
    let mut a = mix(n.wrapping_add(0x9E37_79B9_7F4A_7C15));
    let mut b = mix(n ^ 0xA5A5_A5A5_A5A5_A5A5);
    for i in 0..24 {
        let src = if i < 12 { &mut a } else { &mut b };
        out.push(ALPHABET[(*src % 62) as usize] as char);
        *src /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let x = SplitMix64::new(1).next_f64();
        assert!((0.0..1.0).contains(&x));
    }

    #[test]
    fn ids_are_distinct_and_well_formed() {
        let a = id("req_", 1);
        let b = id("req_", 2);
        assert_ne!(a, b);
        assert_eq!(a.len(), 28);
        assert!(a[4..].bytes().all(|c| c.is_ascii_alphanumeric()));
    }
}
