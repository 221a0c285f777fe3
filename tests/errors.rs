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
    assert!(panic_of(|| drop(a.sum_axes(&[2], false)))
        .0
        .contains("axes"));
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
