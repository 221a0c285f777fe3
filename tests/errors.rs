//! Bad input gets a clear error: shape mistakes panic when the graph is built, naming the op, the
//! shapes and the caller's line; failures from outside the program return `Result` errors that say
//! what happened and what to do.

mod common;
use common::gpu;
use kiln::prelude::*;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// Runs `f`, which must panic, and returns its message and location ("file:line").
fn panic_of(f: impl FnOnce()) -> (String, String) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let loc = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some((msg, loc)));
        }))
    });
    assert!(
        catch_unwind(AssertUnwindSafe(f)).is_err(),
        "expected a panic"
    );
    LAST_PANIC
        .with(|p| p.borrow_mut().take())
        .expect("panic recorded")
}

#[test]
fn matmul_with_mismatched_inner_dimensions_names_op_shapes_and_line() {
    let dev = Device::cpu();
    let a = Tensor::zeros([2, 3], &dev);
    let b = Tensor::zeros([4, 5], &dev);
    let line = line!() + 1;
    let (msg, loc) = panic_of(|| drop(a.matmul(&b)));
    assert!(
        msg.contains("matmul") && msg.contains("[2, 3]") && msg.contains("[4, 5]"),
        "{msg}"
    );
    assert!(msg.contains('3') && msg.contains('4'), "{msg}");
    assert_eq!(
        loc,
        format!("tests/errors.rs:{line}"),
        "the panic points at the caller's line"
    );
}

#[test]
fn adding_shapes_that_do_not_broadcast_names_op_shapes_and_line() {
    let dev = Device::cpu();
    let a = Tensor::zeros([2, 3], &dev);
    let b = Tensor::zeros([4], &dev);
    let line = line!() + 1;
    let (msg, loc) = panic_of(|| drop(&a + &b));
    assert!(
        msg.contains("add") && msg.contains("[2, 3]") && msg.contains("[4]"),
        "{msg}"
    );
    assert_eq!(loc, format!("tests/errors.rs:{line}"));
}

#[test]
fn other_shape_mistakes_panic_with_the_op_name() {
    let dev = Device::cpu();
    let a = Tensor::zeros([2, 3], &dev);
    assert!(panic_of(|| drop(a.reshape([4, 2]))).0.contains("reshape"));
    assert!(panic_of(|| drop(a.permute(&[0, 0]))).0.contains("permute"));
    assert!(panic_of(|| drop(a.sum_axes(&[2]))).0.contains("axes"));
    assert!(
        panic_of(|| drop(Tensor::cat(&[&a, &Tensor::zeros([2, 4], &dev)], 0)))
            .0
            .contains("cat")
    );
    let i = Tensor::arange_i32(0, 3, 1, &dev);
    assert!(panic_of(|| drop(i.exp())).0.contains("float"));
    assert!(panic_of(|| drop(&a + &i)).0.contains("dtypes"));
}

#[test]
fn from_vec_with_the_wrong_number_of_elements_is_an_error() {
    let err = Tensor::from_vec(vec![1.0f32; 5], [2, 3], &Device::cpu()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            KilnError::DataLength {
                expected: 6,
                got: 5,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("[2, 3]") && msg.contains('5') && msg.contains('6'),
        "{msg}"
    );
}

#[test]
fn reading_with_the_wrong_element_type_is_an_error() {
    let t = Tensor::zeros([3], &gpu());
    let msg = t.to_vec::<i32>().unwrap_err().to_string();
    assert!(msg.contains("f32") && msg.contains("cast"), "{msg}");
    assert!(matches!(t.item::<f32>(), Err(KilnError::NotScalar(_))));
}

#[test]
fn a_tensor_larger_than_the_largest_buffer_is_an_error_naming_it() {
    let dev = gpu();
    let limit = dev.backend().max_buffer_bytes();
    let n = (limit / 4 + 1) as usize;
    let big = Tensor::zeros([n], &dev) + 1.0;
    let err = big.realize().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, KilnError::BufferTooLarge { .. }), "{msg}");
    assert!(
        msg.contains(&format!("[{n}]"))
            && msg.contains(&(n as u64 * 4).to_string())
            && msg.contains(&limit.min(u32::MAX as u64 * 4).to_string()),
        "{msg}"
    );
    // The device still works afterwards.
    assert_eq!(
        (Tensor::ones([2], &dev) * 2.0).to_vec::<f32>().unwrap(),
        vec![2.0, 2.0]
    );
}

#[test]
fn an_adapter_that_does_not_exist_is_an_error_listing_those_that_do() {
    gpu();
    let err = Device::wgpu_by_name("no-such-adapter-xyz").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, KilnError::NoDevice(_)), "{msg}");
    assert!(
        msg.contains("no-such-adapter-xyz") && msg.contains("adapters present"),
        "{msg}"
    );
}

#[test]
fn a_lost_device_is_an_error_that_says_what_to_do() {
    gpu();
    let instance = kiln::wgpu_backend::adapter::instance();
    let adapter = kiln::wgpu_backend::adapter::pick(&instance, None)
        .unwrap()
        .unwrap();
    let backend = std::sync::Arc::new(kiln::wgpu_backend::WgpuBackend::new(&adapter).unwrap());
    let dev = Device::from_backend(backend.clone());
    assert_eq!(
        (Tensor::ones([2], &dev) + 1.0).to_vec::<f32>().unwrap(),
        vec![2.0, 2.0]
    );
    backend.context().device.destroy();
    let _ = backend.context().wait();
    let err = (Tensor::ones([2], &dev) + 1.0).to_vec::<f32>().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, KilnError::DeviceLost(_)), "{msg}");
    assert!(msg.contains("recreate the device"), "{msg}");
}

/// The kind of the first `std::io::Error` in `err`'s source chain, found by walking it as a
/// caller of any error library would (not through `KilnError::io_kind`).
fn io_kind_in_chain(err: &KilnError) -> Option<std::io::ErrorKind> {
    let mut next = std::error::Error::source(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        next = e.source();
    }
    None
}

/// A path under the system's temporary directory that does not exist.
fn missing(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("kiln-errors-{}-missing-{name}", std::process::id()));
    assert!(!p.exists());
    p
}

#[test]
fn a_missing_idx_file_is_an_io_error_whose_source_is_not_found() {
    let path = missing("t10k-images-idx3-ubyte");
    let err = kiln::data::read_idx(&path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, KilnError::Io { .. }), "{err:?}");
    assert_eq!(
        io_kind_in_chain(&err),
        Some(std::io::ErrorKind::NotFound),
        "{msg}"
    );
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
    // The message is what it was: the file, and what went wrong.
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("cannot read"),
        "{msg}"
    );
}

#[test]
fn a_missing_checkpoint_is_an_io_error_whose_source_is_not_found() {
    let path = missing("model.safetensors");
    let err = kiln::checkpoint::load(&path, &Device::cpu()).unwrap_err();
    assert!(matches!(err, KilnError::Io { .. }), "{err:?}");
    assert_eq!(io_kind_in_chain(&err), Some(std::io::ErrorKind::NotFound));
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("cannot read"),
        "{msg}"
    );
}

#[test]
fn a_missing_mnist_directory_is_an_io_error_whose_source_is_not_found() {
    let dir = missing("mnist");
    let err = kiln::data::Mnist::from_dir(&dir).unwrap_err();
    assert!(matches!(err, KilnError::Io { .. }), "{err:?}");
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
    assert!(err.to_string().contains("no such directory"), "{err}");
    // A directory without the files: the first one looked for is not found.
    std::fs::create_dir(&dir).unwrap();
    let err = kiln::data::Mnist::from_dir(&dir).unwrap_err();
    std::fs::remove_dir(&dir).unwrap();
    assert!(matches!(err, KilnError::Io { .. }), "{err:?}");
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
    assert!(err.to_string().contains("train-images-idx3-ubyte"), "{err}");
}

#[test]
fn saving_into_a_missing_directory_is_an_io_error_whose_source_is_not_found() {
    let path = missing("dir").join("model.safetensors");
    let t = Tensor::ones([2], &Device::cpu());
    let err = kiln::checkpoint::save(&path, &[("w".to_string(), t)], &[]).unwrap_err();
    assert!(matches!(err, KilnError::Io { .. }), "{err:?}");
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
}

#[test]
fn a_missing_image_is_an_io_error_whose_source_is_not_found() {
    let path = missing("digit.png");
    let err = kiln::classify::ImageInput::new(1, [28, 28])
        .read(&path)
        .unwrap_err();
    assert!(matches!(err, KilnError::Io { .. }), "{err:?}");
    assert_eq!(io_kind_in_chain(&err), Some(std::io::ErrorKind::NotFound));
}

#[test]
fn a_corrupt_checkpoint_keeps_the_safetensors_error_as_its_source() {
    // A header length of 5 bytes, then 5 bytes that are not JSON.
    let mut bytes = 5u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"nope!");
    let err = kiln::checkpoint::load_bytes(&bytes, &Device::cpu()).unwrap_err();
    assert!(matches!(err, KilnError::Format { .. }), "{err:?}");
    let source = std::error::Error::source(&err).expect("a source");
    assert!(
        source
            .downcast_ref::<safetensors::SafeTensorError>()
            .is_some(),
        "{source:?}"
    );
    assert_eq!(err.io_kind(), None, "not an io error");
    assert!(
        err.to_string()
            .starts_with("checkpoint bytes: not a valid safetensors file"),
        "{err}"
    );
}

#[test]
fn a_corrupt_idx_file_is_a_data_error_without_an_io_source() {
    let err = kiln::data::idx::read_idx_from(&[1u8, 2, 3, 4, 5][..], 1 << 20).unwrap_err();
    assert!(matches!(err, KilnError::Data(_)), "{err:?}");
    assert_eq!(err.io_kind(), None);
}
