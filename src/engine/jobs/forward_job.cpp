#include "jobs/forward_job.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/errors.h"
#include "image/image.h"
#include "io/atomic_file.h"
#include "io/output_folder.h"
#include "io/text_file.h"
#include "io/npy.h"

namespace vitprobe {
namespace {

bool is_npy(const std::string& file) {
  return file.size() >= 4 && file.compare(file.size() - 4, 4, ".npy") == 0;
}

std::vector<int64_t> shape_of(const at::Tensor& tensor) { return tensor.sizes().vec(); }

std::string shape_text(at::IntArrayRef shape) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ")";
  return out.str();
}

// The batch to run: one .npy array (checked against the model), or decoded and preprocessed images.
at::Tensor load_inputs(const ForwardJobOptions& options, const LoadedModel& model) {
  if (options.inputs.empty()) throw BadInput("no --input given");
  const auto& config = model.encoder->config();
  if (is_npy(options.inputs.front())) {
    const auto& file = options.inputs.front();
    if (options.inputs.size() > 1) throw BadInput(file + ": a .npy input must be the only --input");
    auto array = read_npy(file);
    if (array.scalar_type() != at::kFloat) {
      throw BadInput(file + ": npy input must have dtype float32, got " + std::string(c10::toString(array.scalar_type())));
    }
    if (array.dim() != 4 || array.size(1) != config.in_chans || array.size(2) != config.img_size ||
        array.size(3) != config.img_size) {
      throw BadInput(file + ": npy input has shape " + shape_text(array.sizes()) + ", expected (B, " +
                     std::to_string(config.in_chans) + ", " + std::to_string(config.img_size) + ", " +
                     std::to_string(config.img_size) + ")");
    }
    if (array.size(0) == 0) throw BadInput(file + ": npy input is an empty batch (0 images)");
    return array;
  }
  const auto preprocess = options.preprocess.resolve(model.report.metadata, config.img_size, model.report.file);
  if (preprocess.crop != config.img_size) {
    throw BadInput("--crop " + std::to_string(preprocess.crop) + " does not match the model's input size " +
                   std::to_string(config.img_size) + " (use --img-size to resample the position embeddings)");
  }
  std::vector<at::Tensor> images;
  for (const auto& file : options.inputs) {
    if (is_npy(file)) throw BadInput(file + ": a .npy input must be the only --input");
    images.push_back(load_image_tensor(file, preprocess));
  }
  return at::stack(images);
}

}  // namespace

std::vector<int> parse_block_list(const std::string& text, int depth) {
  std::vector<int> blocks;
  if (text.empty()) return blocks;
  if (text == "all") {
    for (int i = 0; i < depth; ++i) blocks.push_back(i);
    return blocks;
  }
  if (text == "last") return {depth - 1};
  std::stringstream stream(text);
  std::string item;
  std::set<int> seen;
  while (std::getline(stream, item, ',')) {
    int index = 0;
    try {
      size_t used = 0;
      index = std::stoi(item, &used);
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw BadInput("--blocks '" + text + "': expected all, last or a list of block indices");
    }
    if (index < 0) index += depth;
    if (index < 0 || index >= depth) {
      throw BadInput("--blocks '" + text + "': block " + item + " out of range (the model has " +
                     std::to_string(depth) + " blocks, 0.." + std::to_string(depth - 1) + ")");
    }
    if (seen.insert(index).second) blocks.push_back(index);
  }
  return blocks;
}

nlohmann::json run_forward_job(const ForwardJobOptions& options) {
  if (options.out_dir.empty()) throw BadInput("--out is required");
  OutputFolder output(options.out_dir, {});  // checked and locked before any work; written all-or-nothing
  const LoadedModel model = load_model(options.model, options.load);
  const auto& config = model.encoder->config();
  const auto class_names = read_class_names(options.class_names);

  ForwardRequest request;
  request.block_outputs = parse_block_list(options.blocks, config.depth);
  if (options.attention) {
    request.attention_blocks = options.blocks.empty() ? parse_block_list("all", config.depth) : request.block_outputs;
  }
  const at::Tensor inputs = load_inputs(options, model);
  const ForwardResult result = model.encoder->forward(inputs, request);

  // Everything is computed before the first file is written: a failure above leaves no output behind.
  std::vector<std::pair<std::string, at::Tensor>> outputs = {{"tokens.npy", result.tokens}};
  for (const auto& [block, tensor] : result.block_outputs) outputs.emplace_back("block" + std::to_string(block) + ".npy", tensor);
  for (const auto& [block, tensor] : result.attention) outputs.emplace_back("attn" + std::to_string(block) + ".npy", tensor);

  nlohmann::json summary;
  summary["model"] = options.model;
  summary["source"] = model.report.source;
  summary["inputs"] = options.inputs;
  summary["dtype"] = options.load.dtype;
  summary["img_size"] = config.img_size;
  summary["tokens_shape"] = shape_of(result.tokens);
  summary["num_prefix_tokens"] = config.num_prefix_tokens();
  summary["num_registers"] = config.num_registers;
  summary["class_token"] = config.class_token;
  if (model.classifier) {
    const auto cls = result.tokens.select(1, 0).to(at::kFloat);
    const auto logits = at::linear(cls, model.classifier->weight.to(cls.device()), model.classifier->bias.to(cls.device()));
    outputs.emplace_back("logits.npy", logits);
    const auto probabilities = at::softmax(logits, -1).cpu();
    const int64_t k = std::min<int64_t>(std::max(options.topk, 1), probabilities.size(1));
    const auto [values, indices] = at::topk(probabilities, k, -1);
    nlohmann::json top = nlohmann::json::array();
    for (int64_t image = 0; image < probabilities.size(0); ++image) {
      nlohmann::json ranked = nlohmann::json::array();
      for (int64_t rank = 0; rank < k; ++rank) {
        const int64_t index = indices[image][rank].item<int64_t>();
        nlohmann::json item = {{"index", index}, {"prob", values[image][rank].item<double>()}};
        if (index < static_cast<int64_t>(class_names.size())) item["name"] = class_names[index];
        ranked.push_back(item);
      }
      top.push_back(ranked);
    }
    summary["top"] = top;
  }
  nlohmann::json files = nlohmann::json::array();
  for (const auto& [name, tensor] : outputs) files.push_back(name);
  summary["files"] = files;

  const std::filesystem::path out(output.path());
  for (const auto& [name, tensor] : outputs) write_npy((out / name).string(), tensor.to(at::kFloat).cpu().contiguous());
  write_file_atomically((out / "forward.json").string(), [&](std::ostream& stream) { stream << summary.dump(2) << "\n"; });
  output.commit();
  return summary;
}

}  // namespace vitprobe
