//! Data-parallel training over MPI on 2 ranks (`cargo test --features mpi --test distributed`;
//! needs Open MPI's `mpirun`). The test runs itself: started by `cargo test`, it starts
//! `mpirun -np 2 --oversubscribe` on its own executable once per scenario and checks each run's
//! exit code, time and messages; started by `mpirun`, it is a rank and runs the scenario named on
//! its command line (each rank checks its own results and panics on a failure, which aborts the
//! job).

use kiln::distributed::{self, Reduction, World};
use kiln::models::LeNet5;
use kiln::nn::{
    Activation, AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, Module, ParamBuilder,
    Sequential,
};
use kiln::optim::{Adam, NonFinitePolicy, Optimizer, Sgd};
use kiln::prelude::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `examples/mnist.rs`, compiled in: the `example` scenario runs it as each rank.
#[allow(dead_code)]
#[path = "../examples/mnist.rs"]
mod mnist_example;

fn main() {
    if distributed::launched_by_mpi() {
        let scenario = std::env::args().nth(1).expect("a scenario name");
        if scenario == "example" {
            // The example initializes MPI itself.
            std::process::exit(mnist_example::run_and_report(example_args(1, &[])));
        }
        rank_main(&scenario);
    } else {
        driver();
    }
}

/// The `mnist` example's arguments for a short synced ResNet-20 run of `epochs` epochs into
/// `KILN_EXAMPLE_DIR`, followed by `more`.
fn example_args(epochs: usize, more: &[&str]) -> mnist_example::Args {
    use clap::Parser;
    let dir = std::env::var("KILN_EXAMPLE_DIR").expect("KILN_EXAMPLE_DIR");
    let epochs = epochs.to_string();
    let mut argv = vec![
        "mnist",
        "--distributed",
        "--sync-bn",
        "--model",
        "resnet20",
        "--batch-size",
        "8",
        "--epochs",
        &epochs,
        "--max-steps",
        "3",
        "--test-images",
        "32",
        "--no-pictures",
        "--run-dir",
        &dir,
    ];
    argv.extend(more);
    mnist_example::Args::parse_from(argv)
}

/// `mpirun -np 2 mnist --distributed --sync-bn --model resnet20`: rank 0 alone speaks and
/// writes one checkpoint, which one process resumes.
fn example_end_to_end(long: Duration) {
    let dir = std::env::temp_dir().join(format!("kiln-distributed-example-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir_str = dir.to_str().unwrap().to_string();
    let (code, secs, out) = mpirun("example", &[("KILN_EXAMPLE_DIR", &dir_str)], long);
    println!("--- example: exit {code:?} in {secs:.1} s\n{}", out.trim());
    assert_eq!(code, Some(0), "{out}");
    let said = "--sync-bn: 19 batch-norm layers with statistics over 2 ranks";
    assert_eq!(out.matches(said).count(), 1, "rank 0 alone speaks:\n{out}");
    assert_eq!(out.matches("epoch 1: 3 steps").count(), 1, "{out}");
    let checkpoint = dir.join("resnet20.safetensors");
    assert!(checkpoint.is_file(), "no checkpoint in {}", dir.display());
    // One process resumes the 2-rank checkpoint (without MPI: `--distributed` alone is one).
    std::env::set_var("KILN_EXAMPLE_DIR", &dir_str);
    let resumed = example_args(2, &["--resume", checkpoint.to_str().unwrap()]);
    mnist_example::run(resumed).expect("one process resumes the 2-rank checkpoint");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One run of `mpirun -np 2` on this executable: (exit code, seconds, stdout and stderr).
fn mpirun(scenario: &str, env: &[(&str, &str)], timeout: Duration) -> (Option<i32>, f64, String) {
    let exe = std::env::current_exe().unwrap();
    let log = std::env::temp_dir().join(format!(
        "kiln-distributed-{scenario}-{}.log",
        std::process::id()
    ));
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new("mpirun");
    cmd.args(["-np", "2", "--oversubscribe"])
        .arg(&exe)
        .arg(scenario)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("KILN_LOG", "quiet")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("mpirun (install openmpi-bin)");
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > timeout {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{scenario}: mpirun still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    (code, start.elapsed().as_secs_f64(), out)
}

/// Runs every scenario under `mpirun -np 2` and checks how each ended.
fn driver() {
    let long = Duration::from_secs(300);
    for (scenario, env) in [
        ("allreduce", vec![]),
        ("allreduce", vec![("KILN_REDUCTION", "mpi")]),
        ("mismatch", vec![]),
        ("lenet", vec![]),
        ("syncbn", vec![]),
        ("bnstep", vec![]),
        ("nonfinite", vec![]),
        ("threads", vec![]),
    ] {
        let (code, secs, out) = mpirun(scenario, &env, long);
        println!(
            "--- {scenario} {env:?}: exit {code:?} in {secs:.1} s\n{}",
            out.trim()
        );
        assert_eq!(code, Some(0), "{scenario} failed:\n{out}");
        assert_eq!(out.matches(&format!("{scenario} ok")).count(), 2, "{out}");
    }
    example_end_to_end(long);
    // A rank that fails mid-run ends the job on both ranks, with a message, within 30 s.
    for (fault, message) in [
        ("panic", "panicked; aborting every rank"),
        ("error", "aborting every rank"),
        ("step", "error: backend: injected step failure"),
        ("kill", ""),
        ("exit", ""),
    ] {
        let (code, secs, out) = mpirun("fault", &[("KILN_FAULT", fault)], long);
        println!(
            "--- fault {fault}: exit {code:?} in {secs:.1} s\n{}",
            out.trim()
        );
        assert_ne!(code, Some(0), "{fault}: the job should fail:\n{out}");
        assert!(out.contains("rank 1 fails now"), "{out}");
        assert!(out.contains(message), "{fault}: no {message:?} in:\n{out}");
        assert!(secs < 30.0, "{fault}: the job took {secs:.1} s to end");
    }
    println!("distributed: all scenarios passed");
}

/// What one rank does in `scenario`.
fn rank_main(scenario: &str) {
    let world = if std::env::var("KILN_REDUCTION").is_ok_and(|v| v == "mpi") {
        distributed::init_mpi(Reduction::Mpi).unwrap()
    } else {
        distributed::init().unwrap()
    };
    assert_eq!(world.size(), 2);
    let rank = world.rank();
    match scenario {
        "allreduce" => all_reduce(&world),
        "mismatch" => mismatch(&world),
        "lenet" => {
            lenet(&world, "sgd", |p| Sgd::new(p, 0.05));
            lenet(&world, "adam", |p| Adam::new(p, 1e-3));
        }
        "syncbn" => sync_batch_norm(&world),
        "bnstep" => bn_step_work(&world),
        "fault" => fault(&world),
        "nonfinite" => non_finite_on_one_rank(&world),
        "threads" => {
            other_threads_panic(&world);
            panic_after_finalize(world);
        }
        other => panic!("unknown scenario {other}"),
    }
    println!("rank {rank}: {scenario} ok");
}

/// All-reduce of odd lengths, f32 and f16, against sums by hand.
fn all_reduce(world: &World) {
    let c = world.collective();
    let r = world.rank() as f32;
    let value = |rank: f32, i: usize| (i as f32 * 0.37 + rank * 1.5).sin() * (1.0 + rank);
    for len in [1, 3, 7, 1001, 65_537] {
        let mut buf: Vec<f32> = (0..len).map(|i| value(r, i)).collect();
        c.all_reduce_sum(&mut buf);
        for (i, got) in buf.iter().enumerate() {
            assert_eq!(
                *got,
                value(0.0, i) + value(1.0, i),
                "f32 length {len} element {i}"
            );
        }
    }
    for len in [1, 5, 1001] {
        let mut buf: Vec<half::f16> = (0..len).map(|i| half::f16::from_f32(value(r, i))).collect();
        c.all_reduce_sum_f16(&mut buf);
        for (i, got) in buf.iter().enumerate() {
            let hand = half::f16::from_f32(value(0.0, i)).to_f32()
                + half::f16::from_f32(value(1.0, i)).to_f32();
            assert_eq!(
                *got,
                half::f16::from_f32(hand),
                "f16 length {len} element {i}"
            );
        }
    }
    // Several buffers through the pipelined path, lengths 3, 0 and 11.
    let lens = [3usize, 0, 11];
    let sums = c
        .all_reduce_buffers(3, &mut |b| {
            Ok((0..lens[b]).map(|i| value(r, i + b)).collect())
        })
        .unwrap();
    for (b, sum) in sums.iter().enumerate() {
        let hand: Vec<f32> = (0..lens[b])
            .map(|i| value(0.0, i + b) + value(1.0, i + b))
            .collect();
        assert_eq!(sum, &hand, "buffer {b}");
    }
    let mut bytes = if world.rank() == 0 {
        b"from rank 0".to_vec()
    } else {
        vec![]
    };
    c.broadcast(0, &mut bytes);
    assert_eq!(bytes, b"from rank 0");
    assert_eq!(c.all_gather_u64(world.rank() as u64 + 7), [7, 8]);
    // SyncBatchNorm's exchanges: a gather of every rank's values, and its transpose.
    let mine: Vec<f32> = (0..5).map(|i| value(r, i)).collect();
    let hand: Vec<f32> = [0.0, 1.0]
        .iter()
        .flat_map(|&q| (0..5).map(move |i| value(q, i)))
        .collect();
    assert_eq!(c.all_gather_f32(&mine), hand);
    let rows: Vec<f32> = (0..6).map(|i| value(r, i)).collect();
    let own = world.rank() * 3;
    let hand: Vec<f32> = (own..own + 3)
        .map(|i| value(0.0, i) + value(1.0, i))
        .collect();
    assert_eq!(c.reduce_scatter_sum(&rows), hand);
    c.barrier();
}

/// Models that differ between the ranks: an error on both, naming both sides.
fn mismatch(world: &World) {
    let pb = ParamBuilder::new(&Device::cpu(), 1);
    let model = Linear::new(4, 2 + world.rank(), &pb);
    let err = match world.replicate(model) {
        Ok(_) => panic!("replicate accepted different models"),
        Err(e) => e.to_string(),
    };
    println!("rank {}: {err}", world.rank());
    assert!(err.contains("ranks [1] differ from rank 0"), "{err}");
    // A probe's panic (ONNX export and preflight learn shapes this way) is expected: the job's
    // panic hook leaves it alone, and it comes back as an error.
    let probed = kiln::probe::catch_probe(|| panic!("a shape this model rejects"));
    let message = kiln::probe::panic_message(&*probed.unwrap_err());
    assert_eq!(message.as_deref(), Some("a shape this model rejects"));
    if world.rank() == 1 {
        assert!(
            err.contains("rank 0 has `weight f32 [2, 4]` where rank 1 has `weight f32 [3, 4]`"),
            "{err}"
        );
    }
}

/// k steps of LeNet-5 on 2 ranks at batch 32 against one model at batch 64 on the same images.
fn lenet<O: Optimizer + 'static>(world: &World, name: &str, make_opt: impl Fn(Vec<Tensor>) -> O) {
    let dev = world.device().unwrap();
    // Each rank starts from other weights: replicate must make them rank 0's.
    let model = world
        .replicate(LeNet5::new(&ParamBuilder::new(
            &dev,
            40 + world.rank() as u64,
        )))
        .unwrap();
    let single = LeNet5::new(&ParamBuilder::new(&dev, 40));
    let mut opt = world
        .optimizer(&model, make_opt(model.parameters()))
        .check_every(2);
    if name == "sgd" {
        // Small buckets: several per step, to exercise the pipelined reduction.
        opt = opt.bucket_sizes(16 << 10, 64 << 10);
    }
    let mut single_opt = make_opt(single.parameters());
    let rank = world.rank();
    for step in 0..4u64 {
        let images = Tensor::randn([64, 1, 28, 28], 100 + step, &dev);
        let labels: Vec<i32> = (0..64).map(|i| (i * 7 + step as i32) % 10).collect();
        let labels = Tensor::from_vec(labels, [64], &dev).unwrap();
        let mine = (
            images.narrow(0, 32 * rank, 32),
            labels.narrow(0, 32 * rank, 32),
        );
        let loss = model.forward(&mine.0).cross_entropy(&mine.1);
        opt.step(&loss.backward()).unwrap();
        let loss = single.forward(&images).cross_entropy(&labels);
        single_opt.step(&loss.backward()).unwrap();
    }
    let mut worst = 0.0f32;
    for ((n, a), (_, b)) in model
        .named_parameters()
        .iter()
        .zip(single.named_parameters())
    {
        let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
        for (x, y) in a.iter().zip(&b) {
            let diff = (x - y).abs();
            worst = worst.max(diff);
            assert!(
                diff <= 1e-5 + 1e-4 * y.abs(),
                "{name}: {n}: {x} on 2 ranks, {y} on one"
            );
        }
    }
    world.check_replicas(&model.parameters()).unwrap();
    println!(
        "rank {rank}: lenet {name}: 4 steps, max |2 ranks - 1 process| = {worst:.2e}, {} buckets, {} submissions in the last step",
        opt.last_buckets(),
        opt.last_submissions()
    );
}

/// A small convolutional net with two batch norms, for the SyncBatchNorm scenario.
fn conv_bn_net(dev: &Device, seed: u64) -> Sequential {
    let pb = ParamBuilder::new(dev, seed);
    let same = Conv2dOptions::default().padding(1);
    Sequential::new()
        .push(Conv2d::no_bias(3, 8, 3, same, &pb.pp("0")))
        .push(BatchNorm2d::new(8, &pb.pp("1")))
        .push(Activation::Relu)
        .push(Conv2d::no_bias(8, 8, 3, same, &pb.pp("3")))
        .push(BatchNorm2d::new(8, &pb.pp("4")))
        .push(Activation::Relu)
        .push(AdaptiveAvgPool2d::new([1, 1]))
        .push(Flatten)
        .push(Linear::new(8, 10, &pb.pp("8")))
}

/// Per-replica batch norm under DDP: a step computes the forward pass once. The running
/// statistics' new values are computed with the gradients, before the all-reduce, not again from
/// the forward pass in the optimiser's update after it. Checked by dispatch counts:
/// the distributed step may add the buckets' packing, not a second forward pass.
fn bn_step_work(world: &World) {
    let dev = world.device().unwrap();
    let model = world.replicate(conv_bn_net(&dev, 70)).unwrap();
    let single = conv_bn_net(&dev, 70);
    let mut opt = world.optimizer(&model, Sgd::new(model.parameters(), 0.1));
    let mut single_opt = Sgd::new(single.parameters(), 0.1);
    let images = Tensor::randn([4, 3, 6, 6], 300, &dev);
    let labels = Tensor::from_vec(vec![1i32, 2, 3, 4], [4], &dev).unwrap();
    let dispatches = |f: &mut dyn FnMut()| {
        let before = dev.stats().dispatches;
        f();
        dev.stats().dispatches - before
    };
    let mut distributed = 0;
    let mut alone = 0;
    for _ in 0..2 {
        distributed = dispatches(&mut || {
            let loss = model.forward(&images).cross_entropy(&labels);
            opt.step(&loss.backward()).unwrap();
        });
        alone = dispatches(&mut || {
            let loss = single.forward(&images).cross_entropy(&labels);
            single_opt.step(&loss.backward()).unwrap();
        });
    }
    println!(
        "rank {}: bnstep: {distributed} dispatches per distributed step, {alone} in one process",
        world.rank()
    );
    let packing = opt.last_buckets() as u64;
    assert!(
        distributed <= alone + packing,
        "the distributed step dispatched {distributed} kernels: more than one process's {alone} \
         and {packing} for packing the buckets (the forward pass computed twice?)"
    );
}

/// SyncBatchNorm: 2 ranks at batch 4 train as one process at batch 8 with plain batch norm
/// (parameters and running statistics), where per-rank statistics would not.
fn sync_batch_norm(world: &World) {
    let dev = world.device().unwrap();
    let rank = world.rank();
    let model = world
        .replicate(conv_bn_net(&dev, 60 + rank as u64))
        .unwrap();
    let synced = world.sync_batch_norm(&model);
    assert_eq!(synced, ["1", "4"]);
    // The collective lives on this thread: a synced forward pass realized on another is an error
    // (and its running-statistics updates, pending on that thread, go with it).
    let x = Tensor::randn([4, 3, 6, 6], 1, &dev);
    let elsewhere = std::thread::scope(|s| s.spawn(|| model.forward(&x).realize()).join());
    let err = elsewhere.unwrap().unwrap_err().to_string();
    assert!(err.contains("only be exchanged on the thread"), "{err}");
    let single = conv_bn_net(&dev, 60);
    let sgd = |p| Sgd::new(p, 0.1).with_momentum(0.9, false);
    let mut opt = world
        .optimizer(&model, sgd(model.parameters()))
        .check_every(1);
    let mut single_opt = sgd(single.parameters());
    let steps = 3u64;
    for step in 0..steps {
        let images = Tensor::randn([8, 3, 6, 6], 200 + step, &dev).add_scalar(0.5 * step as f64);
        let labels: Vec<i32> = (0..8).map(|i| (i * 3 + step as i32) % 10).collect();
        let labels = Tensor::from_vec(labels, [8], &dev).unwrap();
        let loss = model
            .forward(&images.narrow(0, 4 * rank, 4))
            .cross_entropy(&labels.narrow(0, 4 * rank, 4));
        opt.step(&loss.backward()).unwrap();
        let loss = single.forward(&images).cross_entropy(&labels);
        single_opt.step(&loss.backward()).unwrap();
    }
    let mut worst = 0.0f32;
    for ((n, a), (_, b)) in model.state_dict().iter().zip(single.state_dict()) {
        if a.dtype() != DType::F32 {
            assert_eq!(a.to_f64_vec().unwrap(), b.to_f64_vec().unwrap(), "{n}");
            continue;
        }
        let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
        for (x, y) in a.iter().zip(&b) {
            worst = worst.max((x - y).abs());
            assert!(
                (x - y).abs() <= 1e-5 + 1e-4 * y.abs(),
                "syncbn: {n}: {x} on 2 ranks, {y} on one process"
            );
        }
    }
    // The running statistics are part of the replicas now: the same bits on both ranks.
    let state: Vec<Tensor> = model.state_dict().into_iter().map(|(_, t)| t).collect();
    world.check_replicas(&state).unwrap();
    println!(
        "rank {rank}: syncbn: {steps} steps, max |2 ranks - 1 process| = {worst:.2e} over parameters and running statistics, {} submissions in the last step",
        opt.last_submissions()
    );
}

/// Under `NonFinitePolicy::Skip`, a step whose loss is infinite on rank 1 alone (its gradients
/// finite) is skipped on both ranks, and the next step applies on both.
fn non_finite_on_one_rank(world: &World) {
    let dev = world.device().unwrap();
    let model = world
        .replicate(Linear::new(8, 4, &ParamBuilder::new(&dev, 3)))
        .unwrap();
    let mut sgd = Sgd::new(model.parameters(), 0.1);
    sgd.set_non_finite_policy(NonFinitePolicy::Skip);
    let mut opt = world.optimizer(&model, sgd).check_every(1);
    let values = |m: &Linear| -> Vec<Vec<f32>> {
        m.parameters().iter().map(|p| p.to_vec().unwrap()).collect()
    };
    let rank = world.rank();
    let mut before = values(&model);
    for step in 0..3u64 {
        let x = Tensor::randn([4, 8], 10 * step + rank as u64, &dev);
        let mut loss = model.forward(&x).square().mean();
        if step == 1 && rank == 1 {
            // A constant term: the loss is infinite, its gradients are not touched.
            loss = loss.add(&loss.scalar_like(f64::INFINITY));
        }
        let report = opt.step(&loss.backward()).unwrap();
        let after = values(&model);
        if step == 1 {
            assert!(report.skipped().unwrap(), "rank {rank}: step 1 was applied");
            assert_eq!(
                after, before,
                "rank {rank}: a skipped step changed the parameters"
            );
        } else {
            assert!(
                !report.skipped().unwrap(),
                "rank {rank}: step {step} was skipped"
            );
            assert_ne!(after, before, "rank {rank}: step {step} changed nothing");
        }
        world.check_replicas(&model.parameters()).unwrap();
        before = after;
    }
    assert_eq!(opt.steps(), 3);
}

/// A panic on another thread, caught by `join`, leaves the job alone.
fn other_threads_panic(world: &World) {
    let worker = std::thread::Builder::new()
        .name("worker".into())
        .spawn(|| panic!("a worker's panic, caught by join"))
        .unwrap();
    assert!(worker.join().is_err());
    let mut sum = [1.0f32 + world.rank() as f32];
    world.collective().all_reduce_sum(&mut sum);
    assert_eq!(sum, [3.0]);
}

/// Once the world is dropped (MPI finalized) a panic is an ordinary one: no MPI_Abort.
fn panic_after_finalize(world: World) {
    drop(world);
    let caught = std::panic::catch_unwind(|| panic!("a panic after MPI_Finalize"));
    assert!(caught.is_err());
}

/// Rank 1 fails after two steps (as `KILN_FAULT` says); rank 0 goes on into the next all-reduce.
fn fault(world: &World) {
    let fault = std::env::var("KILN_FAULT").unwrap();
    let dev = Device::cpu();
    let model = world
        .replicate(Linear::new(8, 4, &ParamBuilder::new(&dev, 3)))
        .unwrap();
    let sgd = Sgd::new(model.parameters(), 0.1);
    // "step": rank 1's wrapped optimiser fails in its third update, after the averaging.
    let fail_at = (fault == "step" && world.rank() == 1).then_some(2);
    let mut opt = world.optimizer(&model, FailingStep { sgd, fail_at });
    for step in 0..1000 {
        if step == 2 && world.rank() == 1 {
            eprintln!("rank 1 fails now ({fault})");
            match fault.as_str() {
                "panic" => panic!("injected fault"),
                "error" => {
                    world.abort_on_error::<()>(Err(KilnError::Backend("injected fault".into())))
                }
                "step" => {}
                "kill" => {
                    let pid = std::process::id().to_string();
                    Command::new("kill").args(["-9", &pid]).status().unwrap();
                    std::thread::sleep(Duration::from_secs(60));
                }
                _ => std::process::exit(3),
            }
        }
        let x = Tensor::randn([4, 8], step, &dev);
        let loss = model.forward(&x).square().mean();
        if let Err(e) = opt.step(&loss.backward()) {
            // A rank that got an error back ends its run: the other rank waits for it forever.
            eprintln!("rank {}: the step returned {e}", world.rank());
            return;
        }
    }
    panic!(
        "rank {} finished a run that should have failed",
        world.rank()
    );
}

/// Sgd, except that its step number `fail_at` (from 0) fails as a device error would.
struct FailingStep {
    sgd: Sgd,
    fail_at: Option<u64>,
}

impl Optimizer for FailingStep {
    fn step(&mut self, grads: &kiln::Gradients) -> kiln::Result<kiln::optim::StepReport> {
        if self.fail_at == Some(self.sgd.steps()) {
            return Err(KilnError::Backend("injected step failure".into()));
        }
        self.sgd.step(grads)
    }
    fn learning_rate(&self) -> f64 {
        self.sgd.learning_rate()
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.sgd.set_learning_rate(lr)
    }
    fn num_groups(&self) -> usize {
        self.sgd.num_groups()
    }
    fn group_learning_rate(&self, group: usize) -> f64 {
        self.sgd.group_learning_rate(group)
    }
    fn set_group_learning_rate(&mut self, group: usize, lr: f64) {
        self.sgd.set_group_learning_rate(group, lr)
    }
    fn base_learning_rate(&self, group: usize) -> f64 {
        self.sgd.base_learning_rate(group)
    }
    fn steps(&self) -> u64 {
        self.sgd.steps()
    }
    fn non_finite_policy(&self) -> NonFinitePolicy {
        self.sgd.non_finite_policy()
    }
    fn set_non_finite_policy(&mut self, policy: NonFinitePolicy) {
        self.sgd.set_non_finite_policy(policy)
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        self.sgd.state()
    }
    fn load_state(&mut self, state: &[(String, Tensor)]) -> kiln::Result<()> {
        self.sgd.load_state(state)
    }
}
