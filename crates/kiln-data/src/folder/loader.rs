//! The decode threads and [`ImageBatches`]: images decoded, transformed and resized on CPU
//! threads ahead of the consumer, through bounded queues, in an order that does not depend on
//! the number of threads.
//!
//! Worker `t` of `T` prepares the images at positions `t, t + T, t + 2T, ...` of the set's order
//! and sends each (or "skipped") into its own bounded channel; the consumer receives position
//! `p` from channel `p % T`. So the images come in the set's order whatever `T` is, and at most
//! the channels' bound waits decoded at any time.

use super::set::ImageSet;
use super::Inner;
use crate::compose::Compose;
use crate::pixels::Image;
use crate::transform::Transform;
use kiln_core::device::Device;
use kiln_core::dtype::DType;
use kiln_core::tensor::Tensor;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What the decode threads do to each image after decoding it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Prepare {
    /// The transforms each picture passes through first, at its own size.
    pub(crate) pipeline: Option<Compose>,
    /// The stream the pipeline's random draws come from (the set's shuffle seed).
    pub(crate) stream: u64,
    /// Per channel `(mean, std)`: values become `(v - mean) / std`.
    pub(crate) norm: Option<(Vec<f32>, Vec<f32>)>,
}

impl Prepare {
    /// Decodes sample `index` and makes it the batch's image: through the pipeline, resized
    /// to the image size (if it is not that size yet) and normalised. None when the file does
    /// not decode.
    fn run(&self, inner: &Inner, index: usize) -> Option<Image> {
        let decoded = inner.load(index)?;
        let [h, w] = inner.options().image_size;
        let mut image = match &self.pipeline {
            Some(p) => p.apply(&decoded, self.stream, index as u64).resize(h, w),
            None => decoded.resize(h, w),
        };
        if let Some((mean, std)) = &self.norm {
            let plane = h * w;
            for (c, values) in image.data.chunks_mut(plane).enumerate() {
                values.iter_mut().for_each(|v| *v = (*v - mean[c]) / std[c]);
            }
        }
        Some(image)
    }
}

/// The images of a set in its order, prepared on worker threads.
pub(crate) struct Stream {
    inner: Arc<Inner>,
    order: Arc<Vec<u32>>,
    receivers: Vec<Receiver<Option<Image>>>,
    handles: Vec<JoinHandle<()>>,
    next: usize,
}

impl Stream {
    /// Starts the folder's number of threads on `set`, each holding at most `bound` images ready.
    pub(crate) fn start(set: &ImageSet, prepare: Option<Prepare>, bound: usize) -> Stream {
        let inner = set.inner.clone();
        let order = Arc::new(set.order.clone());
        let threads = inner.options().threads.min(order.len()).max(1);
        let mut prepare = prepare.unwrap_or_default();
        prepare.stream = set.stream;
        let prepare = Arc::new(prepare);
        let (mut receivers, mut handles) = (Vec::new(), Vec::new());
        for t in 0..threads {
            let (tx, rx) = sync_channel(bound.max(1));
            let (inner, order, prepare) = (inner.clone(), order.clone(), prepare.clone());
            let handle = std::thread::Builder::new()
                .name(format!("kiln-decode-{t}"))
                .spawn(move || {
                    for p in (t..order.len()).step_by(threads) {
                        let image = prepare.run(&inner, order[p] as usize);
                        if tx.send(image).is_err() {
                            return; // the consumer is gone
                        }
                    }
                })
                .expect("spawn a decode thread");
            receivers.push(rx);
            handles.push(handle);
        }
        Stream {
            inner,
            order,
            receivers,
            handles,
            next: 0,
        }
    }
    /// Images not yet received (some may be skipped).
    fn left(&self) -> usize {
        self.order.len() - self.next
    }
    /// The next readable image and its label, in the set's order; none at the end.
    pub(crate) fn next_image(&mut self) -> Option<(u32, Image)> {
        while self.next < self.order.len() {
            let p = self.next;
            self.next += 1;
            let received = self.receivers[p % self.receivers.len()].recv();
            let image = received.expect("a decode thread panicked");
            if let Some(image) = image {
                return Some((self.inner.label(self.order[p] as usize), image));
            }
        }
        None
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // Closing the channels ends the threads at their next send.
        self.receivers.clear();
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// An iterator of mini-batches `(images, labels)` over an [`ImageSet`], made by
/// [`ImageSet::batches`]: images f32 `[B, channels, height, width]`, labels i32 `[B]`, as
/// [`crate::Batches`] gives them. The decode threads start at the first batch.
pub struct ImageBatches<'a> {
    set: ImageSet,
    batch_size: usize,
    drop_last: bool,
    prepare: Prepare,
    device: Device,
    augment: Option<&'a dyn Transform>,
    stream: Option<Stream>,
}

impl std::fmt::Debug for ImageBatches<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ImageBatches({} images, batch {})",
            self.set.len(),
            self.batch_size
        )
    }
}

impl<'a> ImageBatches<'a> {
    #[track_caller]
    pub(crate) fn new(set: ImageSet, batch_size: usize) -> ImageBatches<'a> {
        assert!(
            batch_size > 0,
            "ImageSet::batches: batch_size must be at least 1"
        );
        ImageBatches {
            set,
            batch_size,
            drop_last: false,
            prepare: Prepare::default(),
            device: Device::cpu(),
            augment: None,
            stream: None,
        }
    }
    /// With `true`, a last batch smaller than the batch size is skipped. Default `false`.
    pub fn drop_last(mut self, yes: bool) -> Self {
        self.drop_last = yes;
        self
    }
    /// Each channel `c` becomes `(v - mean[c]) / std[c]` (values start in [0, 1]); one value
    /// applies to every channel. Measure them with [`ImageSet::mean_std`], or use ImageNet's
    /// `[0.485, 0.456, 0.406]` and `[0.229, 0.224, 0.225]` for pretrained RGB models. Panics
    /// unless there is one value or one per channel, all finite and every std positive.
    #[track_caller]
    pub fn normalize(mut self, mean: &[f32], std: &[f32]) -> Self {
        let c = self.set.inner.options().channels;
        let fit = |v: &[f32]| {
            if v.len() == 1 {
                vec![v[0]; c]
            } else {
                v.to_vec()
            }
        };
        let (mean, std) = (fit(mean), fit(std));
        assert!(
            mean.len() == c && std.len() == c,
            "ImageBatches::normalize: need 1 or {c} values each, got {} and {}",
            mean.len(),
            std.len()
        );
        assert!(
            mean.iter().all(|m| m.is_finite()) && std.iter().all(|s| s.is_finite() && *s > 0.0),
            "ImageBatches::normalize: need finite means and positive stds, got {mean:?} {std:?}"
        );
        self.prepare.norm = Some((mean, std));
        self
    }
    /// Passes every picture through `pipeline` on the decode threads, at its own size, before
    /// it is scaled to the image size (if the pipeline does not end at that size) and
    /// normalised. Its random draws come from its seed, the set's shuffle seed
    /// ([`ImageSet::shuffled`]) and the file's index, so they do not depend on the threads.
    /// Leave the normalisation to [`ImageBatches::normalize`] (the pipeline's own would be
    /// resized after it).
    pub fn cpu_transform(mut self, pipeline: Compose) -> Self {
        self.prepare.pipeline = Some(pipeline);
        self
    }
    /// Makes the batch tensors directly on `device` (default: `Device::cpu()` host data).
    pub fn on(mut self, device: &Device) -> Self {
        self.device = device.clone();
        self
    }
    /// Passes every batch through `augment` on the device, as [`crate::Batches::transform`]
    /// does (e.g. an [`crate::Augment`]). Errors if it does not fit the batches' shape.
    pub fn transform(mut self, augment: &'a dyn Transform) -> kiln_core::Result<Self> {
        let o = self.set.inner.options();
        let dims = [
            self.batch_size,
            o.channels,
            o.image_size[0],
            o.image_size[1],
        ];
        augment.check_batch(&dims, DType::F32)?;
        self.augment = Some(augment);
        Ok(self)
    }
}

impl Iterator for ImageBatches<'_> {
    type Item = (Tensor, Tensor);

    fn next(&mut self) -> Option<(Tensor, Tensor)> {
        let bound = self.batch_size * self.set.inner.options().prefetch_batches;
        let threads = self.set.inner.options().threads;
        let stream = self.stream.get_or_insert_with(|| {
            Stream::start(
                &self.set,
                Some(self.prepare.clone()),
                bound.div_ceil(threads),
            )
        });
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        while labels.len() < self.batch_size {
            let Some((label, image)) = stream.next_image() else {
                break;
            };
            images.extend_from_slice(&image.data);
            labels.push(label as i32);
        }
        let b = labels.len();
        if b == 0 || (self.drop_last && b < self.batch_size) {
            return None;
        }
        let o = self.set.inner.options();
        let dims = [b, o.channels, o.image_size[0], o.image_size[1]];
        let batch = crate::batches::finish_batch(images, dims, labels, &self.device, self.augment);
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.stream.as_ref().map_or(self.set.len(), Stream::left);
        let most = if self.drop_last {
            left / self.batch_size
        } else {
            left.div_ceil(self.batch_size)
        };
        (0, Some(most))
    }
}
