//! Deferred updates of module buffers. A training-mode forward pass changes state that is not a
//! parameter (BatchNorm's running statistics), but tensors are lazy: the forward only *records*
//! the new values as graph nodes. They wait here, per thread, as `(buffer, new value)` pairs,
//! until an optimiser step realizes them in the same plan and submission as the parameter
//! updates (see `optim::commit`), or [`realize_pending_updates`] does without one. Then each
//! buffer takes its new values in place, as parameters do: the module keeps its tensor handle.
//!
//! A second forward before that builds on the pending value ([`updated_value`]), so two
//! training-mode passes update the statistics twice, as in PyTorch.

use crate::device::Device;
use crate::error::Result;
use crate::tensor::Tensor;
use std::cell::RefCell;

thread_local! {
    static PENDING: RefCell<Vec<(Tensor, Tensor)>> = const { RefCell::new(Vec::new()) };
}

/// Records that buffer `dest` (a realized leaf a module holds) is to take `value` (same shape
/// and dtype, a lazy graph) when the pending updates are next realized. Replaces an earlier
/// pending value of `dest`; build `value` from [`updated_value`] to chain on it.
#[track_caller]
pub fn record_update(dest: &Tensor, value: Tensor) {
    assert!(
        dest.dims() == value.dims() && dest.dtype() == value.dtype(),
        "record_update: the buffer is {} {} but the new value is {} {}",
        dest.dtype(),
        dest.shape(),
        value.dtype(),
        value.shape()
    );
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        match p.iter_mut().find(|(d, _)| d.same(dest)) {
            Some(entry) => entry.1 = value,
            None => p.push((dest.clone(), value)),
        }
    })
}

/// The value `dest` will hold once the pending updates are realized: its last recorded update on
/// this thread, or `dest` itself when none is pending.
pub fn updated_value(dest: &Tensor) -> Tensor {
    PENDING.with(|p| {
        p.borrow()
            .iter()
            .find(|(d, _)| d.same(dest))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| dest.clone())
    })
}

/// Drops the pending update of `dest`, if any (its values are being replaced outright).
pub(crate) fn forget_pending(dest: &Tensor) {
    PENDING.with(|p| p.borrow_mut().retain(|(d, _)| !d.same(dest)))
}

/// Number of buffer updates recorded on this thread and not yet realized.
pub fn pending_updates() -> usize {
    PENDING.with(|p| p.borrow().len())
}

/// The values this thread's pending buffer updates on `device` will take (lazy tensors, in the
/// order they were first recorded). A training step realized in two parts (a data-parallel
/// step, before and after its all-reduce) computes them with the first part, from the forward
/// pass it is computing anyway; otherwise the update's plan would compute the forward pass again
/// to get a batch norm's statistics.
pub fn pending_values(device: &Device) -> Vec<Tensor> {
    PENDING.with(|p| {
        p.borrow()
            .iter()
            .filter(|(d, _)| d.device().same(device))
            .map(|(_, v)| v.clone())
            .collect()
    })
}

/// Removes and returns this thread's pending updates of buffers on `device`, in the order they
/// were first recorded (a fixed order, so that a training step's plan signature repeats).
pub(crate) fn take_pending(device: &Device) -> Vec<(Tensor, Tensor)> {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let (mine, rest): (Vec<_>, Vec<_>) =
            p.drain(..).partition(|(d, _)| d.device().same(device));
        *p = rest;
        mine
    })
}

/// Puts updates taken by [`take_pending`] back (after a failed realize), first in the list.
pub(crate) fn restore_pending(updates: Vec<(Tensor, Tensor)>) {
    PENDING.with(|p| {
        p.borrow_mut().splice(0..0, updates);
    })
}

/// Realizes every pending buffer update of this thread (one plan and one submission per device)
/// and moves the new values into the buffers. For training-mode forward passes without an
/// optimiser step (an optimiser's step does this itself, together with its update). On error
/// the updates stay pending.
pub fn realize_pending_updates() -> Result<()> {
    loop {
        let device = PENDING.with(|p| p.borrow().first().map(|(d, _)| d.device().clone()));
        let Some(device) = device else {
            return Ok(());
        };
        let updates = take_pending(&device);
        let values: Vec<&Tensor> = updates
            .iter()
            .map(|(_, v)| v)
            .filter(|v| !v.is_realized())
            .collect();
        if let Err(e) = Tensor::realize_all(&values) {
            restore_pending(updates);
            return Err(e);
        }
        for (dest, value) in &updates {
            dest.set_storage(value.storage().expect("realized"));
        }
    }
}
