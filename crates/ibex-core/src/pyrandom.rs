//! Python's `random.Random`, bit for bit, as far as lm-eval's few-shot sampler uses it: MT19937 seeded by
//! `random.seed(int)` (`init_by_array`), `getrandbits`, `_randbelow_with_getrandbits` and `sample`. lm-eval picks
//! few-shot examples with `Random(1234).sample(docs, k)`; any other generator picks other shots and other scores.

const N: usize = 624;
const M: usize = 397;

/// A Mersenne Twister in the state CPython's `random.Random(seed)` starts from.
pub struct PyRandom {
    state: [u32; N],
    index: usize,
}

impl PyRandom {
    /// `random.Random(seed)` for a non-negative integer seed.
    pub fn new(seed: u64) -> Self {
        let key: Vec<u32> = if seed >> 32 == 0 { vec![seed as u32] } else { vec![seed as u32, (seed >> 32) as u32] };
        let mut rng = Self { state: [0; N], index: N };
        rng.init_genrand(19_650_218);
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let previous = rng.state[i - 1] ^ (rng.state[i - 1] >> 30);
            rng.state[i] =
                (rng.state[i] ^ previous.wrapping_mul(1_664_525)).wrapping_add(key[j]).wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                rng.state[0] = rng.state[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let previous = rng.state[i - 1] ^ (rng.state[i - 1] >> 30);
            rng.state[i] = (rng.state[i] ^ previous.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                rng.state[0] = rng.state[N - 1];
                i = 1;
            }
        }
        rng.state[0] = 0x8000_0000;
        rng
    }

    fn init_genrand(&mut self, seed: u32) {
        self.state[0] = seed;
        for i in 1..N {
            let previous = self.state[i - 1] ^ (self.state[i - 1] >> 30);
            self.state[i] = 1_812_433_253u32.wrapping_mul(previous).wrapping_add(i as u32);
        }
        self.index = N;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            for k in 0..N {
                let y = (self.state[k] & 0x8000_0000) | (self.state[(k + 1) % N] & 0x7fff_ffff);
                let magic = if y & 1 == 1 { 0x9908_b0df } else { 0 };
                self.state[k] = self.state[(k + M) % N] ^ (y >> 1) ^ magic;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `getrandbits(k)` for 1 ≤ k ≤ 64: 32-bit words, least significant first, the last one shifted down.
    fn getrandbits(&mut self, bits: u32) -> u64 {
        let mut result = 0u64;
        let mut filled = 0;
        while filled < bits {
            let take = (bits - filled).min(32);
            let word = u64::from(self.next_u32() >> (32 - take));
            result |= word << filled;
            filled += take;
        }
        result
    }

    /// `_randbelow_with_getrandbits(n)`: rejection sampling on `n.bit_length()` bits.
    fn randbelow(&mut self, n: usize) -> usize {
        let bits = usize::BITS - n.leading_zeros();
        loop {
            let r = self.getrandbits(bits) as usize;
            if r < n {
                return r;
            }
        }
    }

    /// `random.random()`: a float in [0, 1) from 53 random bits (two draws).
    pub fn random(&mut self) -> f64 {
        let a = f64::from(self.next_u32() >> 5);
        let b = f64::from(self.next_u32() >> 6);
        (a * 67_108_864.0 + b) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// One index of `random.choices(range(n))` (no weights): `floor(random() * n)`.
    pub fn choice_index(&mut self, n: usize) -> usize {
        (self.random() * n as f64).floor() as usize
    }

    /// `sample(range(n), k)`: `k` distinct indices below `n`, in draw order. Panics if `k > n`, as Python raises.
    pub fn sample(&mut self, n: usize, k: usize) -> Vec<usize> {
        assert!(k <= n, "sample larger than population");
        let mut setsize = 21usize;
        if k > 5 {
            setsize += 4usize.pow(((k * 3) as f64).log(4.0).ceil() as u32);
        }
        if n <= setsize {
            let mut pool: Vec<usize> = (0..n).collect();
            (0..k)
                .map(|i| {
                    let j = self.randbelow(n - i);
                    let chosen = pool[j];
                    pool[j] = pool[n - i - 1];
                    chosen
                })
                .collect()
        } else {
            let mut selected = std::collections::HashSet::with_capacity(k);
            (0..k)
                .map(|_| loop {
                    let j = self.randbelow(n);
                    if selected.insert(j) {
                        break j;
                    }
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values printed by CPython 3.11: `r = random.Random(seed); r.sample(range(n), k)`, repeated.
    #[test]
    fn random_and_choices_match_cpython() {
        // random.Random(0).random() twice; random.Random(7).choices(range(10), k=5); Random(99).choices(range(3), k=4)
        let mut rng = PyRandom::new(0);
        assert_eq!([rng.random(), rng.random()], [0.8444218515250481, 0.7579544029403025]);
        let mut rng = PyRandom::new(7);
        assert_eq!((0..5).map(|_| rng.choice_index(10)).collect::<Vec<_>>(), [3, 1, 6, 0, 5]);
        let mut rng = PyRandom::new(99);
        assert_eq!((0..4).map(|_| rng.choice_index(3)).collect::<Vec<_>>(), [1, 0, 0, 0]);
    }

    #[test]
    fn small_population_draws_match_cpython() {
        let mut rng = PyRandom::new(1234);
        let draws: Vec<_> = (0..3).map(|_| rng.sample(10, 3)).collect();
        assert_eq!(draws, [vec![7, 1, 0], vec![1, 0, 9], vec![1, 5, 3]]);
    }

    #[test]
    fn large_population_draws_match_cpython() {
        let mut rng = PyRandom::new(1234);
        let draws: Vec<_> = (0..3).map(|_| rng.sample(392_702, 4)).collect();
        assert_eq!(
            draws,
            [vec![231070, 61263, 3927, 47523], vec![305254, 18311, 352092, 363377], vec![44007, 51601, 185931, 124156]]
        );
    }

    #[test]
    fn big_k_set_size_and_wide_seeds_match_cpython() {
        let mut rng = PyRandom::new(1234);
        assert_eq!(rng.sample(30, 25)[..8], [24, 14, 3, 0, 2, 18, 1, 21]);
        assert_eq!(rng.sample(100, 7), [14, 1, 64, 62, 31, 8, 85]);
        assert_eq!(PyRandom::new((1 << 40) + 5).sample(1000, 2), [516, 529]);
    }
}
