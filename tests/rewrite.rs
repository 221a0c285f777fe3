//! The rewrite pass (`kiln::rewrite`): each rule computes, on the reference executor, the values
//! of the graph it replaces, fires where it should, and leaves other graphs alone.

mod common;
use common::*;
use kiln::prelude::*;
use kiln::schedule::ScheduleLimits;

fn limits() -> ScheduleLimits {
    ScheduleLimits::new(8)
}

/// How often `rule` fired in `fired`.
fn count(fired: &[(&'static str, usize)], rule: &str) -> usize {
    fired
        .iter()
        .find(|(name, _)| *name == rule)
        .map_or(0, |(_, n)| *n)
}

#[test]
fn a_dense_layers_weight_gradient_over_a_batch_is_one_product() {
    // x [4, 5, 64] through a [64, 256] weight: the weight is broadcast over the 4 sequences, and
    // its gradient (64 x 256 = 16,384 values) is one [64, 20] x [20, 256] product.
    let build = |dev: &Device| {
        let x = Tensor::randn([4, 5, 64], 1, dev);
        let w = Tensor::randn([64, 256], 2, dev);
        w.set_requires_grad(true);
        let y = x.matmul(&w);
        y.mul(&y).sum().grad_wrt(&[&w])
    };
    let fired = check_rewrite(build, limits(), 1e-5);
    assert_eq!(count(&fired, "fold_summed_batch_into_contraction"), 1);
}

#[test]
fn a_left_operand_broadcast_over_the_batch_is_folded_too() {
    // w [256, 64] times x [3, 64, 7]: w's gradient sums g_b x_bᵀ over the 3 batches.
    let build = |dev: &Device| {
        let w = Tensor::randn([256, 64], 3, dev);
        w.set_requires_grad(true);
        let x = Tensor::randn([3, 64, 7], 4, dev);
        let y = w.matmul(&x);
        y.mul(&y).sum().grad_wrt(&[&w])
    };
    let fired = check_rewrite(build, limits(), 1e-5);
    assert_eq!(count(&fired, "fold_summed_batch_into_contraction"), 1);
}

#[test]
fn a_grouped_convolutions_weight_gradient_keeps_its_groups_as_a_batch() {
    // 2 groups of [64, 8 * 3 * 3]... weights: the images are summed, the groups stay a batch.
    let build = |dev: &Device| {
        let x = Tensor::randn([3, 16, 9, 9], 5, dev);
        let w = Tensor::randn([256, 8, 3, 3], 6, dev);
        w.set_requires_grad(true);
        let opts = Conv2dOptions::default().groups(2).padding(1);
        let y = x.conv2d(&w, None, &opts);
        y.mul(&y).sum().grad_wrt(&[&w])
    };
    let fired = check_rewrite(build, limits(), 1e-5);
    assert_eq!(count(&fired, "fold_summed_batch_into_contraction"), 1);
}

#[test]
fn small_weight_gradients_keep_their_per_image_products() {
    // LeNet-5's conv1: 6 x 25 weights, fewer than SMALL_GRADIENT outputs.
    let build = |dev: &Device| {
        let x = Tensor::randn([4, 1, 12, 12], 7, dev);
        let w = Tensor::randn([6, 1, 5, 5], 8, dev);
        w.set_requires_grad(true);
        let y = x.conv2d(&w, None, &Conv2dOptions::default());
        y.mul(&y).sum().grad_wrt(&[&w])
    };
    let fired = check_rewrite(build, limits(), 1e-5);
    assert!(fired.is_empty(), "{fired:?}");
}

#[test]
fn a_long_sum_into_few_outputs_runs_in_two_stages() {
    // 3 outputs of 70,000 values each (a group over two axes, padded to whole chunks).
    let build = |dev: &Device| {
        let x = Tensor::randn([3, 100, 700], 9, dev);
        vec![x.sum_axes(&[1, 2]), x.sum()]
    };
    let fired = check_rewrite(build, limits(), 1e-5);
    assert_eq!(count(&fired, "two_stage_sum"), 2);
    // The rewritten graph has two reductions per sum.
    let dev = Device::cpu();
    let x = Tensor::randn([3, 100, 700], 9, &dev);
    let s = x.sum_axes_keepdim(&[2, 1]);
    let p = kiln::Pending::collect(&[&s]);
    let r = kiln::rewrite::rewrite(&p, &limits());
    let reductions = r
        .pending()
        .nodes
        .iter()
        .filter(|t| matches!(t.op(), kiln::op::Op::Reduce { .. }))
        .count();
    assert_eq!(reductions, 2);
    assert_eq!(r.fired_summary(), "two_stage_sum x1");
}

#[test]
fn short_sums_and_sums_into_many_outputs_stay_one_reduction() {
    let build = |dev: &Device| {
        let x = Tensor::randn([128, 600], 10, dev);
        vec![x.sum_axes(&[1]), x.sum_axes(&[0])]
    };
    let fired = check_rewrite(build, limits(), 1e-5);
    assert!(fired.is_empty(), "{fired:?}");
}

#[test]
fn a_graph_no_rule_matches_is_scheduled_as_recorded() {
    let dev = Device::cpu();
    let a = Tensor::randn([8, 8], 11, &dev);
    let y = a.matmul(&a).relu();
    let p = kiln::Pending::collect(&[&y]);
    let r = kiln::rewrite::rewrite(&p, &limits());
    assert!(std::ptr::eq(r.pending(), &p));
    assert_eq!(r.fired_summary(), "none");
}

#[test]
fn the_gpu_computes_rewritten_training_graphs_like_the_reference() {
    // The dense, grouped-convolution and two-stage cases through the wgpu backend, which
    // rewrites before scheduling, against the reference, which does not.
    check_gpu_gradients(|x| x[0].matmul(&x[1]), &[&[4, 5, 64], &[64, 256]], 12);
    check_gpu_gradients(
        |x| {
            let opts = Conv2dOptions::default().groups(2).padding(1);
            x[0].conv2d(&x[1], None, &opts)
        },
        &[&[3, 16, 9, 9], &[256, 8, 3, 3]],
        13,
    );
    let (g, c) = pair(&[3, 100, 700], 14);
    assert_close(&g.sum_axes(&[1, 2]), &c.sum_axes(&[1, 2]), 1e-2, 1e-4);
}

#[test]
fn rules_can_be_turned_off_by_name_to_measure_them() {
    let mask = kiln::rewrite::rules_mask(&["two_stage_sum"]).unwrap();
    assert_eq!(mask.count_ones(), 1);
    assert_eq!(kiln::rewrite::rules_mask(&["all"]).unwrap(), u64::MAX);
    let err = kiln::rewrite::rules_mask(&["split_everything"]).unwrap_err();
    assert!(
        err.contains("split_everything") && err.contains("two_stage_sum"),
        "{err}"
    );
    // Off, the rule does not fire; the device still computes the sum.
    let dev = Device::cpu();
    let x = Tensor::randn([3, 100, 700], 9, &dev);
    let s = x.sum();
    let p = kiln::Pending::collect(&[&s]);
    let limits = ScheduleLimits {
        disabled_rules: mask,
        ..limits()
    };
    assert!(kiln::rewrite::rewrite(&p, &limits).fired.is_empty());
    let opts = kiln::wgpu_backend::WgpuOptions {
        disabled_rules: vec!["two_stage_sum".into()],
        ..env_options()
    };
    let off = kiln::wgpu_backend::wgpu_device_with(&opts).expect("a wgpu adapter");
    let v = values(3 * 100 * 700, 15);
    let g = Tensor::from_slice(&v, [3, 100, 700], &off).unwrap().sum();
    let c = Tensor::from_slice(&v, [3, 100, 700], &dev).unwrap().sum();
    assert_close(&g, &c, 1e-2, 1e-4);
    let bad = kiln::wgpu_backend::WgpuOptions {
        disabled_rules: vec!["nope".into()],
        ..env_options()
    };
    assert!(kiln::wgpu_backend::wgpu_device_with(&bad).is_err());
}
