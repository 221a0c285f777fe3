//! Philox4x32-10, the counter-based random number generator behind [`crate::Tensor::rand`] and
//! [`crate::Tensor::randn`]. Element i of a random tensor is a pure function of (seed, i), so the
//! reference executor and every GPU kernel draw the same numbers.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32 with 10 rounds: four random words for `counter` under `key`.
pub fn philox4x32(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for _ in 0..10 {
        let p0 = (M0 as u64) * (c[0] as u64);
        let p1 = (M1 as u64) * (c[2] as u64);
        c = [
            ((p1 >> 32) as u32) ^ c[1] ^ k[0],
            p1 as u32,
            ((p0 >> 32) as u32) ^ c[3] ^ k[1],
            p0 as u32,
        ];
        k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
    }
    c
}

/// The uniform value in [0, 1) of element `index` for `seed` (exact in f32).
pub fn uniform(seed: u64, index: u32) -> f32 {
    let w = philox4x32([index, 0, 0, 0], [seed as u32, (seed >> 32) as u32]);
    (w[0] >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// The standard normal value of element `index` for `seed` (Box-Muller, computed in f32 as the
/// GPU kernels do; the GPU's `log` and `cos` may differ from the host's in the last bits).
pub fn normal(seed: u64, index: u32) -> f32 {
    let w = philox4x32([index, 0, 0, 0], [seed as u32, (seed >> 32) as u32]);
    let u1 = ((w[0] >> 8) + 1) as f32 * (1.0 / 16_777_216.0);
    let u2 = (w[1] >> 8) as f32 * (1.0 / 16_777_216.0);
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_matches_the_random123_known_answer() {
        // Known-answer test from Random123 (kat_vectors: philox4x32_10, all-zero and all-ones).
        assert_eq!(
            philox4x32([0, 0, 0, 0], [0, 0]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
    }

    #[test]
    fn uniform_and_normal_have_the_right_moments() {
        let n = 20_000;
        let u: Vec<f32> = (0..n).map(|i| uniform(3, i)).collect();
        let mean = u.iter().sum::<f32>() / n as f32;
        assert!((mean - 0.5).abs() < 0.01, "uniform mean {mean}");
        assert!(u.iter().all(|&x| (0.0..1.0).contains(&x)));
        let z: Vec<f32> = (0..n).map(|i| normal(3, i)).collect();
        let m = z.iter().sum::<f32>() / n as f32;
        let v = z.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / n as f32;
        assert!(
            m.abs() < 0.03 && (v - 1.0).abs() < 0.05,
            "normal mean {m} var {v}"
        );
    }
}
