//! Buffers larger than one storage binding, bound as several windows.
//!
//! A device caps one storage binding (`max_storage_buffer_binding_size`, 128 MiB on lavapipe)
//! well below its largest buffer (`max_buffer_size`). A tensor between the two lives in one
//! buffer; a kernel that reads or writes it binds that buffer as consecutive windows of
//! [`window_bytes`] each (bind-group entries with offsets, every offset a multiple of
//! `min_storage_buffer_offset_alignment`). This pass rewrites a generated kernel after codegen:
//! the declaration `var<storage, ..> in1: array<T>;` becomes one declaration per window
//! (`in1_w0`, `in1_w1`, ..), a load `in1[i]` becomes `in1_ld(i)` and a store `in1[i] = v;`
//! becomes `in1_st(i, v);`, functions that pick the window from the index. Kernels whose buffers
//! all fit one binding are left exactly as they are.
//!
//! Window 0 keeps the buffer's binding number; windows 1.. take the numbers after every other
//! binding of the kernel (its uniform included), buffer by buffer, in binding order, as
//! [`extra_bindings`] lists them for the bind group.

/// The size of every window but a buffer's last: the binding limit rounded down to the offset
/// alignment (and to 16 bytes, so a window holds whole `vec4<f32>`s).
pub fn window_bytes(max_binding: u64, offset_alignment: u64) -> u64 {
    let unit = lcm(offset_alignment.max(1), 16);
    (max_binding / unit) * unit
}

/// Windows a buffer of `bytes` bytes needs (at least 1).
pub fn windows_of(bytes: u64, window: u64) -> u32 {
    bytes.div_ceil(window).max(1) as u32
}

/// The binding numbers of windows 1.. of each bound buffer, in binding order: `windows[j]` is
/// the number of windows of binding `j`, `first_free` the first binding number the kernel does
/// not use otherwise. Buffers of one window get an empty list.
pub fn extra_bindings(windows: &[u32], first_free: u32) -> Vec<Vec<u32>> {
    let mut next = first_free;
    windows
        .iter()
        .map(|&n| {
            (1..n)
                .map(|_| {
                    next += 1;
                    next - 1
                })
                .collect()
        })
        .collect()
}

/// Rewrites `wgsl` so that binding `binding` (declared `var<storage, ..> name: array<T>;`) is
/// bound as `windows` windows of `window` bytes, windows 1.. at `extra` binding numbers.
pub fn rewrite(wgsl: &str, name: &str, binding: u32, window: u64, extra: &[u32]) -> String {
    let windows = extra.len() + 1;
    if windows == 1 {
        return wgsl.to_string();
    }
    let (decl_start, decl_end, access, elem) = declaration(wgsl, name)
        .unwrap_or_else(|| panic!("windows: no declaration of `{name}` in\n{wgsl}"));
    let elem_bytes = element_bytes(&elem);
    let per = window / elem_bytes;
    let body = format!("{}{}", &wgsl[..decl_start], &wgsl[decl_end..]);
    let body = rewrite_uses(&body, name);
    let mut decls = String::new();
    for w in 0..windows {
        let b = if w == 0 { binding } else { extra[w - 1] };
        decls.push_str(&format!(
            "@group(0) @binding({b}) var<storage, {access}> {name}_w{w}: array<{elem}>;\n"
        ));
    }
    // Index i of the whole buffer is element i - w * per of window w.
    let pick = |stmt: &dyn Fn(usize, String) -> String| -> String {
        let mut s = String::new();
        for w in 0..windows {
            let local = if w == 0 {
                "i".to_string()
            } else {
                format!("i - {}u", w as u64 * per)
            };
            if w + 1 < windows {
                let cond = if w == 0 { "if" } else { "} else if" };
                s.push_str(&format!(
                    "    {cond} (i < {}u) {{\n        {}\n",
                    (w as u64 + 1) * per,
                    stmt(w, local)
                ));
            } else {
                s.push_str(&format!("    }}\n    {}\n", stmt(w, local)));
            }
        }
        s
    };
    let uses_load = body.contains(&format!("{name}_ld("));
    let uses_store = body.contains(&format!("{name}_st("));
    if uses_load {
        decls.push_str(&format!(
            "fn {name}_ld(i: u32) -> {elem} {{\n{}}}\n",
            pick(&|w, local| format!("return {name}_w{w}[{local}];"))
        ));
    }
    if uses_store {
        decls.push_str(&format!(
            "fn {name}_st(i: u32, v: {elem}) {{\n{}}}\n",
            pick(&|w, local| format!("{name}_w{w}[{local}] = v; return;"))
        ));
    }
    // The new declarations go where the old one was (before any function that uses them).
    format!("{}{decls}{}", &body[..decl_start], &body[decl_start..])
}

/// The byte range of `name`'s declaration line, its access mode and element type.
fn declaration(wgsl: &str, name: &str) -> Option<(usize, usize, String, String)> {
    let mut start = 0;
    for line in wgsl.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with("@group(0) @binding(") && t.contains(&format!("> {name}: array<")) {
            let access = t
                .split("var<storage, ")
                .nth(1)?
                .split('>')
                .next()?
                .to_string();
            let elem = t
                .split(": array<")
                .nth(1)?
                .trim_end_matches(">;")
                .to_string();
            return Some((start, start + line.len(), access, elem));
        }
        start += line.len();
    }
    None
}

/// Bytes of one element of a storage array of `elem`.
fn element_bytes(elem: &str) -> u64 {
    match elem {
        "f16" => 2,
        "vec4<f32>" | "vec4<u32>" | "vec4<i32>" => 16,
        "vec2<f32>" | "vec2<u32>" => 8,
        _ => 4,
    }
}

/// `name[i] = v;` -> `name_st(i, v);` and every other `name[i]` -> `name_ld(i)`.
fn rewrite_uses(src: &str, name: &str) -> String {
    let pat = format!("{name}[");
    let bytes = src.as_bytes();
    let mut out = String::with_capacity(src.len() + 64);
    let mut i = 0;
    while let Some(found) = src[i..].find(&pat) {
        let at = i + found;
        let ident_before = at > 0 && {
            let c = bytes[at - 1];
            c.is_ascii_alphanumeric() || c == b'_'
        };
        if ident_before {
            out.push_str(&src[i..at + pat.len()]);
            i = at + pat.len();
            continue;
        }
        out.push_str(&src[i..at]);
        let open = at + pat.len() - 1;
        let close = matching(src, open, b'[', b']');
        let index = rewrite_uses(&src[open + 1..close], name);
        let rest = &src[close + 1..];
        let trimmed = rest.trim_start();
        let is_store = trimmed.starts_with('=') && !trimmed.starts_with("==");
        if is_store {
            let eq = close + 1 + (rest.len() - trimmed.len());
            let end = statement_end(src, eq + 1);
            let value = rewrite_uses(src[eq + 1..end].trim(), name);
            out.push_str(&format!("{name}_st({index}, {value})"));
            i = end; // the `;` stays
        } else {
            out.push_str(&format!("{name}_ld({index})"));
            i = close + 1;
        }
    }
    out.push_str(&src[i..]);
    out
}

/// The position of the bracket closing the one at `open`.
fn matching(src: &str, open: usize, left: u8, right: u8) -> usize {
    let mut depth = 0;
    for (k, &c) in src.as_bytes()[open..].iter().enumerate() {
        if c == left {
            depth += 1;
        } else if c == right {
            depth -= 1;
            if depth == 0 {
                return open + k;
            }
        }
    }
    panic!("windows: unbalanced brackets in generated WGSL")
}

/// The position of the `;` that ends the statement containing `from` (outside brackets).
fn statement_end(src: &str, from: usize) -> usize {
    let mut depth = 0i32;
    for (k, &c) in src.as_bytes()[from..].iter().enumerate() {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b';' if depth == 0 => return from + k,
            _ => {}
        }
    }
    panic!("windows: a store without `;` in generated WGSL")
}

fn lcm(a: u64, b: u64) -> u64 {
    let gcd = |mut x: u64, mut y: u64| {
        while y != 0 {
            (x, y) = (y, x % y);
        }
        x
    };
    a / gcd(a, b) * b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_stores_pick_their_window() {
        let src = "@group(0) @binding(0) var<storage, read_write> out_buf: array<f32>;\n\
                   @group(0) @binding(1) var<storage, read> in1: array<f32>;\n\
                   fn main() { out_buf[i] = in1[in1[2u]] + in11[3u]; let x = out_buf[i] == 1.0; }\n";
        let s = rewrite(src, "in1", 1, 64, &[3, 4]);
        assert!(s.contains("var<storage, read> in1_w2: array<f32>;"), "{s}");
        assert!(s.contains("@binding(3) var<storage, read> in1_w1"), "{s}");
        assert!(
            s.contains("in1_ld(in1_ld(2u))") && s.contains("in11[3u]"),
            "{s}"
        );
        assert!(
            s.contains("return in1_w1[i - 16u];") && s.contains("(i < 32u)"),
            "{s}"
        );
        let s = rewrite(&s, "out_buf", 0, 64, &[5]);
        assert!(
            s.contains("out_buf_st(i, in1_ld(in1_ld(2u)) + in11[3u]);"),
            "{s}"
        );
        assert!(s.contains("let x = out_buf_ld(i) == 1.0;"), "{s}");
        assert!(s.contains("out_buf_w1[i - 16u] = v; return;"), "{s}");
    }

    #[test]
    fn windows_are_aligned_and_numbered_after_the_kernel() {
        assert_eq!(window_bytes(128 << 20, 256), 128 << 20);
        assert_eq!(window_bytes(1000, 256), 768);
        assert_eq!(window_bytes(1000, 4), 992);
        assert_eq!(windows_of(0, 768), 1);
        assert_eq!(windows_of(769, 768), 2);
        assert_eq!(
            extra_bindings(&[1, 3, 1, 2], 5),
            vec![vec![], vec![5, 6], vec![], vec![7]]
        );
    }
}
