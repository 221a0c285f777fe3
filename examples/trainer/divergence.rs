//! Non-finite steps in `examples/mnist.rs`: the error that stops a diverged run, and the
//! record of the steps `--on-nan skip` skipped.

use kiln::prelude::*;
use kiln::viz::Metrics;
use std::path::Path;

/// A step whose update was skipped (`--on-nan skip`): its step number in the run (from 0),
/// its epoch (from 1) and its loss.
pub(crate) struct SkippedStep {
    pub(crate) step: usize,
    pub(crate) epoch: usize,
    pub(crate) loss: f64,
}

/// Writes `metrics` as CSV ([`Metrics::to_csv`]) with one `skipped_step` row per skipped step.
pub(crate) fn save_metrics(
    path: &Path,
    metrics: &Metrics,
    skipped: &[SkippedStep],
) -> kiln::Result<()> {
    let mut csv = metrics.to_csv();
    for s in skipped {
        csv += &format!("{},{},skipped_step,{},,\n", s.step, s.epoch, s.loss);
    }
    std::fs::write(path, csv).map_err(|e| KilnError::Io {
        msg: format!("{}: cannot write: {e}", path.display()),
        source: e,
    })
}

/// What the error of a diverged run says: the settings behind the likely causes.
pub(crate) struct Divergence<'a> {
    pub(crate) lr: f64,
    pub(crate) std: f32,
    pub(crate) data_std: f32,
    pub(crate) checkpoint: &'a Path,
}

impl Divergence<'_> {
    /// The error for step `global` of the run (from 0), step `in_epoch` of `epoch` (both from
    /// 1), whose loss or gradient was not finite; `saved` is the epoch count of the checkpoint
    /// this run wrote last.
    pub(crate) fn error(
        &self,
        (global, in_epoch, epoch): (usize, usize, usize),
        loss: f64,
        saved: Option<usize>,
    ) -> KilnError {
        let kept = match saved {
            Some(e) => format!(
                "The checkpoint {} keeps the weights after epoch {e}",
                self.checkpoint.display()
            ),
            None => format!(
                "No checkpoint was written ({} is unchanged)",
                self.checkpoint.display()
            ),
        };
        let lr = format!(
            "the learning rate {:e} is too high (try 10x smaller: --lr)",
            self.lr
        );
        let std = format!(
            "the normalisation divides by a tiny std ({:e}; the pixels' own is {:.4}: --std)",
            self.std, self.data_std
        );
        // A std far below the pixels' own is the likelier cause: name it first.
        let causes = if self.std < self.data_std * 1e-3 {
            [std, lr]
        } else {
            [lr, std]
        };
        let loss = if loss.is_finite() && loss.abs() >= 1e6 {
            format!("{loss:e}")
        } else {
            format!("{loss}")
        };
        KilnError::InvalidInput {
            op: "training diverged",
            msg: format!(
                "the loss or a gradient of step {} (step {in_epoch} of epoch {epoch}) is not \
                 finite (loss {loss}). Likely causes: {}; {}; or the data holds a NaN. {kept}. \
                 --on-nan skip skips such steps instead.",
                global + 1,
                causes[0],
                causes[1]
            ),
        }
    }
}
