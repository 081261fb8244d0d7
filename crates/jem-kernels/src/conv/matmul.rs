//! Contiguous f32 access to candle CPU tensors and a strided GEMM on the `gemm` crate.

use std::cell::Cell;
use std::mem::MaybeUninit;

use candle_core::{CpuStorage, Layout, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

/// The contiguous f32 data of a custom op's CPU input; other dtypes and layouts are errors.
pub(crate) fn cpu_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: only f32 is supported");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: the input must be contiguous");
    };
    Ok(&data[start..end])
}

/// Runs `f` on the contiguous f32 data of a CPU tensor, without copying it when it is
/// already contiguous.
pub(crate) fn with_f32<R>(
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("expected a CPU tensor");
    };
    f(cpu_f32(cpu, layout, "with_f32")?)
}

/// A row-major matrix view for [`matmul`]: pointer, rows, columns, and whether it is
/// stored transposed (then element `(i, j)` is at `j * rows + i`).
pub(super) struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    transposed: bool,
}

impl<'a> Mat<'a> {
    /// A `rows x cols` matrix stored row by row.
    pub(super) fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        let transposed = false;
        Self {
            data,
            rows,
            cols,
            transposed,
        }
    }

    /// A `rows x cols` matrix stored column by column (the transpose of a row-major
    /// `cols x rows` one).
    pub(super) fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        let transposed = true;
        Self {
            data,
            rows,
            cols,
            transposed,
        }
    }

    /// The same matrix as a strided view.
    fn view(&self) -> View<'a> {
        let (rs, cs) = if self.transposed {
            (1, self.rows)
        } else {
            (self.cols, 1)
        };
        View {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            rs,
            cs,
        }
    }
}

/// `dst [m, n] (row-major) = accumulate * dst + a @ b`.
pub(super) fn matmul(dst: &mut [f32], a: Mat, b: Mat, accumulate: bool, par: Parallelism) {
    assert_eq!(dst.len(), a.rows * b.cols);
    gemm_view(dst, (b.cols, 1), a.view(), b.view(), accumulate, par)
}

/// A strided matrix view for [`gemm_view`]: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    pub(super) data: &'a [f32],
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) rs: usize,
    pub(super) cs: usize,
}

/// Whether every index of a `rows x cols` matrix with strides `(rs, cs)` is below `len`.
fn fits(rows: usize, cols: usize, (rs, cs): (usize, usize), len: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len
}

/// `dst = accumulate * dst + a @ b` for strided views; `dst` has `a.rows x b.cols` entries at
/// strides `(rs, cs)`, which must not overlap (one of the strides spans the other dimension).
pub(super) fn gemm_view(
    dst: &mut [f32],
    (rs, cs): (usize, usize),
    a: View,
    b: View,
    accumulate: bool,
    par: Parallelism,
) {
    let (m, n) = (a.rows, b.cols);
    let distinct = (m <= 1 || rs > (n.max(1) - 1) * cs) && (n <= 1 || cs >= 1)
        || (n <= 1 || cs > (m.max(1) - 1) * rs) && (m <= 1 || rs >= 1);
    assert!(a.cols == b.rows && distinct && fits(m, n, (rs, cs), dst.len()));
    assert!(fits(a.rows, a.cols, (a.rs, a.cs), a.data.len()));
    assert!(fits(b.rows, b.cols, (b.rs, b.cs), b.data.len()));
    // SAFETY: the asserts keep every index the strides describe inside the slices, no two
    // entries of `dst` share an address, and `dst` is borrowed mutably, so it aliases
    // neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            a.cols,
            dst.as_mut_ptr(),
            cs as isize,
            rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// A vector of `len` values built in parallel, `chunk` values at a time, without zero-filling
/// it first: each plane of `plane` values starts as `init(plane_index)`, then
/// `work(chunk_index, chunk)` runs on the chunk (on the thread that filled it, while it is in
/// cache).
pub(super) fn par_vec(
    len: usize,
    chunk: usize,
    (plane, init): (usize, impl Fn(usize) -> f32 + Sync),
    work: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    assert!(plane > 0 && chunk > 0 && chunk.is_multiple_of(plane));
    let fill = |i: usize, c: &mut [MaybeUninit<f32>]| {
        for (j, p) in c.chunks_mut(plane).enumerate() {
            p.fill(MaybeUninit::new(init(i * chunk / plane + j)));
        }
        // SAFETY: every element of `c` was written just above, and `MaybeUninit<f32>` has
        // the layout of `f32`
        let c = unsafe { &mut *(c as *mut [MaybeUninit<f32>] as *mut [f32]) };
        work(i, c);
    };
    // SAFETY: `fill` writes every element of each chunk
    unsafe { par_vec_uninit(len, chunk, fill) }
}

/// A vector of `len` values built in parallel, `chunk` values at a time, by `work(chunk_index,
/// chunk)` on uninitialized memory.
///
/// # Safety
/// `work` must write every element of each chunk it gets.
pub(super) unsafe fn par_vec_uninit(
    len: usize,
    chunk: usize,
    work: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    assert!(chunk > 0);
    let mut v: Vec<f32> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| work(i, c));
    // SAFETY: the chunks cover `0..len` and the caller's `work` wrote each (a panic in `work`
    // propagates out of `for_each` before this line)
    unsafe { v.set_len(len) };
    v
}

thread_local! {
    static SCRATCH: Cell<(Vec<f32>, Vec<f32>)> = Cell::default();
}

/// Runs `f` on two scratch buffers of `a` and `b` values kept per thread between calls (their
/// contents are left over from earlier calls). A nested call on the same thread, as when a
/// parallel GEMM runs another group while it waits, gets fresh buffers.
pub(super) fn with_scratch<R>(
    a: usize,
    b: usize,
    f: impl FnOnce(&mut [f32], &mut [f32]) -> R,
) -> R {
    let (mut va, mut vb) = SCRATCH.take();
    if va.len() < a {
        va.resize(a, 0.0);
    }
    if vb.len() < b {
        vb.resize(b, 0.0);
    }
    let r = f(&mut va[..a], &mut vb[..b]);
    SCRATCH.set((va, vb));
    r
}
