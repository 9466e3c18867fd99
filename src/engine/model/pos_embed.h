#pragma once
// Position embeddings: the fixed 2-D sin-cos table of MAE / I-JEPA, resampling of a learned table to
// another grid (timm's resample_abs_pos_embed), and BEiT / SimMIM's relative position bias.
#include <ATen/core/Tensor.h>

#include <string>

namespace vitprobe {

/// The official MAE 2-D sin-cos table (grid*grid, dim), fp32: the first dim/2 channels encode the column
/// index, the last dim/2 the row index, each as [sin | cos] with omega = 1 / 10000^(k / (dim/4)).
at::Tensor sincos_2d_pos_embed(int dim, int grid_size);

/// Resamples pos_embed (1, num_prefix + old_grid^2, D) to (1, num_prefix + new_grid^2, D): prefix rows kept as
/// they are, the grid resized with bicubic interpolation (align_corners=false) computed in fp32.
at::Tensor resample_pos_embed(const at::Tensor& pos_embed, int num_prefix, int new_grid);

/// BEiT / SimMIM's relative position index (1 + g*g, 1 + g*g), int64, for a square grid of g x g patches in
/// row-major order preceded by [cls] (microsoft/SimMIM models/vision_transformer.py:65-80, the same in timm's
/// beit.py gen_relative_position_index). For patches i = (hi, wi) and j = (hj, wj):
///   index[1+i, 1+j] = (hi - hj + g - 1) * (2g - 1) + (wi - wj + g - 1)
/// and, with R = (2g-1)^2 + 3 rows in the table: index[0, j] = R - 3 ([cls] attending to patches),
/// index[i, 0] = R - 2 (patches attending to [cls]), index[0, 0] = R - 1.
at::Tensor relative_position_index(int grid_size);

/// The bias a relative position table (R, heads) adds to the attention logits: (heads, 1 + g*g, 1 + g*g) in
/// the table's dtype, table[index] permuted head-first (SimMIM vision_transformer.py:104-110). Throws BadInput
/// naming `what` when the table does not have (2g-1)^2 + 3 rows.
at::Tensor relative_position_bias(const at::Tensor& table, int grid_size, const std::string& what);

}  // namespace vitprobe
