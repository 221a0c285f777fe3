//! The epochs of a training run: steps with a progress bar (one log line every ~10% when
//! stderr is no terminal), the learning-rate schedule, non-finite steps, a test pass after each
//! epoch, the checkpoint, metrics.csv, the best checkpoint and early stopping, and the pictures
//! at the end.

use super::checkpoint::{save, CheckpointInfo};
use super::data::Data;
use super::divergence::{save_metrics, Divergence, SkippedStep};
use super::pictures::pictures;
#[allow(unused_imports)]
use super::SPEAKS;
use super::{OnNan, ScheduleKind};
use indicatif::{ProgressBar, ProgressStyle};
use kiln::data::write_class_list;
use kiln::nn::Module;
use kiln::optim::{Optimizer, StepReport};
use kiln::prelude::*;
use kiln::viz::{self, Metrics};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How a run trains.
pub(crate) struct Settings<'a> {
    /// The model's name ([`kiln::models::by_name`]), recorded in the checkpoints.
    pub(crate) model: &'a str,
    pub(crate) epochs: usize,
    /// Epochs already done (a resumed run).
    pub(crate) first_epoch: usize,
    pub(crate) batch_size: usize,
    pub(crate) seed: u64,
    pub(crate) schedule: ScheduleKind,
    pub(crate) on_nan: OnNan,
    /// Stop after this many steps in all.
    pub(crate) max_steps: Option<usize>,
    pub(crate) run_dir: &'a Path,
    /// Written after every epoch (weights and optimiser state, for `--resume`).
    pub(crate) checkpoint: &'a Path,
    /// Where the checkpoint of the epoch with the lowest test loss so far is kept, when asked.
    pub(crate) best: Option<&'a Path>,
    /// The test loss and epoch of the best checkpoint a resumed run starts from.
    pub(crate) best_so_far: Option<(f64, usize)>,
    /// Stop when the test loss has not improved for this many epochs.
    pub(crate) patience: Option<usize>,
    /// Write the class list beside the checkpoints.
    pub(crate) class_list: bool,
    pub(crate) pictures: bool,
    /// False on the ranks other than 0 of a distributed run: they show no progress and write
    /// no file.
    pub(crate) main_rank: bool,
}

/// The test set's loss, accuracy and every prediction.
pub(crate) struct TestPass {
    pub(crate) loss: f64,
    pub(crate) accuracy: f64,
    pub(crate) preds: Vec<usize>,
    pub(crate) labels: Vec<usize>,
}

/// The lowest test loss so far, and its epoch (from 1).
struct Best {
    loss: f64,
    epoch: usize,
}

/// The state of a run between epochs.
struct Run<'a> {
    metrics: Metrics,
    skipped: Vec<SkippedStep>,
    /// Epochs in the checkpoint this run last wrote.
    saved_epochs: Option<usize>,
    plan_dot: Option<String>,
    steps_done: usize,
    divergence: Divergence<'a>,
}

/// Trains `model` with `opt` on `data` as `s` says, from epoch `s.first_epoch`.
pub(crate) fn fit(
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    data: &Data<'_>,
    s: &Settings<'_>,
) -> kiln::Result<()> {
    let min = |v: &[f32]| v.iter().copied().fold(f32::INFINITY, f32::min);
    let mut run = Run {
        metrics: Metrics::new(),
        skipped: vec![],
        saved_epochs: None,
        plan_dot: None,
        steps_done: 0,
        divergence: Divergence {
            lr: opt.learning_rate(),
            std: min(&data.norm.std),
            data_std: min(&data.data_std),
            checkpoint: s.checkpoint,
        },
    };
    let steps_per_epoch = data.train_len().div_ceil(s.batch_size);
    let max_steps = s.max_steps.unwrap_or(usize::MAX);
    let total_steps = (steps_per_epoch * s.epochs).min(max_steps);
    let schedule = s.schedule.schedule(total_steps);
    let base_lr = opt.learning_rate();
    let mut last_test: Option<TestPass> = None;
    let mut best: Option<Best> = s.best_so_far.map(|(loss, epoch)| Best { loss, epoch });
    for epoch in s.first_epoch..s.epochs {
        if run.steps_done >= max_steps {
            break;
        }
        let steps = steps_per_epoch.min(max_steps - run.steps_done);
        let start = Instant::now();
        let first_loss = run.metrics.steps.len();
        let lr_at = |step: usize| schedule.at(base_lr, step);
        let seen = train_epoch(model, opt, data, s, &mut run, (epoch, steps), &lr_at)?;
        let seconds = start.elapsed().as_secs_f64();
        let losses: Vec<f64> = run.metrics.steps[first_loss..]
            .iter()
            .map(|s| s.loss)
            .collect();
        let test = test_pass(model, data)?;
        run.metrics
            .end_epoch(epoch + 1, Some(test.loss), Some(test.accuracy));
        println!(
            "epoch {}: {} steps, train loss {:.4} -> {:.4} (first and last recorded), test \
             accuracy {:.2}%, test loss {:.4} ({:.1} s, {:.0} images/s)",
            epoch + 1,
            steps,
            losses.first().copied().unwrap_or(f64::NAN),
            losses.last().copied().unwrap_or(f64::NAN),
            test.accuracy * 100.0,
            test.loss,
            seconds,
            seen as f64 / seconds
        );
        let info = CheckpointInfo {
            model: s.model,
            epochs: epoch + 1,
            norm: &data.norm,
            size: data.dims,
            test_loss: test.loss,
        };
        if s.main_rank {
            save(s.checkpoint, model, &*opt, &info)?;
        }
        run.saved_epochs = Some(epoch + 1);
        let improved = best.as_ref().is_none_or(|b| test.loss < b.loss);
        if improved {
            best = Some(Best {
                loss: test.loss,
                epoch: epoch + 1,
            });
            if let Some(path) = s.best.filter(|_| s.main_rank) {
                save(path, model, &*opt, &info)?;
            }
        }
        last_test = Some(test);
        save_metrics(&s.run_dir.join("metrics.csv"), &run.metrics, &run.skipped)?;
        let b = best.as_ref().expect("set above");
        if s.patience.is_some_and(|p| epoch + 1 - b.epoch >= p) {
            println!(
                "early stopping: the test loss has not improved for {} epochs (best {:.4} after \
                 epoch {})",
                epoch + 1 - b.epoch,
                b.loss,
                b.epoch
            );
            break;
        }
    }
    finish(model, data, s, &run, last_test.as_ref(), best.as_ref())
}

/// What a run prints and writes after its last epoch.
fn finish(
    model: &dyn Module,
    data: &Data<'_>,
    s: &Settings<'_>,
    run: &Run<'_>,
    last_test: Option<&TestPass>,
    best: Option<&Best>,
) -> kiln::Result<()> {
    if s.max_steps.is_some_and(|m| run.steps_done >= m) {
        println!("stopped after {} steps (--max-steps)", run.steps_done);
    }
    if s.on_nan == OnNan::Skip {
        println!(
            "skipped {} of {} steps whose loss or gradient was not finite (--on-nan skip)",
            run.skipped.len(),
            run.steps_done
        );
    }
    println!("checkpoint: {}", s.checkpoint.display());
    if let (Some(path), Some(b)) = (s.best, best) {
        println!(
            "best checkpoint: {} (epoch {}, test loss {:.4})",
            path.display(),
            b.epoch,
            b.loss
        );
    }
    if s.class_list && s.main_rank {
        let mut paths: Vec<PathBuf> = vec![s.checkpoint.to_path_buf()];
        paths.extend(s.best.map(Path::to_path_buf));
        for p in paths {
            println!(
                "class list: {}",
                write_class_list(p, &data.classes)?.display()
            );
        }
    }
    if s.pictures && s.main_rank {
        pictures(
            s.run_dir,
            model,
            data,
            &run.metrics,
            last_test,
            run.plan_dot.as_deref(),
        )?;
    }
    Ok(())
}

/// The steps of epoch `epoch` (from 0), `steps` of them; returns the images seen.
fn train_epoch(
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    data: &Data<'_>,
    s: &Settings<'_>,
    run: &mut Run<'_>,
    (epoch, steps): (usize, usize),
    lr_at: &dyn Fn(usize) -> f64,
) -> kiln::Result<usize> {
    let bar = match s.main_rank {
        true => ProgressBar::new(data.train_len().div_ceil(s.batch_size) as u64),
        false => ProgressBar::hidden(),
    };
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{}", epoch + 1));
    let start = Instant::now();
    let mut seen = 0;
    // Losses and accuracies of the steps not read yet: reading waits for the GPU, so they are
    // read every 10 steps.
    let mut unread: Vec<(Tensor, Tensor, StepReport)> = vec![];
    let batches = data.train_batches(s.seed.wrapping_add(epoch as u64), s.batch_size)?;
    // The bar draws only on a terminal; into a log file a line goes every ~10% instead.
    let log_lines = !std::io::stderr().is_terminal() && s.main_rank;
    let mut next_line = 0;
    for (step, (images, labels)) in batches.take(steps).enumerate() {
        let n = labels.numel();
        let logits = model.forward(&images);
        let loss = logits.cross_entropy(&labels);
        let mut grads = loss.backward();
        let accuracy = kiln::no_grad(|| logits.accuracy(&labels));
        grads.compute_with_step(&accuracy);
        if run.plan_dot.is_none() && s.pictures {
            let params = model.parameters();
            let mut targets: Vec<&Tensor> = params.iter().filter_map(|p| grads.get(p)).collect();
            targets.push(&loss);
            targets.push(&accuracy);
            run.plan_dot = Some(viz::plan_dot(&targets, &model.named_parameters()));
        }
        // The optimiser's step count survives --resume, so the schedule does too.
        opt.set_learning_rate(lr_at(opt.steps() as usize));
        let report = opt.step(&grads)?;
        seen += n;
        run.steps_done += 1;
        unread.push((loss, accuracy, report));
        if step % 10 == 0 || step + 1 == steps {
            let rate = seen as f64 / start.elapsed().as_secs_f64();
            let first = step + 1 - unread.len();
            for (k, (l, a, report)) in unread.drain(..).enumerate() {
                // The run's step number (from 0) and the step of this epoch (from 1).
                let (global, in_epoch) = (run.steps_done - (step - first - k) - 1, first + k + 1);
                let loss = l.item::<f32>()? as f64;
                if !report.is_finite()? {
                    if s.on_nan == OnNan::Stop {
                        bar.finish_and_clear();
                        let at = (global, in_epoch, epoch + 1);
                        return Err(run.divergence.error(at, loss, run.saved_epochs));
                    }
                    run.skipped.push(SkippedStep {
                        step: global,
                        epoch: epoch + 1,
                        loss,
                    });
                    continue;
                }
                run.metrics
                    .push_step(epoch + 1, loss, a.item::<f32>()? as f64, rate);
                run.metrics.steps.last_mut().expect("pushed").step = global;
            }
            let Some(last) = run.metrics.steps.last() else {
                bar.inc(1);
                continue;
            };
            let message = format!(
                "loss {:.4} acc {:5.1}% {rate:.0} img/s",
                last.loss,
                last.accuracy * 100.0
            );
            if log_lines && step >= next_line {
                eprintln!("epoch {} step {}/{steps}: {message}", epoch + 1, step + 1);
                next_line = step + (steps / 10).max(10);
            }
            bar.set_message(message);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(seen)
}

/// One pass over the test (validation) images in evaluation mode without gradients.
pub(crate) fn test_pass(model: &dyn Module, data: &Data<'_>) -> kiln::Result<TestPass> {
    model.set_training(false);
    let result = kiln::no_grad(|| -> kiln::Result<TestPass> {
        let (mut loss_sum, mut preds, mut labels) = (0.0, vec![], vec![]);
        for (images, y) in data.test_batches(None) {
            let logits = model.forward(&images);
            let loss = logits.cross_entropy(&y).mul_scalar(y.numel() as f64);
            let pred = logits.argmax(1);
            Tensor::realize_all(&[&loss, &pred])?;
            loss_sum += loss.item::<f32>()? as f64;
            preds.extend(pred.to_vec::<i32>()?.into_iter().map(|p| p as usize));
            labels.extend(y.to_vec::<i32>()?.into_iter().map(|l| l as usize));
        }
        let n = labels.len().max(1) as f64;
        let correct = preds.iter().zip(&labels).filter(|(p, l)| p == l).count();
        Ok(TestPass {
            loss: loss_sum / n,
            accuracy: correct as f64 / n,
            preds,
            labels,
        })
    });
    model.set_training(true);
    result
}
