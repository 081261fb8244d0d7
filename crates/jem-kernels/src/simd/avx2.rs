//! Splitting rows into their four phases and back (the Winograd F(4x4, 3x3) transforms'
//! tile columns) with AVX2 shuffles.

use std::arch::x86_64::*;

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
