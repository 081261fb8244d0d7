//! The BatchNorm + leaky ReLU kernels written with x86 intrinsics, once for AVX2 and once
//! for AVX-512.
//!
//! Left to the auto-vectorizer, the per-element select of the activation's slope between
//! f32 and f64 arithmetic came out as a compare, a mask extraction and a branch per lane
//! (the backward sums ran at a few ns per element). Each kernel here does exactly the
//! operations of its portable twin in `super`, in the same order and without fused
//! multiply-adds, so all give the same bits; the sums keep the eight lanes of the portable
//! version. The kernels widen every value to f64 and are written once over [`F64x8`], eight
//! f64 lanes: two 4-lane registers with AVX2 ([`Halves`]), one 8-lane register with
//! AVX-512 ([`Full`], which takes about a fifth off the backward kernels). The f32 side (the
//! activation's compare and select) is 256 bits wide in both.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::PF;

/// Eight f64 lanes, one per f32 of a 256-bit register. The methods are plain IEEE
/// operations lane by lane; they are `unsafe` because they need the CPU features of the
/// kernel they are inlined into.
pub(super) trait F64x8: Copy {
    /// The eight f32 of `v`, widened.
    unsafe fn widen(v: __m256) -> Self;
    /// `x` in every lane.
    unsafe fn splat(x: f64) -> Self;
    unsafe fn add(self, o: Self) -> Self;
    unsafe fn sub(self, o: Self) -> Self;
    unsafe fn mul(self, o: Self) -> Self;
    /// Rounded to eight f32.
    unsafe fn narrow(self) -> __m256;
    /// The lanes in order.
    unsafe fn lanes(self) -> [f64; 8];
}

/// AVX2: two registers of four f64.
#[derive(Clone, Copy)]
pub(super) struct Halves(__m256d, __m256d);

impl F64x8 for Halves {
    #[inline(always)]
    unsafe fn widen(v: __m256) -> Self {
        unsafe {
            Halves(
                _mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)),
            )
        }
    }
    #[inline(always)]
    unsafe fn splat(x: f64) -> Self {
        unsafe { Halves(_mm256_set1_pd(x), _mm256_set1_pd(x)) }
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        unsafe { Halves(_mm256_add_pd(self.0, o.0), _mm256_add_pd(self.1, o.1)) }
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        unsafe { Halves(_mm256_sub_pd(self.0, o.0), _mm256_sub_pd(self.1, o.1)) }
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        unsafe { Halves(_mm256_mul_pd(self.0, o.0), _mm256_mul_pd(self.1, o.1)) }
    }
    #[inline(always)]
    unsafe fn narrow(self) -> __m256 {
        unsafe { _mm256_set_m128(_mm256_cvtpd_ps(self.1), _mm256_cvtpd_ps(self.0)) }
    }
    #[inline(always)]
    unsafe fn lanes(self) -> [f64; 8] {
        let mut out = [0f64; 8];
        // SAFETY: two registers of four f64 into eight f64
        unsafe {
            _mm256_storeu_pd(out.as_mut_ptr(), self.0);
            _mm256_storeu_pd(out.as_mut_ptr().add(4), self.1);
        }
        out
    }
}

/// AVX-512: one register of eight f64.
#[derive(Clone, Copy)]
pub(super) struct Full(__m512d);

impl F64x8 for Full {
    #[inline(always)]
    unsafe fn widen(v: __m256) -> Self {
        unsafe { Full(_mm512_cvtps_pd(v)) }
    }
    #[inline(always)]
    unsafe fn splat(x: f64) -> Self {
        unsafe { Full(_mm512_set1_pd(x)) }
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        unsafe { Full(_mm512_add_pd(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        unsafe { Full(_mm512_sub_pd(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        unsafe { Full(_mm512_mul_pd(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn narrow(self) -> __m256 {
        unsafe { _mm512_cvtpd_ps(self.0) }
    }
    #[inline(always)]
    unsafe fn lanes(self) -> [f64; 8] {
        let mut out = [0f64; 8];
        // SAFETY: one register of eight f64 into eight f64
        unsafe { _mm512_storeu_pd(out.as_mut_ptr(), self.0) };
        out
    }
}

/// The eight values of `p` from `i`, widened.
#[inline(always)]
unsafe fn load<W: F64x8>(p: &[f32], i: usize) -> W {
    // SAFETY: the callers keep `i + 8 <= p.len()`
    unsafe { W::widen(_mm256_loadu_ps(p.as_ptr().add(i))) }
}

/// `z = (x * a + b)` rounded to f32.
#[inline(always)]
unsafe fn pre<W: F64x8>(x: W, (a, b): (W, W)) -> __m256 {
    unsafe { x.mul(a).add(b).narrow() }
}

/// `act'(z)`: 1 where `z > 0`, else the slope (also at 0 and for NaN).
#[inline(always)]
unsafe fn act_grad(z: __m256, slope: __m256) -> __m256 {
    unsafe {
        let pos = _mm256_cmp_ps::<_CMP_GT_OQ>(z, _mm256_setzero_ps());
        _mm256_blendv_ps(slope, _mm256_set1_ps(1.0), pos)
    }
}

/// Block `i` of `x`, widened, and its `dz = dy * act'(x * a + b)`, after fetching both
/// inputs ahead ([`super::prefetch`]).
#[inline(always)]
unsafe fn x_dz<W: F64x8>(dy: &[f32], x: &[f32], i: usize, ab: (W, W), s: __m256) -> (W, W) {
    // SAFETY: the callers keep `i + 8` within both slices
    unsafe {
        super::prefetch(x.as_ptr().wrapping_add(i + PF));
        super::prefetch(dy.as_ptr().wrapping_add(i + PF));
        let xw: W = load(x, i);
        let g = W::widen(act_grad(pre(xw, ab), s));
        (xw, load::<W>(dy, i).mul(g))
    }
}

/// `out[i] = act(x[i] * a + b)` for the first `len / 8 * 8` elements.
#[inline(always)]
unsafe fn affine_act<W: F64x8>(x: &[f32], out: &mut [MaybeUninit<f32>], a: f64, b: f64, s: f32) {
    assert_eq!(x.len(), out.len());
    // SAFETY: the caller has the features; every block `i + 8 <= x.len() == out.len()`
    unsafe {
        let (ab, vs) = ((W::splat(a), W::splat(b)), _mm256_set1_ps(s));
        for i in (0..x.len() / 8).map(|i| i * 8) {
            super::prefetch(x.as_ptr().wrapping_add(i + PF));
            let z = pre(load::<W>(x, i), ab);
            let pos = _mm256_cmp_ps::<_CMP_GT_OQ>(z, _mm256_setzero_ps());
            let y = _mm256_blendv_ps(_mm256_mul_ps(z, vs), z, pos);
            _mm256_storeu_ps(out.as_mut_ptr().add(i).cast(), y);
        }
    }
}

/// The eight lane sums of `dz` and of `dz * (x - mean)` over the first `len / 8 * 8`
/// elements (lane `j` sums the elements `8 k + j`).
#[inline(always)]
unsafe fn act_grad_sums<W: F64x8>(
    dy: &[f32],
    x: &[f32],
    (a, b): (f64, f64),
    s: f32,
    mean: f64,
) -> ([f64; 8], [f64; 8]) {
    assert_eq!(dy.len(), x.len());
    // SAFETY: the caller has the features; every block `i + 8 <= x.len() == dy.len()`
    unsafe {
        let (ab, vs, vm) = (
            (W::splat(a), W::splat(b)),
            _mm256_set1_ps(s),
            W::splat(mean),
        );
        let (mut s1, mut s2) = (W::splat(0.0), W::splat(0.0));
        for i in (0..x.len() / 8).map(|i| i * 8) {
            let (xw, dz) = x_dz(dy, x, i, ab, vs);
            s1 = s1.add(dz);
            s2 = s2.add(dz.mul(xw.sub(vm)));
        }
        (s1.lanes(), s2.lanes())
    }
}

/// `out = k * (dz - c1 - (x - mean) * c2)` with `dz = dy * act'(x * a + b)`, for the first
/// `len / 8 * 8` elements.
#[inline(always)]
unsafe fn act_input_grad<W: F64x8>(
    dy: &[f32],
    x: &[f32],
    out: &mut [MaybeUninit<f32>],
    (a, b): (f64, f64),
    s: f32,
    mean: f64,
    (k, c1, c2): (f64, f64, f64),
) {
    assert!(dy.len() == x.len() && out.len() == x.len());
    // SAFETY: the caller has the features; every block `i + 8` is within all three slices
    unsafe {
        let (ab, vs, vm) = (
            (W::splat(a), W::splat(b)),
            _mm256_set1_ps(s),
            W::splat(mean),
        );
        let (vk, vc1, vc2) = (W::splat(k), W::splat(c1), W::splat(c2));
        for i in (0..x.len() / 8).map(|i| i * 8) {
            let (xw, dz) = x_dz(dy, x, i, ab, vs);
            let t = dz.sub(vc1).sub(xw.sub(vm).mul(vc2));
            _mm256_storeu_ps(out.as_mut_ptr().add(i).cast(), vk.mul(t).narrow());
        }
    }
}

/// [`affine_act`]'s signature.
type AffineAct = unsafe fn(&[f32], &mut [MaybeUninit<f32>], f64, f64, f32);
/// [`act_grad_sums`]'s signature.
type GradSums = unsafe fn(&[f32], &[f32], (f64, f64), f32, f64) -> ([f64; 8], [f64; 8]);
/// [`act_input_grad`]'s signature.
type InputGrad =
    unsafe fn(&[f32], &[f32], &mut [MaybeUninit<f32>], (f64, f64), f32, f64, (f64, f64, f64));

/// The three kernels of one instruction set. Only [`detected`] hands them out, so holding
/// one means the CPU has its features.
pub(super) struct Kernels {
    pub(super) affine_act: AffineAct,
    pub(super) act_grad_sums: GradSums,
    pub(super) act_input_grad: InputGrad,
}

/// The kernels for this CPU (AVX-512, else AVX2), or `None`: detected once, since BatchNorm
/// calls them once per channel plane, which is 64 values at 8x8.
pub(super) fn detected() -> Option<&'static Kernels> {
    static CHOICE: std::sync::OnceLock<Option<&'static Kernels>> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| {
        if super::has_avx512() {
            Some(&avx512::KERNELS)
        } else if super::has_avx2() {
            Some(&avx2::KERNELS)
        } else {
            None
        }
    })
}

/// Defines a module of the three kernels compiled for `$features` over `$wide`.
macro_rules! kernels {
    ($name:ident, $wide:ty, $features:literal) => {
        #[doc = concat!(
                    "The BatchNorm kernels with their f64 arithmetic on `", stringify!($wide),
                    "`, compiled for `", $features, "` (the callers detect them)."
                )]
        pub(super) mod $name {
            use std::mem::MaybeUninit;

            /// The three, for [`super::detected`].
            pub(super) const KERNELS: super::Kernels = super::Kernels {
                affine_act,
                act_grad_sums,
                act_input_grad,
            };

            /// [`super::affine_act`].
            ///
            /// # Safety
            /// The CPU must have the module's features.
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn affine_act(
                x: &[f32],
                out: &mut [MaybeUninit<f32>],
                a: f64,
                b: f64,
                s: f32,
            ) {
                unsafe { super::affine_act::<$wide>(x, out, a, b, s) }
            }

            /// [`super::act_grad_sums`].
            ///
            /// # Safety
            /// The CPU must have the module's features.
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn act_grad_sums(
                dy: &[f32],
                x: &[f32],
                ab: (f64, f64),
                s: f32,
                mean: f64,
            ) -> ([f64; 8], [f64; 8]) {
                unsafe { super::act_grad_sums::<$wide>(dy, x, ab, s, mean) }
            }

            /// [`super::act_input_grad`].
            ///
            /// # Safety
            /// The CPU must have the module's features.
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn act_input_grad(
                dy: &[f32],
                x: &[f32],
                out: &mut [MaybeUninit<f32>],
                ab: (f64, f64),
                s: f32,
                mean: f64,
                kc: (f64, f64, f64),
            ) {
                unsafe { super::act_input_grad::<$wide>(dy, x, out, ab, s, mean, kc) }
            }
        }
    };
}

kernels!(avx2, super::Halves, "avx2,fma");
kernels!(avx512, super::Full, "avx512f,avx2,fma");
