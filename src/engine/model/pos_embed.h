#pragma once
// Position embeddings: the fixed 2-D sin-cos table of MAE / I-JEPA, and resampling of a learned table to
// another grid (timm's resample_abs_pos_embed).
#include <ATen/core/Tensor.h>

namespace vitprobe {

/// The official MAE 2-D sin-cos table (grid*grid, dim), fp32: the first dim/2 channels encode the column
/// index, the last dim/2 the row index, each as [sin | cos] with omega = 1 / 10000^(k / (dim/4)).
at::Tensor sincos_2d_pos_embed(int dim, int grid_size);

/// Resamples pos_embed (1, num_prefix + old_grid^2, D) to (1, num_prefix + new_grid^2, D): prefix rows kept as
/// they are, the grid resized with bicubic interpolation (align_corners=false) computed in fp32.
at::Tensor resample_pos_embed(const at::Tensor& pos_embed, int num_prefix, int new_grid);

}  // namespace vitprobe
