//! Batch normalisation, BN folding and the deferred buffer updates: values against PyTorch's
//! numbers and plain loops, gradients by finite differences and against the textbook formula,
//! running statistics after several steps, the GPU against the reference, and a training step
//! with BN that stays one cached plan.

mod common;
use common::*;
use kiln::nn::{
    fold_batch_norm, pending_updates, realize_pending_updates, AdaptiveAvgPool2d, BatchNorm1d,
    BatchNorm2d, BatchNormOptions, Conv2d, Flatten, Linear, Module, ParamBuilder, Sequential,
};
use kiln::optim::{Adam, Optimizer};
use kiln::prelude::*;

#[rustfmt::skip]
/// PyTorch 2.x: `x = (torch.arange(24.).reshape(2, 3, 2, 2) * 0.37) % 2.1 - 0.9`.
const X: [f32; 24] = [
    -0.9, -0.53, -0.15999997, 0.21000004, 0.58000004, 0.95000005, -0.77999985, -0.40999973,
    -0.039999843, 0.33000004, 0.7000002, 1.0700003, -0.6599997, -0.28999984, 0.08000052, 0.4500004,
    0.8200003, 1.1900002, -0.53999984, -0.16999948, 0.2000004, 0.5700003, 0.94000065, -0.78999937,
];

/// `BatchNorm2d(3)` with weight [1.5, -0.5, 2], bias [0.1, 0.2, -0.3], on `dev`.
fn torch_like_bn(dev: &Device) -> BatchNorm2d {
    let mut bn = BatchNorm2d::new(3, &ParamBuilder::new(dev, 0));
    bn.0.weight = Some(param(&[1.5, -0.5, 2.0], dev));
    bn.0.bias = Some(param(&[0.1, 0.2, -0.3], dev));
    bn
}

fn param(v: &[f32], dev: &Device) -> Tensor {
    kiln::nn::parameter(Tensor::from_slice(v, [v.len()], dev).unwrap())
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

#[test]
fn batchnorm2d_matches_pytorch_in_training_and_evaluation_on_cpu_and_gpu() {
    // Printed by PyTorch for the module above: the training output, the running statistics after
    // that batch and after a second batch `2x + 1`, and the evaluation output after both.
    #[rustfmt::skip]
    let y_train = [
        -2.2506182, -0.9621315, 0.32635528, 1.614_842, -0.06228641, -0.32107577, 0.88893926,
        0.63014984, -1.7734412, -0.45181006, 0.8698219, 2.191454, -1.4148422, -0.12635586,
        1.1621321, 2.4506185, -0.23014995, -0.48893923, 0.7210759, 0.4622863, -0.91616577,
        0.40546533, 1.7270982, -4.452422,
    ];
    let rm1 = [-0.022499982, 0.020500021, 0.037250035];
    let rv1 = [0.92120284, 0.9584028, 0.93582785];
    let rm2 = [0.03475005, 0.15945007, 0.2080251];
    let rv2 = [0.913894, 1.096174, 0.985_556_4];
    #[rustfmt::skip]
    let y_eval = [
        -1.3666836, -0.78612953, -0.20557545, 0.37497863, -0.000838015, -0.17753537, 0.6486441,
        0.4719467, -0.79966897, -0.05427029, 0.6911289, 1.4365281, -0.99010766, -0.4095537,
        0.17100093, 0.7515548, -0.11545263, -0.29214993, 0.5340296, 0.35733205, -0.3161665,
        0.429_232_2, 1.1746318, -2.3106117,
    ];
    for dev in [Device::cpu(), gpu()] {
        let bn = torch_like_bn(&dev);
        let x = Tensor::from_slice(&X, [2, 3, 2, 2], &dev).unwrap();
        assert_slices_close(&f32s(&bn.forward(&x)), &y_train, 1e-5, "training output");
        realize_pending_updates().unwrap();
        let stats = |bn: &BatchNorm2d| {
            let (m, v) = bn.running_stats().unwrap();
            (f32s(&m), f32s(&v))
        };
        let (m, v) = stats(&bn);
        assert_slices_close(&m, &rm1, 1e-6, "running mean");
        assert_slices_close(&v, &rv1, 1e-6, "running var");
        // The second batch's update is left pending: evaluation reads the pending values.
        bn.forward(&(x.mul_scalar(2.0) + 1.0));
        assert_eq!(pending_updates(), 3);
        bn.set_training(false);
        assert_slices_close(&f32s(&bn.forward(&x)), &y_eval, 1e-5, "evaluation output");
        let (m, v) = stats(&bn);
        assert_slices_close(&m, &rm2, 1e-6, "running mean");
        assert_slices_close(&v, &rv2, 1e-6, "running var");
        realize_pending_updates().unwrap();
        assert_eq!(pending_updates(), 0);
        let n = bn.num_batches_tracked.as_ref().unwrap();
        assert_eq!(n.to_vec::<i32>().unwrap(), vec![2]);
        assert_eq!(f32s(bn.running_mean.as_ref().unwrap()), m);
    }
}

/// Per-channel batch mean and biased variance of `[N, C, ..]` values, in f64.
fn channel_stats(x: &[f64], n: usize, c: usize) -> Vec<(f64, f64)> {
    let inner = x.len() / (n * c);
    (0..c)
        .map(|ch| {
            let vals: Vec<f64> = (0..n)
                .flat_map(|b| (0..inner).map(move |i| (b * c + ch) * inner + i))
                .map(|i| x[i])
                .collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let v = vals.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / vals.len() as f64;
            (m, v)
        })
        .collect()
}

#[test]
fn running_statistics_after_five_steps_match_a_hand_computation() {
    // Momentum 0.1 and the cumulative average (momentum None), 1-D and 2-D, some steps realized
    // one by one and some chained while still pending.
    let (n, c, l) = (4, 3, 5);
    for opts in [
        BatchNormOptions::default(),
        BatchNormOptions::default().momentum(0.3),
        BatchNormOptions::default().cumulative(),
    ] {
        for dev in [Device::cpu(), gpu()] {
            let bn1 = BatchNorm1d::with(c, opts, &ParamBuilder::new(&dev, 0));
            let bn2 = BatchNorm2d::with(c, opts, &ParamBuilder::new(&dev, 0));
            let mut want = [vec![0.0; c], vec![1.0; c]];
            for step in 0..5usize {
                let v = values(n * c * l, 40 + step as u64);
                let scaled: Vec<f32> = v.iter().map(|a| a * (1.0 + step as f32) + 0.5).collect();
                let x1 = Tensor::from_slice(&scaled, [n, c, l], &dev).unwrap();
                let x2 = x1.reshape([n, c, 1, l]);
                bn1.forward(&x1);
                bn2.forward(&x2);
                if step % 2 == 0 {
                    realize_pending_updates().unwrap();
                }
                let x64: Vec<f64> = scaled.iter().map(|&a| a as f64).collect();
                let m = match opts.momentum {
                    Some(m) => m,
                    None => 1.0 / (step + 1) as f64,
                };
                let count = (n * l) as f64;
                for (ch, (mean, var)) in channel_stats(&x64, n, c).into_iter().enumerate() {
                    want[0][ch] = (1.0 - m) * want[0][ch] + m * mean;
                    want[1][ch] = (1.0 - m) * want[1][ch] + m * var * count / (count - 1.0);
                }
            }
            for bn in [&bn1.0, &bn2.0] {
                let (m, v) = bn.running_stats().unwrap();
                let want32: Vec<Vec<f32>> = want
                    .iter()
                    .map(|w| w.iter().map(|&a| a as f32).collect())
                    .collect();
                assert_slices_close(&f32s(&m), &want32[0], 1e-5, "running mean");
                assert_slices_close(&f32s(&v), &want32[1], 1e-5, "running var");
            }
            realize_pending_updates().unwrap();
            let tracked = bn2.num_batches_tracked.as_ref().unwrap();
            assert_eq!(tracked.to_vec::<i32>().unwrap(), vec![5]);
        }
    }
}

#[test]
fn evaluation_uses_the_running_statistics_and_without_them_batch_statistics() {
    let dev = Device::cpu();
    let bn = BatchNorm2d::new(2, &ParamBuilder::new(&dev, 0));
    let stats = vec![
        (
            "weight".to_string(),
            Tensor::from_slice(&[2.0f32, 0.5], [2], &dev).unwrap(),
        ),
        (
            "bias".to_string(),
            Tensor::from_slice(&[1.0f32, -1.0], [2], &dev).unwrap(),
        ),
        (
            "running_mean".to_string(),
            Tensor::from_slice(&[0.5f32, -2.0], [2], &dev).unwrap(),
        ),
        (
            "running_var".to_string(),
            Tensor::from_slice(&[4.0f32, 0.25], [2], &dev).unwrap(),
        ),
        (
            "num_batches_tracked".to_string(),
            Tensor::full_dtype((), 9.0, DType::I32, &dev),
        ),
    ];
    kiln::nn::load_state_dict(&bn, &stats).unwrap();
    bn.set_training(false);
    let x = Tensor::from_slice(&values(2 * 2 * 3, 3), [2, 2, 3, 1], &dev).unwrap();
    let xv = f32s(&x);
    let want: Vec<f32> = xv
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            let ch = (i / 3) % 2;
            let (w, b, m, v) = [(2.0, 1.0, 0.5, 4.0), (0.5, -1.0, -2.0, 0.25)][ch];
            ((a as f64 - m) / (v + 1e-5f64).sqrt() * w + b) as f32
        })
        .collect();
    assert_slices_close(&f32s(&bn.forward(&x)), &want, 1e-6, "output");
    assert_eq!(pending_updates(), 0, "evaluation records nothing");

    // Without running statistics both modes normalise with the batch's own statistics.
    let opts = BatchNormOptions::default()
        .track_running_stats(false)
        .affine(false);
    let plain = BatchNorm2d::with(2, opts, &ParamBuilder::new(&dev, 0));
    assert!(plain.named_buffers().is_empty() && plain.named_parameters().is_empty());
    let train = f32s(&plain.forward(&x));
    plain.set_training(false);
    assert_eq!(f32s(&plain.forward(&x)), train);
    let x64: Vec<f64> = xv.iter().map(|&a| a as f64).collect();
    let st = channel_stats(&x64, 2, 2);
    let want: Vec<f32> = xv
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            let (m, v) = st[(i / 3) % 2];
            ((a as f64 - m) / (v + 1e-5).sqrt()) as f32
        })
        .collect();
    assert_slices_close(&train, &want, 1e-5, "output");
}

/// `BatchNorm2d` in training mode with weight `xs[1]` and bias `xs[2]`, applied to `xs[0]`.
fn bn_of(xs: &[Tensor]) -> Tensor {
    let c = xs[0].dims()[1];
    let opts = BatchNormOptions::default().track_running_stats(false);
    let mut bn = BatchNorm2d::with(c, opts, &ParamBuilder::new(xs[0].device(), 0));
    bn.0.weight = Some(xs[1].clone());
    bn.0.bias = Some(xs[2].clone());
    bn.forward(&xs[0])
}

#[test]
fn batchnorm_gradients_through_the_batch_statistics_pass_finite_differences() {
    check_gradients(bn_of, &[&[3, 2, 2, 2], &[2], &[2]], 11);
    let bn1d = |xs: &[Tensor]| {
        let opts = BatchNormOptions::default().track_running_stats(false);
        let mut bn = BatchNorm1d::with(3, opts, &ParamBuilder::new(xs[0].device(), 0));
        bn.0.weight = Some(xs[1].clone());
        bn.0.bias = Some(xs[2].clone());
        bn.forward(&xs[0])
    };
    check_gradients(bn1d, &[&[4, 3], &[3], &[3]], 12);
}

#[test]
fn batchnorm_gradients_match_the_textbook_formula_on_cpu_and_gpu() {
    // dx = w / (m sigma) (m dy - sum dy - x^ sum(dy x^)), dw = sum(dy x^), db = sum dy, per
    // channel over the m = N H W values; here dy are weighted_sum's weights.
    let (n, c, h, w) = (4, 3, 3, 2);
    let shapes: [&[usize]; 3] = [&[n, c, h, w], &[c], &[c]];
    let seed = 21;
    let dev = Device::cpu();
    let xs = check_inputs(&shapes, seed, &dev);
    let refs: Vec<&Tensor> = xs.iter().collect();
    let grads = weighted_sum(&bn_of(&xs), seed).grad_wrt(&refs);
    let x: Vec<f64> = xs[0].to_f64_vec().unwrap();
    let gamma = xs[1].to_f64_vec().unwrap();
    let dy: Vec<f64> = values(x.len(), seed ^ 0xabc)
        .iter()
        .map(|&v| v as f64)
        .collect();
    let st = channel_stats(&x, n, c);
    let inner = h * w;
    let m = (n * inner) as f64;
    let mut want = [vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]];
    for (ch, &(mean, var)) in st.iter().enumerate() {
        let sigma = (var + 1e-5).sqrt();
        let idx: Vec<usize> = (0..n)
            .flat_map(|b| (0..inner).map(move |i| (b * c + ch) * inner + i))
            .collect();
        let xhat = |i: usize| (x[i] - mean) / sigma;
        let sum_dy: f64 = idx.iter().map(|&i| dy[i]).sum();
        let sum_dy_xhat: f64 = idx.iter().map(|&i| dy[i] * xhat(i)).sum();
        for &i in &idx {
            want[0][i] = gamma[ch] / (m * sigma) * (m * dy[i] - sum_dy - xhat(i) * sum_dy_xhat);
        }
        want[1][ch] = sum_dy_xhat;
        want[2][ch] = sum_dy;
    }
    for (k, g) in grads.iter().enumerate() {
        let want32: Vec<f32> = want[k].iter().map(|&v| v as f32).collect();
        assert_slices_close(&f32s(g), &want32, 2e-5, "gradient");
    }
    check_gpu_gradients(bn_of, &shapes, seed);
}

#[test]
fn a_folded_convolution_gives_the_conv_and_batchnorm_evaluation_output() {
    let opts = kiln::Conv2dOptions::default().stride(2).padding(1);
    let cpu = Device::cpu();
    for conv in [
        Conv2d::new(3, 4, 3, opts, &ParamBuilder::new(&cpu, 1)),
        Conv2d::no_bias(3, 4, 3, opts, &ParamBuilder::new(&cpu, 2)),
    ] {
        let bn = BatchNorm2d::new(4, &ParamBuilder::new(&cpu, 0));
        // Non-trivial statistics and affine parameters: three training batches.
        for s in 0..3 {
            let x = Tensor::from_slice(&values(2 * 3 * 6 * 6, s), [2, 3, 6, 6], &cpu).unwrap();
            bn.forward(&conv.forward(&x.mul_scalar(1.0 + s as f64)));
        }
        realize_pending_updates().unwrap();
        let w = Tensor::from_slice(&[0.5f32, -1.5, 2.0, 1.0], [4], &cpu).unwrap();
        let b = Tensor::from_slice(&[0.1f32, 0.2, -0.3, 0.0], [4], &cpu).unwrap();
        kiln::nn::load_parameters(&bn, &[("weight".into(), w), ("bias".into(), b)]).unwrap();
        bn.set_training(false);
        let folded = fold_batch_norm(&conv, &bn).unwrap();
        assert!(folded.bias.is_some());
        let x = Tensor::from_slice(&values(2 * 3 * 7 * 5, 9), [2, 3, 7, 5], &cpu).unwrap();
        let want = bn.forward(&conv.forward(&x));
        assert_close(&folded.forward(&x), &want, 1e-5, 1e-5);

        // Folding on the GPU (the same layers moved there) gives the same weights.
        let dev = gpu();
        let (conv_g, bn_g) = (
            Conv2d::no_bias(3, 4, 3, opts, &ParamBuilder::new(&dev, 0)),
            BatchNorm2d::new(4, &ParamBuilder::new(&dev, 0)),
        );
        let mut conv_g = conv_g;
        conv_g.bias = conv
            .bias
            .as_ref()
            .map(|_| kiln::nn::parameter(Tensor::zeros([4], &dev)));
        kiln::nn::load_state_dict(&conv_g, &conv.state_dict()).unwrap();
        kiln::nn::load_state_dict(&bn_g, &bn.state_dict()).unwrap();
        let folded_g = fold_batch_norm(&conv_g, &bn_g).unwrap();
        assert_close(&folded_g.weight, &folded.weight, 1e-6, 1e-5);
        assert_close(
            folded_g.bias.as_ref().unwrap(),
            folded.bias.as_ref().unwrap(),
            1e-6,
            1e-5,
        );
    }
    // Layers that do not fit are errors.
    let dev = Device::cpu();
    let conv = Conv2d::no_bias(
        3,
        4,
        3,
        kiln::Conv2dOptions::default(),
        &ParamBuilder::new(&dev, 0),
    );
    let e = fold_batch_norm(&conv, &BatchNorm2d::new(5, &ParamBuilder::new(&dev, 0)))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("4 output channels") && e.contains('5'), "{e}");
    let untracked = BatchNorm2d::with(
        4,
        BatchNormOptions::default().track_running_stats(false),
        &ParamBuilder::new(&dev, 0),
    );
    let e = fold_batch_norm(&conv, &untracked)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("running statistics"), "{e}");
}

/// A small CNN with batch norms for the step tests: `[N, 1, 28, 28] -> [N, 10]`.
fn bn_cnn(dev: &Device, seed: u64) -> Sequential {
    let opts = kiln::Conv2dOptions::default().stride(2).padding(1);
    let pb = ParamBuilder::new(dev, seed);
    Sequential::new()
        .push(Conv2d::no_bias(1, 6, 3, opts, &pb.pp(0)))
        .push(BatchNorm2d::new(6, &pb.pp(1)))
        .push(kiln::nn::Activation::Relu)
        .push(Conv2d::no_bias(6, 8, 3, opts, &pb.pp(3)))
        .push(BatchNorm2d::new(8, &pb.pp(4)))
        .push(kiln::nn::Activation::Relu)
        .push(AdaptiveAvgPool2d::new([2, 2]))
        .push(Flatten)
        .push(Linear::no_bias(32, 16, &pb.pp(8)))
        .push(BatchNorm1d::new(16, &pb.pp(9)))
        .push(Linear::new(16, 10, &pb.pp(10)))
}

#[test]
fn a_training_step_with_batchnorm_is_one_cached_plan_that_also_updates_the_statistics() {
    let dev = fresh_gpu();
    let model = bn_cnn(&dev, 5);
    let names: Vec<String> = model.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        &names[..6],
        [
            "0.weight",
            "1.weight",
            "1.bias",
            "1.running_mean",
            "1.running_var",
            "1.num_batches_tracked"
        ]
    );
    assert_eq!(names.len(), 1 + 5 + 1 + 5 + 1 + 5 + 2);
    assert_eq!(model.named_buffers().len(), 9);
    let mut opt = Adam::new(model.parameters(), 1e-2);
    let batch = |i: u64| {
        let x = Tensor::from_slice(&values(8 * 28 * 28, i), [8, 1, 28, 28], &dev).unwrap();
        let y = Tensor::from_slice(&[0i32, 1, 2, 3, 4, 5, 6, 7], [8], &dev).unwrap();
        (x, y)
    };
    let mut losses = vec![];
    for i in 0..6 {
        let (x, y) = batch(i % 2);
        let before = dev.stats();
        let loss = model.forward(&x).cross_entropy(&y);
        opt.step(&loss.backward()).unwrap();
        let after = dev.stats();
        assert_eq!(
            pending_updates(),
            0,
            "the step realized the running statistics"
        );
        losses.push(loss.item::<f32>().unwrap());
        if i >= 2 {
            assert_eq!(after.submissions - before.submissions, 1, "{after}");
            assert_eq!(after.plans_compiled, before.plans_compiled, "{after}");
            assert_eq!(after.pipelines_created, before.pipelines_created, "{after}");
            assert_eq!(after.buffers_allocated, before.buffers_allocated, "{after}");
        }
    }
    let bn = model.state_dict();
    let tracked = &bn
        .iter()
        .find(|(n, _)| n == "4.num_batches_tracked")
        .unwrap()
        .1;
    assert_eq!(tracked.to_vec::<i32>().unwrap(), vec![6]);
    let mean = f32s(&bn.iter().find(|(n, _)| n == "1.running_mean").unwrap().1);
    assert!(mean.iter().any(|&m| m.abs() > 1e-4), "{mean:?}");
    assert!(losses[5] < losses[1], "{losses:?}");

    // The same steps on the reference device give the same statistics.
    let cpu = Device::cpu();
    let model_cpu = bn_cnn(&cpu, 5);
    let mut opt_cpu = Adam::new(model_cpu.parameters(), 1e-2);
    for i in 0..6 {
        let (x, y) = batch(i % 2);
        let (x, y) = (x.to_device(&cpu).unwrap(), y.to_device(&cpu).unwrap());
        let loss = model_cpu.forward(&x).cross_entropy(&y);
        opt_cpu.step(&loss.backward()).unwrap();
    }
    for ((n, g), (_, c)) in model.state_dict().iter().zip(model_cpu.state_dict()) {
        if g.dtype() == DType::F32 {
            let (g, c) = (f32s(g), f32s(&c));
            assert_slices_close(&g, &c, 2e-3, "gradient against the CPU");
        } else {
            assert_eq!(
                g.to_vec::<i32>().unwrap(),
                c.to_vec::<i32>().unwrap(),
                "{n}"
            );
        }
    }
}

#[test]
fn misuse_of_batchnorm_panics_naming_the_layer_and_the_shape() {
    let dev = Device::cpu();
    let bn = BatchNorm2d::new(3, &ParamBuilder::new(&dev, 0));
    let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        bn.forward(&Tensor::zeros([2, 4, 3, 3], &dev))
    }))
    .unwrap_err();
    let msg = e.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("BatchNorm2d") && msg.contains("[2, 4, 3, 3]"),
        "{msg}"
    );
    let bn1 = BatchNorm1d::new(3, &ParamBuilder::new(&dev, 0));
    let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        bn1.forward(&Tensor::zeros([1, 3], &dev))
    }))
    .unwrap_err();
    let msg = e.downcast_ref::<String>().unwrap();
    assert!(msg.contains("more than one value per channel"), "{msg}");
    assert_eq!(pending_updates(), 0);
}
