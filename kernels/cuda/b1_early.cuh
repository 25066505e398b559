// KASCADE_VARIANT_B1_EARLY_SPARSE (cuda-b1, tenth session): the batch-1 anchor's sparse pass starts on the b1 select's
// phase-2 indices while the select's phase 3 still finishes each row's list (select_b1_decode.cu publishes a per-row
// ready count, reuse_b1_decode.cu's ws gather reads the list as the count allows).
//
// Phase 2 writes a row's entries [0, A) (the keys above the rank-k bin: ~85-90 % of the list at 128k batch 1), phase 3
// the rest, [A, k). So that every split's late entries come last, split `split` of `splits` takes the row's 16-entry
// groups split, split + splits, split + 2 splits, ... in that order, NC of them per ring stage (one per consumer warp):
// group `w` of its stage `i` is the row's group (i NC + w) splits + split. These helpers are that schedule, shared by
// the kernel and src/b1-early.test.ts (host C++: every group exactly once, each split's in increasing order).
#pragma once

#ifdef __CUDACC__
#define KASCADE_B1E_HD __host__ __device__
#else
#define KASCADE_B1E_HD
#endif

namespace kascade {

// The 16-entry groups split `split` of `splits` takes from a row of listGroups groups.
KASCADE_B1E_HD inline int b1_early_groups(int listGroups, int split, int splits) {
  return listGroups > split ? (listGroups - 1 - split) / splits + 1 : 0;
}
// The row's group that warp w of NC takes in stage i of split `split` (live while i NC + w < b1_early_groups).
KASCADE_B1E_HD inline int b1_early_group(int i, int w, int NC, int split, int splits) {
  return (i * NC + w) * splits + split;
}

}  // namespace kascade
