//! Lists every adapter wgpu sees, with its backend, type, the limits kiln uses and the kernel
//! family it gets, and says which one `Device::default()` picks.
//!
//! `cargo run --example devices`

use kiln::prelude::*;

fn main() {
    let adapters = kiln::wgpu_backend::list_adapters();
    if adapters.is_empty() {
        println!("no wgpu adapter: {}", kiln::wgpu_backend::INSTALL_HINT);
    }
    for (i, a) in adapters.iter().enumerate() {
        println!("[{i}] {}", a.name);
        println!(
            "    backend {}, type {:?}, driver {}",
            a.backend, a.kind, a.driver
        );
        println!(
            "    max storage binding {} MiB, max buffer {} MiB, {} storage buffers per stage",
            a.max_storage_binding_bytes >> 20,
            a.max_buffer_bytes >> 20,
            a.max_storage_buffers_per_stage
        );
        println!(
            "    {} workgroups per dimension, {} invocations per workgroup, {} KiB workgroup memory",
            a.max_workgroups_per_dimension,
            a.max_invocations_per_workgroup,
            a.max_workgroup_storage_bytes >> 10
        );
        println!(
            "    shader f16: {}, timestamps: {}, subgroups: {}",
            a.shader_f16, a.timestamps, a.subgroups
        );
        println!(
            "    kernel family: {} by default (KILN_KERNELS=gpu|software overrides it)",
            kiln::KernelFamily::for_kind(a.kind)
        );
    }
    match Device::default() {
        Ok(dev) => match dev.kernel_family() {
            Some(family) => println!(
                "Device::default() -> {} with the {family} kernel family",
                dev.name()
            ),
            None => println!("Device::default() -> {}", dev.name()),
        },
        Err(e) => println!("Device::default() failed: {e}"),
    }
}
