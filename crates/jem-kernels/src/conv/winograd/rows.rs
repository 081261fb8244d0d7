//! Element-wise maps over rows of values, written so that they vectorize: the Winograd
//! transforms apply one small linear map to the values at each index of a few rows.

/// Values per block of [`blockwise`]: one AVX-512 register.
const LANES: usize = 16;

/// The block of [`LANES`] values of `r` from `e`, copied into registers.
#[inline(always)]
fn load(r: &[f32], e: usize) -> [f32; LANES] {
    *<&[f32; LANES]>::try_from(&r[e..e + LANES]).unwrap()
}

/// Stores a block of [`LANES`] values into `r` from `e`.
#[inline(always)]
fn store(r: &mut [f32], e: usize, v: [f32; LANES]) {
    *<&mut [f32; LANES]>::try_from(&mut r[e..e + LANES]).unwrap() = v;
}

/// `o = f(x)` element-wise over rows of values: `f` maps the `I` values at one index of the
/// input rows to the `O` values at that index of the output rows.
///
/// The rows run in blocks of [`LANES`] values loaded into local arrays before any store. With
/// a plain loop over the rows the compiler must prove the output rows disjoint from the input
/// rows, and whether it manages depends on its inlining elsewhere: both `A^T` and `B^T` have
/// fallen back to scalar code after unrelated changes (`BENCHMARKS.md`, session 13).
#[inline(always)]
pub(super) fn blockwise<const I: usize, const O: usize>(
    x: [&[f32]; I],
    mut o: [&mut [f32]; O],
    f: impl Fn([f32; I]) -> [f32; O],
) {
    let n = o[0].len();
    let blocks = n / LANES * LANES;
    for e in (0..blocks).step_by(LANES) {
        let mut v = [[0f32; LANES]; I];
        for k in 0..I {
            v[k] = load(x[k], e);
        }
        let mut out = [[0f32; LANES]; O];
        for l in 0..LANES {
            let mut vals = [0f32; I];
            for k in 0..I {
                vals[k] = v[k][l];
            }
            for (k, val) in f(vals).into_iter().enumerate() {
                out[k][l] = val;
            }
        }
        for (row, block) in o.iter_mut().zip(out) {
            store(row, e, block);
        }
    }
    for e in blocks..n {
        let mut vals = [0f32; I];
        for k in 0..I {
            vals[k] = x[k][e];
        }
        for (row, val) in o.iter_mut().zip(f(vals)) {
            row[e] = val;
        }
    }
}
