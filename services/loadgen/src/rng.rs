//! The generator's random source: a seeded PCG (rand_pcg's `Pcg64Mcg`, whose output sequence is
//! fixed by its specification) and sampling helpers written here, not taken from `rand`'s
//! distributions, so the stream for a seed cannot change when a dependency is upgraded.

use rand_pcg::Pcg64Mcg;
use rand_pcg::rand_core::Rng as _;

/// A seeded random stream.
#[derive(Debug, Clone)]
pub struct Rng(Pcg64Mcg);

impl Rng {
    /// The stream for `seed`; `stream` separates independent uses of one seed (catalog, users,
    /// disorder) so that changing how often one of them draws does not shift the others.
    pub fn new(seed: u64, stream: u64) -> Self {
        // SplitMix64 finalizer spreads nearby seeds over the whole state.
        let mix = |mut z: u64| {
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let a = mix(seed ^ 0x9e37_79b9_7f4a_7c15);
        let b = mix(stream.wrapping_add(0x632b_e59b_d9b4_e019) ^ a);
        let state = (u128::from(a) << 64) | u128::from(b);
        Self(Pcg64Mcg::new(state))
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// Uniform in `0..n` (`n > 0`), without modulo bias (Lemire's multiply-shift with rejection).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let n = n.max(1);
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Uniform in `lo..=hi` (`lo <= hi`).
    pub fn between(&mut self, lo: i64, hi: i64) -> i64 {
        let span = hi.saturating_sub(lo).max(0) as u64;
        lo + self.below(span + 1) as i64
    }

    /// An element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// An index chosen with the given (positive) weights.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut x = self.below(total.max(1));
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                return i;
            }
            x -= u64::from(w);
        }
        weights.len() - 1
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Log-normal with the given median and shape: right-skewed, heavy right tail.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Exponential with the given mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }

    /// Geometric count of failures before a success, with the given mean.
    pub fn geometric(&mut self, mean: f64) -> u64 {
        let p = 1.0 / (1.0 + mean);
        ((1.0 - self.unit()).ln() / (1.0 - p).ln()).floor() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_streams_differ() {
        let draw = |seed, stream| {
            let mut r = Rng::new(seed, stream);
            (0..8).map(|_| r.next_u64()).collect::<Vec<u64>>()
        };
        let (a, b, c, d) = (draw(7, 1), draw(7, 1), draw(7, 2), draw(8, 1));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn helpers_stay_in_range() {
        let mut r = Rng::new(1, 0);
        let mut seen = [0u32; 5];
        for _ in 0..10_000 {
            let x = r.between(3, 7);
            assert!((3..=7).contains(&x));
            seen[(x - 3) as usize] += 1;
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
            assert!(r.lognormal(100.0, 1.0) > 0.0);
        }
        assert!(seen.iter().all(|&n| n > 1500), "{seen:?}");
        assert!(!r.chance(0.0));
        assert_eq!(r.weighted(&[0, 5, 0]), 1);
    }
}
