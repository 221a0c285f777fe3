//! [`ImageFolder`]: a folder of pictures, one sub-folder per class, as a data set (the layout
//! of torchvision's `ImageFolder`).
//!
//! ```no_run
//! use kiln_data::{FolderOptions, ImageFolder};
//! # fn main() -> kiln_core::Result<()> {
//! // photos/train/<class>/*.jpg and photos/val/<class>/*.jpg, or photos/<class>/*.jpg split here
//! let photos = ImageFolder::open_with("photos", FolderOptions::new().image_size(64, 64).val_split(0.1))?;
//! println!("classes: {:?}", photos.classes());
//! for epoch in 0..3 {
//!     for (x, y) in photos.train().shuffled(epoch).batches(32) {
//!         // x: f32 [32, 3, 64, 64] in [0, 1]; y: i32 [32], indices into classes()
//!     }
//! }
//! eprintln!("{} files skipped", photos.skipped());
//! # Ok(()) }
//! ```

mod classes;
mod decode;
mod loader;
mod open;
mod scan;
mod set;

pub use classes::{class_list_path, read_class_list, write_class_list};
pub use loader::ImageBatches;
pub use set::ImageSet;

use crate::pixels::Image;
use scan::Sample;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// How an [`ImageFolder`] reads its files; built like
/// `FolderOptions::new().image_size(64, 64).val_split(0.1).threads(4)`.
#[derive(Clone, Debug)]
pub struct FolderOptions {
    pub(crate) image_size: [usize; 2],
    pub(crate) channels: usize,
    pub(crate) val_split: Option<f64>,
    pub(crate) seed: u64,
    pub(crate) strict: bool,
    pub(crate) threads: usize,
    pub(crate) prefetch_batches: usize,
    pub(crate) cache: bool,
    pub(crate) max_side: u32,
}

impl Default for FolderOptions {
    fn default() -> Self {
        FolderOptions {
            image_size: [64, 64],
            channels: 3,
            val_split: None,
            seed: 0,
            strict: false,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            prefetch_batches: 2,
            cache: false,
            max_side: 16384,
        }
    }
}

impl FolderOptions {
    /// The defaults: 64x64 RGB images, no validation split, seed 0, not strict, one decode
    /// thread per core, two batches decoded ahead, no cache, files of at most 16384 pixels a side.
    pub fn new() -> Self {
        Self::default()
    }
    /// Every image comes out `height x width` (after the CPU transforms, if any; without
    /// them, each picture is scaled to this size). Panics on 0.
    #[track_caller]
    pub fn image_size(mut self, height: usize, width: usize) -> Self {
        assert!(
            height > 0 && width > 0,
            "FolderOptions::image_size: need at least 1x1"
        );
        self.image_size = [height, width];
        self
    }
    /// 3 (RGB, the default) or 1 (grey): the channel count of the batches, whatever the files
    /// hold. Panics on another count.
    #[track_caller]
    pub fn channels(mut self, channels: usize) -> Self {
        assert!(
            channels == 1 || channels == 3,
            "FolderOptions::channels: 1 or 3, got {channels}"
        );
        self.channels = channels;
        self
    }
    /// When the folder has no `val/`, this fraction of each class's images (seeded by
    /// [`FolderOptions::seed`]) becomes the validation set. Panics outside [0, 1).
    #[track_caller]
    pub fn val_split(mut self, fraction: f64) -> Self {
        assert!(
            (0.0..1.0).contains(&fraction),
            "FolderOptions::val_split: a fraction in [0, 1), got {fraction}"
        );
        self.val_split = Some(fraction);
        self
    }
    /// The seed of the validation split.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// With `true`, [`ImageFolder::open_with`] decodes every file once and a file that cannot
    /// be decoded is an error naming it; by default it is skipped with one warning line.
    pub fn strict(mut self, yes: bool) -> Self {
        self.strict = yes;
        self
    }
    /// The number of threads that decode and resize images ahead of the consumer (at least 1).
    /// The batches are the same for every count.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }
    /// How many batches the decode threads may hold ready (at least 1; default 2).
    pub fn prefetch_batches(mut self, batches: usize) -> Self {
        self.prefetch_batches = batches.max(1);
        self
    }
    /// With `true`, each file is decoded once and kept in memory at its decoded size (f32), so
    /// later epochs skip the decoding. For small images; large photos take much memory.
    pub fn cache(mut self, yes: bool) -> Self {
        self.cache = yes;
        self
    }
    /// Files declaring more than `pixels` pixels in width or height are refused before they
    /// are decoded (default 16384). Panics on 0.
    #[track_caller]
    pub fn max_side(mut self, pixels: u32) -> Self {
        assert!(pixels > 0, "FolderOptions::max_side: at least 1");
        self.max_side = pixels;
        self
    }
}

/// What the sets, batches and decode threads of one folder share.
#[derive(Debug)]
pub(crate) struct Inner {
    root: PathBuf,
    classes: Vec<String>,
    /// The training samples, then the validation samples.
    samples: Vec<Sample>,
    n_train: usize,
    options: FolderOptions,
    /// Per sample: found undecodable (then skipped without another try).
    bad: Vec<AtomicBool>,
    /// Every file skipped so far (at open and while loading), in the order found.
    skipped: Mutex<Vec<PathBuf>>,
    /// Decoded images, when the options ask for a cache.
    cache: Option<Vec<OnceLock<Arc<Image>>>>,
}

impl Inner {
    /// Records a file that cannot be read (once per file) with one warning line.
    fn skip(&self, path: &Path, why: &dyn std::fmt::Display) {
        eprintln!("kiln: warning: skipping {}: {why}", path.display());
        self.skipped.lock().unwrap().push(path.to_path_buf());
    }
    /// The image of sample `index` as decoded (from the cache when there is one), or none when
    /// it cannot be decoded (warned about and recorded the first time).
    pub(crate) fn load(&self, index: usize) -> Option<Arc<Image>> {
        if self.bad[index].load(Ordering::Relaxed) {
            return None;
        }
        if let Some(image) = self.cache.as_ref().and_then(|c| c[index].get()) {
            return Some(image.clone());
        }
        let sample = &self.samples[index];
        let o = &self.options;
        match decode::decode(&sample.path, o.channels, o.max_side) {
            Ok(image) => {
                let image = Arc::new(image);
                if let Some(cache) = &self.cache {
                    let _ = cache[index].set(image.clone());
                }
                Some(image)
            }
            Err(e) => {
                if !self.bad[index].swap(true, Ordering::Relaxed) {
                    self.skip(&sample.path, &e);
                }
                None
            }
        }
    }
    pub(crate) fn label(&self, index: usize) -> u32 {
        self.samples[index].label
    }
    pub(crate) fn path(&self, index: usize) -> &Path {
        &self.samples[index].path
    }
    pub(crate) fn options(&self) -> &FolderOptions {
        &self.options
    }
}

/// A folder of images as a classification data set. Classes are the sorted names of the class
/// sub-folders; the training images are in `dir/train/<class>/` and the validation images in
/// `dir/val/<class>/`, or, without `train/`, in `dir/<class>/` (with a seeded
/// [`FolderOptions::val_split`]). Files ending in .png, .jpg, .jpeg, .bmp or .webp
/// (case-insensitive) are read; other files are ignored. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct ImageFolder {
    inner: Arc<Inner>,
}

impl ImageFolder {
    /// [`ImageFolder::open_with`] with the default [`FolderOptions`].
    pub fn open(dir: impl AsRef<Path>) -> kiln_core::Result<ImageFolder> {
        Self::open_with(dir, FolderOptions::default())
    }
    /// Finds the classes and files of `dir` and reads every file's header (on the decode
    /// threads). A file that is no image kiln reads, or declares more than
    /// [`FolderOptions::max_side`] pixels a side, is skipped with one warning line naming it
    /// (counted by [`ImageFolder::skipped`]), or is an error in [`FolderOptions::strict`] mode,
    /// where every file is also decoded once. Errors name the folder when it is missing, holds
    /// no class folder or only one, when a class folder holds no readable image, and when
    /// `train/` and `val/` hold different classes (listing the difference).
    pub fn open_with(
        dir: impl AsRef<Path>,
        options: FolderOptions,
    ) -> kiln_core::Result<ImageFolder> {
        let (root, classes, train, val, skipped) = open::open(dir.as_ref(), &options)?;
        let n_train = train.len();
        let samples: Vec<Sample> = train.into_iter().chain(val).collect();
        let n = samples.len();
        let cache = options
            .cache
            .then(|| (0..n).map(|_| OnceLock::new()).collect());
        let inner = Inner {
            root,
            classes,
            n_train,
            samples,
            options,
            bad: (0..n).map(|_| AtomicBool::new(false)).collect(),
            skipped: Mutex::new(skipped),
            cache,
        };
        Ok(ImageFolder {
            inner: Arc::new(inner),
        })
    }
    /// The folder it was opened from.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }
    /// The class names, sorted; a label is an index into this list.
    pub fn classes(&self) -> &[String] {
        &self.inner.classes
    }
    /// The training images, in file order (class by class, each sorted by name).
    pub fn train(&self) -> ImageSet {
        ImageSet::new(self.inner.clone(), 0..self.inner.n_train)
    }
    /// The validation images (from `val/` or the split), in file order; empty when there is
    /// neither.
    pub fn val(&self) -> ImageSet {
        ImageSet::new(
            self.inner.clone(),
            self.inner.n_train..self.inner.samples.len(),
        )
    }
    /// How many files were skipped so far: at open, and while loading (a file whose header
    /// reads but whose pixels do not, e.g. a truncated JPEG, is found when first decoded).
    pub fn skipped(&self) -> usize {
        self.inner.skipped.lock().unwrap().len()
    }
    /// The files skipped so far, in the order they were found.
    pub fn skipped_files(&self) -> Vec<PathBuf> {
        self.inner.skipped.lock().unwrap().clone()
    }
    /// Writes the class list beside `checkpoint` (see [`write_class_list`]) and returns its path.
    pub fn write_classes(&self, checkpoint: impl AsRef<Path>) -> kiln_core::Result<PathBuf> {
        write_class_list(checkpoint, self.classes())
    }
}
