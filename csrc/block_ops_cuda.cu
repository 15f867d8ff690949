// CUDA versions of the paged KV cache block ops declared in block_ops.cpp (same semantics).
// Both kernels copy 16-byte words when the row/block size allows it, else single bytes.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace {

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename word_t>
__global__ void copy_blocks_kernel(char* base, const int64_t* src, const int64_t* dst, int64_t pairs,
                                   int64_t num_blocks, int64_t block_words) {
  const int64_t o = blockIdx.y, i = blockIdx.x;
  word_t* plane = reinterpret_cast<word_t*>(base) + o * num_blocks * block_words;
  const word_t* from = plane + src[i] * block_words;
  word_t* to = plane + dst[i] * block_words;
  for (int64_t w = threadIdx.x; w < block_words; w += blockDim.x) to[w] = from[w];
}

template <typename word_t>
__global__ void write_kv_kernel(char* k_cache, char* v_cache, const char* key, const char* value,
                                const int64_t* slots, int64_t row_words) {
  const int64_t t = blockIdx.x;
  const int64_t slot = slots[t];
  const word_t* k = reinterpret_cast<const word_t*>(key) + t * row_words;
  const word_t* v = reinterpret_cast<const word_t*>(value) + t * row_words;
  word_t* kc = reinterpret_cast<word_t*>(k_cache) + slot * row_words;
  word_t* vc = reinterpret_cast<word_t*>(v_cache) + slot * row_words;
  for (int64_t w = threadIdx.x; w < row_words; w += blockDim.x) {
    kc[w] = k[w];
    vc[w] = v[w];
  }
}

void copy_blocks_cuda(at::Tensor kv_cache, const at::Tensor& src, const at::Tensor& dst) {
  TORCH_CHECK(kv_cache.dim() >= 3 && kv_cache.is_contiguous(), "kv_cache must be contiguous [L, 2, num_blocks, ...]");
  TORCH_CHECK(src.numel() == dst.numel(), "src and dst must have the same length");
  const int64_t pairs = src.numel();
  if (pairs == 0) return;
  const c10::cuda::OptionalCUDAGuard guard(kv_cache.device());
  auto s = src.to(kv_cache.device(), at::kLong).contiguous();
  auto d = dst.to(kv_cache.device(), at::kLong).contiguous();
  const int64_t outer = kv_cache.size(0) * kv_cache.size(1), num_blocks = kv_cache.size(2);
  const int64_t block_bytes = kv_cache.numel() / (outer * num_blocks) * kv_cache.element_size();
  const dim3 grid(pairs, outer);
  auto stream = c10::cuda::getCurrentCUDAStream();
  char* base = static_cast<char*>(kv_cache.data_ptr());
  if (block_bytes % 16 == 0 && aligned16(base)) {
    copy_blocks_kernel<int4><<<grid, 256, 0, stream>>>(base, s.data_ptr<int64_t>(), d.data_ptr<int64_t>(), pairs,
                                                       num_blocks, block_bytes / 16);
  } else {
    copy_blocks_kernel<char><<<grid, 256, 0, stream>>>(base, s.data_ptr<int64_t>(), d.data_ptr<int64_t>(), pairs,
                                                       num_blocks, block_bytes);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void write_kv_cuda(at::Tensor k_cache, at::Tensor v_cache, const at::Tensor& key, const at::Tensor& value,
                   const at::Tensor& slots) {
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous(), "k/v caches must be contiguous");
  TORCH_CHECK(key.dtype() == k_cache.dtype() && value.dtype() == v_cache.dtype(), "k/v dtype differs from the cache");
  TORCH_CHECK(key.size(0) == slots.numel() && value.size(0) == slots.numel(), "one slot per token");
  const int64_t tokens = slots.numel();
  if (tokens == 0) return;
  const c10::cuda::OptionalCUDAGuard guard(k_cache.device());
  auto key_c = key.contiguous(), value_c = value.contiguous();
  auto slots_c = slots.to(k_cache.device(), at::kLong).contiguous();
  const int64_t row_bytes = key_c.numel() / tokens * key_c.element_size();
  auto stream = c10::cuda::getCurrentCUDAStream();
  char* kc = static_cast<char*>(k_cache.data_ptr());
  char* vc = static_cast<char*>(v_cache.data_ptr());
  const char* k = static_cast<const char*>(key_c.data_ptr());
  const char* v = static_cast<const char*>(value_c.data_ptr());
  if (row_bytes % 16 == 0 && aligned16(kc) && aligned16(vc) && aligned16(k) && aligned16(v)) {
    write_kv_kernel<int4><<<tokens, 128, 0, stream>>>(kc, vc, k, v, slots_c.data_ptr<int64_t>(), row_bytes / 16);
  } else {
    write_kv_kernel<char><<<tokens, 128, 0, stream>>>(kc, vc, k, v, slots_c.data_ptr<int64_t>(), row_bytes);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

TORCH_LIBRARY_IMPL(arpo, CUDA, m) {
  m.impl("copy_blocks", &copy_blocks_cuda);
  m.impl("write_kv", &write_kv_cuda);
}
