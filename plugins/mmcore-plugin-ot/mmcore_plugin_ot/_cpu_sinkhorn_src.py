"""C++ source of the one-pass Sinkhorn iterations on CPU (compiled on first use by ``_cpu_sinkhorn``).

A string, built by :func:`mmcore.native.build_library` (no torch header, a C ABI called through
``ctypes`` with raw pointers of contiguous tensors that ``_cpu_sinkhorn`` allocates and checks).

``mmcore_sinkhorn_{f32,f64}`` runs ``steps`` iterations of ``sinkhorn._iterate``'s mat-vec loop on
the stabilised kernels K (B, n, m), pair by pair. One iteration, as the torch loop orders it:
v = b / (u K), then u = a / (K v). Here the column sums u K of an iteration are accumulated in the
same pass over K that computes the new u: for each row i, r_i = K_i . v, u_i = a_i / r_i, and
col += u_i K_i while K_i is still in L1. So an iteration reads K once, where the torch loop reads it
twice. A masked row (row_ok[i] == 0) or column divides by 1 (torch's ``_keep(x, ok, 1.0)``); null
masks mean every row/column is kept. Inputs: u0 (B, n) the scalings the block starts from, col
(B, m) = u0 K when ``col_known`` (else computed first); outputs: u, v (the last iteration's), col =
u K (the next iteration's column sums, and the error check's). Pairs are split over ``threads``
OpenMP threads (none started when ``threads`` is 1).
"""

SOURCE = r"""
#include <cmath>
#include <cstdint>
#include <omp.h>

namespace {

constexpr int64_t ROWS = 8;

// a_i / r_i, or a_i / 1 on a masked row (torch's _keep(row, row_ok, 1.0))
template <typename T>
inline T row_scale(T ai, T r, const uint8_t* row_ok, int64_t i) {
  return ai / ((row_ok == nullptr || row_ok[i]) ? r : T(1));
}

template <typename T>
void pair_steps(const T* K, const T* a, const T* b, const T* b_err, const uint8_t* row_ok, const uint8_t* col_ok,
                const T* u0, T* u, T* v, T* col, T* stats, int64_t n, int64_t m, int64_t steps, int col_known) {
  if (!col_known) {
    for (int64_t j = 0; j < m; ++j) col[j] = T(0);
    for (int64_t i = 0; i < n; ++i) {
      const T* Ki = K + i * m;
      const T ui = u0[i];
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) col[j] += ui * Ki[j];
    }
  }
  for (int64_t s = 0; s < steps; ++s) {
    for (int64_t j = 0; j < m; ++j) {
      const T c = (col_ok == nullptr || col_ok[j]) ? col[j] : T(1);
      v[j] = b[j] / c;
      col[j] = T(0);
    }
    int64_t i = 0;
    for (; i + ROWS <= n; i += ROWS) {  // ROWS rows at a time: v and col cross the registers once per block
      const T* Kr = K + i * m;
      T r0 = T(0), r1 = T(0), r2 = T(0), r3 = T(0), r4 = T(0), r5 = T(0), r6 = T(0), r7 = T(0);
#pragma omp simd reduction(+ : r0, r1, r2, r3, r4, r5, r6, r7)
      for (int64_t j = 0; j < m; ++j) {
        const T vj = v[j];
        r0 += Kr[j] * vj;
        r1 += Kr[m + j] * vj;
        r2 += Kr[2 * m + j] * vj;
        r3 += Kr[3 * m + j] * vj;
        r4 += Kr[4 * m + j] * vj;
        r5 += Kr[5 * m + j] * vj;
        r6 += Kr[6 * m + j] * vj;
        r7 += Kr[7 * m + j] * vj;
      }
      const T r[ROWS] = {r0, r1, r2, r3, r4, r5, r6, r7};
      T w[ROWS];
      for (int64_t k = 0; k < ROWS; ++k) u[i + k] = w[k] = row_scale(a[i + k], r[k], row_ok, i + k);
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) {  // a chain of multiply-adds: one FP op per K entry, as in the dot
        T c = col[j];
        c += w[0] * Kr[j];
        c += w[1] * Kr[m + j];
        c += w[2] * Kr[2 * m + j];
        c += w[3] * Kr[3 * m + j];
        c += w[4] * Kr[4 * m + j];
        c += w[5] * Kr[5 * m + j];
        c += w[6] * Kr[6 * m + j];
        c += w[7] * Kr[7 * m + j];
        col[j] = c;
      }
    }
    for (; i < n; ++i) {
      const T* Ki = K + i * m;
      T r = T(0);
#pragma omp simd reduction(+ : r)
      for (int64_t j = 0; j < m; ++j) r += Ki[j] * v[j];
      const T ui = row_scale(a[i], r, row_ok, i);
      u[i] = ui;
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) col[j] += ui * Ki[j];
    }
  }
  // the block's check: column error ||v * col - b_err||_2, and reach = max |log s| over the kept scalings s,
  // as log max(s, 1/s) (one log per pair; inf when a scaling is <= 0 or NaN, where torch's |log s| is inf/NaN)
  T sq = T(0), top = T(1);
  bool bad = false;
  for (int64_t j = 0; j < m; ++j) {
    const T d = v[j] * col[j] - b_err[j];
    sq += d * d;
    if (col_ok == nullptr || col_ok[j]) {
      const T x = v[j];
      bad |= !(x > T(0));
      const T w = x > T(1) / x ? x : T(1) / x;
      top = w > top ? w : top;
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    if (row_ok == nullptr || row_ok[i]) {
      const T x = u[i];
      bad |= !(x > T(0));
      const T w = x > T(1) / x ? x : T(1) / x;
      top = w > top ? w : top;
    }
  }
  stats[0] = std::sqrt(sq);
  stats[1] = bad ? T(INFINITY) : std::log(top);
}

// One pair's sweep: blocks done[p], done[p] + 1, ... of sizes[k] iterations, each from the previous block's state
// (block 0 from u0 and, when col_known, col0), into the slots of block k: U (nb, B, n), V and COL (nb, B, m),
// STATS (nb, B, 2). It runs at least up to block `target`, then on while this pair's own check allows the
// block to be needed: reach <= half_limit (no absorption, no log-domain redo) and err >= tol (no stop).
template <typename T>
void pair_sweep(const T* K, const T* a, const T* b, const T* b_err, const uint8_t* row_ok, const uint8_t* col_ok,
                const T* u0, const T* col0, int col_known, const int64_t* sizes, int64_t nb, int64_t target,
                T* U, T* V, T* COL, T* STATS, int64_t* done, T half_limit, T tol, int64_t B, int64_t n, int64_t m,
                int64_t p) {
  int64_t k = done[p];
  while (k < nb) {
    T* col = COL + (k * B + p) * m;
    const T* prev_col = k ? COL + ((k - 1) * B + p) * m : col0;
    const bool known = k > 0 || col_known;
    if (known)
      for (int64_t j = 0; j < m; ++j) col[j] = prev_col[j];
    const T* start = k ? U + ((k - 1) * B + p) * n : u0;
    T* stats = STATS + (k * B + p) * 2;
    pair_steps<T>(K, a, b, b_err, row_ok, col_ok, start, U + (k * B + p) * n, V + (k * B + p) * m, col, stats, n, m,
                  sizes[k], known);
    ++k;
    if (k > target && !(stats[1] <= half_limit && stats[0] >= tol)) break;
  }
  done[p] = k;
}

// Every pair with done[p] <= target, in parallel over pairs; returns the fewest blocks any pair has done.
template <typename T>
int64_t batch_sweep(const T* K, const T* a, const T* b, const T* b_err, const uint8_t* row_ok, const uint8_t* col_ok,
                    const T* u0, const T* col0, int col_known, const int64_t* sizes, int64_t nb, int64_t target, T* U,
                    T* V, T* COL, T* STATS, int64_t* done, T half_limit, T tol, int64_t B, int64_t n, int64_t m,
                    int threads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
  for (int64_t p = 0; p < B; ++p) {
    if (done[p] > target) continue;
    pair_sweep<T>(K + p * n * m, a + p * n, b + p * m, b_err + p * m, row_ok ? row_ok + p * n : nullptr,
                  col_ok ? col_ok + p * m : nullptr, u0 + p * n, col0 ? col0 + p * m : nullptr, col_known, sizes, nb,
                  target, U, V, COL, STATS, done, half_limit, tol, B, n, m, p);
  }
  int64_t fewest = nb;
  for (int64_t p = 0; p < B; ++p) fewest = done[p] < fewest ? done[p] : fewest;
  return fewest;
}

}  // namespace

extern "C" {

int64_t mmcore_sinkhorn_f32(const float* K, const float* a, const float* b, const float* b_err,
                            const uint8_t* row_ok, const uint8_t* col_ok, const float* u0, const float* col0,
                            int col_known, const int64_t* sizes, int64_t nb, int64_t target, float* U, float* V,
                            float* COL, float* STATS, int64_t* done, double half_limit, double tol, int64_t B,
                            int64_t n, int64_t m, int threads) {
  return batch_sweep<float>(K, a, b, b_err, row_ok, col_ok, u0, col0, col_known, sizes, nb, target, U, V, COL, STATS,
                            done, float(half_limit), float(tol), B, n, m, threads);
}

int64_t mmcore_sinkhorn_f64(const double* K, const double* a, const double* b, const double* b_err,
                            const uint8_t* row_ok, const uint8_t* col_ok, const double* u0, const double* col0,
                            int col_known, const int64_t* sizes, int64_t nb, int64_t target, double* U, double* V,
                            double* COL, double* STATS, int64_t* done, double half_limit, double tol, int64_t B,
                            int64_t n, int64_t m, int threads) {
  return batch_sweep<double>(K, a, b, b_err, row_ok, col_ok, u0, col0, col_known, sizes, nb, target, U, V, COL,
                             STATS, done, half_limit, tol, B, n, m, threads);
}

}  // extern "C"
"""
