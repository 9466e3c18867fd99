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

at::Tensor relative_position_index(int grid_size) {
  if (grid_size <= 0) throw BadInput("relative_position_index: grid size " + std::to_string(grid_size) + " must be positive");
  const int64_t g = grid_size;
  const int64_t span = 2 * g - 1;
  const int64_t num_distances = span * span + 3;
  auto index = at::empty({g * g + 1, g * g + 1}, at::kLong);
  auto* out = index.data_ptr<int64_t>();
  const int64_t stride = g * g + 1;
  for (int64_t i = 0; i < g * g; ++i) {
    const int64_t hi = i / g, wi = i % g;
    for (int64_t j = 0; j < g * g; ++j) {
      const int64_t hj = j / g, wj = j % g;
      out[(1 + i) * stride + 1 + j] = (hi - hj + g - 1) * span + (wi - wj + g - 1);
    }
  }
  for (int64_t j = 0; j < stride; ++j) out[j] = num_distances - 3;           // row of [cls]
  for (int64_t i = 0; i < stride; ++i) out[i * stride] = num_distances - 2;  // column of [cls]
  out[0] = num_distances - 1;
  return index;
}

at::Tensor relative_position_bias(const at::Tensor& table, int grid_size, const std::string& what) {
  const int64_t span = 2 * static_cast<int64_t>(grid_size) - 1;
  if (table.dim() != 2 || table.size(0) != span * span + 3) {
    std::string shape = "(";
    for (int64_t i = 0; i < table.dim(); ++i) shape += (i ? ", " : "") + std::to_string(table.size(i));
    throw BadInput(what + " has shape " + shape + "), expected (" + std::to_string(span * span + 3) +
                   ", heads) for a " + std::to_string(grid_size) + "x" + std::to_string(grid_size) +
                   " patch grid (a relative position table is not resampled to another grid)");
  }
  const int64_t tokens = static_cast<int64_t>(grid_size) * grid_size + 1;
  const auto index = relative_position_index(grid_size).to(table.device());
  return table.index_select(0, index.view({-1})).view({tokens, tokens, table.size(1)}).permute({2, 0, 1}).contiguous();
}

}  // namespace vitprobe
