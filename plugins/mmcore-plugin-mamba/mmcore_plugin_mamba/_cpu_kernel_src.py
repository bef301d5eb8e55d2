"""C++ source of the ``cpu_kernel`` selective-scan backend (compiled on first use by ``_cpu_kernel``).

Why a string: it ships inside the Python package with no package-data configuration, and its hash
names the cached shared library, so an edit here rebuilds it.

The kernel includes no torch header (a plain ``g++`` call compiles it in about a second, where a
torch extension takes ~30 s to parse the torch headers) and exports a C ABI called through
``ctypes`` with raw pointers of contiguous tensors that ``_cpu_kernel`` allocates and checks.
Layouts: u, delta, y, du, ddelta (batch, dim, L); A, dA (dim, N); B, C, and the per-thread
partial sums dB_parts, dC_parts (threads, batch, groups, L, N) time-major, so that the loop over the
state size N is contiguous and vectorises. work is (threads, work_stride): each thread's scratch
(forward: the state h, N values; backward: h_{-1..L-1}, a_{0..L-1}, the adjoint g and a dA
accumulator, (2L + 3) N values) starts on its own 64-byte cache line (``_cpu_kernel.work_stride``),
so threads never write to a shared line.
"""

SOURCE = r"""
#include <cstdint>
#include <cstring>
#include <omp.h>

namespace {

// exp(max(x, -60)) in float: Cody-Waite range reduction and the degree-6 polynomial of Cephes expf
// (max relative error ~2e-7). Branch-free so that it vectorises. The floor e^-60 ~ 9e-27 is
// numerically zero for the state, and keeps products such as g * a * h out of the denormal range
// (a denormal operand or result slows a multiply ~100x on x86).
inline float exp_fast(float x) {
  x = x < -60.0f ? -60.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln 2)
  float r = x - k * 0.693359375f;
  r = r + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;  // 2^k
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}
inline double exp_fast(double x) { return __builtin_exp(x); }

// y[b, d, t] = sum_n C[t, n] h_t[n],  h_t = exp(delta_t A[d]) * h_{t-1} + delta_t u_t B[t]
template <typename T>
void scan_fwd(const T* u, const T* delta, const T* A, const T* B, const T* C, T* y, T* work,
              int64_t work_stride, int64_t batch, int64_t dim, int64_t groups, int64_t L, int64_t N,
              int threads) {
  const int64_t per_group = dim / groups;
#pragma omp parallel num_threads(threads)
  {
    T* h = work + omp_get_thread_num() * work_stride;
#pragma omp for schedule(dynamic, 1)  // a descheduled thread delays one item, not half the work
    for (int64_t bd = 0; bd < batch * dim; ++bd) {
      const int64_t b = bd / dim, d = bd % dim, off = (b * groups + d / per_group) * L * N;
      const T *ur = u + bd * L, *dr = delta + bd * L, *Ad = A + d * N;
      T* yr = y + bd * L;
      for (int64_t n = 0; n < N; ++n) h[n] = T(0);
      for (int64_t t = 0; t < L; ++t) {
        const T dt = dr[t], dtu = dt * ur[t];
        const T *Bt = B + off + t * N, *Ct = C + off + t * N;
        T acc = T(0);
#pragma omp simd reduction(+ : acc)
        for (int64_t n = 0; n < N; ++n) {
          h[n] = exp_fast(dt * Ad[n]) * h[n] + dtu * Bt[n];
          acc += h[n] * Ct[n];
        }
        yr[t] = acc;
      }
    }
  }
}

// Reverse-time adjoint of scan_fwd. Per channel d (one thread owns d, so dA needs no atomics):
// recompute h_t and a_t into the thread's work rows, then run g_t = C_t dy_t + a_{t+1} g_{t+1}
// backwards. dB, dC sum over the channels of a group: each thread adds into its own partial.
template <typename T>
void scan_bwd(const T* u, const T* delta, const T* A, const T* B, const T* C, const T* dy,
              T* du, T* ddelta, T* dA, T* dB_parts, T* dC_parts, T* work, int64_t work_stride,
              int64_t batch, int64_t dim, int64_t groups, int64_t L, int64_t N, int threads) {
  const int64_t per_group = dim / groups, part = batch * groups * L * N;
#pragma omp parallel num_threads(threads)
  {
    const int64_t tid = omp_get_thread_num();
    T *dBp = dB_parts + tid * part, *dCp = dC_parts + tid * part;
    T* hs = work + tid * work_stride;  // rows: h_{-1} = 0, h_0 .. h_{L-1}
    T* as = hs + (L + 1) * N;          // rows: a_0 .. a_{L-1}
    T* g = as + L * N;                 // the carried adjoint a_{t+1} g_{t+1}
    T* dA_acc = g + N;                 // this channel's dA, summed over batch and time
    for (int64_t n = 0; n < N; ++n) hs[n] = T(0);
#pragma omp for schedule(dynamic, 1)  // a descheduled thread delays one item, not half the work
    for (int64_t d = 0; d < dim; ++d) {
      const T* Ad = A + d * N;
      for (int64_t n = 0; n < N; ++n) dA_acc[n] = T(0);
      for (int64_t b = 0; b < batch; ++b) {
        const int64_t bd = b * dim + d, off = (b * groups + d / per_group) * L * N;
        const T *ur = u + bd * L, *dr = delta + bd * L, *dyr = dy + bd * L;
        for (int64_t t = 0; t < L; ++t) {
          const T dt = dr[t], dtu = dt * ur[t];
          const T* Bt = B + off + t * N;
          const T* hp = hs + t * N;
          T *ht = hs + (t + 1) * N, *at = as + t * N;
#pragma omp simd
          for (int64_t n = 0; n < N; ++n) {
            at[n] = exp_fast(dt * Ad[n]);
            ht[n] = at[n] * hp[n] + dtu * Bt[n];
          }
        }
        for (int64_t n = 0; n < N; ++n) g[n] = T(0);
        for (int64_t t = L - 1; t >= 0; --t) {
          const T dt = dr[t], ut = ur[t], dyt = dyr[t], dtu = dt * ut;
          const T *Bt = B + off + t * N, *Ct = C + off + t * N;
          const T *hp = hs + t * N, *ht = hs + (t + 1) * N, *at = as + t * N;
          T *dBt = dBp + off + t * N, *dCt = dCp + off + t * N;
          T sum_qA = T(0), sum_gB = T(0);
#pragma omp simd reduction(+ : sum_qA, sum_gB)
          for (int64_t n = 0; n < N; ++n) {
            const T gn = g[n] + dyt * Ct[n];  // dL/dh_t
            const T q = gn * at[n] * hp[n];   // dL/d(log a_t)
            dCt[n] += dyt * ht[n];
            dBt[n] += gn * dtu;
            dA_acc[n] += dt * q;
            sum_qA += q * Ad[n];
            sum_gB += gn * Bt[n];
            g[n] = gn * at[n];
          }
          ddelta[bd * L + t] = sum_qA + ut * sum_gB;
          du[bd * L + t] = dt * sum_gB;
        }
      }
      for (int64_t n = 0; n < N; ++n) dA[d * N + n] = dA_acc[n];
    }
  }
}

// The fused block scan, time-major: per batch row b, step t and channel d,
//   h = exp(dt[b,t,d] A[d]) h + dt u[b,t,d] B[b,t],  out[b,t,d] = (<C[b,t], h> + D[d] u[b,t,d]) gate[b,t,d]
// with dt = softplus(delta + bias) and gate = silu(z) computed by the caller (vectorised; a scalar
// libm call per (t, d) here would cost more than the scan). u, dt, gate, B, C are read through row
// strides (views of the block's projections, no copies);
// out (B, L, E) is contiguous. Items are (batch row, block of `blk` channels); an item keeps its
// channels' states (blk x N values) in its thread's work row and writes them to chk (B, L/K, E, N)
// at every K-th step, the only state kept for the backward pass.
template <typename T>
void fused_fwd(const T* u, const T* delta, const T* A, const T* Bm, const T* Cm, const T* Dv,
               const T* z, T* out, T* chk, T* work, int64_t work_stride, int64_t batch, int64_t L, int64_t E,
               int64_t N, int64_t su, int64_t sdel, int64_t sbc, int64_t sz, int64_t K, int64_t blk,
               int threads) {
  const int64_t nblk = (E + blk - 1) / blk, nch = (L + K - 1) / K;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t item = 0; item < batch * nblk; ++item) {
    T* h = work + omp_get_thread_num() * work_stride;
    const int64_t b = item / nblk, d0 = (item % nblk) * blk, d1 = d0 + blk < E ? d0 + blk : E;
    for (int64_t i = 0; i < (d1 - d0) * N; ++i) h[i] = T(0);
    for (int64_t t = 0; t < L; ++t) {
      if (t % K == 0) std::memcpy(chk + ((b * nch + t / K) * E + d0) * N, h, (d1 - d0) * N * sizeof(T));
      const int64_t row = b * L + t;
      const T *Bt = Bm + row * sbc, *Ct = Cm + row * sbc;
      for (int64_t d = d0; d < d1; ++d) {
        const T dt = delta[row * sdel + d], ut = u[row * su + d], dtu = dt * ut;
        const T* Ad = A + d * N;
        T* hd = h + (d - d0) * N;
        T acc = T(0);
#pragma omp simd reduction(+ : acc)
        for (int64_t n = 0; n < N; ++n) {
          hd[n] = exp_fast(dt * Ad[n]) * hd[n] + dtu * Bt[n];
          acc += hd[n] * Ct[n];
        }
        const T y = acc + (Dv ? Dv[d] * ut : T(0));
        out[row * E + d] = z ? y * z[row * sz + d] : y;
      }
    }
  }
}

// Reverse-time adjoint of fused_fwd. Per item, chunk by chunk from the last: recompute the chunk's
// decays and states from chk into the work row (h_{t0-1} .. h_{t1-1}, a_{t0} .. a_{t1-1}), then walk
// the chunk backwards with the adjoint g_t = C_t dy_t + a_{t+1} g_{t+1}. dA_parts (B, E, N) and
// dD_parts (B, E) are owned by the item's channels; dB, dC sum over channels, so each thread adds
// into its own partial (threads, B, L, N). ddelta, dz are the gradients of dt and of the gate.
template <typename T>
void fused_bwd(const T* u, const T* delta, const T* A, const T* Bm, const T* Cm, const T* Dv,
               const T* z, const T* dout, const T* chk, T* du, T* ddelta, T* dz, T* dA_parts, T* dD_parts,
               T* dB_parts, T* dC_parts, T* work, int64_t work_stride, int64_t batch, int64_t L, int64_t E,
               int64_t N, int64_t su, int64_t sdel, int64_t sbc, int64_t sz, int64_t K, int64_t blk,
               int threads) {
  const int64_t nblk = (E + blk - 1) / blk, nch = (L + K - 1) / K, part = batch * L * N;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t item = 0; item < batch * nblk; ++item) {
    const int64_t tid = omp_get_thread_num();
    const int64_t b = item / nblk, d0 = (item % nblk) * blk, d1 = d0 + blk < E ? d0 + blk : E;
    const int64_t nd = d1 - d0, row_len = nd * N;
    T* hs = work + tid * work_stride;  // rows h_{t0-1} .. h_{t1-1}, each nd x N
    T* as = hs + (K + 1) * row_len;    // rows a_{t0} .. a_{t1-1}
    T* g = as + K * row_len;           // the carried adjoint a_{t+1} g_{t+1}
    T *dBp = dB_parts + tid * part, *dCp = dC_parts + tid * part;
    T* dA = dA_parts + (b * E + d0) * N;
    for (int64_t i = 0; i < row_len; ++i) { g[i] = T(0); dA[i] = T(0); }
    if (dD_parts) for (int64_t d = d0; d < d1; ++d) dD_parts[b * E + d] = T(0);
    for (int64_t c = nch - 1; c >= 0; --c) {
      const int64_t t0 = c * K, t1 = t0 + K < L ? t0 + K : L;
      std::memcpy(hs, chk + ((b * nch + c) * E + d0) * N, row_len * sizeof(T));
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t row = b * L + t;
        const T* Bt = Bm + row * sbc;
        for (int64_t d = d0; d < d1; ++d) {
          const T dt = delta[row * sdel + d], dtu = dt * u[row * su + d];
          const T* Ad = A + d * N;
          const T* hp = hs + (t - t0) * row_len + (d - d0) * N;
          T *ht = hs + (t - t0 + 1) * row_len + (d - d0) * N, *at = as + (t - t0) * row_len + (d - d0) * N;
#pragma omp simd
          for (int64_t n = 0; n < N; ++n) {
            at[n] = exp_fast(dt * Ad[n]);
            ht[n] = at[n] * hp[n] + dtu * Bt[n];
          }
        }
      }
      for (int64_t t = t1 - 1; t >= t0; --t) {
        const int64_t row = b * L + t;
        const T *Bt = Bm + row * sbc, *Ct = Cm + row * sbc;
        T *dBt = dBp + row * N, *dCt = dCp + row * N;
        for (int64_t d = d0; d < d1; ++d) {
          const T dt = delta[row * sdel + d], ut = u[row * su + d], dtu = dt * ut;
          const T* Ad = A + d * N;
          const T* hp = hs + (t - t0) * row_len + (d - d0) * N;
          const T *ht = hp + row_len, *at = as + (t - t0) * row_len + (d - d0) * N;
          T* gd = g + (d - d0) * N;
          T* dAd = dA + (d - d0) * N;
          T dyc = dout[row * E + d];
          if (z) {
            T yc = Dv ? Dv[d] * ut : T(0);
#pragma omp simd reduction(+ : yc)
            for (int64_t n = 0; n < N; ++n) yc += Ct[n] * ht[n];
            dz[row * E + d] = dyc * yc;
            dyc *= z[row * sz + d];
          }
          T sum_qA = T(0), sum_gB = T(0);
#pragma omp simd reduction(+ : sum_qA, sum_gB)
          for (int64_t n = 0; n < N; ++n) {
            const T gn = gd[n] + dyc * Ct[n];  // dL/dh_t
            const T q = gn * at[n] * hp[n];    // dL/d(log a_t)
            dCt[n] += dyc * ht[n];
            dBt[n] += gn * dtu;
            dAd[n] += dt * q;
            sum_qA += q * Ad[n];
            sum_gB += gn * Bt[n];
            gd[n] = gn * at[n];
          }
          const T ddt = sum_qA + ut * sum_gB;
          ddelta[row * E + d] = ddt;
          du[row * E + d] = dt * sum_gB + (Dv ? dyc * Dv[d] : T(0));
          if (dD_parts) dD_parts[b * E + d] += dyc * ut;
        }
      }
    }
  }
}

}  // namespace

#define MMCORE_SCAN_EXPORT(T, SUFFIX)                                                              \
  extern "C" void mmcore_scan_fwd_##SUFFIX(const T* u, const T* delta, const T* A, const T* B,     \
                                           const T* C, T* y, T* work, int64_t work_stride,        \
                                           int64_t batch, int64_t dim, int64_t groups, int64_t L, \
                                           int64_t N, int threads) {                               \
    scan_fwd<T>(u, delta, A, B, C, y, work, work_stride, batch, dim, groups, L, N, threads);       \
  }                                                                                                \
  extern "C" void mmcore_scan_bwd_##SUFFIX(                                                        \
      const T* u, const T* delta, const T* A, const T* B, const T* C, const T* dy, T* du,          \
      T* ddelta, T* dA, T* dB_parts, T* dC_parts, T* work, int64_t work_stride, int64_t batch,     \
      int64_t dim, int64_t groups, int64_t L, int64_t N, int threads) {                            \
    scan_bwd<T>(u, delta, A, B, C, dy, du, ddelta, dA, dB_parts, dC_parts, work, work_stride,      \
                batch, dim, groups, L, N, threads);                                                \
  }

#define MMCORE_FUSED_EXPORT(T, SUFFIX)                                                              \
  extern "C" void mmcore_fused_fwd_##SUFFIX(                                                        \
      const T* u, const T* delta, const T* A, const T* Bm, const T* Cm, const T* Dv,                 \
      const T* z, T* out, T* chk, T* work, int64_t work_stride, int64_t batch, int64_t L, int64_t E, \
      int64_t N, int64_t su, int64_t sdel, int64_t sbc, int64_t sz, int64_t K, int64_t blk,          \
      int threads) {                                                                               \
    fused_fwd<T>(u, delta, A, Bm, Cm, Dv, z, out, chk, work, work_stride, batch, L, E, N, su,       \
                 sdel, sbc, sz, K, blk, threads);                                                  \
  }                                                                                                \
  extern "C" void mmcore_fused_bwd_##SUFFIX(                                                        \
      const T* u, const T* delta, const T* A, const T* Bm, const T* Cm, const T* Dv,                 \
      const T* z, const T* dout, const T* chk, T* du, T* ddelta, T* dz, T* dA_parts, T* dD_parts,    \
      T* dB_parts, T* dC_parts, T* work, int64_t work_stride, int64_t batch, int64_t L, int64_t E,   \
      int64_t N, int64_t su, int64_t sdel, int64_t sbc, int64_t sz, int64_t K, int64_t blk,          \
      int threads) {                                                                               \
    fused_bwd<T>(u, delta, A, Bm, Cm, Dv, z, dout, chk, du, ddelta, dz, dA_parts, dD_parts,         \
                 dB_parts, dC_parts, work, work_stride, batch, L, E, N, su, sdel, sbc, sz, K, blk,  \
                 threads);                                                                         \
  }

MMCORE_SCAN_EXPORT(float, f32)
MMCORE_SCAN_EXPORT(double, f64)
MMCORE_FUSED_EXPORT(float, f32)
MMCORE_FUSED_EXPORT(double, f64)
"""
