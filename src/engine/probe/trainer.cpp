#include "probe/trainer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "common/errors.h"
#include "data/random.h"

namespace vitprobe {
namespace {

constexpr uint64_t kHeadInitStream = 21;
constexpr int64_t kGradientBucketElements = 1 << 22;  // 16 MiB of float32 per all-reduce

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Sets the intra-op thread count for a scope (0: leaves it as it is).
class ThreadCount {
 public:
  explicit ThreadCount(int threads) : previous_(at::get_num_threads()) {
    if (threads > 0 && threads != previous_) {
      at::set_num_threads(threads);
      changed_ = true;
    }
  }
  ~ThreadCount() {
    if (changed_) at::set_num_threads(previous_);
  }

 private:
  int previous_;
  bool changed_ = false;
};

std::string run_prefix(size_t index) { return "runs/" + std::to_string(index) + "/"; }

// Tensors of `tensors` whose name starts with `prefix`, with the prefix removed.
std::map<std::string, at::Tensor> with_prefix(const std::map<std::string, at::Tensor>& tensors, const std::string& prefix) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, tensor] : tensors) {
    if (name.compare(0, prefix.size(), prefix) == 0) out[name.substr(prefix.size())] = tensor;
  }
  return out;
}

}  // namespace

std::vector<double> default_learning_rate_grid(const std::string& optimizer) {
  double lowest = 0;
  if (optimizer == "lars" || optimizer == "sgd") lowest = 1e-3;
  else if (optimizer == "adamw") lowest = 1e-6;
  else throw BadInput("probe: no default learning-rate grid for optimizer '" + optimizer + "'");
  std::vector<double> grid;
  for (int decade = 0; decade < 4; ++decade) {
    for (const double step : {1.0, 2.0, 5.0}) grid.push_back(lowest * step * std::pow(10.0, decade));
  }
  grid.push_back(lowest * 1e4);
  // 1e-3 * 2 * 10 is 0.020000000000000004 in binary: round to the decimal value a user would type.
  for (auto& value : grid) {
    char text[32];
    std::snprintf(text, sizeof text, "%.6g", value);
    value = std::strtod(text, nullptr);
  }
  return grid;
}

std::string HeadRun::name() const {
  char text[64];
  std::snprintf(text, sizeof text, "@%g", base_lr);
  return spec.name + text;
}

ProbeTrainer::ProbeTrainer(const std::vector<HeadSpec>& specs, const TokenLayout& layout, int64_t num_classes,
                           TrainerOptions options, const at::Device& device, Communicator* communicator)
    : options_(std::move(options)), layout_(layout), device_(device), communicator_(communicator ? communicator : &single_process()) {
  options_.world_size = communicator_->world_size();
  if (options_.base_lrs.empty()) throw BadInput("probe: no learning rate given");
  if (options_.epochs < 1) throw BadInput("probe: --epochs " + std::to_string(options_.epochs) + " must be >= 1");
  if (options_.accum_iter < 1) throw BadInput("probe: --accum-iter must be >= 1");
  for (size_t index = 0; index < specs.size(); ++index) {
    if (!specs[index].trainable()) continue;
    for (const double base_lr : options_.base_lrs) {
      if (!(base_lr > 0)) throw BadInput("probe: learning rate " + std::to_string(base_lr) + " must be > 0");
      HeadRun run;
      run.spec = specs[index];
      run.base_lr = base_lr;
      run.peak_lr = scaled_learning_rate(base_lr, options_.effective_batch());
      run.head = std::make_unique<ProbeHead>(specs[index], layout, num_classes,
                                             derive_seed(options_.seed, kHeadInitStream, index), device_,
                                             options_.classifier_init);
      run.optimizer = make_optimizer(options_.optimizer, run.head->parameters());
      runs_.push_back(std::move(run));
    }
  }
}

std::set<std::string> ProbeTrainer::required_features() const {
  std::vector<HeadSpec> specs;
  for (const auto& run : runs_) specs.push_back(run.spec);
  return vitprobe::required_features(specs);
}

void ProbeTrainer::step_optimizers(const std::vector<double>& learning_rates) {
  if (communicator_->world_size() > 1) {
    // Average the gradients over ranks, a bucket of concatenated gradients per all-reduce.
    std::vector<at::Tensor> gradients;
    for (auto& run : runs_) {
      for (auto& [name, parameter] : run.head->parameters()) {
        // A missing gradient is missing on every rank (same graph); the optimizers skip it, as in one process.
        if (parameter.grad().defined()) gradients.push_back(parameter.grad());
      }
    }
    size_t first = 0;
    while (first < gradients.size()) {
      size_t last = first;
      int64_t elements = 0;
      std::vector<at::Tensor> flat;
      while (last < gradients.size() && (elements == 0 || elements + gradients[last].numel() <= kGradientBucketElements)) {
        elements += gradients[last].numel();
        flat.push_back(gradients[last].reshape({-1}));
        ++last;
      }
      std::vector<at::Tensor> bucket = {at::cat(flat)};
      communicator_->all_reduce_sum(bucket);
      bucket[0].div_(communicator_->world_size());
      int64_t offset = 0;
      for (size_t i = first; i < last; ++i) {
        const auto count = gradients[i].numel();
        gradients[i].copy_(bucket[0].slice(0, offset, offset + count).view_as(gradients[i]));
        offset += count;
      }
      first = last;
    }
  }
  for (size_t i = 0; i < runs_.size(); ++i) {
    const auto start = std::chrono::steady_clock::now();
    runs_[i].optimizer->step(learning_rates[i]);
    runs_[i].optimizer->zero_grad();
    runs_[i].seconds += seconds_since(start);
  }
}

void ProbeTrainer::train_epoch(FeatureSource& source, int64_t epoch, const std::function<void(int64_t)>& on_batch) {
  source.start_epoch(epoch);
  const int64_t n_batches = source.num_batches();
  if (n_batches == 0) {
    throw BadInput("probe: the training items (the split less its held-out part) give no full batch of --batch " +
                   std::to_string(options_.batch_size) + " per rank (fewer items than that?)");
  }
  LearningRateSchedule schedule{options_.warmup_epochs, static_cast<double>(options_.epochs), options_.min_lr};
  std::vector<double> learning_rates(runs_.size(), 0.0);
  std::vector<at::Tensor> loss_sums(runs_.size());
  int64_t batch_index = 0, pending = 0;
  while (auto batch = source.next()) {
    add_patch_tokens(batch->features, layout_);
    const ThreadCount threads(options_.head_threads);
    if (batch_index % options_.accum_iter == 0) {
      const double progress = static_cast<double>(epoch) + static_cast<double>(batch_index) / n_batches;
      for (size_t i = 0; i < runs_.size(); ++i) learning_rates[i] = schedule.at(progress, runs_[i].peak_lr);
    }
    if (communicator_->distributed()) {
      // SyncBatchNorm couples the ranks: all heads' statistics travel in one collective, and one backward
      // of the summed losses runs its gradient collective once (the heads' graphs are still disjoint).
      const auto start = std::chrono::steady_clock::now();
      std::vector<ProbeHead*> heads;
      for (auto& run : runs_) heads.push_back(run.head.get());
      const auto logits = forward_synchronised(heads, batch->features, *communicator_);
      at::Tensor total;
      for (size_t i = 0; i < runs_.size(); ++i) {
        const auto loss = at::cross_entropy_loss(logits[i], batch->labels);
        const auto scaled = options_.accum_iter > 1 ? loss / options_.accum_iter : loss;
        total = total.defined() ? total + scaled : scaled;
        const auto value = loss.detach();
        loss_sums[i] = loss_sums[i].defined() ? loss_sums[i] + value : value;
      }
      if (total.defined()) total.backward();
      const double share = seconds_since(start) / static_cast<double>(std::max<size_t>(1, runs_.size()));
      for (auto& run : runs_) run.seconds += share;
    } else {
      for (size_t i = 0; i < runs_.size(); ++i) {
        const auto start = std::chrono::steady_clock::now();
        const auto logits = runs_[i].head->forward(batch->features, true);
        const auto loss = at::cross_entropy_loss(logits, batch->labels);
        (options_.accum_iter > 1 ? loss / options_.accum_iter : loss).backward();
        const auto value = loss.detach();
        loss_sums[i] = loss_sums[i].defined() ? loss_sums[i] + value : value;
        runs_[i].seconds += seconds_since(start);
      }
    }
    ++batch_index;
    if (++pending == options_.accum_iter) {
      step_optimizers(learning_rates);
      pending = 0;
    }
    if (on_batch) on_batch(batch->labels.size(0));
  }
  // A last, partial accumulation window still updates (MAE would carry its gradients into the next epoch).
  if (pending > 0) {
    const ThreadCount threads(options_.head_threads);
    step_optimizers(learning_rates);
  }
  std::vector<at::Tensor> means;
  for (auto& sum : loss_sums) means.push_back(sum.defined() ? (sum / batch_index).reshape({1}).to(at::kDouble) : at::zeros({1}, at::kDouble));
  communicator_->all_reduce_sum(means);
  for (size_t i = 0; i < runs_.size(); ++i) {
    runs_[i].train_loss.push_back(means[i].item<double>() / communicator_->world_size());
  }
}

std::vector<EpochMetrics> ProbeTrainer::score(FeatureSource& source, int64_t epoch,
                                               const std::function<void(int64_t)>& on_batch) {
  at::NoGradGuard no_grad;
  source.start_epoch(0);
  std::vector<at::Tensor> counts(runs_.size());  // (correct top-1, correct top-5, items) per run
  for (auto& count : counts) count = at::zeros({3}, at::TensorOptions().dtype(at::kLong).device(device_));
  while (auto batch = source.next()) {
    add_patch_tokens(batch->features, layout_);
    const ThreadCount threads(options_.head_threads);
    const auto labels = batch->labels.unsqueeze(1);
    for (size_t i = 0; i < runs_.size(); ++i) {
      const auto logits = runs_[i].head->forward(batch->features, false);
      const auto top = std::get<1>(logits.topk(std::min<int64_t>(5, logits.size(1)), 1, true, true));
      const auto hits = top.eq(labels);
      counts[i] += at::stack({hits.select(1, 0).sum(), hits.any(1).sum(), at::scalar_tensor(labels.size(0), at::kLong).to(device_)});
    }
    if (on_batch) on_batch(batch->labels.size(0));
  }
  communicator_->all_reduce_sum(counts);
  std::vector<EpochMetrics> metrics;
  for (const auto& count : counts) {
    const auto values = count.cpu();
    const double items = std::max<double>(1.0, static_cast<double>(values[2].item<int64_t>()));
    metrics.push_back({epoch, 100.0 * values[0].item<int64_t>() / items, 100.0 * values[1].item<int64_t>() / items});
  }
  return metrics;
}

void ProbeTrainer::share_pooling_buffers() {
  if (!communicator_->distributed()) return;
  std::vector<at::Tensor> buffers, shared;
  for (auto& run : runs_) {
    for (auto& [name, buffer] : run.head->buffers()) {
      if (name.compare(0, 5, "pool.") != 0) continue;  // bn.* are synchronised already (forward_synchronised)
      buffers.push_back(buffer);
      shared.push_back(communicator_->is_main() ? buffer.detach().clone() : at::zeros_like(buffer));
    }
  }
  if (buffers.empty()) return;
  communicator_->all_reduce_sum(shared);  // rank 0's values everywhere
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < buffers.size(); ++i) buffers[i].copy_(shared[i]);
}

void ProbeTrainer::evaluate(FeatureSource& val, FeatureSource* holdout, int64_t epoch,
                            const std::function<void(int64_t)>& on_batch) {
  share_pooling_buffers();
  const auto val_metrics = score(val, epoch, on_batch);
  const auto holdout_metrics = holdout ? score(*holdout, epoch, on_batch) : std::vector<EpochMetrics>();
  for (size_t i = 0; i < runs_.size(); ++i) {
    auto& run = runs_[i];
    run.val.push_back(val_metrics[i]);
    if (holdout) run.holdout.push_back(holdout_metrics[i]);
    const double chooser = holdout ? holdout_metrics[i].top1 : val_metrics[i].top1;
    if (chooser > run.selection_top1) {
      run.selection_top1 = chooser;
      run.best_top1 = val_metrics[i].top1;
      run.best_top5 = val_metrics[i].top5;
      run.best_epoch = epoch;
      run.best_state.clear();
      for (const auto& [name, tensor] : run.head->state()) run.best_state.emplace_back(name, tensor.detach().cpu().clone());
    }
  }
}

std::vector<NamedTensor> ProbeTrainer::checkpoint_tensors() const {
  std::vector<NamedTensor> tensors;
  for (size_t i = 0; i < runs_.size(); ++i) {
    const auto prefix = run_prefix(i);
    for (const auto& [name, tensor] : runs_[i].head->state()) tensors.emplace_back(prefix + "head/" + name, tensor.detach().cpu());
    for (const auto& [name, tensor] : runs_[i].optimizer->state()) tensors.emplace_back(prefix + "optimizer/" + name, tensor.cpu());
    for (const auto& [name, tensor] : runs_[i].best_state) tensors.emplace_back(prefix + "best/" + name, tensor);
  }
  return tensors;
}

nlohmann::json ProbeTrainer::checkpoint_metadata() const {
  nlohmann::json runs = nlohmann::json::array();
  for (const auto& run : runs_) {
    nlohmann::json val = nlohmann::json::array();
    for (const auto& metrics : run.val) val.push_back({{"epoch", metrics.epoch}, {"top1", metrics.top1}, {"top5", metrics.top5}});
    nlohmann::json holdout = nlohmann::json::array();
    for (const auto& m : run.holdout) holdout.push_back({{"epoch", m.epoch}, {"top1", m.top1}, {"top5", m.top5}});
    runs.push_back({{"head", run.spec.name}, {"base_lr", run.base_lr}, {"train_loss", run.train_loss}, {"val", val},
                    {"holdout", holdout}, {"best_epoch", run.best_epoch}, {"best_top1", run.best_top1},
                    {"best_top5", run.best_top5}, {"selection_top1", run.selection_top1}, {"seconds", run.seconds}});
  }
  return {{"runs", runs}};
}

void ProbeTrainer::restore(const std::map<std::string, at::Tensor>& tensors, const nlohmann::json& metadata,
                           const std::string& source) {
  const auto& runs = metadata.at("runs");
  if (runs.size() != runs_.size()) {
    throw BadInput(source + ": holds " + std::to_string(runs.size()) + " (head, lr) pairs, this run has " +
                   std::to_string(runs_.size()));
  }
  for (size_t i = 0; i < runs_.size(); ++i) {
    auto& run = runs_[i];
    const auto& saved = runs[i];
    if (saved.at("head").get<std::string>() != run.spec.name || saved.at("base_lr").get<double>() != run.base_lr) {
      throw BadInput(source + ": pair " + std::to_string(i) + " is " + saved.at("head").get<std::string>() +
                     ", this run has " + run.name());
    }
    const auto prefix = run_prefix(i);
    run.head->load_state(with_prefix(tensors, prefix + "head/"), source);
    run.optimizer->load_state(with_prefix(tensors, prefix + "optimizer/"), source);
    run.best_state.clear();
    for (const auto& [name, tensor] : with_prefix(tensors, prefix + "best/")) run.best_state.emplace_back(name, tensor.clone());
    run.train_loss = saved.at("train_loss").get<std::vector<double>>();
    run.val.clear();
    for (const auto& item : saved.at("val")) run.val.push_back({item.at("epoch"), item.at("top1"), item.at("top5")});
    run.holdout.clear();
    for (const auto& item : saved.at("holdout")) run.holdout.push_back({item.at("epoch"), item.at("top1"), item.at("top5")});
    run.selection_top1 = saved.at("selection_top1");
    run.best_epoch = saved.at("best_epoch");
    run.best_top1 = saved.at("best_top1");
    run.best_top5 = saved.at("best_top5");
    run.seconds = saved.at("seconds");
  }
}

}  // namespace vitprobe
