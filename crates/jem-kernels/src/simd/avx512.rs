//! The BatchNorm + leaky ReLU kernels of [`super::avx2`] with their f64 arithmetic on
//! AVX-512 registers.
//!
//! The kernels widen every value to f64, so the AVX2 versions run two 4-lane f64 halves per
//! eight values; here one 8-lane register holds them. The f32 side (the activation's
//! compare and select) stays 256 bits wide. The operations, their order and the eight lanes
//! of the sums are those of the AVX2 and portable versions (no fused multiply-adds), so all
//! three give the same bits.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::PF;

/// `z = (x * a + b)` rounded to f32, from the widened `x`.
#[inline(always)]
unsafe fn pre(x: __m512d, a: __m512d, b: __m512d) -> __m256 {
    unsafe { _mm512_cvtpd_ps(_mm512_add_pd(_mm512_mul_pd(x, a), b)) }
}

/// `act'(z)`: 1 where `z > 0`, else the slope (also at 0 and for NaN).
#[inline(always)]
unsafe fn act_grad(z: __m256, slope: __m256) -> __m256 {
    unsafe {
        let pos = _mm256_cmp_ps::<_CMP_GT_OQ>(z, _mm256_setzero_ps());
        _mm256_blendv_ps(slope, _mm256_set1_ps(1.0), pos)
    }
}

/// The eight values of `p` from `i`, widened to f64.
#[inline(always)]
unsafe fn load_wide(p: *const f32, i: usize) -> __m512d {
    unsafe { _mm512_cvtps_pd(_mm256_loadu_ps(p.add(i))) }
}

/// Element `i`'s block: the widened `x` and `dz = dy * act'(x * a + b)` in f64, after
/// prefetching both inputs ahead.
#[inline(always)]
unsafe fn x_dz(
    dy: &[f32],
    x: &[f32],
    i: usize,
    ab: (__m512d, __m512d),
    s: __m256,
) -> (__m512d, __m512d) {
    // SAFETY: the callers keep `i + 8` within both slices
    unsafe {
        super::prefetch(x.as_ptr().wrapping_add(i + PF));
        super::prefetch(dy.as_ptr().wrapping_add(i + PF));
        let xw = load_wide(x.as_ptr(), i);
        let g = _mm512_cvtps_pd(act_grad(pre(xw, ab.0, ab.1), s));
        (xw, _mm512_mul_pd(load_wide(dy.as_ptr(), i), g))
    }
}

/// `out[i] = act(x[i] * a + b)` for the first `len / 8 * 8` elements.
///
/// # Safety
/// The CPU must have AVX-512F, AVX2 and FMA, and `out` must be as long as `x`.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn affine_act(x: &[f32], out: &mut [MaybeUninit<f32>], a: f64, b: f64, s: f32) {
    let (va, vb, vs) = (_mm512_set1_pd(a), _mm512_set1_pd(b), _mm256_set1_ps(s));
    for i in (0..x.len() / 8).map(|i| i * 8) {
        // SAFETY: `i + 8 <= x.len() == out.len()`
        unsafe {
            super::prefetch(x.as_ptr().wrapping_add(i + PF));
            let z = pre(load_wide(x.as_ptr(), i), va, vb);
            let pos = _mm256_cmp_ps::<_CMP_GT_OQ>(z, _mm256_setzero_ps());
            let y = _mm256_blendv_ps(_mm256_mul_ps(z, vs), z, pos);
            _mm256_storeu_ps(out.as_mut_ptr().add(i).cast(), y);
        }
    }
}

/// The eight lane sums of `dz` and of `dz * (x - mean)` over the first `len / 8 * 8`
/// elements (lane `j` sums the elements `8 k + j`, as the AVX2 and portable versions).
///
/// # Safety
/// The CPU must have AVX-512F, AVX2 and FMA, and `dy` must be as long as `x`.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn act_grad_sums(
    dy: &[f32],
    x: &[f32],
    (a, b): (f64, f64),
    s: f32,
    mean: f64,
) -> ([f64; 8], [f64; 8]) {
    let (va, vb, vs, vm) = (
        _mm512_set1_pd(a),
        _mm512_set1_pd(b),
        _mm256_set1_ps(s),
        _mm512_set1_pd(mean),
    );
    let (mut s1, mut s2) = (_mm512_setzero_pd(), _mm512_setzero_pd());
    for i in (0..x.len() / 8).map(|i| i * 8) {
        // SAFETY: `i + 8 <= x.len() == dy.len()`
        unsafe {
            let (xw, dz) = x_dz(dy, x, i, (va, vb), vs);
            s1 = _mm512_add_pd(s1, dz);
            s2 = _mm512_add_pd(s2, _mm512_mul_pd(dz, _mm512_sub_pd(xw, vm)));
        }
    }
    let mut lanes = [[0f64; 8]; 2];
    // SAFETY: each register is eight f64 written into eight f64
    unsafe {
        _mm512_storeu_pd(lanes[0].as_mut_ptr(), s1);
        _mm512_storeu_pd(lanes[1].as_mut_ptr(), s2);
    }
    (lanes[0], lanes[1])
}

/// `out = k * (dz - c1 - (x - mean) * c2)` with `dz = dy * act'(x * a + b)`, for the first
/// `len / 8 * 8` elements.
///
/// # Safety
/// The CPU must have AVX-512F, AVX2 and FMA, and `dy`, `x` and `out` must have the same
/// length.
#[target_feature(enable = "avx512f,avx2,fma")]
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
        _mm512_set1_pd(a),
        _mm512_set1_pd(b),
        _mm256_set1_ps(s),
        _mm512_set1_pd(mean),
    );
    let (vk, vc1, vc2) = (_mm512_set1_pd(k), _mm512_set1_pd(c1), _mm512_set1_pd(c2));
    for i in (0..x.len() / 8).map(|i| i * 8) {
        // SAFETY: `i + 8 <= x.len() == dy.len() == out.len()`
        unsafe {
            let (xw, dz) = x_dz(dy, x, i, (va, vb), vs);
            let t = _mm512_sub_pd(
                _mm512_sub_pd(dz, vc1),
                _mm512_mul_pd(_mm512_sub_pd(xw, vm), vc2),
            );
            let y = _mm512_cvtpd_ps(_mm512_mul_pd(vk, t));
            _mm256_storeu_ps(out.as_mut_ptr().add(i).cast(), y);
        }
    }
}
