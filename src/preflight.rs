//! `kiln::preflight`: the checks a training program makes before its first step, so that a
//! mistake surfaces in a second instead of after an epoch of work: the directories it will
//! write are writable, and the model takes images of the data's size (the error names the
//! sizes it takes). `examples/mnist.rs` runs them; the data checks (empty splits, test images
//! of another size, labels outside the class range) live in [`crate::data::Mnist::from_dir`]
//! and [`crate::data::Mnist::check_labels`].

use kiln_core::nn::Module;
use kiln_core::{KilnError, Result, Tensor};
use std::path::Path;

/// The largest square image size [`input_sizes`] tries.
pub const MAX_PROBED_SIZE: usize = 1024;

/// Checks that files can be created in directory `dir` (it exists, is a directory, and a probe
/// file can be written and removed there). `what` names the directory in the error ("the run
/// directory", "the checkpoint's directory").
pub fn check_writable_dir(dir: &Path, what: &str) -> Result<()> {
    let shown = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if !shown.is_dir() {
        let problem = if shown.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        return Err(KilnError::InvalidArgument(format!(
            "{}: {what} {problem}; create it first or choose another path",
            shown.display()
        )));
    }
    let probe = shown.join(format!(".kiln-write-check-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(KilnError::InvalidArgument(format!(
            "{}: {what} is not writable ({e}); choose a directory you can write to",
            shown.display()
        ))),
    }
}

/// Checks that a checkpoint can be written at `path`: not a directory itself, and its parent
/// directory exists and is writable.
pub fn check_checkpoint_path(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(KilnError::InvalidArgument(format!(
            "{}: the checkpoint path is a directory; name a file, e.g. {}",
            path.display(),
            path.join("model.safetensors").display()
        )));
    }
    let parent = path.parent().unwrap_or(Path::new(""));
    check_writable_dir(parent, "the checkpoint's directory")
}

/// Records `model.forward` on zeros `[1, channels, rows, cols]` (nothing is computed) in
/// evaluation mode; `Err` with the panic's message when the model cannot take that shape.
fn probe(
    model: &dyn Module,
    channels: usize,
    rows: usize,
    cols: usize,
) -> std::result::Result<(), String> {
    let device = match model.parameters().first() {
        Some(p) => p.device().clone(),
        None => kiln_core::Device::cpu(),
    };
    let was_training = model.is_training().unwrap_or(true);
    model.set_training(false);
    let result = kiln_core::probe::catch_probe(|| {
        kiln_core::no_grad(|| {
            let x = Tensor::zeros([1, channels, rows, cols], &device);
            drop(model.forward(&x));
        })
    });
    model.set_training(was_training);
    result.map_err(|e| {
        kiln_core::probe::panic_message(&*e)
            .unwrap_or_else(|| "the model's forward panicked".into())
    })
}

/// The square image sizes `model` takes with `channels` input channels, up to
/// [`MAX_PROBED_SIZE`]: `(smallest, largest)` of the first run of sizes whose `forward` records
/// without a shape error (LeNet-5: 28 to 31; a model with global pooling: its smallest size to
/// [`MAX_PROBED_SIZE`]). `None` when it takes none of them. Nothing is computed: each size
/// records a graph on zeros and drops it.
pub fn input_sizes(model: &dyn Module, channels: usize) -> Option<(usize, usize)> {
    let smallest = (1..=MAX_PROBED_SIZE).find(|&s| probe(model, channels, s, s).is_ok())?;
    let largest = (smallest + 1..=MAX_PROBED_SIZE)
        .find(|&s| probe(model, channels, s, s).is_err())
        .map_or(MAX_PROBED_SIZE, |s| s - 1);
    Some((smallest, largest))
}

/// Checks that `model` (called `name` in the error) takes images of `[rows, cols]` pixels with
/// `channels` channels (records one forward pass on zeros, computes nothing). The error names
/// the sizes the model takes ("too small: the smallest images the model takes are 28x28; it
/// takes 28x28 to 31x31 pixels") and the shape error the model's forward reported.
pub fn check_input_size(
    model: &dyn Module,
    name: &str,
    channels: usize,
    [rows, cols]: [usize; 2],
) -> Result<()> {
    if rows == 0 || cols == 0 || channels == 0 {
        return Err(KilnError::InvalidArgument(format!(
            "{name}: images of {channels} channels and {rows}x{cols} pixels hold nothing"
        )));
    }
    let Err(why) = probe(model, channels, rows, cols) else {
        return Ok(());
    };
    let sizes = input_sizes(model, channels);
    let takes = match sizes {
        Some((lo, hi)) if hi == MAX_PROBED_SIZE => format!("{lo}x{lo} pixels or larger"),
        Some((lo, hi)) if lo == hi => format!("{lo}x{lo} pixels only"),
        Some((lo, hi)) => format!("{lo}x{lo} to {hi}x{hi} pixels"),
        None => format!("no square size up to {MAX_PROBED_SIZE}x{MAX_PROBED_SIZE}"),
    };
    let verdict = match sizes {
        Some((lo, _)) if rows.min(cols) < lo => {
            format!("too small: the smallest images the model takes are {lo}x{lo}")
        }
        _ => "not a size the model takes".to_string(),
    };
    Err(KilnError::InvalidArgument(format!(
        "{name}: images of {rows}x{cols} pixels are {verdict}; it takes {takes} ({why}); \
         resize the images or choose another model"
    )))
}
