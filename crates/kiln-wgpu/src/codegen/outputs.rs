//! The extra outputs of a multi-output kernel (`Kernel::extra`): their bindings and the
//! statements that compute and store them at their segment's element index.

use super::expr::{storage_type, store_conv, unravel, Emitter};
use kiln_core::schedule::Kernel;
use kiln_core::Pending;

/// The binding variable of extra output `k` (0-based).
pub fn var(k: usize) -> String {
    format!("out{}", k + 1)
}

/// The binding variable of output `o` of `kernel` (its root or an extra output).
pub fn binding_of(kernel: &Kernel, o: usize) -> String {
    if o == kernel.root {
        return "out_buf".to_string();
    }
    let k = kernel.extra.iter().position(|&x| x == o);
    var(k.expect("an output of the kernel"))
}

/// Declarations of the extra outputs' bindings, which follow the reads.
pub fn declarations(p: &Pending, kernel: &Kernel, f16: bool) -> String {
    let mut s = String::new();
    for (k, &e) in kernel.extra.iter().enumerate() {
        s.push_str(&format!(
            "@group(0) @binding({}) var<storage, read_write> {}: array<{}>;\n",
            kernel.reads.len() + 1 + k,
            var(k),
            storage_type(p.nodes[e].dtype(), f16)
        ));
    }
    s
}

/// Emits the outputs `outs` of `kernel` (one segment's, in order, the root excluded if
/// present) at linear index `lin` (a WGSL u32 expression of their element) with `em`, after the
/// outputs they use, and returns their store statements.
pub fn stores(
    em: &mut Emitter,
    p: &Pending,
    kernel: &Kernel,
    outs: &[usize],
    lin: &str,
) -> Vec<String> {
    let mut stores = vec![];
    for &e in outs.iter().filter(|&&e| e != kernel.root) {
        let k = kernel
            .extra
            .iter()
            .position(|&x| x == e)
            .expect("an output");
        let node = &p.nodes[e];
        let v = em.output(e, &unravel(lin, node.shape()));
        stores.push(format!(
            "{}[{lin}] = {};",
            var(k),
            store_conv(node.dtype(), &v)
        ));
    }
    stores
}
