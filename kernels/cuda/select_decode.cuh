// The cluster Top-k select of the decode anchors (select_decode.cu), called by anchor_decode.cu
// under variant bits 256 (KASCADE_VARIANT_SELECT_CLUSTER) and 512 (KASCADE_VARIANT_SELECT_V2).
#pragma once
#include "decode_attention.cuh"
#include "select_plan.h"

namespace kascade {

// KascadeDecodeShape::variant bits of the cluster select (kascade_cuda.h).
constexpr int kVariantSelectCluster = KASCADE_VARIANT_SELECT_CLUSTER;  // cluster_select_kernel
constexpr int kVariantSelectV2 = KASCADE_VARIANT_SELECT_V2;            // cluster_select2_kernel

// Pools the logits of w.logits (per-head softmax from the scores pass's per-split max/sum in
// w.part_ml) and writes each row's exact Top-k (topk indices, key order) into indices, in one
// launch: one thread block cluster per (sequence, KV head) row. Returns cudaErrorNotSupported
// (nothing launched) when the device cannot run the cluster configuration; the caller then runs
// the multi-pass select.
cudaError_t cluster_select(const KascadeDecodeShape& s, int splits, const Workspace& w, int topk, int* indices,
                           cudaStream_t st);

}  // namespace kascade
