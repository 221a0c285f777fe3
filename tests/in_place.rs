//! Updates in place (scheduler rule 5c): an optimiser's new parameters, moments and batch-norm
//! statistics are written into the buffers they replace, when nothing else holds them, and the
//! values are those of the reference either way.

mod common;
use common::*;
use kiln::models::LeNet5;
use kiln::nn::{Module, ParamBuilder};
use kiln::optim::{Adam, NonFinitePolicy, Optimizer, Sgd};
use kiln::prelude::*;
use kiln::schedule::{schedule, ScheduleLimits};
use std::sync::Arc;

/// The address of the storage behind `t` (the same buffer has the same address).
fn storage_of(t: &Tensor) -> usize {
    Arc::as_ptr(&t.storage().expect("realized")) as *const u8 as usize
}

/// A batch of 16 random 28x28 digits and labels, on `dev`.
fn batch(dev: &Device, seed: u64) -> (Tensor, Tensor) {
    let x = seeded(&[16, 1, 28, 28], seed, dev);
    let labels: Vec<i32> = (0..16)
        .map(|i| ((i * 7 + seed as usize) % 10) as i32)
        .collect();
    (x, Tensor::from_slice(&labels, [16], dev).unwrap())
}

/// Trains LeNet-5 for `steps` steps with `opt` on `dev`, returning the parameters.
fn train(dev: &Device, steps: u64, make: impl Fn(Vec<Tensor>) -> Box<dyn Optimizer>) -> LeNet5 {
    let model = LeNet5::new(&ParamBuilder::new(dev, 3));
    let mut opt = make(model.parameters());
    for s in 0..steps {
        let (x, y) = batch(dev, s);
        let loss = model.forward(&x).cross_entropy(&y);
        opt.step(&loss.backward()).unwrap();
    }
    model
}

fn adam(params: Vec<Tensor>) -> Box<dyn Optimizer> {
    Box::new(Adam::adamw(params, 1e-3, 0.01))
}

fn sgd(params: Vec<Tensor>) -> Box<dyn Optimizer> {
    Box::new(Sgd::new(params, 0.05).with_momentum(0.9, false))
}

#[test]
fn adam_and_sgd_steps_write_the_parameters_in_place_with_the_references_values() {
    for make in [adam, sgd] {
        let dev = fresh_gpu();
        let model = LeNet5::new(&ParamBuilder::new(&dev, 3));
        let mut opt = make(model.parameters());
        let mut before = vec![];
        for s in 0..3 {
            let (x, y) = batch(&dev, s);
            if s == 2 {
                before = model.parameters().iter().map(storage_of).collect();
            }
            let loss = model.forward(&x).cross_entropy(&y);
            opt.step(&loss.backward()).unwrap();
        }
        let after: Vec<usize> = model.parameters().iter().map(storage_of).collect();
        assert_eq!(before, after, "every parameter keeps its buffer");
        let reference = train(&Device::cpu(), 3, make);
        for (g, c) in model.parameters().iter().zip(reference.parameters()) {
            assert_close(g, &c, 1e-5, 1e-4);
        }
    }
}

#[test]
fn a_parameter_whose_values_are_also_held_elsewhere_is_not_overwritten() {
    let dev = fresh_gpu();
    let model = LeNet5::new(&ParamBuilder::new(&dev, 3));
    let mut opt = Adam::new(model.parameters(), 1e-2);
    let w = model.parameters()[0].clone();
    // `detach` shares the storage: the snapshot must keep the values it had.
    let snapshot = w.detach().unwrap();
    let old: Vec<f32> = snapshot.to_vec().unwrap();
    let (x, y) = batch(&dev, 0);
    opt.step(&model.forward(&x).cross_entropy(&y).backward())
        .unwrap();
    assert_eq!(
        snapshot.to_vec::<f32>().unwrap(),
        old,
        "the snapshot kept its values"
    );
    assert_ne!(
        storage_of(&w),
        storage_of(&snapshot),
        "the parameter got a buffer of its own"
    );
    let new: Vec<f32> = w.to_vec().unwrap();
    assert!(
        new.iter().zip(&old).any(|(a, b)| a != b),
        "the parameter changed"
    );
    // Its values are the reference's.
    let cpu = Device::cpu();
    let reference = LeNet5::new(&ParamBuilder::new(&cpu, 3));
    let mut ref_opt = Adam::new(reference.parameters(), 1e-2);
    let (x, y) = batch(&cpu, 0);
    ref_opt
        .step(&reference.forward(&x).cross_entropy(&y).backward())
        .unwrap();
    assert_close(&w, &reference.parameters()[0], 1e-5, 1e-4);
}

#[test]
fn a_skipped_non_finite_step_leaves_the_values_in_place() {
    let dev = fresh_gpu();
    let model = LeNet5::new(&ParamBuilder::new(&dev, 3));
    let mut opt = Adam::new(model.parameters(), 1e-3);
    opt.set_non_finite_policy(NonFinitePolicy::Skip);
    let old: Vec<Vec<f32>> = model
        .parameters()
        .iter()
        .map(|p| p.to_vec().unwrap())
        .collect();
    let (x, y) = batch(&dev, 1);
    let loss = model.forward(&x.mul_scalar(f64::NAN)).cross_entropy(&y);
    let report = opt.step(&loss.backward()).unwrap();
    assert!(!report.is_finite().unwrap());
    for (p, o) in model.parameters().iter().zip(&old) {
        assert_eq!(&p.to_vec::<f32>().unwrap(), o);
    }
}

#[test]
fn realize_assign_refuses_a_value_of_another_shape() {
    let dev = gpu();
    let dest = seeded(&[3, 4], 1, &dev);
    let value = seeded(&[4, 3], 2, &dev).add_scalar(1.0);
    let err = Tensor::realize_assign(&[(&dest, &value)], &[]).unwrap_err();
    assert!(err.to_string().contains("[3, 4]"), "{err}");
}

/// The in-place pairs the scheduler chooses for `dest <- value` (and `also` realized too).
fn in_place_of(dest: &Tensor, value: &Tensor, also: &[&Tensor]) -> Vec<(usize, usize)> {
    let mut targets = vec![value];
    targets.extend(also);
    let p = kiln::Pending::collect(&targets).with_updates(&[(value, dest)]);
    let plan = schedule(&p, ScheduleLimits::new(8));
    plan.kernels
        .iter()
        .flat_map(|k| k.in_place.clone())
        .collect()
}

#[test]
fn only_a_leaf_read_last_and_at_its_own_element_is_written_over() {
    let dev = Device::cpu();
    let w = seeded(&[6, 6], 5, &dev);
    let g = seeded(&[6, 6], 6, &dev);
    Tensor::realize_all(&[&w, &g]).unwrap();
    // w - 0.1 g: read at its own element by the kernel writing the new value.
    let step = w.sub(&g.mul_scalar(0.1));
    assert_eq!(in_place_of(&w, &step, &[]).len(), 1);
    // Read through a transpose: other invocations' elements.
    let transposed = w.transpose(0, 1).add(&g);
    assert!(in_place_of(&w, &transposed, &[]).is_empty());
    // Read by a later kernel (a sum of the old values realized with it).
    let step = w.sub(&g.mul_scalar(0.1));
    let total = w.sum_axes(&[0]).exp();
    assert!(in_place_of(&w, &step, &[&total]).is_empty());
}
