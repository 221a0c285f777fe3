//! Leaves: host data, constants, ranges and seeded random numbers.
//!
//! Each function returns exact values; the caller rounds them to the node's dtype.

use crate::dtype::{decode_f64, DType};
use crate::error::{KilnError, Result};
use crate::op::RandDist;
use crate::rng;

/// Decodes `numel` elements of `dtype` from their little-endian device bytes.
pub(super) fn data(bytes: &[u8], dtype: DType, numel: usize) -> Result<Vec<f64>> {
    let size = dtype.size_bytes();
    if bytes.len() != numel * size {
        return Err(KilnError::Backend(format!(
            "host data of {} bytes for {numel} elements of {dtype} (expected {})",
            bytes.len(),
            numel * size
        )));
    }
    Ok(bytes
        .chunks_exact(size)
        .map(|b| decode_f64(dtype, b))
        .collect())
}

/// `numel` copies of `value`.
pub(super) fn full(value: f64, numel: usize) -> Vec<f64> {
    vec![value; numel]
}

/// Element i is `start + step * i`, in f64.
pub(super) fn arange(start: f64, step: f64, numel: usize) -> Vec<f64> {
    (0..numel).map(|i| start + step * i as f64).collect()
}

/// Element i is Philox draw i for `seed` (the index wraps past `u32::MAX`, as on the GPU).
pub(super) fn rand(seed: u64, dist: RandDist, numel: usize) -> Vec<f64> {
    (0..numel)
        .map(|i| {
            let index = i as u32;
            match dist {
                RandDist::Uniform => rng::uniform(seed, index) as f64,
                RandDist::Normal => rng::normal(seed, index) as f64,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::{DType, Device, KilnError, Tensor};
    use half::f16;

    #[test]
    fn from_vec_round_trips_every_dtype() {
        let dev = Device::cpu();
        let f = Tensor::from_vec(vec![1.5f32, -2.25, 1e-8], [3], &dev).unwrap();
        assert_eq!(f.to_vec::<f32>().unwrap(), vec![1.5, -2.25, 1e-8]);
        let i = Tensor::from_vec(vec![-7i32, 0, i32::MAX], [3], &dev).unwrap();
        assert_eq!(i.to_vec::<i32>().unwrap(), vec![-7, 0, i32::MAX]);
        let u = Tensor::from_vec(vec![u32::MAX, 3], [2], &dev).unwrap();
        assert_eq!(u.to_vec::<u32>().unwrap(), vec![u32::MAX, 3]);
        let b = Tensor::from_vec(vec![true, false], [2], &dev).unwrap();
        assert_eq!(b.to_vec::<bool>().unwrap(), vec![true, false]);
        let h = Tensor::from_vec(vec![f16::from_f32(0.5)], [1], &dev).unwrap();
        assert_eq!(h.to_vec::<f16>().unwrap(), vec![f16::from_f32(0.5)]);
    }

    #[test]
    fn from_vec_with_the_wrong_length_is_an_error() {
        let err = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], [2, 2], &Device::cpu()).unwrap_err();
        assert!(matches!(
            err,
            KilnError::DataLength {
                expected: 4,
                got: 3,
                ..
            }
        ));
    }

    #[test]
    fn to_vec_with_the_wrong_element_type_is_an_error() {
        let t = Tensor::from_vec(vec![1.0f32, 2.0], [2], &Device::cpu()).unwrap();
        let err = t.to_vec::<i32>().unwrap_err();
        assert!(matches!(err, KilnError::WrongElementType { .. }));
        assert!(err.to_string().contains("cast(DType::F32)"), "{err}");
    }

    #[test]
    fn full_zeros_ones_and_scalars() {
        let dev = Device::cpu();
        assert_eq!(
            Tensor::full([2, 2], 3.5, &dev).to_vec::<f32>().unwrap(),
            vec![3.5; 4]
        );
        assert_eq!(
            Tensor::zeros([3], &dev).to_vec::<f32>().unwrap(),
            vec![0.0; 3]
        );
        assert_eq!(Tensor::ones([], &dev).item::<f32>().unwrap(), 1.0);
        let i = Tensor::full_dtype([2], -2.9, DType::I32, &dev);
        assert_eq!(i.to_vec::<i32>().unwrap(), vec![-2, -2]);
    }

    #[test]
    fn arange_and_arange_i32() {
        let dev = Device::cpu();
        let a = Tensor::arange(0.0, 1.0, 0.25, &dev);
        assert_eq!(a.to_vec::<f32>().unwrap(), vec![0.0, 0.25, 0.5, 0.75]);
        let i = Tensor::arange_i32(5, -4, -3, &dev);
        assert_eq!(i.to_vec::<i32>().unwrap(), vec![5, 2, -1]);
        assert_eq!(
            Tensor::arange_i32(0, 5, 2, &dev).to_vec::<i32>().unwrap(),
            vec![0, 2, 4]
        );
        assert_eq!(
            Tensor::arange_i32(3, 3, 1, &dev).to_vec::<i32>().unwrap(),
            Vec::<i32>::new()
        );
        // 0.1 * i is computed in f64 and rounded once to f32.
        let t = Tensor::arange(0.0, 0.35, 0.1, &dev)
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(t, vec![0.0, 0.1, 0.2, 0.3_f64 as f32]);
    }

    #[test]
    fn linspace_includes_both_ends() {
        let t = Tensor::linspace(0.0, 1.0, 5, &Device::cpu());
        assert_eq!(t.to_vec::<f32>().unwrap(), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    }

    #[test]
    fn eye_is_the_identity() {
        let t = Tensor::eye(3, &Device::cpu());
        assert_eq!(t.dims(), &[3, 3]);
        assert_eq!(
            t.to_vec::<f32>().unwrap(),
            vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        );
    }

    #[test]
    fn rand_is_deterministic_per_seed() {
        let dev = Device::cpu();
        let a = Tensor::rand([4, 5], 42, &dev).to_vec::<f32>().unwrap();
        let b = Tensor::rand([4, 5], 42, &dev).to_vec::<f32>().unwrap();
        let c = Tensor::rand([4, 5], 43, &dev).to_vec::<f32>().unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|&x| (0.0..1.0).contains(&x)));
        // Element i is Philox draw i: the values do not depend on the shape.
        let flat = Tensor::rand([20], 42, &dev).to_vec::<f32>().unwrap();
        assert_eq!(a, flat);
        assert_eq!(a[7], crate::rng::uniform(42, 7));
        let n = Tensor::randn([3], 9, &dev).to_vec::<f32>().unwrap();
        assert_eq!(
            n,
            (0..3).map(|i| crate::rng::normal(9, i)).collect::<Vec<_>>()
        );
        assert_eq!(n, Tensor::randn([3], 9, &dev).to_vec::<f32>().unwrap());
    }

    #[test]
    fn uniform_scales_and_shifts() {
        let dev = Device::cpu();
        let u = Tensor::uniform([100], -2.0, 3.0, 1, &dev)
            .to_vec::<f32>()
            .unwrap();
        assert!(u.iter().all(|&x| (-2.0..3.0).contains(&x)));
    }
}
