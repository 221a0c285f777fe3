//! The checkpoints of `examples/mnist.rs` and `examples/train.rs`: the model's `state_dict`, the
//! optimiser's state and the metadata `examples/classify.rs` reads; never written from
//! non-finite values.

use super::{join, Norm};
use kiln::checkpoint;
use kiln::classify::{META_INPUT_SIZE, META_MEAN, META_MODEL, META_STD};
use kiln::nn::{load_state_dict, realize_pending_updates, Module};
use kiln::optim::Optimizer;
use kiln::prelude::*;
use std::path::{Path, PathBuf};

/// What a checkpoint records beside the tensors.
pub(crate) struct CheckpointInfo<'a> {
    pub(crate) model: &'a str,
    pub(crate) epochs: usize,
    pub(crate) norm: &'a Norm,
    pub(crate) size: [usize; 2],
    /// The test (validation) loss after the last epoch.
    pub(crate) test_loss: f64,
}

/// Metadata key of the test loss after the checkpoint's last epoch.
const META_TEST_LOSS: &str = "test_loss";

/// Writes the model's `state_dict` (PyTorch names; parameters and buffers such as batch-norm
/// statistics) and the optimiser's state (`optimizer.` names), with the model name, the epochs
/// done, the input size and the normalisation as metadata (read by `examples/classify.rs`).
pub(crate) fn save(
    path: &Path,
    model: &dyn Module,
    opt: &dyn Optimizer,
    info: &CheckpointInfo<'_>,
) -> kiln::Result<()> {
    // Buffer updates of the last forward pass not yet applied (none after an optimiser step).
    realize_pending_updates()?;
    let mut tensors = model.state_dict();
    for (name, t) in opt.state() {
        tensors.push((format!("optimizer.{name}"), t));
    }
    // A diverged run must not replace the last good checkpoint.
    kiln::debug::check_finite(&tensors)?;
    let metadata = vec![
        (META_MODEL.to_string(), info.model.to_string()),
        ("epochs".to_string(), info.epochs.to_string()),
        (META_MEAN.to_string(), join(&info.norm.mean)),
        (META_STD.to_string(), join(&info.norm.std)),
        (
            META_INPUT_SIZE.to_string(),
            format!("{}x{}", info.size[0], info.size[1]),
        ),
        (META_TEST_LOSS.to_string(), info.test_loss.to_string()),
    ];
    checkpoint::save(path, &tensors, &metadata)
}

/// Loads a checkpoint written by [`save`] for model `name`; returns the number of epochs it had
/// done.
pub(crate) fn resume(
    path: &PathBuf,
    name: &str,
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    dev: &Device,
) -> kiln::Result<usize> {
    let ckpt = checkpoint::load(path, dev)?;
    // Checkpoints of older versions of this example name LeNet-5 "LeNet5".
    if let Some(saved) = ckpt.meta(META_MODEL).map(str::to_lowercase) {
        if saved != name {
            return Err(KilnError::Data(format!(
                "{}: a checkpoint of {saved}, not of {name}; pass --model {saved}",
                path.display()
            )));
        }
    }
    let (optim, params): (Vec<_>, Vec<_>) = ckpt
        .tensors
        .into_iter()
        .partition(|(n, _)| n.starts_with("optimizer."));
    load_state_dict(model, &params)
        .map_err(|e| KilnError::Data(format!("{}: {e}", path.display())))?;
    let optim: Vec<(String, Tensor)> = optim
        .into_iter()
        .map(|(n, t)| (n["optimizer.".len()..].to_string(), t))
        .collect();
    opt.load_state(&optim)?;
    let epochs = ckpt
        .metadata
        .iter()
        .find(|(k, _)| k == "epochs")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| {
            KilnError::Data(format!(
                "{}: no epoch count in the metadata",
                path.display()
            ))
        })?;
    Ok(epochs)
}

/// The test loss and epoch count that a checkpoint written by [`save`] records, if `path` is
/// one (for the best checkpoint of a resumed run).
pub(crate) fn recorded_test_loss(path: &Path) -> Option<(f64, usize)> {
    let ckpt = checkpoint::load(path, &Device::cpu()).ok()?;
    let loss = ckpt.meta(META_TEST_LOSS)?.parse().ok()?;
    let epochs = ckpt.meta("epochs")?.parse().ok()?;
    Some((loss, epochs))
}
