// Device-side random fill for benchmarks and large checks (gigabytes of K/V would take
// minutes to generate and upload from the host).
// fill_normal_kernel: grid-stride, one counter-based hash per element (splitmix64), a
// Box-Muller normal scaled by `stddev`, stored as f16, bf16 or f32. Deterministic per seed.
#include "common.cuh"

namespace kascade {

__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

template <typename T>
__global__ void fill_normal_kernel(T* p, size_t count, uint64_t seed, float stddev) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x) {
    const uint64_t h = splitmix64(seed ^ (i * 0xd1b54a32d192ed03ull));
    const float u1 = (static_cast<float>(h >> 40) + 1.f) * (1.f / 16777217.f);
    const float u2 = static_cast<float>((h >> 16) & 0xffffffu) * (1.f / 16777216.f);
    const float z = sqrtf(-2.f * logf(u1)) * cospif(2.f * u2) * stddev;
    if constexpr (std::is_same<T, float>::value) {
      p[i] = z;
    } else {
      p[i] = from_float<T>(z);
    }
  }
}

}  // namespace kascade

// dtype: 0 f16, 1 bf16, 2 f32.
extern "C" cudaError_t kascade_fill_normal(void* p, size_t count, int dtype, unsigned long long seed, float stddev,
                                           cudaStream_t st) {
  using namespace kascade;
  const int blocks = 132 * 8;
  switch (dtype) {
    case 0: fill_normal_kernel<__half><<<blocks, 256, 0, st>>>(static_cast<__half*>(p), count, seed, stddev); break;
    case 1:
      fill_normal_kernel<__nv_bfloat16><<<blocks, 256, 0, st>>>(static_cast<__nv_bfloat16*>(p), count, seed, stddev);
      break;
    case 2: fill_normal_kernel<float><<<blocks, 256, 0, st>>>(static_cast<float*>(p), count, seed, stddev); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}
