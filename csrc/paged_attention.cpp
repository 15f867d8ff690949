// Decode attention over the paged KV cache (CPU), registered as torch.ops.arpo.paged_decode_attention.
// Each sequence's one query token attends to its first ctx_lens[b] cached tokens, read in place
// through its block table: no gather copy of the context, no padding, no mask.
//
// Work is split over (sequence, kv head) pairs; a thread's consecutive pairs of one sequence are
// done in one sweep over that sequence's blocks, so each block is read front to back (the rows of
// neighbouring kv heads are adjacent in memory) and every K/V row is read once for all the query
// heads that share it (GQA). Two passes: scores over K, a softmax per query head, then the weighted
// sum over V. Scores and sums are float; fp16/bf16 rows are converted one block at a time. Scratch
// space is per thread and reused across calls. The inner loops are compiled for AVX-512, AVX2 and
// baseline x86-64 and picked at load time (target_clones); the common head dims (64, 128) get
// loops of fixed length that the compiler unrolls.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ARPO_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ARPO_MULTIVERSION
#endif

// exp(x) for x <= 0 to about one ulp (range reduction to [-ln2/2, ln2/2] and a degree-6
// polynomial), written so that a loop over it vectorises, unlike a call to the libm function.
inline float exp_nonpositive(float x) {
  x = std::max(x, -87.0f);  // keeps 2^n a normal float; exp(-87) is below any softmax weight that counts
  const float n = std::floor(x * 1.44269504f + 0.5f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

// Softmax in place over each of `rows` rows of `count` scores (row stride `stride`).
ARPO_MULTIVERSION
void softmax_rows(float* scores, int64_t rows, int64_t count, int64_t stride) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = scores + r * stride;
    float top = row[0];
    for (int64_t t = 1; t < count; ++t) top = std::max(top, row[t]);
    float total = 0.f;
#pragma omp simd reduction(+ : total)
    for (int64_t t = 0; t < count; ++t) total += (row[t] = exp_nonpositive(row[t] - top));
    const float inverse = 1.f / total;
#pragma omp simd
    for (int64_t t = 0; t < count; ++t) row[t] *= inverse;
  }
}

// scores[(h * groups + g) * stride + t] = q[h][g] . key[t][h] for the `heads` kv heads of one block
// of `count` rows; `rows` holds row t's kv heads at rows + t * row_stride (head dim DIM, or `dim`).
template <int DIM>
ARPO_MULTIVERSION void block_scores(const float* q, int64_t heads, int64_t groups, const float* rows,
                                    int64_t row_stride, int64_t count, int64_t dim, float* scores,
                                    int64_t stride) {
  const int64_t d_len = DIM > 0 ? DIM : dim;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t g = 0; g < groups; ++g) {
      const float* qg = q + (h * groups + g) * d_len;
      float* out = scores + (h * groups + g) * stride;
      for (int64_t t = 0; t < count; ++t) {
        const float* key = rows + t * row_stride + h * d_len;
        float acc = 0.f;
#pragma omp simd reduction(+ : acc)
        for (int64_t d = 0; d < d_len; ++d) acc += qg[d] * key[d];
        out[t] = acc;
      }
    }
}

// acc[h][g] += sum_t probs[(h * groups + g) * stride + t] * value[t][h] over one block of values.
template <int DIM>
ARPO_MULTIVERSION void block_accumulate(const float* probs, int64_t heads, int64_t groups, int64_t stride,
                                        const float* rows, int64_t row_stride, int64_t count, int64_t dim,
                                        float* acc) {
  const int64_t d_len = DIM > 0 ? DIM : dim;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t g = 0; g < groups; ++g) {
      const float* p = probs + (h * groups + g) * stride;
      float* out = acc + (h * groups + g) * d_len;
      for (int64_t t = 0; t < count; ++t) {
        const float* value = rows + t * row_stride + h * d_len;
        const float weight = p[t];
#pragma omp simd
        for (int64_t d = 0; d < d_len; ++d) out[d] += weight * value[d];
      }
    }
}

struct Shapes {
  int64_t heads, kv_heads, dim, block_size, width;
};

// Per-thread scratch, grown on demand and kept across calls.
struct Scratch {
  std::vector<float> q, acc, scores, rows;
  float* grow(std::vector<float>& buffer, size_t size) {
    if (buffer.size() < size) buffer.resize(size);
    return buffer.data();
  }
};

// Rows [0, count) of one block for kv heads [h0, h0 + heads) as floats, with their row stride:
// in place for float caches, converted into `scratch` otherwise.
template <typename scalar_t>
const float* block_rows(const scalar_t* block, const Shapes& s, int64_t h0, int64_t heads, int64_t count,
                        float* scratch, int64_t* row_stride) {
  const int64_t cache_stride = s.kv_heads * s.dim;
  if constexpr (std::is_same_v<scalar_t, float>) {
    *row_stride = cache_stride;
    return block + h0 * s.dim;
  } else {
    const int64_t width = heads * s.dim;
    for (int64_t t = 0; t < count; ++t) {
      const scalar_t* row = block + t * cache_stride + h0 * s.dim;
      for (int64_t i = 0; i < width; ++i) scratch[t * width + i] = static_cast<float>(row[i]);
    }
    *row_stride = width;
    return scratch;
  }
}

// Attention of sequence b's query heads that share kv heads [h0, h0 + heads), one sweep per pass.
template <typename scalar_t, int DIM>
void attend_heads(const scalar_t* query, const scalar_t* k_cache, const scalar_t* v_cache,
                  const int64_t* table, int64_t ctx, const Shapes& s, int64_t h0, int64_t heads,
                  float scale, scalar_t* out, Scratch& scratch) {
  const int64_t groups = s.heads / s.kv_heads, dim = s.dim, bs = s.block_size;
  const int64_t width = heads * groups * dim, block_stride = bs * s.kv_heads * dim;
  float* q = scratch.grow(scratch.q, width);
  float* acc = scratch.grow(scratch.acc, width);
  float* scores = scratch.grow(scratch.scores, heads * groups * ctx);
  float* converted = scratch.grow(scratch.rows, std::is_same_v<scalar_t, float> ? 0 : bs * heads * dim);
  const scalar_t* query_heads = query + h0 * groups * dim;
  for (int64_t i = 0; i < width; ++i) q[i] = static_cast<float>(query_heads[i]) * scale;
  std::fill(acc, acc + width, 0.f);
  int64_t row_stride = 0;
  for (int64_t start = 0; start < ctx; start += bs) {
    const int64_t count = std::min(bs, ctx - start);
    const float* rows = block_rows(k_cache + table[start / bs] * block_stride, s, h0, heads, count, converted,
                                   &row_stride);
    block_scores<DIM>(q, heads, groups, rows, row_stride, count, dim, scores + start, ctx);
  }
  softmax_rows(scores, heads * groups, ctx, ctx);
  for (int64_t start = 0; start < ctx; start += bs) {
    const int64_t count = std::min(bs, ctx - start);
    const float* rows = block_rows(v_cache + table[start / bs] * block_stride, s, h0, heads, count, converted,
                                   &row_stride);
    block_accumulate<DIM>(scores + start, heads, groups, ctx, rows, row_stride, count, dim, acc);
  }
  scalar_t* out_heads = out + h0 * groups * dim;
  for (int64_t i = 0; i < width; ++i) out_heads[i] = static_cast<scalar_t>(acc[i]);
}

template <typename scalar_t, int DIM>
void attend_jobs(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache, const int64_t* table,
                 const int64_t* len, const Shapes& s, float scale, at::Tensor& out) {
  const scalar_t* qp = q.data_ptr<scalar_t>();
  const scalar_t* kp = k_cache.data_ptr<scalar_t>();
  const scalar_t* vp = v_cache.data_ptr<scalar_t>();
  scalar_t* op = out.data_ptr<scalar_t>();
  const int64_t row = s.heads * s.dim;
  at::parallel_for(0, q.size(0) * s.kv_heads, 1, [&](int64_t begin, int64_t end) {
    thread_local Scratch scratch;
    for (int64_t job = begin; job < end;) {  // a run of one sequence's kv heads at a time
      const int64_t b = job / s.kv_heads, h0 = job % s.kv_heads;
      const int64_t heads = std::min(s.kv_heads - h0, end - job);
      attend_heads<scalar_t, DIM>(qp + b * row, kp, vp, table + b * s.width, len[b], s, h0, heads, scale,
                                  op + b * row, scratch);
      job += heads;
    }
  });
}

void check_args(const at::Tensor& query, const at::Tensor& k_cache, const at::Tensor& v_cache,
                const at::Tensor& block_tables, const at::Tensor& ctx_lens) {
  TORCH_CHECK(query.dim() == 3 && k_cache.dim() == 4 && v_cache.dim() == 4,
              "query must be [B, heads, dim] and the caches [num_blocks, block_size, kv_heads, dim]");
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous(), "k/v caches must be contiguous");
  TORCH_CHECK(query.scalar_type() == k_cache.scalar_type() && k_cache.scalar_type() == v_cache.scalar_type(),
              "query and caches must share a dtype");
  TORCH_CHECK(query.size(2) == k_cache.size(3) && query.size(1) % k_cache.size(2) == 0,
              "query heads must be a multiple of kv heads, with the cache's head dim");
  TORCH_CHECK(block_tables.scalar_type() == at::kLong && ctx_lens.scalar_type() == at::kLong,
              "block tables and context lengths must be int64");
  TORCH_CHECK(block_tables.dim() == 2 && block_tables.size(0) == query.size(0) && ctx_lens.numel() == query.size(0),
              "one block table row and one context length per query");
}

at::Tensor paged_decode_attention_cpu(const at::Tensor& query, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                      const at::Tensor& block_tables, const at::Tensor& ctx_lens, double scale) {
  check_args(query, k_cache, v_cache, block_tables, ctx_lens);
  auto q = query.contiguous();
  auto tables = block_tables.contiguous();
  auto lens = ctx_lens.contiguous();
  auto out = at::empty_like(q);
  const Shapes s{q.size(1), k_cache.size(2), q.size(2), k_cache.size(1), tables.size(1)};
  const int64_t batch = q.size(0), num_blocks = k_cache.size(0);
  const int64_t* len = lens.data_ptr<int64_t>();
  const int64_t* table = tables.data_ptr<int64_t>();
  for (int64_t b = 0; b < batch; ++b) {
    TORCH_CHECK(len[b] >= 1 && len[b] <= s.width * s.block_size, "context length outside the block table");
    for (int64_t i = 0; i < (len[b] + s.block_size - 1) / s.block_size; ++i)
      TORCH_CHECK(table[b * s.width + i] >= 0 && table[b * s.width + i] < num_blocks, "block id out of range");
  }
  const float factor = static_cast<float>(scale);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, q.scalar_type(), "paged_decode_attention", [&] {
    if (s.dim == 64)
      attend_jobs<scalar_t, 64>(q, k_cache, v_cache, table, len, s, factor, out);
    else if (s.dim == 128)
      attend_jobs<scalar_t, 128>(q, k_cache, v_cache, table, len, s, factor, out);
    else
      attend_jobs<scalar_t, 0>(q, k_cache, v_cache, table, len, s, factor, out);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(arpo, m) {
  m.def("paged_decode_attention(Tensor query, Tensor k_cache, Tensor v_cache, Tensor block_tables, "
        "Tensor ctx_lens, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(arpo, CPU, m) { m.impl("paged_decode_attention", &paged_decode_attention_cpu); }
