//! Batch normalisation (Ioffe & Szegedy, 2015), as PyTorch's `BatchNorm1d` and `BatchNorm2d`.

use super::batchnorm_sync::{gathered_statistics, BatchStatistics};
use super::pending::{record_update, updated_value};
use super::{buffer, Init, Module, ParamBuilder};
use crate::dtype::DType;
use crate::error::Result;
use crate::export::{layers, GraphBuilder, ValueId};
use crate::host_call::HostFunction;
use crate::tensor::{no_grad, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Options of a batch-norm layer; the default is PyTorch's: `eps` 1e-5, `momentum` 0.1, affine,
/// tracking running statistics.
///
/// ```
/// # use kiln_core::nn::BatchNormOptions;
/// let opts = BatchNormOptions::default().momentum(0.01).affine(false);
/// assert_eq!(opts.momentum, Some(0.01));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormOptions {
    /// Added to the variance before its square root.
    pub eps: f64,
    /// Weight of a new batch in the running statistics: `running = (1 - m) running + m batch`.
    /// `None` is PyTorch's `momentum=None`: a cumulative average (`m = 1 / batches seen`).
    pub momentum: Option<f64>,
    /// Learnable per-channel scale (`weight`, ones) and shift (`bias`, zeros).
    pub affine: bool,
    /// Keep running statistics (buffers `running_mean`, `running_var`, `num_batches_tracked`)
    /// and use them in evaluation mode; without them batch statistics are used in both modes.
    pub track_running_stats: bool,
}

impl Default for BatchNormOptions {
    fn default() -> Self {
        BatchNormOptions {
            eps: 1e-5,
            momentum: Some(0.1),
            affine: true,
            track_running_stats: true,
        }
    }
}

impl BatchNormOptions {
    /// Sets `eps`.
    pub fn eps(self, eps: f64) -> Self {
        BatchNormOptions { eps, ..self }
    }
    /// Sets the momentum of the running statistics.
    pub fn momentum(self, m: f64) -> Self {
        BatchNormOptions {
            momentum: Some(m),
            ..self
        }
    }
    /// Running statistics as a cumulative average over all batches (PyTorch's `momentum=None`).
    pub fn cumulative(self) -> Self {
        BatchNormOptions {
            momentum: None,
            ..self
        }
    }
    /// With or without the learnable scale and shift.
    pub fn affine(self, on: bool) -> Self {
        BatchNormOptions { affine: on, ..self }
    }
    /// With or without running statistics.
    pub fn track_running_stats(self, on: bool) -> Self {
        BatchNormOptions {
            track_running_stats: on,
            ..self
        }
    }
}

/// Batch normalisation over every dimension but the channels (dimension 1) of `[N, C, ..]`:
/// `y = (x - mean) / sqrt(var + eps) * weight + bias`, per channel.
///
/// In training mode `mean` and `var` are the batch's (the variance biased, divided by the count
/// `n` of values per channel), gradients flow through them, and the running statistics are
/// updated with the unbiased variance (`var n / (n - 1)`): the forward pass *records* the new
/// values (see [`super::record_update`]) and the next optimiser step realizes them with its own
/// update, in the same submission. In evaluation mode the running statistics are used (the
/// pending values if an update has not been realized yet).
///
/// Until they are realized, pending statistics keep the forward passes they came from alive
/// (each pass chains on the last): training-mode passes without an optimiser step should be
/// followed by [`super::realize_pending_updates`]; inference belongs in evaluation mode.
///
/// With [`BatchNorm::sync_statistics`] the training-mode statistics are those of a batch split
/// over several processes (PyTorch's `SyncBatchNorm`; see `kiln-distributed`).
///
/// [`BatchNorm1d`] and [`BatchNorm2d`] are this layer with their input ranks checked.
pub struct BatchNorm {
    /// `[C]`, ones, if affine.
    pub weight: Option<Tensor>,
    /// `[C]`, zeros, if affine.
    pub bias: Option<Tensor>,
    /// `[C]`, zeros, if tracking running statistics.
    pub running_mean: Option<Tensor>,
    /// `[C]`, ones, if tracking running statistics.
    pub running_var: Option<Tensor>,
    /// `[]` i32, the training batches seen, if tracking running statistics (i64 in PyTorch).
    pub num_batches_tracked: Option<Tensor>,
    /// eps, momentum, affine, tracking.
    pub options: BatchNormOptions,
    channels: usize,
    training: AtomicBool,
    gather: Mutex<Option<Arc<dyn HostFunction>>>,
}

impl BatchNorm {
    /// A layer for `channels` channels, in training mode, its tensors (`weight`, `bias`,
    /// `running_mean`, ..) under `pb`'s prefix on its device.
    pub fn new(channels: usize, options: BatchNormOptions, pb: &ParamBuilder) -> BatchNorm {
        let c = [channels];
        let (weight, bias) = if options.affine {
            (
                Some(pb.param("weight", &c, Init::Const(1.0))),
                Some(pb.param("bias", &c, Init::Const(0.0))),
            )
        } else {
            (None, None)
        };
        let (running_mean, running_var, num_batches_tracked) = if options.track_running_stats {
            let zero = Tensor::full_dtype((), 0.0, DType::I32, pb.device());
            (
                Some(pb.buffer("running_mean", &c, Init::Const(0.0))),
                Some(pb.buffer("running_var", &c, Init::Const(1.0))),
                Some(buffer(zero)),
            )
        } else {
            (None, None, None)
        };
        BatchNorm {
            weight,
            bias,
            running_mean,
            running_var,
            num_batches_tracked,
            options,
            channels,
            training: AtomicBool::new(true),
            gather: Mutex::new(None),
        }
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Computes the training-mode statistics over the processes of `gather` (`[K] -> [R, K]`:
    /// every process's values, in process order, the same on every process; its gradient rule
    /// sums every process's gradient for this process's row): each process normalizes its part
    /// of the global batch with the global batch's mean and variance, and the running statistics
    /// follow the global batch's, so they stay the same on every process. `None` goes back to
    /// this process's own statistics. Evaluation mode is unchanged. `kiln-distributed`'s
    /// `World::sync_batch_norm` sets this on every layer of a model.
    pub fn sync_statistics(&self, gather: Option<Arc<dyn HostFunction>>) {
        *self.gather.lock().unwrap() = gather;
    }
    /// True when the training-mode statistics are gathered over processes.
    pub fn is_synced(&self) -> bool {
        self.gather.lock().unwrap().is_some()
    }

    /// True in training mode (also [`Module::is_training`]).
    fn training(&self) -> bool {
        self.training.load(Ordering::Relaxed)
    }

    /// The running `(mean, var)`, each `[C]`, including updates not yet realized; `None` without
    /// running statistics.
    pub fn running_stats(&self) -> Option<(Tensor, Tensor)> {
        match (&self.running_mean, &self.running_var) {
            (Some(m), Some(v)) => Some((updated_value(m), updated_value(v))),
            _ => None,
        }
    }

    /// `[N, C, ..] -> [N, C, ..]`, any rank >= 2 (the checked forward of the 1-D and 2-D layers).
    #[track_caller]
    fn normalize(&self, op: &str, x: &Tensor) -> Tensor {
        let c = self.channels;
        assert!(
            x.rank() >= 2 && x.dims()[1] == c,
            "{op}: expects [N, {c}, ..] (channels in dimension 1), got {}",
            x.shape()
        );
        // A per-channel tensor [C] as [1, C, 1, ..], to broadcast against x.
        let mut per_channel = vec![1; x.rank()];
        per_channel[1] = c;
        let bc = |t: &Tensor| t.reshape(per_channel.clone());
        let eps = self.options.eps;
        if let (Some((mean, var)), false) = (self.running_stats(), self.training()) {
            // Evaluation: one scale and one shift per channel, `y = x scale + shift`, as
            // PyTorch's kernels compute it (it also keeps what fuses into a preceding
            // convolution's kernel small).
            let mut scale = var.add_scalar(eps).rsqrt();
            if let Some(w) = &self.weight {
                scale = scale.mul(w);
            }
            let mut shift = mean.mul(&scale).neg();
            if let Some(b) = &self.bias {
                shift = shift.add(b);
            }
            return x.mul(&bc(&scale)).add(&bc(&shift));
        }
        // Training (or no running statistics): the batch's own statistics.
        let axes: Vec<usize> = (0..x.rank()).filter(|&d| d != 1).collect();
        let n = x.numel() / c.max(1);
        let gather = self
            .gather
            .lock()
            .unwrap()
            .clone()
            .filter(|_| self.training());
        assert!(
            n > 1 || !self.training() || (gather.is_some() && n == 1),
            "{op}: expects more than one value per channel when training, got {}",
            x.shape()
        );
        let stats = match &gather {
            Some(gather) => gathered_statistics(x, &axes, gather),
            None => {
                let mean = x.mean_axes_keepdim(&axes);
                let centered = x.sub(&mean);
                let var = centered.square().mean_axes_keepdim(&axes);
                let unbiased = var.reshape([c]).mul_scalar(n as f64 / (n as f64 - 1.0));
                BatchStatistics {
                    mean,
                    var,
                    unbiased,
                    centered,
                }
            }
        };
        if self.training() {
            self.record_running_stats(&stats.mean.reshape([c]), &stats.unbiased);
        }
        let y = stats.centered.mul(&stats.var.add_scalar(eps).rsqrt());
        match (&self.weight, &self.bias) {
            (Some(w), Some(b)) => y.mul(&bc(w)).add(&bc(b)),
            _ => y,
        }
    }

    /// Records the running statistics' new values after a batch with per-channel `mean` and
    /// `unbiased` variance: `running = (1 - m) running + m batch`; `num_batches_tracked + 1`.
    fn record_running_stats(&self, mean: &Tensor, unbiased: &Tensor) {
        let (Some(rm), Some(rv), Some(nbt)) = (
            &self.running_mean,
            &self.running_var,
            &self.num_batches_tracked,
        ) else {
            return;
        };
        no_grad(|| {
            let batches = updated_value(nbt).add_scalar(1.0);
            let blend = |old: &Tensor, new: &Tensor| match self.options.momentum {
                Some(m) => old.mul_scalar(1.0 - m).add(&new.mul_scalar(m)),
                None => {
                    let f = batches.cast(DType::F32).recip();
                    old.mul(&f.neg().add_scalar(1.0)).add(&new.mul(&f))
                }
            };
            record_update(rm, blend(&updated_value(rm), mean));
            record_update(rv, blend(&updated_value(rv), unbiased));
            record_update(nbt, batches);
        })
    }
}

impl Module for BatchNorm {
    /// `[N, C, ..] -> [N, C, ..]`.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.normalize("BatchNorm", x)
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        layers::batch_norm(self, g, x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = vec![];
        if let (Some(w), Some(b)) = (&self.weight, &self.bias) {
            v.push(("weight".to_string(), w.clone()));
            v.push(("bias".to_string(), b.clone()));
        }
        v
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let mut v = vec![];
        if let (Some(m), Some(var), Some(n)) = (
            &self.running_mean,
            &self.running_var,
            &self.num_batches_tracked,
        ) {
            v.push(("running_mean".to_string(), m.clone()));
            v.push(("running_var".to_string(), var.clone()));
            v.push(("num_batches_tracked".to_string(), n.clone()));
        }
        v
    }
    fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed)
    }
    fn is_training(&self) -> Option<bool> {
        Some(self.training())
    }
    fn as_batch_norm(&self) -> Option<&BatchNorm> {
        Some(self)
    }
}

/// Batch normalisation of `[N, C, H, W]` feature maps, per channel over N, H and W (PyTorch's
/// `BatchNorm2d`). See [`BatchNorm`] for the modes.
///
/// ```
/// # use kiln_core::{Device, Tensor, nn::{BatchNorm2d, Module, ParamBuilder}};
/// let bn = BatchNorm2d::new(3, &ParamBuilder::new(&Device::cpu(), 0).pp("bn1"));
/// let y = bn.forward(&Tensor::randn([4, 3, 5, 5], 0, &Device::cpu()));
/// assert_eq!(y.dims(), &[4, 3, 5, 5]);
/// assert_eq!(bn.state_dict().len(), 5); // weight, bias, running_mean, running_var, num_batches_tracked
/// ```
pub struct BatchNorm2d(pub BatchNorm);

impl BatchNorm2d {
    /// PyTorch's defaults (eps 1e-5, momentum 0.1, affine, running statistics); the tensors
    /// under `pb`'s prefix.
    pub fn new(channels: usize, pb: &ParamBuilder) -> BatchNorm2d {
        BatchNorm2d(BatchNorm::new(channels, BatchNormOptions::default(), pb))
    }
    /// Any options.
    pub fn with(channels: usize, options: BatchNormOptions, pb: &ParamBuilder) -> BatchNorm2d {
        BatchNorm2d(BatchNorm::new(channels, options, pb))
    }
}

/// Batch normalisation of `[N, C]` features or `[N, C, L]` sequences, per channel over N (and L)
/// (PyTorch's `BatchNorm1d`). See [`BatchNorm`] for the modes.
pub struct BatchNorm1d(pub BatchNorm);

impl BatchNorm1d {
    /// PyTorch's defaults (eps 1e-5, momentum 0.1, affine, running statistics); the tensors
    /// under `pb`'s prefix.
    pub fn new(channels: usize, pb: &ParamBuilder) -> BatchNorm1d {
        BatchNorm1d(BatchNorm::new(channels, BatchNormOptions::default(), pb))
    }
    /// Any options.
    pub fn with(channels: usize, options: BatchNormOptions, pb: &ParamBuilder) -> BatchNorm1d {
        BatchNorm1d(BatchNorm::new(channels, options, pb))
    }
}

impl std::ops::Deref for BatchNorm2d {
    type Target = BatchNorm;
    fn deref(&self) -> &BatchNorm {
        &self.0
    }
}

impl std::ops::Deref for BatchNorm1d {
    type Target = BatchNorm;
    fn deref(&self) -> &BatchNorm {
        &self.0
    }
}

impl Module for BatchNorm2d {
    /// `[N, C, H, W] -> [N, C, H, W]`.
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        assert!(
            x.rank() == 4,
            "BatchNorm2d: expects [N, C, H, W], got {}",
            x.shape()
        );
        self.0.normalize("BatchNorm2d", x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.0.named_parameters()
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        self.0.named_buffers()
    }
    fn set_training(&self, training: bool) {
        self.0.set_training(training)
    }
    fn is_training(&self) -> Option<bool> {
        self.0.is_training()
    }
    fn as_batch_norm(&self) -> Option<&BatchNorm> {
        Some(&self.0)
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        layers::batch_norm(&self.0, g, x)
    }
}

impl Module for BatchNorm1d {
    /// `[N, C] -> [N, C]` or `[N, C, L] -> [N, C, L]`.
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        assert!(
            x.rank() == 2 || x.rank() == 3,
            "BatchNorm1d: expects [N, C] or [N, C, L], got {}",
            x.shape()
        );
        self.0.normalize("BatchNorm1d", x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.0.named_parameters()
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        self.0.named_buffers()
    }
    fn set_training(&self, training: bool) {
        self.0.set_training(training)
    }
    fn is_training(&self) -> Option<bool> {
        self.0.is_training()
    }
    fn as_batch_norm(&self) -> Option<&BatchNorm> {
        Some(&self.0)
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        layers::batch_norm(&self.0, g, x)
    }
}
