//! `WGPU_BACKEND` (issue 15, point 5): an unknown name is an error that lists the accepted
//! names, not a silent fallback to the CPU executor with a warning about a missing driver. One
//! test in its own binary, since it changes the process's environment.

use kiln::prelude::*;
use kiln::wgpu_backend::adapter::{parse_backends, BACKEND_NAMES};
use kiln::wgpu_backend::wgpu;

#[test]
fn an_unknown_wgpu_backend_is_an_error_that_lists_the_accepted_names() {
    // wgpu's own spellings, case-insensitive, in comma lists.
    assert_eq!(parse_backends("Vulkan").unwrap(), wgpu::Backends::VULKAN);
    assert_eq!(
        parse_backends("vk, gl").unwrap(),
        wgpu::Backends::VULKAN | wgpu::Backends::GL
    );
    assert_eq!(parse_backends("d3d12").unwrap(), wgpu::Backends::DX12);
    assert_eq!(parse_backends("mtl").unwrap(), wgpu::Backends::METAL);
    assert!(parse_backends("vulkan,").is_err(), "an empty name");

    std::env::set_var("WGPU_BACKEND", "bogus");
    let msg = match Device::default() {
        Ok(d) => panic!("WGPU_BACKEND=bogus gave a device: {}", d.name()),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains("\"bogus\""), "{msg}");
    for (name, _) in BACKEND_NAMES {
        assert!(msg.contains(name), "{name} missing from: {msg}");
    }
    assert!(Device::wgpu().is_err());

    // A known backend still works (lavapipe is a Vulkan adapter).
    std::env::set_var("WGPU_BACKEND", "VULKAN");
    let dev = Device::default().unwrap();
    assert_ne!(dev.kind(), kiln::DeviceKind::Cpu, "{}", dev.name());
    std::env::remove_var("WGPU_BACKEND");
}
