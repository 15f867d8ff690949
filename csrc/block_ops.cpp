// Paged KV cache block operations (CPU), registered as torch.ops.arpo.*; CUDA kernels live in
// block_ops_cuda.cu. Both are plain byte copies, so any cache dtype works.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>

namespace {

void check_block_args(const at::Tensor& kv_cache, const at::Tensor& src, const at::Tensor& dst) {
  TORCH_CHECK(kv_cache.dim() >= 3, "kv_cache must be [num_layers, 2, num_blocks, ...]");
  TORCH_CHECK(kv_cache.is_contiguous(), "kv_cache must be contiguous");
  TORCH_CHECK(src.scalar_type() == at::kLong && dst.scalar_type() == at::kLong, "block ids must be int64");
  TORCH_CHECK(src.numel() == dst.numel(), "src and dst must have the same length");
}

void check_write_args(const at::Tensor& k_cache, const at::Tensor& v_cache, const at::Tensor& key,
                      const at::Tensor& value, const at::Tensor& slots) {
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous(), "k/v caches must be contiguous");
  TORCH_CHECK(key.dtype() == k_cache.dtype() && value.dtype() == v_cache.dtype(), "k/v dtype differs from the cache");
  TORCH_CHECK(key.size(0) == slots.numel() && value.size(0) == slots.numel(), "one slot per token");
  TORCH_CHECK(slots.scalar_type() == at::kLong, "slots must be int64");
  TORCH_CHECK(key.size(0) == 0 || key.numel() / key.size(0) * k_cache.size(0) * k_cache.size(1) == k_cache.numel(),
              "key row size does not match the cache's [num_blocks, block_size, ...] layout");
}

// Copies block src[i] to dst[i] in every layer and in both K and V: one call per fork.
void copy_blocks_cpu(at::Tensor kv_cache, const at::Tensor& src, const at::Tensor& dst) {
  check_block_args(kv_cache, src, dst);
  const int64_t outer = kv_cache.size(0) * kv_cache.size(1);
  const int64_t num_blocks = kv_cache.size(2);
  const int64_t block_bytes = kv_cache.numel() / (outer * num_blocks) * kv_cache.element_size();
  auto src_c = src.contiguous(), dst_c = dst.contiguous();
  const int64_t* s = src_c.data_ptr<int64_t>();
  const int64_t* d = dst_c.data_ptr<int64_t>();
  const int64_t pairs = src_c.numel();
  for (int64_t i = 0; i < pairs; ++i) {
    TORCH_CHECK(s[i] >= 0 && s[i] < num_blocks && d[i] >= 0 && d[i] < num_blocks, "block id out of range");
  }
  char* base = static_cast<char*>(kv_cache.data_ptr());
  at::parallel_for(0, outer * pairs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t job = begin; job < end; ++job) {
      const int64_t o = job / pairs, i = job % pairs;
      char* plane = base + o * num_blocks * block_bytes;
      std::memcpy(plane + d[i] * block_bytes, plane + s[i] * block_bytes, block_bytes);
    }
  });
}

// Writes token t's key/value rows into slot slots[t] (block * block_size + offset).
void write_kv_cpu(at::Tensor k_cache, at::Tensor v_cache, const at::Tensor& key, const at::Tensor& value,
                  const at::Tensor& slots) {
  check_write_args(k_cache, v_cache, key, value, slots);
  auto key_c = key.contiguous(), value_c = value.contiguous(), slots_c = slots.contiguous();
  const int64_t tokens = slots_c.numel();
  const int64_t num_slots = k_cache.size(0) * k_cache.size(1);
  const int64_t row_bytes = tokens ? key_c.numel() / tokens * key_c.element_size() : 0;
  const int64_t* slot = slots_c.data_ptr<int64_t>();
  for (int64_t t = 0; t < tokens; ++t) TORCH_CHECK(slot[t] >= 0 && slot[t] < num_slots, "slot out of range");
  char* kc = static_cast<char*>(k_cache.data_ptr());
  char* vc = static_cast<char*>(v_cache.data_ptr());
  const char* k = static_cast<const char*>(key_c.data_ptr());
  const char* v = static_cast<const char*>(value_c.data_ptr());
  at::parallel_for(0, tokens, 64, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      std::memcpy(kc + slot[t] * row_bytes, k + t * row_bytes, row_bytes);
      std::memcpy(vc + slot[t] * row_bytes, v + t * row_bytes, row_bytes);
    }
  });
}

}  // namespace

TORCH_LIBRARY(arpo, m) {
  m.def("copy_blocks(Tensor(a!) kv_cache, Tensor src, Tensor dst) -> ()");
  m.def("write_kv(Tensor(a!) k_cache, Tensor(b!) v_cache, Tensor key, Tensor value, Tensor slots) -> ()");
}

TORCH_LIBRARY_IMPL(arpo, CPU, m) {
  m.impl("copy_blocks", &copy_blocks_cpu);
  m.impl("write_kv", &write_kv_cpu);
}
