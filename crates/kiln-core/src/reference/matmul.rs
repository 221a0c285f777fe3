//! Matmul: `[B.., M, K] x [B.., K, N] -> [B.., M, N]` with identical batch dimensions (the graph
//! makes batch broadcasting explicit with Expand). Accumulates in f64, k ascending.

/// The batched matrix product of `a` (dims `a_dims`) and `b` (dims `b_dims`).
pub(super) fn matmul(a: &[f64], a_dims: &[usize], b: &[f64], b_dims: &[usize]) -> Vec<f64> {
    let r = a_dims.len();
    let (m, k, n) = (a_dims[r - 2], a_dims[r - 1], b_dims[r - 1]);
    let batch: usize = a_dims[..r - 2].iter().product();
    let mut out = vec![0.0; batch * m * n];
    let mut bt = vec![0.0; n * k];
    for p in 0..batch {
        let a = &a[p * m * k..(p + 1) * m * k];
        let b = &b[p * k * n..(p + 1) * k * n];
        // Transpose b so that the k loop reads contiguous memory in both operands.
        for kk in 0..k {
            for j in 0..n {
                bt[j * k + kk] = b[kk * n + j];
            }
        }
        let out = &mut out[p * m * n..(p + 1) * m * n];
        for i in 0..m {
            let a_row = &a[i * k..(i + 1) * k];
            for j in 0..n {
                let b_col = &bt[j * k..(j + 1) * k];
                let mut acc = 0.0;
                for (x, y) in a_row.iter().zip(b_col) {
                    acc += x * y;
                }
                out[i * n + j] = acc;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::reference::tests::dev;
    use crate::Tensor;
    use std::time::Instant;

    fn t(v: &[f32], dims: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), dims, &dev()).unwrap()
    }

    #[test]
    fn two_by_three_times_three_by_two() {
        // [[1,2,3],[4,5,6]] @ [[7,8],[9,10],[11,12]] = [[58,64],[139,154]].
        let a = t(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
        let b = t(&[7., 8., 9., 10., 11., 12.], &[3, 2]);
        let c = a.matmul(&b);
        assert_eq!(c.dims(), &[2, 2]);
        assert_eq!(c.to_vec::<f32>().unwrap(), vec![58., 64., 139., 154.]);
        // A transposed operand: a @ a^T = [[14,32],[32,77]].
        assert_eq!(
            a.matmul(&a.t()).to_vec::<f32>().unwrap(),
            vec![14., 32., 32., 77.]
        );
    }

    #[test]
    fn batched_with_a_broadcast_batch() {
        // a: [2, 1, 2] (two row vectors), b: [2, 2] shared by both batches.
        let a = t(&[1., 2., 3., 4.], &[2, 1, 2]);
        let b = t(&[1., 10., 100., 1000.], &[2, 2]);
        let c = a.matmul(&b);
        assert_eq!(c.dims(), &[2, 1, 2]);
        assert_eq!(c.to_vec::<f32>().unwrap(), vec![201., 2010., 403., 4030.]);
        // [2,1,2,2] x [3,2,2]: batch broadcasts to [2,3].
        let x = t(&[1., 0., 0., 1., 2., 0., 0., 2.], &[2, 1, 2, 2]);
        let y = t(&(0..12).map(|i| i as f32).collect::<Vec<_>>(), &[3, 2, 2]);
        let z = x.matmul(&y);
        assert_eq!(z.dims(), &[2, 3, 2, 2]);
        let v = z.to_vec::<f32>().unwrap();
        assert_eq!(&v[..12], &(0..12).map(|i| i as f32).collect::<Vec<_>>()[..]);
        assert_eq!(
            &v[12..],
            &(0..12).map(|i| 2.0 * i as f32).collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn vectors_and_empty_inner_dimension() {
        let v = t(&[1., 2.], &[2]);
        let m = t(&[1., 2., 3., 4.], &[2, 2]);
        assert_eq!(v.matmul(&m).to_vec::<f32>().unwrap(), vec![7., 10.]);
        assert_eq!(m.matmul(&v).to_vec::<f32>().unwrap(), vec![5., 11.]);
        assert_eq!(v.matmul(&v).item::<f32>().unwrap(), 5.0);
        let e = t(&[], &[2, 0]).matmul(&t(&[], &[0, 3]));
        assert_eq!(e.to_vec::<f32>().unwrap(), vec![0.0; 6]);
    }

    #[test]
    fn worked_example_convolution_by_shifted_slices() {
        // The 3x3 input 0..8 convolved (cross-correlated) with [[0,1],[2,3]] is [[19,25],[37,43]].
        let x = t(&[0., 1., 2., 3., 4., 5., 6., 7., 8.], &[3, 3]);
        let w = [[0., 1.], [2., 3.]];
        let mut y = Tensor::zeros([2, 2], &dev());
        for (i, row) in w.iter().enumerate() {
            for (j, &wij) in row.iter().enumerate() {
                y = y + x.slice(0, i, i + 2, 1).slice(1, j, j + 2, 1) * wij;
            }
        }
        assert_eq!(y.to_vec::<f32>().unwrap(), vec![19., 25., 37., 43.]);
        // The same as one matmul of the im2col patches with the flattened kernel.
        let patches: Vec<Tensor> = (0..2)
            .flat_map(|i| (0..2).map(move |j| (i, j)))
            .map(|(i, j)| {
                x.slice(0, i, i + 2, 1)
                    .slice(1, j, j + 2, 1)
                    .reshape([4, 1])
            })
            .collect();
        let refs: Vec<&Tensor> = patches.iter().collect();
        let cols = Tensor::cat(&refs, 1);
        let k = t(&[0., 1., 2., 3.], &[4, 1]);
        assert_eq!(
            cols.matmul(&k).to_vec::<f32>().unwrap(),
            vec![19., 25., 37., 43.]
        );
    }

    #[test]
    fn matmul_512_is_quick_and_right() {
        let n = 512;
        let a = Tensor::rand([n, n], 1, &dev());
        let started = Instant::now();
        let c = a.matmul(&Tensor::eye(n, &dev())).sub(&a).abs().max();
        assert_eq!(c.item::<f32>().unwrap(), 0.0);
        // Not a pass/fail time limit: printed so a slow build is noticed.
        eprintln!(
            "512x512x512 reference matmul (with eye and rand): {:?}",
            started.elapsed()
        );
    }
}
