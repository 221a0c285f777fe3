//! Probes: running code whose panics are expected and turned into errors (a model's `forward`
//! on a shape it may reject, kiln's own op applied to learn an output shape).
//!
//! A probe's panic is caught and printed by nobody: the panic hook installed here stays silent
//! for it. Other panic hooks (kiln-distributed's, which aborts every rank of an MPI job) check
//! [`is_probing`] so that an expected panic does not end the job.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// True while this thread runs a probe.
    static PROBING: Cell<bool> = const { Cell::new(false) };
}

/// True while the calling thread runs [`catch_probe`]: a panic now is expected.
pub fn is_probing() -> bool {
    PROBING.with(|p| p.get())
}

/// Runs `f`, catching its panic (`Err` with the panic's payload); the panic is not printed.
pub fn catch_probe<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    install_quiet_hook();
    let was = PROBING.with(|p| p.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    PROBING.with(|p| p.set(was));
    result
}

/// The message of a caught panic's payload, if it has one.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
}

/// Installs (once per process) a panic hook that stays silent for probes and hands every other
/// panic to the hook that was there before.
fn install_quiet_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !is_probing() {
                previous(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probes_panic_is_an_error_with_its_message() {
        assert!(!is_probing());
        let caught = catch_probe(|| -> u32 {
            assert!(is_probing());
            panic!("shape [1, 2] does not fit")
        });
        let message = panic_message(&*caught.unwrap_err());
        assert_eq!(message.as_deref(), Some("shape [1, 2] does not fit"));
        assert!(!is_probing(), "the flag is cleared after the probe");
        assert_eq!(catch_probe(|| 7).unwrap(), 7);
    }
}
