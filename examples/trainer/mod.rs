//! The training loop that `examples/mnist.rs` and `examples/train.rs` share: the data behind
//! one interface ([`data::Data`]: MNIST/IDX, CIFAR or an image folder), the epochs with their
//! progress bar, metrics, test passes, checkpoints, divergence checks, early stopping and
//! pictures ([`fit::fit`]). Each example parses its own flags, builds its model and optimiser
//! and hands them over.
//!
//! Included by both examples with `#[path = "trainer/mod.rs"] mod trainer;` (a directory
//! without `main.rs`, so cargo does not take it for an example of its own).

// Each example uses a part of it (mnist reads no image folder and keeps no best checkpoint).
#![allow(dead_code)]

/// False on the ranks other than 0 of a distributed run (`mnist --distributed`): they print
/// nothing (their errors still reach the terminal, through stderr).
pub(crate) static SPEAKS: AtomicBool = AtomicBool::new(true);

// Every `println!` of the trainer (and of an example that includes it with `#[macro_use]`) goes
// through SPEAKS, which must be in scope where it is used.
macro_rules! println {
    ($($t:tt)*) => {
        if SPEAKS.load(std::sync::atomic::Ordering::Relaxed) {
            std::println!($($t)*)
        }
    };
}

pub(crate) mod checkpoint;
pub(crate) mod data;
pub(crate) mod divergence;
pub(crate) mod fit;
pub(crate) mod pictures;

use clap::ValueEnum;
use kiln::optim::{Adam, NonFinitePolicy, Optimizer, Schedule, Sgd};
use kiln::prelude::*;
use std::sync::atomic::AtomicBool;

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
pub(crate) enum OptimizerKind {
    Adam,
    Adamw,
    Sgd,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
pub(crate) enum ScheduleKind {
    /// The same learning rate throughout.
    Constant,
    /// Cosine annealing from the learning rate to 0 over all the run's steps.
    Cosine,
}

impl ScheduleKind {
    /// The schedule for a run of `total_steps` steps.
    pub(crate) fn schedule(self, total_steps: usize) -> Schedule {
        match self {
            ScheduleKind::Constant => Schedule::Constant,
            ScheduleKind::Cosine => Schedule::Cosine {
                total: total_steps,
                min_lr: 0.0,
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
pub(crate) enum OnNan {
    /// Stop with an error naming the step (the last good checkpoint is kept).
    Stop,
    /// Skip the step's update (parameters and optimiser state stay as they were) and go on.
    Skip,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
pub(crate) enum DeviceKind {
    /// The best wgpu adapter (a GPU, else the software Vulkan driver).
    Gpu,
    /// The plain-Rust reference executor (slow; for checking).
    Cpu,
}

impl DeviceKind {
    /// The device to train on.
    pub(crate) fn device(self) -> kiln::Result<Device> {
        match self {
            DeviceKind::Gpu => Device::default(),
            DeviceKind::Cpu => Ok(Device::cpu()),
        }
    }
}

/// The optimiser `kind` over `params` at learning rate `lr` (default: 1e-3 for Adam and AdamW,
/// 0.05 for SGD with momentum 0.9), with the policy for non-finite steps.
pub(crate) fn optimizer(
    kind: OptimizerKind,
    params: Vec<Tensor>,
    lr: Option<f64>,
    on_nan: OnNan,
) -> Box<dyn Optimizer> {
    let mut opt: Box<dyn Optimizer> = match kind {
        OptimizerKind::Adam => Box::new(Adam::new(params, lr.unwrap_or(1e-3))),
        OptimizerKind::Adamw => Box::new(Adam::adamw(params, lr.unwrap_or(1e-3), 0.01)),
        OptimizerKind::Sgd => {
            Box::new(Sgd::new(params, lr.unwrap_or(0.05)).with_momentum(0.9, false))
        }
    };
    opt.set_non_finite_policy(match on_nan {
        OnNan::Stop => NonFinitePolicy::Apply,
        OnNan::Skip => NonFinitePolicy::Skip,
    });
    opt
}

/// Creates the run directory and checks that it and the checkpoint path can be written, before
/// anything else happens.
pub(crate) fn prepare_run_dir(
    run_dir: &std::path::Path,
    checkpoint: &std::path::Path,
) -> kiln::Result<()> {
    std::fs::create_dir_all(run_dir).map_err(|e| KilnError::Io {
        msg: format!(
            "{}: cannot create the run directory: {e}",
            run_dir.display()
        ),
        source: e,
    })?;
    kiln::preflight::check_writable_dir(run_dir, "the run directory")?;
    kiln::preflight::check_checkpoint_path(checkpoint)
}

/// The normalisation of the pixels after scaling to [0, 1]: `(x - mean[c]) / std[c]`, one value
/// per channel.
#[derive(Clone, Debug)]
pub(crate) struct Norm {
    pub(crate) mean: Vec<f32>,
    pub(crate) std: Vec<f32>,
}

impl Norm {
    /// `given` where given (one value for every channel, or one per channel), else the data's
    /// own `measured` values; errors unless every value is finite and every std positive.
    pub(crate) fn choose(
        given: (Option<&[f32]>, Option<&[f32]>),
        measured: (&[f32], &[f32]),
    ) -> kiln::Result<Norm> {
        let channels = measured.0.len();
        let pick = |g: Option<&[f32]>, m: &[f32], what: &str| -> kiln::Result<Vec<f32>> {
            match g {
                None => Ok(m.to_vec()),
                Some([v]) => Ok(vec![*v; channels]),
                Some(v) if v.len() == channels => Ok(v.to_vec()),
                Some(v) => Err(KilnError::InvalidArgument(format!(
                    "--{what}: 1 or {channels} values (one per channel), got {}",
                    v.len()
                ))),
            }
        };
        let norm = Norm {
            mean: pick(given.0, measured.0, "mean")?,
            std: pick(given.1, measured.1, "std")?,
        };
        let good = norm.mean.iter().all(|m| m.is_finite())
            && norm.std.iter().all(|s| s.is_finite() && *s > 0.0);
        if !good {
            return Err(KilnError::InvalidArgument(format!(
                "normalisation needs a finite mean and a positive std, got mean {} std {}",
                join(&norm.mean),
                join(&norm.std)
            )));
        }
        Ok(norm)
    }
}

/// `values` comma-separated, as the checkpoint's metadata and the messages write them.
pub(crate) fn join(values: &[f32]) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A run's exit status: 0, or 1 after printing its error.
pub(crate) fn exit_status(result: kiln::Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
