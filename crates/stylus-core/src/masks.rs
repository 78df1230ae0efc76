//! Adapter masks for the composer's images (Stylus, Luo et al. 2024, stylus-diffusion/stylus, MIT):
//! which chosen adapters are on in each image, drawn with replacement from a seeded PRNG.
//!
//! Modes: `one_hot_loras` (default): per topic any on/off subset of its adapters, crossed over topics
//! (uniform over the product, i.e. every adapter on with probability ½, independently); `all`: every
//! chosen adapter on; `one_hot_concepts`: per topic all of its adapters on or all off.
//!
//! The all-off mask (no adapter at all) is redrawn whenever at least one adapter was chosen, so each
//! image uses some adapter; it is the only mask when nothing was chosen (empty topic list, or no
//! topic found an adapter), and then every image is the base model with the prompt alone.
//! The PRNG is SplitMix64 (Steele, Lea & Flood 2014): integer ops only, so a seed gives the same masks
//! on every platform.

use serde::{Deserialize, Serialize};

/// SplitMix64 pseudo-random generator.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A fair coin.
    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }
}

/// How masks are drawn (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskMode {
    #[default]
    OneHotLoras,
    All,
    OneHotConcepts,
}

/// `n` masks for topics holding `groups[t]` adapters each; a mask is one flag per adapter, topics in
/// order.
pub fn draw(groups: &[usize], mode: MaskMode, n: usize, seed: u64) -> Vec<Vec<bool>> {
    let total: usize = groups.iter().sum();
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| loop {
            let mask: Vec<bool> = match mode {
                MaskMode::All => vec![true; total],
                MaskMode::OneHotLoras => (0..total).map(|_| rng.coin()).collect(),
                MaskMode::OneHotConcepts => groups
                    .iter()
                    .flat_map(|&g| {
                        let on = g > 0 && rng.coin();
                        std::iter::repeat_n(on, g)
                    })
                    .collect(),
            };
            if total == 0 || mask.iter().any(|b| *b) {
                break mask;
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs for seed 1234567 from the reference C implementation.
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn modes() {
        let g = [2, 0, 3];
        let all = draw(&g, MaskMode::All, 3, 1);
        assert!(all.iter().all(|m| m.len() == 5 && m.iter().all(|b| *b)));
        let lor = draw(&g, MaskMode::OneHotLoras, 200, 7);
        assert!(lor.iter().all(|m| m.len() == 5 && m.iter().any(|b| *b)));
        let distinct: std::collections::HashSet<_> = lor.iter().collect();
        assert_eq!(distinct.len(), 31, "every non-empty subset appears");
        let con = draw(&g, MaskMode::OneHotConcepts, 100, 7);
        assert!(con.iter().all(|m| m[0] == m[1] && m[2] == m[3] && m[3] == m[4] && m.iter().any(|b| *b)));
        assert_eq!(draw(&[], MaskMode::OneHotLoras, 4, 0), vec![Vec::<bool>::new(); 4]);
        assert_eq!(draw(&[0, 0], MaskMode::OneHotConcepts, 2, 0), vec![Vec::<bool>::new(); 2]);
    }

    #[test]
    fn seeded() {
        let g = [3, 3, 2];
        assert_eq!(draw(&g, MaskMode::OneHotLoras, 16, 42), draw(&g, MaskMode::OneHotLoras, 16, 42));
        assert_ne!(draw(&g, MaskMode::OneHotLoras, 16, 42), draw(&g, MaskMode::OneHotLoras, 16, 43));
        let one = draw(&[1], MaskMode::OneHotLoras, 8, 9);
        assert!(one.iter().all(|m| m == &[true]));
    }
}
