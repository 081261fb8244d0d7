//! im2col and col2im for strides above 1, through the phases of each input row.
//!
//! With stride `s`, kernel column `kx` reads every `s`-th value of an input row, a strided
//! gather that compiles to one scalar load and store per value. Split once per channel into
//! its `s` phases (`phase q`, row `iy`: the values `x[iy][s j + q]`), the same reads are
//! contiguous runs of one phase: output column `ox` of kernel column `kx` reads input column
//! `s ox + kx - pw`, which is value `ox + (kx - pw) div s` of phase `(kx - pw) mod s`. The
//! `kh * kw` rows of a channel then copy (or, in col2im, add) whole runs, and the split (or
//! its adjoint, the merge) is one pass over the channel's plane.

use super::{ConvGeometry, zero_outside};
use crate::simd;

/// The phases of one channel: `s` planes of `h` rows of `ceil(w / s)` values.
struct Phases {
    buf: Vec<f32>,
    s: usize,
    h: usize,
    wp: usize,
}

impl Phases {
    fn new(g: &ConvGeometry) -> Self {
        let [_, _, h, w] = g.input;
        let (s, wp) = (g.stride, w.div_ceil(g.stride));
        Self {
            buf: vec![0f32; s * h * wp],
            s,
            h,
            wp,
        }
    }

    /// Index of value `j` of row `iy` of phase `q`.
    fn at(&self, q: usize, iy: usize, j: usize) -> usize {
        (q * self.h + iy) * self.wp + j
    }

    /// Splits a channel plane `[h, w]` into the phases.
    fn split(&mut self, plane: &[f32]) {
        let (h, wp) = (self.h, self.wp);
        let w = plane.len() / h;
        if self.s == 2 {
            let (even, odd) = self.buf.split_at_mut(h * wp);
            for (iy, row) in plane.chunks_exact(w).enumerate() {
                let (e, o) = (&mut even[iy * wp..][..wp], &mut odd[iy * wp..][..wp]);
                simd::deinterleave2(row, e, o);
                if w % 2 == 1 {
                    e[wp - 1] = row[w - 1];
                }
            }
            return;
        }
        for (iy, row) in plane.chunks_exact(w).enumerate() {
            for (j, vals) in row.chunks(self.s).enumerate() {
                for (q, &v) in vals.iter().enumerate() {
                    let i = self.at(q, iy, j);
                    self.buf[i] = v;
                }
            }
        }
    }

    /// Adds the phases into a channel plane `[h, w]` (the adjoint of [`Phases::split`]) and
    /// zeroes them.
    fn merge_into(&mut self, plane: &mut [f32]) {
        let (h, wp) = (self.h, self.wp);
        let w = plane.len() / h;
        if self.s == 2 {
            let (even, odd) = self.buf.split_at(h * wp);
            for (iy, row) in plane.chunks_exact_mut(w).enumerate() {
                let (e, o) = (&even[iy * wp..][..wp], &odd[iy * wp..][..wp]);
                simd::interleave2_add(e, o, row);
                if w % 2 == 1 {
                    row[w - 1] += e[wp - 1];
                }
            }
        } else {
            for (iy, row) in plane.chunks_exact_mut(w).enumerate() {
                for (j, vals) in row.chunks_mut(self.s).enumerate() {
                    for (q, v) in vals.iter_mut().enumerate() {
                        *v += self.buf[self.at(q, iy, j)];
                    }
                }
            }
        }
        self.buf.fill(0.0);
    }

    /// The run of `len` values of phase row `(q, iy)` from value `j`.
    fn run(&self, (q, iy, j): (usize, usize, usize), len: usize) -> &[f32] {
        &self.buf[self.at(q, iy, j)..][..len]
    }

    fn run_mut(&mut self, (q, iy, j): (usize, usize, usize), len: usize) -> &mut [f32] {
        let i = self.at(q, iy, j);
        &mut self.buf[i..][..len]
    }
}

impl ConvGeometry {
    /// Where kernel tap `(ky, kx)` reads for output row `y` from column `ox0`: the phase,
    /// the input row and the value in the phase row.
    fn source(&self, (ky, kx): (usize, usize), y: usize, ox0: usize) -> (usize, usize, usize) {
        let (s, [ph, pw]) = (self.stride, self.padding);
        let ix0 = ox0 * s + kx - pw;
        (ix0 % s, y * s + ky - ph, ix0 / s)
    }

    /// [`ConvGeometry::im2col`] for `stride > 1`.
    pub(super) fn im2col_strided(&self, x: &[f32], cols: &mut [f32], ld: usize, off: usize) {
        let [_, c, h, w] = self.input;
        let (ho, wo) = self.output_hw();
        let ([kh, kw], [ph, pw]) = (self.kernel, self.padding);
        let mut phases = Phases::new(self);
        for ci in 0..c {
            if ci + 1 < c {
                simd::prefetch_all(&x[(ci + 1) * h * w..][..h * w]);
            }
            phases.split(&x[ci * h * w..][..h * w]);
            for (k, (ky, kx)) in taps(kh, kw).enumerate() {
                let row = ci * kh * kw + k;
                let dst = &mut cols[row * ld + off..][..ho * wo];
                let (oy, ox) = (self.valid(ky, h, ho, ph), self.valid(kx, w, wo, pw));
                if !zero_outside(dst, (&oy, &ox), wo) {
                    continue;
                }
                for y in oy {
                    let r = &mut dst[y * wo..(y + 1) * wo];
                    r[..ox.start].fill(0.0);
                    r[ox.end..].fill(0.0);
                    let src = phases.run(self.source((ky, kx), y, ox.start), ox.len());
                    r[ox.clone()].copy_from_slice(src);
                }
            }
        }
    }

    /// [`ConvGeometry::col2im`] for `stride > 1`.
    pub(super) fn col2im_strided(&self, dcols: &mut [f32], ld: usize, off: usize, dx: &mut [f32]) {
        let [_, c, h, w] = self.input;
        let (ho, wo) = self.output_hw();
        let ([kh, kw], [ph, pw]) = (self.kernel, self.padding);
        let mut phases = Phases::new(self);
        for ci in 0..c {
            for (k, (ky, kx)) in taps(kh, kw).enumerate() {
                let row = ci * kh * kw + k;
                let src = &dcols[row * ld + off..][..ho * wo];
                let (oy, ox) = (self.valid(ky, h, ho, ph), self.valid(kx, w, wo, pw));
                for y in oy.clone().filter(|_| !ox.is_empty()) {
                    let at = self.source((ky, kx), y, ox.start);
                    let r = &src[y * wo..(y + 1) * wo];
                    simd::add_assign(phases.run_mut(at, ox.len()), &r[ox.clone()]);
                }
            }
            if ci + 1 < c {
                simd::prefetch_all(&dx[(ci + 1) * h * w..][..h * w]);
            }
            phases.merge_into(&mut dx[ci * h * w..][..h * w]);
        }
    }
}

/// The taps `(ky, kx)` of a `kh x kw` kernel, row-major.
fn taps(kh: usize, kw: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..kh).flat_map(move |ky| (0..kw).map(move |kx| (ky, kx)))
}
