// Pieces of a decode step on the CPU as single calls (built by `native.py`).
//
// decode_attention: one step's attention for every row of a batch, after storing each row's new key and
// value. Each row's queries (a kv head's group of query heads) take the scores of every key the row sees, a
// softmax, and the probability-weighted sum of the values, all in float32 (queries, keys and values are
// read as stored, bfloat16 or float32), rounded once to their dtype. Keys are scored 16 at a time (bfloat16
// keys by the CPU's bfloat16 dot product), the keys and values four steps ahead asked of the memory
// meanwhile; 16 unseen keys in a row (bias -inf) are not read, nor is an unseen key's value. Rows of one
// prompt go through a head's keys and values together, a chunk at a time, so the prompt's are read from
// memory once for all its samples. Ranges longer than a span are split by position into spans, attended to
// on every thread and joined (the same result on any number of threads). AVX-512 where the compiler targets
// it; plain loops elsewhere (same results to rounding).
//
// rms_norm: x * rsqrt(mean(x^2) + eps) * scale per vector, in float32, rounded once to x's dtype
// (Gemma 3's norms, and its query and key norms with one scale per head, then the rotary embedding);
// add_norms: the norm after a sublayer, the residual sum and the norm before the next in one call;
// gated: an MLP's activated gate times its up projection.
//
// top_values: each row's k largest logits and their indices (a sampler's top-k, or argmax), read in two
// passes over the row that skip what cannot be among them.
//
// weights_product: a few rows of activations times a linear layer's weights (x @ W.T), the weights int8
// with one scale per output row or in x's dtype, each converted to float32 and the sums kept in float32,
// rounded once to x's dtype. A few rows' product is a read of the weights; the loop reads them block by
// block (16 output rows for one activation row) and asks the memory for the next block while it works
// on this one.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

constexpr float kNeg = -std::numeric_limits<float>::infinity();
constexpr int64_t kChunk = 256;  // keys whose values are summed together (in the L2 cache)

inline float to_float(float x) { return x; }
inline float to_float(at::BFloat16 x) {
  const uint32_t bits = uint32_t(x.x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline void store(float x, float* p) { *p = x; }
inline void store(float x, at::BFloat16* p) { *p = at::BFloat16(x); }  // rounds to nearest even

// x rounded to T (a tensor operation's result in T)
template <typename T>
inline float rounded(float x) {
  T t;
  store(x, &t);
  return to_float(t);
}

// work(T()) with T the dtype a tensor holds, bfloat16 or float32 (else an error naming `what`)
template <typename Work>
auto by_dtype(at::ScalarType dtype, const char* what, Work&& work) {
  TORCH_CHECK(dtype == at::kBFloat16 || dtype == at::kFloat, what, " must be bfloat16 or float32");
  return dtype == at::kBFloat16 ? work(at::BFloat16()) : work(float());
}

#if defined(__AVX512F__)
inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const at::BFloat16* p) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

// e^x for x <= 0 (-inf gives 0): 2^k * e^f with k = round(x / ln 2), |f| <= ln 2 / 2, e^f by its
// Taylor polynomial of degree 7 (relative error below 1e-7)
inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.f));
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.4426950408889634f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.6931471805599453f), x);
  __m512 p = _mm512_set1_ps(1.f / 5040);
  for (const float c : {1.f / 720, 1.f / 120, 1.f / 24, 1.f / 6, 0.5f, 1.f, 1.f}) {
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c));
  }
  return _mm512_scalef_ps(p, k);
}
#endif

#if defined(__AVX512F__)
// 16 vectors summed lane-wise into one: lane k holds the sum of a[k]'s lanes (always inlined: called
// out of line, the 16 vectors go through memory)
__attribute__((always_inline)) inline __m512 sum16(const __m512* a) {
  // fed in transposed order (4 x 4), the four halving steps leave the sums in order
  auto in = [&](int k) { return a[(k % 4) * 4 + k / 4]; };
  __m512 b[8], c[4], d[2];
  for (int i = 0; i < 8; ++i) {
    const __m512 x = in(2 * i), y = in(2 * i + 1);
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x44), _mm512_shuffle_f32x4(x, y, 0xEE));
  }
  for (int i = 0; i < 4; ++i) {
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
  }
  for (int i = 0; i < 2; ++i) {
    d[i] = _mm512_add_ps(_mm512_unpacklo_ps(c[2 * i], c[2 * i + 1]), _mm512_unpackhi_ps(c[2 * i], c[2 * i + 1]));
  }
  const __m512d lo = _mm512_unpacklo_pd(_mm512_castps_pd(d[0]), _mm512_castps_pd(d[1]));
  const __m512d hi = _mm512_unpackhi_pd(_mm512_castps_pd(d[0]), _mm512_castps_pd(d[1]));
  return _mm512_add_ps(_mm512_castpd_ps(lo), _mm512_castpd_ps(hi));
}
#endif

// ask the memory for `bytes` bytes from p, a cache line at a time, into the L2 cache: a fetch into L1
// would hold one of its few miss buffers until the line arrives, which caps what one thread streams
// (measured on int8 layer products, one thread: 9-13 GB/s into L1, 14-16 into L2)
inline void prefetch(const void* p, int64_t bytes) {
#if defined(__AVX512F__)
  for (int64_t l = 0; l < bytes; l += 64) _mm_prefetch(static_cast<const char*>(p) + l, _MM_HINT_T1);
#endif
}

// s[i] = e^(s[i] - top) in place; returns their sum
float exp_and_sum(float* s, int64_t n, float top) {
  int64_t i = 0;
  float total = 0.f;
#if defined(__AVX512F__)
  const __m512 m = _mm512_set1_ps(top);
  __m512 acc = _mm512_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(s + i), m));
    _mm512_storeu_ps(s + i, e);
    acc = _mm512_add_ps(acc, e);
  }
  total = _mm512_reduce_add_ps(acc);
#endif
  for (; i < n; ++i) {
    s[i] = std::exp(s[i] - top);
    total += s[i];
  }
  return total;
}

#if defined(__AVX512F__)
// out[g] += sum over seen keys n in [lo, hi) of p[g, n] * v[n] (G queries, p's rows `keys` long), in
// registers a tile of the output's columns (W vectors per query) at a time, W the widest power of two
// whose tiles divide dim; false (nothing done) if dim is not a multiple of 16
template <int G, int W, typename T>
bool weighted_sums(const T* v, const float* bias, const float* p, int64_t keys, int64_t lo, int64_t hi, int64_t dim,
                   float* out) {
  if constexpr (W == 0) {
    return false;
  } else {
    if (dim % (16 * W) != 0) return weighted_sums<G, W / 2>(v, bias, p, keys, lo, hi, dim, out);
    for (int64_t d0 = 0; d0 < dim; d0 += 16 * W) {
      __m512 acc[G][W];
      for (int g = 0; g < G; ++g)
        for (int w = 0; w < W; ++w) acc[g][w] = _mm512_loadu_ps(out + g * dim + d0 + 16 * w);
      for (int64_t n = lo; n < hi; ++n) {
        if (d0 == 0 && n + 64 < hi) prefetch(v + (n + 64) * dim, dim * sizeof(T));
        if (bias[n] == kNeg) continue;
        const T* vn = v + n * dim + d0;
        __m512 vd[W];
        for (int w = 0; w < W; ++w) vd[w] = load16(vn + 16 * w);
        for (int g = 0; g < G; ++g) {
          const __m512 pn = _mm512_set1_ps(p[g * keys + n]);
          for (int w = 0; w < W; ++w) acc[g][w] = _mm512_fmadd_ps(pn, vd[w], acc[g][w]);
        }
      }
      for (int g = 0; g < G; ++g)
        for (int w = 0; w < W; ++w) _mm512_storeu_ps(out + g * dim + d0 + 16 * w, acc[g][w]);
    }
    return true;
  }
}
#endif

// scores[g, n] = q[g] . k[n] * scale + bias[n] for the seen keys n in [lo, hi) (G queries [G, dim]; the
// scores' rows `keys` long); top[g]: the largest so far. The values v [keys, dim] are fetched meanwhile.
template <int G, typename T>
void dots(const float* q, const T* k, const T* v, const float* bias, float scale, float* scores, float* top,
          int64_t keys, int64_t lo, int64_t hi, int64_t dim) {
  int64_t n = lo;
#if defined(__AVX512F__)
  // 16 keys at a time, their 16 sums reduced as one vector (16 unseen keys in a row are not read; the
  // unseen ones among seen ones are, and their scores set to -inf whatever they hold); the keys and values
  // four steps ahead are asked of the memory meanwhile
  if (dim % 16 == 0) {
    const __m512 none = _mm512_set1_ps(kNeg);
    for (; n + 16 <= hi; n += 16) {
      const __m512 b = _mm512_loadu_ps(bias + n);
      const __mmask16 seen = _mm512_cmp_ps_mask(b, none, _CMP_NEQ_OQ);
      if (seen == 0) continue;
      const T* kn = k + n * dim;
      if (n + 80 <= hi) {  // and their values, read after the softmax (a span's stay in the L2 cache)
        prefetch(kn + 64 * dim, 16 * dim * sizeof(T));
        prefetch(v + (n + 64) * dim, 16 * dim * sizeof(T));
      }
      for (int g = 0; g < G; ++g) {
        __m512 acc[16];
        for (int j = 0; j < 16; ++j) acc[j] = _mm512_setzero_ps();
        int64_t d = 0;
#if defined(__AVX512BF16__)
        if constexpr (std::is_same_v<T, at::BFloat16>) {
          // the queries hold bfloat16 values (rounding them back is exact): pairs of products summed
          // into float32 by the CPU's bfloat16 dot product
          for (; d + 32 <= dim; d += 32) {
            const __m512bh qd = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(q + g * dim + d + 16), _mm512_loadu_ps(q + g * dim + d));
            for (int j = 0; j < 16; ++j) {
              acc[j] = _mm512_dpbf16_ps(acc[j], (__m512bh)_mm512_loadu_si512(kn + j * dim + d), qd);
            }
          }
        }
#endif
        for (; d < dim; d += 16) {
          const __m512 qd = _mm512_loadu_ps(q + g * dim + d);
          for (int j = 0; j < 16; ++j) acc[j] = _mm512_fmadd_ps(qd, load16(kn + j * dim + d), acc[j]);
        }
        const __m512 sc = _mm512_mask_blend_ps(seen, none, _mm512_fmadd_ps(sum16(acc), _mm512_set1_ps(scale), b));
        _mm512_storeu_ps(scores + g * keys + n, sc);
        top[g] = std::max(top[g], _mm512_reduce_max_ps(sc));
      }
    }
  }
#endif
  for (; n < hi; ++n) {
    if (bias[n] == kNeg) continue;
    const T* kn = k + n * dim;
    float dot[G];
#if defined(__AVX512F__)
    if (dim % 16 == 0) {
      __m512 acc[G];
      for (int g = 0; g < G; ++g) acc[g] = _mm512_setzero_ps();
      for (int64_t d = 0; d < dim; d += 16) {
        const __m512 kd = load16(kn + d);
        for (int g = 0; g < G; ++g) acc[g] = _mm512_fmadd_ps(_mm512_loadu_ps(q + g * dim + d), kd, acc[g]);
      }
      for (int g = 0; g < G; ++g) dot[g] = _mm512_reduce_add_ps(acc[g]);
    } else
#endif
    {
      for (int g = 0; g < G; ++g) {
        float acc = 0.f;
        for (int64_t d = 0; d < dim; ++d) acc += q[g * dim + d] * to_float(kn[d]);
        dot[g] = acc;
      }
    }
    for (int g = 0; g < G; ++g) {
      const float sc = dot[g] * scale + bias[n];
      scores[g * keys + n] = sc;
      top[g] = sc > top[g] ? sc : top[g];
    }
  }
}

// `count` rows' G queries each (q [count, G, dim], float32) against a span of one head's keys and values
// ([keys, dim] rows, contiguous); bias[r] [keys] (-inf: not seen). The rows go through the keys together,
// a chunk at a time, so rows sharing a prompt read its keys and values from memory once. Leaves, per
// query, the largest score in top [count * G], the sum of e^(score - top) in total, and the values
// weighted by those exponentials in out [count, G, dim] (float32, not yet divided by the sum). `scores`
// is scratch.
template <int G, typename T>
void attend(int64_t count, const float* q, const T* k, const T* v, const float* const* bias, float scale, float* out,
            float* top, float* total, int64_t keys, int64_t dim, std::vector<float>& scores) {
  scores.assign(count * G * keys, kNeg);
  std::fill(top, top + count * G, kNeg);
  prefetch(k, std::min<int64_t>(keys, 64) * dim * sizeof(T));  // the first keys and values, not fetched ahead
  prefetch(v, std::min<int64_t>(keys, 64) * dim * sizeof(T));
  for (int64_t lo = 0; lo < keys; lo += kChunk) {
    const int64_t hi = std::min(keys, lo + kChunk);
    for (int64_t r = 0; r < count; ++r) {
      dots<G>(q + r * G * dim, k, v, bias[r], scale, scores.data() + r * G * keys, top + r * G, keys, lo, hi, dim);
    }
  }
  std::memset(out, 0, count * G * dim * sizeof(float));
  for (int64_t i = 0; i < count * G; ++i) {
    total[i] = top[i] == kNeg ? 0.f : exp_and_sum(scores.data() + i * keys, keys, top[i]);
  }
  for (int64_t lo = 0; lo < keys; lo += kChunk) {
    const int64_t hi = std::min(keys, lo + kChunk);
    for (int64_t r = 0; r < count; ++r) {
      if (top[r * G] == kNeg) continue;  // the row sees none of these keys
      const float* p = scores.data() + r * G * keys;
      float* o = out + r * G * dim;
#if defined(__AVX512F__)
      if (weighted_sums<G, (G <= 2 ? 16 / G : G <= 4 ? 4 : 2)>(v, bias[r], p, keys, lo, hi, dim, o)) continue;
#endif
      for (int64_t n = lo; n < hi; ++n) {
        if (bias[r][n] == kNeg) continue;
        const T* vn = v + n * dim;
        for (int g = 0; g < G; ++g) {
          for (int64_t d = 0; d < dim; ++d) o[g * dim + d] += p[g * keys + n] * to_float(vn[d]);
        }
      }
    }
  }
}

template <typename T>
void attend_group(int64_t group, int64_t count, const float* q, const T* k, const T* v, const float* const* bias,
                  float scale, float* out, float* top, float* total, int64_t keys, int64_t dim,
                  std::vector<float>& scores) {
  switch (group) {
    case 1: return attend<1>(count, q, k, v, bias, scale, out, top, total, keys, dim, scores);
    case 2: return attend<2>(count, q, k, v, bias, scale, out, top, total, keys, dim, scores);
    case 3: return attend<3>(count, q, k, v, bias, scale, out, top, total, keys, dim, scores);
    case 4: return attend<4>(count, q, k, v, bias, scale, out, top, total, keys, dim, scores);
    case 5: return attend<5>(count, q, k, v, bias, scale, out, top, total, keys, dim, scores);
    case 6: return attend<6>(count, q, k, v, bias, scale, out, top, total, keys, dim, scores);
    case 7: return attend<7>(count, q, k, v, bias, scale, out, top, total, keys, dim, scores);
    case 8: return attend<8>(count, q, k, v, bias, scale, out, top, total, keys, dim, scores);
    default:  // larger groups: each query as a row of its own (the same keys, the row's bias)
      std::vector<const float*> each(count * group);
      for (int64_t i = 0; i < count * group; ++i) each[i] = bias[i / group];
      return attend<1>(count * group, q, k, v, each.data(), scale, out, top, total, keys, dim, scores);
  }
}

// row r's new key and value (new_keys[r], new_values[r]: [kv_heads, dim]) into slot[r] of every head
template <typename T>
void store_new(const torch::Tensor& new_keys, const torch::Tensor& new_values, const int64_t* slot, T* k, T* v,
               int64_t rows, int64_t kv_heads, int64_t dim, int64_t head_stride) {
  const T* nk = new_keys.data_ptr<T>();
  const T* nv = new_values.data_ptr<T>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < kv_heads; ++h) {
      const int64_t from_k = r * new_keys.stride(0) + h * new_keys.stride(1);
      const int64_t from_v = r * new_values.stride(0) + h * new_values.stride(1);
      std::memcpy(k + h * head_stride + slot[r] * dim, nk + from_k, dim * sizeof(T));
      std::memcpy(v + h * head_stride + slot[r] * dim, nv + from_v, dim * sizeof(T));
    }
  }
}

constexpr int64_t kSegment = 8;  // rows that go through a head's keys together, at most
constexpr int64_t kSpan = 512;   // keys a task attends to: longer ranges are split, their sums joined after
constexpr int64_t kTaskBytes = int64_t(1) << 20;  // a thread wakes for this many bytes of keys and values

template <typename T>
torch::Tensor attend_rows(const torch::Tensor& query, const torch::Tensor& keys, const torch::Tensor& values,
                          const torch::Tensor& bias, double scale, const torch::Tensor& new_keys,
                          const torch::Tensor& new_values, const torch::Tensor& slot, const torch::Tensor& share) {
  const int64_t rows = query.size(0), heads = query.size(1), dim = query.size(2);
  const int64_t kv_heads = keys.size(0), n = keys.size(1), group = heads / kv_heads;
  T* kp = keys.data_ptr<T>();
  T* vp = values.data_ptr<T>();
  store_new<T>(new_keys, new_values, slot.data_ptr<int64_t>(), kp, vp, rows, kv_heads, dim, keys.stride(0));
  // segments: rows with the same `share` id (most of their keys in common), in order, at most kSegment
  const int64_t* sp = share.data_ptr<int64_t>();
  std::vector<int64_t> order(rows);
  for (int64_t r = 0; r < rows; ++r) order[r] = r;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return sp[a] < sp[b]; });
  std::vector<int64_t> starts;
  for (int64_t i = 0; i < rows; ++i) {
    if (i == 0 || sp[order[i]] != sp[order[i - 1]] || i - starts.back() == kSegment) starts.push_back(i);
  }
  starts.push_back(rows);
  const int64_t segments = int64_t(starts.size()) - 1;
  // a task: one segment's rows, one kv head, one span of keys (split by position alone, so a row's result
  // does not depend on the threads); each leaves its unnormalised sums, joined below
  const int64_t spans = (n + kSpan - 1) / kSpan;
  const int64_t tasks = segments * kv_heads * spans;
  std::vector<float> part(spans * rows * heads * dim), top(spans * rows * heads), total(spans * rows * heads);
  const T* qp = query.data_ptr<T>();
  const float* bp = bias.data_ptr<float>();
  const int64_t task_bytes = 2 * std::min(n, kSpan) * dim * int64_t(sizeof(T));
  at::parallel_for(0, tasks, std::max<int64_t>(1, kTaskBytes / task_bytes), [&](int64_t first, int64_t last) {
    std::vector<float> scores, q, o, t, sum;
    std::vector<const float*> row_bias;
    for (int64_t i = first; i < last; ++i) {
      const int64_t seg = i / (kv_heads * spans), h = i / spans % kv_heads, s = i % spans;
      const int64_t lo = starts[seg], count = starts[seg + 1] - lo, from = s * kSpan, len = std::min(n - from, kSpan);
      q.resize(count * group * dim);
      o.resize(count * group * dim);
      t.resize(count * group);
      sum.resize(count * group);
      row_bias.resize(count);
      for (int64_t c = 0; c < count; ++c) {
        const int64_t r = order[lo + c];
        row_bias[c] = bp + r * n + from;
        for (int64_t g = 0; g < group; ++g) {
          const T* qg = qp + r * query.stride(0) + (h * group + g) * query.stride(1);
          for (int64_t d = 0; d < dim; ++d) q[(c * group + g) * dim + d] = to_float(qg[d]);
        }
      }
      attend_group(group, count, q.data(), kp + h * keys.stride(0) + from * dim, vp + h * values.stride(0) + from * dim,
                   row_bias.data(), float(scale), o.data(), t.data(), sum.data(), len, dim, scores);
      for (int64_t c = 0; c < count; ++c) {
        const int64_t at = (s * rows + order[lo + c]) * heads + h * group;  // [span, row, head]
        std::copy_n(o.data() + c * group * dim, group * dim, part.data() + at * dim);
        std::copy_n(t.data() + c * group, group, top.data() + at);
        std::copy_n(sum.data() + c * group, group, total.data() + at);
      }
    }
  });
  // each query's spans joined: sums rescaled to the largest score of all, divided by their total
  auto out = torch::empty({rows, heads, dim}, values.options());
  T* op = out.data_ptr<T>();
  std::vector<float> joined(dim);
  for (int64_t i = 0; i < rows * heads; ++i) {
    float best = kNeg;
    for (int64_t s = 0; s < spans; ++s) best = std::max(best, top[s * rows * heads + i]);
    float denominator = 0.f;
    std::fill(joined.begin(), joined.end(), 0.f);
    for (int64_t s = 0; s < spans; ++s) {
      const int64_t at = s * rows * heads + i;
      if (top[at] == kNeg) continue;
      const float w = spans == 1 ? 1.f : std::exp(top[at] - best);
      denominator += w * total[at];
      for (int64_t d = 0; d < dim; ++d) joined[d] += w * part[at * dim + d];
    }
    const float inv = denominator > 0.f ? 1.f / denominator : 0.f;
    for (int64_t d = 0; d < dim; ++d) store(joined[d] * inv, op + i * dim + d);
  }
  return out;
}

}  // namespace

// query [rows, heads, 1, dim]; keys, values: a pool [kv_heads, blocks, block, dim] (contiguous) of which
// blocks lo..hi are read; all three in one dtype (bfloat16 or float32); bias [rows, (hi - lo) * block]
// float32 (0 or -inf); new_keys, new_values [rows, kv_heads, 1, dim]: each row's token, stored first at key
// index slot[r] (int64, counted from block lo) of every head; share [rows] (int64): rows with the same id
// go through the keys together (rows of one prompt) -> [rows, 1, heads, dim] in the keys' dtype (computed
// in float32, rounded once). The queries and new keys may be strided views (each vector contiguous).
torch::Tensor decode_attention(torch::Tensor query, torch::Tensor keys, torch::Tensor values, int64_t lo, int64_t hi,
                               torch::Tensor bias, double scale, torch::Tensor new_keys, torch::Tensor new_values,
                               torch::Tensor slot, torch::Tensor share) {
  for (const auto* t : {&query, &keys, &values, &new_keys, &new_values}) TORCH_CHECK(t->dim() == 4, "4-d tensors");
  TORCH_CHECK(query.size(2) == 1 && new_keys.size(2) == 1 && new_values.size(2) == 1, "one token a row");
  TORCH_CHECK(keys.is_contiguous() && values.is_contiguous() && keys.sizes() == values.sizes(), "the pools");
  TORCH_CHECK(0 <= lo && lo < hi && hi <= keys.size(1), "the blocks read");
  const int64_t used = (hi - lo) * keys.size(2);
  query = query.select(2, 0);
  new_keys = new_keys.select(2, 0);
  new_values = new_values.select(2, 0);
  keys = keys.narrow(1, lo, hi - lo).view({keys.size(0), used, keys.size(3)});
  values = values.narrow(1, lo, hi - lo).view({values.size(0), used, values.size(3)});
  const auto dtype = keys.scalar_type();
  for (const auto* t : {&query, &values, &new_keys, &new_values}) {
    TORCH_CHECK(t->scalar_type() == dtype && t->dim() == 3 && t->stride(2) == 1, "query, keys and values");
  }
  TORCH_CHECK(bias.scalar_type() == at::kFloat && bias.is_contiguous(), "bias");
  TORCH_CHECK(slot.scalar_type() == at::kLong && slot.is_contiguous(), "slot");
  TORCH_CHECK(share.scalar_type() == at::kLong && share.is_contiguous() && share.numel() == query.size(0), "share");
  TORCH_CHECK(keys.sizes() == values.sizes() && keys.strides() == values.strides() && keys.stride(1) == keys.size(2),
              "each head's keys and values must be contiguous rows");
  const int64_t rows = query.size(0), heads = query.size(1), dim = query.size(2);
  const int64_t kv_heads = keys.size(0), n = keys.size(1);
  TORCH_CHECK(keys.size(2) == dim && heads % kv_heads == 0 && bias.size(0) == rows && bias.size(1) == n, "shapes");
  TORCH_CHECK(new_keys.sizes() == new_values.sizes() && new_keys.size(0) == rows && new_keys.size(1) == kv_heads &&
                  new_keys.size(2) == dim && slot.numel() == rows,
              "new keys and values");
  const int64_t* sp = slot.data_ptr<int64_t>();
  for (int64_t r = 0; r < rows; ++r) TORCH_CHECK(sp[r] >= 0 && sp[r] < n, "slot out of range");
  const auto out = by_dtype(dtype, "keys", [&](auto t) {
    return attend_rows<decltype(t)>(query, keys, values, bias, scale, new_keys, new_values, slot, share);
  });
  return out.view({rows, 1, heads, dim});
}

namespace {

// x * rsqrt(mean(x^2) + eps) * scale for one vector x [dim] (float32), into y (not rounded)
inline void normed(const float* x, int64_t dim, const float* scale, float eps, float* y) {
  float squares = 0.f;
  int64_t d = 0;
#if defined(__AVX512F__)
  __m512 acc = _mm512_setzero_ps();  // 16 sums side by side (one chain of additions would wait on each)
  for (; d + 16 <= dim; d += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(x + d), _mm512_loadu_ps(x + d), acc);
  squares = _mm512_reduce_add_ps(acc);
#endif
  for (; d < dim; ++d) squares += x[d] * x[d];
  const float inv = 1.f / std::sqrt(squares / float(dim) + eps);
  for (d = 0; d < dim; ++d) y[d] = x[d] * inv * scale[d];
}

// each row: the residual stream h plus out normed (scale_out), rounded to T; then that normed (scale_next)
template <typename T>
void add_norm_rows(const T* h, const T* o, int64_t rows, int64_t dim, const float* scale_out, const float* scale_next,
                   float eps, T* h_out, T* x_out) {
  std::vector<float> a(dim), b(dim);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t d = 0; d < dim; ++d) a[d] = to_float(o[r * dim + d]);
    normed(a.data(), dim, scale_out, eps, b.data());
    for (int64_t d = 0; d < dim; ++d) {
      a[d] = rounded<T>(to_float(h[r * dim + d]) + rounded<T>(b[d]));  // the norm's result, then the sum
      store(a[d], h_out + r * dim + d);
    }
    normed(a.data(), dim, scale_next, eps, b.data());
    for (int64_t d = 0; d < dim; ++d) store(b[d], x_out + r * dim + d);
  }
}

template <typename T>
void norm_rows(const T* x, int64_t rows, int64_t vectors, int64_t row_stride, int64_t vector_stride,
               const float* scale, int64_t scales, int64_t dim, float eps, T* out, const T* cos, const T* sin) {
  std::vector<float> xf(dim), y(dim);
  const int64_t half = dim / 2;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < vectors; ++i) {
      const T* xi = x + r * row_stride + i * vector_stride;
      for (int64_t d = 0; d < dim; ++d) xf[d] = to_float(xi[d]);
      normed(xf.data(), dim, scale + (i % scales) * dim, eps, y.data());
      T* oi = out + (r * vectors + i) * dim;
      if (cos == nullptr) {
        for (int64_t d = 0; d < dim; ++d) store(y[d], oi + d);
        continue;
      }
      // then the rotary embedding, y * cos + roll(y, half) * sin (sin's first half negated), each product
      // and the sum rounded to T as the same tensor operations would
      for (int64_t d = 0; d < dim; ++d) y[d] = rounded<T>(y[d]);
      const T* c = cos + r * dim;
      const T* sn = sin + r * dim;
      for (int64_t d = 0; d < dim; ++d) {
        const float a = rounded<T>(y[d] * to_float(c[d]));
        const float b = rounded<T>(y[d < half ? d + half : d - half] * to_float(sn[d]));
        store(a + b, oi + d);
      }
    }
  }
}

}  // namespace

// x [rows, vectors, dim] (bfloat16 or float32, dim contiguous); scale [scales, dim] float32, vector i
// scaled by scale[i % scales] -> [rows, vectors, dim] in x's dtype; or x [rows, dim] with scale [dim].
// With cos and sin ([rows, dim] in x's dtype, sin's first half negated; else empty), each normed vector
// is then rotated: y * cos + roll(y, dim / 2) * sin, rounded as those tensor operations round.
torch::Tensor rms_norm(torch::Tensor x, torch::Tensor scale, double eps, torch::Tensor cos, torch::Tensor sin) {
  TORCH_CHECK((x.dim() == 3 || x.dim() == 2) && x.stride(-1) == 1,
              "x must be [rows, vectors, dim] or [rows, dim], dim contiguous");
  TORCH_CHECK(scale.scalar_type() == at::kFloat && scale.is_contiguous() && scale.dim() == x.dim() - 1, "scale");
  const bool flat = x.dim() == 2;  // [rows, dim]: one vector a row, one scale
  const int64_t rows = x.size(0), vectors = flat ? 1 : x.size(1), dim = x.size(-1);
  const int64_t scales = flat ? 1 : scale.size(0), vector_stride = flat ? dim : x.stride(1);
  TORCH_CHECK(scale.size(-1) == dim && vectors % scales == 0, "scale's shape");
  const bool rotate = cos.numel() > 0;
  TORCH_CHECK(!rotate || (cos.scalar_type() == x.scalar_type() && sin.scalar_type() == x.scalar_type() &&
                          cos.is_contiguous() && sin.is_contiguous() && cos.numel() == rows * dim &&
                          sin.numel() == rows * dim && dim % 2 == 0),
              "cos and sin must be [rows, dim] in x's dtype");
  auto out = torch::empty(x.sizes(), x.options());
  by_dtype(x.scalar_type(), "x", [&](auto t) {
    using T = decltype(t);
    norm_rows(x.data_ptr<T>(), rows, vectors, x.stride(0), vector_stride, scale.data_ptr<float>(), scales, dim,
              float(eps), out.data_ptr<T>(), rotate ? cos.data_ptr<T>() : nullptr,
              rotate ? sin.data_ptr<T>() : nullptr);
  });
  return out;
}

// hidden, out [rows, dim] (bfloat16 or float32, contiguous, one dtype); scale_out, scale_next [dim] float32
// -> (hidden + norm(out) * scale_out, norm(that) * scale_next): Gemma 3's norm after a sublayer, the
// residual sum, and the norm before the next, each rounded to the dtype as those three operations round
std::vector<torch::Tensor> add_norms(torch::Tensor hidden, torch::Tensor out, torch::Tensor scale_out,
                                     torch::Tensor scale_next, double eps) {
  TORCH_CHECK(hidden.dim() == 2 && hidden.is_contiguous() && out.is_contiguous() && out.sizes() == hidden.sizes() &&
                  out.scalar_type() == hidden.scalar_type(),
              "hidden and out must be [rows, dim] alike, contiguous");
  const int64_t rows = hidden.size(0), dim = hidden.size(1);
  for (const auto* s : {&scale_out, &scale_next}) {
    TORCH_CHECK(s->scalar_type() == at::kFloat && s->is_contiguous() && s->numel() == dim, "scales");
  }
  auto h = torch::empty_like(hidden), x = torch::empty_like(hidden);
  by_dtype(hidden.scalar_type(), "hidden", [&](auto t) {
    using T = decltype(t);
    add_norm_rows(hidden.data_ptr<T>(), out.data_ptr<T>(), rows, dim, scale_out.data_ptr<float>(),
                  scale_next.data_ptr<float>(), float(eps), h.data_ptr<T>(), x.data_ptr<T>());
  });
  return {h, x};
}

namespace {

// one activation of the gate, in float32: GELU's tanh form (0) or SiLU (1); both through e^-|u| (tanh |u| =
// (1 - e^-2|u|) / (1 + e^-2|u|), the logistic function e^-|x| / (1 + e^-|x|) below 0), 16 at a time where
// the compiler targets AVX-512 (the same formulas to rounding)
constexpr float kBeta = 0.7978845608028654f, kKappa = 0.044715f;  // sqrt(2 / pi)

inline float activation(float x, int64_t kind) {
  if (kind == 0) {
    const float u = kBeta * (x + kKappa * x * x * x), t = std::exp(-2.f * std::fabs(u));
    return 0.5f * x * (1.f + std::copysign((1.f - t) / (1.f + t), u));
  }
  const float t = std::exp(-std::fabs(x));
  return x * (x >= 0.f ? 1.f / (1.f + t) : t / (1.f + t));
}

#if defined(__AVX512F__)
inline __m512 activation16(__m512 x, int64_t kind) {
  const __m512 one = _mm512_set1_ps(1.f);
  if (kind == 0) {
    const __m512 cube = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    const __m512 u = _mm512_mul_ps(_mm512_set1_ps(kBeta), _mm512_fmadd_ps(_mm512_set1_ps(kKappa), cube, x));
    const __m512 t = exp16(_mm512_mul_ps(_mm512_set1_ps(-2.f), _mm512_abs_ps(u)));
    const __m512 magnitude = _mm512_div_ps(_mm512_sub_ps(one, t), _mm512_add_ps(one, t));
    const __m512 signed_tanh = _mm512_mask_sub_ps(magnitude, _mm512_cmp_ps_mask(u, _mm512_setzero_ps(), _CMP_LT_OQ),
                                                  _mm512_setzero_ps(), magnitude);
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(one, signed_tanh));
  }
  const __m512 t = exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(x)));
  const __m512 top = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ), t, one);
  return _mm512_mul_ps(x, _mm512_div_ps(top, _mm512_add_ps(one, t)));
}

inline void store16(__m512 v, float* p) { _mm512_storeu_ps(p, v); }
inline void store16(__m512 v, at::BFloat16* p) {  // rounded to nearest even, as at::BFloat16 rounds
#if defined(__AVX512BF16__)
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), (__m256i)_mm512_cvtneps_pbh(v));
#else
  float f[16];
  _mm512_storeu_ps(f, v);
  for (int i = 0; i < 16; ++i) p[i] = at::BFloat16(f[i]);
#endif
}

// v rounded to T (a tensor operation's result in T), 16 at a time
inline __m512 rounded16(__m512 v, float*) { return v; }
inline __m512 rounded16(__m512 v, at::BFloat16*) {
#if defined(__AVX512BF16__)  // in registers: to bfloat16 (nearest even) and back
  const __m256i b = (__m256i)_mm512_cvtneps_pbh(v);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
#else
  at::BFloat16 b[16];
  store16(v, b);
  return load16(b);
#endif
}
#endif

template <typename T>
void gate_rows(const T* gate_up, int64_t rows, int64_t inner, int64_t kind, T* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* g = gate_up + r * 2 * inner;
    T* o = out + r * inner;
    int64_t d = 0;
#if defined(__AVX512F__)
    for (; d + 16 <= inner; d += 16) {
      const __m512 a = rounded16(activation16(load16(g + d), kind), static_cast<T*>(nullptr));
      store16(_mm512_mul_ps(a, load16(g + inner + d)), o + d);
    }
#endif
    for (; d < inner; ++d) store(rounded<T>(activation(to_float(g[d]), kind)) * to_float(g[inner + d]), o + d);
  }
}

}  // namespace

// gate_up [rows, 2 * inner] (bfloat16 or float32, contiguous): an MLP's gate and up projections side by side
// -> act(gate) * up [rows, inner], act GELU's tanh form (kind 0) or SiLU (kind 1), rounded to the dtype as
// the two tensor operations round (the activation, then the product)
torch::Tensor gated(torch::Tensor gate_up, int64_t kind) {
  TORCH_CHECK(gate_up.dim() == 2 && gate_up.is_contiguous() && gate_up.size(1) % 2 == 0, "gate_up");
  TORCH_CHECK(kind == 0 || kind == 1, "kind: 0 (GELU, tanh form) or 1 (SiLU)");
  const int64_t rows = gate_up.size(0), inner = gate_up.size(1) / 2;
  auto out = torch::empty({rows, inner}, gate_up.options());
  by_dtype(gate_up.scalar_type(), "gate_up", [&](auto t) {
    using T = decltype(t);
    gate_rows(gate_up.data_ptr<T>(), rows, inner, kind, out.data_ptr<T>());
  });
  return out;
}

namespace {

constexpr int64_t kRowsMax = 64;  // activation rows a weights product takes

inline float to_float(int8_t x) { return float(x); }

#if defined(__AVX512F__)
inline __m512 load16(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
#endif

// O output rows of w ([O, in], int8, bfloat16 or float32) against R activation rows (x: float32 [R, in])
// -> out[r, j] (row stride `stride`), times scales[j] if given; `next`: the following block's weights to
// fetch meanwhile, or null
template <int O, int R, typename W, typename T>
void product_block(const float* x, int64_t in, const W* w, const T* scales, T* out, int64_t stride, const W* next) {
  float sums[16] = {};
  int64_t d = 0;
#if defined(__AVX512F__)
  static_assert(O * R <= 16, "one vector of sums");
  __m512 acc[16];
  for (int k = 0; k < 16; ++k) acc[k] = _mm512_setzero_ps();
#if defined(__AVX512BF16__)
  if constexpr (std::is_same_v<W, at::BFloat16>) {
    // bfloat16 weights and activations (x holds bfloat16 values, so rounding it back is exact): pairs of
    // products summed into float32 by the CPU's bfloat16 dot product, 32 inputs a step
    for (; d + 32 <= in; d += 32) {
      if (next != nullptr) prefetch(next + d * O, O * 32 * 2);
      __m512bh wj[O];
      for (int j = 0; j < O; ++j) wj[j] = (__m512bh)_mm512_loadu_si512(w + j * in + d);
      for (int r = 0; r < R; ++r) {
        const __m512bh xr = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + r * in + d + 16), _mm512_loadu_ps(x + r * in + d));
        for (int j = 0; j < O; ++j) acc[j * R + r] = _mm512_dpbf16_ps(acc[j * R + r], wj[j], xr);
      }
    }
  }
#endif
  for (; d + 16 <= in; d += 16) {
    if (next != nullptr) prefetch(next + d * O, O * 16 * int64_t(sizeof(W)));  // this step's share of the next block
    __m512 wj[O];
    for (int j = 0; j < O; ++j) wj[j] = load16(w + j * in + d);
    for (int r = 0; r < R; ++r) {
      const __m512 xr = _mm512_loadu_ps(x + r * in + d);
      for (int j = 0; j < O; ++j) acc[j * R + r] = _mm512_fmadd_ps(wj[j], xr, acc[j * R + r]);
    }
  }
  _mm512_storeu_ps(sums, sum16(acc));
#endif
  for (int j = 0; j < O; ++j) {
    const float scale = scales != nullptr ? to_float(scales[j]) : 1.f;
    for (int r = 0; r < R; ++r) {
      float t = sums[j * R + r];
      for (int64_t e = d; e < in; ++e) t += to_float(w[j * in + e]) * x[r * in + e];
      store(t * scale, out + r * stride + j);
    }
  }
}

// O output rows of w against all `rows` activation rows, four at a time (the block stays in the L1
// cache after the first four; only they fetch the next block)
template <int O, typename W, typename T>
void product_rows_block(const float* x, int64_t rows, int64_t in, const W* w, const T* scales, T* out, int64_t stride,
                        const W* next) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    product_block<O, 4>(x + r * in, in, w, scales, out + r * stride, stride, r == 0 ? next : nullptr);
  }
  const W* fetch = r == 0 ? next : nullptr;
  switch (rows - r) {
    case 3: return product_block<O, 3>(x + r * in, in, w, scales, out + r * stride, stride, fetch);
    case 2: return product_block<O, 2>(x + r * in, in, w, scales, out + r * stride, stride, fetch);
    case 1: return product_block<O, 1>(x + r * in, in, w, scales, out + r * stride, stride, fetch);
    default: return;
  }
}

// blocks of O output rows (R: the activation rows a block takes at once, or 0 for four at a time over
// any number), split across threads
template <int O, int R, typename W, typename T>
void product_rows(const float* x, int64_t rows, int64_t in, const W* w, const T* scales, int64_t outs, T* out) {
  const int64_t blocks = outs / O;
  // a thread's share at least 1 MB of weights: waking a sleeping thread for less does not pay
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 20) / (O * in * int64_t(sizeof(W))));
  auto at = [&](int64_t o) { return scales != nullptr ? scales + o : nullptr; };
  auto one = [&](auto width, int64_t o, const W* next) {
    constexpr int N = decltype(width)::value;
    if constexpr (R == 0) {
      product_rows_block<N>(x, rows, in, w + o * in, at(o), out + o, outs, next);
    } else {
      product_block<N, R>(x, in, w + o * in, at(o), out + o, outs, next);
    }
  };
  at::parallel_for(0, blocks, grain, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) {
      one(std::integral_constant<int, O>(), b * O, b + 1 < last ? w + (b + 1) * O * in : nullptr);
    }
  });
  for (int64_t o = blocks * O; o < outs; ++o) one(std::integral_constant<int, 1>(), o, nullptr);
}

template <typename W, typename T>
void product_of(const T* xs, int64_t rows, int64_t in, const W* w, const T* scales, int64_t outs, T* out) {
  std::vector<float> x(rows * in);
  for (int64_t i = 0; i < rows * in; ++i) x[i] = to_float(xs[i]);
  switch (rows) {  // 16 output rows a block for one activation row, 8 for two, 4 for more
    case 1: return product_rows<16, 1>(x.data(), rows, in, w, scales, outs, out);
    case 2: return product_rows<8, 2>(x.data(), rows, in, w, scales, outs, out);
    default: return product_rows<4, 0>(x.data(), rows, in, w, scales, outs, out);
  }
}

template <typename T>
void product_in(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& scales,
                     torch::Tensor& out) {
  const int64_t rows = x.size(0), in = x.size(1), outs = weight.size(0);
  const T* sp = scales.numel() ? scales.data_ptr<T>() : nullptr;
  if (weight.scalar_type() == at::kChar) {
    product_of(x.data_ptr<T>(), rows, in, weight.data_ptr<int8_t>(), sp, outs, out.data_ptr<T>());
  } else {
    product_of(x.data_ptr<T>(), rows, in, weight.data_ptr<T>(), sp, outs, out.data_ptr<T>());
  }
}

}  // namespace

// x [rows, in] (bfloat16 or float32, 1 <= rows <= 64); weight [out, in]: int8 with scales [out] in x's
// dtype, or in x's dtype with no scales (an empty tensor) -> x @ weight.T (* scales) [rows, out] in x's dtype
torch::Tensor weights_product(torch::Tensor x, torch::Tensor weight, torch::Tensor scales) {
  const auto dtype = x.scalar_type();
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && x.size(0) >= 1 && x.size(0) <= kRowsMax, "x");
  TORCH_CHECK(weight.dim() == 2 && weight.is_contiguous() && weight.size(1) == x.size(1), "weight");
  const bool int8 = weight.scalar_type() == at::kChar;
  TORCH_CHECK(int8 || weight.scalar_type() == dtype, "weight must be int8 or in x's dtype");
  TORCH_CHECK(scales.numel() == 0 || (scales.scalar_type() == dtype && scales.is_contiguous() &&
                                      scales.numel() == weight.size(0)),
              "scales");
  TORCH_CHECK(!int8 || scales.numel() > 0, "int8 weights need their scales");
  auto out = torch::empty({x.size(0), weight.size(0)}, x.options());
  by_dtype(dtype, "x", [&](auto t) { product_in<decltype(t)>(x, weight, scales, out); });
  return out;
}

namespace {

constexpr int64_t kPeakBlock = 64;  // logits whose largest is taken in the first pass

// row x [n] -> its k largest values (float32, largest first) and their indices, equal values by lowest
// index first. A first pass takes each block's largest; the k-th largest of those is a lower bound of the
// k-th largest value (k blocks hold a value at least as large), so a second pass need only look at the
// blocks that reach it.
template <typename T>
void top_row(const T* x, int64_t n, int64_t k, float* values, int64_t* index) {
  const int64_t blocks = (n + kPeakBlock - 1) / kPeakBlock;
  std::vector<float> peak(blocks);
  bool nan = false;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t lo = b * kPeakBlock, hi = std::min(n, lo + kPeakBlock);
    float m = kNeg;
    int64_t i = lo;
#if defined(__AVX512F__)
    if (hi - lo == kPeakBlock) {
      __m512 most = _mm512_set1_ps(kNeg);
      for (; i < hi; i += 16) {
        const __m512 v = load16(x + i);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) != 0;
        most = _mm512_max_ps(most, v);
      }
      m = _mm512_reduce_max_ps(most);
    }
#endif
    for (; i < hi; ++i) {
      const float v = to_float(x[i]);
      nan |= v != v;
      m = std::max(m, v);
    }
    peak[b] = m;
  }
  TORCH_CHECK(!nan, "the logits hold NaN");
  float bound = kNeg;  // with fewer blocks than k, every value is a candidate
  if (k <= blocks) {
    std::vector<float> peaks(peak);
    std::nth_element(peaks.begin(), peaks.begin() + (k - 1), peaks.end(), std::greater<float>());
    bound = peaks[k - 1];
  }
  std::vector<std::pair<float, int64_t>> found;
  for (int64_t b = 0; b < blocks; ++b) {
    if (peak[b] < bound) continue;
    for (int64_t i = b * kPeakBlock; i < std::min(n, (b + 1) * kPeakBlock); ++i) {
      const float v = to_float(x[i]);
      if (v >= bound) found.emplace_back(v, i);
    }
  }
  std::partial_sort(found.begin(), found.begin() + k, found.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  for (int64_t j = 0; j < k; ++j) {
    values[j] = found[j].first;
    index[j] = found[j].second;
  }
}

}  // namespace

// logits [rows, n] (bfloat16 or float32, rows contiguous), 1 <= k <= n -> (values [rows, k] float32, largest
// first; indices [rows, k] int64), equal values by lowest index first (k = 1: the first largest, argmax)
std::vector<torch::Tensor> top_values(torch::Tensor logits, int64_t k) {
  TORCH_CHECK(logits.dim() == 2 && logits.stride(1) == 1, "logits must be [rows, n], each row contiguous");
  const int64_t rows = logits.size(0), n = logits.size(1);
  TORCH_CHECK(k >= 1 && k <= n, "k must be between 1 and the row's length");
  auto values = torch::empty({rows, k}, logits.options().dtype(at::kFloat));
  auto index = torch::empty({rows, k}, logits.options().dtype(at::kLong));
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 20) / (n * int64_t(logits.element_size())));
  by_dtype(logits.scalar_type(), "logits", [&](auto t) {
    const auto* x = logits.data_ptr<decltype(t)>();
    at::parallel_for(0, rows, grain, [&](int64_t first, int64_t last) {
      for (int64_t r = first; r < last; ++r) {
        top_row(x + r * logits.stride(0), n, k, values.data_ptr<float>() + r * k, index.data_ptr<int64_t>() + r * k);
      }
    });
  });
  return {values, index};
}

// One layer's decode attention from its fused projection: qkv [rows, (heads + 2 * kv_heads) * dim] (the query,
// key and value heads side by side); the query and key heads normed (qk_scale [heads + kv_heads, dim], one
// per head, and eps, as rms_norm) and rotated (cos, sin as rms_norm takes them), the new keys and values
// stored and attended to as decode_attention does (keys and values: the layer's pools, blocks lo..hi) ->
// [rows, heads * dim]
torch::Tensor attend_projected(torch::Tensor qkv, int64_t heads, torch::Tensor qk_scale, double eps, torch::Tensor cos,
                               torch::Tensor sin, torch::Tensor keys, torch::Tensor values, int64_t lo, int64_t hi,
                               torch::Tensor bias, double scale, torch::Tensor slot, torch::Tensor share) {
  const int64_t rows = qkv.size(0), kv_heads = keys.size(0), dim = keys.size(3);
  TORCH_CHECK(qkv.dim() == 2 && qkv.size(1) == (heads + 2 * kv_heads) * dim, "qkv's shape");
  const auto heads_of = qkv.view({rows, heads + 2 * kv_heads, dim});
  const auto qk = rms_norm(heads_of.narrow(1, 0, heads + kv_heads), qk_scale, eps, cos, sin);
  const auto out = decode_attention(qk.narrow(1, 0, heads).unsqueeze(2), keys, values, lo, hi, bias, scale,
                                    qk.narrow(1, heads, kv_heads).unsqueeze(2),
                                    heads_of.narrow(1, heads + kv_heads, kv_heads).unsqueeze(2), slot, share);
  return out.view({rows, heads * dim});
}
