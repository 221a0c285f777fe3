//! Temporary checkpoint files left by a process killed while saving (`kill -9` during
//! `checkpoint::save`) are removed by the next save into their directory; those of live
//! processes are kept.

use kiln::checkpoint::{self, is_stale_temporary};
use kiln::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-stale-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The id of a process that has exited (and been reaped).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// A process that stays alive until killed.
fn live_process() -> Child {
    Command::new("sleep").arg("60").spawn().unwrap()
}

/// A temporary file as `write_atomic` names it, for process `pid`, with some content.
fn temporary(dir: &Path, name: &str, pid: u32) -> PathBuf {
    let path = dir.join(format!(".{name}.{pid}-0.tmp"));
    std::fs::write(&path, b"a complete checkpoint, never renamed").unwrap();
    path
}

fn save(path: &Path) {
    let t = Tensor::from_vec(vec![1.0f32, 2.0], [2], &Device::cpu()).unwrap();
    checkpoint::save(path, &[("t".into(), t)], &[]).unwrap();
}

// Liveness is read from /proc on Linux; elsewhere only files an hour old count as stale.
#[cfg(target_os = "linux")]
#[test]
fn a_save_removes_the_temporary_files_of_dead_processes_and_keeps_live_ones() {
    let dir = temp_dir("save");
    let mut sleeper = live_process();
    let dead = temporary(&dir, "model.safetensors", dead_pid());
    let dead_other = temporary(&dir, "other.safetensors", dead_pid());
    let live = temporary(&dir, "model.safetensors", sleeper.id());
    let mine = temporary(&dir, "model.safetensors", std::process::id());
    // Not kiln's temporary files: never touched.
    let unrelated = [".notes.tmp", ".model.safetensors.tmp", "model.1234-0.tmp"]
        .map(|n| {
            let p = dir.join(n);
            std::fs::write(&p, b"x").unwrap();
            p
        });
    assert!(is_stale_temporary(&dead) && is_stale_temporary(&dead_other));
    assert!(!is_stale_temporary(&live) && !is_stale_temporary(&mine));
    assert!(unrelated.iter().all(|p| !is_stale_temporary(p)));

    save(&dir.join("model.safetensors"));
    assert!(!dead.exists() && !dead_other.exists(), "stale files are removed");
    assert!(live.exists(), "a live process's temporary file is kept");
    assert!(mine.exists(), "this process's own temporary file is kept");
    assert!(unrelated.iter().all(|p| p.exists()));
    let loaded = checkpoint::load(dir.join("model.safetensors"), &Device::cpu()).unwrap();
    assert_eq!(loaded.get("t").unwrap().to_vec::<f32>().unwrap(), [1.0, 2.0]);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    // Its process gone, the file is stale at the next save.
    save(&dir.join("model.safetensors"));
    assert!(!live.exists());
    assert!(mine.exists());
}
