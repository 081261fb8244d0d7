//! The BatchNorm + leaky ReLU kernels written with AVX2 intrinsics.
//!
//! Left to the auto-vectorizer, the per-element select of the activation's slope between
//! f32 and f64 arithmetic came out as a compare, a mask extraction and a branch per lane
//! (the backward sums ran at a few ns per element). Each kernel here does exactly the
//! operations of its portable twin in `super`, in the same order and without fused
//! multiply-adds, so both give the same bits; the sums keep the eight lanes of the portable
//! version (two registers of four f64).

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::PF;

/// Eight f32 as two halves of four f64.
#[inline(always)]
unsafe fn widen(v: __m256) -> (__m256d, __m256d) {
    unsafe {
        (
            _mm256_cvtps_pd(_mm256_castps256_ps128(v)),
            _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)),
        )
    }
}

/// `z = (x * a + b)` rounded to f32, from the widened halves of `x`.
#[inline(always)]
unsafe fn pre(xlo: __m256d, xhi: __m256d, a: __m256d, b: __m256d) -> __m256 {
    unsafe {
        let lo = _mm256_cvtpd_ps(_mm256_add_pd(_mm256_mul_pd(xlo, a), b));
        let hi = _mm256_cvtpd_ps(_mm256_add_pd(_mm256_mul_pd(xhi, a), b));
        _mm256_set_m128(hi, lo)
    }
}

/// `act'(z)`: 1 where `z > 0`, else the slope (also at 0 and for NaN).
#[inline(always)]
unsafe fn act_grad(z: __m256, slope: __m256) -> __m256 {
    unsafe {
        let pos = _mm256_cmp_ps::<_CMP_GT_OQ>(z, _mm256_setzero_ps());
        _mm256_blendv_ps(slope, _mm256_set1_ps(1.0), pos)
    }
}

/// `dz = dy * act'(z)` in f64, as two halves.
#[inline(always)]
unsafe fn dz(dy: __m256, g: __m256) -> (__m256d, __m256d) {
    unsafe {
        let ((dlo, dhi), (glo, ghi)) = (widen(dy), widen(g));
        (_mm256_mul_pd(dlo, glo), _mm256_mul_pd(dhi, ghi))
    }
}

/// `k * (dz - c1 - (x - mean) * c2)` rounded to f32.
#[inline(always)]
unsafe fn grad(z: __m256d, x: __m256d, mean: __m256d, kc: (__m256d, __m256d, __m256d)) -> __m128 {
    let (k, c1, c2) = kc;
    unsafe {
        let t = _mm256_sub_pd(
            _mm256_sub_pd(z, c1),
            _mm256_mul_pd(_mm256_sub_pd(x, mean), c2),
        );
        _mm256_cvtpd_ps(_mm256_mul_pd(k, t))
    }
}

/// `out[i] = act(x[i] * a + b)` for the first `len / 8 * 8` elements.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and `out` must be as long as `x`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn affine_act(x: &[f32], out: &mut [MaybeUninit<f32>], a: f64, b: f64, s: f32) {
    let (va, vb, vs) = (_mm256_set1_pd(a), _mm256_set1_pd(b), _mm256_set1_ps(s));
    for i in (0..x.len() / 8).map(|i| i * 8) {
        // SAFETY: `i + 8 <= x.len() == out.len()`
        unsafe {
            super::prefetch(x.as_ptr().wrapping_add(i + PF));
            let (xlo, xhi) = widen(_mm256_loadu_ps(x.as_ptr().add(i)));
            let z = pre(xlo, xhi, va, vb);
            let pos = _mm256_cmp_ps::<_CMP_GT_OQ>(z, _mm256_setzero_ps());
            let y = _mm256_blendv_ps(_mm256_mul_ps(z, vs), z, pos);
            _mm256_storeu_ps(out.as_mut_ptr().add(i).cast(), y);
        }
    }
}

/// The eight lane sums of `dz` and of `dz * (x - mean)` over the first `len / 8 * 8`
/// elements.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and `dy` must be as long as `x`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn act_grad_sums(
    dy: &[f32],
    x: &[f32],
    (a, b): (f64, f64),
    s: f32,
    mean: f64,
) -> ([f64; 8], [f64; 8]) {
    let (va, vb, vs, vm) = (
        _mm256_set1_pd(a),
        _mm256_set1_pd(b),
        _mm256_set1_ps(s),
        _mm256_set1_pd(mean),
    );
    let mut acc = [_mm256_setzero_pd(); 4];
    for i in (0..x.len() / 8).map(|i| i * 8) {
        // SAFETY: `i + 8 <= x.len() == dy.len()`
        unsafe {
            super::prefetch(x.as_ptr().wrapping_add(i + PF));
            super::prefetch(dy.as_ptr().wrapping_add(i + PF));
            let (xlo, xhi) = widen(_mm256_loadu_ps(x.as_ptr().add(i)));
            let g = act_grad(pre(xlo, xhi, va, vb), vs);
            let (zlo, zhi) = dz(_mm256_loadu_ps(dy.as_ptr().add(i)), g);
            acc[0] = _mm256_add_pd(acc[0], zlo);
            acc[1] = _mm256_add_pd(acc[1], zhi);
            acc[2] = _mm256_add_pd(acc[2], _mm256_mul_pd(zlo, _mm256_sub_pd(xlo, vm)));
            acc[3] = _mm256_add_pd(acc[3], _mm256_mul_pd(zhi, _mm256_sub_pd(xhi, vm)));
        }
    }
    let mut lanes = [[0f64; 8]; 2];
    for (k, half) in acc.iter().enumerate() {
        // SAFETY: each half is four f64 written into four f64
        unsafe { _mm256_storeu_pd(lanes[k / 2][(k % 2) * 4..].as_mut_ptr(), *half) };
    }
    (lanes[0], lanes[1])
}

/// `out = k * (dz - c1 - (x - mean) * c2)` with `dz = dy * act'(x * a + b)`, for the first
/// `len / 8 * 8` elements.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and `dy`, `x` and `out` must have the same length.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn act_input_grad(
    dy: &[f32],
    x: &[f32],
    out: &mut [MaybeUninit<f32>],
    (a, b): (f64, f64),
    s: f32,
    mean: f64,
    (k, c1, c2): (f64, f64, f64),
) {
    let (va, vb, vs, vm) = (
        _mm256_set1_pd(a),
        _mm256_set1_pd(b),
        _mm256_set1_ps(s),
        _mm256_set1_pd(mean),
    );
    let kc = (_mm256_set1_pd(k), _mm256_set1_pd(c1), _mm256_set1_pd(c2));
    for i in (0..x.len() / 8).map(|i| i * 8) {
        // SAFETY: `i + 8 <= x.len() == dy.len() == out.len()`
        unsafe {
            super::prefetch(x.as_ptr().wrapping_add(i + PF));
            super::prefetch(dy.as_ptr().wrapping_add(i + PF));
            let (xlo, xhi) = widen(_mm256_loadu_ps(x.as_ptr().add(i)));
            let g = act_grad(pre(xlo, xhi, va, vb), vs);
            let (zlo, zhi) = dz(_mm256_loadu_ps(dy.as_ptr().add(i)), g);
            let y = _mm256_set_m128(grad(zhi, xhi, vm, kc), grad(zlo, xlo, vm, kc));
            _mm256_storeu_ps(out.as_mut_ptr().add(i).cast(), y);
        }
    }
}

/// `dst[p][k] = src[4 k + p]` for the first `8 * floor(n / 8)` (then one block of 4 if
/// another fits) of the `n = dst[0].len()` values of each phase; returns how many were done.
/// The caller checked the lengths (`src` at least `4 n`, the four `dst` equal).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn deinterleave4(src: &[f32], dst: &mut [&mut [f32]; 4]) -> usize {
    let n = dst[0].len();
    let mut k = 0;
    // SAFETY: every load reads src[4k..4k + 32] (or + 16) with k + 8 <= n (k + 4 <= n), and
    // every store writes dst[p][k..k + 8] (k + 4), within the checked lengths
    unsafe {
        while k + 8 <= n {
            let s = src.as_ptr().add(4 * k);
            let (a0, a1) = (_mm256_loadu_ps(s), _mm256_loadu_ps(s.add(8)));
            let (a2, a3) = (_mm256_loadu_ps(s.add(16)), _mm256_loadu_ps(s.add(24)));
            // [q0 | q4], [q1 | q5], [q2 | q6], [q3 | q7] (qi: the four values of quad i)
            let b0 = _mm256_permute2f128_ps::<0x20>(a0, a2);
            let b1 = _mm256_permute2f128_ps::<0x31>(a0, a2);
            let b2 = _mm256_permute2f128_ps::<0x20>(a1, a3);
            let b3 = _mm256_permute2f128_ps::<0x31>(a1, a3);
            // then a 4x4 transpose within each 128-bit lane
            let (t0, t1) = (_mm256_unpacklo_ps(b0, b1), _mm256_unpackhi_ps(b0, b1));
            let (t2, t3) = (_mm256_unpacklo_ps(b2, b3), _mm256_unpackhi_ps(b2, b3));
            let p = [
                _mm256_shuffle_ps::<0x44>(t0, t2),
                _mm256_shuffle_ps::<0xEE>(t0, t2),
                _mm256_shuffle_ps::<0x44>(t1, t3),
                _mm256_shuffle_ps::<0xEE>(t1, t3),
            ];
            _mm256_storeu_ps(dst[0].as_mut_ptr().add(k), p[0]);
            _mm256_storeu_ps(dst[1].as_mut_ptr().add(k), p[1]);
            _mm256_storeu_ps(dst[2].as_mut_ptr().add(k), p[2]);
            _mm256_storeu_ps(dst[3].as_mut_ptr().add(k), p[3]);
            k += 8;
        }
        if k + 4 <= n {
            let s = src.as_ptr().add(4 * k);
            let (r0, r1) = (_mm_loadu_ps(s), _mm_loadu_ps(s.add(4)));
            let (r2, r3) = (_mm_loadu_ps(s.add(8)), _mm_loadu_ps(s.add(12)));
            let p = transpose4(r0, r1, r2, r3);
            _mm_storeu_ps(dst[0].as_mut_ptr().add(k), p[0]);
            _mm_storeu_ps(dst[1].as_mut_ptr().add(k), p[1]);
            _mm_storeu_ps(dst[2].as_mut_ptr().add(k), p[2]);
            _mm_storeu_ps(dst[3].as_mut_ptr().add(k), p[3]);
            k += 4;
        }
    }
    k
}

/// `dst[4 k + p] = src[p][k]`, the inverse of [`deinterleave4`], for the same leading `k`;
/// returns how many were done. The caller checked the lengths (`dst` at least `4 n`).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn interleave4(src: &[&[f32]; 4], dst: &mut [f32]) -> usize {
    let n = src[0].len();
    let mut k = 0;
    // SAFETY: as in deinterleave4, with loads and stores swapped
    unsafe {
        while k + 8 <= n {
            let (p0, p1) = (
                _mm256_loadu_ps(src[0].as_ptr().add(k)),
                _mm256_loadu_ps(src[1].as_ptr().add(k)),
            );
            let (p2, p3) = (
                _mm256_loadu_ps(src[2].as_ptr().add(k)),
                _mm256_loadu_ps(src[3].as_ptr().add(k)),
            );
            let (t0, t1) = (_mm256_unpacklo_ps(p0, p1), _mm256_unpackhi_ps(p0, p1));
            let (t2, t3) = (_mm256_unpacklo_ps(p2, p3), _mm256_unpackhi_ps(p2, p3));
            // [q0 | q4], [q1 | q5], [q2 | q6], [q3 | q7]
            let b0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let b1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let b2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let b3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let d = dst.as_mut_ptr().add(4 * k);
            _mm256_storeu_ps(d, _mm256_permute2f128_ps::<0x20>(b0, b1));
            _mm256_storeu_ps(d.add(8), _mm256_permute2f128_ps::<0x20>(b2, b3));
            _mm256_storeu_ps(d.add(16), _mm256_permute2f128_ps::<0x31>(b0, b1));
            _mm256_storeu_ps(d.add(24), _mm256_permute2f128_ps::<0x31>(b2, b3));
            k += 8;
        }
        if k + 4 <= n {
            let (r0, r1) = (
                _mm_loadu_ps(src[0].as_ptr().add(k)),
                _mm_loadu_ps(src[1].as_ptr().add(k)),
            );
            let (r2, r3) = (
                _mm_loadu_ps(src[2].as_ptr().add(k)),
                _mm_loadu_ps(src[3].as_ptr().add(k)),
            );
            let q = transpose4(r0, r1, r2, r3);
            let d = dst.as_mut_ptr().add(4 * k);
            _mm_storeu_ps(d, q[0]);
            _mm_storeu_ps(d.add(4), q[1]);
            _mm_storeu_ps(d.add(8), q[2]);
            _mm_storeu_ps(d.add(12), q[3]);
            k += 4;
        }
    }
    k
}

/// The 4x4 transpose of the rows `r0..r3`.
#[inline(always)]
unsafe fn transpose4(r0: __m128, r1: __m128, r2: __m128, r3: __m128) -> [__m128; 4] {
    unsafe {
        let (t0, t1) = (_mm_unpacklo_ps(r0, r1), _mm_unpackhi_ps(r0, r1));
        let (t2, t3) = (_mm_unpacklo_ps(r2, r3), _mm_unpackhi_ps(r2, r3));
        [
            _mm_movelh_ps(t0, t2),
            _mm_movehl_ps(t2, t0),
            _mm_movelh_ps(t1, t3),
            _mm_movehl_ps(t3, t1),
        ]
    }
}
