// Host side of prefill_tma.cuh: the tensor-map encoder the TMA prefill kernels share.
#include "prefill_tma.cuh"
#include "prefill_v9_plan.h"

namespace kascade {
namespace pf {

PFN_cuTensorMapEncodeTiled_v12000 tma_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  static bool tried = false;
  if (!tried) {
    tried = true;
    void* p = nullptr;
    cudaDriverEntryPointQueryResult r{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &r) == cudaSuccess &&
        r == cudaDriverEntryPointSuccess)
      fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
    else
      cudaGetLastError();
  }
  return fn;
}

bool tma_encode(CUtensorMap* m, int dtype, const void* base, int rows, int planeRows, int planes, int boxRows) {
  const auto enc = tma_encoder();
  if (!enc) return false;
  const PrefillTensorMapParams p = prefill_tensor_map_params(rows, planeRows, planes, boxRows);
  const cuuint64_t dims[3] = {p.dims[0], p.dims[1], p.dims[2]};
  const cuuint64_t strides[2] = {p.strides[0], p.strides[1]};
  const cuuint32_t box[3] = {p.box[0], p.box[1], p.box[2]};
  const cuuint32_t estr[3] = {1, 1, 1};
  const CUtensorMapDataType dt =
      dtype == KASCADE_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  return enc(m, dt, 3, const_cast<void*>(base), dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
             CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
             CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

}  // namespace pf
}  // namespace kascade
