// Shared device helpers for the Kascade decode kernels: dtype conversion, cp.async,
// warp reductions and the compile-time switches (flash-attention's static_switch style).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cstdint>

#include "kascade_cuda.h"

namespace kascade {

constexpr float kLog2e = 1.4426950408889634f;

// Runtime value -> compile-time constant. Unsupported values fall to the error branch.
#define KASCADE_DTYPE_SWITCH(DT, T, ...)                 \
  [&]() -> cudaError_t {                                 \
    if ((DT) == KASCADE_BF16) {                          \
      using T = __nv_bfloat16;                           \
      return __VA_ARGS__();                              \
    } else if ((DT) == KASCADE_F16) {                    \
      using T = __half;                                  \
      return __VA_ARGS__();                              \
    }                                                    \
    return cudaErrorInvalidValue;                        \
  }()

#define KASCADE_HEADDIM_SWITCH(DV, D, ...)               \
  [&]() -> cudaError_t {                                 \
    if ((DV) == 128) {                                   \
      constexpr int D = 128;                             \
      return __VA_ARGS__();                              \
    } else if ((DV) == 64) {                             \
      constexpr int D = 64;                              \
      return __VA_ARGS__();                              \
    }                                                    \
    return cudaErrorInvalidValue;                        \
  }()

#define KASCADE_GROUP_SWITCH(GV, GS, ...)                \
  [&]() -> cudaError_t {                                 \
    switch (GV) {                                        \
      case 1: { constexpr int GS = 1; return __VA_ARGS__(); } \
      case 2: { constexpr int GS = 2; return __VA_ARGS__(); } \
      case 4: { constexpr int GS = 4; return __VA_ARGS__(); } \
      case 8: { constexpr int GS = 8; return __VA_ARGS__(); } \
      default: return cudaErrorInvalidValue;             \
    }                                                    \
  }()

// 8 packed 16-bit values -> 8 floats.
__device__ __forceinline__ void to_float8(const uint4& r, float* f, __nv_bfloat16) {
  const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ void to_float8(const uint4& r, float* f, __half) {
  const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    __half2 h = *reinterpret_cast<const __half2*>(&w[i]);
    float2 x = __half22float2(h);
    f[2 * i] = x.x;
    f[2 * i + 1] = x.y;
  }
}
__device__ __forceinline__ void to_float2(uint32_t w, float* f, __nv_bfloat16) {
  f[0] = __uint_as_float(w << 16);
  f[1] = __uint_as_float(w & 0xffff0000u);
}
__device__ __forceinline__ void to_float2(uint32_t w, float* f, __half) {
  __half2 h = *reinterpret_cast<const __half2*>(&w);
  float2 x = __half22float2(h);
  f[0] = x.x;
  f[1] = x.y;
}

__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }

// 16-byte asynchronous global->shared copy; src_bytes = 0 zero-fills (out-of-range rows).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

inline int ceil_div(long long a, long long b) { return static_cast<int>((a + b - 1) / b); }

}  // namespace kascade
