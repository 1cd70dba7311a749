// Two pieces of a decode step on the CPU as single calls (built by `native.py`).
//
// decode_attention: one step's attention for every row of a batch. Each row's queries (a kv head's
// group of query heads) read that head's keys and values once: the scores of every key the row sees,
// a softmax, and the probability-weighted sum of the values, all in float32 (keys and values are read
// as stored, bfloat16 or float32). A key whose bias is -inf is not read at all. AVX-512 where the
// compiler targets it; plain loops elsewhere (same results to rounding).
//
// rms_norm: x * rsqrt(mean(x^2) + eps) * scale per vector, in float32, rounded once to x's dtype
// (Gemma 3's norms, and its query and key norms with one scale per head).

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstring>
#include <limits>
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

// G queries ([G, dim], float32) against one head's keys and values ([keys, dim] rows, contiguous);
// bias [keys] (-inf: not seen); out [G, dim] float32. `scores` is scratch.
template <int G, typename T>
void attend(const float* q, const T* k, const T* v, const float* bias, float scale, float* out, int64_t keys,
            int64_t dim, std::vector<float>& scores) {
  scores.assign(G * keys, kNeg);
  float top[G];
  for (int g = 0; g < G; ++g) top[g] = kNeg;
  for (int64_t n = 0; n < keys; ++n) {
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
      const float s = dot[g] * scale + bias[n];
      scores[g * keys + n] = s;
      top[g] = s > top[g] ? s : top[g];
    }
  }
  float inv[G];
  for (int g = 0; g < G; ++g) inv[g] = 1.f / exp_and_sum(scores.data() + g * keys, keys, top[g]);
  std::memset(out, 0, G * dim * sizeof(float));
#if defined(__AVX512F__)
  // the sums in registers: a tile of the output's columns (16 vectors over the G queries) at a time
  constexpr int W = G <= 16 ? 16 / G : 1;  // vectors of a tile, per query
  if (dim % (16 * W) == 0) {
    for (int64_t lo = 0; lo < keys; lo += kChunk) {
      const int64_t hi = std::min(keys, lo + kChunk);
      for (int64_t d0 = 0; d0 < dim; d0 += 16 * W) {
        __m512 acc[G][W];
        for (int g = 0; g < G; ++g)
          for (int w = 0; w < W; ++w) acc[g][w] = _mm512_loadu_ps(out + g * dim + d0 + 16 * w);
        for (int64_t n = lo; n < hi; ++n) {
          if (bias[n] == kNeg) continue;
          const T* vn = v + n * dim + d0;
          __m512 vd[W];
          for (int w = 0; w < W; ++w) vd[w] = load16(vn + 16 * w);
          for (int g = 0; g < G; ++g) {
            const __m512 p = _mm512_set1_ps(scores[g * keys + n]);
            for (int w = 0; w < W; ++w) acc[g][w] = _mm512_fmadd_ps(p, vd[w], acc[g][w]);
          }
        }
        for (int g = 0; g < G; ++g)
          for (int w = 0; w < W; ++w) _mm512_storeu_ps(out + g * dim + d0 + 16 * w, acc[g][w]);
      }
    }
    for (int g = 0; g < G; ++g)
      for (int64_t d = 0; d < dim; ++d) out[g * dim + d] *= inv[g];
    return;
  }
#endif
  for (int64_t n = 0; n < keys; ++n) {
    if (bias[n] == kNeg) continue;
    const T* vn = v + n * dim;
    for (int g = 0; g < G; ++g) {
      const float p = scores[g * keys + n];
      for (int64_t d = 0; d < dim; ++d) out[g * dim + d] += p * to_float(vn[d]);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int64_t d = 0; d < dim; ++d) out[g * dim + d] *= inv[g];
}

template <typename T>
void attend_group(int64_t group, const float* q, const T* k, const T* v, const float* bias, float scale, float* out,
                  int64_t keys, int64_t dim, std::vector<float>& scores) {
  switch (group) {
    case 1: return attend<1>(q, k, v, bias, scale, out, keys, dim, scores);
    case 2: return attend<2>(q, k, v, bias, scale, out, keys, dim, scores);
    case 4: return attend<4>(q, k, v, bias, scale, out, keys, dim, scores);
    case 8: return attend<8>(q, k, v, bias, scale, out, keys, dim, scores);
    default:  // other group sizes: one query at a time
      for (int64_t g = 0; g < group; ++g)
        attend<1>(q + g * dim, k, v, bias, scale, out + g * dim, keys, dim, scores);
  }
}

}  // namespace

// query [rows, heads, dim] float32; keys, values [kv_heads, keys, dim] (bfloat16 or float32, each head's
// rows contiguous); bias [rows, keys] float32 (0 or -inf) -> [rows, heads, dim] float32
torch::Tensor decode_attention(torch::Tensor query, torch::Tensor keys, torch::Tensor values, torch::Tensor bias,
                               double scale) {
  TORCH_CHECK(query.scalar_type() == at::kFloat && query.is_contiguous() && query.dim() == 3, "query");
  TORCH_CHECK(bias.scalar_type() == at::kFloat && bias.is_contiguous(), "bias");
  TORCH_CHECK(keys.scalar_type() == values.scalar_type() && keys.sizes() == values.sizes(), "keys and values");
  TORCH_CHECK(keys.stride(2) == 1 && values.stride(2) == 1 && keys.stride(1) == keys.size(2) &&
                  values.stride(1) == values.size(2),
              "each head's keys and values must be contiguous rows");
  const int64_t rows = query.size(0), heads = query.size(1), dim = query.size(2);
  const int64_t kv_heads = keys.size(0), n = keys.size(1), group = heads / kv_heads;
  TORCH_CHECK(keys.size(2) == dim && heads == kv_heads * group && bias.size(0) == rows && bias.size(1) == n,
              "shapes");
  auto out = torch::empty_like(query);
  const float* qp = query.data_ptr<float>();
  const float* bp = bias.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const bool bf16 = keys.scalar_type() == at::kBFloat16;
  TORCH_CHECK(bf16 || keys.scalar_type() == at::kFloat, "keys must be bfloat16 or float32");
  at::parallel_for(0, rows * kv_heads, 1, [&](int64_t first, int64_t last) {
    std::vector<float> scores;
    for (int64_t i = first; i < last; ++i) {
      const int64_t r = i / kv_heads, h = i % kv_heads;
      const int64_t offset = (r * heads + h * group) * dim;
      if (bf16) {
        attend_group(group, qp + offset, keys.data_ptr<at::BFloat16>() + h * keys.stride(0),
                     values.data_ptr<at::BFloat16>() + h * values.stride(0), bp + r * n, float(scale), op + offset, n,
                     dim, scores);
      } else {
        attend_group(group, qp + offset, keys.data_ptr<float>() + h * keys.stride(0),
                     values.data_ptr<float>() + h * values.stride(0), bp + r * n, float(scale), op + offset, n, dim,
                     scores);
      }
    }
  });
  return out;
}

namespace {

inline void store(float x, float* p) { *p = x; }
inline void store(float x, at::BFloat16* p) { *p = at::BFloat16(x); }  // rounds to nearest even

template <typename T>
void norm_rows(const T* x, int64_t rows, int64_t vectors, int64_t row_stride, int64_t vector_stride,
               const float* scale, int64_t scales, int64_t dim, float eps, T* out) {
  std::vector<float> xf(dim);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < vectors; ++i) {
      const T* xi = x + r * row_stride + i * vector_stride;
      float squares = 0.f;
      for (int64_t d = 0; d < dim; ++d) {
        xf[d] = to_float(xi[d]);
        squares += xf[d] * xf[d];
      }
      const float inv = 1.f / std::sqrt(squares / float(dim) + eps);
      const float* si = scale + (i % scales) * dim;
      T* oi = out + (r * vectors + i) * dim;
      for (int64_t d = 0; d < dim; ++d) store(xf[d] * inv * si[d], oi + d);
    }
  }
}

}  // namespace

// x [rows, vectors, dim] (bfloat16 or float32, dim contiguous); scale [scales, dim] float32, vector i
// scaled by scale[i % scales] -> [rows, vectors, dim] in x's dtype
torch::Tensor rms_norm(torch::Tensor x, torch::Tensor scale, double eps) {
  TORCH_CHECK(x.dim() == 3 && x.stride(2) == 1, "x must be [rows, vectors, dim] with dim contiguous");
  TORCH_CHECK(scale.scalar_type() == at::kFloat && scale.is_contiguous() && scale.dim() == 2, "scale");
  const int64_t rows = x.size(0), vectors = x.size(1), dim = x.size(2), scales = scale.size(0);
  TORCH_CHECK(scale.size(1) == dim && vectors % scales == 0, "scale's shape");
  auto out = torch::empty({rows, vectors, dim}, x.options());
  if (x.scalar_type() == at::kBFloat16) {
    norm_rows(x.data_ptr<at::BFloat16>(), rows, vectors, x.stride(0), x.stride(1), scale.data_ptr<float>(), scales,
              dim, float(eps), out.data_ptr<at::BFloat16>());
  } else {
    TORCH_CHECK(x.scalar_type() == at::kFloat, "x must be bfloat16 or float32");
    norm_rows(x.data_ptr<float>(), rows, vectors, x.stride(0), x.stride(1), scale.data_ptr<float>(), scales, dim,
              float(eps), out.data_ptr<float>());
  }
  return out;
}
