//! Host calls (`Tensor::host_call`): functions computed on the host mid-graph, run in stages
//! before the backend sees the graph; and synchronized batch norm built on them, checked with
//! two threads standing in for two processes against one process holding the whole batch.

mod common;
use common::*;
use kiln::host_call::HostFunction;
use kiln::nn::{batch_norm_layers, BatchNorm2d, Module, ParamBuilder};
use kiln::prelude::*;
use std::sync::{Arc, Condvar, Mutex};

/// `3 x reversed(input)`, logging each call's name; the gradient is `3 x reversed(grad)`.
struct Reverse3 {
    log: Arc<Mutex<Vec<String>>>,
    name: &'static str,
}

impl HostFunction for Reverse3 {
    fn name(&self) -> String {
        self.name.into()
    }
    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        input.to_vec()
    }
    fn compute(&self, input: &[f32]) -> kiln::Result<Vec<f32>> {
        self.log.lock().unwrap().push(self.name.to_string());
        Ok(input.iter().rev().map(|v| v * 3.0).collect())
    }
    fn vjp(&self, _input: &Tensor, grad: &Tensor) -> Tensor {
        grad.flip(&[0]).mul_scalar(3.0)
    }
}

fn reverse3(log: &Arc<Mutex<Vec<String>>>, name: &'static str) -> Arc<dyn HostFunction> {
    Arc::new(Reverse3 {
        log: log.clone(),
        name,
    })
}

/// `h = x w; z = h * f(sum_rows(h))` with `f` a host call or the same function in graph ops.
fn mid_graph(xs: &[Tensor], f: Option<Arc<dyn HostFunction>>) -> Tensor {
    let h = xs[0].matmul(&xs[1]);
    let s = h.sum_axes(&[0]);
    let fs = match f {
        Some(f) => s.host_call(f),
        None => s.flip(&[0]).mul_scalar(3.0),
    };
    h.mul(&fs)
}

#[test]
fn a_host_call_computes_mid_graph_with_its_gradient_on_both_devices() {
    let log = Arc::new(Mutex::new(vec![]));
    for dev in [Device::cpu(), gpu()] {
        let xs = check_inputs(&[&[4, 5], &[5, 6]], 3, &dev);
        let refs: Vec<&Tensor> = xs.iter().collect();
        let with_call = mid_graph(&xs, Some(reverse3(&log, "rev")));
        let in_graph = mid_graph(&xs, None);
        assert_close(&with_call, &in_graph, 1e-5, 1e-5);
        let g_call = weighted_sum(&mid_graph(&xs, Some(reverse3(&log, "rev"))), 1).grad_wrt(&refs);
        let g_graph = weighted_sum(&in_graph, 1).grad_wrt(&refs);
        for (a, b) in g_call.iter().zip(&g_graph) {
            assert_close(a, b, 1e-4, 1e-4);
        }
    }
    // Once per realize of a graph holding it: twice per device (values, gradients).
    assert_eq!(log.lock().unwrap().len(), 4);
}

#[test]
fn the_stages_intermediates_are_let_go_after_the_realize() {
    let log = Arc::new(Mutex::new(vec![]));
    let dev = fresh_gpu();
    let xs = check_inputs(&[&[6, 4], &[4, 5]], 9, &dev);
    Tensor::realize_all(&xs.iter().collect::<Vec<_>>()).unwrap();
    let h = xs[0].matmul(&xs[1]);
    let fs = h.sum_axes(&[0]).host_call(reverse3(&log, "rev"));
    let z = h.mul(&fs);
    let before = dev.stats().submissions;
    z.realize().unwrap();
    // The stage's plan (reading the call's input back) and the final plan; the upload of the
    // call's result goes out with the latter.
    assert_eq!(dev.stats().submissions - before, 2);
    // z keeps its values, the call its result; h, realized by the first stage for the second,
    // is lazy again (a plan intermediate, as without host calls) and computes as before.
    assert!(z.is_realized() && fs.is_realized());
    assert!(!h.is_realized());
    let expected = xs[0].matmul(&xs[1]);
    assert_close(&h, &expected, 0.0, 0.0);
    assert_eq!(log.lock().unwrap().len(), 1, "the call ran again");
}

#[test]
fn an_upload_alone_waits_for_the_next_submission() {
    let dev = fresh_gpu();
    let before = dev.stats().submissions;
    let t = Tensor::from_vec(vec![1.5f32, -2.0, 3.0], [3], &dev).unwrap();
    t.realize().unwrap();
    assert!(t.is_realized());
    assert_eq!(
        dev.stats().submissions,
        before,
        "an upload made a submission"
    );
    // The read's own submission carries the upload first.
    assert_eq!(t.to_vec::<f32>().unwrap(), [1.5, -2.0, 3.0]);
    assert_eq!(t.add_scalar(1.0).to_vec::<f32>().unwrap(), [2.5, -1.0, 4.0]);
}

#[test]
fn a_stage_computes_nothing_twice() {
    let dev = fresh_gpu();
    let log = Arc::new(Mutex::new(vec![]));
    let xs = check_inputs(&[&[16, 8], &[8, 12]], 5, &dev);
    let before = dev.stats();
    let z = mid_graph(&xs, Some(reverse3(&log, "rev")));
    z.realize().unwrap();
    let staged = dev.stats().dispatches - before.dispatches;
    // The same work by hand: h and its row sums in one realize, then z from h and f(s).
    let before = dev.stats();
    let h = xs[0].matmul(&xs[1]);
    let s = h.sum_axes(&[0]);
    Tensor::realize_all(&[&h, &s]).unwrap();
    let fs = Tensor::from_vec(
        s.to_vec::<f32>()
            .unwrap()
            .iter()
            .rev()
            .map(|v| v * 3.0)
            .collect(),
        [12],
        &dev,
    )
    .unwrap();
    let by_hand = h.mul(&fs);
    by_hand.realize().unwrap();
    let manual = dev.stats().dispatches - before.dispatches;
    assert_eq!(
        staged, manual,
        "the staged graph dispatched {staged} kernels, by hand {manual}"
    );
    assert_close(&z, &by_hand, 0.0, 0.0);
}

#[test]
fn host_calls_run_in_recording_order_one_stage_at_a_time() {
    let log = Arc::new(Mutex::new(vec![]));
    let dev = Device::cpu();
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], [3], &dev).unwrap();
    // b is recorded before a, though the graph reads a first: a and b depend on nothing staged,
    // so they share a stage and run as recorded; c reads both: the next stage.
    let b = x.mul_scalar(2.0).host_call(reverse3(&log, "b"));
    let a = x.add_scalar(1.0).host_call(reverse3(&log, "a"));
    let c = a.add(&b).host_call(reverse3(&log, "c"));
    let out = c.add(&a).to_vec::<f32>().unwrap();
    assert_eq!(*log.lock().unwrap(), ["b", "a", "c"]);
    // a = 3 rev(2, 3, 4) = (12, 9, 6); b = 3 rev(2, 4, 6) = (18, 12, 6);
    // c = 3 rev(30, 21, 12) = (36, 63, 90); c + a = (48, 72, 96).
    assert_eq!(out, [48.0, 72.0, 96.0]);
}

/// A host function that fails, or returns the wrong number of values.
struct Broken {
    fail: bool,
}

impl HostFunction for Broken {
    fn name(&self) -> String {
        "broken".into()
    }
    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        input.to_vec()
    }
    fn compute(&self, input: &[f32]) -> kiln::Result<Vec<f32>> {
        if self.fail {
            Err(KilnError::Backend("the other processes went away".into()))
        } else {
            Ok(input[1..].to_vec())
        }
    }
    fn vjp(&self, _input: &Tensor, grad: &Tensor) -> Tensor {
        grad.clone()
    }
}

/// Records `stage_failed` calls; computes the identity.
struct Watcher {
    log: Arc<Mutex<Vec<String>>>,
}

impl HostFunction for Watcher {
    fn name(&self) -> String {
        "watcher".into()
    }
    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        input.to_vec()
    }
    fn compute(&self, input: &[f32]) -> kiln::Result<Vec<f32>> {
        Ok(input.to_vec())
    }
    fn vjp(&self, _input: &Tensor, grad: &Tensor) -> Tensor {
        grad.clone()
    }
    fn stage_failed(&self, error: &KilnError) {
        self.log
            .lock()
            .unwrap()
            .push(format!("stage failed: {error}"));
    }
}

#[test]
fn the_calls_of_a_failed_stage_hear_of_it() {
    let log = Arc::new(Mutex::new(vec![]));
    let x = Tensor::from_vec(vec![1.0f32, 2.0], [2], &Device::cpu()).unwrap();
    // One stage: the failing call first, then a collective that would wait for this process.
    let failing = x.host_call(Arc::new(Broken { fail: true }));
    let watched = x
        .mul_scalar(2.0)
        .host_call(Arc::new(Watcher { log: log.clone() }));
    let err = failing.add(&watched).realize().unwrap_err();
    assert!(err.to_string().contains("went away"), "{err}");
    assert_eq!(
        *log.lock().unwrap(),
        ["stage failed: backend: the other processes went away"]
    );
}

#[test]
fn a_failing_host_call_is_an_error_of_the_realize() {
    let x = Tensor::from_vec(vec![1.0f32, 2.0], [2], &gpu()).unwrap();
    let err = x
        .host_call(Arc::new(Broken { fail: true }))
        .realize()
        .unwrap_err();
    assert!(
        err.to_string().contains("the other processes went away"),
        "{err}"
    );
    let err = x
        .host_call(Arc::new(Broken { fail: false }))
        .add_scalar(1.0)
        .to_vec::<f32>()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("host call broken: returned 1 values for an output of shape [2]"),
        "{err}"
    );
}

/// An all-gather over the threads of a group, standing in for processes: each member gives its
/// values and gets every member's, in member order.
struct ThreadGroup {
    size: usize,
    state: Mutex<Exchange>,
    turn: Condvar,
}

/// One exchange's state: its round, what each member has given so far, the last round's values.
struct Exchange {
    round: u64,
    given: Vec<Option<Vec<f32>>>,
    gathered: Vec<Vec<f32>>,
}

impl ThreadGroup {
    fn new(size: usize) -> Arc<ThreadGroup> {
        Arc::new(ThreadGroup {
            size,
            state: Mutex::new(Exchange {
                round: 0,
                given: vec![None; size],
                gathered: vec![],
            }),
            turn: Condvar::new(),
        })
    }
    fn all_gather(&self, rank: usize, values: &[f32]) -> Vec<Vec<f32>> {
        let mut s = self.state.lock().unwrap();
        let round = s.round;
        s.given[rank] = Some(values.to_vec());
        if s.given.iter().all(Option::is_some) {
            s.gathered = s.given.iter_mut().map(|v| v.take().unwrap()).collect();
            s.round += 1;
            self.turn.notify_all();
        }
        while s.round == round {
            s = self.turn.wait(s).unwrap();
        }
        s.gathered.clone()
    }
}

/// `[K] -> [R, K]` over a thread group; its gradient sums the members' rows for this member.
struct Gather {
    group: Arc<ThreadGroup>,
    rank: usize,
}

impl HostFunction for Gather {
    fn name(&self) -> String {
        "all_gather".into()
    }
    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        vec![self.group.size, input[0]]
    }
    fn compute(&self, input: &[f32]) -> kiln::Result<Vec<f32>> {
        Ok(self.group.all_gather(self.rank, input).concat())
    }
    fn vjp(&self, _input: &Tensor, grad: &Tensor) -> Tensor {
        grad.host_call(Arc::new(SumRows {
            group: self.group.clone(),
            rank: self.rank,
        }))
    }
}

/// `[R, K] -> [K]`: the sum over the members of their row `rank`, in member order.
struct SumRows {
    group: Arc<ThreadGroup>,
    rank: usize,
}

impl HostFunction for SumRows {
    fn name(&self) -> String {
        "reduce_rows".into()
    }
    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        vec![input[1]]
    }
    fn compute(&self, input: &[f32]) -> kiln::Result<Vec<f32>> {
        let k = input.len() / self.group.size;
        let all = self.group.all_gather(self.rank, input);
        let mut out = vec![0.0f32; k];
        for member in &all {
            for (o, v) in out
                .iter_mut()
                .zip(&member[self.rank * k..(self.rank + 1) * k])
            {
                *o += v;
            }
        }
        Ok(out)
    }
    fn vjp(&self, _input: &Tensor, _grad: &Tensor) -> Tensor {
        unreachable!("not differentiated twice here")
    }
}

/// A batch norm of 3 channels with a non-trivial scale and shift.
fn batch_norm(dev: &Device) -> BatchNorm2d {
    let bn = BatchNorm2d::new(3, &ParamBuilder::new(dev, 1).pp("bn"));
    let w = Tensor::from_vec(vec![1.5f32, -0.5, 2.0], [3], dev).unwrap();
    let b = Tensor::from_vec(vec![0.1f32, 0.2, -0.3], [3], dev).unwrap();
    kiln::nn::load_parameters(&bn, &[("weight".into(), w), ("bias".into(), b)]).unwrap();
    bn
}

/// Output, gradients (input, weight, bias) and running statistics of one training step of `bn`
/// on `x` with the loss `sum(y * w)`.
fn bn_step(bn: &BatchNorm2d, x: &Tensor, w: &Tensor) -> Vec<Vec<f32>> {
    x.set_requires_grad(true);
    let y = bn.forward(x);
    let loss = y.mul(w).sum();
    let g = loss.grad_wrt(&[x, bn.weight.as_ref().unwrap(), bn.bias.as_ref().unwrap()]);
    let mut out: Vec<Vec<f32>> = std::iter::once(&y)
        .chain(&g)
        .map(|t| t.to_vec::<f32>().unwrap())
        .collect();
    kiln::nn::realize_pending_updates().unwrap();
    let (m, v) = bn.running_stats().unwrap();
    out.push(m.to_vec::<f32>().unwrap());
    out.push(v.to_vec::<f32>().unwrap());
    out
}

#[test]
fn synced_batch_norm_over_two_threads_is_batch_norm_over_the_whole_batch() {
    for dev in [Device::cpu(), gpu()] {
        // A mean far from zero: the combination must not cancel.
        let full = seeded(&[8, 3, 4, 4], 11, &dev)
            .mul_scalar(2.0)
            .add_scalar(50.0);
        let weights = seeded(&[8, 3, 4, 4], 12, &dev);
        let single = bn_step(&batch_norm(&dev), &full, &weights);
        let group = ThreadGroup::new(2);
        let parts: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|rank| {
                    let (group, dev) = (group.clone(), dev.clone());
                    let (x, w) = (full.narrow(0, 4 * rank, 4), weights.narrow(0, 4 * rank, 4));
                    let (x, w) = (x.detach().unwrap(), w.detach().unwrap());
                    s.spawn(move || {
                        let bn = batch_norm(&dev);
                        for (_, layer) in batch_norm_layers(&bn) {
                            layer.sync_statistics(Some(Arc::new(Gather {
                                group: group.clone(),
                                rank,
                            })));
                        }
                        assert!(bn.is_synced());
                        bn_step(&bn, &x, &w)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let half = full.numel() / 2;
        let joined = |k: usize| [parts[0][k].clone(), parts[1][k].clone()].concat();
        let summed = |k: usize| -> Vec<f32> {
            parts[0][k]
                .iter()
                .zip(&parts[1][k])
                .map(|(a, b)| a + b)
                .collect()
        };
        assert_eq!(parts[0][0].len(), half);
        assert_slices_close(&joined(0), &single[0], 1e-4, "output");
        assert_slices_close(&joined(1), &single[1], 1e-4, "input gradient");
        assert_slices_close(&summed(2), &single[2], 1e-4, "weight gradient");
        assert_slices_close(&summed(3), &single[3], 1e-4, "bias gradient");
        for k in [4, 5] {
            assert_eq!(
                parts[0][k], parts[1][k],
                "running statistics differ between threads"
            );
            assert_slices_close(&parts[0][k], &single[k], 1e-4, "running statistics");
        }
    }
}

/// `[K] -> [1, K]`: the gather of a group of one.
struct Alone;

impl HostFunction for Alone {
    fn name(&self) -> String {
        "alone".into()
    }
    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        vec![1, input[0]]
    }
    fn compute(&self, input: &[f32]) -> kiln::Result<Vec<f32>> {
        Ok(input.to_vec())
    }
    fn vjp(&self, input: &Tensor, grad: &Tensor) -> Tensor {
        grad.reshape(input.dims())
    }
}

#[test]
fn synced_batch_norm_of_one_process_is_batch_norm() {
    let dev = gpu();
    let x = seeded(&[6, 3, 5, 5], 21, &dev);
    let w = seeded(&[6, 3, 5, 5], 22, &dev);
    let plain = bn_step(&batch_norm(&dev), &x, &w);
    let bn = batch_norm(&dev);
    bn.sync_statistics(Some(Arc::new(Alone)));
    let synced = bn_step(&bn, &x, &w);
    for (k, what) in [
        "output",
        "input gradient",
        "weight gradient",
        "bias gradient",
        "mean",
        "var",
    ]
    .iter()
    .enumerate()
    {
        assert_slices_close(&synced[k], &plain[k], 1e-5, what);
    }
    // Evaluation mode uses the running statistics, synced or not.
    bn.set_training(false);
    let y = bn.forward(&x).to_vec::<f32>().unwrap();
    bn.sync_statistics(None);
    assert!(!bn.is_synced());
    assert_eq!(y, bn.forward(&x).to_vec::<f32>().unwrap());
}

#[test]
#[should_panic(expected = "more than one value per channel over all processes")]
fn one_value_per_channel_in_a_group_of_one_is_refused() {
    let bn = batch_norm(&Device::cpu());
    bn.sync_statistics(Some(Arc::new(Alone)));
    bn.forward(&Tensor::ones([1, 3, 1, 1], &Device::cpu()));
}

#[test]
fn every_batch_norm_of_the_zoo_is_found() {
    let pb = ParamBuilder::new(&Device::cpu(), 0);
    for model in [
        kiln::models::by_name("resnet20", 3, 10, &pb).unwrap(),
        kiln::models::by_name("resnet18", 3, 10, &pb).unwrap(),
        kiln::models::by_name("lenet5", 1, 10, &pb).unwrap(),
    ] {
        let found = batch_norm_layers(&*model);
        let running: Vec<String> = model
            .named_buffers()
            .into_iter()
            .filter_map(|(n, _)| n.strip_suffix(".running_mean").map(str::to_string))
            .collect();
        let names: Vec<String> = found.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names, running);
    }
}
