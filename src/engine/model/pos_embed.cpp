#include "model/pos_embed.h"

#include <ATen/ATen.h>

#include <cmath>

#include "common/errors.h"

namespace vitprobe {
namespace {

// (positions) x (dim) table of [sin(p * omega) | cos(p * omega)], computed in float64 as the official code does.
at::Tensor sincos_1d(int dim, const at::Tensor& positions) {
  auto omega = at::arange(dim / 2, at::kDouble) / (dim / 2.0);
  omega = 1.0 / at::pow(10000.0, omega);
  auto angles = at::outer(positions.to(at::kDouble).reshape({-1}), omega);
  return at::cat({at::sin(angles), at::cos(angles)}, 1);
}

}  // namespace

at::Tensor sincos_2d_pos_embed(int dim, int grid_size) {
  if (dim % 4 != 0) throw BadInput("sincos_2d_pos_embed: dim " + std::to_string(dim) + " is not divisible by 4");
  auto coords = at::arange(grid_size, at::kDouble);
  auto columns = coords.repeat({grid_size});                         // w index for row-major patches
  auto rows = coords.repeat_interleave(grid_size);                   // h index
  return at::cat({sincos_1d(dim / 2, columns), sincos_1d(dim / 2, rows)}, 1).to(at::kFloat);
}

at::Tensor resample_pos_embed(const at::Tensor& pos_embed, int num_prefix, int new_grid) {
  const int64_t num_grid_tokens = pos_embed.size(1) - num_prefix;
  const auto old_grid = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(num_grid_tokens))));
  if (old_grid * old_grid != num_grid_tokens) {
    throw BadInput("resample_pos_embed: " + std::to_string(num_grid_tokens) + " position rows are not a square grid");
  }
  if (old_grid == new_grid) return pos_embed;
  const auto original_dtype = pos_embed.scalar_type();
  auto table = pos_embed.to(at::kFloat);
  auto prefix = table.narrow(1, 0, num_prefix);
  const int64_t dim = table.size(2);
  auto grid = table.narrow(1, num_prefix, num_grid_tokens).reshape({1, old_grid, old_grid, dim}).permute({0, 3, 1, 2});
  grid = at::upsample_bicubic2d(grid.contiguous(), {new_grid, new_grid}, /*align_corners=*/false);
  grid = grid.permute({0, 2, 3, 1}).reshape({1, static_cast<int64_t>(new_grid) * new_grid, dim});
  return at::cat({prefix, grid}, 1).to(original_dtype).contiguous();
}

}  // namespace vitprobe
