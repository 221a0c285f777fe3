//! `KILN_PROFILE=1`: a table of the GPU kernels a run executed, printed when it ends.
//!
//! ```no_run
//! # use kiln::prelude::*;
//! # fn main() -> kiln::Result<()> {
//! let dev = Device::default()?;
//! // Profiling on if KILN_PROFILE=1; the table is printed and runs/demo/profile.json written
//! // when `_profile` is dropped (or by `_profile.finish()`).
//! let _profile = kiln::profile::from_env(&dev, "runs/demo");
//! // ... train ...
//! # Ok(()) }
//! ```
//!
//! While profiling, every kernel of every realize is timed with GPU timestamp queries (each in a
//! compute pass of its own, which costs a little), and the times add up per kernel: calls, total
//! and mean GPU time, FLOP and bytes per call, achieved GFLOP/s and GB/s, share of the kernels'
//! time ([`kiln_core::Profile`]). Devices without timestamp queries (and the CPU reference
//! executor) cannot be profiled: the guard says so once and does nothing.

use kiln_core::{Device, KilnError, Profile, Result};
use std::path::{Path, PathBuf};

/// True if the environment asks for a profile (`KILN_PROFILE` set to anything but `0` or empty).
pub fn requested() -> bool {
    std::env::var("KILN_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Takes the profile accumulated on `dev`, prints it as a table on stdout and, with a `dir`,
/// writes it there as `profile.json` (creating the directory). `Ok(None)` if the device cannot
/// time kernels.
pub fn report(dev: &Device, dir: Option<&Path>) -> Result<Option<Profile>> {
    let Some(profile) = dev.take_profile() else {
        return Ok(None);
    };
    println!("{profile}");
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|e| KilnError::Io {
            msg: format!("{}: cannot create the directory: {e}", dir.display()),
            source: e,
        })?;
        let path = dir.join("profile.json");
        std::fs::write(&path, profile.to_json()).map_err(|e| KilnError::Io {
            msg: format!("{}: cannot write: {e}", path.display()),
            source: e,
        })?;
        println!("profile: {}", path.display());
    }
    Ok(Some(profile))
}

/// Profiling for the life of a run: made by [`from_env`]; reports when dropped or finished.
pub struct ProfileGuard {
    device: Device,
    dir: PathBuf,
    active: bool,
}

/// Turns profiling on for `dev` if `KILN_PROFILE=1` ([`requested`]); the returned guard prints the
/// table and writes `profile.json` into `dir` when dropped (or by [`ProfileGuard::finish`]). When
/// profiling is not requested the guard does nothing; when the device cannot time kernels it says
/// so on stderr and does nothing.
pub fn from_env(dev: &Device, dir: impl Into<PathBuf>) -> ProfileGuard {
    let mut active = false;
    if requested() {
        active = dev.set_profiling(true);
        if !active {
            eprintln!(
                "kiln: KILN_PROFILE is set but {} has no GPU timestamp queries; no profile",
                dev.name()
            );
        }
    }
    ProfileGuard {
        device: dev.clone(),
        dir: dir.into(),
        active,
    }
}

impl ProfileGuard {
    /// True if kernels are being timed.
    pub fn is_active(&self) -> bool {
        self.active
    }
    /// Stops profiling, prints the table and writes `profile.json`; `Ok(None)` when inactive.
    pub fn finish(mut self) -> Result<Option<Profile>> {
        self.stop()
    }
    fn stop(&mut self) -> Result<Option<Profile>> {
        if !std::mem::replace(&mut self.active, false) {
            return Ok(None);
        }
        self.device.set_profiling(false);
        report(&self.device, Some(&self.dir))
    }
}

impl Drop for ProfileGuard {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("kiln: profile: {e}");
        }
    }
}
