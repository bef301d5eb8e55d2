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

The block's kernels (``lane_*`` scan with Δ bias, softplus, D skip and z gate folded in, ``conv_*``
causal depthwise conv + silu) work time-major, (batch, L, channels) with row strides, and vectorise
over W neighbouring channels (one 64-byte line) instead of over N: see the comments at each.
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

// Activations of the fused kernel, branch-free so that they vectorise. float: softplus(x) =
// max(x, 0) + log1p(e^-|x|) with log1p(y) = 2 atanh(y / (2 + y)) as an odd series (y <= 1, so the
// argument is <= 1/3 and 8 terms give ~1e-9); sigmoid from the same e^-|x|. double: libm, the
// formulas torch uses (softplus threshold 20).
inline float softplus_act(float x) {
  const float ax = x < 0.0f ? -x : x, y = exp_fast(-ax), s = y / (2.0f + y), s2 = s * s;
  float p = 1.0f / 15.0f;
  p = p * s2 + 1.0f / 13.0f;
  p = p * s2 + 1.0f / 11.0f;
  p = p * s2 + 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f;
  p = p * s2 + 1.0f / 3.0f;
  p = p * s2 + 1.0f;
  return (x > 0.0f ? x : 0.0f) + 2.0f * s * p;
}
inline float sigmoid_act(float x) {
  const float y = exp_fast(x < 0.0f ? x : -x), r = 1.0f / (1.0f + y);
  return x >= 0.0f ? r : y * r;
}
inline double softplus_act(double x) { return x > 20.0 ? x : __builtin_log1p(__builtin_exp(x)); }
inline double sigmoid_act(double x) { return 1.0 / (1.0 + __builtin_exp(-x)); }

// Lanes: the fused kernel vectorises over W neighbouring channels (one 64-byte line), which are
// contiguous in the time-major layout; a block of nd < W channels pads its lanes with zeros.
template <typename T, int W>
inline void load_lanes(T* dst, const T* src, int64_t nd) {
  if (nd == W) {
#pragma omp simd
    for (int j = 0; j < W; ++j) dst[j] = src[j];
  } else {
    for (int j = 0; j < W; ++j) dst[j] = j < nd ? src[j] : T(0);
  }
}
template <typename T, int W>
inline void store_lanes(T* dst, const T* src, int64_t nd) {
  for (int j = 0; j < W && j < nd; ++j) dst[j] = src[j];
}

// dt = softplus(delta + bias) (or delta + bias) and its derivative for W lanes of row `row`.
template <typename T, int W>
inline void step_sizes(const T* delta, const T* bias, int64_t nd, int softplus, T* dt, T* dsp) {
  T pre[W];
  load_lanes<T, W>(pre, delta, nd);
  if (bias) {
    for (int j = 0; j < W && j < nd; ++j) pre[j] += bias[j];
  }
#pragma omp simd
  for (int j = 0; j < W; ++j) {
    dt[j] = softplus ? softplus_act(pre[j]) : pre[j];
    if (dsp) dsp[j] = softplus ? sigmoid_act(pre[j]) : T(1);
  }
}

// The block's scan, time-major, with the Δ bias, softplus, D skip and z gate folded in: per batch
// row b, step t and channel d,
//   dt = softplus(delta[b,t,d] + bias[d]),  h = exp(dt A[d]) h + dt u[b,t,d] B[b,t],
//   out[b,t,d] = (<C[b,t], h> + D[d] u[b,t,d]) silu(z[b,t,d]).
// u, delta, z, B, C are read through row strides (views of the block's projections, no copies);
// out (B, L, E) is contiguous. An item is (batch row, block of W channels): the W channels run in
// the lanes of one vector, so the state (N x W values) and A stay in registers / L1 for the whole
// sequence and no sum crosses lanes. Every K-th state goes to chk (B, L/K, N, E), all the backward keeps.
template <typename T, int W>
void lane_fwd(const T* u, const T* delta, const T* bias, const T* A, const T* Bm, const T* Cm, const T* Dv,
              const T* z, T* out, T* chk, T* work, int64_t work_stride, int64_t batch, int64_t L, int64_t E,
              int64_t N, int64_t su, int64_t sdel, int64_t sbc, int64_t sz, int64_t K, int softplus,
              int threads) {
  const int64_t nblk = (E + W - 1) / W, nch = (L + K - 1) / K;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t item = 0; item < batch * nblk; ++item) {
    T* h = work + omp_get_thread_num() * work_stride;  // N x W
    T* At = h + N * W;                                  // A of the block, N x W
    const int64_t b = item / nblk, d0 = (item % nblk) * W, nd = E - d0 < W ? E - d0 : W;
    for (int64_t n = 0; n < N; ++n)
      for (int j = 0; j < W; ++j) {
        At[n * W + j] = j < nd ? A[(d0 + j) * N + n] : T(0);
        h[n * W + j] = T(0);
      }
    T Dl[W];
    for (int j = 0; j < W; ++j) Dl[j] = Dv && j < nd ? Dv[d0 + j] : T(0);
    for (int64_t t = 0; t < L; ++t) {
      if (t % K == 0)
        for (int64_t n = 0; n < N; ++n) store_lanes<T, W>(chk + ((b * nch + t / K) * N + n) * E + d0, h + n * W, nd);
      const int64_t row = b * L + t;
      const T *Bt = Bm + row * sbc, *Ct = Cm + row * sbc;
      T dt[W], ut[W], dtu[W], acc[W];
      step_sizes<T, W>(delta + row * sdel + d0, bias ? bias + d0 : nullptr, nd, softplus, dt, nullptr);
      load_lanes<T, W>(ut, u + row * su + d0, nd);
#pragma omp simd
      for (int j = 0; j < W; ++j) {
        dtu[j] = dt[j] * ut[j];
        acc[j] = Dl[j] * ut[j];
      }
      for (int64_t n = 0; n < N; ++n) {
        const T bn = Bt[n], cn = Ct[n];
        T *hn = h + n * W;
        const T* An = At + n * W;
#pragma omp simd
        for (int j = 0; j < W; ++j) {
          hn[j] = exp_fast(dt[j] * An[j]) * hn[j] + dtu[j] * bn;
          acc[j] += hn[j] * cn;
        }
      }
      if (z) {
        T zt[W];
        load_lanes<T, W>(zt, z + row * sz + d0, nd);
#pragma omp simd
        for (int j = 0; j < W; ++j) acc[j] *= zt[j] * sigmoid_act(zt[j]);
      }
      store_lanes<T, W>(out + row * E + d0, acc, nd);
    }
  }
}

// Reverse-time adjoint of lane_fwd. An item is (batch row, group of channel blocks); it walks the
// chunks from the last, and for each block of the group recomputes the chunk's states and decays
// from chk into the work rows, then runs the adjoint g_t = C_t dy_t + a_{t+1} g_{t+1} backwards
// (g and dA of every block of the group carried in the work row). dB, dC sum over channels: the
// blocks add lane-wise into a chunk buffer (K x N x W), summed across lanes once per chunk into the
// thread's own partial (threads, B, L, N). ddelta and dz are the gradients of the pre-activations
// (delta before bias and softplus, z before silu); du includes the D skip; dz has row stride sdz
// (the block writes it straight into the z half of in_proj's gradient).
template <typename T, int W>
void lane_bwd(const T* u, const T* delta, const T* bias, const T* A, const T* Bm, const T* Cm, const T* Dv,
              const T* z, const T* dout, const T* chk, T* du, T* ddelta, T* dz, T* dA_parts, T* dD_parts,
              T* dbias_parts, T* dB_parts, T* dC_parts, T* work, int64_t work_stride, int64_t batch, int64_t L,
              int64_t E, int64_t N, int64_t su, int64_t sdel, int64_t sbc, int64_t sz, int64_t sdz, int64_t K,
              int64_t groups, int softplus, int threads) {
  const int64_t nblk = (E + W - 1) / W, nch = (L + K - 1) / K, part = batch * L * N;
  const int64_t per_group = (nblk + groups - 1) / groups, row_len = N * W;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t item = 0; item < batch * groups; ++item) {
    const int64_t tid = omp_get_thread_num(), b = item / groups;
    const int64_t k0 = (item % groups) * per_group, k1 = k0 + per_group < nblk ? k0 + per_group : nblk;
    T* hs = work + tid * work_stride;   // rows h_{t0-1} .. h_{t1-1}, each N x W
    T* as = hs + (K + 1) * row_len;     // rows a_{t0} .. a_{t1-1}
    T* dBv = as + K * row_len;          // lane-wise dB, dC of the chunk, K x N x W each
    T* dCv = dBv + K * row_len;
    T* dtv = dCv + K * row_len;         // dt and d softplus of the chunk, K x W each
    T* dspv = dtv + K * W;
    T* At = dspv + K * W;               // A of the block, N x W
    T* carry = At + row_len;            // per block of the group: g (N x W), dA (N x W), dD, dbias (W each)
    const int64_t carry_len = 2 * row_len + 2 * W;
    T *dBp = dB_parts + tid * part, *dCp = dC_parts + tid * part;
    for (int64_t i = 0; i < (k1 - k0) * carry_len; ++i) carry[i] = T(0);
    for (int64_t c = nch - 1; c >= 0; --c) {
      const int64_t t0 = c * K, t1 = t0 + K < L ? t0 + K : L;
      for (int64_t i = 0; i < (t1 - t0) * row_len; ++i) { dBv[i] = T(0); dCv[i] = T(0); }
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t d0 = k * W, nd = E - d0 < W ? E - d0 : W;
        T *g = carry + (k - k0) * carry_len, *dA = g + row_len, *dDl = dA + row_len, *dbl = dDl + W;
        for (int64_t n = 0; n < N; ++n) {
          for (int j = 0; j < W; ++j) At[n * W + j] = j < nd ? A[(d0 + j) * N + n] : T(0);
          load_lanes<T, W>(hs + n * W, chk + ((b * nch + c) * N + n) * E + d0, nd);
        }
        T Dl[W];
        for (int j = 0; j < W; ++j) Dl[j] = Dv && j < nd ? Dv[d0 + j] : T(0);
        for (int64_t t = t0; t < t1; ++t) {  // recompute the chunk's decays and states
          const int64_t row = b * L + t, i = t - t0;
          const T* Bt = Bm + row * sbc;
          T *dt = dtv + i * W, ut[W], dtu[W];
          step_sizes<T, W>(delta + row * sdel + d0, bias ? bias + d0 : nullptr, nd, softplus, dt, dspv + i * W);
          load_lanes<T, W>(ut, u + row * su + d0, nd);
#pragma omp simd
          for (int j = 0; j < W; ++j) dtu[j] = dt[j] * ut[j];
          for (int64_t n = 0; n < N; ++n) {
            const T bn = Bt[n];
            const T *hp = hs + i * row_len + n * W, *An = At + n * W;
            T *ht = hs + (i + 1) * row_len + n * W, *at = as + i * row_len + n * W;
#pragma omp simd
            for (int j = 0; j < W; ++j) {
              at[j] = exp_fast(dt[j] * An[j]);
              ht[j] = at[j] * hp[j] + dtu[j] * bn;
            }
          }
        }
        for (int64_t t = t1 - 1; t >= t0; --t) {
          const int64_t row = b * L + t, i = t - t0;
          const T *Bt = Bm + row * sbc, *Ct = Cm + row * sbc, *dt = dtv + i * W;
          T ut[W], dy[W], dtu[W], sqA[W], sgB[W];
          load_lanes<T, W>(ut, u + row * su + d0, nd);
          load_lanes<T, W>(dy, dout + row * E + d0, nd);
          if (z) {  // out = y silu(z): dz = dout y silu'(z), and the scan sees dout silu(z)
            T zt[W], y[W];
            load_lanes<T, W>(zt, z + row * sz + d0, nd);
#pragma omp simd
            for (int j = 0; j < W; ++j) y[j] = Dl[j] * ut[j];
            for (int64_t n = 0; n < N; ++n) {
              const T cn = Ct[n];
              const T* ht = hs + (i + 1) * row_len + n * W;
#pragma omp simd
              for (int j = 0; j < W; ++j) y[j] += cn * ht[j];
            }
#pragma omp simd
            for (int j = 0; j < W; ++j) {
              const T sg = sigmoid_act(zt[j]);
              y[j] = dy[j] * y[j] * sg * (T(1) + zt[j] * (T(1) - sg));
              dy[j] *= zt[j] * sg;
            }
            store_lanes<T, W>(dz + row * sdz + d0, y, nd);
          }
#pragma omp simd
          for (int j = 0; j < W; ++j) {
            dtu[j] = dt[j] * ut[j];
            sqA[j] = T(0);
            sgB[j] = T(0);
          }
          for (int64_t n = 0; n < N; ++n) {
            const T bn = Bt[n], cn = Ct[n];
            const T *hp = hs + i * row_len + n * W, *ht = hp + row_len, *at = as + i * row_len + n * W;
            const T* An = At + n * W;
            T *gn_ = g + n * W, *dAn = dA + n * W, *dBn = dBv + i * row_len + n * W, *dCn = dCv + i * row_len + n * W;
#pragma omp simd
            for (int j = 0; j < W; ++j) {
              const T gn = gn_[j] + dy[j] * cn;  // dL/dh_t
              const T q = gn * at[j] * hp[j];    // dL/d(log a_t)
              dCn[j] += dy[j] * ht[j];
              dBn[j] += gn * dtu[j];
              dAn[j] += dt[j] * q;
              sqA[j] += q * An[j];
              sgB[j] += gn * bn;
              gn_[j] = gn * at[j];
            }
          }
          T dd[W], dx[W];
          const T* dsp = dspv + i * W;
#pragma omp simd
          for (int j = 0; j < W; ++j) {
            dd[j] = (sqA[j] + ut[j] * sgB[j]) * dsp[j];
            dx[j] = dt[j] * sgB[j] + dy[j] * Dl[j];
            dDl[j] += dy[j] * ut[j];
            dbl[j] += dd[j];
          }
          store_lanes<T, W>(ddelta + row * E + d0, dd, nd);
          store_lanes<T, W>(du + row * E + d0, dx, nd);
        }
      }
      for (int64_t t = t0; t < t1; ++t) {  // lane sums of the chunk's dB, dC
        const int64_t i = t - t0;
        T *dBt = dBp + (b * L + t) * N, *dCt = dCp + (b * L + t) * N;
        for (int64_t n = 0; n < N; ++n) {
          const T *bv = dBv + i * row_len + n * W, *cv = dCv + i * row_len + n * W;
          T sb = T(0), sc = T(0);
#pragma omp simd reduction(+ : sb, sc)
          for (int j = 0; j < W; ++j) {
            sb += bv[j];
            sc += cv[j];
          }
          dBt[n] += sb;
          dCt[n] += sc;
        }
      }
    }
    for (int64_t k = k0; k < k1; ++k) {  // this item owns (b, its channels) of the per-row parts
      const int64_t d0 = k * W, nd = E - d0 < W ? E - d0 : W;
      const T *dA = carry + (k - k0) * carry_len + row_len, *dDl = dA + row_len, *dbl = dDl + W;
      for (int j = 0; j < nd; ++j) {
        for (int64_t n = 0; n < N; ++n) dA_parts[(b * E + d0 + j) * N + n] = dA[n * W + j];
        dD_parts[b * E + d0 + j] = dDl[j];
        dbias_parts[b * E + d0 + j] = dbl[j];
      }
    }
  }
}


// The block's causal depthwise convolution and silu, time-major, W channels per vector:
//   u[b,t,e] = silu(bias[e] + sum_k w[e,k] x[b, t-K+1+k, e]),  x[b, t<0] = 0.
// x is read through its row stride sx (the first half of in_proj's output); u (B, L, E) is contiguous.
template <typename T, int W>
inline void conv_preact(const T* x, const T* wt, const T* bias, int64_t t, int64_t K, int64_t sx, int64_t d0,
                        int64_t nd, T* acc) {
  for (int j = 0; j < W; ++j) acc[j] = bias && j < nd ? bias[d0 + j] : T(0);
  for (int64_t k = 0; k < K; ++k) {
    const int64_t tt = t - K + 1 + k;
    if (tt < 0) continue;
    T xv[W];
    load_lanes<T, W>(xv, x + tt * sx + d0, nd);
    const T* wk = wt + k * W;
#pragma omp simd
    for (int j = 0; j < W; ++j) acc[j] += wk[j] * xv[j];
  }
}

template <typename T, int W>
inline void conv_weights(const T* w, int64_t K, int64_t d0, int64_t nd, T* wt) {  // wt[k][j] = w[d0 + j, k]
  for (int64_t k = 0; k < K; ++k)
    for (int j = 0; j < W; ++j) wt[k * W + j] = j < nd ? w[(d0 + j) * K + k] : T(0);
}

template <typename T, int W>
void conv_fwd(const T* x, const T* w, const T* bias, T* u, int64_t batch, int64_t L, int64_t E, int64_t K,
              int64_t sx, int threads) {
  const int64_t nblk = (E + W - 1) / W;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t item = 0; item < batch * nblk; ++item) {
    const int64_t b = item / nblk, d0 = (item % nblk) * W, nd = E - d0 < W ? E - d0 : W;
    T wt[64 * W];  // K <= 64 (checked by the caller)
    conv_weights<T, W>(w, K, d0, nd, wt);
    const T* xb = x + b * L * sx;
    for (int64_t t = 0; t < L; ++t) {
      T acc[W];
      conv_preact<T, W>(xb, wt, bias, t, K, sx, d0, nd, acc);
#pragma omp simd
      for (int j = 0; j < W; ++j) acc[j] *= sigmoid_act(acc[j]);
      store_lanes<T, W>(u + (b * L + t) * E + d0, acc, nd);
    }
  }
}

// Adjoint of conv_fwd, backwards in time with the pre-activation recomputed: dpre_t = du_t silu'(pre_t),
// dx_t = sum_k w_k dpre_{t+K-1-k} (the last K-1 dpre kept in a ring), dw_k += dpre_t x_{t-K+1+k}.
// dx has row stride sdx (the block writes it into the x half of in_proj's gradient); dw_parts (B, E, K)
// and db_parts (B, E) are owned by the item's channels.
template <typename T, int W>
void conv_bwd(const T* x, const T* w, const T* bias, const T* du, T* dx, T* dw_parts, T* db_parts, int64_t batch,
              int64_t L, int64_t E, int64_t K, int64_t sx, int64_t sdx, int threads) {
  const int64_t nblk = (E + W - 1) / W;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t item = 0; item < batch * nblk; ++item) {
    const int64_t b = item / nblk, d0 = (item % nblk) * W, nd = E - d0 < W ? E - d0 : W;
    T wt[64 * W], dw[64 * W], ring[64 * W], db[W];
    conv_weights<T, W>(w, K, d0, nd, wt);
    for (int64_t i = 0; i < K * W; ++i) { dw[i] = T(0); ring[i] = T(0); }
    for (int j = 0; j < W; ++j) db[j] = T(0);
    const T* xb = x + b * L * sx;
    for (int64_t t = L - 1; t >= 0; --t) {
      T pre[W], g[W], out[W];
      conv_preact<T, W>(xb, wt, bias, t, K, sx, d0, nd, pre);
      load_lanes<T, W>(g, du + (b * L + t) * E + d0, nd);
      T* dp = ring + (t % K) * W;  // dpre_t replaces dpre_{t+K}, no longer needed
#pragma omp simd
      for (int j = 0; j < W; ++j) {
        const T sg = sigmoid_act(pre[j]);
        dp[j] = g[j] * sg * (T(1) + pre[j] * (T(1) - sg));
        db[j] += dp[j];
        out[j] = T(0);
      }
      for (int64_t k = 0; k < K; ++k) {
        const int64_t ts = t + K - 1 - k, tt = t - K + 1 + k;
        if (ts < L) {
          const T *wk = wt + k * W, *dq = ring + (ts % K) * W;
#pragma omp simd
          for (int j = 0; j < W; ++j) out[j] += wk[j] * dq[j];
        }
        if (tt >= 0) {
          T xv[W];
          load_lanes<T, W>(xv, xb + tt * sx + d0, nd);
          T* dwk = dw + k * W;
#pragma omp simd
          for (int j = 0; j < W; ++j) dwk[j] += dp[j] * xv[j];
        }
      }
      store_lanes<T, W>(dx + (b * L + t) * sdx + d0, out, nd);
    }
    for (int j = 0; j < nd; ++j) {
      for (int64_t k = 0; k < K; ++k) dw_parts[(b * E + d0 + j) * K + k] = dw[k * W + j];
      db_parts[b * E + d0 + j] = db[j];
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
      const T* u, const T* delta, const T* bias, const T* A, const T* Bm, const T* Cm, const T* Dv,  \
      const T* z, T* out, T* chk, T* work, int64_t work_stride, int64_t batch, int64_t L, int64_t E, \
      int64_t N, int64_t su, int64_t sdel, int64_t sbc, int64_t sz, int64_t K, int softplus,         \
      int threads) {                                                                               \
    lane_fwd<T, 64 / sizeof(T)>(u, delta, bias, A, Bm, Cm, Dv, z, out, chk, work, work_stride,      \
                                batch, L, E, N, su, sdel, sbc, sz, K, softplus, threads);          \
  }                                                                                                \
  extern "C" void mmcore_fused_bwd_##SUFFIX(                                                        \
      const T* u, const T* delta, const T* bias, const T* A, const T* Bm, const T* Cm, const T* Dv,  \
      const T* z, const T* dout, const T* chk, T* du, T* ddelta, T* dz, T* dA_parts, T* dD_parts,    \
      T* dbias_parts, T* dB_parts, T* dC_parts, T* work, int64_t work_stride, int64_t batch,         \
      int64_t L, int64_t E, int64_t N, int64_t su, int64_t sdel, int64_t sbc, int64_t sz, int64_t sdz, \
      int64_t K, int64_t groups, int softplus, int threads) {                                      \
    lane_bwd<T, 64 / sizeof(T)>(u, delta, bias, A, Bm, Cm, Dv, z, dout, chk, du, ddelta, dz,        \
                                dA_parts, dD_parts, dbias_parts, dB_parts, dC_parts, work,         \
                                work_stride, batch, L, E, N, su, sdel, sbc, sz, sdz, K, groups,    \
                                softplus, threads);                                                \
  }                                                                                                \
  extern "C" void mmcore_conv_fwd_##SUFFIX(const T* x, const T* w, const T* bias, T* u,              \
                                           int64_t batch, int64_t L, int64_t E, int64_t K,         \
                                           int64_t sx, int threads) {                              \
    conv_fwd<T, 64 / sizeof(T)>(x, w, bias, u, batch, L, E, K, sx, threads);                       \
  }                                                                                                \
  extern "C" void mmcore_conv_bwd_##SUFFIX(const T* x, const T* w, const T* bias, const T* du,       \
                                           T* dx, T* dw_parts, T* db_parts, int64_t batch,         \
                                           int64_t L, int64_t E, int64_t K, int64_t sx,            \
                                           int64_t sdx, int threads) {                             \
    conv_bwd<T, 64 / sizeof(T)>(x, w, bias, du, dx, dw_parts, db_parts, batch, L, E, K, sx, sdx,   \
                                threads);                                                          \
  }

MMCORE_SCAN_EXPORT(float, f32)
MMCORE_SCAN_EXPORT(double, f64)
MMCORE_FUSED_EXPORT(float, f32)
MMCORE_FUSED_EXPORT(double, f64)
"""
