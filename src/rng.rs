//! A small seeded random number generator (SplitMix64) whose whole state is one u64, so a
//! checkpoint can store it and a resumed run draws exactly the numbers it would have drawn.
//! Used for weight init, data shuffling and sampling.
//!
//! `Rng` is a `rand` generator (it implements `rand::TryRng`, so `rand::Rng`, and `SeedableRng`):
//! shuffles and ranges use `rand`'s tested algorithms (`SliceRandom::shuffle`, `RngExt::random_range`)
//! rather than copies of our own. Only the generator itself, and `normal`, are written here.
//!
//! ```
//! use gpt2::rng::Rng;
//! use rand::seq::SliceRandom;
//! let mut order: Vec<usize> = (0..5).collect();
//! order.shuffle(&mut Rng::new(7));
//! let mut again: Vec<usize> = (0..5).collect();
//! again.shuffle(&mut Rng::new(7));
//! assert_eq!(order, again); // the same seed, the same permutation
//! ```

use rand::{RngExt, SeedableRng, TryRng};
use std::convert::Infallible;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    pub state: u64,
}

impl Rng {
    /// The generator whose state is `seed` (the same as `SeedableRng::seed_from_u64(seed)`).
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// SplitMix64 (Steele, Lea, Flood 2014): add a constant, then scramble the bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 24 random bits, so every value is an exact f32.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform integer in [0, n), n > 0 (`rand`'s unbiased `random_range`).
    pub fn below(&mut self, n: usize) -> usize {
        self.random_range(0..n)
    }

    /// Standard normal by the Box-Muller transform.
    pub fn normal(&mut self) -> f32 {
        let u1 = ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64; // in (0, 1]
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

/// The generator for `rand`: every u64 is one SplitMix64 step, a u32 is its high half.
impl TryRng for Rng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((Rng::next_u64(self) >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(Rng::next_u64(self))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        rand::rand_core::utils::fill_bytes_via_next_word(dst, || self.try_next_u64())
    }
}

/// Seeding: the seed is the state (8 bytes, little-endian), so `seed_from_u64(s)` is `Rng::new(s)`
/// and a state saved in a checkpoint seeds the same generator back.
impl SeedableRng for Rng {
    type Seed = [u8; 8];

    fn from_seed(seed: [u8; 8]) -> Self {
        Rng::new(u64::from_le_bytes(seed))
    }

    fn seed_from_u64(state: u64) -> Self {
        Rng::new(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;

    #[test]
    fn normal_has_mean_zero_and_unit_variance() {
        let mut rng = Rng::new(42);
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| rng.normal() as f64).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        // standard error of the mean is 1/sqrt(n) ~ 0.003; allow 3 of them
        approx::assert_abs_diff_eq!(mean, 0.0, epsilon = 0.01);
        approx::assert_abs_diff_eq!(var, 1.0, epsilon = 0.02);
    }

    #[test]
    fn splitmix64_matches_the_published_sequence() {
        // the first outputs from seed 1234567, as in the reference implementation (Vigna's splitmix64.c)
        let mut rng = Rng::new(1234567);
        let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(first, [6457827717110365317, 3203168211198807973, 9817491932198370423]);
    }

    #[test]
    fn seeding_through_rand_is_the_same_generator() {
        assert_eq!(Rng::seed_from_u64(99), Rng::new(99));
        assert_eq!(Rng::from_seed(99u64.to_le_bytes()), Rng::new(99));
        // the trait's u64 is the inherent one: a resumed `Rng::new(state)` continues the same stream
        let mut a = Rng::new(5);
        let _ = a.next_u64();
        let mut b = Rng::new(a.state);
        assert_eq!(TryRng::try_next_u64(&mut a).unwrap(), b.next_u64());
    }

    #[test]
    fn shuffles_and_ranges_are_seeded_and_in_range() {
        let perm = |seed| {
            let mut v: Vec<u32> = (0..10).collect();
            v.shuffle(&mut Rng::new(seed));
            v
        };
        assert_eq!(perm(3), perm(3));
        assert_ne!(perm(3), perm(4));
        let mut sorted = perm(3);
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<u32>>(), "a permutation");
        let mut rng = Rng::new(8);
        let draws: Vec<usize> = (0..1000).map(|_| rng.below(7)).collect();
        assert!(draws.iter().all(|&d| d < 7));
        assert!((0..7).all(|k| draws.contains(&k)), "every value comes up");
        let x = rng.next_f32();
        assert!((0.0..1.0).contains(&x));
    }
}
