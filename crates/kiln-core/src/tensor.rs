//! `Tensor`: a cheap handle to one node of the lazy graph. Op methods live in `ops/`, one file per
//! family; this file holds the node itself and the ways to get values out.

use crate::backend::Storage;
use crate::device::Device;
use crate::dtype::{decode_f64, DType, Element};
use crate::error::{KilnError, Result};
use crate::graph::Pending;
use crate::op::Op;
use crate::shape::Shape;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One node of the graph: an op, its inputs, the shape and dtype of its result, and the realized
/// values once computed.
pub struct Node {
    id: u64,
    op: Op,
    inputs: Vec<Tensor>,
    shape: Shape,
    dtype: DType,
    device: Device,
    storage: Mutex<Option<Storage>>,
    requires_grad: AtomicBool,
    /// Recorded inside [`no_grad`]: `backward` does not reach through it.
    grad_stopped: bool,
}

impl Drop for Node {
    /// Drops the inputs that only this node holds one by one from an explicit stack: dropping the
    /// last handle of a chain of a million unrealized ops must not recurse a million deep.
    fn drop(&mut self) {
        let mut stack = std::mem::take(&mut self.inputs);
        while let Some(t) = stack.pop() {
            if let Some(mut node) = Arc::into_inner(t.0) {
                stack.append(&mut node.inputs);
            }
        }
    }
}

thread_local! {
    static NO_GRAD_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs `f` with gradient tracking off on this thread: tensors created inside do not require
/// gradients, so `backward` does not reach through them (evaluation, optimiser updates).
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            NO_GRAD_DEPTH.with(|d| d.set(d.get() - 1));
        }
    }
    NO_GRAD_DEPTH.with(|d| d.set(d.get() + 1));
    let _restore = Restore;
    f()
}

/// True while [`no_grad`] is running on this thread.
pub fn is_grad_enabled() -> bool {
    NO_GRAD_DEPTH.with(|d| d.get() == 0)
}

/// An n-dimensional array on a device. Cloning is cheap (an `Arc`). Operations record graph
/// nodes and return at once; values are computed when read ([`Tensor::to_vec`], [`Tensor::item`])
/// or when [`Tensor::realize`] is called.
#[derive(Clone)]
pub struct Tensor(Arc<Node>);

impl Tensor {
    /// Records a new node. Used by op methods; the caller has checked the shapes.
    pub(crate) fn from_op(
        op: Op,
        inputs: Vec<Tensor>,
        shape: Shape,
        dtype: DType,
        device: &Device,
    ) -> Tensor {
        let requires_grad =
            is_grad_enabled() && dtype.is_float() && inputs.iter().any(|t| t.requires_grad());
        Tensor(Arc::new(Node {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            op,
            inputs,
            shape,
            dtype,
            device: device.clone(),
            storage: Mutex::new(None),
            requires_grad: AtomicBool::new(requires_grad),
            grad_stopped: !is_grad_enabled(),
        }))
    }
    /// Wraps storage that a backend already holds as a realized leaf.
    pub(crate) fn from_storage(
        storage: Storage,
        shape: Shape,
        dtype: DType,
        device: &Device,
    ) -> Tensor {
        let t = Tensor::from_op(Op::Buffer, vec![], shape, dtype, device);
        t.set_storage(storage);
        t
    }

    /// True if `backward` computes a gradient for this tensor: it was marked with
    /// [`Tensor::set_requires_grad`] (parameters), or was computed from such a tensor outside
    /// [`no_grad`].
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }
    /// True if this node was recorded inside [`no_grad`]: gradients do not flow through it to
    /// its inputs (e.g. the maximum that softmax subtracts).
    pub(crate) fn grad_stopped(&self) -> bool {
        self.0.grad_stopped
    }
    /// Marks this tensor (normally a leaf: a parameter) as one `backward` computes gradients for.
    /// Tensors built from it afterwards track gradients too. Returns `self` for chaining.
    #[track_caller]
    pub fn set_requires_grad(&self, on: bool) -> &Tensor {
        assert!(
            !on || self.dtype().is_float(),
            "set_requires_grad: only float tensors have gradients, got {} {}",
            self.dtype(),
            self.shape()
        );
        self.0.requires_grad.store(on, Ordering::Relaxed);
        self
    }

    /// A process-unique id of this node.
    pub fn id(&self) -> u64 {
        self.0.id
    }
    /// The op that produces this tensor.
    pub fn op(&self) -> &Op {
        &self.0.op
    }
    /// The op's inputs.
    pub fn inputs(&self) -> &[Tensor] {
        &self.0.inputs
    }
    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.0.shape
    }
    /// The dimensions, as a slice.
    pub fn dims(&self) -> &[usize] {
        &self.0.shape.0
    }
    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.shape.rank()
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.0.shape.numel()
    }
    /// The element type.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    /// The device the tensor lives on.
    pub fn device(&self) -> &Device {
        &self.0.device
    }
    /// The realized values, if computed (backends read their inputs with this).
    #[doc(hidden)]
    pub fn storage(&self) -> Option<Storage> {
        self.0.storage.lock().unwrap().clone()
    }
    /// True once the values are computed.
    pub fn is_realized(&self) -> bool {
        self.0.storage.lock().unwrap().is_some()
    }
    /// Stores computed values on this node (backends call this).
    #[doc(hidden)]
    pub fn set_storage(&self, storage: Storage) {
        *self.0.storage.lock().unwrap() = Some(storage);
    }
    /// Drops the computed values: the node is lazy again (host-call stages' intermediates).
    pub(crate) fn forget_storage(&self) {
        *self.0.storage.lock().unwrap() = None;
    }
    /// True if both handles are the same node.
    pub fn same(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// A leaf holding this tensor's values, with no graph behind it: later graphs that use it do
    /// not keep this tensor's inputs (and their buffers) alive. Realizes the tensor first if
    /// needed.
    pub fn detach(&self) -> Result<Tensor> {
        self.realize()?;
        let storage = self.storage().expect("realized");
        Ok(Tensor::from_storage(
            storage,
            self.shape().clone(),
            self.dtype(),
            self.device(),
        ))
    }

    /// This tensor on `device`: itself if already there; host data not yet uploaded is simply
    /// re-homed (nothing is copied); anything else is computed and copied through the host.
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        if self.device().same(device) {
            return Ok(self.clone());
        }
        let data = match self.op() {
            Op::Data(data) if !self.is_realized() => data.clone(),
            _ => Arc::new(crate::op::HostData {
                bytes: self.to_bytes()?,
            }),
        };
        let t = Tensor::from_op(
            Op::Data(data),
            vec![],
            self.shape().clone(),
            self.dtype(),
            device,
        );
        t.set_requires_grad(self.requires_grad());
        Ok(t)
    }

    /// `a` and `b` on one device, for a binary op: a graph of host data not yet uploaded (a
    /// batch made on the CPU device, and views or arithmetic of it) follows the other tensor's
    /// device, so that it can meet GPU parameters. Panics, naming `op`, when both are bound to
    /// their devices (realized values or computed results on each).
    #[track_caller]
    pub(crate) fn same_device(op: &str, a: &Tensor, b: &Tensor) -> (Tensor, Tensor) {
        if a.device().same(b.device()) {
            return (a.clone(), b.clone());
        }
        // Both movable (a host batch meeting a GPU constant): the one on the CPU device moves.
        let on_cpu = |t: &Tensor| t.device().kind() == crate::backend::DeviceKind::Cpu;
        let (move_a, move_b) = (a.is_host_graph(), b.is_host_graph());
        if move_b && !(move_a && on_cpu(a) && !on_cpu(b)) {
            (a.clone(), b.rehome(a.device()))
        } else if move_a {
            (a.rehome(b.device()), b.clone())
        } else {
            panic!(
                "{op}: tensors are on different devices ({} and {}); move one with .to_device()",
                a.device().name(),
                b.device().name()
            )
        }
    }

    /// True for an unrealized graph whose leaves are all host data or generators (nothing of it
    /// lives on a device yet). Walks the graph with an explicit stack (deep graphs).
    fn is_host_graph(&self) -> bool {
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![self.clone()];
        while let Some(t) = stack.pop() {
            if !seen.insert(t.id()) {
                continue;
            }
            if t.is_realized() || matches!(t.op(), Op::Buffer) {
                return false;
            }
            stack.extend(t.inputs().iter().cloned());
        }
        true
    }

    /// The same unrealized graph recorded again on `device` (see [`Tensor::is_host_graph`]):
    /// each node once, inputs before users, without recursion.
    fn rehome(&self, device: &Device) -> Tensor {
        let mut copies: std::collections::HashMap<u64, Tensor> = Default::default();
        let mut stack = vec![(self.clone(), false)];
        while let Some((t, expanded)) = stack.pop() {
            if copies.contains_key(&t.id()) {
                continue;
            }
            if !expanded {
                stack.push((t.clone(), true));
                stack.extend(t.inputs().iter().map(|x| (x.clone(), false)));
                continue;
            }
            let inputs = t.inputs().iter().map(|x| copies[&x.id()].clone()).collect();
            let c = Tensor::from_op(t.op().clone(), inputs, t.shape().clone(), t.dtype(), device);
            if t.inputs().is_empty() {
                c.set_requires_grad(t.requires_grad());
            }
            copies.insert(t.id(), c);
        }
        copies.remove(&self.id()).expect("the root was copied")
    }

    /// Computes this tensor's values on its device and keeps them (one submission on a GPU).
    pub fn realize(&self) -> Result<()> {
        Tensor::realize_all(&[self])
    }
    /// Computes several tensors in one plan and one submission.
    pub fn realize_all(tensors: &[&Tensor]) -> Result<()> {
        realize_and_read(tensors, &[]).map(|_| ())
    }
    /// Computes every `value` of `assign` and every tensor of `also` in one plan and one
    /// submission, then gives each `dest` its `value`'s values: `dest` keeps its identity (the
    /// handles a model holds see the new values). Each `dest` must have its `value`'s shape and
    /// dtype. Where nothing else holds `dest`'s storage and the plan reads
    /// `dest` last where `value` is computed, the values are written straight into `dest`'s
    /// buffer (an optimiser's update in place: no second copy of the parameters); otherwise
    /// `dest` gets a new buffer, as with `realize_all` and a move. (Whether something else holds
    /// the storage is decided when the plan is bound: a `detach` of `dest` made on another thread
    /// while this runs may share the buffer being written and see the new values.)
    pub fn realize_assign(assign: &[(&Tensor, &Tensor)], also: &[&Tensor]) -> Result<()> {
        for (dest, value) in assign {
            if dest.shape() != value.shape() || dest.dtype() != value.dtype() {
                return Err(KilnError::InvalidInput {
                    op: "realize_assign",
                    msg: format!(
                        "cannot assign a {} {} to a {} {}: the destination takes values of its own shape and dtype",
                        value.dtype(),
                        value.shape(),
                        dest.dtype(),
                        dest.shape(),
                    ),
                });
            }
        }
        let mut targets: Vec<&Tensor> = assign.iter().map(|(_, v)| *v).collect();
        targets.extend(also.iter().copied());
        targets.retain(|t| !t.is_realized());
        let pairs: Vec<(&Tensor, &Tensor)> = assign.iter().map(|&(d, v)| (v, d)).collect();
        realize_pending(&targets, &[], |p| p.with_updates(&pairs))?;
        for (dest, value) in assign {
            dest.set_storage(value.storage().expect("realized"));
        }
        Ok(())
    }
    /// Computes the tensor if needed and copies its values to the host, row-major.
    /// `T` must match the dtype (`f32`, `half::f16`, `i32`, `u32`, `bool`).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype() {
            return Err(KilnError::WrongElementType {
                requested: T::NAME,
                actual: self.dtype().name().to_string(),
                actual_variant: format!("{:?}", self.dtype()),
            });
        }
        let bytes = self.to_bytes()?;
        let size = self.dtype().size_bytes();
        Ok(bytes
            .chunks_exact(size)
            .map(|b| T::from_f64(decode_f64(self.dtype(), b)))
            .collect())
    }
    /// Like [`Tensor::to_vec`] but converts any dtype to f64 (exactly).
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        let bytes = self.to_bytes()?;
        let size = self.dtype().size_bytes();
        Ok(bytes
            .chunks_exact(size)
            .map(|b| decode_f64(self.dtype(), b))
            .collect())
    }
    /// The single value of a one-element tensor.
    pub fn item<T: Element>(&self) -> Result<T> {
        if self.numel() != 1 {
            return Err(KilnError::NotScalar(self.dims().to_vec()));
        }
        Ok(self.to_vec::<T>()?[0])
    }
    /// The values in little-endian device layout (computing them first if needed).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        if self.numel() == 0 {
            return Ok(vec![]);
        }
        if self.is_realized() {
            return self.device().backend().read(self);
        }
        Ok(realize_and_read(&[self], &[0])?.remove(0))
    }
}

/// Realizes `tensors` together and returns the bytes of those listed in `read`.
fn realize_and_read(tensors: &[&Tensor], read: &[usize]) -> Result<Vec<Vec<u8>>> {
    realize_pending(tensors, read, |p| p)
}

/// Collects the graph behind `tensors`, lets `prepare` add to it, and realizes it, reading back
/// the targets at positions `read`.
fn realize_pending(
    tensors: &[&Tensor],
    read: &[usize],
    prepare: impl FnOnce(Pending) -> Pending,
) -> Result<Vec<Vec<u8>>> {
    let Some(first) = tensors.first() else {
        return Ok(vec![]);
    };
    let device = first.device().clone();
    for t in tensors {
        if !t.device().same(&device) {
            return Err(KilnError::MixedDevices(device.name(), t.device().name()));
        }
    }
    let pending = Pending::collect(tensors);
    let (pending, staged) =
        crate::host_call::resolve_host_calls(pending, tensors, &**device.backend())?;
    let out = device.backend().realize(&prepare(pending), read);
    crate::host_call::forget_stage_values(&staged, tensors);
    out
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({}, {}, {:?}, {})",
            self.shape(),
            self.dtype(),
            self.op().signature_key(),
            if self.is_realized() {
                "realized"
            } else {
                "lazy"
            }
        )
    }
}
