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
            let (xlo, xhi) = widen(_mm256_loadu_ps(x.as_ptr().add(i)));
            let g = act_grad(pre(xlo, xhi, va, vb), vs);
            let (zlo, zhi) = dz(_mm256_loadu_ps(dy.as_ptr().add(i)), g);
            let y = _mm256_set_m128(grad(zhi, xhi, vm, kc), grad(zlo, xlo, vm, kc));
            _mm256_storeu_ps(out.as_mut_ptr().add(i).cast(), y);
        }
    }
}
