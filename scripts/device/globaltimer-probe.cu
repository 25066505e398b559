// The GPU-wide nanosecond clock (%globaltimer) as the burst writes (kernels/cuda/burst_writes.cuh) use it: how often it
// moves, by how much, what a read costs, and whether every SM sees the same time. One CTA per SM (one warp each): all
// wait on a flag set by CTA 0, then read the clock in a tight loop. Prints one line per measure.
// Build and run on the device: nvcc -std=c++17 -O2 -gencode=arch=compute_90a,code=sm_90a -o /tmp/gt globaltimer-probe.cu
#include <cstdio>
#include <cuda_runtime.h>

__device__ __forceinline__ unsigned long long gtimer() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

constexpr int kReads = 20000;

// Per CTA: the clock at the common start, the number of changes seen, the smallest and largest change, the SM clock
// cycles per read, and the SM clock cycles per nanosecond of the timer.
__global__ void probe(volatile int* go, unsigned long long* out) {
  if (threadIdx.x != 0) return;
  if (blockIdx.x == 0) {
    __nanosleep(100000);
    *go = 1;
  }
  while (*go == 0) {
  }
  const unsigned long long start = gtimer();
  const long long c0 = clock64();
  unsigned long long last = start, changes = 0, minD = ~0ull, maxD = 0;
  for (int i = 0; i < kReads; ++i) {
    const unsigned long long t = gtimer();
    if (t != last) {
      const unsigned long long d = t - last;
      ++changes;
      minD = d < minD ? d : minD;
      maxD = d > maxD ? d : maxD;
      last = t;
    }
  }
  const long long c1 = clock64();
  unsigned long long* o = out + blockIdx.x * 6;
  o[0] = start;
  o[1] = changes;
  o[2] = minD;
  o[3] = maxD;
  o[4] = static_cast<unsigned long long>(c1 - c0);
  o[5] = last - start;
}

int main() {
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  int* go = nullptr;
  unsigned long long* out = nullptr;
  cudaMalloc(&go, sizeof(int));
  cudaMemset(go, 0, sizeof(int));
  cudaMalloc(&out, sizeof(unsigned long long) * 6 * sms);
  probe<<<sms, 32>>>(go, out);
  const cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    std::printf("error %s\n", cudaGetErrorString(e));
    return 1;
  }
  unsigned long long* h = new unsigned long long[6 * sms];
  cudaMemcpy(h, out, sizeof(unsigned long long) * 6 * sms, cudaMemcpyDeviceToHost);
  unsigned long long s0 = ~0ull, s1 = 0, minD = ~0ull, maxD = 0, changes = 0, cycles = 0, span = 0;
  for (int b = 0; b < sms; ++b) {
    const unsigned long long* o = h + 6 * b;
    s0 = o[0] < s0 ? o[0] : s0;
    s1 = o[0] > s1 ? o[0] : s1;
    changes += o[1];
    minD = o[2] < minD ? o[2] : minD;
    maxD = o[3] > maxD ? o[3] : maxD;
    cycles += o[4];
    span += o[5];
  }
  std::printf("sms %d reads per SM %d\n", sms, kReads);
  std::printf("start spread across SMs: %llu ns (max - min of each SM's first read after the common flag)\n", s1 - s0);
  std::printf("changes per SM (mean): %.1f; smallest change %llu ns, largest %llu ns\n",
              static_cast<double>(changes) / sms, minD, maxD);
  std::printf("mean span per SM %.1f ns; SM cycles per read %.1f; mean ns per change %.1f\n",
              static_cast<double>(span) / sms, static_cast<double>(cycles) / sms / kReads,
              changes ? static_cast<double>(span) / static_cast<double>(changes) : 0.0);
  return 0;
}
