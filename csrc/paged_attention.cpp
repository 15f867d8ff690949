// Decode attention over the paged KV cache (CPU), registered as torch.ops.arpo.paged_decode_attention.
// Each sequence's one query token attends to its first ctx_lens[b] cached tokens, read in place
// through its block table: no gather copy of the context, no padding, no mask. Scores and sums are
// float; fp16/bf16 caches are converted one block at a time. The inner loops are compiled for
// AVX-512, AVX2 and baseline x86-64 and picked at load time (target_clones).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ARPO_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ARPO_MULTIVERSION
#endif

// scores[g * stride + t] = scale * q[g] . keys[t] for a block of `count` keys of `dim` floats.
ARPO_MULTIVERSION
void block_scores(const float* q, int64_t groups, const float* keys, int64_t key_stride, int64_t count,
                  int64_t dim, float scale, float* scores, int64_t stride) {
  for (int64_t t = 0; t < count; ++t) {
    const float* key = keys + t * key_stride;
    for (int64_t g = 0; g < groups; ++g) {
      const float* qg = q + g * dim;
      float acc = 0.f;
#pragma omp simd reduction(+ : acc)
      for (int64_t d = 0; d < dim; ++d) acc += qg[d] * key[d];
      scores[g * stride + t] = acc * scale;
    }
  }
}

// out[g] += probs[g * stride + t] * values[t] over a block of `count` values.
ARPO_MULTIVERSION
void block_accumulate(const float* probs, int64_t groups, int64_t stride, const float* values,
                      int64_t value_stride, int64_t count, int64_t dim, float* out) {
  for (int64_t t = 0; t < count; ++t) {
    const float* value = values + t * value_stride;
    for (int64_t g = 0; g < groups; ++g) {
      const float p = probs[g * stride + t];
      float* og = out + g * dim;
#pragma omp simd
      for (int64_t d = 0; d < dim; ++d) og[d] += p * value[d];
    }
  }
}

// One block's `count` rows of one kv head as floats: in place for float caches, converted otherwise.
template <typename scalar_t>
const float* block_rows(const scalar_t* rows, int64_t row_stride, int64_t count, int64_t dim, float* scratch,
                        int64_t* stride_out) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    *stride_out = row_stride;
    return rows;
  } else {
    for (int64_t t = 0; t < count; ++t)
      for (int64_t d = 0; d < dim; ++d) scratch[t * dim + d] = static_cast<float>(rows[t * row_stride + d]);
    *stride_out = dim;
    return scratch;
  }
}

struct Shapes {
  int64_t heads, kv_heads, dim, block_size, width;
};

// Attention of sequence b's query heads that share kv head h.
template <typename scalar_t>
void attend_group(const scalar_t* query, const scalar_t* k_cache, const scalar_t* v_cache, const int64_t* table,
                  int64_t ctx, const Shapes& s, int64_t h, float scale, scalar_t* out) {
  const int64_t groups = s.heads / s.kv_heads, dim = s.dim, bs = s.block_size;
  const int64_t row_stride = s.kv_heads * dim, block_stride = bs * row_stride;
  std::vector<float> q(groups * dim), acc(groups * dim, 0.f), scores(groups * ctx), scratch(bs * dim);
  for (int64_t i = 0; i < groups * dim; ++i) q[i] = static_cast<float>(query[h * groups * dim + i]);
  int64_t stride = 0;
  for (int64_t start = 0; start < ctx; start += bs) {
    const int64_t count = std::min(bs, ctx - start);
    const scalar_t* keys = k_cache + table[start / bs] * block_stride + h * dim;
    const float* rows = block_rows(keys, row_stride, count, dim, scratch.data(), &stride);
    block_scores(q.data(), groups, rows, stride, count, dim, scale, scores.data() + start, ctx);
  }
  for (int64_t g = 0; g < groups; ++g) {
    float* row = scores.data() + g * ctx;
    const float top = *std::max_element(row, row + ctx);
    float total = 0.f;
    for (int64_t t = 0; t < ctx; ++t) total += (row[t] = std::exp(row[t] - top));
    for (int64_t t = 0; t < ctx; ++t) row[t] /= total;
  }
  for (int64_t start = 0; start < ctx; start += bs) {
    const int64_t count = std::min(bs, ctx - start);
    const scalar_t* values = v_cache + table[start / bs] * block_stride + h * dim;
    const float* rows = block_rows(values, row_stride, count, dim, scratch.data(), &stride);
    block_accumulate(scores.data() + start, groups, ctx, rows, stride, count, dim, acc.data());
  }
  for (int64_t i = 0; i < groups * dim; ++i) out[h * groups * dim + i] = static_cast<scalar_t>(acc[i]);
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
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, q.scalar_type(), "paged_decode_attention", [&] {
    const scalar_t* qp = q.data_ptr<scalar_t>();
    const scalar_t* kp = k_cache.data_ptr<scalar_t>();
    const scalar_t* vp = v_cache.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    const int64_t row = s.heads * s.dim;
    at::parallel_for(0, batch * s.kv_heads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t job = begin; job < end; ++job) {
        const int64_t b = job / s.kv_heads, h = job % s.kv_heads;
        attend_group<scalar_t>(qp + b * row, kp, vp, table + b * s.width, len[b], s, h, static_cast<float>(scale),
                               op + b * row);
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(arpo, m) {
  m.def("paged_decode_attention(Tensor query, Tensor k_cache, Tensor v_cache, Tensor block_tables, "
        "Tensor ctx_lens, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(arpo, CPU, m) { m.impl("paged_decode_attention", &paged_decode_attention_cpu); }
