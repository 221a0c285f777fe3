//! Max pooling with tied maxima against PyTorch: `tests/fixtures/pool_ties.safetensors`, written
//! by `tests/fixtures/make_pool_ties.py` (torch 2.15, CPU), holds inputs of small integers (most
//! windows hold ties), PyTorch's `max_pool2d` / `adaptive_max_pool2d` outputs and the gradients of
//! `sum(output * weights)`. PyTorch gives each window's whole gradient to its first maximum in
//! row-major order of the taps; kiln must give the same gradients, on the reference executor and
//! on the GPU. (`amax`-style reductions keep sharing ties: the last test.)

mod common;
use common::*;
use kiln::checkpoint::{self, Checkpoint};
use kiln::prelude::*;

fn fixture() -> Checkpoint {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pool_ties.safetensors"
    );
    checkpoint::load(path, &Device::cpu()).unwrap_or_else(|e| {
        panic!("{e}\nregenerate it with: python tests/fixtures/make_pool_ties.py")
    })
}

/// `h,w` as a pair.
fn pair(s: &str) -> [usize; 2] {
    let v: Vec<usize> = s.split(',').map(|x| x.parse().unwrap()).collect();
    [v[0], v[1]]
}

/// The pooling of case `name`, from its metadata entry.
fn pool_of(ck: &Checkpoint, name: &str) -> impl Fn(&Tensor) -> Tensor {
    let spec = ck
        .meta(name)
        .unwrap_or_else(|| panic!("no options for {name}"));
    let parts: Vec<String> = spec.split(';').map(String::from).collect();
    move |x: &Tensor| {
        if parts[0] == "adaptive" {
            return x.adaptive_max_pool2d(pair(&parts[1]));
        }
        let mut o = Pool2dOptions::new(1);
        o.kernel = pair(&parts[0]);
        o.stride = pair(&parts[1]);
        o.padding = pair(&parts[2]);
        o.dilation = pair(&parts[3]);
        o.ceil_mode = parts[4] == "1";
        x.max_pool2d(&o)
    }
}

fn cases(ck: &Checkpoint) -> Vec<String> {
    let mut names: Vec<String> = ck
        .tensors
        .iter()
        .filter_map(|(n, _)| n.strip_suffix(".input").map(String::from))
        .collect();
    names.sort();
    names
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

#[test]
fn max_pool_gradients_go_to_the_first_maximum_as_in_pytorch() {
    let ck = fixture();
    let names = cases(&ck);
    assert_eq!(names.len(), 11, "{names:?}");
    for dev in [Device::cpu(), gpu()] {
        for name in &names {
            let get = |t: &str| {
                ck.get(&format!("{name}.{t}"))
                    .unwrap()
                    .to_device(&dev)
                    .unwrap()
            };
            let x = get("input");
            let y = pool_of(&ck, name)(&x);
            let expected = get("output");
            assert_eq!(y.dims(), expected.dims(), "{name} on {}", dev.name());
            assert_eq!(f32s(&y), f32s(&expected), "{name} output on {}", dev.name());
            let grad = y.mul(&get("weights")).sum().grad_wrt(&[&x]).remove(0);
            let (got, want) = (f32s(&grad), f32s(&get("grad")));
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{name} on {}: gradient element {i} is {g}, PyTorch's {w}\n got {got:?}\nwant {want:?}",
                    dev.name()
                );
            }
        }
    }
}

/// The fixture has ties that the old rule (sharing a window's gradient equally) would split:
/// some input gradient is not a sum of whole upstream weights.
#[test]
fn the_fixture_holds_windows_with_ties() {
    let ck = fixture();
    let x = ck.get("k2s2.input").unwrap();
    let v = f32s(x);
    let [n, c, h, w] = [2, 3, 6, 6];
    assert_eq!(x.dims(), &[n, c, h, w]);
    let mut tied = 0;
    for plane in 0..n * c {
        for oy in 0..h / 2 {
            for ox in 0..w / 2 {
                let at = |dy: usize, dx: usize| v[(plane * h + 2 * oy + dy) * w + 2 * ox + dx];
                let taps = [at(0, 0), at(0, 1), at(1, 0), at(1, 1)];
                let m = taps.iter().cloned().fold(f32::MIN, f32::max);
                tied += (taps.iter().filter(|&&t| t == m).count() > 1) as usize;
            }
        }
    }
    assert!(tied >= 10, "only {tied} windows with ties");
}

/// PyTorch's `amax` shares the gradient between ties, and so does `max_axes` (only a max over a
/// window's taps, i.e. pooling, takes the first): `[[1, 1], [1, 0]]` gives a third to each 1.
#[test]
fn max_over_axes_still_shares_ties() {
    for dev in [Device::cpu(), gpu()] {
        let x = Tensor::from_slice(&[1.0f32, 1.0, 1.0, 0.0], [2, 2], &dev).unwrap();
        let g = x.max_axes(&[0, 1]).grad_wrt(&[&x]).remove(0);
        let third = 1.0 / 3.0;
        assert_close(
            &g,
            &Tensor::from_slice(&[third, third, third, 0.0], [2, 2], &Device::cpu()).unwrap(),
            1e-6,
            1e-6,
        );
        // The same values as one 2x2 pooling window: the first maximum takes it all.
        let p = x.reshape([1, 1, 2, 2]).max_pool2d(&Pool2dOptions::new(2));
        let g = p.sum().grad_wrt(&[&x]).remove(0);
        assert_eq!(f32s(&g), vec![1.0, 0.0, 0.0, 0.0], "on {}", dev.name());
    }
}
