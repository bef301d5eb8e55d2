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
OpenMP threads (none started when ``threads`` is 1). The same pass over a pair can also build its first
kernel from the cost (exp2 in a vectorised form, within 1 ulp of torch's) just before iterating on it, and
write its plan when its check may end the solve, while the kernel is in cache.

``mmcore_check_{f32,f64}`` computes ``sinkhorn._check``'s statistics in one pass; ``mmcore_scale_{f32,f64}``
the plan from a kernel and its scalings in one pass.
"""

SOURCE = r"""
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <omp.h>

namespace {

constexpr int64_t ROWS = 8;

// 2^x in a form the compiler vectorises (std::exp2 is a scalar libm call at -O3 without -ffast-math), for x in
// [LO, HI] (callers clamp): x = k + f, k = round(x) (the low bits of x + 1.5 * 2^BITS), |f| <= 1/2; 2^f by its
// Taylor polynomial in Horner form (truncation < 5e-18 in double, < 6e-9 in float; within 1 ulp of torch's exp2);
// 2^k from exponent bits. LO is the smallest normal exponent; HI makes k = HI the exponent of inf, so that results
// from 2^(HI - 1/2) up are inf (torch's from 2^HI).
template <typename T>
struct Exp2 {
  using L = std::numeric_limits<T>;
  using I = std::conditional_t<sizeof(T) == 8, uint64_t, uint32_t>;
  static constexpr int BITS = L::digits - 1, DEGREE = L::digits > 24 ? 13 : 7;
  static constexpr I BIAS = L::max_exponent - 1;
  static constexpr T LO = T(1) - T(BIAS), HI = T(BIAS) + T(1);
  static constexpr T ROUND = T(1.5) * T(I(1) << BITS);
};
// ln(2)^d / d!
constexpr double EXP2_TAYLOR[14] = {1.0, 0.69314718055994530942, 0.24022650695910071233, 0.055504108664821579953,
                                    0.009618129107628477162, 0.0013333558146428443423, 0.00015403530393381609954,
                                    1.525273380405984028e-5, 1.3215486790144309488e-6, 1.0178086009239699727e-7,
                                    7.0549116208011233299e-9, 4.4455382718708114976e-10, 2.5678435993488205142e-11,
                                    1.3691488853904128881e-12};

template <typename T>
inline T exp2v(T x) {
  using E = Exp2<T>;
  using I = typename E::I;
  const T shifted = x + E::ROUND, f = x - (shifted - E::ROUND);
  T p = T(EXP2_TAYLOR[E::DEGREE]);
  for (int d = E::DEGREE - 1; d >= 0; --d) p = p * f + T(EXP2_TAYLOR[d]);
  I bits;
  std::memcpy(&bits, &shifted, sizeof(T));
  bits = (bits + E::BIAS) << E::BITS;  // the low bits of `shifted` hold k; the shift drops the rest
  T scale;
  std::memcpy(&scale, &bits, sizeof(T));
  return p * scale;
}

// One pair's first stabilised kernel, as sinkhorn._LogKernel.exp(floor=...) computes it: K = 2^max(C * scale2,
// floor2) with scale2 = -log2(e) / reg, and 2^floor2 off the support (support == nullptr: everywhere on it).
template <typename T>
void pair_kernel(const T* C, const uint8_t* support, T scale2, T floor2, T* K, int64_t nm) {
  const T lo = floor2 > Exp2<T>::LO ? floor2 : Exp2<T>::LO, hi = Exp2<T>::HI;  // the floors here are far above LO
  if (support == nullptr) {
#pragma omp simd
    for (int64_t j = 0; j < nm; ++j) {
      const T x = C[j] * scale2, y = x > lo ? x : lo;
      K[j] = exp2v<T>(y < hi ? y : hi);
    }
  } else {
#pragma omp simd
    for (int64_t j = 0; j < nm; ++j) {
      const T x = support[j] ? C[j] * scale2 : lo, y = x > lo ? x : lo;
      K[j] = exp2v<T>(y < hi ? y : hi);
    }
  }
}

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

// The arguments of one call (batch_sweep): every array holds the whole batch, pair p at offset p times its
// per-pair size. K (B, n, m) the kernels; C (B, n, m) the costs or nullptr, support (B, n, m) or nullptr, scale2,
// floor2: see pair_kernel; a, row_ok, u0 (B, n); b, b_err, col_ok, col0 (B, m), col0 used when col_known; sizes
// (nb,) iterations per block; U (nb, B, n), V and COL (nb, B, m), STATS (nb, B, 2) the blocks' states; done (B,)
// blocks done per pair; P (B, n, m) the plans or nullptr, plan_at (B,) the block whose plan P holds (-1: none).
template <typename T>
struct Batch {
  T* K;
  const T* C;
  const uint8_t* support;
  T scale2, floor2;
  const T *a, *b, *b_err;
  const uint8_t *row_ok, *col_ok;
  const T *u0, *col0;
  int col_known;
  const int64_t* sizes;
  int64_t nb, target;
  T *U, *V, *COL, *STATS;
  int64_t* done;
  T* P;
  int64_t* plan_at;
  T half_limit, tol;
  int64_t B, n, m;
};

// One pair's sweep: blocks done[p], done[p] + 1, ... of sizes[k] iterations, each from the previous block's state
// (block 0 from u0 and, when col_known, col0), into the slots of block k. It runs at least up to block `target`,
// then on while this pair's own check allows the block to be needed: reach <= half_limit (no absorption, no
// log-domain redo) and err >= tol (no stop). With C, block 0 first writes the pair's kernel (pair_kernel), which
// then stays in cache. With P, a block whose check says the solver may stop there (err < tol, reach <= half_limit)
// also writes the pair's plan (K * u) * v while K is in cache, as sinkhorn._solve would after stopping there.
template <typename T>
void pair_sweep(const Batch<T>& s, int64_t p) {
  const int64_t n = s.n, m = s.m, B = s.B;
  T* K = s.K + p * n * m;
  const T *a = s.a + p * n, *b = s.b + p * m, *b_err = s.b_err + p * m;
  const uint8_t* row_ok = s.row_ok ? s.row_ok + p * n : nullptr;
  const uint8_t* col_ok = s.col_ok ? s.col_ok + p * m : nullptr;
  int64_t k = s.done[p];
  if (k == 0 && s.C != nullptr) pair_kernel<T>(s.C + p * n * m, s.support ? s.support + p * n * m : nullptr, s.scale2,
                                               s.floor2, K, n * m);
  while (k < s.nb) {
    T* col = s.COL + (k * B + p) * m;
    const T* prev_col = k ? s.COL + ((k - 1) * B + p) * m : (s.col0 ? s.col0 + p * m : nullptr);
    const bool known = k > 0 || s.col_known;
    if (known)
      for (int64_t j = 0; j < m; ++j) col[j] = prev_col[j];
    const T* start = k ? s.U + ((k - 1) * B + p) * n : s.u0 + p * n;
    T *u = s.U + (k * B + p) * n, *v = s.V + (k * B + p) * m, *stats = s.STATS + (k * B + p) * 2;
    pair_steps<T>(K, a, b, b_err, row_ok, col_ok, start, u, v, col, stats, n, m, s.sizes[k], known);
    const bool may_stop = stats[1] <= s.half_limit && stats[0] < s.tol;
    if (may_stop && s.P != nullptr) {
      T* P = s.P + p * n * m;
      for (int64_t i = 0; i < n; ++i) {
        const T ui = u[i];
#pragma omp simd
        for (int64_t j = 0; j < m; ++j) P[i * m + j] = (K[i * m + j] * ui) * v[j];
      }
      s.plan_at[p] = k;
    }
    ++k;
    if (k > s.target && !(stats[1] <= s.half_limit && stats[0] >= s.tol)) break;
  }
  s.done[p] = k;
}

// Every pair with done[p] <= target, in parallel over pairs; returns the fewest blocks any pair has done.
template <typename T>
int64_t batch_sweep(const Batch<T>& s, int threads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
  for (int64_t p = 0; p < s.B; ++p)
    if (s.done[p] <= s.target) pair_sweep<T>(s, p);
  int64_t fewest = s.nb;
  for (int64_t p = 0; p < s.B; ++p) fewest = s.done[p] < fewest ? s.done[p] : fewest;
  return fewest;
}

// sinkhorn._check's statistics in one pass over the cost, as its torch ops compute them (the sums in another
// order): out = [min a, min b, min C, max C (NaN if any entry is NaN, as amin / amax), largest finite |C|,
// the largest relative mass gap |sum a - sum b| / max(sum a, sum b, 1e-300) (sums in double; NaN counts as largest,
// as argmax), its pair, that pair's sum a and sum b].
template <typename T>
void check_stats(const T* a, const T* b, const T* C, int64_t B, int64_t n, int64_t m, double* out) {
  T lo = T(INFINITY), hi = T(-INFINITY), top = T(0), a_lo = T(INFINITY), b_lo = T(INFINITY);
  int64_t nan = 0, a_nan = 0, b_nan = 0;
  const int64_t count = B * n * m;
#pragma omp simd reduction(min : lo) reduction(max : hi, top) reduction(+ : nan)
  for (int64_t j = 0; j < count; ++j) {
    const T x = C[j], ax = x < T(0) ? -x : x;
    lo = x < lo ? x : lo;
    hi = x > hi ? x : hi;
    top = ax > top && ax < T(INFINITY) ? ax : top;
    nan += x != x;
  }
  for (int64_t j = 0; j < B * n; ++j) {
    a_lo = a[j] < a_lo ? a[j] : a_lo;
    a_nan += a[j] != a[j];
  }
  for (int64_t j = 0; j < B * m; ++j) {
    b_lo = b[j] < b_lo ? b[j] : b_lo;
    b_nan += b[j] != b[j];
  }
  double worst = 0.0, worst_sa = 0.0, worst_sb = 0.0;
  int64_t at = 0;
  for (int64_t p = 0; p < B; ++p) {
    double sa = 0.0, sb = 0.0;
    for (int64_t i = 0; i < n; ++i) sa += double(a[p * n + i]);
    for (int64_t j = 0; j < m; ++j) sb += double(b[p * m + j]);
    const double d = sa - sb, big = (sa != sa || sb != sb) ? double(NAN) : (sa > sb ? sa : sb);
    const double gap = (d < 0 ? -d : d) / (big < 1e-300 ? 1e-300 : big);  // NaN stays NaN
    if (p == 0 || (worst == worst && !(gap <= worst))) {  // the first largest, or the first NaN
      worst = gap, at = p, worst_sa = sa, worst_sb = sb;
    }
  }
  out[0] = a_nan ? double(NAN) : double(a_lo);
  out[1] = b_nan ? double(NAN) : double(b_lo);
  out[2] = nan ? double(NAN) : double(lo);
  out[3] = nan ? double(NAN) : double(hi);
  out[4] = double(top);
  out[5] = worst;
  out[6] = double(at);
  out[7] = worst_sa;
  out[8] = worst_sb;
}

// In place K[p, i, j] = (K[p, i, j] * u[p, i]) * v[p, j], the order of torch's K.mul_(u[..., None]).mul_(v[:, None]).
template <typename T>
void scale_rows_cols(T* K, const T* u, const T* v, int64_t B, int64_t n, int64_t m) {
  for (int64_t p = 0; p < B; ++p)
    for (int64_t i = 0; i < n; ++i) {
      T* Ki = K + (p * n + i) * m;
      const T ui = u[p * n + i];
      const T* vp = v + p * m;
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) Ki[j] = (Ki[j] * ui) * vp[j];
    }
}

}  // namespace

// The C entry points of one dtype T, suffixed S: mmcore_sinkhorn_S (batch_sweep; returns the fewest blocks any pair
// has done), mmcore_check_S (check_stats) and mmcore_scale_S (scale_rows_cols).
#define MMCORE_SINKHORN_ENTRIES(T, S)                                                                                  \
  int64_t mmcore_sinkhorn_##S(T* K, const T* C, const uint8_t* support, double scale2, double floor2, const T* a,      \
                              const T* b, const T* b_err, const uint8_t* row_ok, const uint8_t* col_ok, const T* u0,   \
                              const T* col0, int col_known, const int64_t* sizes, int64_t nb, int64_t target, T* U,    \
                              T* V, T* COL, T* STATS, int64_t* done, T* P, int64_t* plan_at, double half_limit,        \
                              double tol, int64_t B, int64_t n, int64_t m, int threads) {                              \
    const Batch<T> s{K, C, support, T(scale2), T(floor2), a, b, b_err, row_ok, col_ok, u0, col0,                       \
                     col_known, sizes, nb, target, U, V, COL, STATS, done, P, plan_at, T(half_limit), T(tol),          \
                     B, n, m};                                                                                         \
    return batch_sweep<T>(s, threads);                                                                                 \
  }                                                                                                                    \
  void mmcore_check_##S(const T* a, const T* b, const T* C, int64_t B, int64_t n, int64_t m, double* out) {            \
    check_stats<T>(a, b, C, B, n, m, out);                                                                             \
  }                                                                                                                    \
  void mmcore_scale_##S(T* K, const T* u, const T* v, int64_t B, int64_t n, int64_t m) {                               \
    scale_rows_cols<T>(K, u, v, B, n, m);                                                                              \
  }

extern "C" {

MMCORE_SINKHORN_ENTRIES(float, f32)
MMCORE_SINKHORN_ENTRIES(double, f64)

}  // extern "C"
"""
