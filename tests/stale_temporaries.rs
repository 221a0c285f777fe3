//! Temporary checkpoint files left by a process killed while saving (`kill -9` during
//! `checkpoint::save`) are removed by the next save into their directory; those of live
//! processes, and those written to within the last minute, are kept.

use kiln::checkpoint::{self, is_stale_temporary};
use kiln::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, SystemTime};

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

/// A file named `name` in `dir` last written `age` ago.
fn file_aged(dir: &Path, name: &str, age: Duration) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, b"a complete checkpoint, never renamed").unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
    path
}

fn save(path: &Path) {
    let t = Tensor::from_vec(vec![1.0f32, 2.0], [2], &Device::cpu()).unwrap();
    checkpoint::save(path, &[("t".into(), t)], &[]).unwrap();
}

const OLD: Duration = Duration::from_secs(120);

// Liveness is read from /proc on Linux; elsewhere only files an hour old count as stale.
#[cfg(target_os = "linux")]
#[test]
fn a_save_removes_the_temporary_files_of_dead_processes_and_keeps_live_ones() {
    let dir = temp_dir("save");
    let me = std::process::id();
    let mut sleeper = live_process();
    let (dead, other_dead) = (dead_pid(), dead_pid());
    let stale = [
        file_aged(
            &dir,
            &format!(".model.safetensors.{dead}-00c0ffee-0.tmp"),
            OLD,
        ),
        file_aged(
            &dir,
            &format!(".other.safetensors.{other_dead}-00c0ffee-3.tmp"),
            OLD,
        ),
        // The older name form, without a nonce.
        file_aged(&dir, &format!(".model.safetensors.{dead}-1.tmp"), OLD),
        // An earlier process with this process's id (a restarted container's often has it).
        file_aged(&dir, &format!(".model.safetensors.{me}-0.tmp"), OLD),
        file_aged(
            &dir,
            &format!(".model.safetensors.{me}-00c0ffee-0.tmp"),
            OLD,
        ),
    ];
    let live = file_aged(
        &dir,
        &format!(".model.safetensors.{}-00c0ffee-0.tmp", sleeper.id()),
        OLD,
    );
    // Written to seconds ago: it may be a writer this process cannot see (another container).
    let recent = file_aged(
        &dir,
        &format!(".model.safetensors.{dead}-00c0ffee-7.tmp"),
        Duration::from_secs(5),
    );
    // Not kiln's temporary files: never touched.
    let unrelated = [
        ".notes.tmp",
        ".model.safetensors.tmp",
        "model.1234-0.tmp",
        ".model.12-x-0.tmp",
    ]
    .map(|n| file_aged(&dir, n, OLD));
    assert!(stale.iter().all(|p| is_stale_temporary(p)));
    assert!(!is_stale_temporary(&live) && !is_stale_temporary(&recent));
    assert!(unrelated.iter().all(|p| !is_stale_temporary(p)));

    save(&dir.join("model.safetensors"));
    for p in &stale {
        assert!(!p.exists(), "{} is stale and removed", p.display());
    }
    assert!(live.exists(), "a live process's temporary file is kept");
    assert!(recent.exists(), "a recently written temporary file is kept");
    assert!(unrelated.iter().all(|p| p.exists()));
    let loaded = checkpoint::load(dir.join("model.safetensors"), &Device::cpu()).unwrap();
    assert_eq!(
        loaded.get("t").unwrap().to_vec::<f32>().unwrap(),
        [1.0, 2.0]
    );
    // The save left no temporary file of its own.
    let own: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!(".model.safetensors.{me}-")))
        .collect();
    assert!(own.is_empty(), "{own:?}");

    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    // Its process gone, the file is stale at the next save.
    save(&dir.join("model.safetensors"));
    assert!(!live.exists());
    assert!(recent.exists());
}
