//! Elementwise CPU kernels compiled for the vector units the machine has.
//!
//! The workspace is built for baseline x86-64 (SSE2), where the compiler leaves loops with
//! f32 <-> f64 conversions and selects scalar. Each kernel here is one `#[inline(always)]`
//! body instantiated for AVX-512 and for AVX2 + FMA and chosen at run time, so a binary
//! stays portable and still uses wide vectors. The compiler never fuses a multiply and an
//! add on its own, so every variant gives bit-identical results.
//!
//! Sums run over eight explicit lanes (a single running f64 sum is a serial chain the
//! compiler may not reorder).

use std::mem::MaybeUninit;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod bn;

/// How far ahead (in f32 elements, 4 KB) the streaming kernels prefetch ([`prefetch`]).
const PF: usize = 1024;

/// Defines `pub(crate) fn $name` dispatching to AVX-512 / AVX2 copies of its body.
macro_rules! multiversion {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        pub(crate) fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? { generic($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? { generic($($arg),*) }
                if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl") {
                    // SAFETY: the features were detected on this CPU
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: as above
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

/// For other modules' loops (the Winograd transforms).
pub(crate) use multiversion;

multiversion! {
    /// `sum xs` in f64, over sixteen lanes (two independent chains of vector additions) and
    /// fetching 4 KB ahead: it is the first read of a convolution's output (BatchNorm's
    /// statistics, the bias gradient), from memory.
    fn sum(xs: &[f32]) -> f64 {
        let mut acc = [0f64; 16];
        let chunks = xs.chunks_exact(16);
        let tail: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
        for (i, ch) in chunks.enumerate() {
            prefetch(xs.as_ptr().wrapping_add(16 * i + PF));
            for j in 0..16 {
                acc[j] += ch[j] as f64;
            }
        }
        acc.iter().sum::<f64>() + tail
    }
}

multiversion! {
    /// `sum (xs - mean)^2` in f64.
    fn sum_sq_dev(xs: &[f32], mean: f64) -> f64 {
        let mut acc = [0f64; 8];
        let chunks = xs.chunks_exact(8);
        let tail: f64 = chunks.remainder().iter().map(|&v| (v as f64 - mean).powi(2)).sum();
        for ch in chunks {
            for j in 0..8 {
                let d = ch[j] as f64 - mean;
                acc[j] += d * d;
            }
        }
        acc.iter().sum::<f64>() + tail
    }
}

/// `z = (v * a + b)` rounded to f32.
#[inline(always)]
fn pre(v: f32, a: f64, b: f64) -> f32 {
    (v as f64 * a + b) as f32
}

/// Leaky ReLU of slope `s` (1: identity).
#[inline(always)]
fn act(z: f32, s: f32) -> f32 {
    if z > 0.0 { z } else { z * s }
}

/// Its derivative (`s` at 0, as PyTorch).
#[inline(always)]
fn act_grad(z: f32, s: f32) -> f64 {
    (if z > 0.0 { 1.0 } else { s }) as f64
}

/// Asks the CPU to bring the cache line holding `p` into L1. Any address will do:
/// a prefetch never faults, and the pointer is never dereferenced.
///
/// On the 2-core cloud machines we measure on, the hardware prefetchers do not keep a
/// streaming kernel fed (BatchNorm's backward sums ran at a quarter of the speed they reach
/// on a warm buffer), so the kernels that stream through activations fetch a few KB ahead
/// themselves.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` has no architectural effect; SSE is part of x86_64
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`prefetch`] on every cache line of `xs`.
#[inline(always)]
pub(crate) fn prefetch_all<T>(xs: &[T]) {
    let line = (64 / std::mem::size_of::<T>().max(1)).max(1);
    for i in (0..xs.len()).step_by(line) {
        prefetch(xs.as_ptr().wrapping_add(i));
    }
}

/// Whether the AVX2 kernels of [`avx2`] and [`bn`] can run.
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the AVX-512 kernels of [`bn`] can run (they use AVX2 too).
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && has_avx2()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Splitting rows into four phases and back, with AVX2 shuffles where the CPU has them.
/// The Winograd F(4x4, 3x3) transforms gather their tiles' columns with it, a few times per
/// row of tiles on short rows, so they detect the CPU once per call ([`Shuffles::detect`])
/// rather than once per row (`BENCHMARKS.md`, session 24).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shuffles {
    // read only where the AVX2 kernels exist
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    avx2: bool,
}

impl Shuffles {
    /// AVX2 shuffles where the CPU has AVX2 and FMA, else plain loops.
    pub(crate) fn detect() -> Self {
        Self { avx2: has_avx2() }
    }

    /// Plain loops only (the fallback; for tests).
    #[cfg(test)]
    fn portable() -> Self {
        Self { avx2: false }
    }

    /// Splits `src` into its four phases: `dst[p][k] = src[4 k + p]` for every `k` below
    /// the (common) length of the `dst` rows; `src` must hold at least four times that many
    /// values. Inlined into the transforms, so that their AVX2 copies inline the AVX2
    /// kernel too (the rows are short).
    #[inline(always)]
    pub(crate) fn deinterleave4(self, src: &[f32], mut dst: [&mut [f32]; 4]) {
        let n = dst[0].len();
        assert!(dst.iter().all(|d| d.len() == n) && src.len() >= 4 * n);
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: `detect` found the features, and the lengths are checked
            done = unsafe { avx2::deinterleave4(src, &mut dst) };
        }
        for k in done..n {
            for (p, d) in dst.iter_mut().enumerate() {
                d[k] = src[4 * k + p];
            }
        }
    }

    /// The inverse of [`Self::deinterleave4`]: `dst[4 k + p] = src[p][k]` for every `k`
    /// below the (common) length of the `src` rows; `dst` must hold at least four times
    /// that many values.
    #[inline(always)]
    pub(crate) fn interleave4(self, src: [&[f32]; 4], dst: &mut [f32]) {
        let n = src[0].len();
        assert!(src.iter().all(|s| s.len() == n) && dst.len() >= 4 * n);
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: `detect` found the features, and the lengths are checked
            done = unsafe { avx2::interleave4(&src, dst) };
        }
        for k in done..n {
            for (p, s) in src.iter().enumerate() {
                dst[4 * k + p] = s[k];
            }
        }
    }
}

/// `out = act(x * a + b)`, every element of `out` (as long as `x`) written.
pub(crate) fn affine_act(x: &[f32], out: &mut [MaybeUninit<f32>], a: f64, b: f64, slope: f32) {
    assert_eq!(x.len(), out.len());
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = bn::detected() {
        // SAFETY: `detected` checked the features, and the lengths are equal
        unsafe { (k.affine_act)(x, out, a, b, slope) };
        done = x.len() / 8 * 8;
    }
    for (o, &v) in out[done..].iter_mut().zip(&x[done..]) {
        o.write(act(pre(v, a, b), slope));
    }
}

/// With `dz = dy * act'(x * a + b)`: `(sum dz, sum dz * (x - mean))`, over eight lanes.
pub(crate) fn act_grad_sums(
    dy: &[f32],
    x: &[f32],
    ab: (f64, f64),
    slope: f32,
    mean: f64,
) -> (f64, f64) {
    assert_eq!(dy.len(), x.len());
    let (a, b) = ab;
    let n8 = x.len() / 8 * 8;
    let (mut s1, mut s2) = ([0f64; 8], [0f64; 8]);
    let mut vectorized = false;
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = bn::detected() {
        // SAFETY: `detected` checked the features, and the lengths are equal
        (s1, s2) = unsafe { (k.act_grad_sums)(dy, x, ab, slope, mean) };
        vectorized = true;
    }
    if !vectorized {
        for (chd, chx) in dy[..n8].chunks_exact(8).zip(x[..n8].chunks_exact(8)) {
            for j in 0..8 {
                let dz = chd[j] as f64 * act_grad(pre(chx[j], a, b), slope);
                s1[j] += dz;
                s2[j] += dz * (chx[j] as f64 - mean);
            }
        }
    }
    let (mut t1, mut t2) = (0f64, 0f64);
    for (&d, &v) in dy[n8..].iter().zip(&x[n8..]) {
        let dz = d as f64 * act_grad(pre(v, a, b), slope);
        t1 += dz;
        t2 += dz * (v as f64 - mean);
    }
    (s1.iter().sum::<f64>() + t1, s2.iter().sum::<f64>() + t2)
}

/// `out = k * (dz - c1 - (x - mean) * c2)` with `dz = dy * act'(x * a + b)`, every
/// element of `out` (as long as `dy` and `x`) written.
pub(crate) fn act_input_grad(
    dy: &[f32],
    x: &[f32],
    out: &mut [MaybeUninit<f32>],
    ab: (f64, f64),
    slope: f32,
    mean: f64,
    kc: (f64, f64, f64),
) {
    let ((a, b), (k, c1, c2)) = (ab, kc);
    assert!(dy.len() == out.len() && x.len() == out.len());
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = bn::detected() {
        // SAFETY: `detected` checked the features, and the lengths are equal
        unsafe { (k.act_input_grad)(dy, x, out, ab, slope, mean, kc) };
        done = x.len() / 8 * 8;
    }
    for ((o, &d), &v) in out[done..].iter_mut().zip(&dy[done..]).zip(&x[done..]) {
        let dz = d as f64 * act_grad(pre(v, a, b), slope);
        o.write((k * (dz - c1 - (v as f64 - mean) * c2)) as f32);
    }
}

multiversion! {
    /// `even[j] = src[2 j]`, `odd[j] = src[2 j + 1]` for the `j` below `src.len() / 2` (and
    /// `even`'s and `odd`'s lengths).
    fn deinterleave2(src: &[f32], even: &mut [f32], odd: &mut [f32]) {
        for ((pair, e), o) in src.chunks_exact(2).zip(even.iter_mut()).zip(odd.iter_mut()) {
            *e = pair[0];
            *o = pair[1];
        }
    }
}

multiversion! {
    /// `dst[2 j] += even[j]`, `dst[2 j + 1] += odd[j]`: the adjoint of [`deinterleave2`].
    fn interleave2_add(even: &[f32], odd: &[f32], dst: &mut [f32]) {
        for ((pair, e), o) in dst.chunks_exact_mut(2).zip(even).zip(odd) {
            pair[0] += e;
            pair[1] += o;
        }
    }
}

multiversion! {
    /// `dst += src`.
    fn add_assign(dst: &mut [f32], src: &[f32]) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (De)interleaving by four against plain index loops, on every length up to 21 (the
    /// vector blocks of 8 and 4 and the scalar tail), with spare values past the end, with
    /// the shuffles this CPU has and with plain loops.
    #[test]
    fn interleave4_matches_index_loops() {
        for (sh, n) in [Shuffles::detect(), Shuffles::portable()]
            .into_iter()
            .flat_map(|sh| (0..22).map(move |n| (sh, n)))
        {
            let src: Vec<f32> = (0..4 * n + 3).map(|i| i as f32 * 0.5 - 7.0).collect();
            let mut buf = vec![f32::NAN; 4 * n];
            let (a, rest) = buf.split_at_mut(n);
            let (b, rest) = rest.split_at_mut(n);
            let (c, d) = rest.split_at_mut(n);
            sh.deinterleave4(&src, [a, b, c, d]);
            for (p, row) in buf.chunks_exact(n.max(1)).enumerate().take(4 * n.min(1)) {
                for (k, v) in row.iter().enumerate() {
                    assert_eq!(*v, src[4 * k + p], "n {n} phase {p} k {k}");
                }
            }
            let mut back = vec![-1f32; 4 * n + 3];
            let rows: Vec<&[f32]> = buf.chunks_exact(n.max(1)).collect();
            let rows: [&[f32]; 4] = if n == 0 {
                [&[]; 4]
            } else {
                [rows[0], rows[1], rows[2], rows[3]]
            };
            sh.interleave4(rows, &mut back);
            assert_eq!(&back[..4 * n], &src[..4 * n], "n {n}");
            assert!(
                back[4 * n..].iter().all(|v| *v == -1.0),
                "n {n}: wrote past 4n"
            );
        }
    }

    /// The dispatched kernels against plain loops, on lengths around the lane count.
    #[test]
    fn kernels_match_plain_loops() {
        for n in [0, 1, 7, 8, 9, 31, 100, 1029] {
            let x: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin() - 0.2).collect();
            let dy: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.11).cos()).collect();
            let plain_sum: f64 = x.iter().map(|&v| v as f64).sum();
            assert!((sum(&x) - plain_sum).abs() < 1e-12);
            let sq: f64 = x.iter().map(|&v| (v as f64 - 0.1).powi(2)).sum();
            assert!((sum_sq_dev(&x, 0.1) - sq).abs() < 1e-12);
            let (a, b, s) = (1.3, -0.05, 0.2f32);
            let mut out = vec![MaybeUninit::new(0f32); n];
            affine_act(&x, &mut out, a, b, s);
            let out: Vec<f32> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
            for (o, &v) in out.iter().zip(&x) {
                let z = (v as f64 * a + b) as f32;
                assert_eq!(*o, if z > 0.0 { z } else { z * s });
            }
            let g = |d: f32, v: f32| {
                let z = (v as f64 * a + b) as f32;
                d as f64 * if z > 0.0 { 1.0 } else { s as f64 }
            };
            let want1: f64 = dy.iter().zip(&x).map(|(&d, &v)| g(d, v)).sum();
            let want2: f64 = dy
                .iter()
                .zip(&x)
                .map(|(&d, &v)| g(d, v) * (v as f64 - 0.3))
                .sum();
            let (s1, s2) = act_grad_sums(&dy, &x, (a, b), s, 0.3);
            assert!((s1 - want1).abs() < 1e-12 && (s2 - want2).abs() < 1e-12);
            let mut out = vec![MaybeUninit::new(0f32); n];
            act_input_grad(&dy, &x, &mut out, (a, b), s, 0.3, (0.7, 0.01, 0.02));
            let out: Vec<f32> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
            for ((o, &d), &v) in out.iter().zip(&dy).zip(&x) {
                let want = (0.7 * (g(d, v) - 0.01 - (v as f64 - 0.3) * 0.02)) as f32;
                assert_eq!(*o, want);
            }
            let mut acc = x.clone();
            add_assign(&mut acc, &dy);
            for ((o, &u), &v) in acc.iter().zip(&x).zip(&dy) {
                assert_eq!(*o, u + v);
            }
        }
    }

    /// The AVX-512 and AVX2 BatchNorm kernels give the same bits, lane sums included (where
    /// the CPU has them; on others the test has nothing to compare).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx512_kernels_match_avx2_bits() {
        if !has_avx512() {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        let n = 1037;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i as f32) * 0.37).sin() * 3.0 - 0.2)
            .collect();
        let dy: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.11).cos() * 1e-3).collect();
        let (ab, s, mean, kc) = ((1.3, -0.05), 0.2f32, 0.3, (0.7, 0.01, 0.02));
        let bits = |v: &[MaybeUninit<f32>]| -> Vec<u32> {
            // SAFETY: the kernels wrote the first n / 8 * 8 values, and only those are read
            v[..n / 8 * 8]
                .iter()
                .map(|v| unsafe { v.assume_init() }.to_bits())
                .collect()
        };
        let (mut o2, mut o5) = (
            [MaybeUninit::new(0f32); 1037],
            [MaybeUninit::new(0f32); 1037],
        );
        // SAFETY: both feature sets were detected; the lengths are equal
        unsafe {
            bn::avx2::affine_act(&x, &mut o2, ab.0, ab.1, s);
            bn::avx512::affine_act(&x, &mut o5, ab.0, ab.1, s);
        }
        assert_eq!(bits(&o2), bits(&o5), "affine_act");
        // SAFETY: as above
        let (l2, l5) = unsafe {
            (
                bn::avx2::act_grad_sums(&dy, &x, ab, s, mean),
                bn::avx512::act_grad_sums(&dy, &x, ab, s, mean),
            )
        };
        let to_bits = |l: ([f64; 8], [f64; 8])| (l.0.map(f64::to_bits), l.1.map(f64::to_bits));
        assert_eq!(to_bits(l2), to_bits(l5), "act_grad_sums");
        // SAFETY: as above
        unsafe {
            bn::avx2::act_input_grad(&dy, &x, &mut o2, ab, s, mean, kc);
            bn::avx512::act_input_grad(&dy, &x, &mut o5, ab, s, mean, kc);
        }
        assert_eq!(bits(&o2), bits(&o5), "act_input_grad");
    }

    /// Times of the AVX2 and AVX-512 BatchNorm kernels on one activation of WRN-10-2's first
    /// stage at batch 64 (2 M values, 8 MB), alternating, min of 20 (a measurement, not a
    /// check: `cargo test --release -p jem-kernels --lib bn_kernel_timings -- --ignored
    /// --nocapture`).
    #[test]
    #[ignore]
    #[cfg(target_arch = "x86_64")]
    fn bn_kernel_timings() {
        if !has_avx512() {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        let n = 64 * 32 * 32 * 32;
        let x: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin()).collect();
        let dy: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.11).cos()).collect();
        let mut out = vec![MaybeUninit::new(0f32); n];
        let (ab, s, kc) = ((1.3, -0.05), 0.2f32, (0.7, 0.01, 0.02));
        // the fastest of 20 runs of `f`, in ms, alternating with the other kernel set's
        let ms = |f: &mut dyn FnMut(), best: &mut f64| {
            let t = std::time::Instant::now();
            f();
            *best = best.min(t.elapsed().as_secs_f64() * 1e3);
        };
        let mut best = [[f64::MAX; 3]; 2];
        for _ in 0..20 {
            // SAFETY (every call below): both feature sets were detected; lengths are equal
            let [b2, b5] = &mut best;
            ms(
                &mut || unsafe { bn::avx2::affine_act(&x, &mut out, ab.0, ab.1, s) },
                &mut b2[0],
            );
            ms(
                &mut || unsafe { bn::avx512::affine_act(&x, &mut out, ab.0, ab.1, s) },
                &mut b5[0],
            );
            let sums2 = || unsafe { bn::avx2::act_grad_sums(&dy, &x, ab, s, 0.1) };
            let sums5 = || unsafe { bn::avx512::act_grad_sums(&dy, &x, ab, s, 0.1) };
            ms(
                &mut || {
                    std::hint::black_box(sums2());
                },
                &mut b2[1],
            );
            ms(
                &mut || {
                    std::hint::black_box(sums5());
                },
                &mut b5[1],
            );
            let (d, v) = (&dy, &x);
            ms(
                &mut || unsafe { bn::avx2::act_input_grad(d, v, &mut out, ab, s, 0.1, kc) },
                &mut b2[2],
            );
            ms(
                &mut || unsafe { bn::avx512::act_input_grad(d, v, &mut out, ab, s, 0.1, kc) },
                &mut b5[2],
            );
        }
        for (name, row) in ["AVX2", "AVX-512"].iter().zip(best) {
            println!(
                "{name}: affine_act {:.2} ms, act_grad_sums {:.2} ms, act_input_grad {:.2} ms",
                row[0], row[1], row[2]
            );
        }
    }
}
