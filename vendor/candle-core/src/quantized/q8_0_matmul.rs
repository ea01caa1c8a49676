//! careloop patch: a Q8_0 x Q8_0 matmul that streams each weight row once for all rows of
//! the activation (AVX2).
//!
//! Upstream `k_quants::matmul` loops over the activation rows outside its parallel loop, so a
//! batch of `m` rows (a prompt, or `m` sequences decoded together) reads every weight `m`
//! times, and it converts both f16 block scales for every block product. Here each task takes
//! a range of weight rows; each weight block is loaded once and multiplied with up to four
//! activation rows held in L1/L2, whose scales were converted to f32 once. Each result is the
//! same sum in the same block order as upstream's `vec_dot_q8_0_q8_0`, whatever the number of
//! activation rows (so batching does not change greedy output).
use super::k_quants::{BlockQ8_0, GgmlType, QK8_0};
use half::f16;
use rayon::prelude::*;
use std::arch::x86_64::*;

/// Weight rows per task at least (fewer tasks than this is not worth a fork).
const MIN_ROWS_PER_TASK: usize = 16;
/// Tasks per rayon thread, so that work stealing can balance an uneven split.
const TASKS_PER_THREAD: usize = 4;

struct DstPtr(*mut f32);
// SAFETY: tasks write disjoint columns `rows` of each destination row (see `matmul`).
unsafe impl Send for DstPtr {}
unsafe impl Sync for DstPtr {}

/// `dst (m x n) = lhs (m x k) * rhs_t^T` where `rhs_t` is `n` rows of `k / 32` Q8_0 blocks.
/// Returns `false` (nothing written) when `k` is not a multiple of the block size.
pub(crate) fn matmul(
    (m, k, n): (usize, usize, usize),
    lhs: &[f32],
    rhs_t: &[BlockQ8_0],
    dst: &mut [f32],
) -> bool {
    if !k.is_multiple_of(QK8_0) || lhs.len() < m * k || dst.len() < m * n {
        return false;
    }
    let kb = k / QK8_0;
    if rhs_t.len() < n * kb {
        return false;
    }
    let mut ys = vec![BlockQ8_0::zeros(); m * kb];
    for (row, ys) in lhs.chunks_exact(k).zip(ys.chunks_exact_mut(kb)).take(m) {
        BlockQ8_0::from_float(row, ys);
    }
    let yd: Vec<f32> = ys.iter().map(|b| f16::to_f32(b.d)).collect();

    let threads = rayon::current_num_threads().max(1);
    let rows_per_task = n
        .div_ceil(threads * TASKS_PER_THREAD)
        .max(MIN_ROWS_PER_TASK)
        .min(n.max(1));
    let tasks = n.div_ceil(rows_per_task);
    let out = DstPtr(dst.as_mut_ptr());
    let out = &out;
    let (ys, yd) = (&ys[..], &yd[..]);
    let run = |task: usize| {
        let start = task * rows_per_task;
        let end = (start + rows_per_task).min(n);
        // SAFETY: avx2/fma/f16c are enabled at compile time (the module's cfg); the slices
        // hold `n * kb` weight blocks and `m * kb` activation blocks (checked above); task
        // `task` writes only columns `start..end` of the `m` rows of `dst` (`m * n` long).
        unsafe { rows(rhs_t, kb, n, start..end, ys, yd, m, out.0) }
    };
    if tasks == 1 {
        run(0);
    } else {
        (0..tasks).into_par_iter().with_max_len(1).for_each(run);
    }
    true
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    let r = _mm_add_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

/// 8 i32 partial dot products of two blocks as f32 (`|x| * sign(y, x)`, as ggml and candle).
#[inline(always)]
unsafe fn block_dot(ax: __m256i, x: __m256i, y: __m256i) -> __m256 {
    let sy = _mm256_sign_epi8(y, x);
    let dot16 = _mm256_maddubs_epi16(ax, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(dot16, _mm256_set1_epi16(1)))
}

#[inline(always)]
unsafe fn load(b: &BlockQ8_0) -> __m256i {
    _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i)
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn rows(
    w: &[BlockQ8_0],
    kb: usize,
    n: usize,
    rows: std::ops::Range<usize>,
    ys: &[BlockQ8_0],
    yd: &[f32],
    m: usize,
    dst: *mut f32,
) {
    for r in rows {
        let wr = w.get_unchecked(r * kb..(r + 1) * kb);
        let mut j = 0;
        while j + 4 <= m {
            let y0 = ys.get_unchecked(j * kb..);
            let y1 = ys.get_unchecked((j + 1) * kb..);
            let y2 = ys.get_unchecked((j + 2) * kb..);
            let y3 = ys.get_unchecked((j + 3) * kb..);
            let d0 = yd.get_unchecked(j * kb..);
            let d1 = yd.get_unchecked((j + 1) * kb..);
            let d2 = yd.get_unchecked((j + 2) * kb..);
            let d3 = yd.get_unchecked((j + 3) * kb..);
            let mut a0 = _mm256_setzero_ps();
            let mut a1 = _mm256_setzero_ps();
            let mut a2 = _mm256_setzero_ps();
            let mut a3 = _mm256_setzero_ps();
            for (b, wb) in wr.iter().enumerate() {
                let x = load(wb);
                let ax = _mm256_sign_epi8(x, x);
                let dw = f16::to_f32(wb.d);
                a0 = _mm256_fmadd_ps(
                    _mm256_set1_ps(dw * d0.get_unchecked(b)),
                    block_dot(ax, x, load(y0.get_unchecked(b))),
                    a0,
                );
                a1 = _mm256_fmadd_ps(
                    _mm256_set1_ps(dw * d1.get_unchecked(b)),
                    block_dot(ax, x, load(y1.get_unchecked(b))),
                    a1,
                );
                a2 = _mm256_fmadd_ps(
                    _mm256_set1_ps(dw * d2.get_unchecked(b)),
                    block_dot(ax, x, load(y2.get_unchecked(b))),
                    a2,
                );
                a3 = _mm256_fmadd_ps(
                    _mm256_set1_ps(dw * d3.get_unchecked(b)),
                    block_dot(ax, x, load(y3.get_unchecked(b))),
                    a3,
                );
            }
            *dst.add(j * n + r) = hsum(a0);
            *dst.add((j + 1) * n + r) = hsum(a1);
            *dst.add((j + 2) * n + r) = hsum(a2);
            *dst.add((j + 3) * n + r) = hsum(a3);
            j += 4;
        }
        while j < m {
            // The same products summed in the same order as one row of the 4-row tile, so a
            // row's result does not depend on how many rows were multiplied with it (a
            // sequence decodes to the same greedy tokens alone or batched with others).
            let y = ys.get_unchecked(j * kb..(j + 1) * kb);
            let d = yd.get_unchecked(j * kb..(j + 1) * kb);
            let mut a = _mm256_setzero_ps();
            for (b, wb) in wr.iter().enumerate() {
                let x = load(wb);
                let ax = _mm256_sign_epi8(x, x);
                a = _mm256_fmadd_ps(
                    _mm256_set1_ps(f16::to_f32(wb.d) * d.get_unchecked(b)),
                    block_dot(ax, x, load(y.get_unchecked(b))),
                    a,
                );
            }
            *dst.add(j * n + r) = hsum(a);
            j += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(m: usize, k: usize, n: usize, lhs: &[f32], rhs: &[BlockQ8_0]) -> Vec<f32> {
        let kb = k / QK8_0;
        let mut ys = vec![BlockQ8_0::zeros(); m * kb];
        for (row, ys) in lhs.chunks_exact(k).zip(ys.chunks_exact_mut(kb)) {
            BlockQ8_0::from_float(row, ys);
        }
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for c in 0..n {
                out[i * n + c] = BlockQ8_0::vec_dot_unopt(
                    k,
                    &rhs[c * kb..(c + 1) * kb],
                    &ys[i * kb..(i + 1) * kb],
                );
            }
        }
        out
    }

    #[test]
    fn agrees_with_the_scalar_dot_product_for_every_row_count() {
        let (k, n) = (96, 37);
        let weights: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 251) as f32 - 125.0) / 31.0).collect();
        let mut rhs = vec![BlockQ8_0::zeros(); n * k / QK8_0];
        BlockQ8_0::from_float(&weights, &mut rhs);
        for m in [1, 2, 3, 4, 5, 8, 9] {
            let lhs: Vec<f32> = (0..m * k).map(|i| ((i * 104729 % 199) as f32 - 99.0) / 17.0).collect();
            let want = reference(m, k, n, &lhs, &rhs);
            let mut got = vec![f32::NAN; m * n];
            assert!(matmul((m, k, n), &lhs, &rhs, &mut got));
            for (w, g) in want.iter().zip(&got) {
                assert!((w - g).abs() <= 1e-3 * w.abs().max(1.0), "m={m}: {w} vs {g}");
            }
        }
        // A row's result is bit-identical whether it is multiplied alone or with others.
        let lhs: Vec<f32> = (0..9 * k).map(|i| ((i * 31 % 97) as f32 - 48.0) / 7.0).collect();
        let mut all = vec![0f32; 9 * n];
        assert!(matmul((9, k, n), &lhs, &rhs, &mut all));
        for i in 0..9 {
            let mut one = vec![0f32; n];
            assert!(matmul((1, k, n), &lhs[i * k..(i + 1) * k], &rhs, &mut one));
            assert_eq!(one, all[i * n..(i + 1) * n], "row {i}");
        }
        let mut got = vec![0f32; 4];
        assert!(!matmul((1, 33, 4), &[0.0; 33], &rhs, &mut got), "k not a multiple of 32");
    }
}
