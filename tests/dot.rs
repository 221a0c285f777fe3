//! Graphviz DOT of graphs and plans (`kiln::graph::to_dot` and `plan_to_dot`, the same functions
//! as `kiln::viz::graph_dot` and `plan_dot`): node and edge counts of
//! small graphs worked out by hand, fused kernels named, and a training step's plan against the
//! dispatches the GPU actually runs.

mod common;
use common::*;
use kiln::graph::{plan_to_dot as plan_dot, to_dot as graph_dot};
use kiln::models::LeNet5;
use kiln::nn::{parameter, Module, ParamBuilder};
use kiln::prelude::*;

/// Lines of `dot` that declare a node whose id is `prefix` and a number.
fn nodes(dot: &str, prefix: &str) -> usize {
    dot.lines()
        .filter_map(|l| l.trim_start().strip_prefix(prefix))
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()) && !rest.contains("->"))
        .count()
}

fn edges(dot: &str) -> usize {
    dot.lines().filter(|l| l.contains("->")).count()
}

/// `relu(x w + b)` for x [2, 3], w [3, 4], b [4], with w and b named.
fn dense(dev: &Device) -> (Tensor, Vec<(String, Tensor)>) {
    let x = Tensor::from_vec(values(6, 1), [2, 3], dev).unwrap();
    let w = parameter(Tensor::from_vec(values(12, 2), [3, 4], dev).unwrap());
    let b = parameter(Tensor::from_vec(values(4, 3), [4], dev).unwrap());
    let y = x.matmul(&w).add(&b).relu();
    (y, vec![("fc.weight".into(), w), ("fc.bias".into(), b)])
}

#[test]
fn dense_layer_graph_is_one_fused_kernel() {
    let (y, names) = dense(&Device::cpu());
    let dot = graph_dot(&[&y], &names);
    println!("{dot}");
    assert!(dot.starts_with("digraph kiln_graph {") && dot.trim_end().ends_with('}'));
    // x (data), w and b (parameters), the matmul, b's reshape to [1, 4] and expansion to [2, 4],
    // the add and the relu: 8 ops, 7 edges (matmul 2, reshape 1, expand 1, add 2, relu 1).
    assert_eq!(nodes(&dot, "n"), 8);
    assert_eq!(edges(&dot), 7);
    // Parameters are drawn by name; the whole expression is one kernel, a matmul with its
    // epilogue.
    assert!(dot.contains("fc.weight\\n[3, 4] f32") && dot.contains("fc.bias\\n[4] f32"));
    assert_eq!(dot.matches("subgraph cluster_").count(), 1);
    assert!(
        dot.contains("label=\"kernel 0: matmul [2, 4]: add, relu\""),
        "{dot}"
    );
    let plan = plan_dot(&[&y], &names);
    println!("{plan}");
    // One kernel reading three buffers: x, w and b.
    assert_eq!(nodes(&plan, "k"), 1);
    assert_eq!(nodes(&plan, "b"), 3);
    assert_eq!(edges(&plan), 3);
    assert!(plan.contains("kernel 0\\nmatmul [2, 4]: add, relu"));
    assert!(
        plan.contains("peripheries=2"),
        "the target kernel is marked"
    );
}

#[test]
fn a_shared_result_splits_the_plan_into_named_kernels() {
    let dev = Device::cpu();
    let (y, names) = dense(&dev);
    // y is read twice (by the sum and by the multiply), so it gets a buffer of its own: the
    // matmul kernel writes it, a reduction kernel sums its rows, an elementwise kernel computes
    // y * sum + 1.
    let s = y.sum_axes_keepdim(&[1]);
    let z = y.mul(&s.expand([2, 4])).add_scalar(1.0);
    let dot = graph_dot(&[&z], &names);
    println!("{dot}");
    assert_eq!(dot.matches("subgraph cluster_").count(), 3);
    assert!(dot.contains("kernel 0: matmul [2, 4]: add, relu"));
    assert!(dot.contains("kernel 1: reduce sum [1] [2, 1]"), "{dot}");
    assert!(
        dot.contains("kernel 2: elementwise [2, 4]: mul, add"),
        "{dot}"
    );
    let plan = plan_dot(&[&z], &names);
    println!("{plan}");
    assert_eq!(nodes(&plan, "k"), 3);
    // Edges: x, w, b -> k0; k0 -> k1; k0 -> k2; k1 -> k2.
    assert_eq!(edges(&plan), 6);
    for e in ["k0 -> k1;", "k0 -> k2;", "k1 -> k2;"] {
        assert!(plan.contains(e), "{e} missing");
    }
}

#[test]
fn training_step_plan_has_the_kernels_the_gpu_dispatches() {
    let dev = fresh_gpu();
    let model = LeNet5::new(&ParamBuilder::new(&dev, 3));
    let x = Tensor::from_vec(values(4 * 784, 5), [4, 1, 28, 28], &dev).unwrap();
    let labels = Tensor::from_vec(vec![1i32, 7, 3, 0], [4], &dev).unwrap();
    let loss = model.forward(&x).cross_entropy(&labels);
    let grads = loss.backward();
    let params = model.parameters();
    let mut targets: Vec<&Tensor> = params.iter().map(|p| grads.get(p).unwrap()).collect();
    targets.push(&loss);
    let names = model.named_parameters();
    let graph = graph_dot(&targets, &names);
    let plan = plan_dot(&targets, &names);
    let kernels = nodes(&plan, "k");
    assert_eq!(graph.matches("subgraph cluster_").count(), kernels);
    for (n, _) in &names {
        assert!(graph.contains(&format!("\"{n}\\n")), "{n} is not named");
    }
    let before = dev.stats().dispatches;
    Tensor::realize_all(&targets).unwrap();
    let ran = dev.stats().dispatches - before;
    println!("training step: {kernels} kernels in the plan DOT, {ran} dispatched");
    assert_eq!(kernels as u64, ran);
    // It renders where Graphviz is installed (the DOT file is written either way).
    let dir = temp_dir("dot");
    let rendered = kiln::viz::save_dot(&plan, dir.join("plan.dot"), "svg").unwrap();
    assert!(dir.join("plan.dot").exists());
    if let Some(svg) = rendered {
        assert!(std::fs::read_to_string(svg).unwrap().contains("<svg"));
    }
}
