//! Tests of the executor itself: realize, read, storage, counters and exact mode. The op
//! families' values are tested in their own files.

use super::{exact_values, HostStorage, ReferenceBackend};
use crate::{DType, Device, DeviceKind, Tensor};

/// One reference device per test thread: tensors from different `Device::cpu()` calls are on
/// different devices and cannot meet in one op, so test helpers share this one.
/// The shared reference device.
pub(super) fn dev() -> Device {
    thread_local! {
        static DEVICE: Device = Device::cpu();
    }
    DEVICE.with(Device::clone)
}

#[test]
fn names_and_kind() {
    let dev = Device::cpu();
    assert_eq!(dev.name(), "cpu (reference)");
    assert_eq!(dev.kind(), DeviceKind::Cpu);
    assert_eq!(Device::cpu_exact().kind(), DeviceKind::Cpu);
    assert!(ReferenceBackend::exact().is_exact());
    assert!(!ReferenceBackend::default().is_exact());
}

#[test]
fn worked_example_from_the_crate_docs() {
    let dev = Device::cpu();
    let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2], &dev).unwrap();
    let b = (a.matmul(&a) + 1.0).relu().sum_axes(&[1]);
    assert_eq!(b.to_vec::<f32>().unwrap(), vec![19.0, 39.0]);
}

#[test]
fn worked_example_3x3_iota() {
    // x = [[0,1,2],[3,4,5],[6,7,8]]: x + x^T is symmetric, the row sums are [3,12,21], the
    // column maxima [6,7,8], the trace via eye 12.
    let dev = Device::cpu();
    let x = Tensor::from_vec(vec![0., 1., 2., 3., 4., 5., 6., 7., 8.], [3, 3], &dev)
        .unwrap()
        .cast(DType::F32);
    assert_eq!(
        x.add(&x.t()).to_vec::<f32>().unwrap(),
        vec![0., 4., 8., 4., 8., 12., 8., 12., 16.]
    );
    assert_eq!(
        x.sum_axes(&[1]).to_vec::<f32>().unwrap(),
        vec![3., 12., 21.]
    );
    assert_eq!(x.max_axes(&[0]).to_vec::<f32>().unwrap(), vec![6., 7., 8.]);
    assert_eq!(
        x.mul(&Tensor::eye(3, &dev)).sum().item::<f32>().unwrap(),
        12.0
    );
}

#[test]
fn realize_sets_storage_on_targets_and_data_leaves() {
    let dev = Device::cpu();
    let a = Tensor::from_vec(vec![1.0f32, 2.0], [2], &dev).unwrap();
    let mid = a.mul_scalar(3.0);
    let out = mid.add_scalar(1.0);
    out.realize().unwrap();
    assert!(out.is_realized());
    assert!(a.is_realized(), "data leaves keep their upload");
    assert!(!mid.is_realized(), "intermediates are not kept");
    let storage = out.storage().unwrap();
    let host = storage.as_any().downcast_ref::<HostStorage>().unwrap();
    assert_eq!(host.values(), &[4.0, 7.0]);
    assert_eq!(host.dtype(), DType::F32);
    assert_eq!(dev.backend().read(&out).unwrap(), host.to_bytes());
    // A later graph reads the realized nodes as leaves.
    assert_eq!(out.add(&a).to_vec::<f32>().unwrap(), vec![5.0, 9.0]);
}

#[test]
fn realize_all_reads_what_is_asked() {
    let dev = Device::cpu();
    let a = Tensor::arange(0.0, 3.0, 1.0, &dev);
    let b = a.mul_scalar(2.0);
    let c = a.add_scalar(1.0);
    Tensor::realize_all(&[&b, &c]).unwrap();
    assert!(b.is_realized() && c.is_realized());
    assert_eq!(b.to_vec::<f32>().unwrap(), vec![0.0, 2.0, 4.0]);
    assert_eq!(c.to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0]);
}

#[test]
fn reading_an_unrealized_tensor_is_an_error() {
    let dev = Device::cpu();
    let t = Tensor::zeros([2], &dev);
    assert!(dev.backend().read(&t).is_err());
}

#[test]
fn counters_follow_the_work() {
    let dev = Device::from_backend(std::sync::Arc::new(super::ReferenceBackend::new()));
    assert_eq!(dev.stats(), Default::default());
    let a = Tensor::from_vec(vec![1.0f32; 4], [4], &dev).unwrap();
    // Nodes: data, full scalar, reshape to [1], expand, add, target = add.
    let b = a.add_scalar(1.0);
    b.realize().unwrap();
    let s = dev.stats();
    assert_eq!(s.submissions, 1);
    assert_eq!(
        s.dispatches, 4,
        "full, reshape, expand, add (the data leaf is an upload)"
    );
    assert_eq!(s.buffers_allocated, 5);
    assert_eq!(s.bytes_live, 32, "a and b stay, 16 bytes each");
    // a, full, reshape (full freed), expand (reshape freed), add: 16 + 4 + 16 + 16 at most.
    assert_eq!(s.peak_bytes, 48);
    assert_eq!(
        (s.plans_compiled, s.plan_cache_hits, s.pipelines_created),
        (0, 0, 0)
    );
    // Nothing left to do: no submission.
    b.realize().unwrap();
    assert_eq!(b.to_vec::<f32>().unwrap(), vec![2.0; 4]);
    assert_eq!(dev.stats().submissions, 1);
    drop(b);
    assert_eq!(dev.stats().bytes_live, 16);
    drop(a);
    assert_eq!(dev.stats().bytes_live, 0);
}

#[test]
fn exact_mode_keeps_f64_for_floats_only() {
    let exact = Device::cpu_exact();
    let third = Tensor::full([1], 1.0, &exact).div_scalar(3.0);
    assert_eq!(exact_values(&third).unwrap(), vec![1.0 / 3.0]);
    // Bytes read back are still in the dtype's layout.
    assert_eq!(third.to_vec::<f32>().unwrap(), vec![1.0 / 3.0]);
    let h = third.cast(DType::F16);
    assert_eq!(exact_values(&h).unwrap(), vec![1.0 / 3.0]);
    let i = Tensor::full([1], 2.9, &exact).cast(DType::I32);
    assert_eq!(exact_values(&i).unwrap(), vec![2.0]);
    // The rounding device gives the f32 value.
    let rounded = Tensor::full([1], 1.0, &Device::cpu()).div_scalar(3.0);
    assert_eq!(exact_values(&rounded).unwrap(), vec![(1.0f32 / 3.0) as f64]);
}

#[test]
fn zero_element_tensors_work_everywhere() {
    let dev = Device::cpu();
    let e = Tensor::zeros([0, 4], &dev);
    let f = e.exp().add(&Tensor::ones([4], &dev)).relu();
    assert_eq!(f.dims(), &[0, 4]);
    f.realize().unwrap();
    assert!(f.is_realized());
    assert_eq!(f.to_vec::<f32>().unwrap(), Vec::<f32>::new());
    assert_eq!(exact_values(&f).unwrap(), Vec::<f64>::new());
    let s = f.sum_axes(&[0]);
    assert_eq!(s.to_vec::<f32>().unwrap(), vec![0.0; 4]);
    let r = Tensor::rand([0], 1, &dev).cast(DType::I32);
    assert_eq!(r.to_vec::<i32>().unwrap(), Vec::<i32>::new());
}

#[test]
fn foreign_storage_is_an_error_not_a_panic() {
    struct Foreign;
    impl crate::StorageHandle for Foreign {
        fn size_bytes(&self) -> u64 {
            4
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }
    let dev = Device::cpu();
    let t = Tensor::from_storage(
        std::sync::Arc::new(Foreign),
        crate::Shape(vec![1]),
        DType::F32,
        &dev,
    );
    assert!(t.add_scalar(1.0).realize().is_err());
}
