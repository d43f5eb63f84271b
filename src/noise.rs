//! Seeded random numbers for the methods that sample (SmoothGrad's noise, RISE's masks, the
//! faithfulness checks' random order) and for SAE training: the same seed gives the same
//! result on every machine.

/// Seeded Gaussian noise (SplitMix64 and Box–Muller): the same seed gives the same maps on
/// every machine.
#[derive(Debug, Clone)]
pub struct NoiseSource {
    state: u64,
    spare: Option<f32>,
}

impl NoiseSource {
    /// A source from `seed`.
    pub fn new(seed: u64) -> NoiseSource {
        NoiseSource {
            state: seed,
            spare: None,
        }
    }

    /// A uniform value in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal value.
    pub fn normal(&mut self) -> f32 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let u = self.uniform().max(f64::MIN_POSITIVE);
        let v = self.uniform();
        let radius = (-2.0 * u.ln()).sqrt();
        let angle = 2.0 * std::f64::consts::PI * v;
        self.spare = Some((radius * angle.sin()) as f32);
        (radius * angle.cos()) as f32
    }
}
