//! Support for the fuzz and bounded-input tests: an allocator that meters each thread's live
//! bytes, a seeded RNG, and a mutator of byte strings.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The allocator of this test binary: the system's, counting the bytes live on each thread and
/// their peak, so that a case's allocations can be bounded.
pub struct Metered;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: a thread being torn down has no counters left; its frees are not counted.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Metered {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Metered = Metered;

/// Runs `f` and returns its result with the most bytes it had allocated at once on this thread
/// (beyond what was live before).
pub fn metered<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(|l| l.get());
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, (PEAK.with(|p| p.get()) - base).max(0) as usize)
}

/// SplitMix64: a small seeded generator, so every run sees the same cases.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Applies 1 to 4 random mutations to `input`; `hot` bytes at the start (a header) get most of
/// them.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, hot: usize) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        let span = if rng.below(5) < 4 { hot.min(len) } else { len };
        let at = rng.below(span);
        match rng.below(9) {
            0 if len > 0 => input[at] ^= 1 << rng.below(8),
            1 if len > 0 => input[at] = *rng.pick(&[0, 1, 0x7f, 0x80, 0xff]),
            2 => input.truncate(rng.below(len + 1)),
            3 if len >= at + 4 => {
                let v = *rng.pick(&[0, 1, u32::MAX, 0x7fff_ffff, 0x0001_0000, len as u32 + 1]);
                input[at..at + 4].copy_from_slice(&v.to_be_bytes());
            }
            4 if len >= at + 8 => {
                let v = *rng.pick(&[0, u64::MAX, 1 << 40, len as u64 + 1, len as u64 - 7]);
                input[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            5 => {
                let extra: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                input.splice(at..at, extra);
            }
            6 if len > 0 => {
                let end = (at + 1 + rng.below(64)).min(len);
                input.drain(at..end);
            }
            7 if len > 0 => {
                let end = (at + 1 + rng.below(256)).min(len);
                let chunk = input[at..end].to_vec();
                let to = rng.below(len + 1);
                input.splice(to..to, chunk);
            }
            // A number in text (a JSON header) made huge, negative or fractional.
            8 => {
                if let Some(start) = (at..len).find(|&i| input[i].is_ascii_digit()) {
                    let end = (start..len)
                        .find(|&i| !input[i].is_ascii_digit())
                        .unwrap_or(len);
                    let token = *rng.pick(&[
                        "18446744073709551616",
                        "4294967296",
                        "99999999999",
                        "-1",
                        "0",
                        "1e9",
                        "100000x100000",
                        "NaN",
                    ]);
                    input.splice(start..end, token.bytes());
                }
            }
            _ => {}
        }
    }
}
