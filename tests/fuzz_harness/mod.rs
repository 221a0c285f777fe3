//! What each fuzz target does with one input, shared by the stable property tests
//! (`tests/fuzz_inputs.rs`) and the `cargo fuzz` targets (`fuzz/fuzz_targets/*.rs`). Each function
//! must return (`Ok` or `Err`) for every input: a panic, a hang or an allocation past the input's
//! bound is a bug.

use kiln::checkpoint;
use kiln::classify::{classifier_from_checkpoint, ImageInput};
use kiln::data::idx::read_idx_from;
use kiln::nn::ParamBuilder;
use kiln::optim::{Adam, Optimizer, Sgd};
use kiln::{Device, Result};
use std::path::Path;

/// The most data an IDX input may declare here: 16 MiB (the reader's limit is the caller's).
pub const IDX_LIMIT: usize = 16 << 20;

/// The IDX reader on `data` (raw or gzip): `Ok` only with exactly the declared elements.
pub fn idx(data: &[u8]) -> Result<()> {
    let array = read_idx_from(data, IDX_LIMIT)?;
    let declared: usize = array.dims.iter().product();
    assert_eq!(array.data.len(), declared, "dims {:?}", array.dims);
    assert!(declared <= IDX_LIMIT);
    Ok(())
}

/// The checkpoint loader on `data`: every tensor read back; kiln's metadata made into the
/// classifier it describes (an error if the file names a model and that fails); the
/// `optimizer.*` tensors loaded into an Adam and an SGD optimiser of that model (or of a
/// LeNet-5).
pub fn checkpoint(data: &[u8]) -> Result<()> {
    let dev = Device::cpu();
    let ck = checkpoint::load_bytes(data, &dev)?;
    for (_, t) in &ck.tensors {
        let bytes = t.to_bytes()?;
        assert_eq!(bytes.len(), t.numel() * t.dtype().size_bytes());
    }
    // A file with kiln's metadata must make its classifier; any other file's optimiser state
    // goes into a LeNet-5's optimisers.
    let (model, classifier) = match classifier_from_checkpoint(None, &ck, Path::new("fuzz"), &dev) {
        Ok(net) => (net.model, Ok(())),
        Err(e) => {
            let lenet5 = kiln::models::by_name("lenet5", 1, 10, &ParamBuilder::new(&dev, 0))?;
            (
                lenet5 as Box<dyn kiln::nn::Module>,
                if ck.meta("model").is_some() {
                    Err(e)
                } else {
                    Ok(())
                },
            )
        }
    };
    let state: Vec<_> = ck
        .tensors
        .iter()
        .filter_map(|(n, t)| Some((n.strip_prefix("optimizer.")?.to_string(), t.clone())))
        .collect();
    let params = model.parameters();
    let mut adam = Adam::new(params.clone(), 1e-3);
    let adam_loaded = adam.load_state(&state);
    let mut sgd = Sgd::new(params, 0.1).with_momentum(0.9, false);
    let sgd_loaded = sgd.load_state(&state);
    classifier.and(adam_loaded).and(sgd_loaded)
}

/// The sizes [`image_input`] asks for, picked by the input's first byte: the usual, the
/// smallest, RGB, and two past `MAX_INPUT_SIDE` that must be refused before decoding.
const SIZES: [(usize, [usize; 2]); 5] = [
    (1, [28, 28]),
    (1, [1, 1]),
    (3, [32, 32]),
    (1, [4097, 28]),
    (3, [100_000, 100_000]),
];

/// The image input path of `kiln::classify` on `data` (the first byte picks the input size,
/// the rest is the image file): decoded, resized, made into a batch on the CPU.
pub fn image_input(data: &[u8]) -> Result<()> {
    let Some((&pick, file)) = data.split_first() else {
        return Ok(());
    };
    let (channels, size) = SIZES[pick as usize % SIZES.len()];
    let input = ImageInput::new(channels, size);
    let pixels = input.decode(file)?;
    assert_eq!(pixels.len(), channels * size[0] * size[1]);
    let x = input.tensor(&[pixels], &Device::cpu())?;
    assert_eq!(x.dims(), &[1, channels, size[0], size[1]]);
    Ok(())
}
